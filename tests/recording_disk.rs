//! Issue 14 (h): the recording disk fails dirty and comes back, with real ffmpeg 5.1, the
//! virtual ALSA microphone and real RTSP receivers (docs/recording.md "Disk full,
//! directory not writable, disk gone"; helpers in recording_disk/world.rs). The recording directory is a small tmpfs mounted in the
//! test's temp dir (root only; elsewhere a SKIPPED line, and a failure under `CI=true`).
//!
//! The stream is pcm (aiff segments of 1 s ≈ 188 KiB, and 1.5 Mbit/s of RTSP) so a 3 MiB
//! filesystem fills in seconds.

mod common;

#[path = "recording_disk/world.rs"]
mod world;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::rtsp;
use common::sup::Sup;
use world::{fill, free_bytes, segments, Grabber, Relay, Tmpfs};

/// One pcm stream recording 1 s aiff segments into `rec_dir`, publishing to `relay`.
fn setup(s: &mut Sup, rec_dir: &Path, relay_port: u16, min_free: &str) {
    s.usb(1, "garden");
    let conf = rtsp::virtual_mic(s.dir.path(), "fakemic1", 48000, 2);
    s.ffmpeg = "ffmpeg".into();
    s.rtsp_url = format!("rtsp://127.0.0.1:{relay_port}");
    s.extra = format!(
        "[devices.garden]\nalsa_device = \"fakemic1\"\ncodec = \"pcm\"\n\
         [recording]\nenabled = true\ndir = {:?}\nsegment = \"1s\"\nmin_free = {min_free:?}\n",
        rec_dir.display().to_string()
    );
    s.env.push((
        "ALSA_CONFIG_PATH".into(),
        format!("/usr/share/alsa/alsa.conf:{}", conf.display()),
    ));
    s.set("health", "start_timeout", "\"10s\"");
    s.set("health", "stall_timeout", "\"3s\"");
    // A just-started ffmpeg on a loaded test machine may sample at 100% CPU.
    s.set("monitor", "cpu_warn", "5000");
    s.set("monitor", "cpu_critical", "9000");
    s.write_config();
}

fn rec(v: &serde_json::Value) -> &serde_json::Value {
    &v["recording"]
}

