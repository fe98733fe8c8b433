//! Status page cost (not a test): the supervisor's CPU with 8 streams and 4 open pages
//! versus none, and what a page transfers.
//!
//! `cargo bench --bench web` (release build). 8 streams of the fake ffmpeg (progress every
//! 100 ms without forking, a level pair every second), `[web] enabled`. A "page" is what a
//! browser tab costs the supervisor: one `GET /` and one `/api/events` stream read
//! continuously (a real Chromium per page would load this 2-core box far more than the
//! supervisor does). Windows of `WINDOW` alternate none / 4 pages, `ROUNDS` each; CPU is
//! the supervisor's utime+stime (all threads) from /proc over each window.

#[path = "../tests/common/fake_host.rs"]
#[allow(dead_code)]
mod fake_host;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(30);
const ROUNDS: usize = 5;
const PAGES: usize = 4;

fn bin() -> PathBuf {
    std::env::var_os("MSM_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_mediamtx-stream-manager")))
}

/// utime + stime of every thread of `pid`, seconds.
fn cpu_s(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// CPU time of the supervisor's `web-events` thread (every event stream), seconds.
fn events_thread_s(pid: u32) -> f64 {
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let dir = e.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() == "web-events" {
            let ss = std::fs::read_to_string(dir.join("schedstat")).unwrap_or_default();
            let ns: f64 = ss
                .split_whitespace()
                .next()
                .unwrap_or("0")
                .parse()
                .unwrap_or(0.0);
            return ns / 1e9;
        }
    }
    0.0
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count()
}

/// One request; (head, body).
fn get(port: u16, path: &str) -> (String, Vec<u8>) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (
        String::from_utf8_lossy(&raw[..end]).into_owned(),
        raw[end..].to_vec(),
    )
}

/// Pages open until `stop`: each loads `/` once, then reads its event stream.
fn open_pages(
    port: u16,
    stop: &Arc<AtomicBool>,
    bytes: &Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..PAGES)
        .map(|_| {
            let (stop, bytes) = (stop.clone(), bytes.clone());
            std::thread::spawn(move || {
                let _ = get(port, "/");
                let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
                c.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                c.write_all(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                let mut buf = [0u8; 65536];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(n) = c.read(&mut buf) {
                        assert!(n > 0, "event stream closed");
                        bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = fake_host::FakeHost::new(dir.path());
    for card in 1..=8 {
        host.add_usb_card(card, &format!("mic{card}"), None, None);
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let fake = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-ffmpeg");
    let cfg = dir.path().join("m.toml");
    std::fs::write(
        &cfg,
        format!(
            "[paths]\n{}state_dir = {:?}\nlog_dir = {:?}\ndevice_config = {:?}\nffmpeg = {:?}\nnames_file = {:?}\n\
             [mediamtx]\napi = false\nrtsp_url = \"rtsp://127.0.0.1:1\"\n\
             [startup]\ndevice_wait = \"1s\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n[web]\nenabled = true\n",
            host.toml_paths(),
            dir.path().join("state").display().to_string(),
            dir.path().join("logs").display().to_string(),
            dir.path().join("none.conf").display().to_string(),
            fake.display().to_string(),
            dir.path().join("names.json").display().to_string(),
        ),
    )
    .unwrap();
    let mut sup = Command::new(bin())
        .args(["start", "--foreground", "-q", "-c"])
        .arg(&cfg)
        .env("FAKE_FFMPEG_INTERVAL", "0.1")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = sup.id();
    let until = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "supervisor did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(5));

    let (head, page) = get(port, "/");
    let (_, status) = get(port, "/api/status");
    println!("bench web: page GET / = {} bytes body + {} bytes head (uncompressed; no other request), /api/status = {} bytes (8 streams)", page.len(), head.len(), status.len());

    let (mut idle, mut open) = (Vec::new(), Vec::new());
    let mut sse_rate = Vec::new();
    let mut events_thread = Vec::new();
    let threads_idle = threads(pid);
    let mut threads_open = 0;
    for round in 0..ROUNDS {
        let c0 = cpu_s(pid);
        let t0 = Instant::now();
        std::thread::sleep(WINDOW);
        idle.push(100.0 * (cpu_s(pid) - c0) / t0.elapsed().as_secs_f64());

        let stop = Arc::new(AtomicBool::new(false));
        let bytes = Arc::new(AtomicU64::new(0));
        let pages = open_pages(port, &stop, &bytes);
        std::thread::sleep(Duration::from_secs(2));
        threads_open = threads(pid);
        let (c0, b0, e0) = (
            cpu_s(pid),
            bytes.load(Ordering::Relaxed),
            events_thread_s(pid),
        );
        let t0 = Instant::now();
        std::thread::sleep(WINDOW);
        let dt = t0.elapsed().as_secs_f64();
        open.push(100.0 * (cpu_s(pid) - c0) / dt);
        events_thread.push(100.0 * (events_thread_s(pid) - e0) / dt);
        sse_rate.push((bytes.load(Ordering::Relaxed) - b0) as f64 / dt / PAGES as f64);
        stop.store(true, Ordering::SeqCst);
        for p in pages {
            let _ = p.join();
        }
        println!(
            "bench web: round {}: no page {:.3} %, {PAGES} pages {:.3} % of one core (web-events thread {:.4} %)",
            round + 1,
            idle[round],
            open[round],
            events_thread[round]
        );
    }
    let (i, o) = (median(idle.clone()), median(open.clone()));
    println!(
        "bench web: supervisor CPU, 8 streams, median of {ROUNDS} x {}s: no page {i:.3} %, {PAGES} pages {o:.3} %, difference {:+.3} % of one core",
        WINDOW.as_secs(),
        o - i
    );
    println!(
        "bench web: the web-events thread alone (schedstat, ns): {:.4} % of one core with {PAGES} pages (median)",
        median(events_thread)
    );
    println!(
        "bench web: event stream {:.0} bytes/s per page (median); supervisor threads {threads_idle} without pages, {threads_open} with {PAGES}",
        median(sse_rate)
    );
    let _ = Command::new(bin())
        .args(["stop", "-c"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .status();
    let _ = sup.wait();
}
