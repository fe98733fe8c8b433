//! The argv builders against real ffmpeg 5.1: real ALSA (a virtual microphone through
//! the ALSA library, TESTING.md §3), real RTSP to a real receiver, real failures.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::rtsp::{self, collect_lines, free_port, snapshot, Audio, Guard, Lines, Receiver};
use mediamtx_stream_manager::cli::Filter;
use mediamtx_stream_manager::config::params::Codec;
use mediamtx_stream_manager::ffmpeg::argv::{self, Input, InputSpec, Output, Silence};
use mediamtx_stream_manager::ffmpeg::progress::{exit_reason, silence_event, ProgressParser};

/// ffmpeg running one of our argvs, its stdout and stderr collected line by line.
struct Publisher {
    guard: Guard,
    stdout: Lines,
    stderr: Lines,
}

fn publish(args: &[String], alsa_conf: Option<&Path>) -> Publisher {
    common::require_ffmpeg();
    let mut cmd = Command::new("ffmpeg");
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(conf) = alsa_conf {
        let path = format!("/usr/share/alsa/alsa.conf:{}", conf.display());
        cmd.env("ALSA_CONFIG_PATH", path);
    }
    let mut guard = Guard::spawn(cmd);
    let stdout = collect_lines(guard.child.stdout.take().expect("stdout"));
    let stderr = collect_lines(guard.child.stderr.take().expect("stderr"));
    Publisher {
        guard,
        stdout,
        stderr,
    }
}

fn out(codec: Codec, url: String) -> Output {
    Output {
        codec,
        bitrate: "64k".into(),
        url,
    }
}

fn tone(freq: u32, rate: u32, channels: u32) -> InputSpec {
    InputSpec {
        input: Input::tone(freq, rate, channels),
        sample_rate: rate,
        channels,
        thread_queue: 1024,
    }
}

/// Publish `args` into `rx` and return what arrived; also prove `-progress` parses.
fn roundtrip(rx: &mut Receiver, args: &[String], alsa_conf: Option<&Path>) -> Audio {
    let mut p = publish(args, alsa_conf);
    let audio = rx.wait_audio(Duration::from_secs(8));
    let mut parser = ProgressParser::default();
    let times: Vec<i64> = snapshot(&p.stdout)
        .iter()
        .filter_map(|l| parser.feed(l))
        .filter_map(|b| b.out_time_us)
        .collect();
    assert!(
        times.len() >= 2 && times.last() > times.first(),
        "out_time did not advance: {times:?}; stderr: {:?}",
        snapshot(&p.stderr)
    );
    let _ = p.guard.wait_for(Duration::from_millis(10));
    audio
}

fn assert_tone(a: &Audio, channels: u32, codec: &str) {
    assert_eq!(a.codec, codec, "{a:?}");
    assert_eq!(a.channels, channels, "{a:?}");
    assert!((1.8..=2.2).contains(&a.seconds()), "duration: {a:?}");
    assert!(
        a.mean_db > -30.0 && a.mean_db < -15.0,
        "not the tone: {a:?}"
    );
    for (i, db) in a.channel_db.iter().enumerate() {
        assert!(*db > -30.0, "channel {i} silent: {a:?}");
    }
}

#[test]
fn opus_from_a_real_alsa_device() {
    let dir = tempfile::tempdir().unwrap();
    let conf = rtsp::virtual_mic(dir.path(), "fakemic1", 48000, 2);
    let mut rx = Receiver::start(dir.path(), "mic1");
    let spec = InputSpec {
        input: Input::Alsa {
            device: "fakemic1".into(),
        },
        sample_rate: 48000,
        channels: 2,
        thread_queue: 8192,
    };
    let args = argv::individual(&spec, &out(Codec::Opus, rx.url()), None);
    let a = roundtrip(&mut rx, &args, Some(&conf));
    assert_tone(&a, 2, "opus");
    assert_eq!(a.sample_rate, 48000);
}

