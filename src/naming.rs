//! Stream names and legacy device keys (SPEC §4, §5). Compatibility: listeners use these URLs.
// OWNER: foundation helper — implement per SPEC §4.

/// Lowercase; every character outside `[0-9a-z]` becomes `_`; runs collapse; trim `_`.
pub fn sanitize(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().flat_map(|c| c.to_lowercase()) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '_'
        };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    out.trim_matches('_').to_string()
}
