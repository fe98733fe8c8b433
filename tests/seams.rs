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
    let mut s = Sup::new();
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
