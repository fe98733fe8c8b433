//! Masking credentials in every text of the report.

use super::*;

/// Masks credentials in free text: URL user-info first, then every known secret literal.
pub struct Scrub {
    literals: Vec<String>,
}

impl Scrub {
    /// Secrets of these settings: the password, the username, and both halves of any
    /// `user:pass@` in the RTSP and API URLs (as written and percent-decoded).
    pub fn new(s: &Settings) -> Scrub {
        let mut lits: Vec<String> = Vec::new();
        lits.extend(s.mediamtx.password.clone());
        lits.extend(s.mediamtx.username.clone());
        lits.extend(s.web.password.clone());
        lits.extend(s.web.username.clone());
        for url in [&s.mediamtx.rtsp_url, &s.mediamtx.api_url] {
            if let Some(info) = userinfo(url) {
                for part in info.split(':') {
                    lits.push(part.to_string());
                    lits.push(crate::mediamtx::percent_decode(part));
                }
            }
        }
        Scrub::from_literals(lits)
    }

    pub fn from_literals(lits: Vec<String>) -> Scrub {
        let mut literals: Vec<String> = lits.into_iter().filter(|l| l.len() >= 3).collect();
        // Longest first, so a secret that contains another is masked whole.
        literals.sort_by_key(|l| std::cmp::Reverse(l.len()));
        literals.dedup();
        Scrub { literals }
    }

    pub fn text(&self, t: &str) -> String {
        let mut out: String = t
            .lines()
            .map(crate::util::redact_text)
            .collect::<Vec<_>>()
            .join("\n");
        if t.ends_with('\n') {
            out.push('\n');
        }
        for l in &self.literals {
            if out.contains(l.as_str()) {
                out = out.replace(l.as_str(), "***");
            }
        }
        out
    }
}

/// `user:pass` of `scheme://user:pass@host/...`, if any.
pub(super) fn userinfo(url: &str) -> Option<&str> {
    crate::util::split_userinfo(url).map(|(_, info, _)| info)
}
