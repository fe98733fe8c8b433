//! In-process stand-in for MediaMTX's control API (TESTING.md §4), faithful to
//! /work/shared/mediamtx/openapi.yaml and the README's per-version shapes.
//!
//! Serves `GET /v3/info`, `GET /v3/paths/list` (paged) and `GET /v3/paths/get/{name}`
//! on 127.0.0.1:0, one thread per connection, `Connection: close`. Everything is
//! scriptable from the test: paths, counters, readers, auth, faults, stop.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Which release's JSON shapes to serve (README "Field changes across versions").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `available`/`online`/`ready`, `inboundBytes` + `bytesReceived`, `tracks2` + `tracks`.
    V1_20,
    /// No `/v3/info` (404); `ready` and `bytesReceived` only.
    V1_9,
    /// `ready` plus `available`/`online`; `bytesReceived` only.
    V1_16,
}

/// A failure injected into every answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// 200 with a body that is not JSON.
    Garbage,
    /// Sleep this long before answering normally.
    Slow(Duration),
    /// Answer this HTTP status with a MediaMTX error body.
    Status(u16),
}

/// One request as the mock saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct MockRequest {
    pub method: String,
    pub path: String,
    /// Raw query string without `?` ("" when absent).
    pub query: String,
    pub authorization: Option<String>,
}

impl MockRequest {
    /// `path?query` as sent.
    pub fn target(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }
}

#[derive(Debug, Clone)]
struct MockPath {
    available: bool,
    inbound: u64,
    /// Added to `inbound` on every read while available (0 = frozen).
    grow: u64,
    source_id: Option<String>,
    readers: usize,
}

struct State {
    version: Version,
    paths: BTreeMap<String, MockPath>,
    /// (user, pass, delay before a 401 for wrong credentials)
    auth: Option<(String, String, Duration)>,
    fault: Fault,
    requests: Vec<MockRequest>,
    next_id: u64,
}

impl State {
    fn new_source_id(&mut self) -> String {
        self.next_id += 1;
        format!("5c2b3a9e-1d7f-4b11-9a55-{:012x}", self.next_id)
    }
}

