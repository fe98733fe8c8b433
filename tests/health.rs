//! MediaMTX health, `monitor`, the cron line and metrics, proven through the built binary
//! (SPEC §7 MediaMTX bullet, §8, §9) against the MediaMTX stand-in and the fake ffmpeg.
//! Durations are scaled: poll 100 ms, unpublished_timeout 500 ms, monitor.grace 1 s.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::exposition::check_exposition;
use common::mediamtx_mock::{MockMediamtx, Version};
use common::sup::{alive, kill, Sup};
use serde_json::Value;

const GARDEN_UP: &str = "mediamtx_stream_manager_stream_up{stream=\"garden\"}";

fn pid_of(s: &Sup, name: &str) -> Option<i64> {
    s.stream(name)?["pid"].as_i64()
}

fn field(s: &Sup, name: &str, key: &str) -> String {
    s.stream(name)
        .map(|v| v[key].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

fn exit_reason(s: &Sup, name: &str) -> String {
    s.stream(name)
        .and_then(|v| v["last_exit"]["reason"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// One USB mic "garden" with the fake in `mode` and the API switched on at `api_url`.
fn api_sup(api_url: &str, mode: &str) -> Sup {
    let mut s = Sup::mics(&[(1, "garden")], mode);
    s.set("mediamtx", "api", "true")
        .set("mediamtx", "api_url", &format!("{api_url:?}"))
        .set("mediamtx", "poll", "\"100ms\"")
        .set("health", "unpublished_timeout", "\"500ms\"")
        .set("startup", "mediamtx_wait", "\"1s\"");
    s.write_config();
    s
}

/// A mock whose path "garden" is available with a growing inbound counter.
fn publishing_mock() -> MockMediamtx {
    let mock = MockMediamtx::start(Version::V1_20);
    mock.set_path("garden", true);
    mock.grow("garden", 4096);
    mock
}

fn healthy(s: &Sup) -> bool {
    s.stream("garden")
        .is_some_and(|v| v["state"] == "running" && v["health"] == "healthy")
}

/// Every stream has run healthy and clear of failures for longer than monitor.grace (1 s):
/// only then may `monitor` say 0 (SPEC §8.5).
fn proven(s: &Sup) -> bool {
    s.status().is_some_and(|v| {
        v["streams"].as_array().is_some_and(|a| {
            !a.is_empty()
                && a.iter()
                    .all(|x| x["healthy_for_s"].as_f64().is_some_and(|t| t > 1.1))
        })
    })
}

/// `monitor --json`: the exit code, which must equal the JSON's `exit`, and the report.
fn monitor(s: &Sup) -> (i32, Value) {
    let out = s.run(&["monitor", "--json"]);
    let code = out.status.code().expect("monitor exited by a signal");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "monitor --json is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(
        v["exit"].as_i64(),
        Some(code as i64),
        "JSON exit equals the exit code: {v}"
    );
    assert!(v["findings"].is_array(), "findings array: {v}");
    (code, v)
}

fn has_finding(v: &Value, check: &str, exit: i64) -> bool {
    v["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|f| f["check"] == check && f["exit"] == exit)
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn unpublished_stream_is_restarted_as_not_published() {
    let mock = MockMediamtx::start(Version::V1_20); // the path never appears
    let mut s = api_sup(&mock.url(), "run");
    s.start_foreground();
    s.wait_for(
        "a restart for not being published",
        Duration::from_secs(10),
        |s| {
            s.stream("garden")
                .is_some_and(|v| v["restarts"].as_u64().unwrap_or(0) >= 1)
                && exit_reason(s, "garden").contains("not published")
        },
    );
    let reason = exit_reason(&s, "garden");
    assert!(reason.contains("path not found on MediaMTX"), "{reason}");
    let (code, v) = monitor(&s);
    assert!(
        code == 0 || code == 10,
        "never healthy, never critical: {v}"
    );
}

#[test]
fn growing_counter_stays_frozen_counter_restarts() {
    let mock = publishing_mock();
    let mut s = api_sup(&mock.url(), "run");
    s.start_healthy(1);
    let pid = pid_of(&s, "garden").expect("pid");
    // Several unpublished_timeouts later: same child, still healthy, MediaMTX's view shown.
    std::thread::sleep(Duration::from_millis(1500));
    let st = s.stream("garden").expect("garden");
    assert_eq!(st["pid"].as_i64(), Some(pid), "not restarted: {st}");
    assert_eq!(st["restarts"], 0, "{st}");
    assert_eq!(st["health"], "healthy", "{st}");
    assert_eq!(st["mediamtx"]["available"], true, "{st}");
    assert!(
        st["mediamtx"]["inbound_bytes"].as_u64().unwrap_or(0) > 4096,
        "{st}"
    );
    let status = s.status().expect("status");
    assert_eq!(status["mediamtx"]["reachable"], true, "{status}");
    s.wait_for("proven past monitor.grace", Duration::from_secs(10), proven);
    let (code, v) = monitor(&s);
    assert_eq!(code, 0, "all healthy: {v}");

    mock.freeze("garden");
    s.wait_for(
        "a restart for a frozen counter",
        Duration::from_secs(5),
        |s| exit_reason(s, "garden").contains("not published"),
    );
    let reason = exit_reason(&s, "garden");
    assert!(reason.contains("inbound bytes not growing"), "{reason}");
    assert_ne!(
        pid_of(&s, "garden"),
        Some(pid),
        "the frozen child was replaced"
    );
    assert!(!alive(pid as i32), "old child {pid} gone");
}

#[test]
fn api_down_keeps_streams_running_and_monitor_exits_7() {
    let mut mock = publishing_mock();
    let mut s = api_sup(&mock.url(), "run");
    s.start_healthy(1);
    let pid = pid_of(&s, "garden").expect("pid");
    mock.stop();
    // (A poll in flight when the mock stopped may end as "reset by peer" first.)
    s.wait_for("API reported refused", Duration::from_secs(5), |s| {
        s.status().is_some_and(|v| {
            v["mediamtx"]["reachable"] == false
                && v["mediamtx"]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("connection refused"))
        })
    });
    let status = s.status().expect("status");
    let err = status["mediamtx"]["error"].as_str().unwrap_or("");
    assert!(err.contains("connection refused"), "classified: {status}");
    // Three unpublished_timeouts: the child is left alone.
    std::thread::sleep(Duration::from_millis(1500));
    let st = s.stream("garden").expect("garden");
    assert_eq!(st["pid"].as_i64(), Some(pid), "same child: {st}");
    assert_eq!(st["state"], "running", "{st}");
    assert_eq!(st["restarts"], 0, "{st}");
    let (code, v) = monitor(&s);
    assert_eq!(code, 7, "{v}");
    assert!(has_finding(&v, "mediamtx", 7), "{v}");
    // The text form says why in one line.
    let out = s.run(&["monitor"]);
    assert_eq!(out.status.code(), Some(7));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("MediaMTX API not reachable") && l.contains("connection refused")),
        "{text}"
    );
}

#[test]
fn start_with_api_unreachable_exits_7_within_mediamtx_wait() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let s = api_sup(&url, "run");
    let t0 = Instant::now();
    let out = s.run(&["start"]);
    let took = t0.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "stderr: {err}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "waited mediamtx_wait (1s), took {took:?}"
    );
    assert!(
        err.contains("not reachable") && err.contains("connection refused"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(s.marked().is_empty(), "no child started: {:?}", s.marked());

    // Wrong credentials are a different, named reason (401).
    let mock = MockMediamtx::start(Version::V1_20);
    mock.require_auth("api", "secret", Duration::ZERO);
    let s = api_sup(&mock.url(), "run");
    let out = s.run(&["start", "--foreground"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "stderr: {err}");
    assert!(err.contains("401"), "{err}");
}

#[test]
fn monitor_exits_2_when_supervisor_is_not_running_and_cron_restarts_it() {
    let mut s = Sup::new();
    s.usb(1, "garden");
    s.write_config();
    let t0 = Instant::now();
    let (code, v) = monitor(&s);
    assert_eq!(code, 2, "{v}");
    assert!(has_finding(&v, "supervisor", 2), "{v}");
    assert!(t0.elapsed() < Duration::from_secs(3));

    let cron = Cron::new(&s);
    let (code, rec) = cron.run();
    assert_eq!(code, 0, "the cron command itself succeeds");
    assert_eq!(
        rec,
        ["systemctl restart mediamtx-audio"],
        "exit 2 restarts the service"
    );

    // `monitor` alone under cron's empty environment is quick and gives the same code.
    let t0 = Instant::now();
    let out = Command::new("env")
        .args(["-i", "PATH=/usr/bin:/bin"])
        .arg(common::bin())
        .arg("-c")
        .arg(&s.cfg)
        .arg("monitor")
        .stdin(Stdio::null())
        .output()
        .expect("env -i monitor");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t0.elapsed()
    );
}

#[test]
fn failed_stream_gives_10_past_grace_and_cron_only_logs() {
    let mut s = Sup::mics(&[(1, "garden")], "crash");
    s.set("backoff", "max_failures", "2")
        .set("backoff", "failed_retry", "\"10s\"");
    s.write_config();
    s.start_foreground();
    s.wait_for("failed", Duration::from_secs(10), |s| {
        field(s, "garden", "state") == "failed"
    });
    // monitor.grace is 1 s from the stream's last healthy moment (never: supervisor start).
    s.wait_for("past monitor.grace", Duration::from_secs(5), |s| {
        s.stream("garden")
            .and_then(|v| v["unhealthy_for_s"].as_f64())
            .is_some_and(|t| t > 1.2)
    });
    let (code, v) = monitor(&s);
    assert_eq!(code, 10, "{v}");
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "stream")
        .expect("stream finding")
        .clone();
    let msg = f["message"].as_str().unwrap();
    assert!(msg.contains("garden") && msg.contains("failed"), "{msg}");
    assert!(
        msg.contains("cannot open audio device"),
        "names the last exit reason: {msg}"
    );

    let cron = Cron::new(&s);
    let (code, rec) = cron.run();
    assert_eq!(code, 0);
    assert_eq!(
        rec,
        ["logger -t mediamtx-monitor Non-critical exit code 10 (no restart)"],
        "10 is only logged"
    );
}

/// A crash-looper runs and looks healthy between crashes; with a long grace it is still
/// reported on every call until a run lasts `backoff.stable_after` (issue 8.1).
#[test]
fn crash_looper_is_reported_on_every_call_even_inside_grace() {
    let mut s = Sup::mics(&[(1, "garden")], "crash");
    // Each run lasts about 0.6 s (6 progress blocks) before it crashes.
    s.env.push(("FAKE_FFMPEG_BLOCKS".into(), "6".into()));
    s.set("monitor", "grace", "\"30s\"")
        .set("backoff", "initial", "\"300ms\"")
        .set("backoff", "max", "\"300ms\"");
    s.write_config();
    s.start_foreground();
    s.wait_for("a crash", Duration::from_secs(5), |s| {
        s.stream("garden")
            .is_some_and(|v| v["consecutive_failures"].as_u64().unwrap_or(0) >= 1)
    });
    // Call monitor across several crash/run cycles: the "running" moments included.
    let until = Instant::now() + Duration::from_secs(3);
    let mut calls = 0;
    let mut seen_running = false;
    while Instant::now() < until {
        let st = s.stream("garden").expect("garden");
        seen_running |= st["state"] == "running";
        let (code, v) = monitor(&s);
        assert_eq!(code, 10, "call {calls}, stream {st}: {v}");
        calls += 1;
    }
    assert!(calls >= 5, "{calls} calls");
    assert!(seen_running, "the looper was seen running between crashes");
    // It stops crashing: 10 until it ran stable_after (1.5 s) plus monitor.grace... the
    // grace here is 30 s, so check the clear flag through status instead.
    s.set_mode("run");
    s.wait_for("cleared by a stable run", Duration::from_secs(10), |s| {
        s.stream("garden").is_some_and(|v| {
            v["consecutive_failures"] == 0 && v["healthy_for_s"].as_f64().is_some()
        })
    });
    let (code, v) = monitor(&s);
    assert_eq!(code, 10, "cleared but not yet for monitor.grace: {v}");
}

/// A `failed` stream's slow retry runs the child (and it may run a while): `monitor` says
/// 10 on every call through it, with the default-shaped ratio of retry to grace.
#[test]
fn failed_stream_retry_never_hides_it_from_monitor() {
    let mut s = Sup::mics(&[(1, "garden")], "crash");
    s.set("backoff", "max_failures", "2")
        .set("backoff", "failed_retry", "\"500ms\"")
        .set("backoff", "stable_after", "\"10s\"");
    s.write_config();
    s.start_foreground();
    s.wait_for("failed", Duration::from_secs(10), |s| {
        field(s, "garden", "state") == "failed"
    });
    // Now the retries succeed at starting and run (but not for stable_after).
    s.set_mode("run");
    s.wait_for("a retry running", Duration::from_secs(5), |s| {
        field(s, "garden", "state") == "running"
    });
    for i in 0..8 {
        let st = s.stream("garden").expect("garden");
        assert_eq!(st["state"], "running", "{st}");
        assert!(
            st["consecutive_failures"].as_u64().unwrap_or(0) >= 2,
            "{st}"
        );
        let (code, v) = monitor(&s);
        assert_eq!(code, 10, "call {i}: {v}");
        assert!(has_finding(&v, "stream", 10), "{v}");
        std::thread::sleep(Duration::from_millis(150));
    }
}

#[test]
fn healthy_supervisor_gives_0_and_cron_does_nothing() {
    let mut s = Sup::mics(&[(1, "garden"), (2, "studio")], "run");
    s.start_foreground();
    s.wait_for("both running", Duration::from_secs(5), |s| {
        s.status().is_some_and(|v| {
            v["streams"]
                .as_array()
                .is_some_and(|a| a.len() == 2 && a.iter().all(|x| x["health"] == "healthy"))
        })
    });
    s.wait_for("proven past monitor.grace", Duration::from_secs(10), proven);
    let (code, v) = monitor(&s);
    assert_eq!(code, 0, "{v}");
    // The supervisor and both children were sampled.
    assert_eq!(v["samples"].as_array().map(Vec::len), Some(3), "{v}");
    let out = s.run(&["monitor"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));

    let cron = Cron::new(&s);
    let (code, rec) = cron.run();
    assert_eq!(code, 0);
    assert!(rec.is_empty(), "nothing to do: {rec:?}");
    // A second cron run while the first holds the lock only logs.
    let (code, rec) = cron.run_locked();
    assert_eq!(code, 0);
    assert_eq!(
        rec,
        ["logger -t mediamtx-monitor Monitor already running or locked"]
    );
}

/// Sends SIGCONT to a stopped supervisor even when the test fails.
struct Resume(i32);

impl Drop for Resume {
    fn drop(&mut self) {
        kill(self.0, libc::SIGCONT);
    }
}

#[test]
fn hung_supervisor_gives_2_after_about_2s() {
    let mut s = Sup::mics(&[(1, "garden")], "run");
    s.start_healthy(1);
    let sup = s.supervisor_pid().expect("supervisor pid");
    kill(sup, libc::SIGSTOP);
    let _resume = Resume(sup);
    let t0 = Instant::now();
    let (code, v) = monitor(&s);
    let took = t0.elapsed();
    assert_eq!(code, 2, "{v}");
    assert!(has_finding(&v, "supervisor", 2), "{v}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "hung past 2 s, took {took:?}"
    );
}

#[test]
fn resource_thresholds_apply_to_the_live_processes() {
    let mut s = Sup::mics(&[(1, "garden")], "run");
    // Every process has more than 3 open descriptors (stdin/out/err + more).
    s.set("monitor", "fd_warn", "2")
        .set("monitor", "fd_critical", "3");
    s.write_config();
    s.start_healthy(1);
    let (code, v) = monitor(&s);
    assert_eq!(code, 2, "{v}");
    let sup = s.supervisor_pid().unwrap();
    let hit = v["findings"].as_array().unwrap().iter().any(|f| {
        f["check"] == "fds"
            && f["level"] == "critical"
            && f["message"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("supervisor (pid {sup})"))
    });
    assert!(hit, "supervisor's descriptors judged: {v}");
    assert!(
        v["samples"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["fds"].as_u64().unwrap_or(0) > 3),
        "{v}"
    );
}

/// A process the test started; killed (by pid) and reaped on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn orphan_with_our_marker_is_critical() {
    let mut s = Sup::mics(&[(1, "garden")], "run");
    s.start_healthy(1);
    s.wait_for("proven past monitor.grace", Duration::from_secs(10), proven);
    let (code, v) = monitor(&s);
    assert_eq!(code, 0, "own children are not orphans: {v}");
    let orphan = Guard(
        Command::new("sleep")
            .arg("100")
            .env("MEDIAMTX_STREAM_MANAGER_STREAM", "x")
            .env("MEDIAMTX_STREAM_MANAGER_STATE", s.state_dir())
            .spawn()
            .expect("spawn sleep"),
    );
    let (code, v) = monitor(&s);
    assert_eq!(code, 2, "{v}");
    let pid = orphan.0.id();
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "orphan")
        .expect("orphan finding")
        .clone();
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains(&format!("pid {pid}")),
        "{f}"
    );
    // A marker for another state dir is not ours.
    drop(orphan);
    let _other = Guard(
        Command::new("sleep")
            .arg("100")
            .env("MEDIAMTX_STREAM_MANAGER_STREAM", "x")
            .env(
                "MEDIAMTX_STREAM_MANAGER_STATE",
                s.dir.path().join("elsewhere"),
            )
            .spawn()
            .expect("spawn sleep"),
    );
    let (code, v) = monitor(&s);
    assert_eq!(code, 0, "{v}");
}

