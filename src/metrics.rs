//! Prometheus text exposition (format 0.0.4): a builder, an atomic textfile writer for
//! node_exporter's textfile collector, a tiny `GET /metrics` server, and a strict checker
//! that tests use to validate whatever the supervisor exposes.
//!
//! No client library: the format is a handful of lines and the product needs no
//! registry, only "render the current snapshot".

use std::collections::HashSet;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Metric family type, as written on the `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

#[derive(Debug, Clone)]
struct Family {
    name: String,
    help: String,
    kind: Kind,
    /// Rendered `{a="b"}` label sets (possibly empty) and values, in insertion order.
    samples: Vec<(String, f64)>,
}

/// One scrape's worth of metrics. Families keep first-insertion order; samples of a
/// family are grouped under one HELP/TYPE; adding the same series twice keeps the last
/// value, so the output never has duplicate series.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    families: Vec<Family>,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Add a gauge sample (a value that goes up and down).
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.add(Kind::Gauge, name, help, labels, value);
    }

    /// Add a counter sample (monotonic; by convention named `*_total`).
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.add(Kind::Counter, name, help, labels, value);
    }

    /// Invalid names or a type clash are programming errors, but never worth a panic in a
    /// 24/7 supervisor: the sample is dropped with a warning.
    fn add(&mut self, kind: Kind, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        if !valid_metric_name(name) {
            log::warn!("metrics: invalid metric name {name:?}; sample dropped");
            return;
        }
        let mut seen = HashSet::new();
        for (k, _) in labels {
            if !valid_label_name(k) || !seen.insert(*k) {
                log::warn!("metrics: invalid or repeated label {k:?} on {name}; sample dropped");
                return;
            }
        }
        let rendered = render_labels(labels);
        let fam = match self.families.iter_mut().position(|f| f.name == name) {
            Some(i) => &mut self.families[i],
            None => {
                self.families.push(Family {
                    name: name.to_string(),
                    help: help.to_string(),
                    kind,
                    samples: Vec::new(),
                });
                let last = self.families.len() - 1;
                &mut self.families[last]
            }
        };
        if fam.kind != kind {
            log::warn!(
                "metrics: {name} is a {} and cannot take a {} sample; dropped",
                fam.kind.as_str(),
                kind.as_str()
            );
            return;
        }
        match fam.samples.iter_mut().find(|(l, _)| *l == rendered) {
            Some(s) => s.1 = value,
            None => fam.samples.push((rendered, value)),
        }
    }

    /// The text exposition; empty string when there is nothing to expose.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.families {
            let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(&f.help));
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.as_str());
            for (labels, v) in &f.samples {
                let _ = writeln!(out, "{}{} {}", f.name, labels, format_value(*v));
            }
        }
        out
    }
}

/// `{a="x",b="y"}` with values escaped, or "" for no labels.
fn render_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// Label values escape backslash, double quote and newline.
pub fn escape_label_value(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

/// HELP text escapes backslash and newline only.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Go-compatible float text: `NaN`, `+Inf`, `-Inf`, else shortest decimal.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn valid_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, and not `__`-prefixed (reserved for Prometheus).
pub fn valid_label_name(s: &str) -> bool {
    let mut c = s.chars();
    !s.starts_with("__")
        && matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// Replace `path` atomically (temp file in the same directory, then rename) so
/// node_exporter never reads half a file; mode 0644 so it can read it at all. The temp
/// name does not end in `.prom`, so the collector ignores it.
pub fn write_textfile(path: &Path, text: &str) -> io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: metrics textfile path has no file name", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        // The umask may have narrowed the mode at create time.
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Largest request head accepted; a scrape request is a few hundred bytes.
const MAX_REQUEST: usize = 8 * 1024;
/// The whole request head (request line and headers) must arrive within this, however
/// it is dribbled: the deadline is per request, not per `read()`.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections still sending their request head. When all are taken, a new connection
/// takes the slot of the one that has been reading longest (it is shut down): a scrape
/// sends its head at once and is answered within milliseconds, so only slow clients are
/// ever the oldest, and any number of them cannot starve a scrape.
pub const MAX_READING: usize = 32;
/// Connections whose request was read and which are being answered. A short answer ends
/// in milliseconds (at worst `WRITE_TIMEOUT` for a client that stops reading a body
/// larger than its socket buffer); over this, the answer is 503.
const MAX_ANSWERING: usize = 16;
/// Stack of a connection thread: it parses a head and writes one answer.
const CONN_STACK: usize = 256 * 1024;

// Slot policy: a connection is only ever in one class. "Reading" (no complete head yet)
// is bounded by MAX_READING with oldest-first eviction and HEAD_DEADLINE; "answering"
// (short answers) by MAX_ANSWERING; long-lived streams (the status page's server-sent
// events, `Answer::Stream`) leave both classes once their head is read and are capped by
// whoever takes the socket (`crate::web`), so open pages never hold a reading or
// answering slot and a flood of them cannot refuse a scrape.

/// A parsed request line and the raw head (for headers such as `Authorization`).
pub struct Request<'a> {
    pub method: &'a str,
    /// The target without its query string.
    pub path: &'a str,
    pub head: &'a str,
}

impl Request<'_> {
    /// The first header named `name` (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

/// A complete short answer.
pub struct Reply {
    pub status: u16,
    pub ctype: &'static str,
    /// Extra header lines, without CRLF.
    pub headers: Vec<String>,
    pub body: Vec<u8>,
    pub head_only: bool,
}

/// What other pages on this listener answer.
pub enum Answer {
    /// Written at once (holds an answering slot while written).
    Reply(Reply),
    /// A long-lived stream: the socket is handed over once its head has been read.
    Stream(Box<dyn FnOnce(TcpStream) + Send>),
}

/// Pages served beside `/metrics` (the status page, `crate::web`).
pub trait Pages: Send + Sync {
    /// `None` when `req` is none of its paths (then 404 as before).
    fn answer(&self, req: &Request) -> Option<Answer>;
}

type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Bind `listen` and serve `GET /metrics` from a background thread.
pub fn serve(listen: SocketAddr, render: Render) -> io::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(listen)?;
    serve_with(listener, render, None)
}

/// The connections still reading their head, oldest first: (id, a handle to shut it down).
#[derive(Default)]
struct Slots {
    reading: Mutex<VecDeque<(u64, TcpStream)>>,
    answering: AtomicUsize,
}

impl Slots {
    /// Admit connection `id`, evicting the longest-reading one when all slots are taken.
    fn admit(&self, id: u64, handle: TcpStream) {
        let mut r = self.reading.lock().unwrap_or_else(|e| e.into_inner());
        while r.len() >= MAX_READING {
            if let Some((_, old)) = r.pop_front() {
                let _ = old.shutdown(Shutdown::Both);
            }
        }
        r.push_back((id, handle));
    }

    fn done_reading(&self, id: u64) {
        let mut r = self.reading.lock().unwrap_or_else(|e| e.into_inner());
        r.retain(|(i, _)| *i != id);
    }
}

/// Serve `/metrics` on an already bound listener (lets callers and tests bind port 0 first).
pub fn serve_listener(listener: TcpListener, render: Render) -> io::Result<JoinHandle<()>> {
    serve_with(listener, render, None)
}

/// `serve_listener` with other pages beside `/metrics`.
pub fn serve_with(
    listener: TcpListener,
    render: Render,
    pages: Option<Arc<dyn Pages>>,
) -> io::Result<JoinHandle<()>> {
    let slots = Arc::new(Slots::default());
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            for id in 0u64.. {
                let stream = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(e) => {
                        log::debug!("metrics: accept: {e}");
                        // EMFILE and friends: do not spin.
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                };
                let Ok(handle) = stream.try_clone() else {
                    continue;
                };
                slots.admit(id, handle);
                let (render, slots2, pages) = (render.clone(), slots.clone(), pages.clone());
                let spawned = std::thread::Builder::new()
                    .name("metrics-conn".into())
                    .stack_size(CONN_STACK)
                    .spawn(move || {
                        handle_connection(stream, id, &slots2, &*render, pages.as_deref())
                    });
                if spawned.is_err() {
                    slots.done_reading(id);
                }
            }
        })
}

/// Answer one request and close; every failure just drops the connection.
fn handle_connection(
    mut s: TcpStream,
    id: u64,
    slots: &Slots,
    render: &(dyn Fn() -> String + Send + Sync),
    pages: Option<&dyn Pages>,
) {
    let head = read_head(&mut s, Instant::now() + HEAD_DEADLINE);
    slots.done_reading(id);
    let _ = s.set_write_timeout(Some(WRITE_TIMEOUT));
    let head = match head {
        Ok(Some(h)) => h,
        Ok(None) => {
            let _ = respond(&mut s, 431, "text/plain", b"request too large\n", false);
            return;
        }
        Err(_) => return,
    };
    let answer = pages.and_then(|p| {
        let req = parse_request(&head)?;
        (req.path != "/metrics").then(|| p.answer(&req))?
    });
    if let Some(Answer::Stream(take)) = answer {
        take(s);
        return;
    }
    if slots.answering.fetch_add(1, Ordering::SeqCst) >= MAX_ANSWERING {
        slots.answering.fetch_sub(1, Ordering::SeqCst);
        let _ = respond(&mut s, 503, "text/plain", b"busy, try again\n", false);
        return;
    }
    match answer {
        Some(Answer::Reply(r)) => {
            let _ = respond_with(&mut s, &r);
        }
        _ => {
            let (status, ctype, body, head_only) = route(&head, render);
            let _ = respond(&mut s, status, ctype, body.as_bytes(), head_only);
        }
    }
    slots.answering.fetch_sub(1, Ordering::SeqCst);
}

/// The request line of a head, when it is one (`METHOD target HTTP/1.x`).
fn parse_request(head: &str) -> Option<Request<'_>> {
    let mut parts = head.lines().next()?.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if !version.starts_with("HTTP/1.") || method.is_empty() {
        return None;
    }
    Some(Request {
        method,
        path: target.split('?').next().unwrap_or(""),
        head,
    })
}

/// Decide the answer for a request head: (status, content type, body, HEAD?).
fn route(
    head: &str,
    render: &(dyn Fn() -> String + Send + Sync),
) -> (u16, &'static str, String, bool) {
    let mut parts = head.lines().next().unwrap_or("").split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let ok_version = matches!(version, Some(v) if v.starts_with("HTTP/1."));
    let (Some(method), Some(target), true) = (method, target, ok_version) else {
        return (400, "text/plain", "bad request\n".into(), false);
    };
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let text = std::panic::catch_unwind(std::panic::AssertUnwindSafe(render));
            match text {
                Ok(t) => (
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    t,
                    head_only,
                ),
                Err(_) => (500, "text/plain", "render failed\n".into(), head_only),
            }
        }
        _ => (
            404,
            "text/plain",
            "not found; try /metrics\n".into(),
            head_only,
        ),
    }
}

/// Read up to the blank line by `deadline`; `Ok(None)` when the head exceeds
/// `MAX_REQUEST`.
fn read_head(s: &mut TcpStream, deadline: Instant) -> io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        s.set_read_timeout(Some(left))?;
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_head_end(&buf) {
            return Ok(Some(String::from_utf8_lossy(&buf[..end]).into_owned()));
        }
        if buf.len() > MAX_REQUEST {
            return Ok(None);
        }
    }
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| b.windows(2).position(|w| w == b"\n\n"))
}

fn respond(
    s: &mut TcpStream,
    status: u16,
    ctype: &'static str,
    body: &[u8],
    head_only: bool,
) -> io::Result<()> {
    respond_with(
        s,
        &Reply {
            status,
            ctype,
            headers: Vec::new(),
            body: body.to_vec(),
            head_only,
        },
    )
}

/// The reason phrase of the status codes this listener answers.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

fn respond_with(s: &mut TcpStream, r: &Reply) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        reason(r.status),
        r.ctype,
        r.body.len()
    );
    for h in &r.headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    if !r.head_only {
        s.write_all(&r.body)?;
    }
    s.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_groups_escapes_and_dedups() {
        let mut e = Exposition::new();
        e.gauge("up", "Is it up.", &[("stream", "a")], 1.0);
        e.counter(
            "restarts_total",
            "Restarts.\nSecond \\ line",
            &[("stream", "a\"b\\c\nd")],
            3.0,
        );
        e.gauge("up", "ignored second help", &[("stream", "b")], 0.0);
        e.gauge("up", "", &[("stream", "a")], 2.0); // same series: replaced
        e.gauge("bad-name", "", &[], 1.0); // dropped
        e.gauge("x", "", &[("__reserved", "v")], 1.0); // dropped
        e.counter("up", "", &[], 1.0); // type clash: dropped
        e.gauge("nan", "", &[], f64::NAN);
        e.gauge("inf", "", &[], f64::NEG_INFINITY);
        let want = "\
# HELP up Is it up.
# TYPE up gauge
up{stream=\"a\"} 2
up{stream=\"b\"} 0
# HELP restarts_total Restarts.\\nSecond \\\\ line
# TYPE restarts_total counter
restarts_total{stream=\"a\\\"b\\\\c\\nd\"} 3
# HELP nan 
# TYPE nan gauge
nan NaN
# HELP inf 
# TYPE inf gauge
inf -Inf
";
        let got = e.render();
        assert_eq!(got, want);
        assert_eq!(Exposition::new().render(), "");
    }

    #[test]
    fn name_validation_table() {
        for (n, ok) in [
            ("a", true),
            ("_a:b_1", true),
            (":x", true),
            ("", false),
            ("1a", false),
            ("a-b", false),
            ("a b", false),
            ("ä", false),
        ] {
            assert_eq!(valid_metric_name(n), ok, "{n}");
        }
        for (n, ok) in [("a", true), ("_a1", true), ("a:b", false), ("__a", false)] {
            assert_eq!(valid_label_name(n), ok, "{n}");
        }
    }

    #[test]
    fn route_table() {
        let r = || "x 1\n".to_string();
        for (head, status, body) in [
            ("GET /metrics HTTP/1.1\r\nHost: x", 200, "x 1\n"),
            ("GET /metrics?foo=1 HTTP/1.0", 200, "x 1\n"),
            ("HEAD /metrics HTTP/1.1", 200, "x 1\n"),
            ("GET / HTTP/1.1", 404, "not found; try /metrics\n"),
            ("POST /metrics HTTP/1.1", 404, "not found; try /metrics\n"),
            ("GET /metrics", 400, "bad request\n"),
            ("\u{0}\u{1}garbage", 400, "bad request\n"),
            ("", 400, "bad request\n"),
        ] {
            let (s, _, b, _) = route(head, &r);
            assert_eq!((s, b.as_str()), (status, body), "{head:?}");
        }
        let boom = || -> String { panic!("render bug") };
        assert_eq!(route("GET /metrics HTTP/1.1", &boom).0, 500);
    }

    /// Clients that dribble their head one byte at a time, reconnecting whenever they are
    /// dropped, for as long as `stop` is false.
    pub(crate) fn slowloris(
        addr: SocketAddr,
        n: usize,
        every: Duration,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> Vec<JoinHandle<()>> {
        (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let Ok(mut c) = TcpStream::connect(addr) else {
                            std::thread::sleep(Duration::from_millis(50));
                            continue;
                        };
                        for b in b"GET /metrics HTTP/1.1\r\nHost: x\r\n".iter().cycle() {
                            if stop.load(Ordering::SeqCst) || c.write_all(&[*b]).is_err() {
                                break;
                            }
                            std::thread::sleep(every);
                        }
                    }
                })
            })
            .collect()
    }

    /// One scrape: its status code and how long it took.
    pub(crate) fn scrape(addr: SocketAddr) -> (String, Duration) {
        let t0 = Instant::now();
        let Ok(mut c) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            return ("connect failed".into(), t0.elapsed());
        };
        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        let status = out.lines().next().unwrap_or("empty reply").to_string();
        (status, t0.elapsed())
    }

    #[test]
    fn slow_clients_never_starve_a_scrape() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        serve_listener(l, Arc::new(|| "x 1\n".to_string())).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Twice as many dribblers as reading slots: eviction is exercised too.
        let clients = slowloris(
            addr,
            2 * MAX_READING,
            Duration::from_millis(200),
            stop.clone(),
        );
        std::thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        let mut worst = Duration::ZERO;
        while t0.elapsed() < HEAD_DEADLINE * 2 {
            let (status, took) = scrape(addr);
            assert!(
                status.starts_with("HTTP/1.1 200"),
                "{status} after {took:?}"
            );
            worst = worst.max(took);
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::SeqCst);
        for c in clients {
            let _ = c.join();
        }
        assert!(worst < Duration::from_secs(1), "worst scrape {worst:?}");
    }

    #[test]
    fn head_deadline_is_per_request_not_per_read() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        serve_listener(l, Arc::new(|| "x 1\n".to_string())).unwrap();
        let mut c = TcpStream::connect(addr).unwrap();
        let t0 = Instant::now();
        // One byte every 300 ms never trips a per-read timeout; the whole head must
        // still arrive within HEAD_DEADLINE or the connection is closed.
        let mut closed_after = None;
        for b in b"GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if c.write_all(&[*b]).is_err() {
                closed_after = Some(t0.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let closed_after = closed_after.expect("the server kept a 10 s head open");
        assert!(
            closed_after >= HEAD_DEADLINE && closed_after < HEAD_DEADLINE + Duration::from_secs(2),
            "{closed_after:?}"
        );
    }

    #[test]
    fn textfile_is_atomic_and_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mediamtx_audio.prom");
        write_textfile(&p, "# TYPE a gauge\na 1\n").unwrap();
        write_textfile(&p, "# TYPE a gauge\na 2\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "# TYPE a gauge\na 2\n"
        );
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temp file left behind");
        let missing = d.path().join("no/such/dir/x.prom");
        assert!(write_textfile(&missing, "").is_err());
    }
}