/// A running mock; stops (and refuses connections) on `stop()` or drop.
pub struct MockMediamtx {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stopping: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

const TIME: &str = "2026-11-20T08:00:01Z";

fn lock(s: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panicking handler thread must not take every later assertion down with it.
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl MockMediamtx {
    /// Bind 127.0.0.1:0 and serve the given version's shapes.
    pub fn start(version: Version) -> MockMediamtx {
        let listener = TcpListener::bind("127.0.0.1:0").expect("mock mediamtx: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("mock mediamtx: local_addr");
        let state = Arc::new(Mutex::new(State {
            version,
            paths: BTreeMap::new(),
            auth: None,
            fault: Fault::None,
            requests: Vec::new(),
            next_id: 0,
        }));
        let stopping = Arc::new(AtomicBool::new(false));
        let (st, stop) = (state.clone(), stopping.clone());
        let accept = std::thread::Builder::new()
            .name("mock-mediamtx".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break; // the listener drops here: later connects are refused
                    }
                    let Ok(conn) = conn else { continue };
                    let (st, stop) = (st.clone(), stop.clone());
                    let _ = std::thread::Builder::new()
                        .name("mock-mediamtx-conn".into())
                        .spawn(move || handle(conn, &st, &stop));
                }
            })
            .expect("mock mediamtx: spawn");
        MockMediamtx {
            addr,
            state,
            stopping,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:<port>` for `[mediamtx] api_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Create or update a path; becoming available gives it a fresh publisher id.
    pub fn set_path(&self, name: &str, available: bool) {
        let mut s = lock(&self.state);
        let new_id = s.new_source_id();
        let p = s.paths.entry(name.to_string()).or_insert(MockPath {
            available: false,
            inbound: 0,
            grow: 0,
            source_id: None,
            readers: 0,
        });
        if available && !p.available {
            p.source_id = Some(new_id);
        }
        if !available {
            p.source_id = None;
        }
        p.available = available;
    }

    /// Make the inbound counter grow by `bytes_per_poll` on every read (while available).
    pub fn grow(&self, name: &str, bytes_per_poll: u64) {
        if let Some(p) = lock(&self.state).paths.get_mut(name) {
            p.grow = bytes_per_poll;
        }
    }

    /// Stop the counter: a publisher that hangs but stays connected.
    pub fn freeze(&self, name: &str) {
        self.grow(name, 0);
    }

    pub fn remove_path(&self, name: &str) {
        lock(&self.state).paths.remove(name);
    }

    /// Another publisher took over the path (MediaMTX replaces by default).
    pub fn set_source_id(&self, name: &str, id: &str) {
        if let Some(p) = lock(&self.state).paths.get_mut(name) {
            p.source_id = Some(id.to_string());
        }
    }

    pub fn set_readers(&self, name: &str, n: usize) {
        if let Some(p) = lock(&self.state).paths.get_mut(name) {
            p.readers = n;
        }
    }

    /// Current counter of a path (without growing it).
    pub fn inbound(&self, name: &str) -> Option<u64> {
        lock(&self.state).paths.get(name).map(|p| p.inbound)
    }

    /// Demand HTTP Basic `user:pass`; missing credentials get 401 at once (with
    /// `WWW-Authenticate`), wrong ones after `delay` like MediaMTX's brute-force pause.
    pub fn require_auth(&self, user: &str, pass: &str, delay: Duration) {
        lock(&self.state).auth = Some((user.into(), pass.into(), delay));
    }

    pub fn set_fault(&self, fault: Fault) {
        lock(&self.state).fault = fault;
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<MockRequest> {
        lock(&self.state).requests.clone()
    }

    pub fn request_count(&self) -> usize {
        lock(&self.state).requests.len()
    }

    /// Close the listener: from now on connections are refused.
    pub fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            // Wake the blocking accept so the thread sees the flag and drops the listener.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = h.join();
        }
    }
}

impl Drop for MockMediamtx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Read one request head, record it, answer it, close.
fn handle(mut conn: TcpStream, state: &Mutex<State>, stopping: &AtomicBool) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 64 * 1024 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("").to_string();
    let authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.trim().to_string());
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.clone(), String::new()),
    };
    let req = MockRequest {
        method,
        path,
        query,
        authorization,
    };
    let (fault, auth) = {
        let mut s = lock(state);
        s.requests.push(req.clone());
        (s.fault, s.auth.clone())
    };
    let answer = if let Some(a) = check_auth(&req, auth, stopping) {
        a
    } else {
        match fault {
            Fault::Garbage => Answer::json(200, "<html>not json {{{".into()),
            Fault::Status(code) => Answer::error(code, "mock fault"),
            Fault::Slow(d) => {
                sleep_unless_stopping(d, stopping);
                route(&req, &mut lock(state))
            }
            Fault::None => route(&req, &mut lock(state)),
        }
    };
    if stopping.load(Ordering::SeqCst) && matches!(fault, Fault::Slow(_)) {
        return; // a stopped server does not answer late
    }
    let _ = conn.write_all(&answer.bytes());
}

fn sleep_unless_stopping(d: Duration, stopping: &AtomicBool) {
    let end = Instant::now() + d;
    while Instant::now() < end && !stopping.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5).min(end - Instant::now()));
    }
}

/// MediaMTX's auth middleware runs before routing (404s are guarded too).
fn check_auth(
    req: &MockRequest,
    auth: Option<(String, String, Duration)>,
    stopping: &AtomicBool,
) -> Option<Answer> {
    let (user, pass, delay) = auth?;
    let want = format!("Basic {}", base64(format!("{user}:{pass}").as_bytes()));
    match &req.authorization {
        Some(got) if *got == want => None,
        Some(_) => {
            sleep_unless_stopping(delay, stopping);
            Some(Answer::error(401, "authentication error"))
        }
        None => {
            let mut a = Answer::error(401, "authentication error");
            a.extra = "WWW-Authenticate: Basic realm=\"mediamtx\"\r\n".into();
            Some(a)
        }
    }
}

struct Answer {
    status: u16,
    ctype: &'static str,
    extra: String,
    body: String,
}

impl Answer {
    fn json(status: u16, body: String) -> Answer {
        Answer {
            status,
            ctype: "application/json; charset=utf-8",
            extra: String::new(),
            body,
        }
    }

    fn error(status: u16, msg: &str) -> Answer {
        Answer::json(status, json!({"status":"error","error":msg}).to_string())
    }

    /// Gin's default for unknown routes.
    fn no_route() -> Answer {
        Answer {
            status: 404,
            ctype: "text/plain",
            extra: String::new(),
            body: "404 page not found".into(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            500 => "Internal Server Error",
            _ => "Status",
        };
        format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n{}",
            self.status,
            reason,
            self.ctype,
            self.body.len(),
            self.extra,
            self.body
        )
        .into_bytes()
    }
}