/// The fake forks a short-lived `sleep` every 100 ms, like any child that spawns helpers:
/// a marked process that vanishes or is briefly re-parented mid-scan is not an orphan.
#[test]
fn short_lived_grandchildren_are_not_orphans() {
    let mut s = Sup::new();
    for n in 1..=6 {
        s.usb(n, &format!("mic{n}"));
    }
    s.set_mode("run");
    s.write_config();
    s.start_foreground();
    s.wait_for("all running", Duration::from_secs(10), |s| {
        s.status().is_some_and(|v| {
            v["streams"]
                .as_array()
                .is_some_and(|a| a.len() == 6 && a.iter().all(|x| x["health"] == "healthy"))
        })
    });
    s.wait_for("proven past monitor.grace", Duration::from_secs(10), proven);
    for i in 0..12 {
        let (code, v) = monitor(&s);
        assert_eq!(code, 0, "run {i}: {v}");
    }
}

#[test]
fn no_devices_gives_6() {
    let mut s = Sup::mics(&[(1, "garden")], "run");
    s.start_healthy(1);
    s.host.remove_card(1);
    s.wait_for("waiting for its device", Duration::from_secs(5), |s| {
        field(s, "garden", "state") == "waiting-for-device"
    });
    // Past monitor.grace the stream is also degraded (10); 6 comes first.
    std::thread::sleep(Duration::from_millis(1200));
    let (code, v) = monitor(&s);
    assert_eq!(code, 6, "{v}");
    assert!(has_finding(&v, "devices", 6), "{v}");
    assert!(has_finding(&v, "stream", 10), "{v}");
}

