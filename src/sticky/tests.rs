use super::*;

const BASE: &str = "yeti";

fn cand(port: &str, card: u32) -> Candidate {
    Candidate {
        key: Some(DeviceKey {
            by_id: "usb-Yeti-00".into(),
            port: Some(format!("pci-usb-0:{port}:1.0")),
        }),
        base: BASE.into(),
        explicit: false,
        port_suffix: Some(format!("_{}", port.replace('.', "_"))),
        card_suffix: format!("_microphones_{card}"),
        by_path: Some(format!("pci-usb-0:{port}:1.0")),
        card,
        usbid: Some("b58e:9e84".into()),
    }
}

fn names(a: &[Assignment]) -> Vec<&str> {
    a.iter().map(|a| a.name.as_str()).collect()
}

/// Run the policy over a sequence of scans (each a list of present (port, card)),
/// carrying `live` and the saved map like the supervisor does.
fn scans(start: &NameMap, seq: &[&[(&str, u32)]]) -> (Vec<Vec<String>>, NameMap) {
    let mut saved = start.clone();
    let mut live = NameMap::default();
    let mut got = Vec::new();
    for (t, present) in seq.iter().enumerate() {
        let cands: Vec<Candidate> = present.iter().map(|(p, c)| cand(p, *c)).collect();
        let (a, next) = assign(&cands, &live, &saved, t as u64);
        live = live_of(&cands, &a, &next);
        saved = next;
        got.push(a.iter().map(|a| a.name.clone()).collect());
    }
    (got, saved)
}

/// Scans of present (port, card) devices, and the names expected after each scan.
type Sequence<'a> = (&'a [&'a [(&'a str, u32)]], &'a [&'a [&'a str]]);

#[test]
fn sequences_from_a_table() {
    let e = NameMap::default();
    // (scans of present devices, expected names per scan)
    let table: &[Sequence] = &[
        // Single device: the plain name, wherever it is plugged.
        (
            &[&[("1.3", 1)], &[], &[("1.4", 2)]],
            &[&["yeti"], &[], &["yeti"]],
        ),
        // Two at once, no history: the lower port keeps the plain name.
        (&[&[("1.4", 1), ("1.2", 2)]], &[&["yeti_1_4", "yeti"]]),
        // A twin plugged into a LOWER port while the first streams: first keeps it.
        (
            &[&[("1.4", 1)], &[("1.4", 1), ("1.2", 2)]],
            &[&["yeti"], &["yeti", "yeti_1_2"]],
        ),
        // ...then both unplugged and replugged in reverse order (new card numbers).
        (
            &[
                &[("1.4", 1)],
                &[("1.4", 1), ("1.2", 2)],
                &[],
                &[("1.2", 1)],
                &[("1.2", 1), ("1.4", 2)],
            ],
            &[
                &["yeti"],
                &["yeti", "yeti_1_2"],
                &[],
                &["yeti_1_2"],
                &["yeti_1_2", "yeti"],
            ],
        ),
        // The plain-named one leaves; the suffixed one keeps its suffix while it runs.
        (
            &[&[("1.4", 1)], &[("1.4", 1), ("1.2", 2)], &[("1.2", 2)]],
            &[&["yeti"], &["yeti", "yeti_1_2"], &["yeti_1_2"]],
        ),
        // A single device moved to another port is still plain; its old port coming back
        // while it runs gets the suffix (the running one is never renamed).
        (
            &[&[("1.3", 1)], &[], &[("1.5", 1)], &[("1.5", 1), ("1.3", 2)]],
            &[&["yeti"], &[], &["yeti"], &["yeti", "yeti_1_3"]],
        ),
    ];
    for (seq, want) in table {
        let (got, _) = scans(&e, seq);
        let want: Vec<Vec<String>> = want
            .iter()
            .map(|s| s.iter().map(|n| n.to_string()).collect())
            .collect();
        assert_eq!(got, want, "{seq:?}");
    }
}

#[test]
fn persisted_map_survives_a_restart() {
    let (_, saved) = scans(
        &NameMap::default(),
        &[&[("1.4", 1)], &[("1.4", 1), ("1.2", 2)]],
    );
    // A fresh supervisor (no live names) with both present, in either card order.
    for present in [[("1.4", 1), ("1.2", 2)], [("1.2", 1), ("1.4", 2)]] {
        let cands: Vec<Candidate> = present.iter().map(|(p, c)| cand(p, *c)).collect();
        let (a, next) = assign(&cands, &NameMap::default(), &saved, 99);
        let mut got = names(&a);
        got.sort();
        assert_eq!(got, ["yeti", "yeti_1_2"]);
        let by_port = |p: &str| {
            a[cands
                .iter()
                .position(|c| c.by_path.as_deref().unwrap().contains(p))
                .unwrap()]
            .name
            .clone()
        };
        assert_eq!(by_port("1.4"), "yeti");
        assert_eq!(by_port("1.2"), "yeti_1_2");
        assert_eq!(next, saved, "nothing new to write");
    }
    let text = render(&saved);
    let (back, w) = parse(&text).unwrap();
    assert_eq!(back, saved);
    assert!(w.is_empty());
    let e = &saved
        .entries
        .values()
        .find(|e| e.name == "yeti_1_2")
        .unwrap();
    assert_eq!(e.suffix_from.as_deref(), Some(FROM_PORT));
    assert_eq!(e.base, "yeti");
}

#[test]
fn base_change_starts_over_and_explicit_wins() {
    let (_, saved) = scans(
        &NameMap::default(),
        &[&[("1.4", 1)], &[("1.4", 1), ("1.2", 2)]],
    );
    // The suffixed device is given an explicit name: the old assignment no longer counts.
    let mut g = cand("1.2", 2);
    g.base = "garden".into();
    g.explicit = true;
    let (a, next) = assign(&[cand("1.4", 1), g.clone()], &NameMap::default(), &saved, 5);
    assert_eq!(names(&a), ["yeti", "garden"]);
    let e = next.entries.get(g.key.as_ref().unwrap()).unwrap();
    assert_eq!((e.name.as_str(), e.assigned), ("garden", 5));
    // An explicit name equal to a running automatic name takes it; the other moves.
    let mut x = cand("1.9", 3);
    x.key.as_mut().unwrap().by_id = "usb-Other-00".into();
    x.explicit = true;
    let live = {
        let c = [cand("1.4", 1)];
        let (a, m) = assign(&c, &NameMap::default(), &NameMap::default(), 0);
        live_of(&c, &a, &m)
    };
    let (a, _) = assign(&[cand("1.4", 1), x], &live, &live, 1);
    assert_eq!(names(&a), ["yeti_1_4", "yeti"]);
    assert_eq!(a[0].suffix_from.as_deref(), Some(FROM_PORT));
}

#[test]
fn twins_without_port_paths_use_card_ids_and_never_collide() {
    let mut a = cand("1.1", 1);
    let mut b = cand("1.1", 2);
    let mut c = cand("1.1", 3);
    for x in [&mut a, &mut b, &mut c] {
        x.port_suffix = None;
        x.by_path = None;
    }
    b.key = None;
    c.key = None;
    c.card_suffix = b.card_suffix.clone(); // same card id suffix: must still differ
    let (got, map) = assign(&[a, b, c], &NameMap::default(), &NameMap::default(), 0);
    assert_eq!(
        names(&got),
        ["yeti", "yeti_microphones_2", "yeti_microphones_2_3"]
    );
    assert_eq!(got[1].suffix_from.as_deref(), Some(FROM_CARD));
    assert_eq!(map.entries.len(), 1, "only the identifiable device is kept");
}

#[test]
fn file_parsing_is_strict_about_names_and_tolerant_otherwise() {
    for bad in ["", "{", "[]", "{\"version\":2,\"names\":[]}", "\u{0}"] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
    let (m, w) = parse(
        r#"{"version":1,"names":[
          {"by_id":"usb-a","port":"p1","base":"a","name":"a"},
          {"by_id":"usb-b","base":"b","name":"../../etc/passwd"},
          {"by_id":"usb-c","base":"c","name":"C"}]}"#,
    )
    .unwrap();
    assert_eq!(m.entries.len(), 1);
    assert_eq!(w.len(), 2, "{w:?}");
}