fn route(req: &MockRequest, s: &mut State) -> Answer {
    if req.method != "GET" {
        return Answer::no_route();
    }
    if req.path == "/v3/info" {
        return match s.version {
            Version::V1_9 => Answer::no_route(),
            Version::V1_16 => {
                Answer::json(200, json!({"version":"v1.16.3","started":TIME}).to_string())
            }
            Version::V1_20 => {
                Answer::json(200, json!({"version":"v1.20.1","started":TIME}).to_string())
            }
        };
    }
    if req.path == "/v3/paths/list" {
        return list(&req.query, s);
    }
    if let Some(raw) = req.path.strip_prefix("/v3/paths/get/") {
        let name = mediamtx_stream_manager::mediamtx::percent_decode(raw);
        let version = s.version;
        return match s.paths.get_mut(&name) {
            Some(p) => {
                let v = read_path(&name, p, version);
                Answer::json(200, v.to_string())
            }
            None if version == Version::V1_9 => {
                Answer::json(404, json!({"error":"path not found"}).to_string())
            }
            None => Answer::error(404, "path not found"),
        };
    }
    Answer::no_route()
}

/// `GET /v3/paths/list?itemsPerPage=&page=`: MediaMTX's pagination (defaults 100 and 0).
fn list(query: &str, s: &mut State) -> Answer {
    let mut per_page: u64 = 100;
    let mut page: u64 = 0;
    for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        let parsed = v.parse::<u64>().ok().filter(|n| *n < (1 << 31));
        match (k, parsed) {
            ("itemsPerPage", Some(n)) if n > 0 => per_page = n,
            ("itemsPerPage", _) => return Answer::error(400, "invalid 'itemsPerPage' parameter"),
            ("page", Some(n)) => page = n,
            ("page", None) => return Answer::error(400, "invalid 'page' parameter"),
            _ => {}
        }
    }
    let count = s.paths.len() as u64;
    let page_count = count.div_ceil(per_page);
    let version = s.version;
    let items: Vec<Value> = s
        .paths
        .iter_mut()
        .skip((page * per_page) as usize)
        .take(per_page as usize)
        .map(|(n, p)| read_path(n, p, version))
        .collect();
    Answer::json(
        200,
        json!({"itemCount":count,"pageCount":page_count,"items":items}).to_string(),
    )
}

/// Render one path in the version's shape; reading it advances a growing counter.
fn read_path(name: &str, p: &mut MockPath, v: Version) -> Value {
    if p.available {
        p.inbound = p.inbound.saturating_add(p.grow);
    }
    let source = match (&p.source_id, p.available) {
        (Some(id), true) => json!({"type":"rtspSession","id":id}),
        _ => Value::Null,
    };
    let time = if p.available {
        json!(TIME)
    } else {
        Value::Null
    };
    let tracks: Vec<&str> = if p.available { vec!["Opus"] } else { vec![] };
    let readers: Vec<Value> = (0..p.readers)
        .map(|i| json!({"type":"rtspSession","id":format!("aa12{i:04}")}))
        .collect();
    let mut o = json!({
        "name": name, "confName": "all_others", "source": source,
        "ready": p.available, "readyTime": time,
        "tracks": tracks, "bytesReceived": p.inbound, "bytesSent": 0, "readers": readers,
    });
    let m = o.as_object_mut().expect("json object");
    if v != Version::V1_9 {
        m.insert("available".into(), json!(p.available));
        m.insert("availableTime".into(), time.clone());
        m.insert("online".into(), json!(p.available));
        m.insert("onlineTime".into(), time);
    }
    if v == Version::V1_20 {
        let t2: Vec<Value> = tracks
            .iter()
            .map(|c| json!({"codec":c,"codecProps":{"channelCount":2,"sampleRate":48000}}))
            .collect();
        m.insert("tracks2".into(), json!(t2));
        m.insert("inboundBytes".into(), json!(p.inbound));
        m.insert("inboundFramesInError".into(), json!(0));
        m.insert("outboundBytes".into(), json!(0));
    }
    o
}

/// Standard base64 with padding (what a Basic header carries).
pub fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in input.chunks(3) {
        let v = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= c.len() {
                T[((v >> (18 - 6 * i)) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}