#[test]
fn no_devices_at_all_gives_6_even_when_not_required_at_start() {
    let mut s = Sup::new();
    s.set("startup", "require_devices", "false")
        .set("startup", "device_wait", "\"100ms\"");
    s.write_config();
    s.start_foreground();
    let (code, v) = monitor(&s);
    assert_eq!(code, 6, "{v}");
    // Then a microphone is plugged in: healthy again, without touching the supervisor.
    s.usb(1, "garden");
    s.wait_for("running", Duration::from_secs(5), healthy);
    s.wait_for("proven past monitor.grace", Duration::from_secs(10), proven);
    let (code, v) = monitor(&s);
    assert_eq!(code, 0, "{v}");
}

#[test]
fn older_mediamtx_v1_9_shapes_are_understood() {
    let mock = MockMediamtx::start(Version::V1_9); // no /v3/info, `ready`, `bytesReceived`
    mock.set_path("garden", true);
    mock.grow("garden", 4096);
    let mut s = api_sup(&mock.url(), "run");
    s.start_healthy(1);
    let pid = pid_of(&s, "garden");
    std::thread::sleep(Duration::from_millis(1000));
    let st = s.stream("garden").expect("garden");
    assert_eq!(st["pid"].as_i64(), pid, "not restarted: {st}");
    assert_eq!(st["mediamtx"]["available"], true, "{st}");
    s.wait_for("proven past monitor.grace", Duration::from_secs(10), proven);
    let (code, v) = monitor(&s);
    assert_eq!(code, 0, "{v}");
}

