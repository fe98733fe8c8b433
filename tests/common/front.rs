//! An RTSP server that fails dirty, for tests (TESTING.md §5): on a free 127.0.0.1 port,
//! switchable while the test runs between
//!
//! - `Hung`: accepts (the kernel does) and never answers nor reads;
//! - `Forward(port)`: answers `OPTIONS` itself, then forwards the session to a real
//!   receiver on `port` (a listen-mode ffmpeg takes exactly one connection: the
//!   supervisor's RTSP probe must not use it up, and a real MediaMTX would not mind);
//! - `Refuse`: a real RTSP server that refuses our publish (`OPTIONS` 200, anything else
//!   401).
//!
//! `pause()` makes every forwarded session stop reading from the publisher (the socket
//! buffers then fill up, as with a SIGSTOPped server) and new connections hang.
//! `Backlog` is a listener whose accept queue is full: connects never complete.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Hung,
    Forward(u16),
    Refuse,
}

#[derive(Default)]
struct Shared {
    paused: AtomicBool,
    stop: AtomicBool,
    /// Connections we hold open without answering.
    held: Mutex<Vec<TcpStream>>,
    /// Methods seen, in order (OPTIONS from probes and publishers, ANNOUNCE, ...), and when.
    methods: Mutex<Vec<(String, std::time::Instant)>>,
}

