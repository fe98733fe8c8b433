//! Small helpers shared by several modules.

/// An io::Error as words without Rust's " (os error N)" suffix.
pub fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// `scheme://userinfo@rest` as (scheme, userinfo, rest), or `None` without an `@`.
///
/// RFC 3986 forbids an unescaped `/`, `?` or `#` in the userinfo, but people write
/// `rtsp://u:pa/ss@host` and ffmpeg accepts it, so the userinfo is taken to end at the
/// LAST `@` after `://`, wherever the first `/` is. A URL whose path holds an `@` (never
/// one of our stream URLs: names are `[a-z0-9_-]`) is then over-redacted, which is the
/// safe way to be wrong.
pub fn split_userinfo(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let at = rest.rfind('@')?;
    Some((scheme, &rest[..at], &rest[at + 1..]))
}

/// Replace the userinfo of a URL with `***` so credentials are never shown.
pub fn redact_url(url: &str) -> String {
    match split_userinfo(url) {
        Some((scheme, _, rest)) => format!("{scheme}://***@{rest}"),
        None => url.to_string(),
    }
}

/// Redact credentials in every URL inside a free-text line (ffmpeg prints its URL in
/// errors, e.g. `rtsp://user:secret@host:8554/x: Connection refused`). A URL ends at
/// whitespace; its userinfo at the last `@` before that (see `split_userinfo`).
pub fn redact_text(line: &str) -> String {
    if !line.contains('@') {
        return line.to_string();
    }
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// Read a small file (a /proc or /sys entry, a card's `id`) whole: one `read` into a stack
/// buffer and one to see the end, where `fs::read_to_string` also `statx`es the file and,
/// for /proc (size 0), grows its buffer from 32 bytes over half a dozen reads. The rescan
/// and the CPU mark read hundreds of these every two seconds.
pub fn read_small(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = [0u8; 4096];
    let mut len = 0;
    loop {
        let n = f.read(&mut buf[len..])?;
        if n == 0 {
            return String::from_utf8(buf[..len].to_vec())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e));
        }
        len += n;
        if len == buf.len() {
            // Larger than expected: read the rest the ordinary way.
            let mut v = buf.to_vec();
            f.read_to_end(&mut v)?;
            return String::from_utf8(v)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e));
        }
    }
}

/// Seconds since the Unix epoch (for display only; timing uses `Instant`).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_small_reads_whole_files_of_every_size() {
        let dir = std::env::temp_dir().join(format!("read-small-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for len in [0, 1, 10, 4095, 4096, 4097, 10_000] {
            let p = dir.join(format!("f{len}"));
            let text: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            std::fs::write(&p, &text).unwrap();
            assert_eq!(read_small(&p).unwrap(), text, "length {len}");
        }
        // /proc files say size 0; the whole line still comes back.
        let stat = read_small(std::path::Path::new("/proc/self/stat")).unwrap();
        assert!(stat.ends_with('\n') && stat.contains(") "), "{stat}");
        assert!(read_small(&dir.join("missing")).is_err());
        std::fs::write(dir.join("bad"), [0xff, 0xfe]).unwrap();
        assert!(read_small(&dir.join("bad")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn redaction() {
        // (URL as written, as shown)
        let table = [
            ("rtsp://u:p@h:8554/x", "rtsp://***@h:8554/x"),
            ("rtsp://u:pa/ss@h:8554/x", "rtsp://***@h:8554/x"),
            ("rtsp://u:pa/ss@h:8554", "rtsp://***@h:8554"),
            ("rtsp://u:pa/s/s@h", "rtsp://***@h"),
            ("rtsp://u:p@ss@h:8554/x", "rtsp://***@h:8554/x"),
            ("rtsp://u:pa/s@s@h:8554/mic", "rtsp://***@h:8554/mic"),
            ("rtsp://u:pa?ss@h/x", "rtsp://***@h/x"),
            ("rtsp://u:pa#ss@h/x", "rtsp://***@h/x"),
            ("rtsp://u:p%2Fss@h/x", "rtsp://***@h/x"),
            ("rtsp://user@h/x", "rtsp://***@h/x"),
            ("rtsp://:pa/ss@[::1]:8554/x", "rtsp://***@[::1]:8554/x"),
            ("rtsp://h:8554/x", "rtsp://h:8554/x"),
            ("rtsp://h:8554", "rtsp://h:8554"),
            ("http://127.0.0.1:9997", "http://127.0.0.1:9997"),
            // An `@` in a path: over-redacted (a password with `/` looks the same).
            ("rtsp://h:8554/a@b", "rtsp://***@b"),
            ("not a url u:p@h", "not a url u:p@h"),
            ("", ""),
        ];
        for (url, want) in table {
            assert_eq!(redact_url(url), want, "{url}");
            assert_eq!(redact_text(url), want, "{url}");
        }
        // Free text: each URL ends at whitespace.
        let text = [
            (
                "[tcp] rtsp://u:p@h:8554/x: refused; http://a:b@c/ ok",
                "[tcp] rtsp://***@h:8554/x: refused; http://***@c/ ok",
            ),
            (
                "[tcp @ 0x5581] rtsp://u:pa/ss@h:8554/x: Connection refused",
                "[tcp @ 0x5581] rtsp://***@h:8554/x: Connection refused",
            ),
            (
                "Output #0, rtsp, to 'rtsp://pub:s3/cr@t@127.0.0.1:8554/garden':",
                "Output #0, rtsp, to 'rtsp://***@127.0.0.1:8554/garden':",
            ),
            ("no url a@b", "no url a@b"),
            ("a@b rtsp://h/x c@d", "a@b rtsp://h/x c@d"),
        ];
        for (line, want) in text {
            assert_eq!(redact_text(line), want, "{line}");
        }
    }
}

/// A Unix time as a UTC timestamp (times past jiff's range, year 9999, clamp to its end).
pub fn utc(unix: u64) -> jiff::Timestamp {
    let secs = i64::try_from(unix).unwrap_or(i64::MAX);
    jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::MAX)
}

/// `2026-11-23T01:02:03Z` for a Unix time.
pub fn rfc3339(unix: u64) -> String {
    utc(unix).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn rfc3339_known_points() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_395_723), "2026-11-23T01:02:03Z");
        assert_eq!(super::rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
        // Out of range clamps instead of panicking or wrapping.
        assert!(super::rfc3339(u64::MAX).starts_with("9999-12-"));
    }
}
