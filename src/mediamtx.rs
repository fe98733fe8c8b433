//! MediaMTX control-API client (SPEC §7 MediaMTX bullet, §8 step 3).
//!
//! Only the three read-only endpoints the supervisor needs. Models are parsed by hand
//! from `serde_json::Value` so that every MediaMTX release still deployed (v1.2 … v1.20)
//! is understood: `available` else `ready`, `inboundBytes` else `bytesReceived`,
//! `tracks2[].codec` else `tracks`, unknown fields ignored, missing ones defaulted.
//! Credentials go into an `Authorization` header only; no error text ever contains them.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

/// MediaMTX sleeps a random 0–4 s before answering a wrong login; stay above that.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(6);
/// MediaMTX's own default page size for list endpoints.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Upper bound on pages fetched in one `list_paths` (a runaway server cannot loop us).
const MAX_PAGES: u64 = 10_000;
/// Largest answer body we accept (a 100-item page is a few tens of KiB).
const MAX_BODY: u64 = 8 * 1024 * 1024;

/// Identity of the server, from `GET /v3/info` (absent fields stay `None`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Info {
    pub version: Option<String>,
    pub started: Option<String>,
}

/// One MediaMTX path, normalised across server versions.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PathInfo {
    pub name: String,
    /// `available` (v1.16+), else `ready`: a publisher is on the path.
    pub available: bool,
    /// `inboundBytes` (v1.17+), else `bytesReceived`: must grow while we publish.
    pub inbound_bytes: u64,
    /// `source.type`, e.g. `rtspSession`; `None` when nobody publishes.
    pub source_type: Option<String>,
    /// `source.id`: changes when another publisher replaced ours.
    pub source_id: Option<String>,
    /// Number of readers (length of the `readers` array).
    pub readers: usize,
    /// Codec names, e.g. `["Opus"]`.
    pub tracks: Vec<String>,
}

/// Why an API call failed, classified so callers can react (exit 7, retry, warn).
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// Nothing listens on the API address.
    Refused,
    /// No complete answer within `mediamtx.timeout`.
    Timeout,
    /// 401: credentials missing or wrong.
    Unauthorized,
    /// 404 on an endpoint (not on a path lookup, which is `Ok(None)`); carries the request.
    NotFound(String),
    /// The answer was not the JSON we expect; carries request and parse error.
    Malformed(String),
    /// Any other HTTP status; carries the status and request plus the server's error text.
    Http(u16, String),
    /// Everything else (DNS, bad URL, TLS, I/O).
    Other(String),
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Refused => f.write_str(
                "connection refused (is MediaMTX running with api: yes? check mediamtx.api_url)",
            ),
            ApiError::Timeout => f.write_str("no answer within mediamtx.timeout"),
            ApiError::Unauthorized => f.write_str(
                "401 authentication error: check mediamtx.username/password and \
                 authInternalUsers (action: api) in mediamtx.yml",
            ),
            ApiError::NotFound(what) => write!(f, "404 not found: {what}"),
            ApiError::Malformed(why) => write!(f, "malformed answer: {why}"),
            ApiError::Http(code, why) => write!(f, "HTTP {code}: {why}"),
            ApiError::Other(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ApiError {}

/// A blocking client for one MediaMTX instance; cheap to clone, safe to share.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    /// `scheme://host:port[/prefix]` without credentials and without a trailing `/`.
    base: String,
    /// Precomputed `Basic …` header value, if credentials are configured.
    auth: Option<String>,
    page_size: usize,
}

impl fmt::Debug for Client {
    // Hand-written so the Authorization value never reaches a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("auth", &self.auth.as_ref().map(|_| "***"))
            .field("page_size", &self.page_size)
            .finish()
    }
}