pub struct Front {
    pub port: u16,
    mode: Arc<Mutex<Mode>>,
    sh: Arc<Shared>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Front {
    pub fn start(mode: Mode) -> Front {
        Front::start_on(0, mode)
    }

    /// On a given port (0: any free one).
    pub fn start_on(port: u16, mode: Mode) -> Front {
        let l = TcpListener::bind(("127.0.0.1", port)).expect("bind front");
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let mode = Arc::new(Mutex::new(mode));
        let sh = Arc::new(Shared::default());
        let (m, s) = (mode.clone(), sh.clone());
        let accept = std::thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let now = *m.lock().unwrap();
                        let s = s.clone();
                        std::thread::spawn(move || serve(c, now, s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Front {
            port,
            mode,
            sh,
            accept: Some(accept),
        }
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}", self.port)
    }

    /// New connections get `mode`; sessions already forwarded go on.
    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Stop reading from every forwarded publisher; new connections hang.
    pub fn pause(&self) {
        self.sh.paused.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.sh.paused.store(false, Ordering::SeqCst);
    }

    /// RTSP methods received so far.
    pub fn methods(&self) -> Vec<String> {
        self.sh
            .methods
            .lock()
            .unwrap()
            .iter()
            .map(|m| m.0.clone())
            .collect()
    }

    /// When `method` was first received after `since` (RECORD: a publisher's session
    /// starts streaming).
    pub fn first_after(
        &self,
        method: &str,
        since: std::time::Instant,
    ) -> Option<std::time::Instant> {
        self.sh
            .methods
            .lock()
            .unwrap()
            .iter()
            .find(|m| m.0 == method && m.1 >= since)
            .map(|m| m.1)
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.sh.stop.store(true, Ordering::SeqCst);
        for c in self.sh.held.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        // The listener closes with its thread: afterwards the port refuses, and can be
        // bound again.
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// Read one request (head and, if any, body) from `c`; `None` at EOF.
fn request(c: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, String, Vec<u8>)> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).into_owned();
            let len: usize = header(&head, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < i + 4 + len {
                let n = c.read(&mut chunk).ok().filter(|n| *n > 0)?;
                buf.extend_from_slice(&chunk[..n]);
            }
            let raw: Vec<u8> = buf.drain(..i + 4 + len).collect();
            let method = head.split(' ').next().unwrap_or("").to_string();
            let cseq = header(&head, "cseq").unwrap_or_else(|| "0".into());
            return Some((method, cseq, raw));
        }
        let n = c.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
}

fn serve(mut c: TcpStream, mode: Mode, sh: Arc<Shared>) {
    if sh.paused.load(Ordering::SeqCst) || mode == Mode::Hung {
        sh.held.lock().unwrap().push(c);
        return;
    }
    let mut buf = Vec::new();
    let mut options: Vec<u8> = Vec::new();
    loop {
        let Some((method, cseq, raw)) = request(&mut c, &mut buf) else {
            return;
        };
        sh.methods
            .lock()
            .unwrap()
            .push((method.clone(), std::time::Instant::now()));
        if method == "OPTIONS" {
            options = raw;
            let reply = format!(
                "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n\
                 Public: DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, TEARDOWN, OPTIONS\r\n\r\n"
            );
            if c.write_all(reply.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        match mode {
            Mode::Refuse => {
                let reply = format!(
                    "RTSP/1.0 401 Unauthorized\r\nCSeq: {cseq}\r\n\
                     WWW-Authenticate: Basic realm=\"test\"\r\n\r\n"
                );
                if c.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
            Mode::Forward(up) => {
                let mut first = raw;
                first.extend_from_slice(&buf);
                forward(c, up, &options, first, sh);
                return;
            }
            Mode::Hung => return,
        }
    }
}

/// A listen-mode ffmpeg insists on CSeq 1 first: replay the publisher's `OPTIONS` (we
/// answered it already) and swallow the receiver's reply, then pass everything through.
fn forward(c: TcpStream, upstream: u16, options: &[u8], first: Vec<u8>, sh: Arc<Shared>) {
    let Ok(mut u) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    if !options.is_empty() {
        if u.write_all(options).is_err() {
            return;
        }
        let mut reply = Vec::new();
        let mut b = [0u8; 1];
        while !reply.ends_with(b"\r\n\r\n") {
            match u.read(&mut b) {
                Ok(1) => reply.push(b[0]),
                _ => return,
            }
        }
    }
    if u.write_all(&first).is_err() {
        return;
    }
    let (mut c2, mut u2) = (c.try_clone().unwrap(), u.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut u2, &mut c2);
    });
    let mut c = c;
    let _ = c.set_read_timeout(Some(Duration::from_millis(100)));
    let mut chunk = [0u8; 4096];
    while !sh.stop.load(Ordering::SeqCst) {
        if sh.paused.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match c.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                if chunk[..n].starts_with(b"RECORD ") {
                    let at = std::time::Instant::now();
                    sh.methods.lock().unwrap().push(("RECORD".into(), at));
                }
                if u.write_all(&chunk[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    let _ = c.shutdown(Shutdown::Both);
    let _ = u.shutdown(Shutdown::Both);
}

/// A listener with `listen(0)` that never accepts, its queue filled by our own connects:
/// further SYNs are dropped, so a connect to it never completes (a stand-in for an
/// address that black-holes packets).
pub struct Backlog {
    pub port: u16,
    _listener: OwnedFd,
    _fill: Vec<OwnedFd>,
}

impl Backlog {
    pub fn start() -> Backlog {
        // SAFETY: plain socket calls on descriptors we own.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket");
            let listener = OwnedFd::from_raw_fd(fd);
            let mut a: libc::sockaddr_in = std::mem::zeroed();
            a.sin_family = libc::AF_INET as u16;
            a.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            a.sin_port = 0;
            let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
            assert_eq!(
                libc::bind(fd, &a as *const _ as *const libc::sockaddr, len),
                0
            );
            assert_eq!(libc::listen(fd, 0), 0);
            let mut got: libc::sockaddr_in = std::mem::zeroed();
            let mut glen = len;
            libc::getsockname(fd, &mut got as *mut _ as *mut libc::sockaddr, &mut glen);
            let port = u16::from_be(got.sin_port);
            let mut fill = Vec::new();
            for _ in 0..3 {
                let c = libc::socket(
                    libc::AF_INET,
                    libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    0,
                );
                assert!(c >= 0);
                libc::connect(c, &got as *const _ as *const libc::sockaddr, len);
                fill.push(OwnedFd::from_raw_fd(c));
            }
            std::thread::sleep(Duration::from_millis(200));
            Backlog {
                port,
                _listener: listener,
                _fill: fill,
            }
        }
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}", self.port)
    }
}
