//! The MediaMTX API client against the in-process stand-in (every version shape,
//! paging, auth, faults), and the metrics HTTP server over a real socket.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::mediamtx_mock::{base64, Fault, MockMediamtx, Version};
use mediamtx_stream_manager::config::Mediamtx;
use mediamtx_stream_manager::mediamtx::{ApiError, Client, Info, PathInfo};
use mediamtx_stream_manager::metrics;

const USER: &str = "apiuser-zq7";
const PASS: &str = "s3cr3t-P4ss-x9";

fn cfg(url: &str, creds: Option<(&str, &str)>, timeout: Duration) -> Mediamtx {
    Mediamtx {
        api: true,
        api_url: url.to_string(),
        rtsp_url: "rtsp://127.0.0.1:8554".into(),
        username: creds.map(|c| c.0.to_string()),
        password: creds.map(|c| c.1.to_string()),
        poll: Duration::from_millis(100),
        timeout,
        rtsp_timeout: Duration::from_secs(5),
    }
}

fn client(mock: &MockMediamtx) -> Client {
    Client::new(&cfg(&mock.url(), None, Duration::from_secs(5)))
}

/// No error text (Display or Debug) may carry the password, the user or the Basic token.
fn assert_no_secret(e: &ApiError) {
    let token = base64(format!("{USER}:{PASS}").as_bytes());
    for text in [e.to_string(), format!("{e:?}")] {
        for secret in [USER, PASS, token.as_str()] {
            assert!(
                !text.contains(secret),
                "secret {secret:?} leaked in {text:?}"
            );
        }
        assert!(!text.contains('\n'), "error is not one line: {text:?}");
    }
}

#[test]
fn every_version_shape_is_understood() {
    for (version, want_version) in [
        (Version::V1_20, Some("v1.20.1")),
        (Version::V1_16, Some("v1.16.3")),
        (Version::V1_9, None),
    ] {
        let mock = MockMediamtx::start(version);
        mock.set_path("usb_mv7_00", false);
        mock.set_path("blue-yeti", true);
        mock.grow("blue-yeti", 1000);
        mock.set_readers("blue-yeti", 2);
        let c = client(&mock);

        let info = c
            .info()
            .unwrap_or_else(|e| panic!("{version:?}: info: {e}"));
        assert_eq!(info.version.as_deref(), want_version, "{version:?}");
        assert_eq!(info.started.is_some(), want_version.is_some());

        let paths = c.list_paths().unwrap();
        let names: Vec<&str> = paths.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["blue-yeti", "usb_mv7_00"],
            "{version:?}: sorted by name"
        );
        let yeti = &paths[0];
        assert!(yeti.available, "{version:?}");
        // Every read grows the counter (V1_9's info fallback already read it once).
        assert_eq!(
            Some(yeti.inbound_bytes),
            mock.inbound("blue-yeti"),
            "{version:?}"
        );
        assert!(yeti.inbound_bytes >= 1000, "{version:?}");
        assert_eq!(yeti.source_type.as_deref(), Some("rtspSession"));
        assert!(yeti.source_id.is_some());
        assert_eq!(yeti.readers, 2);
        assert_eq!(yeti.tracks, ["Opus"]);
        assert_eq!(
            paths[1],
            PathInfo {
                name: "usb_mv7_00".into(),
                available: false,
                inbound_bytes: 0,
                source_type: None,
                source_id: None,
                readers: 0,
                tracks: vec![],
            }
        );
        // The counter grows on each read: the supervisor's "inbound bytes grew" check.
        let again = c.get_path("blue-yeti").unwrap().unwrap();
        assert_eq!(
            again.inbound_bytes,
            yeti.inbound_bytes + 1000,
            "{version:?}"
        );
        mock.freeze("blue-yeti");
        let frozen = c.get_path("blue-yeti").unwrap().unwrap().inbound_bytes;
        assert_eq!(frozen, again.inbound_bytes, "{version:?}");
    }
}

#[test]
fn v1_9_info_falls_back_to_a_one_item_path_list() {
    let mock = MockMediamtx::start(Version::V1_9);
    let info = client(&mock).info().unwrap();
    assert_eq!(
        info,
        Info {
            version: None,
            started: None
        }
    );
    let targets: Vec<String> = mock.requests().iter().map(|r| r.target()).collect();
    assert_eq!(targets[0], "/v3/info");
    assert!(
        targets[1].starts_with("/v3/paths/list?") && targets[1].contains("itemsPerPage=1"),
        "{targets:?}"
    );
    assert_eq!(targets.len(), 2);
}