impl Client {
    /// Build a client from `[mediamtx]`. Credentials embedded in `api_url`
    /// (`http://user:pass@host`) are used when `username` is not set, and stripped from the URL.
    pub fn new(cfg: &crate::config::Mediamtx) -> Client {
        let (base, url_user, url_pass) = split_userinfo(cfg.api_url.trim());
        let (user, pass) = match &cfg.username {
            Some(u) => (Some(u.clone()), cfg.password.clone()),
            None => (url_user, url_pass),
        };
        let auth = user.map(|u| {
            let raw = format!("{u}:{}", pass.unwrap_or_default());
            format!("Basic {}", base64(raw.as_bytes()))
        });
        let timeout = if cfg.timeout.is_zero() {
            DEFAULT_TIMEOUT
        } else {
            cfg.timeout
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .max_redirects(0)
            .user_agent(concat!(
                "mediamtx-stream-manager/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .new_agent();
        Client {
            agent,
            base: base.trim_end_matches('/').to_string(),
            auth,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }

    /// Use another `itemsPerPage` for `list_paths` (tests page with small numbers).
    pub fn with_page_size(mut self, n: usize) -> Client {
        self.page_size = n.max(1);
        self
    }

    /// The API base URL this client talks to (never contains credentials).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /v3/info`; servers before v1.15.2 answer 404 there, so then prove
    /// liveness with a one-item path list and report an unknown version.
    pub fn info(&self) -> Result<Info, ApiError> {
        match self.get_json("/v3/info") {
            Ok(v) => parse_info(&v).map_err(|e| ApiError::Malformed(format!("GET /v3/info: {e}"))),
            Err(ApiError::NotFound(_)) => {
                let path = "/v3/paths/list?itemsPerPage=1&page=0";
                match self.get_json(path) {
                    Ok(v) => {
                        parse_list(&v)
                            .map_err(|e| ApiError::Malformed(format!("GET {path}: {e}")))?;
                        Ok(Info {
                            version: None,
                            started: None,
                        })
                    }
                    Err(ApiError::NotFound(what)) => Err(ApiError::NotFound(format!(
                        "{what} (no /v3 API: MediaMTX older than v1.2?)"
                    ))),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Every path, following `pageCount` across pages; a name seen twice (the list
    /// shifted while paging) is kept once.
    pub fn list_paths(&self) -> Result<Vec<PathInfo>, ApiError> {
        let mut out: Vec<PathInfo> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut page: u64 = 0;
        loop {
            let path = format!("/v3/paths/list?itemsPerPage={}&page={page}", self.page_size);
            let v = self.get_json(&path)?;
            let (items, page_count) =
                parse_list(&v).map_err(|e| ApiError::Malformed(format!("GET {path}: {e}")))?;
            let empty = items.is_empty();
            for p in items {
                if seen.insert(p.name.clone()) {
                    out.push(p);
                }
            }
            page += 1;
            if empty || page >= page_count.min(MAX_PAGES) {
                break;
            }
        }
        Ok(out)
    }

    /// `GET /v3/paths/get/{name}`; a JSON 404 ("path not found": nobody publishes
    /// and it is not configured) is `Ok(None)`, a 404 without JSON means no such endpoint.
    pub fn get_path(&self, name: &str) -> Result<Option<PathInfo>, ApiError> {
        let path = format!("/v3/paths/get/{}", percent_encode(name));
        let (status, body) = self.fetch(&path)?;
        if status == 404 {
            return match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Object(_)) => Ok(None),
                _ => Err(ApiError::NotFound(format!("GET {path}"))),
            };
        }
        let v = classify(status, &path, &body)?;
        parse_path(&v)
            .map(Some)
            .map_err(|e| ApiError::Malformed(format!("GET {path}: {e}")))
    }

    /// GET and parse JSON, mapping non-2xx statuses to errors.
    fn get_json(&self, path: &str) -> Result<Value, ApiError> {
        let (status, body) = self.fetch(path)?;
        classify(status, path, &body)
    }

    /// One GET; returns status and body, or a transport-level error.
    fn fetch(&self, path: &str) -> Result<(u16, Vec<u8>), ApiError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.agent.get(&url).header("Accept", "application/json");
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a.as_str());
        }
        let mut resp = req.call().map_err(|e| transport_error(e, path))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| transport_error(e, path))?;
        Ok((status, body))
    }
}

/// Map a status and body to JSON or the matching error.
fn classify(status: u16, path: &str, body: &[u8]) -> Result<Value, ApiError> {
    match status {
        200..=299 => serde_json::from_slice(body)
            .map_err(|e| ApiError::Malformed(format!("GET {path}: invalid JSON: {e}"))),
        401 => Err(ApiError::Unauthorized),
        404 => Err(ApiError::NotFound(format!("GET {path}"))),
        _ => Err(ApiError::Http(
            status,
            format!("GET {path}: {}", server_message(body)),
        )),
    }
}

/// The server's `error` field, else the first line of the body, printable and short.
fn server_message(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(v) => match v.get("error").and_then(Value::as_str) {
            Some(s) => s.to_string(),
            None => String::from_utf8_lossy(body).into_owned(),
        },
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let line: String = text
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    if line.trim().is_empty() {
        "(empty answer)".into()
    } else {
        line.trim().to_string()
    }
}

/// Classify a ureq failure; the URL in ureq's text never carries credentials
/// because `Client::new` strips them.
fn transport_error(e: ureq::Error, path: &str) -> ApiError {
    use std::io::ErrorKind;
    match e {
        ureq::Error::Timeout(_) => ApiError::Timeout,
        ureq::Error::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused => ApiError::Refused,
            ErrorKind::TimedOut | ErrorKind::WouldBlock => ApiError::Timeout,
            ErrorKind::InvalidData => {
                ApiError::Malformed(format!("GET {path}: {}", crate::util::io_reason(&io)))
            }
            _ => ApiError::Other(format!("GET {path}: {}", crate::util::io_reason(&io))),
        },
        ureq::Error::Protocol(p) => ApiError::Malformed(format!("GET {path}: not HTTP: {p}")),
        ureq::Error::HostNotFound => {
            ApiError::Other("host in mediamtx.api_url not found (DNS)".into())
        }
        ureq::Error::BadUri(u) => ApiError::Other(format!("invalid mediamtx.api_url: {u}")),
        ureq::Error::Tls(_) | ureq::Error::TlsRequired => ApiError::Other(
            "https is not supported for mediamtx.api_url (built without TLS); use http://".into(),
        ),
        ureq::Error::ConnectionFailed => ApiError::Refused,
        ureq::Error::LargeResponseHeader(..) | ureq::Error::BodyExceedsLimit(_) => {
            ApiError::Malformed(format!("GET {path}: answer too large"))
        }
        other => ApiError::Other(format!("GET {path}: {other}")),
    }
}

/// Parse `{"version":…,"started":…}`; both optional, but it must be an object.
pub fn parse_info(v: &Value) -> Result<Info, String> {
    let o = v.as_object().ok_or("expected a JSON object")?;
    let s = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(Info {
        version: s("version"),
        started: s("started"),
    })
}

/// Parse one page of `/v3/paths/list`: the items and `pageCount` (1 when absent).
pub fn parse_list(v: &Value) -> Result<(Vec<PathInfo>, u64), String> {
    let o = v.as_object().ok_or("expected a JSON object")?;
    let items = match o.get("items") {
        Some(Value::Array(a)) => a,
        Some(Value::Null) | None => return Ok((Vec::new(), 1)),
        Some(_) => return Err("\"items\" is not an array".into()),
    };
    let page_count = o.get("pageCount").and_then(as_u64).unwrap_or(1);
    let paths = items
        .iter()
        .enumerate()
        .map(|(i, it)| parse_path(it).map_err(|e| format!("items[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((paths, page_count))
}

/// Parse one `Path` object of any supported MediaMTX version.
pub fn parse_path(v: &Value) -> Result<PathInfo, String> {
    let o = v.as_object().ok_or("expected a JSON object")?;
    let name = o
        .get("name")
        .and_then(Value::as_str)
        .ok_or("path without a \"name\"")?
        .to_string();
    let flag = |k: &str| o.get(k).and_then(Value::as_bool);
    let available = flag("available").or_else(|| flag("ready")).unwrap_or(false);
    let inbound_bytes = o
        .get("inboundBytes")
        .and_then(as_u64)
        .or_else(|| o.get("bytesReceived").and_then(as_u64))
        .unwrap_or(0);
    let source = o.get("source").and_then(Value::as_object);
    let src = |k: &str| {
        source
            .and_then(|s| s.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let readers = match o.get("readers") {
        Some(Value::Array(a)) => a.len(),
        Some(n) => as_u64(n).map(|n| n as usize).unwrap_or(0),
        None => 0,
    };
    let tracks2: Vec<String> = o
        .get("tracks2")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.get("codec").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let tracks = if tracks2.is_empty() {
        o.get("tracks")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    } else {
        tracks2
    };
    Ok(PathInfo {
        name,
        available,
        inbound_bytes,
        source_type: src("type"),
        source_id: src("id"),
        readers,
        tracks,
    })
}

/// A non-negative JSON integer (floats from odd encoders are truncated).
fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f as u64)
    })
}

/// Split `scheme://user:pass@rest` into (`scheme://rest`, user, pass).
fn split_userinfo(url: &str) -> (String, Option<String>, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None, None);
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..host_end].rfind('@') else {
        return (url.to_string(), None, None);
    };
    let userinfo = &rest[..at];
    let (u, p) = match userinfo.split_once(':') {
        Some((u, p)) => (percent_decode(u), Some(percent_decode(p))),
        None => (percent_decode(userinfo), None),
    };
    (format!("{scheme}://{}", &rest[at + 1..]), Some(u), p)
}

/// Everything except RFC 3986 unreserved characters is escaped (so `/` in a path
/// name becomes `%2F` and stays one path segment).
const NOT_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encode one path segment.
pub fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}

