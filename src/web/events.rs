//! `GET /api/events`: server-sent events for every open status page, all served by ONE
//! thread (`web-events`), whatever the number of pages, so the supervisor's thread count
//! does not grow with browsers.
//!
//! Every `TICK` while a page is open the thread takes a snapshot and sends
//! * `event: status` (the snapshot and the page's verdict) when anything but the moving
//!   numbers changed (state, health, pid, restarts, last exit, MediaMTX, recording
//!   files...), and at least every `FULL_EVERY` (uptimes and counters move on);
//! * `event: levels` (peak/RMS per stream) when a level changed: at most once a `TICK`,
//!   i.e. 4 times a second.
//!
//! Sockets are non-blocking; each client has its own bounded buffer. A client that stops
//! reading is dropped when its buffer passes `CLIENT_BUFFER` or nothing of it has been
//! accepted for `STALL`: nobody waits for it, not the thread and not the supervisor.
//! With no page open the thread sleeps on its channel and costs nothing.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::SnapshotFn;
use crate::status::Snapshot;

/// Open event streams at most; the next one gets 503.
pub const MAX_CLIENTS: usize = 16;
/// How often a snapshot is taken while a page is open: state changes reach the page
/// within about this (the issue asks for 1 s), levels at most this often.
pub const TICK: Duration = Duration::from_millis(250);
/// A full status at least this often.
pub const FULL_EVERY: Duration = Duration::from_secs(5);
/// Bytes queued for one client beyond what its socket took; more and it is dropped.
pub const CLIENT_BUFFER: usize = 128 * 1024;
/// The kernel's send buffer of an event stream (SO_SNDBUF; Linux doubles it): fixed, so
/// a client that stops reading shows up in `CLIENT_BUFFER` within seconds instead of
/// after megabytes of autotuned buffer.
pub const SOCKET_BUFFER: usize = 32 * 1024;
/// A client whose socket accepted nothing for this long, with bytes waiting, is dropped.
pub const STALL: Duration = Duration::from_secs(10);

const HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                    Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
                    Connection: close\r\n\r\nretry: 2000\n\n";

/// The handle the listener's connection threads use to hand a socket over.
#[derive(Clone)]
pub struct Hub {
    tx: Arc<Mutex<Sender<TcpStream>>>,
    clients: Arc<AtomicUsize>,
}

impl Hub {
    /// Start the events thread.
    pub fn start(snapshot: SnapshotFn, grace: Duration) -> std::io::Result<Hub> {
        let (tx, rx) = mpsc::channel();
        let clients = Arc::new(AtomicUsize::new(0));
        let count = clients.clone();
        std::thread::Builder::new()
            .name("web-events".into())
            .spawn(move || run(rx, &count, &*snapshot, grace))?;
        Ok(Hub {
            tx: Arc::new(Mutex::new(tx)),
            clients,
        })
    }

    /// Take an event-stream client, or answer 503 when `MAX_CLIENTS` are open.
    pub fn admit(&self, mut s: TcpStream) {
        let taken = self
            .clients
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_CLIENTS).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
            let body = format!("at most {MAX_CLIENTS} open status pages; try again later\n");
            let _ = write!(
                s,
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
                 Content-Length: {}\r\nRetry-After: 10\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            return;
        }
        let sent = self.tx.lock().map(|tx| tx.send(s).is_ok()).unwrap_or(false);
        if !sent {
            self.clients.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Open event streams now.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::SeqCst)
    }
}

struct Client {
    s: TcpStream,
    /// Bytes not yet taken by the socket, from `off`.
    out: Vec<u8>,
    off: usize,
    /// Last time the socket took bytes (or the queue was empty).
    progress: Instant,
}

