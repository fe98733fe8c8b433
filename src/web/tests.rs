use super::*;
use crate::status::{LevelView, StreamStatus};

fn snap() -> Snapshot {
    let mut s = Snapshot::default();
    s.supervisor.running = true;
    s.supervisor.uptime_s = Some(5);
    s.streams.push(StreamStatus {
        name: "garden".into(),
        state: "running".into(),
        health: "healthy".into(),
        uptime_s: Some(3.0),
        level: Some(LevelView {
            peak_db: Some(-20.0),
            rms_db: Some(-23.0),
            at: "t1".into(),
        }),
        ..StreamStatus::default()
    });
    s
}

fn site(user: Option<(&str, &str)>) -> Site {
    let mut settings = Settings::default();
    settings.web.enabled = true;
    settings.web.player_url = Some("http://{host}:8889/{stream}".into());
    if let Some((u, p)) = user {
        settings.web.username = Some(u.into());
        settings.web.password = Some(p.into());
    }
    Site::new(&settings, Arc::new(snap)).unwrap()
}

fn ask(site: &Site, head: &str) -> Option<(u16, Vec<String>, Vec<u8>)> {
    let mut parts = head.lines().next().unwrap().split(' ');
    let method = parts.next().unwrap();
    let path = parts.next().unwrap();
    match site.answer(&Request { method, path, head })? {
        Answer::Reply(r) => Some((r.status, r.headers, r.body)),
        Answer::Stream(_) => Some((0, vec![], vec![])),
    }
}

#[test]
fn page_is_self_contained_and_within_budget() {
    let page = build_page(&Settings::default());
    assert!(page.len() <= PAGE_BUDGET, "page is {} bytes", page.len());
    for external in ["http://", "https://", "src=", "@import", "url(", "//cdn"] {
        assert!(!page.contains(external), "page refers outside: {external}");
    }
    assert!(!page.contains("/*MSM_CONFIG*/"));
}

#[test]
fn page_config_cannot_close_the_script() {
    let mut s = Settings::default();
    s.web.player_url = Some("http://x/</script><b>".into());
    let page = build_page(&s);
    assert!(!page.contains("</script><b>"));
}

#[test]
fn methods_and_paths_table() {
    let s = site(None);
    for (head, want) in [
        ("GET / HTTP/1.1", Some(200)),
        ("HEAD / HTTP/1.1", Some(200)),
        ("GET /api/status HTTP/1.1", Some(200)),
        ("GET /api/events HTTP/1.1", Some(0)),
        ("POST / HTTP/1.1", Some(405)),
        ("PUT /api/status HTTP/1.1", Some(405)),
        ("DELETE /api/events HTTP/1.1", Some(405)),
        ("PATCH / HTTP/1.1", Some(405)),
        ("OPTIONS / HTTP/1.1", Some(405)),
        ("GET /nope HTTP/1.1", None),
        ("GET /api/nope HTTP/1.1", Some(404)),
        ("POST /api/nope HTTP/1.1", Some(404)),
        ("GET /metrics HTTP/1.1", None),
    ] {
        assert_eq!(ask(&s, head).map(|a| a.0), want, "{head}");
    }
    let (_, headers, body) = ask(&s, "POST / HTTP/1.1").unwrap();
    assert!(
        headers.contains(&"Allow: GET, HEAD".to_string()),
        "{headers:?}"
    );
    assert_eq!(body, b"read-only: GET only\n");
    let (_, headers, _) = ask(&s, "GET / HTTP/1.1").unwrap();
    assert!(headers
        .iter()
        .any(|h| h.starts_with("Content-Security-Policy")));
}

#[test]
fn basic_auth_table() {
    use base64::Engine;
    let s = site(Some(("op", "s3cret pass")));
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
    for (auth, want) in [
        (None, 401),
        (Some(format!("Basic {}", b64("op:s3cret pass"))), 200),
        (Some(format!("basic {}", b64("op:s3cret pass"))), 200),
        (Some(format!("Basic {}", b64("op:s3cret pas"))), 401),
        (Some(format!("Basic {}", b64("op:s3cret passX"))), 401),
        (Some(format!("Basic {}", b64("po:s3cret pass"))), 401),
        (Some(format!("Bearer {}", b64("op:s3cret pass"))), 401),
        (Some("Basic !!!not-base64".into()), 401),
        (Some("Basic".into()), 401),
    ] {
        let head = match &auth {
            Some(a) => format!("GET /api/status HTTP/1.1\r\nAuthorization: {a}"),
            None => "GET /api/status HTTP/1.1".into(),
        };
        let (status, headers, body) = ask(&s, &head).unwrap();
        assert_eq!(status, want, "{auth:?}");
        if want == 401 {
            assert!(headers
                .iter()
                .any(|h| h.starts_with("WWW-Authenticate: Basic")));
            // A stranger learns nothing, not even that POST is refused or what exists.
            for head in ["POST / HTTP/1.1", "GET /api/nope HTTP/1.1"] {
                assert_eq!(ask(&s, head).unwrap().0, 401, "{head}");
            }
        } else {
            let text = String::from_utf8(body).unwrap();
            assert!(!text.contains("s3cret"), "{text}");
        }
    }
    let page = String::from_utf8(
        ask(
            &s,
            &format!(
                "GET / HTTP/1.1\r\nAuthorization: Basic {}",
                b64("op:s3cret pass")
            ),
        )
        .unwrap()
        .2,
    )
    .unwrap();
    assert!(!page.contains("s3cret"));
}

#[test]
fn constant_time_compare() {
    let a = md5(b"op:pw");
    assert!(ct_eq(&a, &md5(b"op:pw")));
    assert!(!ct_eq(&a, &md5(b"op:pX")));
}

#[test]
fn only_real_changes_are_significant() {
    let a = snap();
    let mut b = snap();
    b.supervisor.uptime_s = Some(99);
    b.streams[0].uptime_s = Some(99.0);
    b.streams[0].level = None;
    assert_eq!(events::significant(&a), events::significant(&b));
    assert_ne!(events::levels(&a), events::levels(&b));
    b.streams[0].restarts = 1;
    assert_ne!(events::significant(&a), events::significant(&b));
    let mut c = snap();
    c.mediamtx.reachable = Some(false);
    assert_ne!(events::significant(&a), events::significant(&c));
}
