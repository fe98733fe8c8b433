use super::*;

#[test]
fn scrub_masks_urls_and_literals() {
    let mut s = Settings::default();
    s.mediamtx.password = Some("hunter22".into());
    s.mediamtx.username = Some("pub".into());
    s.mediamtx.rtsp_url = "rtsp://urluser:p%40ss@h:8554".into();
    let sc = Scrub::new(&s);
    let table = [
        ("rtsp://a:b@h/x refused", "rtsp://***@h/x refused"),
        ("the password is hunter22!", "the password is ***!"),
        ("user pub logged in", "user *** logged in"),
        ("decoded p@ss and raw p%40ss", "decoded *** and raw ***"),
        ("urluser was here\n", "*** was here\n"),
        ("nothing secret", "nothing secret"),
    ];
    for (input, want) in table {
        assert_eq!(sc.text(input), want, "{input}");
    }
    // Too short to search for: only masked where it is known to be a value.
    let sc = Scrub::from_literals(vec!["ab".into()]);
    assert_eq!(sc.text("abc"), "abc");
}

#[test]
fn tar_layout() {
    let r = Report {
        parts: vec![Part {
            file: "a.txt".into(),
            title: Some("A".into()),
            text: "hello\n".into(),
        }],
        unreadable: vec![],
    };
    let t = tar(&r);
    assert_eq!(t.len() % 512, 0);
    assert_eq!(&t[257..263], b"ustar\0");
    // Checksum: the sum of the header with the checksum field as spaces.
    let mut h = t[..512].to_vec();
    let stored = u64::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
    h[148..156].copy_from_slice(b"        ");
    assert_eq!(stored, h.iter().map(|b| *b as u64).sum::<u64>());
    assert!(t.ends_with(&[0u8; 1024]));
}

#[test]
fn human_sizes() {
    let table = [
        (10, "10 B"),
        (1536, "1.5 KiB"),
        (200 << 20, "200 MiB"),
        (3 << 30, "3.0 GiB"),
    ];
    for (b, want) in table {
        assert_eq!(human(b), want);
    }
}

#[test]
fn tail_keeps_the_last_lines() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.log");
    let text: String = (0..250).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&p, text).unwrap();
    let t = tail(&p, 100).unwrap();
    assert_eq!(t.lines().count(), 100);
    assert!(t.starts_with("line 150\n") && t.ends_with("line 249\n"));
}