#[test]
fn save_is_atomic_and_creates_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/names.json");
    let (_, map) = assign(
        &[cand("1.4", 1)],
        &NameMap::default(),
        &NameMap::default(),
        7,
    );
    save(&path, &map).unwrap();
    assert!(matches!(read(&path), Loaded::Ok(m, _) if m == map));
    let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 1, "no temp file left: {left:?}");
    // A temp file left by a crash mid-write is cleaned up by the next supervisor.
    let stale = path.with_file_name(".names.json.tmp.99999");
    std::fs::write(&stale, "{").unwrap();
    assert_eq!(load_for_supervisor(&path), map);
    assert!(!stale.exists());
    std::fs::write(&path, "garbage").unwrap();
    assert_eq!(load_for_supervisor(&path), NameMap::default());
    assert!(!path.exists());
    assert_eq!(std::fs::read_to_string(bad_path(&path)).unwrap(), "garbage");
    assert!(matches!(read(&path), Loaded::Missing));
    // A directory in its place is unreadable, not corrupt: left where it is.
    std::fs::create_dir(&path).unwrap();
    assert_eq!(load_for_supervisor(&path), NameMap::default());
    assert!(path.is_dir() && !bad_path(&path).is_dir());
}

#[test]
fn old_absent_entries_are_pruned() {
    let mut saved = NameMap::default();
    for i in 0..MAX_ENTRIES + 5 {
        let e = Entry {
            by_id: format!("usb-{i}"),
            port: None,
            base: format!("m{i}"),
            name: format!("m{i}"),
            suffix_from: None,
            assigned: i as u64,
            usbid: None,
        };
        saved.entries.insert(e.key(), e);
    }
    let (_, next) = assign(&[cand("1.4", 1)], &NameMap::default(), &saved, 1000);
    assert_eq!(next.entries.len(), MAX_ENTRIES);
    assert!(!next.entries.values().any(|e| e.name == "m0"));
    assert!(next.entries.values().any(|e| e.name == BASE));
}
