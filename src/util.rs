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

/// UTC calendar fields `(year, month, day, hour, minute, second)` of a Unix time,
/// without a date crate (Howard Hinnant's days-to-civil algorithm).
pub fn civil(unix: u64) -> (i64, i64, i64, u64, u64, u64) {
    let days = (unix / 86400) as i64;
    let secs = unix % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, secs / 3600, secs % 3600 / 60, secs % 60)
}

/// `2026-11-23T01:02:03Z` for a Unix time.
pub fn rfc3339(unix: u64) -> String {
    let (y, m, d, hh, mm, ss) = civil(unix);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn rfc3339_known_points() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_395_723), "2026-11-23T01:02:03Z");
    }
}
