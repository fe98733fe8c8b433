//! A stand-in for MediaMTX's RTSP side (MediaMTX itself cannot be installed here): one
//! loopback port that takes any number of publishers on any path, answers ffmpeg's
//! OPTIONS / ANNOUNCE / SETUP / RECORD / TEARDOWN (RFC 2326, TCP interleaved), and counts
//! the interleaved bytes each path receives. ffmpeg's own `-rtsp_flags listen` takes one
//! publisher and exits, which cannot serve two streams and a restart on one URL base.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct RtspSink {
    port: u16,
    bytes: Arc<Mutex<BTreeMap<String, u64>>>,
    stop: Arc<AtomicBool>,
}

impl RtspSink {
    pub fn start() -> RtspSink {
        let l = TcpListener::bind("127.0.0.1:0").expect("rtsp sink: bind");
        let port = l.local_addr().unwrap().port();
        let bytes: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (b, st) = (bytes.clone(), stop.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(c) = c else { continue };
                let b = b.clone();
                std::thread::spawn(move || {
                    let _ = serve(c, &b);
                });
            }
        });
        RtspSink { port, bytes, stop }
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}", self.port)
    }

    /// Interleaved media bytes received for `path` (e.g. "garden").
    pub fn received(&self, path: &str) -> u64 {
        self.bytes.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

impl Drop for RtspSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(c: TcpStream, bytes: &Mutex<BTreeMap<String, u64>>) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut w = c.try_clone()?;
    let mut r = BufReader::new(c);
    let mut path = String::new();
    loop {
        let first = r.fill_buf()?.first().copied();
        match first {
            None => return Ok(()),
            Some(b'$') => {
                let mut h = [0u8; 4];
                r.read_exact(&mut h)?;
                let len = u16::from_be_bytes([h[2], h[3]]) as usize;
                let mut data = vec![0u8; len];
                r.read_exact(&mut data)?;
                *bytes.lock().unwrap().entry(path.clone()).or_default() += len as u64;
            }
            Some(_) => {
                let mut line = String::new();
                r.read_line(&mut line)?;
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let target = parts.next().unwrap_or("").to_string();
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h)? == 0 || h.trim().is_empty() {
                        break;
                    }
                    headers.push(h.trim().to_string());
                }
                let get = |k: &str| {
                    headers.iter().find_map(|h| {
                        let (a, b) = h.split_once(':')?;
                        a.trim()
                            .eq_ignore_ascii_case(k)
                            .then(|| b.trim().to_string())
                    })
                };
                if let Some(n) = get("Content-Length").and_then(|v| v.parse::<usize>().ok()) {
                    let mut body = vec![0u8; n];
                    r.read_exact(&mut body)?;
                }
                if method == "ANNOUNCE" {
                    // rtsp://host:port/<path>
                    path = target
                        .splitn(4, '/')
                        .nth(3)
                        .unwrap_or("")
                        .trim_end_matches('/')
                        .to_string();
                }
                let cseq = get("CSeq").unwrap_or_default();
                let mut answer = format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n");
                match method.as_str() {
                    "OPTIONS" => answer.push_str(
                        "Public: OPTIONS, ANNOUNCE, SETUP, RECORD, TEARDOWN, GET_PARAMETER\r\n",
                    ),
                    "SETUP" => {
                        let t = get("Transport").unwrap_or_default();
                        answer.push_str(&format!(
                            "Transport: {t}\r\nSession: 4f3a2b1c;timeout=60\r\n"
                        ));
                    }
                    "RECORD" | "GET_PARAMETER" => answer.push_str("Session: 4f3a2b1c\r\n"),
                    _ => {}
                }
                answer.push_str("\r\n");
                w.write_all(answer.as_bytes())?;
                if method == "TEARDOWN" || method.is_empty() {
                    return Ok(());
                }
            }
        }
    }
}
