//! Live audio levels from the stream's own ffmpeg (astats), with real ffmpeg 5.1 and a
//! virtual ALSA microphone playing a known tone, then digital silence.

mod common;

use std::time::{Duration, Instant};

use common::rtsp::{self, Receiver};
use common::sup::Sup;

/// A supervisor streaming ALSA PCM `pcm` (from `conf`) as stream "garden" to `rx`.
fn sup_for(s: &mut Sup, conf: &std::path::Path, pcm: &str, rx: &Receiver) {
    s.usb(1, "garden");
    s.ffmpeg = "ffmpeg".into();
    s.rtsp_url = format!("rtsp://127.0.0.1:{}", rx.port());
    s.extra = format!("[devices.garden]\nalsa_device = \"{pcm}\"\n");
    s.env.push((
        "ALSA_CONFIG_PATH".into(),
        format!("/usr/share/alsa/alsa.conf:{}", conf.display()),
    ));
    s.set("health", "start_timeout", "\"10s\"");
    s.set("health", "stall_timeout", "\"3s\"");
    s.write_config();
}

/// Two consecutive fresh readings (different `at`) once the stream has run 2 s.
fn readings(s: &Sup) -> Vec<serde_json::Value> {
    s.wait_for("running", Duration::from_secs(15), |s| {
        s.stream("garden").is_some_and(|v| v["state"] == "running")
    });
    std::thread::sleep(Duration::from_secs(2));
    let mut out: Vec<serde_json::Value> = Vec::new();
    let end = Instant::now() + Duration::from_secs(15);
    while out.len() < 2 {
        assert!(Instant::now() < end, "no fresh level readings: {out:?}");
        let v = s.stream("garden").unwrap();
        let l = v["level"].clone();
        if !l.is_null() && out.last().is_none_or(|p| p["at"] != l["at"]) {
            out.push(l);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    out
}

#[test]
fn a_minus_20_dbfs_sine_reads_within_one_db() {
    common::require_ffmpeg();
    let mut s = Sup::new();
    let conf = rtsp::virtual_mic_tone(s.dir.path(), "tonemic", 48000, 2, 0.1);
    let rx = Receiver::start_for(s.dir.path(), "garden", 12.0);
    let textfile = s.dir.path().join("metrics.prom");
    s.set(
        "metrics",
        "textfile",
        &format!("{:?}", textfile.display().to_string()),
    );
    sup_for(&mut s, &conf, "tonemic", &rx);
    s.start_foreground();
    for l in readings(&s) {
        // A sine of amplitude 0.1: peak 20·log10(0.1) = -20 dBFS, RMS 0.1/√2 = -23.01 dBFS.
        let peak = l["peak_db"].as_f64().expect("peak");
        let rms = l["rms_db"].as_f64().expect("rms");
        assert!((peak + 20.0).abs() <= 1.0, "peak {peak}: {l}");
        assert!((rms + 23.01).abs() <= 1.0, "rms {rms}: {l}");
    }
    let text = String::from_utf8_lossy(&s.run(&["status"]).stdout).to_string();
    assert!(text.contains("LEVEL") && text.contains("-23 dB"), "{text}");
    s.wait_for("level gauges", Duration::from_secs(15), |_| {
        let t = std::fs::read_to_string(&textfile).unwrap_or_default();
        let near = |family: &str, want: f64| {
            let key =
                format!("mediamtx_stream_manager_stream_level_{family}_dbfs{{stream=\"garden\"}} ");
            t.lines()
                .filter_map(|l| l.strip_prefix(&key))
                .any(|v| v.parse::<f64>().is_ok_and(|v| (v - want).abs() <= 1.0))
        };
        near("peak", -20.0) && near("rms", -23.01)
    });
    // One level line a second, none of them in the stream's log.
    let log = std::fs::read_to_string(s.log_dir().join("garden.log")).unwrap();
    assert!(
        !log.contains("lavfi.astats") && !log.contains("pts_time"),
        "{log}"
    );
}

#[test]
fn digital_silence_reads_below_minus_80_or_minus_inf() {
    common::require_ffmpeg();
    let mut s = Sup::new();
    // `quiet` replays zeros (virtual_mic explains why not `type null`).
    let conf = rtsp::virtual_mic(s.dir.path(), "unused", 48000, 2);
    let rx = Receiver::start_for(s.dir.path(), "garden", 12.0);
    sup_for(&mut s, &conf, "quiet", &rx);
    s.start_foreground();
    for l in readings(&s) {
        // null is -inf (JSON has no infinity).
        for k in ["peak_db", "rms_db"] {
            let db = l[k].as_f64().unwrap_or(f64::NEG_INFINITY);
            assert!(db < -80.0, "{k} {db}: {l}");
        }
    }
    let text = String::from_utf8_lossy(&s.run(&["status"]).stdout).to_string();
    assert!(text.contains("-inf dB"), "{text}");
}

#[test]
fn levels_off_means_no_astats_in_the_argv_and_no_level() {
    common::require_ffmpeg();
    let mut s = Sup::new();
    let conf = rtsp::virtual_mic(s.dir.path(), "mic", 48000, 2);
    let rx = Receiver::start_for(s.dir.path(), "garden", 12.0);
    s.set("health", "levels", "false");
    sup_for(&mut s, &conf, "mic", &rx);
    s.start_foreground();
    s.wait_for("running", Duration::from_secs(15), |s| {
        s.stream("garden").is_some_and(|v| v["state"] == "running")
    });
    std::thread::sleep(Duration::from_secs(2));
    let v = s.stream("garden").unwrap();
    assert!(v["level"].is_null(), "{v}");
    let pid = v["pid"].as_u64().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(
        cmdline.contains("aresample") && !cmdline.contains("astats"),
        "{cmdline}"
    );
}
