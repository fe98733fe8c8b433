//! The small HTTP/1.1 listener on `metrics.listen`: `GET /metrics` (and `HEAD`), one
//! answer per connection. Its slot policy keeps slow clients from ever refusing a scrape
//! (docs/metrics.md, "The listener's connection slots").

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
}