/// Parse an exposition into series → value and the set of family names.
fn parse_metrics(text: &str) -> (BTreeMap<String, f64>, BTreeSet<String>) {
    let mut series = BTreeMap::new();
    let mut families = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            families.insert(rest.split(' ').next().unwrap_or("").to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            let (k, v) = line.rsplit_once(' ').expect("sample line");
            series.insert(k.to_string(), v.parse::<f64>().expect("float value"));
        }
    }
    (series, families)
}

#[test]
fn metrics_textfile_and_endpoint_show_the_families() {
    let mock = publishing_mock();
    let mut s = api_sup(&mock.url(), "run");
    let textfile = s.dir.path().join("textfile/mediamtx_stream_manager.prom");
    std::fs::create_dir_all(textfile.parent().unwrap()).unwrap();
    let port = free_port();
    s.set(
        "metrics",
        "textfile",
        &format!("{:?}", textfile.display().to_string()),
    )
    .set("metrics", "listen", &format!("\"127.0.0.1:{port}\""));
    s.write_config();
    s.start_foreground();
    s.wait_for("healthy and published in the textfile", Duration::from_secs(5), |s| {
        healthy(s)
            && std::fs::read_to_string(&textfile).is_ok_and(|t| {
                t.contains(&format!("{GARDEN_UP} 1")) && t.contains("mediamtx_stream_manager_stream_mediamtx_path_available{stream=\"garden\"} 1")
            })
    });
    let text = std::fs::read_to_string(&textfile).unwrap();
    check_exposition(&text).unwrap_or_else(|e| panic!("textfile: {e}\n{text}"));
    let (series, families) = parse_metrics(&text);
    let p = "mediamtx_stream_manager";
    // Dropped: ffmpeg reports no size for RTSP output, so it was always 0 (docs/metrics.md).
    assert!(!text.contains("output_bytes"), "{text}");
    let want_families = [
        "build_info",
        "mediamtx_up",
        "stream_state",
        "stream_up",
        "stream_restarts_total",
        "stream_consecutive_failures",
        "stream_uptime_seconds",
        "stream_progress_out_time_seconds",
        "last_update_timestamp_seconds",
        "stream_silent",
        "stream_mediamtx_path_available",
        "stream_mediamtx_inbound_bytes",
    ];
    for f in want_families {
        assert!(
            families.contains(&format!("{p}_{f}")),
            "family {p}_{f} missing:\n{text}"
        );
    }
    let g = |k: &str| {
        *series
            .get(&format!("{p}_{k}"))
            .unwrap_or_else(|| panic!("series {p}_{k} missing:\n{text}"))
    };
    assert_eq!(g("mediamtx_up"), 1.0);
    assert_eq!(g("stream_up{stream=\"garden\"}"), 1.0);
    assert_eq!(g("stream_state{stream=\"garden\",state=\"running\"}"), 1.0);
    assert_eq!(g("stream_state{stream=\"garden\",state=\"backoff\"}"), 0.0);
    assert_eq!(g("stream_restarts_total{stream=\"garden\"}"), 0.0);
    assert_eq!(g("stream_consecutive_failures{stream=\"garden\"}"), 0.0);
    assert_eq!(g("stream_silent{stream=\"garden\"}"), 0.0);
    assert!(g("stream_mediamtx_inbound_bytes{stream=\"garden\"}") > 0.0);
    assert!(g("stream_progress_out_time_seconds{stream=\"garden\"}") > 0.0);
    let build = series
        .keys()
        .find(|k| k.starts_with(&format!("{p}_build_info{{")))
        .expect("build_info series");
    assert!(
        build.contains("version=\"") && build.contains("mode=\"individual\""),
        "{build}"
    );

    let (head, body) = common::http_get(port, "/metrics");
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
    check_exposition(&body).unwrap_or_else(|e| panic!("/metrics: {e}\n{body}"));
    let (live, live_families) = parse_metrics(&body);
    assert_eq!(live_families, families, "same families over HTTP");
    assert_eq!(live.get(GARDEN_UP), Some(&1.0));
}

