//! Is the RTSP server really back? One `OPTIONS` request that must get a valid RTSP reply
//! within a deadline (docs/recording.md). A TCP accept alone proves nothing: a stopped or
//! deadlocked server, or a box behind a dead link, still has its kernel accept for it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The largest reply head we read; an RTSP `OPTIONS` reply is a few hundred bytes.
const MAX_HEAD: usize = 16 * 1024;

/// How the server answered: the status code of a valid RTSP reply. Any status counts as
/// answering (401 included: MediaMTX may want credentials even for `OPTIONS`; whether it
/// takes our publish is ffmpeg's business and the restore backoff's).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
}

/// Send `OPTIONS rtsp://<addr>/<path>` to `addr` (`host:port`) and wait for a reply head,
/// everything within `deadline`. `auth` (`user:password`, from the publish URL) goes with
/// it as Basic credentials, so a server that wants them for `OPTIONS` still answers 200;
/// a 401 (Digest only, say) counts as answering too. `Err` says why not, in words.
pub fn probe(
    addr: &str,
    path: &str,
    auth: Option<&str>,
    deadline: Duration,
) -> Result<Answer, String> {
    let end = Instant::now() + deadline;
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .take(2)
        .collect();
    let mut last = format!("cannot resolve {addr}");
    for a in addrs {
        match ask(a, addr, path, auth, end) {
            Ok(ans) => return Ok(ans),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn left(end: Instant) -> Option<Duration> {
    let d = end.saturating_duration_since(Instant::now());
    (d >= Duration::from_millis(1)).then_some(d)
}

fn ask(
    a: SocketAddr,
    addr: &str,
    path: &str,
    auth: Option<&str>,
    end: Instant,
) -> Result<Answer, String> {
    let timed_out = || "no RTSP reply in time (server not answering)".to_string();
    let mut c = TcpStream::connect_timeout(&a, left(end).ok_or_else(timed_out)?)
        .map_err(|e| format!("cannot connect to {addr} ({})", crate::util::io_reason(&e)))?;
    let authorization = auth.map_or(String::new(), |a| {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(a);
        format!("Authorization: Basic {b64}\r\n")
    });
    let req = format!(
        "OPTIONS rtsp://{addr}/{path} RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: {}/{}\r\n{authorization}\r\n",
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_VERSION")
    );
    c.set_write_timeout(Some(left(end).ok_or_else(timed_out)?))
        .map_err(|e| e.to_string())?;
    c.write_all(req.as_bytes()).map_err(|_| timed_out())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(ans) = parse_head(&buf)? {
            return Ok(ans);
        }
        let Some(d) = left(end) else {
            return Err(timed_out());
        };
        c.set_read_timeout(Some(d)).map_err(|e| e.to_string())?;
        match c.read(&mut chunk) {
            Ok(0) => return Err("the server closed the connection without an RTSP reply".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Err(timed_out())
            }
            Err(e) => return Err(format!("reading the reply: {}", crate::util::io_reason(&e))),
        }
        if buf.len() > MAX_HEAD {
            return Err("reply too long for an RTSP head".into());
        }
    }
}

/// `Ok(None)`: need more bytes. A head is valid when its status line is
/// `RTSP/1.x NNN reason` and it ends with an empty line.
pub fn parse_head(buf: &[u8]) -> Result<Option<Answer>, String> {
    let first = buf.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let complete_line = buf.contains(&b'\n');
    let not_rtsp = || {
        let l: String = String::from_utf8_lossy(first)
            .chars()
            .filter(|c| !c.is_control())
            .take(60)
            .collect();
        format!("not an RTSP reply: {l:?}")
    };
    // Judge the status line as soon as we have enough of it.
    let prefix = b"RTSP/1.";
    let n = first.len().min(prefix.len());
    if first[..n] != prefix[..n] {
        return Err(not_rtsp());
    }
    if !complete_line {
        return Ok(None);
    }
    let line = String::from_utf8_lossy(first);
    let mut parts = line.trim_end().splitn(3, ' ');
    let _version = parts.next();
    let status: u16 = parts
        .next()
        .filter(|s| s.len() == 3)
        .and_then(|s| s.parse().ok())
        .ok_or_else(not_rtsp)?;
    if !(100..600).contains(&status) {
        return Err(not_rtsp());
    }
    let done = buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n");
    Ok(done.then_some(Answer { status }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        // (bytes so far, expected: Ok(Some(status)) / Ok(None) need more / Err)
        let table: &[(&str, Result<Option<u16>, ()>)] = &[
            ("", Ok(None)),
            ("RTS", Ok(None)),
            ("RTSP/1.0 200 OK\r\nCSeq: 1\r\n", Ok(None)),
            ("RTSP/1.0 200 OK\r\nCSeq: 1\r\nPublic: ANNOUNCE\r\n\r\n", Ok(Some(200))),
            (
                "RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\nWWW-Authenticate: Basic realm=\"x\"\r\n\r\n",
                Ok(Some(401)),
            ),
            ("RTSP/1.0 404 Not Found\n\n", Ok(Some(404))),
            ("HTTP/1.1 400 Bad Request\r\n\r\n", Err(())),
            ("H", Err(())),
            ("RTSP/1.0 2000 OK\r\n\r\n", Err(())),
            ("RTSP/1.0 abc OK\r\n\r\n", Err(())),
            ("RTSP/1.0 099 x\r\n\r\n", Err(())),
            ("\u{0}\u{1}garbage\r\n\r\n", Err(())),
        ];
        for (bytes, want) in table {
            let got = parse_head(bytes.as_bytes()).map(|a| a.map(|a| a.status));
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, *w, "{bytes:?}"),
                (Err(_), Err(())) => {}
                (g, w) => panic!("{bytes:?}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn a_hung_server_is_not_back_and_a_real_answer_is() {
        use std::net::TcpListener;
        // Accepts (the kernel does) and never answers.
        let hung = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = hung.local_addr().unwrap().to_string();
        let t = Instant::now();
        let e = probe(&addr, "x", None, Duration::from_millis(300)).unwrap_err();
        assert!(e.contains("not answering"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        // Answers 401 to OPTIONS: it is there.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let th = std::thread::spawn(move || {
            let mut heads = Vec::new();
            for _ in 0..2 {
                let (mut c, _) = l.accept().unwrap();
                let mut b = [0u8; 1024];
                let n = c.read(&mut b).unwrap();
                let head = String::from_utf8_lossy(&b[..n]).into_owned();
                assert!(head.starts_with("OPTIONS rtsp://"), "{head}");
                c.write_all(b"RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\n\r\n")
                    .unwrap();
                heads.push(head);
            }
            heads
        });
        assert_eq!(
            probe(&addr, "x", None, Duration::from_secs(5)),
            Ok(Answer { status: 401 })
        );
        // With the publish URL's credentials: sent as Basic.
        assert_eq!(
            probe(&addr, "x", Some("u:pa/ss"), Duration::from_secs(5)),
            Ok(Answer { status: 401 })
        );
        let heads = th.join().unwrap();
        assert!(!heads[0].contains("Authorization"), "{}", heads[0]);
        assert!(
            heads[1].contains("Authorization: Basic dTpwYS9zcw==\r\n"),
            "{}",
            heads[1]
        );
        // Refused.
        drop(hung);
    }
}
