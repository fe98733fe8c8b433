//! The seams a real box goes through (issue 8 items 2 and 4), driven through the built
//! binary on a fake host with the fake ffmpeg, one test per order in which the world can
//! deliver its events:
//!
//! Unplug (SPEC §7): (a) ffmpeg dies of the unplug before any rescan, (b) the rescan sees
//! the device gone first and we stop the child, (c) the child dies while the card's nodes
//! are still there and the rescan reports the card gone just after, (d) one input of a
//! multiplex mix goes. None of them may burn restart budget, and a replug streams again at
//! once (the backoff here is 20 s, so a backoff delay would show).
//!
//! Reload: renaming a stream, disabling it, or changing the mode leaves exactly what a
//! fresh start would run, with no ghost wrappers; `[mediamtx]` changes reach the poller.

mod common;

use std::time::Duration;

use common::mediamtx_mock::{MockMediamtx, Version};
use common::sup::{alive, kill, Sup};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(15);

/// A harness whose supervisor logs at info level (the tests read "configuration reloaded").
fn new_sup() -> Sup {
    let mut s = Sup::new();
    s.env.push(("RUST_LOG".into(), "info".into()));
    s
}

fn stream(s: &Sup, name: &str) -> Value {
    s.stream(name).unwrap_or(Value::Null)
}

fn state(s: &Sup, name: &str) -> String {
    stream(s, name)["state"].as_str().unwrap_or("").to_string()
}

fn reason(v: &Value) -> &str {
    v["last_exit"]["reason"].as_str().unwrap_or("")
}

fn pid(s: &Sup, name: &str) -> Option<i32> {
    stream(s, name)["pid"].as_i64().map(|p| p as i32)
}