#[test]
fn opus_from_a_44100_alsa_device_is_resampled() {
    let dir = tempfile::tempdir().unwrap();
    let conf = rtsp::virtual_mic(dir.path(), "fakemic44", 44100, 1);
    let mut rx = Receiver::start(dir.path(), "mic44");
    let spec = InputSpec {
        input: Input::Alsa {
            device: "fakemic44".into(),
        },
        sample_rate: 44100,
        channels: 1,
        thread_queue: 8192,
    };
    let args = argv::individual(&spec, &out(Codec::Opus, rx.url()), None);
    assert!(args.windows(2).any(|w| w == ["-ar", "48000"]));
    let a = roundtrip(&mut rx, &args, Some(&conf));
    assert_eq!(a.codec, "opus");
    assert_eq!(a.sample_rate, 48000);
    assert!(a.mean_db > -30.0, "{a:?}");
}

#[test]
fn aac_mp3_and_pcm_arrive() {
    // (codec, input rate, channels, receiver codec name)
    let table = [
        (Codec::Aac, 48000, 2, "aac"),
        (Codec::Mp3, 44100, 2, "mp3"),
        (Codec::Pcm, 48000, 2, "pcm_s16be"),
        (Codec::Pcm, 44100, 1, "pcm_s16be"),
    ];
    std::thread::scope(|s| {
        for (codec, rate, ch, name) in table {
            s.spawn(move || {
                let dir = tempfile::tempdir().unwrap();
                let mut rx = Receiver::start(dir.path(), codec.as_str());
                let args = argv::individual(&tone(440, rate, ch), &out(codec, rx.url()), None);
                let a = roundtrip(&mut rx, &args, None);
                assert_tone(&a, ch, name);
                assert_eq!(a.sample_rate, rate, "{codec}");
            });
        }
    });
}

fn three_tones() -> Vec<InputSpec> {
    vec![
        tone(440, 48000, 2),
        tone(550, 48000, 2),
        tone(660, 48000, 2),
    ]
}

#[test]
fn multiplex_amix_opus_is_stereo() {
    let dir = tempfile::tempdir().unwrap();
    let mut rx = Receiver::start(dir.path(), "all_mics");
    let args = argv::multiplex(
        &three_tones(),
        Filter::Amix,
        &out(Codec::Opus, rx.url()),
        None,
    );
    assert_tone(&roundtrip(&mut rx, &args, None), 2, "opus");
}

#[test]
fn multiplex_amerge_opus_is_downmixed_to_stereo() {
    let dir = tempfile::tempdir().unwrap();
    let mut rx = Receiver::start(dir.path(), "all_mics");
    let args = argv::multiplex(
        &three_tones(),
        Filter::Amerge,
        &out(Codec::Opus, rx.url()),
        None,
    );
    assert_tone(&roundtrip(&mut rx, &args, None), 2, "opus");
}

#[test]
fn multiplex_amerge_pcm_adds_channels_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut rx = Receiver::start(dir.path(), "all_mics");
    let ins = [tone(440, 48000, 1), tone(550, 48000, 2)];
    let args = argv::multiplex(&ins, Filter::Amerge, &out(Codec::Pcm, rx.url()), None);
    assert_tone(&roundtrip(&mut rx, &args, None), 3, "pcm_s16be");
}

/// Evidence for docs/ffmpeg.md: without our `-ac 2`, SPEC's `-mapping_family 1`
/// does not help — ffmpeg 5.1's RTP muxer refuses multistream Opus outright.
#[test]
fn six_channel_opus_cannot_travel_over_rtsp() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(dir.path(), "all_mics");
    let mut args = argv::multiplex(
        &three_tones(),
        Filter::Amerge,
        &out(Codec::Opus, rx.url()),
        None,
    );
    let ac = args
        .windows(2)
        .position(|w| w == ["-ac", "2"])
        .expect("downmix present");
    args.splice(ac..ac + 2, ["-mapping_family".to_string(), "1".to_string()]);
    let mut p = publish(&args, None);
    let st = p.guard.wait_for(Duration::from_secs(5)).expect("exits");
    assert!(!st.success());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        exit_reason(&snapshot(&p.stderr)).as_deref(),
        Some("Multistream opus not supported in RTP")
    );
}

#[test]
fn missing_device_fails_fast_with_a_clear_reason() {
    common::require_ffmpeg();
    let spec = InputSpec {
        input: Input::Alsa {
            device: "plughw:CARD=Nope,DEV=0".into(),
        },
        sample_rate: 48000,
        channels: 2,
        thread_queue: 8192,
    };
    let url = format!("rtsp://127.0.0.1:{}/gone", free_port());
    let args = argv::individual(&spec, &out(Codec::Opus, url), None);
    let started = Instant::now();
    let mut p = publish(&args, None);
    let st = p.guard.wait_for(Duration::from_secs(5)).expect("exits");
    assert!(!st.success());
    assert!(started.elapsed() < Duration::from_secs(3), "too slow");
    std::thread::sleep(Duration::from_millis(100));
    let reason = exit_reason(&snapshot(&p.stderr)).unwrap_or_default();
    assert!(
        reason.starts_with("cannot open audio device plughw:CARD=Nope,DEV=0 ("),
        "{reason}"
    );
}

