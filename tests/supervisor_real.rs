//! The supervisor with real ffmpeg 5.1, the real ALSA library and a real RTSP receiver
//! (TESTING.md §3): a virtual microphone streamed end to end, and a missing card.

mod common;

use std::time::Duration;

use common::rtsp::{self, Receiver};
use common::sup::Sup;

#[test]
fn virtual_microphone_reaches_a_real_rtsp_receiver() {
    common::require_ffmpeg();
    let mut s = Sup::new();
    s.usb(1, "garden");
    let conf = rtsp::virtual_mic(s.dir.path(), "fakemic1", 48000, 2);
    let mut rx = Receiver::start_for(s.dir.path(), "garden", 2.0);
    s.ffmpeg = "ffmpeg".into();
    s.rtsp_url = format!("rtsp://127.0.0.1:{}", rx.port());
    s.extra = "[devices.garden]\nalsa_device = \"fakemic1\"\n".into();
    s.env.push((
        "ALSA_CONFIG_PATH".into(),
        format!("/usr/share/alsa/alsa.conf:{}", conf.display()),
    ));
    s.write_config();
    // Real ffmpeg needs real time: relax the scaled start timeout.
    let text = std::fs::read_to_string(&s.cfg)
        .unwrap()
        .replace("start_timeout = \"2s\"", "start_timeout = \"10s\"");
    std::fs::write(&s.cfg, text).unwrap();
    s.start_foreground();
    s.wait_for("running", Duration::from_secs(10), |s| {
        s.stream("garden").is_some_and(|v| v["state"] == "running")
    });
    let audio = rx.wait_audio(Duration::from_secs(15));
    assert_eq!(audio.codec, "opus", "{audio:?}");
    assert!(audio.seconds() >= 1.5, "{audio:?}");
    assert!(
        audio.mean_db > -30.0,
        "the tone arrived, not silence: {audio:?}"
    );
    let v = s.stream("garden").unwrap();
    assert!(
        v["progress"]["out_time_s"].as_f64().unwrap_or(0.0) > 0.0,
        "{v}"
    );
    assert_eq!(v["alsa_device"], "fakemic1");
}

#[test]
fn missing_alsa_card_backs_off_with_ffmpegs_own_reason() {
    common::require_ffmpeg();
    let mut s = Sup::new();
    s.usb(1, "nosuchcard");
    s.ffmpeg = "ffmpeg".into();
    s.write_config();
    s.start_foreground();
    s.wait_for(
        "a failed start with ffmpeg's reason",
        Duration::from_secs(10),
        |s| {
            s.stream("nosuchcard").is_some_and(|v| {
                v["consecutive_failures"].as_u64().unwrap_or(0) >= 1
                    && v["last_exit"]["reason"]
                        .as_str()
                        .unwrap_or("")
                        .contains("plughw:CARD=nosuchcard,DEV=0")
            })
        },
    );
    let v = s.stream("nosuchcard").unwrap();
    let reason = v["last_exit"]["reason"].as_str().unwrap();
    assert!(reason.contains("cannot open audio device"), "{reason}");
    assert!(
        ["backoff", "starting"].contains(&v["state"].as_str().unwrap()),
        "{v}"
    );
    let log = std::fs::read_to_string(s.log_dir().join("nosuchcard.log")).unwrap();
    assert!(log.contains("plughw:CARD=nosuchcard,DEV=0"), "{log}");
}