#[test]
fn paging_follows_page_count_across_three_pages() {
    let mock = MockMediamtx::start(Version::V1_20);
    let names: Vec<String> = (0..7).map(|i| format!("mic{i}")).collect();
    for n in names.iter().rev() {
        mock.set_path(n, true);
    }
    let c = client(&mock).with_page_size(3);
    let got: Vec<String> = c
        .list_paths()
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(got, names);
    let queries: Vec<String> = mock.requests().iter().map(|r| r.query.clone()).collect();
    assert_eq!(
        queries,
        [
            "itemsPerPage=3&page=0",
            "itemsPerPage=3&page=1",
            "itemsPerPage=3&page=2"
        ]
    );
    // Empty server: one request, no items.
    let empty = MockMediamtx::start(Version::V1_16);
    assert_eq!(client(&empty).list_paths().unwrap(), vec![]);
    assert_eq!(empty.request_count(), 1);
}

#[test]
fn auth_missing_wrong_right_and_slow_401() {
    let mock = MockMediamtx::start(Version::V1_20);
    mock.set_path("a", true);
    let delay = Duration::from_millis(300);
    mock.require_auth(USER, PASS, delay);
    let t = Duration::from_secs(5);

    // No credentials: MediaMTX asks for them at once.
    let e = Client::new(&cfg(&mock.url(), None, t))
        .list_paths()
        .unwrap_err();
    assert_eq!(e, ApiError::Unauthorized);
    assert!(e.to_string().contains("mediamtx.username/password"));
    assert!(e.to_string().contains("authInternalUsers"));

    // Wrong password: 401 only after the brute-force pause.
    let start = Instant::now();
    let e = Client::new(&cfg(&mock.url(), Some((USER, "wrong")), t))
        .info()
        .unwrap_err();
    assert_eq!(e, ApiError::Unauthorized);
    assert!(start.elapsed() >= delay, "401 came before the delay");

    // Right credentials, sent as Basic.
    let good = Client::new(&cfg(&mock.url(), Some((USER, PASS)), t));
    assert_eq!(good.list_paths().unwrap().len(), 1);
    let last = mock.requests().pop().unwrap();
    let want = format!("Basic {}", base64(format!("{USER}:{PASS}").as_bytes()));
    assert_eq!(last.authorization.as_deref(), Some(want.as_str()));

    // Credentials embedded in api_url work too and never show up in errors.
    let url = mock
        .url()
        .replace("http://", &format!("http://{USER}:{PASS}@"));
    let embedded = Client::new(&cfg(&url, None, t));
    assert_eq!(embedded.info().unwrap().version.as_deref(), Some("v1.20.1"));
    assert!(!format!("{embedded:?}").contains(PASS));
    assert!(!embedded.base_url().contains(PASS));

    // A timeout shorter than MediaMTX's pause reports a timeout, not a 401.
    mock.require_auth(USER, PASS, Duration::from_millis(800));
    let short = Client::new(&cfg(
        &mock.url(),
        Some((USER, "wrong")),
        Duration::from_millis(150),
    ));
    let start = Instant::now();
    let e = short.info().unwrap_err();
    assert_eq!(e, ApiError::Timeout);
    assert!(start.elapsed() < Duration::from_millis(700));
}

#[test]
fn garbage_status_slow_and_refused_are_classified() {
    let mut mock = MockMediamtx::start(Version::V1_20);
    mock.set_path("a", true);
    let creds = Some((USER, PASS));
    let c = Client::new(&cfg(&mock.url(), creds, Duration::from_millis(200)));
    let mut errors = Vec::new();

    mock.set_fault(Fault::Garbage);
    for e in [
        c.info().unwrap_err(),
        c.list_paths().unwrap_err(),
        c.get_path("a").unwrap_err(),
    ] {
        assert!(matches!(e, ApiError::Malformed(_)), "{e:?}");
        errors.push(e);
    }

    mock.set_fault(Fault::Status(500));
    let e = c.list_paths().unwrap_err();
    match &e {
        ApiError::Http(500, msg) => assert!(msg.contains("mock fault"), "{msg}"),
        other => panic!("want Http(500), got {other:?}"),
    }
    errors.push(e);

    mock.set_fault(Fault::Status(404));
    let e = c.list_paths().unwrap_err();
    assert!(matches!(e, ApiError::NotFound(_)), "{e:?}");
    errors.push(e);

    mock.set_fault(Fault::Slow(Duration::from_secs(2)));
    let start = Instant::now();
    let e = c.list_paths().unwrap_err();
    assert_eq!(e, ApiError::Timeout);
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "timeout not honoured"
    );
    errors.push(e);

    mock.set_fault(Fault::None);
    assert!(c.get_path("a").unwrap().is_some());
    mock.stop();
    for e in [c.info().unwrap_err(), c.list_paths().unwrap_err()] {
        assert_eq!(e, ApiError::Refused);
        errors.push(e);
    }
    for e in &errors {
        assert_no_secret(e);
    }
}