#[test]
fn refused_rtsp_connection_is_named() {
    let port = free_port();
    let url = format!("rtsp://127.0.0.1:{port}/x");
    let args = argv::individual(&tone(440, 48000, 2), &out(Codec::Opus, url), None);
    let mut p = publish(&args, None);
    let st = p.guard.wait_for(Duration::from_secs(5)).expect("exits");
    assert!(!st.success());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        exit_reason(&snapshot(&p.stderr)),
        Some(format!(
            "cannot connect to 127.0.0.1:{port} (Connection refused)"
        ))
    );
}

#[test]
fn silence_from_a_silent_alsa_device_is_reported_at_loglevel_warning() {
    let dir = tempfile::tempdir().unwrap();
    let conf = rtsp::virtual_mic(dir.path(), "fakemic2", 48000, 2);
    let rx = Receiver::start_for(dir.path(), "quiet", 5.0);
    let spec = InputSpec {
        input: Input::Alsa {
            device: "quiet".into(),
        },
        sample_rate: 48000,
        channels: 2,
        thread_queue: 8192,
    };
    let silence = Silence {
        db: -50.0,
        duration: Duration::from_millis(300),
    };
    let args = argv::individual(&spec, &out(Codec::Opus, rx.url()), Some(&silence));
    assert!(args.windows(2).any(|w| w == ["-loglevel", "warning"]));
    let p = publish(&args, Some(&conf));
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let events: Vec<bool> = snapshot(&p.stderr)
            .iter()
            .filter_map(|l| silence_event(l))
            .collect();
        if events.first() == Some(&true) {
            break;
        }
        assert!(
            Instant::now() < end,
            "no silence_start within 5 s: {:?}",
            snapshot(&p.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_tone_is_not_silence() {
    let dir = tempfile::tempdir().unwrap();
    let mut rx = Receiver::start(dir.path(), "loud");
    let silence = Silence {
        db: -50.0,
        duration: Duration::from_millis(300),
    };
    let args = argv::individual(
        &tone(440, 48000, 2),
        &out(Codec::Opus, rx.url()),
        Some(&silence),
    );
    let mut p = publish(&args, None);
    let a = rx.wait_audio(Duration::from_secs(8));
    assert!(a.mean_db > -30.0, "{a:?}");
    let _ = p.guard.wait_for(Duration::from_millis(200));
    let err = snapshot(&p.stderr);
    assert!(err.iter().all(|l| silence_event(l).is_none()), "{err:?}");
}

/// The supervision tests' stand-in speaks the same `-progress` dialect we parse,
/// and exits 255 on SIGINT like ffmpeg.
#[test]
fn fake_ffmpeg_progress_parses_and_sigint_exits_255() {
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-ffmpeg");
    let mut cmd = Command::new(fake);
    cmd.args(["-i", "x"])
        .env("FAKE_FFMPEG_MODE", "run")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut g = Guard::spawn(cmd);
    let stdout = collect_lines(g.child.stdout.take().expect("stdout"));
    let stderr = collect_lines(g.child.stderr.take().expect("stderr"));
    std::thread::sleep(Duration::from_millis(350));
    unsafe {
        libc::kill(g.pid(), libc::SIGINT);
    }
    let st = g.wait_for(Duration::from_secs(2)).and_then(|s| s.code());
    assert_eq!(st, Some(255));
    let mut parser = ProgressParser::default();
    let times: Vec<i64> = snapshot(&stdout)
        .iter()
        .filter_map(|l| parser.feed(l))
        .filter_map(|b| b.out_time_us)
        .collect();
    assert!(
        times.len() >= 2 && times.windows(2).all(|w| w[1] > w[0]),
        "{times:?}"
    );
    assert_eq!(
        snapshot(&stderr).first().map(String::as_str),
        Some("fake-ffmpeg: -i x")
    );
}