impl Client {
    fn queue(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Write what the socket takes; false when the client must go.
    fn flush(&mut self, now: Instant) -> bool {
        while self.off < self.out.len() {
            match self.s.write(&self.out[self.off..]) {
                Ok(0) => return false,
                Ok(n) => {
                    self.off += n;
                    self.progress = now;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if self.off == self.out.len() {
            self.out.clear();
            self.off = 0;
            self.progress = now;
        } else if self.off > CLIENT_BUFFER {
            self.out.drain(..self.off);
            self.off = 0;
        }
        let waiting = self.out.len() - self.off;
        waiting <= CLIENT_BUFFER && now.duration_since(self.progress) < STALL
    }

    /// False when the browser closed its end (a page that was closed or reloaded).
    fn open(&mut self) -> bool {
        let mut buf = [0u8; 512];
        loop {
            match self.s.read(&mut buf) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }
}

/// One SSE event (`data:` lines; JSON never contains a newline here).
fn event(name: &str, data: &Value) -> Vec<u8> {
    format!("event: {name}\ndata: {data}\n\n").into_bytes()
}

/// What the page shows of a snapshot except what moves on its own (uptimes, levels,
/// progress, clocks, MediaMTX byte counters): when this changes, the page must hear at
/// once. A plain string (Debug of the fields), as it is built 4 times a second.
pub fn significant(snap: &Snapshot) -> String {
    use std::fmt::Write as _;
    let (sp, m) = (&snap.supervisor, &snap.mediamtx);
    let mut k = String::with_capacity(256 * (1 + snap.streams.len()));
    let _ = writeln!(
        k,
        "{}|{:?}|{}|{}|{:?}|{}|{:?}|{:?}|{:?}|{:?}",
        sp.running,
        sp.pid,
        sp.mode,
        sp.version,
        sp.note,
        m.enabled,
        m.reachable,
        m.version,
        m.error,
        snap.warnings
    );
    for st in &snap.streams {
        let _ = writeln!(
            k,
            "{}|{}|{}|{:?}|{}|{}|{:?}|{}|{}|{}|{}|{:?}|{:?}|{:?}|{:?}",
            st.name,
            st.state,
            st.health,
            st.pid,
            st.restarts,
            st.consecutive_failures,
            st.last_exit
                .as_ref()
                .map(|x| (x.code, &x.signal, &x.reason)),
            st.url,
            st.publishing,
            st.silent,
            st.settled,
            st.recording
                .as_ref()
                .map(|r| (r.files, r.bytes, &r.newest, &r.writing, &r.error)),
            st.mediamtx
                .as_ref()
                .map(|m| (m.available, m.readers, m.displaced)),
            st.notes,
            st.device,
        );
    }
    k
}

/// Peak and RMS per stream (null is digital silence, -inf).
pub fn levels(snap: &Snapshot) -> Value {
    let mut m = serde_json::Map::new();
    for st in &snap.streams {
        if let Some(l) = &st.level {
            m.insert(
                st.name.clone(),
                json!({ "peak_db": l.peak_db, "rms_db": l.rms_db, "at": l.at }),
            );
        }
    }
    Value::Object(m)
}

/// The `status` event: the snapshot and the verdict `monitor` would give from it.
pub fn status_event(snap: &Snapshot, grace: Duration) -> Vec<u8> {
    let (exit, findings) = crate::cmd::monitor::snapshot_verdict(snap, grace);
    event(
        "status",
        &json!({ "status": snap, "verdict": { "exit": exit, "findings": findings } }),
    )
}

fn run(rx: Receiver<TcpStream>, count: &AtomicUsize, snapshot: SnapshotFn0<'_>, grace: Duration) {
    let mut clients: Vec<Client> = Vec::new();
    let mut last_key = String::new();
    let mut last_levels = Value::Null;
    let mut last_full = Instant::now();
    let mut next_tick = Instant::now();
    loop {
        let incoming = if clients.is_empty() {
            match rx.recv() {
                Ok(s) => Some(s),
                Err(_) => return,
            }
        } else {
            match rx.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
                Ok(s) => Some(s),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        let now = Instant::now();
        if let Some(s) = incoming {
            // A new page gets the whole picture at once.
            let snap = snapshot();
            set_send_buffer(&s, SOCKET_BUFFER);
            if s.set_nonblocking(true).is_ok() {
                let mut c = Client {
                    s,
                    out: Vec::new(),
                    off: 0,
                    progress: now,
                };
                c.queue(HEAD.as_bytes());
                c.queue(&status_event(&snap, grace));
                c.queue(&event("levels", &levels(&snap)));
                clients.push(c);
            } else {
                count.fetch_sub(1, Ordering::SeqCst);
            }
            if clients.len() == 1 {
                next_tick = now;
            }
        }
        if now >= next_tick {
            next_tick = now + TICK;
            let snap = snapshot();
            let key = significant(&snap);
            let mut batch = Vec::new();
            if key != last_key || now.duration_since(last_full) >= FULL_EVERY {
                batch.extend(status_event(&snap, grace));
                last_key = key;
                last_full = now;
            }
            let lv = levels(&snap);
            if lv != last_levels {
                batch.extend(event("levels", &lv));
                last_levels = lv;
            }
            for c in &mut clients {
                c.queue(&batch);
            }
            clients.retain_mut(|c| {
                let keep = c.open() && c.flush(now);
                if !keep {
                    let _ = c.s.shutdown(Shutdown::Both);
                    count.fetch_sub(1, Ordering::SeqCst);
                }
                keep
            });
        } else {
            // Only the newcomer has something to send before the next tick.
            clients.retain_mut(|c| {
                let keep = c.flush(now);
                if !keep {
                    let _ = c.s.shutdown(Shutdown::Both);
                    count.fetch_sub(1, Ordering::SeqCst);
                }
                keep
            });
        }
    }
}

fn set_send_buffer(s: &TcpStream, bytes: usize) {
    use std::os::fd::AsRawFd;
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt on a socket we own, with a pointer to a live c_int.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        log::debug!("web: SO_SNDBUF: {}", std::io::Error::last_os_error());
    }
}

type SnapshotFn0<'a> = &'a (dyn Fn() -> Snapshot + Send + Sync);