fn names(s: &Sup) -> Vec<String> {
    let mut n: Vec<String> = s
        .status()
        .and_then(|v| v["streams"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|v| v["name"].as_str().unwrap_or("").to_string())
        .collect();
    n.sort();
    n
}

/// Streams that have marked processes alive now (our ffmpeg children and the fake's
/// short `sleep` helpers), sorted, once each.
fn children(s: &Sup) -> Vec<String> {
    let mut v: Vec<String> = s.marked().into_iter().map(|(_, n)| n).collect();
    v.sort();
    v.dedup();
    v
}

/// One mic "garden", a backoff so long that any delay shows, no inotify watch (so the
/// order of events is the test's), and the given rescan period.
fn unplug_sup(rescan: &str) -> Sup {
    let mut s = new_sup();
    s.usb(1, "garden");
    s.set_mode("run");
    s.set("discovery", "rescan", &format!("{rescan:?}"))
        .set("discovery", "watch", "false")
        .set("backoff", "initial", "\"20s\"")
        .set("backoff", "max", "\"20s\"");
    s.write_config();
    s
}

/// The card is gone, the stream waits for it, nothing was counted, its child is gone.
fn assert_waiting_uncounted(s: &Sup, old_pid: i32) {
    s.wait_for("waiting for its device", LIMIT, |s| {
        state(s, "garden") == "waiting-for-device"
    });
    let v = stream(s, "garden");
    assert_eq!(reason(&v), "device removed", "{v}");
    assert_eq!(v["consecutive_failures"], 0, "no budget burned: {v}");
    assert_eq!(v["restarts"], 0, "{v}");
    assert!(v["pid"].is_null(), "{v}");
    assert!(!alive(old_pid), "the old child is gone");
    assert!(children(s).is_empty(), "{:?}", s.marked());
}

/// After a replug: running again well inside the 20 s backoff, still uncounted.
fn assert_back_at_once(s: &Sup) {
    s.wait_for("streaming again at once", Duration::from_secs(5), |s| {
        state(s, "garden") == "running"
    });
    let v = stream(s, "garden");
    assert_eq!(v["consecutive_failures"], 0, "{v}");
    assert_eq!(v["restarts"], 1, "one restart: the replug: {v}");
    assert_eq!(children(s), ["garden"]);
}

/// (a) Real ffmpeg exits (I/O error) the moment the card goes, before the next rescan
/// (here 30 s away): the wrapper looks at the card before counting the exit.
#[test]
fn unplug_where_ffmpeg_dies_before_the_rescan_is_not_a_failure() {
    let mut s = unplug_sup("30s");
    let proc_asound = s.host.proc_asound.display().to_string();
    s.env.push(("FAKE_PROC_ASOUND".into(), proc_asound));
    s.start_foreground();
    s.wait_for("running", LIMIT, |s| state(s, "garden") == "running");
    let old = pid(&s, "garden").expect("pid");
    s.host.remove_card(1);
    assert_waiting_uncounted(&s, old);
    let log = std::fs::read_to_string(s.log_dir().join("garden.log")).unwrap_or_default();
    assert!(
        log.contains("Input/output error"),
        "ffmpeg died of the unplug: {log}"
    );
    // Replug. The rescan is 30 s away and there is no watch: a reload rescans at once.
    s.usb(1, "garden");
    kill(s.supervisor_pid().expect("pid"), libc::SIGHUP);
    assert_back_at_once(&s);
}

/// (b) The rescan sees the card gone while ffmpeg still runs: we stop it (not a failure).
#[test]
fn unplug_seen_by_the_rescan_first_stops_the_child_uncounted() {
    let mut s = unplug_sup("200ms");
    s.start_foreground();
    s.wait_for("running", LIMIT, |s| state(s, "garden") == "running");
    let old = pid(&s, "garden").expect("pid");
    s.host.remove_card(1);
    assert_waiting_uncounted(&s, old);
    s.usb(1, "garden");
    assert_back_at_once(&s);
}

/// (c) ffmpeg dies while the card's nodes are still there (the exit is counted and the
/// stream backs off), then the rescan reports the card gone: the count is taken back.
#[test]
fn exit_just_before_the_card_vanishes_is_taken_back() {
    let mut s = unplug_sup("500ms");
    s.start_foreground();
    s.wait_for("running", LIMIT, |s| state(s, "garden") == "running");
    let old = pid(&s, "garden").expect("pid");
    kill(old, libc::SIGKILL);
    s.wait_for("the exit counted", LIMIT, |s| {
        stream(s, "garden")["consecutive_failures"] == 1
    });
    assert_eq!(state(&s, "garden"), "backoff");
    s.host.remove_card(1);
    assert_waiting_uncounted(&s, old);
    s.usb(1, "garden");
    assert_back_at_once(&s);
}

/// A crash with the card present stays a failure (the look is not a free pass).
#[test]
fn crash_with_the_card_present_still_counts() {
    let mut s = unplug_sup("200ms");
    let proc_asound = s.host.proc_asound.display().to_string();
    s.env.push(("FAKE_PROC_ASOUND".into(), proc_asound));
    s.set_mode("crash");
    s.start_foreground();
    s.wait_for("a counted crash", LIMIT, |s| {
        stream(s, "garden")["consecutive_failures"] == 1
    });
    std::thread::sleep(Duration::from_millis(700));
    let v = stream(&s, "garden");
    assert_eq!(v["state"], "backoff", "{v}");
    assert_eq!(v["consecutive_failures"], 1, "{v}");
    assert!(reason(&v).contains("cannot open audio device"), "{v}");
}

/// (d) One input of a multiplex mix goes: the mix dies of it, and comes back at once with
/// the input that is left, without a failure.
#[test]
fn multiplex_input_unplugged_restarts_the_mix_uncounted() {
    let mut s = unplug_sup("30s");
    s.usb(2, "studio");
    s.extra = "[multiplex]\nname = \"all_mics\"\n".into();
    s.env.push(("STREAM_MODE".into(), "multiplex".into()));
    let proc_asound = s.host.proc_asound.display().to_string();
    s.env.push(("FAKE_PROC_ASOUND".into(), proc_asound));
    s.write_config();
    s.start_foreground();
    s.wait_for("mix running", LIMIT, |s| state(s, "all_mics") == "running");
    s.host.remove_card(2);
    s.wait_for("mix waiting", LIMIT, |s| {
        state(s, "all_mics") == "waiting-for-device"
    });
    let v = stream(&s, "all_mics");
    assert_eq!(reason(&v), "device removed", "{v}");
    assert_eq!(v["consecutive_failures"], 0, "{v}");
    kill(s.supervisor_pid().expect("pid"), libc::SIGHUP); // rescan now
    s.wait_for("mix of what is left", LIMIT, |s| {
        state(s, "all_mics") == "running"
    });
    let v = stream(&s, "all_mics");
    assert_eq!(v["consecutive_failures"], 0, "{v}");
    assert!(
        v["alsa_device"].as_str().unwrap_or("").contains("garden"),
        "{v}"
    );
    assert!(
        !v["alsa_device"].as_str().unwrap_or("").contains("studio"),
        "{v}"
    );
}

// ---- reload ---------------------------------------------------------------------------

/// "garden" and "studio" running healthy, the supervisor logging at info level.
fn two_running() -> Sup {
    let mut s = Sup::mics(&[(1, "garden"), (2, "studio")], "run");
    s.env.push(("RUST_LOG".into(), "info".into()));
    s.start_healthy(2);
    s
}

/// SIGHUP, then wait until the supervisor has logged one more "configuration reloaded".
fn reload(s: &Sup) {
    let count = |s: &Sup| {
        s.supervisor_stderr()
            .matches("configuration reloaded")
            .count()
    };
    let before = count(s);
    kill(s.supervisor_pid().expect("pid"), libc::SIGHUP);
    s.wait_for("the reload", LIMIT, |s| count(s) > before);
}

/// Every listed stream running (and at least `n` of them).
fn all_running(s: &Sup, n: usize) -> bool {
    s.status()
        .and_then(|v| v["streams"].as_array().cloned())
        .is_some_and(|a| a.len() >= n && a.iter().all(|x| x["state"] == "running"))
}

/// Stop, start afresh with the same files, and give the names a fresh start lists.
fn fresh_start_names(s: &mut Sup, n: usize) -> Vec<String> {
    let out = s.run(&["stop"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    if let Some(mut c) = s.foreground.take() {
        let _ = c.wait();
    }
    s.start_foreground();
    s.wait_for("fresh start running", LIMIT, |s| all_running(s, n));
    names(s)
}

/// `monitor`'s exit code once every stream had time to be proven (monitor.grace is 1 s).
fn monitor_after_grace(s: &Sup) -> i32 {
    std::thread::sleep(Duration::from_millis(1300));
    s.run(&["monitor"]).status.code().unwrap_or(-1)
}

#[test]
fn reload_that_renames_a_stream_leaves_no_ghost() {
    let mut s = two_running();
    let studio_pid = pid(&s, "studio").expect("pid");
    s.extra = "[devices.garden]\nstream = \"pond\"\n".into();
    s.write_config();
    reload(&s);
    s.wait_for("renamed and running", LIMIT, |s| {
        names(s) == ["pond", "studio"] && all_running(s, 2)
    });
    assert_eq!(
        pid(&s, "studio"),
        Some(studio_pid),
        "untouched stream kept its child"
    );
    assert_eq!(children(&s), ["pond", "studio"], "{:?}", s.marked());
    assert!(
        !s.state_dir().join("streams/garden.pid").exists(),
        "the old stream's pid file went with it"
    );
    assert_eq!(monitor_after_grace(&s), 0, "no ghost for cron");
    assert_eq!(fresh_start_names(&mut s, 2), ["pond", "studio"]);
}

#[test]
fn reload_that_disables_a_stream_stops_and_removes_it() {
    let mut s = two_running();
    let garden_pid = pid(&s, "garden").expect("pid");
    s.extra = "[devices.garden]\nenabled = false\n".into();
    s.write_config();
    reload(&s);
    s.wait_for("garden gone", LIMIT, |s| names(s) == ["studio"]);
    s.wait_for("its child gone", LIMIT, |_| !alive(garden_pid));
    assert_eq!(children(&s), ["studio"], "{:?}", s.marked());
    assert_eq!(monitor_after_grace(&s), 0);
    assert_eq!(fresh_start_names(&mut s, 1), ["studio"]);
    // And back: enabling it again at a reload starts it.
    s.extra.clear();
    s.write_config();
    reload(&s);
    s.wait_for("garden back", LIMIT, |s| {
        names(s) == ["garden", "studio"] && all_running(s, 2)
    });
}

#[test]
fn reload_that_changes_the_mode_swaps_the_whole_set() {
    let mut s = new_sup();
    s.usb(1, "garden");
    s.usb(2, "studio");
    s.set_mode("run");
    s.extra = "[multiplex]\nname = \"all_mics\"\n".into();
    s.write_config();
    s.start_foreground();
    s.wait_for("both running", LIMIT, |s| all_running(s, 2));
    let old: Vec<i32> = ["garden", "studio"]
        .iter()
        .map(|n| pid(&s, n).expect("pid"))
        .collect();
    let text = std::fs::read_to_string(&s.cfg).expect("config");
    std::fs::write(&s.cfg, format!("mode = \"multiplex\"\n{text}")).expect("write");
    reload(&s);
    s.wait_for("one mix running", LIMIT, |s| {
        names(s) == ["all_mics"] && all_running(s, 1)
    });
    for p in old {
        assert!(!alive(p), "old child {p} gone");
    }
    let st = s.status().expect("status");
    assert_eq!(st["supervisor"]["mode"], "multiplex (amix)", "{st}");
    assert_eq!(children(&s), ["all_mics"], "{:?}", s.marked());
    assert_eq!(
        stream(&s, "all_mics")["consecutive_failures"],
        0,
        "the mix found the devices free"
    );
    assert_eq!(monitor_after_grace(&s), 0);
    assert_eq!(fresh_start_names(&mut s, 1), ["all_mics"]);
}

/// A reload in the middle of a backoff: an unrelated edit keeps the stream's budget and
/// delay; a rename retires the backing-off wrapper at once.
#[test]
fn reload_in_the_middle_of_a_backoff() {
    let mut s = new_sup();
    s.usb(1, "garden");
    s.set_mode("crash");
    s.set("backoff", "initial", "\"20s\"")
        .set("backoff", "max", "\"20s\"");
    s.write_config();
    s.start_foreground();
    s.wait_for("in backoff", LIMIT, |s| state(s, "garden") == "backoff");
    s.set("health", "silence_for", "\"7s\""); // not part of this stream's argv
    s.write_config();
    reload(&s);
    let v = stream(&s, "garden");
    assert_eq!(v["state"], "backoff", "{v}");
    assert_eq!(v["consecutive_failures"], 1, "{v}");
    assert!(v["next_retry_s"].as_f64().unwrap_or(0.0) > 10.0, "{v}");
    s.set_mode("run");
    s.extra = "[devices.garden]\nstream = \"pond\"\n".into();
    s.write_config();
    reload(&s);
    s.wait_for("pond running at once", Duration::from_secs(5), |s| {
        names(s) == ["pond"] && all_running(s, 1)
    });
}

/// `[mediamtx]` edits reach the poller at reload: it asks the new server, with the new
/// credentials; switching the API off clears what the old one said.
#[test]
fn reload_reaches_the_mediamtx_poller() {
    let a = MockMediamtx::start(Version::V1_20);
    a.set_path("garden", true);
    a.grow("garden", 4096);
    let b = MockMediamtx::start(Version::V1_20);
    b.set_path("garden", true);
    b.grow("garden", 4096);
    let mut s = new_sup();
    s.usb(1, "garden");
    s.set_mode("run");
    s.set("mediamtx", "api", "true")
        .set("mediamtx", "api_url", &format!("{:?}", a.url()))
        .set("mediamtx", "poll", "\"100ms\"")
        .set("health", "unpublished_timeout", "\"2s\"")
        .set("startup", "mediamtx_wait", "\"1s\"");
    s.write_config();
    s.start_foreground();
    s.wait_for("published on A", LIMIT, |s| {
        stream(s, "garden")["mediamtx"]["available"] == true
    });
    let pid_before = pid(&s, "garden");
    s.set("mediamtx", "api_url", &format!("{:?}", b.url()));
    s.write_config();
    reload(&s);
    let asked_a = a.request_count();
    let lists = |m: &MockMediamtx| {
        m.requests()
            .iter()
            .filter(|r| r.target().contains("/v3/paths/list"))
            .count()
    };
    s.wait_for("B asked", LIMIT, |_| lists(&b) >= 3);
    let st = s.status().expect("status");
    assert_eq!(st["mediamtx"]["reachable"], true, "{st}");
    assert!(
        st["mediamtx"]["api_url"]
            .as_str()
            .unwrap_or("")
            .contains(&b.addr().to_string()),
        "{st}"
    );
    std::thread::sleep(Duration::from_millis(400));
    assert!(
        a.request_count() <= asked_a + 2,
        "the old poller stopped asking A"
    );
    assert_eq!(
        pid(&s, "garden"),
        pid_before,
        "no stream restarted for an API change"
    );
    // New credentials: the poller uses them (B now insists). The publish URL carries them
    // too, so the stream restarts once with them.
    b.require_auth("watch", "s3cret", Duration::ZERO);
    s.wait_for("B refusing the old poller", LIMIT, |s| {
        s.status()
            .is_some_and(|v| v["mediamtx"]["reachable"] == false)
    });
    s.set("mediamtx", "username", "\"watch\"")
        .set("mediamtx", "password", "\"s3cret\"");
    s.write_config();
    reload(&s);
    s.wait_for("B accepting the new credentials", LIMIT, |s| {
        s.status()
            .is_some_and(|v| v["mediamtx"]["reachable"] == true)
    });
    // API off: no poller, no stale MediaMTX view, still healthy.
    s.set("mediamtx", "api", "false");
    s.write_config();
    reload(&s);
    let asked_b = b.request_count();
    std::thread::sleep(Duration::from_millis(500));
    assert!(b.request_count() <= asked_b + 2, "nobody polls any more");
    let st = s.status().expect("status");
    assert_eq!(st["mediamtx"]["enabled"], false, "{st}");
    let v = stream(&s, "garden");
    assert!(v["mediamtx"].is_null(), "{v}");
    assert_eq!(v["health"], "healthy", "{v}");
}

/// Settings that cannot change live are named in a warning, and their old values stay in
/// force (the running supervisor keeps its state dir, socket and pid files).
#[test]
fn reload_names_settings_that_need_a_restart() {
    let mut s = new_sup();
    s.usb(1, "garden");
    s.set_mode("run");
    s.write_config();
    s.start_foreground();
    s.wait_for("running", LIMIT, |s| all_running(s, 1));
    let old_cfg = s.dir.path().join("old.toml");
    std::fs::copy(&s.cfg, &old_cfg).expect("copy");
    let new_state = s.dir.path().join("state2");
    s.set(
        "paths",
        "state_dir",
        &format!("{:?}", new_state.display().to_string()),
    )
    .set("metrics", "listen", "\"127.0.0.1:1\"");
    s.write_config();
    reload(&s);
    let err = s.supervisor_stderr();
    assert!(
        err.contains("paths.state_dir") && err.contains("until the next start"),
        "{err}"
    );
    // Ask through the old state dir: the supervisor is still there.
    let old_cmd = |args: &[&str]| {
        std::process::Command::new(common::bin())
            .args(args)
            .arg("-c")
            .arg(&old_cfg)
            .output()
            .expect("run binary")
    };
    let out = old_cmd(&["status", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let w = v["warnings"].to_string();
    assert!(
        w.contains("paths.state_dir") && w.contains("metrics.listen"),
        "{v}"
    );
    assert!(s.state_dir().join("streams/garden.pid").exists());
    assert!(
        !new_state.exists(),
        "nothing was moved to the new state dir"
    );
    // A restart of the stream keeps using the old state dir too.
    let out = old_cmd(&["restart", "garden"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    s.wait_for("restarted", LIMIT, |_| {
        std::fs::read_to_string(s.state_dir().join("streams/garden.pid")).is_ok()
    });
    assert!(!new_state.exists());
}

/// A reload while a microphone is unplugged: its stream keeps waiting (restart count
/// kept, `monitor` still reports it) unless the new settings disable or rename it.
#[test]
fn reload_while_unplugged_keeps_the_waiting_stream_unless_it_is_gone_from_the_config() {
    let mut s = two_running();
    let old = pid(&s, "garden").expect("pid");
    kill(old, libc::SIGKILL); // one counted restart to carry across
    s.wait_for("garden restarted", LIMIT, |s| {
        stream(s, "garden")["restarts"] == 1 && state(s, "garden") == "running"
    });
    s.host.remove_card(1);
    s.wait_for("garden waiting", LIMIT, |s| {
        state(s, "garden") == "waiting-for-device"
    });
    s.set("health", "silence_for", "\"7s\""); // an unrelated edit
    s.write_config();
    reload(&s);
    assert_eq!(names(&s), ["garden", "studio"]);
    let v = stream(&s, "garden");
    assert_eq!(v["state"], "waiting-for-device", "{v}");
    assert_eq!(v["restarts"], 1, "history kept: {v}");
    assert_eq!(
        s.run(&["monitor"]).status.code(),
        Some(10),
        "the missing mic is reported"
    );
    s.usb(1, "garden");
    s.wait_for("garden back", LIMIT, |s| state(s, "garden") == "running");
    assert_eq!(stream(&s, "garden")["restarts"], 2);
    // Unplugged again, and this time the reload disables it: gone.
    s.host.remove_card(1);
    s.wait_for("garden waiting", LIMIT, |s| {
        state(s, "garden") == "waiting-for-device"
    });
    s.extra = "[devices.garden]\nenabled = false\n".into();
    s.write_config();
    reload(&s);
    assert_eq!(names(&s), ["studio"]);
}
