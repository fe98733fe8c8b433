//! Supervision through the built binary with the fake ffmpeg (TESTING.md §2):
//! crash recovery, backoff, stall and start timeouts, graceful and forced stops,
//! the lock, hot-plug and reload. Durations are scaled down in `common::sup`.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::sup::{alive, kill, Sup};

fn pid_of(s: &Sup, name: &str) -> Option<i64> {
    s.stream(name)?["pid"].as_i64()
}

fn state_of(s: &Sup, name: &str) -> String {
    s.stream(name)
        .map(|v| v["state"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// Two USB microphones, `garden` and `studio`, both streaming under a foreground supervisor.
fn two_mics_running(mode: &str) -> Sup {
    let mut s = Sup::mics(&[(1, "garden"), (2, "studio")], mode);
    s.start_foreground();
    s.wait_for("both running", Duration::from_secs(5), |s| {
        state_of(s, "garden") == "running" && state_of(s, "studio") == "running"
    });
    s
}

fn one_mic(mode: &str) -> Sup {
    Sup::mics(&[(1, "garden")], mode)
}

#[test]
fn daemon_start_reports_and_stop_leaves_nothing() {
    let s = Sup::mics(&[(1, "garden"), (2, "studio")], "run");
    let t0 = Instant::now();
    let out = s.run(&["start"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("[OK] rtsp://127.0.0.1:1/garden"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[OK] rtsp://127.0.0.1:1/studio"),
        "{stdout}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
    let sup = s.supervisor_pid().expect("supervisor.pid written");
    assert!(alive(sup));
    let st = s.status().expect("status answers");
    assert_eq!(st["streams"].as_array().unwrap().len(), 2);
    // Each stream's ffmpeg carries the marker with its stream name (the fake's own
    // `sleep` helpers inherit it too, so compare by pid).
    let marked = s.marked();
    for name in ["garden", "studio"] {
        let pid = pid_of(&s, name).unwrap() as i32;
        assert!(
            marked.contains(&(pid, name.to_string())),
            "{name} pid {pid} marked: {marked:?}"
        );
    }
    // Each child's pid file holds ffmpeg's own pid.
    let garden_pid = pid_of(&s, "garden").unwrap();
    let file = std::fs::read_to_string(s.state_dir().join("streams/garden.pid")).unwrap();
    assert_eq!(file.trim(), garden_pid.to_string());

    let out = s.run(&["stop"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!alive(sup), "supervisor gone after stop");
    assert!(
        s.marked().is_empty(),
        "no process with our marker: {:?}",
        s.marked()
    );
    assert!(
        s.state_dir().join("lock").exists(),
        "lock file is never deleted"
    );
    // Stopping again: not running is fine.
    let out = s.run(&["stop"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not running"));
}

#[test]
fn concurrent_starts_all_get_exit_5_at_once() {
    let mut s = one_mic("run");
    s.start_foreground();
    let sup = s.supervisor_pid().unwrap();
    let t0 = Instant::now();
    let children: Vec<_> = (0..5)
        .map(|_| {
            s.cmd(&["start"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(5));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("pid {sup}")),
            "names the holder: {err}"
        );
    }
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t0.elapsed()
    );
    // --foreground is refused the same way.
    let out = s.run(&["start", "--foreground"]);
    assert_eq!(out.status.code(), Some(5));
}

#[test]
fn killed_child_is_replaced_after_initial_backoff() {
    let mut s = one_mic("run");
    s.start_foreground();
    s.wait_for("running", Duration::from_secs(5), |s| {
        state_of(s, "garden") == "running"
    });
    let old = pid_of(&s, "garden").unwrap();
    kill(old as i32, libc::SIGKILL);
    s.wait_for("a new child", Duration::from_secs(5), |s| {
        pid_of(s, "garden").is_some_and(|p| p != old) && state_of(s, "garden") == "running"
    });
    let st = s.stream("garden").unwrap();
    assert_eq!(st["restarts"], 1);
    assert_eq!(st["last_exit"]["signal"], "SIGKILL");
    assert!(st["last_exit"]["reason"]
        .as_str()
        .unwrap()
        .contains("SIGKILL"));
}

#[test]
fn crash_loop_backs_off_then_recovers() {
    let mut s = one_mic("crash");
    s.start_foreground();
    s.wait_for("3 consecutive failures", Duration::from_secs(10), |s| {
        s.stream("garden")
            .is_some_and(|v| v["consecutive_failures"].as_u64().unwrap_or(0) >= 3)
    });
    let st = s.stream("garden").unwrap();
    assert!(st["last_exit"]["code"] == 1, "{st}");
    assert!(!st["last_exit"]["reason"].as_str().unwrap().is_empty());
    // Delays grow: 100, 200, 400 (cap) ms — next_retry never exceeds the cap.
    for _ in 0..10 {
        if let Some(v) = s.stream("garden") {
            if let Some(n) = v["next_retry_s"].as_f64() {
                assert!(n <= 0.41, "next retry {n} beyond backoff.max");
            }
        }
    }
    s.set_mode("run");
    s.wait_for(
        "recovery: running and failures reset after stable_after",
        Duration::from_secs(10),
        |s| {
            s.stream("garden")
                .is_some_and(|v| v["state"] == "running" && v["consecutive_failures"] == 0)
        },
    );
}

#[test]
fn budget_exhausted_goes_failed_and_keeps_retrying() {
    let mut s = Sup::mics(&[(1, "garden")], "crash");
    s.extra = "".into();
    s.write_config();
    // Shrink the budget: 2 failures → failed, slow retry every 1s.
    let text = std::fs::read_to_string(&s.cfg)
        .unwrap()
        .replace("max_failures = 50", "max_failures = 2");
    std::fs::write(&s.cfg, text).unwrap();
    s.start_foreground();
    s.wait_for("failed", Duration::from_secs(10), |s| {
        state_of(s, "garden") == "failed"
    });
    let st = s.stream("garden").unwrap();
    assert_eq!(st["health"], "failed");
    assert!(st["next_retry_s"].as_f64().unwrap() <= 1.0);
    let before = st["restarts"].as_u64().unwrap();
    s.wait_for("a slow retry", Duration::from_secs(5), |s| {
        s.stream("garden")
            .is_some_and(|v| v["restarts"].as_u64().unwrap() > before)
    });
}

#[test]
fn hung_child_is_killed_as_stalled() {
    let mut s = one_mic("hang");
    s.start_foreground();
    s.wait_for("stalled exit", Duration::from_secs(10), |s| {
        s.stream("garden").is_some_and(|v| {
            v["last_exit"]["reason"]
                .as_str()
                .unwrap_or("")
                .contains("stalled")
        })
    });
    let st = s.stream("garden").unwrap();
    assert_eq!(st["last_exit"]["signal"], "SIGKILL", "{st}");
    assert!(st["consecutive_failures"].as_u64().unwrap() >= 1);
}

#[test]
fn silent_child_hits_start_timeout() {
    let mut s = one_mic("slowstart");
    s.env.push(("FAKE_FFMPEG_DELAY".into(), "30".into()));
    s.start_foreground();
    s.wait_for("start timeout", Duration::from_secs(10), |s| {
        s.stream("garden").is_some_and(|v| {
            v["last_exit"]["reason"]
                .as_str()
                .unwrap_or("")
                .contains("start timeout")
        })
    });
}

#[test]
fn child_ignoring_sigint_is_killed_after_grace() {
    let mut s = one_mic("ignore-int");
    s.start_foreground();
    s.wait_for("running", Duration::from_secs(5), |s| {
        state_of(s, "garden") == "running"
    });
    let child = pid_of(&s, "garden").unwrap() as i32;
    let t0 = Instant::now();
    let out = s.run(&["stop"]);
    let took = t0.elapsed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        took >= Duration::from_millis(900),
        "waited the 1s grace: {took:?}"
    );
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert!(!alive(child));
    assert!(s.marked().is_empty());
    let fg = s.foreground.as_mut().unwrap().wait().unwrap();
    assert_eq!(fg.code(), Some(0), "supervisor exits 0 after stop");
}

#[test]
fn sigterm_stops_gracefully_without_zombies() {
    let mut s = two_mics_running("grandchild");
    let sup = s.supervisor_pid().unwrap();
    kill(sup, libc::SIGTERM);
    let code = s.foreground.as_mut().unwrap().wait().unwrap();
    assert_eq!(code.code(), Some(0));
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        s.marked().is_empty(),
        "children and grandchildren gone: {:?}",
        s.marked()
    );
}

#[test]
fn supervisor_sigkill_takes_children_down_and_force_stop_cleans_up() {
    let mut s = one_mic("grandchild");
    s.start_foreground();
    s.wait_for("running", Duration::from_secs(5), |s| {
        state_of(s, "garden") == "running"
    });
    let child = pid_of(&s, "garden").unwrap() as i32;
    let sup = s.supervisor_pid().unwrap();
    kill(sup, libc::SIGKILL);
    let _ = s.foreground.as_mut().unwrap().wait();
    let t0 = Instant::now();
    while alive(child) && t0.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!alive(child), "ffmpeg died with its supervisor (PDEATHSIG)");
    // The grandchild it forked has no death signal: force-stop finds it by marker.
    let out = s.run(&["force-stop"]);
    assert_eq!(out.status.code(), Some(0));
    std::thread::sleep(Duration::from_millis(100));
    assert!(s.marked().is_empty(), "{:?}", s.marked());
    // The kernel released the lock: the next start works.
    s.foreground = None;
    s.set_mode("run");
    s.start_foreground();
    s.wait_for("running again", Duration::from_secs(5), |s| {
        state_of(s, "garden") == "running"
    });
}

#[test]
fn force_stop_kills_a_live_supervisor_and_its_children() {
    let mut s = one_mic("ignore-int");
    s.start_foreground();
    s.wait_for("running", Duration::from_secs(5), |s| {
        state_of(s, "garden") == "running"
    });
    let sup = s.supervisor_pid().unwrap();
    let t0 = Instant::now();
    let out = s.run(&["force-stop"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "no grace: {:?}",
        t0.elapsed()
    );
    let _ = s.foreground.as_mut().unwrap().wait();
    assert!(!alive(sup));
    assert!(s.marked().is_empty(), "{:?}", s.marked());
}

#[test]
fn restart_named_stream_only() {
    let s = two_mics_running("run");
    let g = pid_of(&s, "garden").unwrap();
    let st = pid_of(&s, "studio").unwrap();
    let out = s.run(&["restart", "garden"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.wait_for("garden restarted", Duration::from_secs(5), |s| {
        pid_of(s, "garden").is_some_and(|p| p != g) && state_of(s, "garden") == "running"
    });
    assert_eq!(pid_of(&s, "studio"), Some(st), "studio untouched");
    let v = s.stream("garden").unwrap();
    assert_eq!(
        v["consecutive_failures"], 0,
        "a requested restart is not a failure"
    );
    let out = s.run(&["restart", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown stream: nope"));
}

#[test]
fn hot_plug_unplug_and_return() {
    let mut s = one_mic("run");
    s.start_foreground();
    s.wait_for("garden running", Duration::from_secs(5), |s| {
        state_of(s, "garden") == "running"
    });
    s.usb(2, "studio");
    s.wait_for("new device streams", Duration::from_secs(5), |s| {
        state_of(s, "studio") == "running"
    });
    let g = pid_of(&s, "garden").unwrap() as i32;
    s.host.remove_card(1);
    s.wait_for("waiting-for-device", Duration::from_secs(5), |s| {
        state_of(s, "garden") == "waiting-for-device"
    });
    assert!(!alive(g), "its child was stopped");
    let v = s.stream("garden").unwrap();
    assert_eq!(v["consecutive_failures"], 0, "unplug burns no budget");
    s.usb(1, "garden");
    s.wait_for("back to running", Duration::from_secs(5), |s| {
        state_of(s, "garden") == "running"
    });
}

#[test]
fn sighup_restarts_only_changed_streams() {
    let s = two_mics_running("run");
    let g = pid_of(&s, "garden").unwrap();
    let st = pid_of(&s, "studio").unwrap();
    std::fs::write(
        s.dir.path().join("audio-devices.conf"),
        "DEVICE_GARDEN_BITRATE=96k\n",
    )
    .unwrap();
    kill(s.supervisor_pid().unwrap(), libc::SIGHUP);
    s.wait_for(
        "garden restarted with new bitrate",
        Duration::from_secs(5),
        |s| pid_of(s, "garden").is_some_and(|p| p != g) && state_of(s, "garden") == "running",
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(pid_of(&s, "studio"), Some(st), "studio untouched");
    let log = std::fs::read_to_string(s.log_dir().join("garden.log")).unwrap();
    assert!(log.contains("-b:a 96k"), "{log}");
    // A broken edit changes nothing and the supervisor keeps running.
    let g2 = pid_of(&s, "garden").unwrap();
    std::fs::write(
        s.dir.path().join("audio-devices.conf"),
        "DEVICE_GARDEN_BITRATE=$(reboot)\n",
    )
    .unwrap();
    kill(s.supervisor_pid().unwrap(), libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pid_of(&s, "garden"), Some(g2));
    assert!(
        s.supervisor_stderr().contains("reload failed"),
        "{}",
        s.supervisor_stderr()
    );
}

#[test]
fn start_without_devices_is_exit_6_and_bad_ffmpeg_is_exit_3() {
    let s = Sup::new();
    s.write_config();
    let t0 = Instant::now();
    let out = s.run(&["start", "--foreground"]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "waited device_wait"
    );
    let text = std::fs::read_to_string(&s.cfg)
        .unwrap()
        .replace("fake-ffmpeg", "no-such-ffmpeg");
    std::fs::write(&s.cfg, text).unwrap();
    let out = s.run(&["start"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-ffmpeg"));
}

#[test]
fn noisy_child_keeps_log_bounded() {
    let mut s = one_mic("noisy");
    let text = "[logs]\nmax_size = \"64k\"\nkeep = 2\n";
    s.extra = text.into();
    s.write_config();
    s.start_foreground();
    s.wait_for("running", Duration::from_secs(5), |s| {
        state_of(s, "garden") == "running"
    });
    std::thread::sleep(Duration::from_secs(2));
    let size = |p: &str| {
        std::fs::metadata(s.log_dir().join(p))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    assert!(size("garden.log") <= 64 * 1024);
    assert!(!s.log_dir().join("garden.log.3").exists());
    // The supervisor still answers quickly under the flood.
    let t0 = Instant::now();
    assert!(s.status().is_some());
    assert!(t0.elapsed() < Duration::from_secs(1));
}

#[test]
fn multiplex_mixes_present_devices_and_restarts_when_one_leaves() {
    let mut s = Sup::mics(&[(1, "garden"), (2, "studio")], "run");
    s.extra = "[multiplex]\nname = \"all_mics\"\nfilter = \"amerge\"\n".into();
    s.write_config();
    s.env.push(("STREAM_MODE".into(), "multiplex".into()));
    s.start_foreground();
    s.wait_for("all_mics running", Duration::from_secs(5), |s| {
        state_of(s, "all_mics") == "running"
    });
    let st = s.status().unwrap();
    assert_eq!(st["streams"].as_array().unwrap().len(), 1, "{st}");
    assert_eq!(st["supervisor"]["mode"], "multiplex (amerge)");
    let log = std::fs::read_to_string(s.log_dir().join("all_mics.log")).unwrap();
    assert!(log.contains("amerge=inputs=2"), "{log}");
    let pid = pid_of(&s, "all_mics").unwrap();
    s.host.remove_card(2);
    s.wait_for(
        "mix restarted with one input",
        Duration::from_secs(5),
        |s| pid_of(s, "all_mics").is_some_and(|p| p != pid) && state_of(s, "all_mics") == "running",
    );
    let log = std::fs::read_to_string(s.log_dir().join("all_mics.log")).unwrap();
    let last_start = log
        .lines()
        .rfind(|l| l.starts_with("=== "))
        .unwrap()
        .to_string();
    assert!(
        last_start.contains("plughw:CARD=garden,DEV=0"),
        "{last_start}"
    );
    assert!(!last_start.contains("plughw:CARD=studio"), "{last_start}");
    assert_eq!(s.stream("all_mics").unwrap()["consecutive_failures"], 0);
}

#[test]
fn restart_without_names_replaces_the_supervisor() {
    let s = one_mic("run");
    let out = s.run(&["start"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let old = s.supervisor_pid().unwrap();
    let out = s.run(&["restart"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("[OK] rtsp://127.0.0.1:1/garden"));
    let new = s.supervisor_pid().unwrap();
    assert_ne!(old, new);
    assert!(!alive(old));
    assert_eq!(s.run(&["stop"]).status.code(), Some(0));
    assert!(s.marked().is_empty());
}

#[test]
fn systemd_notify_ready_status_watchdog_stopping() {
    use std::os::unix::net::UnixDatagram;
    let mut s = one_mic("run");
    let sock_path = s.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Under systemd, `start` (no --foreground) stays in the foreground.
    let mut cmd = s.cmd(&["start"]);
    cmd.env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "200000");
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    s.foreground = Some(child);
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
        let has = |p: &str| seen.iter().any(|m| m.starts_with(p));
        if has("READY=1")
            && has("WATCHDOG=1")
            && seen.iter().any(|m| m == "STATUS=1/1 streams running")
        {
            break;
        }
    }
    assert!(seen.iter().any(|m| m == "READY=1"), "{seen:?}");
    assert!(seen.iter().any(|m| m == "WATCHDOG=1"), "{seen:?}");
    assert!(
        seen.iter().any(|m| m == "STATUS=1/1 streams running"),
        "{seen:?}"
    );
    kill(s.supervisor_pid().unwrap(), libc::SIGTERM);
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until && !seen.iter().any(|m| m == "STOPPING=1") {
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
    }
    assert!(seen.iter().any(|m| m == "STOPPING=1"), "{seen:?}");
    assert_eq!(
        s.foreground.as_mut().unwrap().wait().unwrap().code(),
        Some(0)
    );
}

#[test]
fn non_root_status_reports_pid_and_needs_root_for_details() {
    use std::os::unix::fs::PermissionsExt;
    if !nix_is_root() {
        eprintln!("skipped: needs root to drop privileges (CI runs as root)");
        return;
    }
    let mut s = one_mic("run");
    // Let "nobody" reach the config and the state dir (the socket stays 0600).
    for p in [s.dir.path().to_path_buf(), s.state_dir()] {
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&s.cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    s.start_foreground();
    let sup = s.supervisor_pid().unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(common::bin())
        .args(["status", "-c"])
        .arg(&s.cfg)
        .output()
        .expect("setpriv (util-linux) is installed by .ci/run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("running (pid {sup}")), "{text}");
    assert!(text.contains("need root"), "{text}");
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn children_get_default_signals_even_if_supervisor_inherited_sigint_ignored() {
    // A supervisor started from a script with `&` inherits SIGINT ignored. Its ffmpeg must
    // still honour the graceful SIGINT (the fake, like ffmpeg, exits 255 on it) rather
    // than wait out the grace period and die by SIGKILL. (Two mechanisms guarantee it:
    // the supervisor installs its own SIGINT handler, which exec resets to default in the
    // child, and child.rs resets dispositions in pre_exec; this test proves the outcome.)
    let mut s = one_mic("run");
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("trap '' INT; exec \"$0\" start --foreground -c \"$1\"")
        .arg(common::bin())
        .arg(&s.cfg)
        .env("FAKE_FFMPEG_MODE_FILE", s.mode_file())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    s.foreground = Some(cmd.spawn().unwrap());
    s.wait_for("running", Duration::from_secs(5), |s| {
        state_of(s, "garden") == "running"
    });
    let t0 = Instant::now();
    let out = s.run(&["stop"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        t0.elapsed() < Duration::from_millis(800),
        "SIGINT honoured, no grace wait: {:?}",
        t0.elapsed()
    );
    assert!(s.marked().is_empty());
}
