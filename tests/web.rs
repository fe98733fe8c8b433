//! The status page (issue 17, docs/web.md) through the built binary: in a real headless
//! Chromium with real ffmpeg on two virtual microphones (a tone and digital silence), and
//! over raw HTTP for the limits (16 event streams, stalled clients, 405, auth, config).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::browser::Browser;
use common::mediamtx_mock::{base64, MockMediamtx, Version};
use common::rtsp::{self, free_port};
use common::rtsp_sink::RtspSink;
use common::sup::{kill, Sup};

/// `[web] enabled` on `127.0.0.1:<port>` (plus extra `[web]` keys).
fn web_on(s: &mut Sup, port: u16, web: &[(&str, &str)]) {
    s.set("metrics", "listen", &format!("\"127.0.0.1:{port}\""));
    s.set("web", "enabled", "true");
    for (k, v) in web {
        s.set("web", k, v);
    }
    s.write_config();
}

/// One raw request; the whole answer (head and body) as text.
fn raw(port: u16, request: &str) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn get(port: u16, path: &str, auth: Option<&str>) -> String {
    let auth = auth
        .map(|a| format!("Authorization: Basic {}\r\n", base64(a.as_bytes())))
        .unwrap_or_default();
    raw(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"),
    )
}

/// Where screenshots go: `MSM_WEB_SCREENSHOTS=docs` refreshes the README's, else the
/// test's temp dir.
fn shot_dir(tmp: &std::path::Path) -> PathBuf {
    std::env::var_os("MSM_WEB_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.to_path_buf())
}

#[test]
fn page_in_a_real_browser_meters_restart_and_mediamtx_banner() {
    common::require_ffmpeg();
    let Some(browser) = Browser::start("page_in_a_real_browser") else {
        return;
    };
    let mut s = Sup::new();
    let conf = rtsp::virtual_mic_tone(s.dir.path(), "tonemic", 48000, 2, 0.1);
    let sink = RtspSink::start();
    let mut mtx = MockMediamtx::start(Version::V1_20);
    for name in ["tone", "quiet"] {
        mtx.set_path(name, true);
        mtx.grow(name, 4000);
    }
    s.usb(1, "tone");
    s.usb(2, "quiet");
    s.ffmpeg = "ffmpeg".into();
    s.rtsp_url = sink.url();
    s.extra = "[devices.tone]\nalsa_device = \"tonemic\"\n\
               [devices.quiet]\nalsa_device = \"quiet\"\n"
        .into();
    s.env.push((
        "ALSA_CONFIG_PATH".into(),
        format!("/usr/share/alsa/alsa.conf:{}", conf.display()),
    ));
    s.set("health", "start_timeout", "\"10s\"")
        .set("health", "stall_timeout", "\"3s\"")
        .set("mediamtx", "api", "true")
        .set("mediamtx", "api_url", &format!("{:?}", mtx.url()))
        .set("mediamtx", "poll", "\"200ms\"")
        .set("startup", "mediamtx_wait", "\"2s\"");
    let port = free_port();
    web_on(
        &mut s,
        port,
        &[("player_url", "\"http://{host}:8889/{stream}\"")],
    );
    s.start_foreground();
    s.wait_for("both streams running", Duration::from_secs(20), |s| {
        s.status().is_some_and(|v| {
            v["streams"]
                .as_array()
                .is_some_and(|a| a.len() == 2 && a.iter().all(|x| x["state"] == "running"))
        })
    });

    browser.goto(&format!("http://127.0.0.1:{port}/"));
    let show = "return document.getElementById('streams').innerText + ' | ' + \
                JSON.stringify([...document.querySelectorAll('.card')].map(c => \
                [c.dataset, c.querySelector('.meter').dataset]))";
    browser.wait(
        "both cards with levels",
        Duration::from_secs(15),
        "const m = (n) => document.querySelector(`[data-stream=\"${n}\"] .meter`); \
         return !!(m('tone') && m('quiet') && m('tone').dataset.rms && m('quiet').dataset.rms \
           && m('tone').dataset.fresh === '1' && m('quiet').dataset.fresh === '1')",
        show,
    );
    // A 0.1 sine: RMS -23.01 dBFS, peak -20 dBFS; the page must read them within 2 dB.
    let tone = browser.eval(
        "const m = document.querySelector('[data-stream=\"tone\"] .meter'); \
         return [m.dataset.rms, m.dataset.peak, m.dataset.silence, m.innerText]",
    );
    let rms: f64 = tone[0].as_str().unwrap().parse().unwrap();
    let peak: f64 = tone[1].as_str().unwrap().parse().unwrap();
    assert!((rms + 23.01).abs() <= 2.0, "tone RMS on the page: {tone}");
    assert!((peak + 20.0).abs() <= 2.0, "tone peak on the page: {tone}");
    assert_eq!(tone[2], "0", "{tone}");
    let quiet = browser.eval(
        "const m = document.querySelector('[data-stream=\"quiet\"] .meter'); \
         return [m.dataset.rms, m.dataset.silence, m.innerText]",
    );
    assert_eq!(quiet[1], "1", "silence not shown: {quiet}");
    assert!(
        quiet[2].as_str().unwrap().contains("silence"),
        "silence not said: {quiet}"
    );
    // Both streams, their URLs (no credentials) and the listen links.
    let text = browser.eval("return document.body.innerText");
    let text = text.as_str().unwrap();
    for want in [
        format!("{}/tone", sink.url()),
        format!("{}/quiet", sink.url()),
        "MediaMTX reachable".into(),
        "listen".into(),
    ] {
        assert!(text.contains(&want), "page lacks {want:?}:\n{text}");
    }
    let href =
        browser.eval("return document.querySelector('[data-stream=\"tone\"] a.listen').href");
    assert_eq!(href, "http://127.0.0.1:8889/tone");

    // SIGKILL the tone's ffmpeg: the open page shows the restart within 2 s, no reload.
    let load_id = browser.eval("return document.body.dataset.loadId");
    let old = s.stream("tone").unwrap()["pid"].as_i64().unwrap() as i32;
    let t0 = Instant::now();
    kill(old, libc::SIGKILL);
    browser.wait(
        "the restart",
        Duration::from_secs(5),
        &format!(
            "const c = document.querySelector('[data-stream=\"tone\"]'); \
             return c.dataset.restarts === '1' && c.dataset.pid !== '' && c.dataset.pid !== '{old}' \
               && c.innerText.includes('SIGKILL')"
        ),
        show,
    );
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "restart shown after {took:?}"
    );
    assert_eq!(
        browser.eval("return document.body.dataset.loadId"),
        load_id,
        "the page reloaded"
    );
    browser.wait(
        "tone running again",
        Duration::from_secs(15),
        "const c = document.querySelector('[data-stream=\"tone\"]'); \
         return c.dataset.state === 'running' && c.querySelector('.meter').dataset.fresh === '1'",
        show,
    );
    assert!(sink.received("tone") > 0 && sink.received("quiet") > 0);

    // Screenshots: desktop, then a 360 px wide phone (no sideways scrolling), once the
    // meters have settled.
    std::thread::sleep(Duration::from_millis(1500));
    let dir = shot_dir(s.dir.path());
    browser.screenshot(&dir.join("web.png"));
    browser.emulate(360, 780, true);
    std::thread::sleep(Duration::from_millis(300));
    let width = browser.eval("return document.documentElement.scrollWidth");
    assert!(
        width.as_u64().unwrap() <= 360,
        "page wider than the phone: {width}"
    );
    browser.screenshot(&dir.join("web-phone.png"));
    browser.emulate(1200, 900, false);

    // MediaMTX goes away: the banner says so, without a reload.
    mtx.stop();
    browser.wait(
        "the MediaMTX banner",
        Duration::from_secs(5),
        "const b = document.getElementById('banner'); \
         return !b.hidden && b.dataset.kind === 'mediamtx' && b.innerText.includes('MediaMTX is not reachable')",
        "return document.getElementById('banner').outerHTML",
    );
    assert_eq!(browser.eval("return document.body.dataset.loadId"), load_id);
    let errors = browser.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

/// An event-stream client that never reads, with a tiny receive window.
fn stalled_client(port: u16) -> TcpStream {
    use std::os::fd::AsRawFd;
    // SAFETY: plain socket calls on a fresh descriptor we own through `TcpStream`.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    assert!(fd >= 0);
    let small: libc::c_int = 1024;
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &small as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as u32,
        );
    }
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
        },
        sin_zero: [0; 8],
    };
    let rc = unsafe {
        libc::connect(
            fd,
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        )
    };
    assert_eq!(rc, 0, "connect");
    let mut c = unsafe { <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    assert_eq!(c.as_raw_fd(), fd);
    c.write_all(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    c
}

/// Open an event stream and read its head.
fn events(port: u16) -> (TcpStream, String) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match c.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    (c, String::from_utf8_lossy(&head).into_owned())
}

