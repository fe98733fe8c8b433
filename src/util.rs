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
    }
}
