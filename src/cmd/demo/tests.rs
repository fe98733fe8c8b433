use super::*;

fn tones() -> Vec<Tone> {
    vec![
        Tone {
            name: "demo_tone_a".into(),
            freq_hz: 440,
            port: 40001,
        },
        Tone {
            name: "demo_tone_b".into(),
            freq_hz: 660,
            port: 40002,
        },
    ]
}

#[test]
fn configs_use_one_receiver_url_per_stream() {
    let s = settings(Path::new("/tmp/d"), "ffmpeg".into(), &tones());
    let c = stream_configs(&s, &tones());
    let table = [
        ("demo_tone_a", "rtsp://127.0.0.1:40001/demo_tone_a", "440"),
        ("demo_tone_b", "rtsp://127.0.0.1:40002/demo_tone_b", "660"),
    ];
    assert_eq!(c.len(), table.len());
    for (cfg, (name, url, freq)) in c.iter().zip(table) {
        assert_eq!(cfg.name, name);
        assert_eq!(cfg.display_url, url);
        assert_eq!(cfg.child.args.last().map(String::as_str), Some(url));
        assert!(cfg
            .child
            .args
            .iter()
            .any(|a| a.contains(&format!("2*PI*{freq}*t"))));
        assert!(cfg.child.args.windows(2).any(|w| w == ["-f", "lavfi"]));
        assert!(cfg.child.args.windows(2).any(|w| w == ["-c:a", "libopus"]));
        // Levels on, as in production: the LEVEL column and the page's meters need them.
        assert!(cfg.child.args.iter().any(|a| a.contains("astats")));
        assert_eq!(cfg.state_dir, Path::new("/tmp/d"));
        assert_eq!(cfg.log_path, Path::new(&format!("/tmp/d/logs/{name}.log")));
    }
    assert!(!s.mediamtx.api);
    assert!(s.web.enabled);
    assert_eq!(s.metrics.listen.as_deref(), Some("127.0.0.1:0"));
}

#[test]
fn receiver_listens_on_the_url() {
    let a = receiver_args("rtsp://127.0.0.1:5/x");
    assert!(a.windows(2).any(|w| w == ["-rtsp_flags", "listen"]));
    assert!(a.windows(2).any(|w| w == ["-i", "rtsp://127.0.0.1:5/x"]));
    assert_eq!(a[a.len() - 3..], ["-f", "null", "-"]);
}

#[test]
fn listening_from_proc_net_tcp() {
    let text = "  sl  local_address rem_address   st tx_queue rx_queue\n\
       0: 0100007F:9C41 00000000:0000 0A 00000000:00000000 00:00000000 00000000\n\
       1: 0100007F:9C42 0100007F:D431 01 00000000:00000000 00:00000000 00000000\n";
    let table = [(40001, true), (40002, false), (40003, false), (0x0A, false)];
    for (port, want) in table {
        assert_eq!(is_listening(text, port), want, "port {port}");
    }
    assert!(!is_listening("", 40001));
}

fn st(state: &str, pid: Option<u32>) -> StreamStatus {
    StreamStatus {
        state: state.into(),
        pid,
        ..StreamStatus::default()
    }
}

#[test]
fn kill_then_recover() {
    let run7 = st("running", Some(7));
    let run8 = st("running", Some(8));
    let starting8 = st("starting", Some(8));
    let backoff = st("backoff", None);
    let k7 = Phase::Killed { pid: 7 };
    let table: [(Phase, Option<&StreamStatus>, bool, Step); 9] = [
        (Phase::Before, Some(&run7), false, Step::Stay),
        (Phase::Before, Some(&run7), true, Step::Kill(7)),
        (Phase::Before, Some(&starting8), true, Step::Stay),
        (Phase::Before, None, true, Step::Stay),
        (k7, Some(&run7), true, Step::Stay),
        (k7, Some(&backoff), true, Step::Stay),
        (k7, Some(&starting8), true, Step::Stay),
        (k7, Some(&run8), true, Step::Recovered(8)),
        (Phase::Recovered, Some(&run8), true, Step::Stay),
    ];
    for (phase, victim, due, want) in table {
        assert_eq!(
            advance(phase, victim, due),
            want,
            "{phase:?} {victim:?} {due}"
        );
    }
}