#[test]
fn sixteen_event_streams_then_503_and_stalled_ones_delay_nothing() {
    // Eight crash-looping streams: a status event every tick, so stalled clients' buffers
    // fill within seconds.
    let cards: Vec<(u32, String)> = (1..=8).map(|i| (i, format!("mic{i}"))).collect();
    let refs: Vec<(u32, &str)> = cards.iter().map(|(i, n)| (*i, n.as_str())).collect();
    let mut s = Sup::mics(&refs, "crash");
    s.env.push(("FAKE_FFMPEG_BLOCKS".into(), "3".into()));
    s.set("backoff", "max", "\"100ms\"");
    let port = free_port();
    web_on(&mut s, port, &[]);
    s.start_foreground();
    s.wait_for("8 streams", Duration::from_secs(10), |s| {
        s.status()
            .is_some_and(|v| v["streams"].as_array().is_some_and(|a| a.len() == 8))
    });

    // `status` before any page is open: the baseline (median of 5).
    let time_status = |s: &Sup| {
        let t = Instant::now();
        assert!(s.run(&["status", "--json"]).status.success());
        t.elapsed()
    };
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let before = median((0..5).map(|_| time_status(&s)).collect());

    // One reader and fifteen stalled clients fill the sixteen places.
    let (mut reader, head) = events(port);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");
    let mut stalled: Vec<TcpStream> = (0..15).map(|_| stalled_client(port)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let (_, head) = events(port);
    assert!(head.starts_with("HTTP/1.1 503"), "17th: {head}");

    // While they stall, `status` answers as fast as before and the reader keeps getting
    // events.
    let t0 = Instant::now();
    let mut during = Vec::new();
    let mut longest_gap = Duration::ZERO;
    let mut got = 0usize;
    let mut last = Instant::now();
    reader
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = vec![0u8; 1 << 16];
    while t0.elapsed() < Duration::from_secs(10) {
        during.push(time_status(&s));
        for _ in 0..5 {
            if let Ok(n) = reader.read(&mut buf) {
                assert!(n > 0, "the reader was dropped");
                got += String::from_utf8_lossy(&buf[..n])
                    .matches("event: status")
                    .count();
                longest_gap = longest_gap.max(last.elapsed());
                last = Instant::now();
            }
        }
    }
    let during = median(during);
    eprintln!("status median: {before:?} before, {during:?} with 15 stalled clients");
    assert!(
        during <= before * 2 + Duration::from_millis(300),
        "status slowed from {before:?} to {during:?}"
    );
    assert!(got >= 10, "only {got} status events in 10 s");
    assert!(
        longest_gap < Duration::from_secs(2),
        "events paused {longest_gap:?}"
    );

    // The stalled ones were dropped (bounded buffer / no progress): places are free again.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, head) = events(port);
        if head.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < until,
            "stalled clients never dropped: {head}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    stalled.clear();
}

#[test]
fn read_only_every_non_get_is_405_and_auth_is_enforced() {
    let mut s = Sup::mics(&[(1, "mic")], "run");
    let port = free_port();
    web_on(
        &mut s,
        port,
        &[("username", "\"op\""), ("password", "\"garden-s3cret\"")],
    );
    s.start_healthy(1);
    let good = Some("op:garden-s3cret");

    for path in ["/", "/api/status", "/api/events"] {
        for auth in [None, Some("op:wrong"), Some("po:garden-s3cret")] {
            let a = get(port, path, auth);
            assert!(a.starts_with("HTTP/1.1 401"), "{path} {auth:?}: {a}");
            assert!(a.contains("WWW-Authenticate: Basic"), "{a}");
            assert!(!a.contains("mic"), "leaks: {a}");
        }
    }
    // /metrics stays as it is (no auth).
    assert!(get(port, "/metrics", None).starts_with("HTTP/1.1 200"));

    let page = get(port, "/", good);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("text/html"));
    let (_, body) = page.split_once("\r\n\r\n").unwrap();
    assert!(body.len() <= 40 * 1024, "page is {} bytes", body.len());
    let api = get(port, "/api/status", good);
    let (head, body) = api.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("application/json"), "{head}");
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let cli: serde_json::Value =
        serde_json::from_slice(&s.run(&["status", "--json"]).stdout).unwrap();
    let keys = |v: &serde_json::Value| {
        v.as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(keys(&v), keys(&cli), "same JSON as status --json");
    assert_eq!(keys(&v["streams"][0]), keys(&cli["streams"][0]));
    assert_eq!(v["streams"][0]["name"], "mic");
    assert_eq!(v["supervisor"]["pid"], cli["supervisor"]["pid"]);
    for text in [body, &page] {
        assert!(!text.contains("garden-s3cret"), "secret in an answer");
    }

    let restarts = s.stream("mic").unwrap()["restarts"].clone();
    for method in [
        "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
    ] {
        for path in ["/", "/api/status", "/api/events"] {
            let a = raw(
                port,
                &format!(
                    "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\n\
                     Content-Length: 2\r\nConnection: close\r\n\r\n{{}}",
                    base64(b"op:garden-s3cret")
                ),
            );
            assert!(a.starts_with("HTTP/1.1 405"), "{method} {path}: {a}");
            assert!(a.contains("Allow: GET, HEAD"), "{a}");
        }
    }
    let after = s.stream("mic").unwrap();
    assert_eq!(after["restarts"], restarts, "a verb changed something");
    assert_eq!(after["state"], "running");

    // A state change reaches an open event stream within 1 s.
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        c,
        "GET /api/events HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\n\r\n",
        base64(b"op:garden-s3cret")
    )
    .unwrap();
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut seen = String::new();
    let mut buf = vec![0u8; 1 << 16];
    let first = Instant::now();
    while !seen.contains("event: status") && first.elapsed() < Duration::from_secs(5) {
        if let Ok(n) = c.read(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    let old_pid = after["pid"].as_u64().unwrap();
    assert!(s.run(&["restart", "mic"]).status.success());
    let t0 = Instant::now();
    let changed = |text: &str| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .any(|v| {
                let st = &v["status"]["streams"][0];
                st.is_object() && (st["state"] != "running" || st["pid"] != old_pid)
            })
    };
    let mut fresh = String::new();
    while !changed(&fresh) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no state change event: {fresh}"
        );
        if let Ok(n) = c.read(&mut buf) {
            fresh.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "state change reached the page after {took:?}"
    );
}

#[test]
fn web_off_loopback_without_credentials_is_a_config_error() {
    let mut s = Sup::mics(&[(1, "mic")], "run");
    s.set("metrics", "listen", "\"0.0.0.0:9\"");
    s.set("web", "enabled", "true");
    s.write_config();
    for args in [&["config", "--check"][..], &["start", "--foreground"][..]] {
        let out = s.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {err}");
        let line = err
            .lines()
            .find(|l| l.contains("web.enabled"))
            .unwrap_or("");
        let cfg = s.cfg.display().to_string();
        assert!(
            line.contains(&format!("{cfg}:"))
                && line.contains("is not a loopback address: set web.username and web.password"),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    assert!(s.marked().is_empty());
}
