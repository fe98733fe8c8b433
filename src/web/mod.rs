//! The read-only status page on the metrics listener (docs/web.md): `GET /` (one
//! self-contained page), `GET /api/status` (what `status --json` prints) and
//! `GET /api/events` (server-sent events, served by `events::Hub`). Every other method on
//! these paths is 405: nothing here changes anything. Optional HTTP Basic auth, required
//! by the config check when the listener is not loopback.

pub mod events;

use std::sync::Arc;

use md5::{Digest, Md5};

use crate::config::Settings;
use crate::http::{Answer, Pages, Reply, Request};
use crate::status::Snapshot;

/// The page, inline HTML + CSS + JS; `/*MSM_CONFIG*/null` is replaced by the page's
/// settings (JSON) when the site is built.
const PAGE: &str = include_str!("page.html");
/// The budget for the page (it is sent uncompressed).
pub const PAGE_BUDGET: usize = 40 * 1024;

/// Where snapshots come from (the supervisor's registry, or a test's closure).
pub type SnapshotFn = Arc<dyn Fn() -> Snapshot + Send + Sync>;

/// What the page, the API and the events answer from.
pub struct Site {
    page: Vec<u8>,
    /// `MD5("user:password")`: compared in constant time against the MD5 of what the
    /// client sent, so the time taken says nothing about the secret or its length.
    credentials: Option<[u8; 16]>,
    snapshot: SnapshotFn,
    hub: events::Hub,
    /// For the names view of `/api/status` (`paths.names_file`).
    settings: Settings,
}

/// The headers every page answer carries: nothing cached, nothing framed, no referrer,
/// and a policy that lets the inline page talk to this origin only.
const PAGE_HEADERS: [&str; 4] = [
    "Cache-Control: no-store",
    "X-Content-Type-Options: nosniff",
    "Referrer-Policy: no-referrer",
    "X-Frame-Options: DENY",
];
const CSP: &str = "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; \
                   style-src 'unsafe-inline'; connect-src 'self'; img-src data:; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

impl Site {
    /// The site for these settings; starts the events thread.
    pub fn new(settings: &Settings, snapshot: SnapshotFn) -> std::io::Result<Site> {
        let credentials = match (&settings.web.username, &settings.web.password) {
            (Some(u), Some(p)) => Some(md5(format!("{u}:{p}").as_bytes())),
            _ => None,
        };
        let grace = settings.monitor.grace;
        let hub = events::Hub::start(snapshot.clone(), grace)?;
        Ok(Site {
            page: build_page(settings).into_bytes(),
            credentials,
            snapshot,
            hub,
            settings: settings.clone(),
        })
    }

    fn authorized(&self, req: &Request) -> bool {
        let Some(want) = &self.credentials else {
            return true;
        };
        let given = req
            .header("authorization")
            .and_then(|v| {
                let (scheme, b64) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("basic").then_some(b64.trim())
            })
            .and_then(|b64| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(b64).ok()
            })
            .unwrap_or_default();
        ct_eq(&md5(&given), want)
    }
}

fn md5(b: &[u8]) -> [u8; 16] {
    Md5::digest(b).into()
}

/// Equal without an early exit.
pub fn ct_eq(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The page with its settings: the player URL template and the host name for the title.
/// No secret is in there (the credentials are the browser's business).
pub fn build_page(settings: &Settings) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let cfg = serde_json::json!({
        "player_url": settings.web.player_url,
        "host": host,
    });
    // `</` never appears inside the script: a value cannot close the element.
    let cfg = cfg.to_string().replace("</", "<\\/");
    PAGE.replace("/*MSM_CONFIG*/null", &cfg)
}

fn reply(status: u16, ctype: &'static str, body: Vec<u8>, head_only: bool) -> Answer {
    let mut headers: Vec<String> = PAGE_HEADERS.iter().map(|h| h.to_string()).collect();
    if ctype.starts_with("text/html") {
        headers.push(CSP.into());
    }
    Answer::Reply(Reply {
        status,
        ctype,
        headers,
        body,
        head_only,
    })
}

/// The paths of the page; anything else outside `/api/` falls through to the listener's
/// 404 (an unknown `/api/…` path is 404 too, but only after the auth check).
pub const PATHS: [&str; 3] = ["/", "/api/status", "/api/events"];

impl Pages for Site {
    fn answer(&self, req: &Request) -> Option<Answer> {
        let known = PATHS.contains(&req.path);
        if !known && !req.path.starts_with("/api/") {
            return None;
        }
        // Who may not look learns nothing, not even which methods exist.
        if !self.authorized(req) {
            let mut r = match reply(
                401,
                "text/plain",
                b"authentication required\n".to_vec(),
                false,
            ) {
                Answer::Reply(r) => r,
                Answer::Stream(_) => unreachable!(),
            };
            r.headers.push(
                "WWW-Authenticate: Basic realm=\"mediamtx-stream-manager\", charset=\"UTF-8\""
                    .into(),
            );
            return Some(Answer::Reply(r));
        }
        if !known {
            return Some(reply(404, "text/plain", b"not found\n".to_vec(), false));
        }
        let head_only = match req.method {
            "GET" => false,
            "HEAD" => true,
            _ => {
                let mut r = match reply(405, "text/plain", b"read-only: GET only\n".to_vec(), false)
                {
                    Answer::Reply(r) => r,
                    Answer::Stream(_) => unreachable!(),
                };
                r.headers.push("Allow: GET, HEAD".into());
                return Some(Answer::Reply(r));
            }
        };
        Some(match req.path {
            "/" => reply(
                200,
                "text/html; charset=utf-8",
                self.page.clone(),
                head_only,
            ),
            "/api/status" => {
                let snap = (self.snapshot)();
                let v = crate::status::json(&self.settings, &snap);
                let body = serde_json::to_vec_pretty(&v).unwrap_or_default();
                reply(200, "application/json", body, head_only)
            }
            _ if head_only => reply(200, "text/event-stream", Vec::new(), true),
            _ => {
                let hub = self.hub.clone();
                Answer::Stream(Box::new(move |s| hub.admit(s)))
            }
        })
    }
}

#[cfg(test)]
mod tests;
