//! A hung RTSP server and a hung MediaMTX API (issue 14, sequences a–g), through the
//! built binary with real ffmpeg 5.1, the virtual ALSA microphone and real RTSP
//! receivers behind a test server that fails dirty (tests/common/front.rs). Every
//! finished segment is decoded by ffmpeg and must hold the tone.
//!
//! `cargo test --test hung -- --nocapture` prints the figures docs/recording.md quotes
//! (audio missing, time to publish again).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::front::{Backlog, Front, Mode};
use common::mediamtx_mock::{Fault, MockMediamtx, Version};
use common::rtsp::{self, Receiver};
use common::sup::Sup;

/// One real-ffmpeg stream "garden" on the virtual tone mic publishing to `rtsp_url`;
/// with `rec`, 1 s segments under `<tmp>/rec`. Scaled-down timeouts: every wait on the
/// RTSP server is 2 s.
fn setup(s: &mut Sup, rtsp_url: &str, rec: bool, codec: &str) -> PathBuf {
    s.usb(1, "garden");
    let conf = rtsp::virtual_mic(s.dir.path(), "fakemic1", 48000, 2);
    let rec_dir = s.dir.path().join("rec");
    s.ffmpeg = "ffmpeg".into();
    s.rtsp_url = rtsp_url.to_string();
    s.extra = format!(
        "[devices.garden]\nalsa_device = \"fakemic1\"\ncodec = \"{codec}\"\n\
         [recording]\nenabled = {rec}\ndir = {:?}\nsegment = \"1s\"\n",
        rec_dir.display().to_string()
    );
    s.env.push((
        "ALSA_CONFIG_PATH".into(),
        format!("/usr/share/alsa/alsa.conf:{}", conf.display()),
    ));
    s.set("health", "start_timeout", "\"10s\"")
        .set("health", "stall_timeout", "\"3s\"")
        .set("mediamtx", "rtsp_timeout", "\"2s\"")
        // A just-started ffmpeg on the loaded box may sample high: not what this is about.
        .set("monitor", "cpu_warn", "5000")
        .set("monitor", "cpu_critical", "9000");
    s.write_config();
    rec_dir.join("garden")
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("garden-"))
    });
    v.sort();
    v
}

/// Every finished segment (all but the newest, which is being written) decodes and holds
/// the tone (RMS about -24 dB; silence is below -60); a full one is a second long. The
/// segments around a restart are shorter (the old child's last, the new child's first:
/// a few ms at times, too short to judge a level on), and most are full.
fn check_tone(segs: &[PathBuf]) {
    assert!(segs.len() >= 2, "no finished segment: {segs:?}");
    let finished = &segs[..segs.len() - 1];
    let mut full = 0;
    for p in finished {
        let a = rtsp::decode(p).unwrap_or_else(|| panic!("{} does not decode", p.display()));
        assert!(
            a.seconds() > 0.0 && a.seconds() < 1.3,
            "{}: {a:?}",
            p.display()
        );
        assert!(
            a.seconds() < 0.2 || a.mean_db > -40.0,
            "no tone in {}: {a:?}",
            p.display()
        );
        if a.seconds() > 0.85 {
            full += 1;
        }
    }
    assert!(
        full * 10 >= finished.len() * 7,
        "{full} of {} segments are full seconds",
        finished.len()
    );
}