#[test]
fn metrics_textfile_does_not_claim_up_after_stop() {
    let mut s = Sup::mics(&[(1, "garden")], "run");
    let textfile = s.dir.path().join("m.prom");
    s.set(
        "metrics",
        "textfile",
        &format!("{:?}", textfile.display().to_string()),
    );
    s.write_config();
    s.start_foreground();
    s.wait_for("up in the textfile", Duration::from_secs(5), |_| {
        std::fs::read_to_string(&textfile).is_ok_and(|t| t.contains(&format!("{GARDEN_UP} 1")))
    });
    let out = s.run(&["stop"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&textfile).expect("textfile kept");
    check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let (series, _) = parse_metrics(&text);
    assert_eq!(
        series.get(GARDEN_UP),
        Some(&0.0),
        "a stopped stream is not up:\n{text}"
    );
    let stopped = "mediamtx_stream_manager_stream_state{stream=\"garden\",state=\"stopped\"}";
    assert_eq!(series.get(stopped), Some(&1.0), "{text}");
}

/// The cron line of SPEC §9 exactly as `install` renders it, with the lock file moved into
/// the temp dir and `systemctl`/`logger` replaced by stubs that record their arguments.
struct Cron {
    command: String,
    stubs: PathBuf,
    record: PathBuf,
    lock: PathBuf,
}

impl Cron {
    fn new(s: &Sup) -> Cron {
        let root = s.dir.path().join("cron");
        let stubs = root.join("bin");
        std::fs::create_dir_all(&stubs).unwrap();
        let record = root.join("calls");
        for name in ["systemctl", "logger"] {
            let p = stubs.join(name);
            std::fs::write(
                &p,
                format!("#!/bin/sh\necho \"{name} $*\" >> {}\n", record.display()),
            )
            .unwrap();
            set_exec(&p);
        }
        let binary = format!("{} -c {}", common::bin().display(), s.cfg.display());
        let rendered = mediamtx_stream_manager::cmd::install::render_cron(&binary);
        let line = rendered
            .lines()
            .find(|l| l.starts_with("*/5 "))
            .expect("cron line")
            .to_string();
        let command = line
            .strip_prefix("*/5 * * * * root ")
            .expect("schedule and user")
            .to_string();
        assert!(
            command.contains("flock -n /run/mediamtx-monitor.lock -c '"),
            "{command}"
        );
        let lock = root.join("mediamtx-monitor.lock");
        let command = command.replace("/run/mediamtx-monitor.lock", &lock.display().to_string());
        Cron {
            command,
            stubs,
            record,
            lock,
        }
    }

    /// Run under cron's bare environment; the shell's exit code and the recorded calls.
    fn run(&self) -> (i32, Vec<String>) {
        let _ = std::fs::remove_file(&self.record);
        let out = Command::new("env")
            .arg("-i")
            .arg(format!("PATH={}:/usr/bin:/bin", self.stubs.display()))
            .args(["sh", "-c", &self.command])
            .stdin(Stdio::null())
            .output()
            .expect("run cron command");
        let rec = std::fs::read_to_string(&self.record).unwrap_or_default();
        (
            out.status.code().unwrap_or(-1),
            rec.lines().map(str::to_string).collect(),
        )
    }

    /// Run while this process holds the lock, as a previous run still in progress would.
    fn run_locked(&self) -> (i32, Vec<String>) {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .unwrap();
        // SAFETY: flock(2) on a descriptor we own; released when `f` closes.
        assert_eq!(
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
            0
        );
        self.run()
    }
}

fn set_exec(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}
