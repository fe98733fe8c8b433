//! Hot-plug latency benchmark (not a test; issue 9 part 4).
//!
//! `cargo bench --bench hotplug [-- REPS]` (default 25 repetitions) prints, for a supervisor
//! with `discovery.rescan = "30s"` and the inotify watch on (the default):
//! * plug → child exec'd: from the moment the test starts creating the card's entries in
//!   a fake `/proc/asound` + `/dev/snd` (TESTING.md §1) to the new ffmpeg's pid appearing
//!   in `<state_dir>/streams/<name>.pid` (written right after a successful exec);
//! * unplug → child stopped: from the start of removing the entries to that pid having
//!   exited (gone from /proc, or a zombie);
//!
//! then the same with `watch = false` and the old default `rescan = "2s"` for comparison.
//! Medians, p90 and worst; never pass/fail. Uses the release binary and the fake ffmpeg.

#[path = "../tests/common/fake_host.rs"]
#[allow(dead_code)]
mod fake_host;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mediamtx-stream-manager"))
}

fn config(dir: &Path, host: &fake_host::FakeHost, rescan: &str, watch: bool) -> PathBuf {
    let fake = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-ffmpeg");
    let cfg = dir.join("m.toml");
    std::fs::write(
        &cfg,
        format!(
            "[paths]\n{}state_dir = {:?}\nlog_dir = {:?}\ndevice_config = {:?}\nffmpeg = {:?}\nnames_file = {:?}\n\
             [discovery]\nrescan = {rescan:?}\nwatch = {watch}\n\
             [mediamtx]\napi = false\nrtsp_url = \"rtsp://127.0.0.1:1\"\n\
             [stop]\ngrace = \"2s\"\n\
             [startup]\ndevice_wait = \"0s\"\nrequire_devices = false\n",
            host.toml_paths(),
            dir.join("state").display().to_string(),
            dir.join("logs").display().to_string(),
            dir.join("none.conf").display().to_string(),
            fake.display().to_string(),
            dir.join("names.json").display().to_string(),
        ),
    )
    .unwrap();
    cfg
}

fn read_pid(p: &Path) -> Option<i32> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn exited(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s.rfind(')').is_some_and(|i| s[i + 2..].starts_with('Z')),
    }
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    None
}

struct Killer(Child);
impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stats(name: &str, mut v: Vec<Duration>) {
    if v.is_empty() {
        println!("{name}: no samples");
        return;
    }
    v.sort();
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name:<28} median {:>8.1} ms   p90 {:>8.1} ms   worst {:>8.1} ms   (n = {})",
        p(0.5).as_secs_f64() * 1e3,
        p(0.9).as_secs_f64() * 1e3,
        v[v.len() - 1].as_secs_f64() * 1e3,
        v.len()
    );
}

fn run(label: &str, rescan: &str, watch: bool, reps: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut host = fake_host::FakeHost::new(dir.path());
    let cfg = config(dir.path(), &host, rescan, watch);
    let sup = Command::new(bin())
        .args(["start", "--foreground", "-q", "-c"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_remove("NOTIFY_SOCKET")
        .spawn()
        .unwrap();
    let sup = Killer(sup);
    let sock = dir.path().join("state/control.sock");
    wait_until(Duration::from_secs(10), || sock.exists()).expect("supervisor up");
    let pid_file = dir.path().join("state/streams/mic2.pid");
    let (mut plug, mut unplug) = (Vec::new(), Vec::new());
    let limit = Duration::from_secs(10);
    for i in 0..reps {
        // Without the watch a plug waits for the next periodic rescan; spread the plugs
        // over the rescan period so they do not all land at the same phase of it.
        if !watch {
            std::thread::sleep(Duration::from_millis((i as u64 * 797) % 2000));
        }
        let t = Instant::now();
        host.add_usb_card(
            2,
            "mic2",
            Some("usb-Bench_mic2-00"),
            Some("pci-0000:01:00.0-usb-0:1.2:1.0"),
        );
        let Some(_) = wait_until(limit, || read_pid(&pid_file).is_some_and(|p| !exited(p))) else {
            println!("{label}: no child within {limit:?} of a plug");
            break;
        };
        plug.push(t.elapsed());
        let pid = read_pid(&pid_file).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        if !watch {
            std::thread::sleep(Duration::from_millis((i as u64 * 1231) % 2000));
        }
        let t = Instant::now();
        host.remove_card(2);
        if wait_until(limit, || exited(pid)).is_none() {
            println!("{label}: child {pid} still running {limit:?} after unplug");
            break;
        }
        unplug.push(t.elapsed());
        // The pid file goes when the wrapper has reaped the child.
        wait_until(limit, || !pid_file.exists());
        std::thread::sleep(Duration::from_millis(300));
    }
    println!("{label}");
    stats("  plug → child exec'd", plug);
    stats("  unplug → child stopped", unplug);
    let _ = Command::new(bin())
        .args(["stop", "-q", "-c"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .output();
    drop(sup);
}

fn main() {
    let reps: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(25);
    run(
        "inotify watch, rescan = \"30s\" (default watch = true)",
        "30s",
        true,
        reps,
    );
    run(
        "no watch, rescan = \"2s\" (before: periodic rescan only)",
        "2s",
        false,
        reps,
    );
}