fn sub(s: &Sup, name: &str) -> PathBuf {
    let d = s.dir.path().join(name);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

fn garden(s: &Sup) -> serde_json::Value {
    s.stream("garden").expect("garden in status")
}

/// Watch the stream for `secs`: it stays `running` with the same pid, not publishing,
/// no failure counted, and its output time keeps advancing (the segment leg is never
/// blocked: no pause over 1 s between looks 250 ms apart). Returns the longest pause seen.
fn hold_recording(s: &Sup, secs: f64, pid: u64, why: &str) -> f64 {
    let start = Instant::now();
    let mut last_out = -1.0f64;
    let mut last_advance = Instant::now();
    let mut worst = 0.0f64;
    while start.elapsed().as_secs_f64() < secs {
        let v = garden(s);
        assert_eq!(v["pid"].as_u64(), Some(pid), "child replaced: {v}");
        assert_eq!(v["state"], "running", "{v}");
        assert_eq!(v["publishing"], false, "{v}");
        assert_eq!(v["consecutive_failures"], 0, "{v}");
        assert!(
            v["publish_error"].as_str().is_some_and(|e| e.contains(why)),
            "{v}"
        );
        assert!(v["recording"]["error"].is_null(), "{v}");
        let out = v["progress"]["out_time_s"].as_f64().unwrap_or(0.0);
        if out > last_out {
            last_out = out;
            last_advance = Instant::now();
        }
        worst = worst.max(last_advance.elapsed().as_secs_f64());
        assert!(
            last_advance.elapsed() < Duration::from_millis(1500),
            "output stalled at {out}s: {v}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    worst
}

/// Wait (≤ 5 s) until a publisher's session through `front` is recording after `since`
/// and its receiver decodes audio; the time to the RECORD request.
fn publishing_again(s: &Sup, front: &Front, rx: &Receiver, since: Instant) -> f64 {
    let took = loop {
        if let Some(at) = front.first_after("RECORD", since) {
            break (at - since).as_secs_f64();
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "not publishing 5 s after the server answers: {}",
            garden(s)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    s.wait_for("audio at the receiver", Duration::from_secs(10), |_| {
        rx.received_bytes() > 0
    });
    took
}

/// (a) A server that accepts TCP and never answers, from before `start`: `start` reports
/// the stream as recording and not publishing, the first segment is there within 5 s,
/// segments keep coming, same pid, nothing counted as a failure.
#[test]
fn a_hung_from_start_records_at_once() {
    common::require_ffmpeg();
    let front = Front::start(Mode::Hung);
    let mut s = Sup::new();
    let seg_dir = setup(&mut s, &front.url(), true, "opus");
    let t0 = Instant::now();
    let starting = s
        .cmd(&["start"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    // The first segment, while `start` still waits for the verdict to report.
    while segments(&seg_dir).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(5), "no segment in 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "(a) first segment {:.2}s after start",
        t0.elapsed().as_secs_f64()
    );
    let out = starting.wait_with_output().expect("start output");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let line = text
        .lines()
        .find(|l| l.contains("/garden"))
        .unwrap_or_else(|| panic!("no report line: {text}"));
    assert!(
        line.starts_with("[OK] rtsp://127.0.0.1:")
            && line.contains("(recording; not publishing: RTSP server not answering"),
        "{line}"
    );
    let pid = garden(&s)["pid"].as_u64().expect("pid");
    let worst = hold_recording(&s, 12.0, pid, "RTSP server not answering");
    eprintln!("(a) longest output pause while hung: {worst:.2}s");
    let segs = segments(&seg_dir);
    assert!(segs.len() >= 10, "{segs:?}");
    check_tone(&segs);
    let text = String::from_utf8_lossy(&s.run(&["status"]).stdout).to_string();
    assert!(
        text.contains("NOT publishing: RTSP server not answering"),
        "{text}"
    );
    // Not publishing is unhealthy: monitor says 10 (at once, it never waits on the server).
    let t = Instant::now();
    let out = s.run(&["monitor"]);
    assert_eq!(out.status.code(), Some(10), "{out:?}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "monitor {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    let out = s.run(&["stop"]);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "stop {:?}",
        t.elapsed()
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

/// (b) then (c): publishing, the server stops reading (its buffers fill: pcm at 192 kB/s
/// fills a loopback socket in seconds) → recording goes on without a pause, same pid,
/// `publishing: false`; the server answers again → a fresh child publishes within 5 s,
/// the recording gap at the switch ≤ 1 s.
#[test]
fn b_c_server_stops_reading_then_comes_back() {
    common::require_ffmpeg();
    let front = Front::start(Mode::Hung);
    let mut s = Sup::new();
    let seg_dir = setup(&mut s, &front.url(), true, "pcm");
    let rx1 = Receiver::start_for(&sub(&s, "rx1"), "garden", 60.0);
    front.set(Mode::Forward(rx1.port()));
    s.start_foreground();
    s.wait_for("publishing", Duration::from_secs(15), |_| {
        rx1.received_bytes() > 100_000
    });
    let pid = garden(&s)["pid"].as_u64().unwrap();
    assert_eq!(garden(&s)["publishing"], true);
    // (b) The server stops reading.
    front.pause();
    let paused = Instant::now();
    // While the buffers fill and after: same child, its output never pauses.
    let mut last_out = -1.0f64;
    let mut last_advance = Instant::now();
    while garden(&s)["publishing"] == true {
        assert!(paused.elapsed() < Duration::from_secs(40), "{}", garden(&s));
        let v = garden(&s);
        assert_eq!(v["pid"].as_u64(), Some(pid), "{v}");
        let out = v["progress"]["out_time_s"].as_f64().unwrap_or(0.0);
        if out > last_out {
            last_out = out;
            last_advance = Instant::now();
        }
        assert!(
            last_advance.elapsed() < Duration::from_millis(1500),
            "stalled: {v}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "(b) RTSP leg given up {:.1}s after the server stopped reading",
        paused.elapsed().as_secs_f64()
    );
    let before = segments(&seg_dir).len();
    hold_recording(&s, 5.0, pid, "RTSP server not answering");
    let during = segments(&seg_dir);
    assert!(during.len() >= before + 3, "{during:?}");
    check_tone(&during);
    drop(rx1);
    // (c) The server answers again, with a fresh receiver.
    let rx2 = Receiver::start_for(&sub(&s, "rx2"), "garden", 30.0);
    front.set(Mode::Forward(rx2.port()));
    front.resume();
    let took = publishing_again(&s, &front, &rx2, Instant::now());
    s.wait_for("gap measured", Duration::from_secs(5), |s| {
        garden(s)["recording"]["last_gap_s"].is_number()
    });
    let v = garden(&s);
    let gap = v["recording"]["last_gap_s"].as_f64().unwrap();
    eprintln!("(c) after (b): publishing again {took:.2}s after the server answers; recording gap {gap:.2}s");
    assert!(gap <= 1.0, "{v}");
    assert_ne!(v["pid"].as_u64(), Some(pid), "{v}");
    assert_eq!(v["publishing"], true, "{v}");
    assert_eq!(v["consecutive_failures"], 0, "a restore is no failure: {v}");
    std::thread::sleep(Duration::from_millis(1500));
    check_tone(&segments(&seg_dir));
}

/// (a) then (c): hung from the start, then the server answers.
#[test]
fn c_hung_server_comes_back() {
    common::require_ffmpeg();
    let front = Front::start(Mode::Hung);
    let mut s = Sup::new();
    let seg_dir = setup(&mut s, &front.url(), true, "opus");
    if std::env::var_os("HUNG_DEBUG").is_some() {
        s.env.push(("RUST_LOG".into(), "debug".into()));
    }
    s.start_foreground();
    s.wait_for("recording, not publishing", Duration::from_secs(15), |s| {
        let v = garden(s);
        v["publishing"] == false && v["recording"]["files"].as_u64() >= Some(2)
    });
    let pid = garden(&s)["pid"].as_u64().unwrap();
    let worst = hold_recording(&s, 3.0, pid, "RTSP server not answering");
    eprintln!("(c) longest output pause while hung: {worst:.2}s");
    let rx = Receiver::start_for(&sub(&s, "rx"), "garden", 30.0);
    front.set(Mode::Forward(rx.port()));
    let took = publishing_again(&s, &front, &rx, Instant::now());
    s.wait_for("gap measured", Duration::from_secs(5), |s| {
        garden(s)["recording"]["last_gap_s"].is_number()
    });
    let v = garden(&s);
    let gap = v["recording"]["last_gap_s"].as_f64().unwrap();
    eprintln!("(c) after (a): publishing again {took:.2}s after the server answers; recording gap {gap:.2}s");
    if std::env::var_os("HUNG_DEBUG").is_some() {
        eprintln!("{}", s.supervisor_stderr());
    }
    assert!(gap <= 1.0, "{v}");
    assert_eq!(v["consecutive_failures"], 0, "{v}");
    std::thread::sleep(Duration::from_millis(1500));
    check_tone(&segments(&seg_dir));
}

/// (d) A connect that never completes (the listener's accept queue is full): as (a);
/// then a server answers on that address: as (c).
#[test]
fn d_connect_never_completes() {
    common::require_ffmpeg();
    let bl = Backlog::start();
    let mut s = Sup::new();
    let seg_dir = setup(&mut s, &bl.url(), true, "opus");
    let t0 = Instant::now();
    s.start_foreground();
    while segments(&seg_dir).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(5), "no segment in 5 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.wait_for("not publishing", Duration::from_secs(10), |s| {
        garden(s)["publishing"] == false
    });
    let pid = garden(&s)["pid"].as_u64().unwrap();
    let worst = hold_recording(&s, 8.0, pid, "RTSP server not answering");
    eprintln!("(d) longest output pause while unreachable: {worst:.2}s");
    // The address starts answering (a server on the same port).
    let port = bl.port;
    drop(bl);
    let rx = Receiver::start_for(&sub(&s, "rx"), "garden", 30.0);
    let front = Front::start_on(port, Mode::Forward(rx.port()));
    let took = publishing_again(&s, &front, &rx, Instant::now());
    s.wait_for("gap measured", Duration::from_secs(5), |s| {
        garden(s)["recording"]["last_gap_s"].is_number()
    });
    let v = garden(&s);
    let gap = v["recording"]["last_gap_s"].as_f64().unwrap();
    eprintln!("(d) publishing again {took:.2}s after the server answers; recording gap {gap:.2}s");
    assert!(gap <= 1.0, "{v}");
    assert_eq!(v["consecutive_failures"], 0, "{v}");
    std::thread::sleep(Duration::from_millis(1500));
    check_tone(&segments(&seg_dir));
}

/// (e) (a) without recording: each start fails after `rtsp_timeout` with the reason in
/// words, the backoff is respected (1, 2, 4 s), every failure is counted, `status`
/// answers at once.
#[test]
fn e_hung_without_recording_backs_off() {
    common::require_ffmpeg();
    let front = Front::start(Mode::Hung);
    let mut s = Sup::new();
    setup(&mut s, &front.url(), false, "opus");
    s.set("mediamtx", "rtsp_timeout", "\"1s\"")
        .set("backoff", "initial", "\"1s\"")
        .set("backoff", "max", "\"4s\"")
        .set("backoff", "stable_after", "\"60s\"");
    s.write_config();
    // `start` does not hang either: it reports the first verdict, a failed start.
    let t = Instant::now();
    let out = s.run(&["start"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "start {:?}",
        t.elapsed()
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("[FAIL] rtsp://127.0.0.1:")
                && l.contains("/garden (RTSP server not answering")),
        "{text}"
    );
    // (failure count, when seen, backoff the supervisor announced)
    let mut seen: Vec<(u64, Instant)> = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(14) {
        let asked = Instant::now();
        let v = garden(&s);
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "status took {:?}",
            asked.elapsed()
        );
        assert_ne!(v["state"], "running", "a hung server is no run: {v}");
        let n = v["consecutive_failures"].as_u64().unwrap();
        if n > 0 {
            let reason = v["last_exit"]["reason"].as_str().unwrap_or("");
            assert!(reason.contains("RTSP server not answering"), "{v}");
        }
        if seen.last().map(|x| x.0) != Some(n) {
            seen.push((n, Instant::now()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Failures come one at a time, each after rtsp_timeout plus the previous backoff.
    let counts: Vec<u64> = seen.iter().map(|x| x.0).collect();
    assert!(
        counts.windows(2).all(|w| w[1] == w[0] + 1),
        "failures counted one by one: {counts:?}"
    );
    assert!(
        (3..=6).contains(counts.last().unwrap()),
        "failures in 14 s: {counts:?}"
    );
    for w in seen.windows(2).skip(1) {
        // Between failure n and n+1: the backoff after n (1 s · 2^(n-1), max 4 s) and a
        // 1 s handshake timeout.
        let n = w[0].0;
        let backoff = (1u64 << (n - 1).min(2)) as f64;
        let dt = (w[1].1 - w[0].1).as_secs_f64();
        assert!(dt >= backoff + 0.8, "failure {n}→{}: {dt:.2}s", n + 1);
    }
    let text = String::from_utf8_lossy(&s.run(&["status"]).stdout).to_string();
    assert!(text.contains("RTSP server not answering"), "{text}");
    let t = Instant::now();
    let out = s.run(&["monitor"]);
    assert_eq!(out.status.code(), Some(10), "{out:?}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "monitor {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    let out = s.run(&["stop"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

/// (f) The MediaMTX API and the RTSP port both hung: `status` under 1 s, `monitor` exit 7
/// within 3 s, no child restarted for it, `stop` within `stop.grace` + 2 s; `start` with
/// the API hung exits 7 after `startup.mediamtx_wait`.
#[test]
fn f_api_and_rtsp_hung() {
    common::require_ffmpeg();
    let front = Front::start(Mode::Hung);
    let api = MockMediamtx::start(Version::V1_20);
    let mut s = Sup::new();
    let seg_dir = setup(&mut s, &front.url(), true, "opus");
    s.set("mediamtx", "api", "true")
        .set("mediamtx", "api_url", &format!("{:?}", api.url()))
        .set("mediamtx", "poll", "\"200ms\"")
        .set("mediamtx", "timeout", "\"1s\"")
        .set("health", "unpublished_timeout", "\"60s\"")
        .set("startup", "mediamtx_wait", "\"2s\"");
    s.write_config();
    s.start_foreground();
    s.wait_for("recording, not publishing", Duration::from_secs(15), |s| {
        let v = garden(s);
        v["publishing"] == false && v["recording"]["files"].as_u64() >= Some(1)
    });
    let pid = garden(&s)["pid"].as_u64().unwrap();
    // The API hangs: accepts, reads, never answers.
    api.set_fault(Fault::Slow(Duration::from_secs(3600)));
    let hung = Instant::now();
    loop {
        let t = Instant::now();
        let out = s.run(&["monitor"]);
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "monitor {:?}",
            t.elapsed()
        );
        if out.status.code() == Some(7) {
            break;
        }
        assert!(
            hung.elapsed() < Duration::from_secs(3),
            "monitor not 7 within 3 s of the hang: {out:?}"
        );
    }
    eprintln!(
        "(f) monitor 7 {:.2}s after the API hung",
        hung.elapsed().as_secs_f64()
    );
    for _ in 0..5 {
        let t = Instant::now();
        let v = s.status().expect("status");
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "status {:?}",
            t.elapsed()
        );
        assert_eq!(v["mediamtx"]["reachable"], false, "{v}");
        let g = garden(&s);
        assert_eq!(g["pid"].as_u64(), Some(pid), "restarted for the API: {g}");
        assert_eq!(g["consecutive_failures"], 0, "{g}");
        std::thread::sleep(Duration::from_millis(400));
    }
    check_tone(&segments(&seg_dir));
    let t = Instant::now();
    let out = s.run(&["stop"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        t.elapsed()
    );

    // A fresh start while the API hangs: exit 7 after mediamtx_wait (2 s), not after
    // mediamtx.timeout per try.
    let t = Instant::now();
    let out = s.run(&["start", "--foreground"]);
    let took = t.elapsed();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

/// (g) After a hang the server answers RTSP but refuses our publish (401): no tight
/// loop, the probe interval doubles (1, 2, 4 … s) with each restore that fails at once.
#[test]
fn g_refused_after_hang_backs_off() {
    common::require_ffmpeg();
    let front = Front::start(Mode::Hung);
    let mut s = Sup::new();
    let seg_dir = setup(&mut s, &front.url(), true, "opus");
    s.start_foreground();
    s.wait_for("not publishing", Duration::from_secs(15), |s| {
        garden(s)["publishing"] == false
    });
    front.set(Mode::Refuse);
    let t0 = Instant::now();
    let mut starts: Vec<(u64, Instant)> = Vec::new();
    while t0.elapsed() < Duration::from_secs(20) {
        let v = garden(&s);
        assert_eq!(v["consecutive_failures"], 0, "{v}");
        if let Some(pid) = v["pid"].as_u64() {
            if starts.last().map(|x| x.0) != Some(pid) {
                starts.push((pid, Instant::now()));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let gaps: Vec<f64> = starts
        .windows(2)
        .map(|w| (w[1].1 - w[0].1).as_secs_f64())
        .collect();
    eprintln!("(g) restarts {} apart (s): {gaps:.1?}", starts.len());
    // 1 + 2 + 4 + 8 s of probe intervals (plus restarts) fit at most 5 children in 20 s.
    assert!(
        (3..=6).contains(&starts.len()),
        "children in 20 s: {}",
        starts.len()
    );
    // The first restore may wait for a probe sent while the server still hung; after it,
    // each restore that fails at once doubles the probe interval: 2, 4, 8 s between
    // children at least (plus the restart itself).
    for (i, g) in gaps.iter().enumerate().skip(1) {
        let interval = (1u64 << i) as f64;
        assert!(*g >= interval - 0.2, "gap {i} under {interval}s: {gaps:?}");
    }
    assert!(
        gaps[1..].windows(2).all(|w| w[1] > w[0]),
        "probe interval must grow: {gaps:?}"
    );
    let v = garden(&s);
    assert!(
        v["publish_error"]
            .as_str()
            .is_some_and(|e| e.contains("401")),
        "{v}"
    );
    assert!(front.methods().iter().any(|m| m == "ANNOUNCE"));
    check_tone(&segments(&seg_dir));
}

/// (b) without recording: ffmpeg 5.1's RTSP writes fail silently after `-timeout`, so a
/// server that stops reading leaves a child creeping a packet per timeout. The stall
/// check wants a quarter of real time: the child is ended as stalled and restarted
/// through the backoff, counted as a failure.
#[test]
fn b_without_recording_a_stalled_server_is_a_stall() {
    common::require_ffmpeg();
    let front = Front::start(Mode::Hung);
    let mut s = Sup::new();
    setup(&mut s, &front.url(), false, "pcm");
    s.set("mediamtx", "rtsp_timeout", "\"1s\"")
        .set("backoff", "initial", "\"1s\"")
        .set("backoff", "max", "\"4s\"");
    s.write_config();
    let rx = Receiver::start_for(&sub(&s, "rx"), "garden", 60.0);
    front.set(Mode::Forward(rx.port()));
    s.start_foreground();
    s.wait_for("publishing", Duration::from_secs(15), |_| {
        rx.received_bytes() > 100_000
    });
    let pid = garden(&s)["pid"].as_u64().unwrap();
    front.pause();
    let paused = Instant::now();
    s.wait_for("stalled", Duration::from_secs(45), |s| {
        garden(s)["consecutive_failures"].as_u64() >= Some(1)
    });
    let v = garden(&s);
    eprintln!(
        "(b, no recording) child ended {:.1}s after the server stopped reading: {}",
        paused.elapsed().as_secs_f64(),
        v["last_exit"]["reason"]
    );
    assert!(
        v["last_exit"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("stalled")),
        "{v}"
    );
    assert_ne!(v["pid"].as_u64(), Some(pid), "{v}");
}
