//! Supervisor benchmarks (not tests): crash-to-respawn latency and memory.
//!
//! `cargo bench --bench supervisor` prints:
//! * the time from SIGKILL of a child to the new child's pid being recorded, with
//!   `backoff.initial = "0s"`, over 300 kills (median, p90, p99, worst);
//! * the supervisor's RSS with 8 streams of the fake ffmpeg.
//!
//! Uses the release binary and the fake ffmpeg from tests/fixtures.

#[path = "../tests/common/fake_host.rs"]
#[allow(dead_code)]
mod fake_host;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mediamtx-stream-manager"))
}

fn config(dir: &Path, host: &fake_host::FakeHost) -> PathBuf {
    let fake = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-ffmpeg");
    let cfg = dir.join("m.toml");
    std::fs::write(
        &cfg,
        format!(
            "[paths]\n{}state_dir = {:?}\nlog_dir = {:?}\ndevice_config = {:?}\nffmpeg = {:?}\n\
             [mediamtx]\napi = false\nrtsp_url = \"rtsp://127.0.0.1:1\"\n\
             [backoff]\ninitial = \"0s\"\nmax_failures = 1000000\n[startup]\ndevice_wait = \"1s\"\n",
            host.toml_paths(),
            dir.join("state").display().to_string(),
            dir.join("logs").display().to_string(),
            dir.join("none.conf").display().to_string(),
            fake.display().to_string()
        ),
    )
    .unwrap();
    cfg
}

fn read_pid(p: &Path) -> Option<i32> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = fake_host::FakeHost::new(dir.path());
    for card in 1..=8 {
        host.add_usb_card(card, &format!("mic{card}"), None, None);
    }
    let cfg = config(dir.path(), &host);
    let mut sup = Command::new(bin())
        .args(["start", "--foreground", "-q", "-c"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = dir.path().join("state/streams/mic1.pid");
    let until = Instant::now() + Duration::from_secs(10);
    while read_pid(&pid_file).is_none() {
        assert!(Instant::now() < until, "supervisor did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss = std::fs::read_to_string(format!("/proc/{}/status", sup.id()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .to_string();
    let threads = std::fs::read_dir(format!("/proc/{}/task", sup.id()))
        .unwrap()
        .count();

    let mut lat = Vec::new();
    for _ in 0..300 {
        let old = read_pid(&pid_file).unwrap();
        let t0 = Instant::now();
        // SAFETY: plain kill(2) of the fake ffmpeg we just read.
        unsafe { libc::kill(old, libc::SIGKILL) };
        loop {
            match read_pid(&pid_file) {
                Some(p) if p != old => break,
                _ => {}
            }
            assert!(t0.elapsed() < Duration::from_secs(5), "no respawn");
            std::thread::sleep(Duration::from_micros(200));
        }
        lat.push(t0.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    lat.sort();
    println!("crash-to-respawn latency, backoff.initial = 0s, 300 SIGKILLs:");
    println!(
        "  median {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, worst {:.2} ms",
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.9).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3
    );
    println!("supervisor with 8 streams of the fake ffmpeg: {rss}, {threads} threads");
    let _ = sup.kill();
    let _ = sup.wait();
    // The children die with the supervisor (PDEATHSIG); give them a moment.
    std::thread::sleep(Duration::from_millis(200));
}