#[test]
fn get_path_missing_is_none_and_names_are_encoded() {
    for version in [Version::V1_20, Version::V1_9] {
        let mock = MockMediamtx::start(version);
        mock.set_path("room/a b", true);
        let c = client(&mock);
        assert_eq!(c.get_path("nope").unwrap(), None, "{version:?}");
        let p = c
            .get_path("room/a b")
            .unwrap()
            .expect("path with / and space");
        assert_eq!(p.name, "room/a b");
        let paths: Vec<String> = mock.requests().iter().map(|r| r.path.clone()).collect();
        assert_eq!(paths, ["/v3/paths/get/nope", "/v3/paths/get/room%2Fa%20b"]);
        mock.remove_path("room/a b");
        assert_eq!(c.get_path("room/a b").unwrap(), None);
    }
}

#[test]
fn publisher_replacement_and_unpublish_are_visible() {
    let mock = MockMediamtx::start(Version::V1_20);
    mock.set_path("a", true);
    let c = client(&mock);
    let first = c.get_path("a").unwrap().unwrap().source_id.unwrap();
    mock.set_source_id("a", "other-publisher");
    assert_eq!(
        c.get_path("a").unwrap().unwrap().source_id.as_deref(),
        Some("other-publisher")
    );
    assert_ne!(first, "other-publisher");
    mock.set_path("a", false);
    let p = c.get_path("a").unwrap().unwrap();
    assert!(!p.available && p.source_id.is_none() && p.tracks.is_empty());
}

#[test]
fn non_http_server_is_malformed_and_unknown_host_is_other() {
    // A listener that answers with something that is not HTTP at all.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n");
        }
    });
    let c = Client::new(&cfg(
        &format!("http://{addr}"),
        Some((USER, PASS)),
        Duration::from_secs(2),
    ));
    let e = c.info().unwrap_err();
    assert!(matches!(e, ApiError::Malformed(_)), "{e:?}");
    assert_no_secret(&e);
    t.join().unwrap();

    let c = Client::new(&cfg(
        "http://no-such-host.invalid:9997",
        Some((USER, PASS)),
        Duration::from_secs(2),
    ));
    let e = c.info().unwrap_err();
    assert!(matches!(e, ApiError::Other(_)), "{e:?}");
    assert_no_secret(&e);
}

/// Send raw bytes to the metrics server and read the whole answer.
fn raw(addr: std::net::SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(req).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn metrics_server_answers_get_metrics_over_tcp() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let render: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(|| {
        let mut e = metrics::Exposition::new();
        e.gauge("mediamtx_audio_up", "Supervisor up.", &[], 1.0);
        e.render()
    });
    metrics::serve_listener(l, render).unwrap();

    let ok = raw(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = ok.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(body.contains("mediamtx_audio_up 1\n"), "{body}");
    common::exposition::check_exposition(body).unwrap();

    assert!(raw(addr, b"GET /other HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
    assert!(raw(addr, b"\x00\xff garbage\r\n\r\n").starts_with("HTTP/1.1 400 "));
    let huge = vec![b'A'; 20_000];
    assert!(raw(addr, &huge).starts_with("HTTP/1.1 431 "));
    // A client that connects and says nothing does not block others.
    let _idle = TcpStream::connect(addr).unwrap();
    assert!(raw(addr, b"GET /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 200 "));
}

#[test]
fn metrics_serve_binds_the_given_address() {
    // Find a free port, release it, and ask serve() to bind it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    metrics::serve(addr, Arc::new(String::new)).unwrap();
    let ans = raw(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(
        ans.starts_with("HTTP/1.1 200 ") && ans.ends_with("\r\n\r\n"),
        "{ans}"
    );
    // The address is now taken: a second server reports the bind error.
    assert!(metrics::serve(addr, Arc::new(String::new)).is_err());
}