/// Decode `%XX` escapes (two hex digits, nothing else); malformed escapes are kept literally.
pub fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Standard base64 with padding (for the Basic credentials header).
fn base64(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn base64_table() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("user:pa:ss", "dXNlcjpwYTpzcw=="),
        ] {
            assert_eq!(base64(i.as_bytes()), o, "{i}");
        }
    }

    #[test]
    fn percent_table() {
        for (i, o) in [
            ("blue-yeti", "blue-yeti"),
            ("a/b c", "a%2Fb%20c"),
            ("ä", "%C3%A4"),
            ("x~._", "x~._"),
        ] {
            assert_eq!(percent_encode(i), o);
            assert_eq!(percent_decode(o), i);
        }
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        // A sign is not a hex digit: `from_str_radix` used to turn "%+1" into U+0001.
        for kept in ["%+1", "%-1", "%+f", "% 1", "%1"] {
            assert_eq!(percent_decode(kept), kept);
        }
        assert_eq!(percent_decode("%2b1"), "+1");
    }

    #[test]
    fn userinfo_table() {
        let cases = [
            ("http://h:9997", ("http://h:9997", None, None)),
            (
                "http://u:p%40ss@h:9997/x",
                ("http://h:9997/x", Some("u"), Some("p@ss")),
            ),
            ("http://u@h", ("http://h", Some("u"), None)),
            ("http://h/a@b", ("http://h/a@b", None, None)),
        ];
        for (url, (b, u, p)) in cases {
            let (gb, gu, gp) = split_userinfo(url);
            assert_eq!(gb, b, "{url}");
            assert_eq!(gu.as_deref(), u, "{url}");
            assert_eq!(gp.as_deref(), p, "{url}");
        }
    }

    #[test]
    fn path_versions_table() {
        let v120 = json!({"name":"a","source":{"type":"rtspSession","id":"s1"},
            "available":true,"online":true,"ready":false,
            "tracks2":[{"codec":"Opus","codecProps":{"channelCount":2}}],"tracks":["Other"],
            "inboundBytes":10,"bytesReceived":3,"readers":[{},{}],"extra":{"x":1}});
        let v116 = json!({"name":"a","source":{"type":"rtspSession","id":"s1"},
            "available":true,"ready":true,"tracks":["Opus"],"bytesReceived":10,"readers":[{},{}]});
        let v19 = json!({"name":"a","source":{"type":"rtspSession","id":"s1"},
            "ready":true,"tracks":["Opus"],"bytesReceived":10,"readers":[{},{}]});
        let want = PathInfo {
            name: "a".into(),
            available: true,
            inbound_bytes: 10,
            source_type: Some("rtspSession".into()),
            source_id: Some("s1".into()),
            readers: 2,
            tracks: vec!["Opus".into()],
        };
        for v in [v120, v116, v19] {
            assert_eq!(parse_path(&v).unwrap(), want, "{v}");
        }
        let bare = parse_path(&json!({"name":"b","source":null})).unwrap();
        assert!(!bare.available && bare.inbound_bytes == 0 && bare.source_id.is_none());
        assert!(bare.tracks.is_empty() && bare.readers == 0);
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        for v in [
            json!([]),
            json!({"source":null}),
            json!({"name":5}),
            json!("x"),
        ] {
            assert!(parse_path(&v).is_err(), "{v}");
        }
        assert!(parse_list(&json!({"items":5})).is_err());
        assert!(parse_list(&json!({"items":[{"nope":1}]}))
            .unwrap_err()
            .contains("items[0]"));
        assert_eq!(parse_list(&json!({})).unwrap(), (vec![], 1));
        assert_eq!(parse_list(&json!({"items":[],"pageCount":3})).unwrap().1, 3);
        assert!(parse_info(&json!(1)).is_err());
        assert_eq!(
            parse_info(&json!({"version":"v1.20.1"})).unwrap().version,
            Some("v1.20.1".into())
        );
    }

    #[test]
    fn server_message_table() {
        for (body, want) in [
            (
                &br#"{"status":"error","error":"invalid page"}"#[..],
                "invalid page",
            ),
            (b"404 page not found\nmore", "404 page not found"),
            (b"", "(empty answer)"),
            (b"\x00\x01bad\x7f", "bad"),
        ] {
            assert_eq!(server_message(body), want);
        }
    }

    #[test]
    fn display_is_one_line_and_names_the_fix() {
        let e = ApiError::Unauthorized.to_string();
        assert!(e.contains("mediamtx.username/password") && e.contains("authInternalUsers"));
        for e in [
            ApiError::Refused,
            ApiError::Timeout,
            ApiError::NotFound("GET /x".into()),
            ApiError::Malformed("m".into()),
            ApiError::Http(500, "x".into()),
            ApiError::Other("o".into()),
        ] {
            assert!(!e.to_string().contains('\n'));
        }
    }
}
