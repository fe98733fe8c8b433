//! `demo` end to end with real ffmpeg: it runs, shows a recovery, stops by itself and
//! leaves no process behind; without ffmpeg it exits 3.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::sup::{kill, marked};

/// Kills the demo (by pid) and anything carrying its state-dir marker, even on panic.
struct Guard {
    child: Child,
    state_dir: Arc<Mutex<Option<PathBuf>>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let dir = self.state_dir.lock().map(|d| d.clone()).unwrap_or(None);
        if let Some(dir) = dir {
            for (pid, _) in marked(&dir) {
                kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Collect a pipe into a shared string on a thread (the demo prints for 20 s).
fn collect(mut r: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let out = Arc::new(Mutex::new(String::new()));
    let o = out.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            o.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    out
}

fn state_dir_of(stdout: &str) -> Option<PathBuf> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("demo: state and logs in "))
        .map(|p| PathBuf::from(p.trim()))
}

#[test]
fn demo_recovers_and_leaves_no_process() {
    common::require_ffmpeg();
    let mut child = Command::new(common::bin())
        .args(["demo", "--duration", "20s"])
        .env_remove("MEDIAMTX_STREAM_MANAGER_CONFIG")
        .env_remove("MEDIAMTX_STREAM_MANAGER_DEMO_KEEP")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn demo");
    let stdout = collect(child.stdout.take().expect("stdout"));
    let stderr = collect(child.stderr.take().expect("stderr"));
    let mut guard = Guard {
        child,
        state_dir: Arc::new(Mutex::new(None)),
    };

    let until = Instant::now() + Duration::from_secs(60);
    let started = Instant::now();
    // RMS readings per stream from the status page's API while the demo runs.
    let mut rms: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    let mut next_read = started + Duration::from_secs(4);
    let status = loop {
        if guard.state_dir.lock().unwrap().is_none() {
            *guard.state_dir.lock().unwrap() = state_dir_of(&stdout.lock().unwrap());
        }
        let page = page_port(&stdout.lock().unwrap());
        if let (Some(port), true) = (page, Instant::now() >= next_read) {
            next_read = Instant::now() + Duration::from_millis(700);
            if started.elapsed() < Duration::from_secs(16) {
                let (head, body) = common::http_get(port, "/api/status");
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                let v: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
                for st in v["streams"].as_array().into_iter().flatten() {
                    if let Some(db) = st["level"]["rms_db"].as_f64() {
                        let name = st["name"].as_str().unwrap_or("").to_string();
                        rms.entry(name).or_default().push(db);
                    }
                }
            }
        }
        if let Some(s) = guard.child.try_wait().expect("wait demo") {
            break s;
        }
        assert!(
            Instant::now() < until,
            "demo still running after 60 s\nstdout:\n{}\nstderr:\n{}",
            stdout.lock().unwrap(),
            stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(200)); // let the readers drain
    let out = stdout.lock().unwrap().clone();
    let err = stderr.lock().unwrap().clone();
    let ctx = format!("stdout:\n{out}\nstderr:\n{err}");

    assert_eq!(status.code(), Some(0), "{ctx}");
    let dir = state_dir_of(&out).unwrap_or_else(|| panic!("no state dir line\n{ctx}"));
    *guard.state_dir.lock().unwrap() = Some(dir.clone());
    let killed = out
        .lines()
        .find_map(|l| l.strip_prefix("demo: killed ffmpeg pid "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no kill line\n{ctx}"));
    let new = out
        .lines()
        .find_map(|l| l.strip_prefix("demo: demo_tone_a recovered (new pid "))
        .and_then(|r| r.strip_suffix(')'))
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no recovery line\n{ctx}"));
    assert_ne!(killed, new, "{ctx}");
    // The page was on, on loopback, and its meters moved: both tones have levels and
    // their loudness changed between readings.
    let port = page_port(&out).unwrap_or_else(|| panic!("no status page line\n{ctx}"));
    assert!(port > 0, "{ctx}");
    for name in ["demo_tone_a", "demo_tone_b"] {
        let r = rms.get(name).cloned().unwrap_or_default();
        assert!(r.len() >= 3, "{name}: too few level readings {r:?}\n{ctx}");
        let (lo, hi) = r
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
        assert!(
            hi - lo >= 3.0,
            "{name}: the meter does not move: {r:?}\n{ctx}"
        );
        assert!(hi < 0.0 && lo > -60.0, "{name}: {r:?}");
        // The status table's LEVEL column is filled too (it showed `-` before).
        assert!(
            out.lines()
                .any(|l| l.starts_with(name) && l.trim_end().ends_with(" dB")),
            "{name}: no level in the table\n{ctx}"
        );
    }
    assert!(out.contains("demo_tone_b"), "{ctx}");
    assert!(
        out.contains("killed by SIGKILL"),
        "status shows the last exit\n{ctx}"
    );

    let left = marked(&dir);
    assert!(
        left.is_empty(),
        "processes left with the demo's marker: {left:?}\n{ctx}"
    );
    assert!(
        !dir.exists(),
        "temp dir {} not removed\n{ctx}",
        dir.display()
    );
}

/// The port of `demo: status page (live level meters) at http://127.0.0.1:PORT/`.
fn page_port(stdout: &str) -> Option<u16> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("demo: status page (live level meters) at http://127.0.0.1:"))
        .and_then(|r| r.trim_end().strip_suffix('/'))
        .and_then(|p| p.parse().ok())
}

#[test]
fn demo_exit_codes_without_ffmpeg_or_config() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = tmp.path().join("demo.toml");
    let missing = tmp.path().join("no-such-ffmpeg");
    std::fs::write(
        &cfg,
        format!("[paths]\nffmpeg = {:?}\n", missing.display().to_string()),
    )
    .expect("write config");
    let empty_path = tmp.path().join("empty-bin");
    std::fs::create_dir(&empty_path).expect("mkdir");
    let absent_cfg = tmp.path().join("absent.toml");
    let cases: [(Vec<&std::ffi::OsStr>, Option<&std::path::Path>, i32, &str); 3] = [
        (
            vec!["-c".as_ref(), cfg.as_os_str()],
            None,
            3,
            "ffmpeg not found",
        ),
        (vec![], Some(&empty_path), 3, "ffmpeg not found"),
        (
            vec!["-c".as_ref(), absent_cfg.as_os_str()],
            None,
            4,
            "cannot read config file",
        ),
    ];
    for (args, path, code, msg) in cases {
        let mut c = Command::new(common::bin());
        c.args(["demo", "--duration", "1s"]).args(&args);
        c.env_remove("MEDIAMTX_STREAM_MANAGER_CONFIG")
            .stdin(Stdio::null());
        if let Some(p) = path {
            c.env("PATH", p);
        }
        let out = c.output().expect("run demo");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("state and logs"),
            "{args:?}"
        );
    }
}
