//! Small helpers shared by several modules.

/// An io::Error as words without Rust's " (os error N)" suffix.
pub fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Replace `user:password@` in a URL with `***@` so credentials are never shown.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Redact credentials in every URL inside a free-text line (ffmpeg prints its URL in
/// errors, e.g. `rtsp://user:secret@host:8554/x: Connection refused`).
pub fn redact_text(line: &str) -> String {
    if !line.contains('@') {
        return line.to_string();
    }
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace())
            .unwrap_or(tail.len());
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
    fn redaction() {
        assert_eq!(redact_url("rtsp://u:p@h:8554/x"), "rtsp://***@h:8554/x");
        assert_eq!(redact_url("rtsp://h:8554/a@b"), "rtsp://h:8554/a@b");
        assert_eq!(redact_url("rtsp://h:8554"), "rtsp://h:8554");
        assert_eq!(
            redact_text("[tcp] rtsp://u:p@h:8554/x: refused; http://a:b@c/ ok"),
            "[tcp] rtsp://***@h:8554/x: refused; http://***@c/ ok"
        );
        assert_eq!(redact_text("no url a@b"), "no url a@b");
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