/// A finished segment holds about a second of the tone, as ffmpeg's own `volumedetect`
/// measures it (`n_samples` counts both channels of 48 kHz).
fn assert_tone(dir: &Path, name: &str) {
    let p = dir.join(name);
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-nostats", "-i"])
        .arg(&p)
        .args(["-af", "volumedetect", "-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    let field = |key: &str| -> Option<f64> {
        let rest = log.split(key).nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    };
    let (Some(samples), Some(mean_db)) = (field("n_samples: "), field("mean_volume: ")) else {
        panic!("{} does not decode: {log}", p.display());
    };
    let seconds = samples / (48000.0 * 2.0);
    // The tone is -24 dB RMS. On a starved box ffmpeg's `aresample=async` pads silence
    // for capture it fell behind on (seen: -31 dB), so "present" is above -40 dB;
    // digital silence is -91 dB here.
    assert!(
        seconds > 0.8 && seconds < 1.3 && mean_db > -40.0,
        "segment without its second of the tone: {name}: {seconds:.3}s at {mean_db} dB \
         (all: {:?})",
        segments(dir)
    );
}

/// (1) other files take the disk: the ring deletes its own oldest segments down to
/// `min_free` and the same ffmpeg keeps recording and publishing; (2) the disk is taken
/// entirely: own files gone, `recording stopped: No space left on device`, publishing goes
/// on; space back: recording resumes within 5 s (a fresh child, not a failure).
#[test]
fn full_disk_ring_makes_room_then_stops_and_resumes_when_space_is_back() {
    const TEST: &str = "full_disk_ring_makes_room_then_stops_and_resumes_when_space_is_back";
    common::require_ffmpeg();
    let mut s = Sup::new();
    let rec_dir = s.dir.path().join("rec");
    let seg_dir = rec_dir.join("garden");
    let relay = Relay::start(&s.dir.path().join("rx"));
    setup(&mut s, &rec_dir, relay.port, "640K");
    let Some(_fs) = Tmpfs::mount(TEST, &rec_dir, "3m") else {
        return;
    };
    // Files that are not this stream's segments: never touched.
    std::fs::create_dir_all(&seg_dir).unwrap();
    let foreign = seg_dir.join("garden-notes.txt");
    std::fs::write(&foreign, "keep me").unwrap();
    let filler = rec_dir.join("filler.bin");
    // Leave about 1.5 MiB: the floor (640K) is reached after ~4 segments.
    let free0 = free_bytes(&rec_dir);
    let filled = fill(&filler, free0.saturating_sub(1536 << 10));

    s.start_foreground();
    s.wait_for("recording and publishing", Duration::from_secs(20), |s| {
        s.stream("garden").is_some_and(|v| {
            v["state"] == "running"
                && v["publishing"] == true
                && rec(&v)["files"].as_u64() >= Some(1)
        })
    });
    let v = s.stream("garden").unwrap();
    let pid = v["pid"].as_u64();
    let failures = v["consecutive_failures"].as_u64();

    // (1) The ring makes room: watch 10 s of recording at the floor.
    let first_seen = segments(&seg_dir)[0].clone();
    let mut seen: Vec<String> = Vec::new();
    let (rx_n, rx_at_start) = relay.newest();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        let v = s.stream("garden").unwrap();
        assert_eq!(v["pid"].as_u64(), pid, "same ffmpeg while making room: {v}");
        assert_eq!(v["publishing"], true, "{v}");
        assert!(rec(&v)["error"].is_null(), "{v}");
        for n in segments(&seg_dir) {
            if !seen.contains(&n) {
                seen.push(n);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let now = segments(&seg_dir);
    for n in &now {
        if !seen.contains(n) {
            seen.push(n.clone());
        }
    }
    assert!(
        !now.contains(&first_seen),
        "oldest segment deleted: {now:?}"
    );
    // No gap: the same ffmpeg wrote all along with no leg failure (pid and error above).
    // Names are wall-clock seconds: on a starved box a segment can take a little longer
    // than its second of audio, so a name may skip a second.
    assert!(seen.len() >= 7, "a segment about every second: {seen:?}");
    assert!(now.len() >= 2, "the newest are kept: {now:?}");
    // Deleted oldest first: what is left is the newest of what was seen.
    assert_eq!(now[..], seen[seen.len() - now.len()..], "{seen:?}");
    let v = s.stream("garden").unwrap();
    let free = rec(&v)["free_bytes"].as_u64().expect("free_bytes");
    assert!(
        free >= (640 << 10) - (200 << 10),
        "kept near the floor: {v}"
    );
    assert_eq!(std::fs::metadata(&filler).unwrap().len(), filled);
    assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "keep me");
    // The ring may delete the oldest of these any moment: copy them off the tmpfs first,
    // skipping one that went in between (the newest finished ones stay for seconds).
    let kept = s.dir.path().join("kept");
    std::fs::create_dir_all(&kept).unwrap();
    let mut copied = 0;
    for n in &now[..now.len() - 1] {
        if std::fs::copy(seg_dir.join(n), kept.join(n)).is_ok() {
            assert_tone(&kept, n);
            copied += 1;
        }
    }
    assert!(copied >= 1, "no finished segment to check: {now:?}");
    let (rx_n2, rx_now) = relay.newest();
    assert_eq!(rx_n2, rx_n, "one RTSP connection throughout");
    assert!(
        rx_now - rx_at_start >= 8.5,
        "publishing uninterrupted: {:.2}s received in 10s",
        rx_now - rx_at_start
    );

    // (1b) The filler takes every free byte at once: ffmpeg's next write meets ENOSPC
    // (or, if a sweep comes first, the floor); either way the ring deletes its own oldest
    // segments and recording goes on (through a restore restart, not a failure).
    // Other files now hold all but what the ring frees: it keeps about one segment.
    let before = segments(&seg_dir);
    let filled = filled + fill(&filler, u64::MAX);
    let t = Instant::now();
    let new_seen = std::cell::RefCell::new(Vec::<String>::new());
    s.wait_for(
        "recording on after the disk filled",
        Duration::from_secs(15),
        |s| {
            let mut seen = new_seen.borrow_mut();
            for n in segments(&seg_dir) {
                if !before.contains(&n) && !seen.contains(&n) {
                    seen.push(n);
                }
            }
            s.stream("garden").is_some_and(|v| {
                v["state"] == "running" && rec(&v)["error"].is_null() && seen.len() >= 3
            })
        },
    );
    let v = s.stream("garden").unwrap();
    eprintln!(
        "disk filled at once: recording on after {:.2}s ({}; last gap {:?})",
        t.elapsed().as_secs_f64(),
        if v["pid"].as_u64() == pid {
            "same child".to_string()
        } else {
            format!("restored: {}", v["last_exit"]["reason"])
        },
        rec(&v)["last_gap_s"].as_f64()
    );
    assert_eq!(v["consecutive_failures"].as_u64(), failures, "{v}");
    assert!(
        !segments(&seg_dir).contains(&before[0]),
        "the oldest went first: {before:?} {:?}",
        segments(&seg_dir)
    );
    assert_eq!(std::fs::metadata(&filler).unwrap().len(), filled);
    assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "keep me");
    let pid = v["pid"].as_u64();

    // (2) The disk is taken entirely: the ring deletes all it may, then stops.
    let mut grab = Grabber::start(&filler);
    s.wait_for("recording stopped", Duration::from_secs(30), |s| {
        s.stream("garden").is_some_and(|v| {
            rec(&v)["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("recording stopped: No space left on device"))
        })
    });
    s.wait_for("own segments gone", Duration::from_secs(10), |_| {
        segments(&seg_dir).is_empty()
    });
    let (rx_n, rx_at_full) = relay.newest();
    std::thread::sleep(Duration::from_secs(3));
    let v = s.stream("garden").unwrap();
    assert_eq!(
        v["pid"].as_u64(),
        pid,
        "no restart while the disk is full: {v}"
    );
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["publishing"], true, "{v}");
    assert_eq!(v["health"], "degraded", "{v}");
    assert!(segments(&seg_dir).is_empty(), "{:?}", segments(&seg_dir));
    let (rx_n2, rx_now) = relay.newest();
    assert_eq!(rx_n2, rx_n, "publishing not interrupted");
    assert!(
        rx_now - rx_at_full >= 2.5,
        "publishing goes on: {rx_now} {rx_at_full}"
    );
    let text = String::from_utf8_lossy(&s.run(&["status"]).stdout).to_string();
    assert!(
        text.contains("ERROR: recording stopped: No space left on device"),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "keep me");

    // Space comes back: recording resumes within 5 s, through a restart not counted.
    grab.stop();
    std::fs::remove_file(&filler).unwrap();
    let back = Instant::now();
    s.wait_for("a new segment", Duration::from_secs(10), |_| {
        !segments(&seg_dir).is_empty()
    });
    let resumed = back.elapsed();
    eprintln!(
        "recording resumed {:.2}s after space came back",
        resumed.as_secs_f64()
    );
    assert!(resumed <= Duration::from_secs(5), "{resumed:?}");
    s.wait_for("recording again", Duration::from_secs(10), |s| {
        s.stream("garden").is_some_and(|v| {
            v["state"] == "running"
                && v["publishing"] == true
                && rec(&v)["error"].is_null()
                && rec(&v)["files"].as_u64() >= Some(1)
        })
    });
    let v = s.stream("garden").unwrap();
    assert_ne!(v["pid"].as_u64(), pid, "{v}");
    assert_eq!(v["consecutive_failures"].as_u64(), failures, "{v}");
    assert!(
        v["last_exit"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("recording restore")),
        "{v}"
    );
    let gap = rec(&v)["last_gap_s"].as_f64().expect("gap measured");
    eprintln!("publishing gap at the restore {gap:.3}s");
    assert!(gap < 2.0, "{v}");
    let now = segments(&seg_dir);
    assert_tone(&seg_dir, &now[0]);
    // The new child publishes again (a new RTSP connection, audio arriving).
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let (n, secs) = relay.newest();
        if n > rx_n && secs >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "publishing after the restore: {:?}",
            relay.received()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The recording filesystem is unmounted under a running stream (recording.dir lives on
/// it, so it vanishes): recording stops, is not moved onto the filesystem underneath, and
/// resumes once the disk is back. Before that, the stream's own directory is removed: it
/// is made again at once.
#[test]
fn recording_dir_removed_or_unmounted_resumes_when_back() {
    const TEST: &str = "recording_dir_removed_or_unmounted_resumes_when_back";
    common::require_ffmpeg();
    let mut s = Sup::new();
    let mnt = s.dir.path().join("mnt");
    let rec_dir = mnt.join("rec");
    let seg_dir = rec_dir.join("garden");
    let relay = Relay::start(&s.dir.path().join("rx"));
    setup(&mut s, &rec_dir, relay.port, "64K");
    let Some(mut fs) = Tmpfs::mount(TEST, &mnt, "16m") else {
        return;
    };
    s.start_foreground();
    s.wait_for("recording", Duration::from_secs(20), |s| {
        s.stream("garden")
            .is_some_and(|v| v["state"] == "running" && rec(&v)["files"].as_u64() >= Some(1))
    });
    let pid = s.stream("garden").unwrap()["pid"].as_u64();

    // The stream's directory removed: the next segment cannot open; made again at once.
    std::fs::remove_dir_all(&seg_dir).unwrap();
    let removed = Instant::now();
    s.wait_for("recording again after rm", Duration::from_secs(10), |s| {
        s.stream("garden").is_some_and(|v| {
            v["pid"].as_u64() != pid
                && v["state"] == "running"
                && rec(&v)["error"].is_null()
                && segments(&seg_dir).len() >= 2
        })
    });
    eprintln!(
        "directory removed: recording again {:.2}s later",
        removed.elapsed().as_secs_f64()
    );
    let v = s.stream("garden").unwrap();
    assert_eq!(v["consecutive_failures"], 0, "{v}");
    let pid = v["pid"].as_u64();

    // The disk unmounted: recording.dir is gone; it must not be made on the filesystem
    // underneath (the mount point's directory).
    fs.unmount();
    s.wait_for("recording stopped", Duration::from_secs(10), |s| {
        s.stream("garden").is_some_and(|v| {
            rec(&v)["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("recording stopped"))
        })
    });
    std::thread::sleep(Duration::from_secs(3));
    let v = s.stream("garden").unwrap();
    assert_eq!(
        v["pid"].as_u64(),
        pid,
        "no restart while the disk is away: {v}"
    );
    assert_eq!(v["publishing"], true, "{v}");
    assert!(
        !rec_dir.exists(),
        "recording.dir made on the wrong filesystem"
    );
    // A fresh child meanwhile (here `restart garden`) does not make it either.
    let out = s.run(&["restart", "garden"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    s.wait_for(
        "a fresh child, still waiting",
        Duration::from_secs(10),
        |s| {
            s.stream("garden").is_some_and(|v| {
                v["pid"].as_u64() != pid
                    && v["state"] == "running"
                    && v["publishing"] == true
                    && rec(&v)["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("is gone (disk unmounted?)"))
            })
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(!rec_dir.exists(), "recording.dir made by a fresh child");

    // The disk is back (a fresh tmpfs, with its recording directory).
    let _fs2 = Tmpfs::mount(TEST, &mnt, "16m").expect("remount");
    std::fs::create_dir_all(&rec_dir).unwrap();
    let back = Instant::now();
    s.wait_for("a new segment", Duration::from_secs(10), |_| {
        !segments(&seg_dir).is_empty()
    });
    let resumed = back.elapsed();
    eprintln!(
        "disk back: recording resumed {:.2}s later",
        resumed.as_secs_f64()
    );
    assert!(resumed <= Duration::from_secs(5), "{resumed:?}");
    s.wait_for("recording, no error", Duration::from_secs(10), |s| {
        s.stream("garden").is_some_and(|v| {
            v["state"] == "running" && rec(&v)["error"].is_null() && segments(&seg_dir).len() >= 2
        })
    });
    let v = s.stream("garden").unwrap();
    assert_eq!(v["consecutive_failures"], 0, "{v}");
    assert_tone(&seg_dir, &segments(&seg_dir)[0]);
    drop(relay);
}

/// `recording.min_free`: a size or a percentage; anything else is a one-line config error
/// naming file:line and the key, exit 4.
#[test]
fn bad_min_free_is_a_config_error() {
    let mut s = Sup::new();
    for (value, ok) in [
        ("\"5%\"", true),
        ("\"0.5%\"", true),
        ("\"100M\"", true),
        ("1048576", true),
        ("\"0%\"", false),
        ("\"60%\"", false),
        ("\"lots\"", false),
        ("0", false),
        ("true", false),
    ] {
        s.extra = format!("[recording]\nmin_free = {value}\n");
        s.write_config();
        let out = s.run(&["config", "--check"]);
        let err = String::from_utf8_lossy(&out.stderr);
        if ok {
            assert_eq!(out.status.code(), Some(0), "{value}: {err}");
            continue;
        }
        assert_eq!(out.status.code(), Some(4), "{value}: {err}");
        let cfg = s.cfg.display().to_string();
        assert!(
            err.lines().count() == 1
                && err.contains(&format!("{cfg}:"))
                && err.contains(&format!("recording.min_free = {value}")),
            "{value}: {err}"
        );
    }
    s.extra = "[recording]\nmin_free = \"2%\"\n".into();
    s.write_config();
    let out = s.run(&["config", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("config --json");
    assert_eq!(v["settings"]["recording"]["min_free"], "2%", "{v}");
}

/// The recording directory cannot be made at the first start (a regular file where a
/// directory should be): streaming only, the error in `status`. The file is removed →
/// recording starts by itself within a few seconds, not counted as a failure.
#[test]
fn unwritable_recording_dir_fixed_later_records_by_itself() {
    common::require_ffmpeg();
    let mut s = Sup::new();
    let blocker = s.dir.path().join("blocker");
    std::fs::write(&blocker, "x").unwrap();
    let rec_dir = blocker.join("rec");
    let seg_dir = rec_dir.join("garden");
    let relay = Relay::start(&s.dir.path().join("rx"));
    setup(&mut s, &rec_dir, relay.port, "5%");
    s.start_foreground();
    s.wait_for("streaming, not recording", Duration::from_secs(20), |s| {
        s.stream("garden").is_some_and(|v| {
            v["state"] == "running"
                && v["publishing"] == true
                && rec(&v)["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("cannot create"))
        })
    });
    std::thread::sleep(Duration::from_secs(2));
    let v = s.stream("garden").unwrap();
    assert_eq!(v["restarts"], 0, "no restart while it cannot record: {v}");
    let pid = v["pid"].as_u64();

    std::fs::remove_file(&blocker).unwrap();
    let fixed = Instant::now();
    s.wait_for("a segment", Duration::from_secs(10), |_| {
        !segments(&seg_dir).is_empty()
    });
    let took = fixed.elapsed();
    eprintln!(
        "directory fixed: recording {:.2}s later",
        took.as_secs_f64()
    );
    assert!(took <= Duration::from_secs(5), "{took:?}");
    s.wait_for("recording, no error", Duration::from_secs(10), |s| {
        s.stream("garden").is_some_and(|v| {
            v["state"] == "running"
                && v["publishing"] == true
                && rec(&v)["error"].is_null()
                && segments(&seg_dir).len() >= 2
        })
    });
    let v = s.stream("garden").unwrap();
    assert_ne!(v["pid"].as_u64(), pid, "{v}");
    assert_eq!(v["consecutive_failures"], 0, "{v}");
    assert_tone(&seg_dir, &segments(&seg_dir)[0]);
    drop(relay);
}
