//! Fleet monitoring: the real exposition passes Prometheus' own parser (`promtool check
//! metrics`), the shipped alert rules pass `promtool test rules`, and every metric name
//! the alerts, their unit tests and the Grafana dashboard use exists in what the binary
//! really exports (a supervisor on real ffmpeg with levels, recording and the MediaMTX API).

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::mediamtx_mock::{MockMediamtx, Version};
use common::rtsp::{self, free_port, Receiver};
use common::sup::Sup;

const PREFIX: &str = "mediamtx_stream_manager_";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn promtool_available(test: &str) -> bool {
    common::tool_available(
        test,
        Command::new("promtool").arg("--version"),
        "apt-get install -y prometheus",
    )
}

/// Run promtool with `args`, feeding `stdin`; (success, stdout + stderr).
fn promtool(args: &[&str], stdin: &str) -> (bool, String) {
    let mut c = Command::new("promtool")
        .args(args)
        .current_dir(repo("contrib/prometheus"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

/// Families (`# TYPE` names) and series keys (`name{labels}`) of an exposition.
fn families_and_series(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut families = BTreeSet::new();
    let mut series = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            families.insert(rest.split(' ').next().unwrap_or("").to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            series.insert(line.rsplit_once(' ').expect("sample").0.to_string());
        }
    }
    (families, series)
}

/// Every `mediamtx_stream_manager_*` identifier in a text (PromQL inside YAML or JSON).
fn names_used(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(PREFIX) {
        let before = rest[..i].chars().next_back();
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

/// `state="…"` values used with the state family.
fn states_used(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for part in text.split("stream_state{").skip(1) {
        let sel = part.split('}').next().unwrap_or("");
        if let Some(v) = sel.split("state=").nth(1) {
            let v = v.trim_start_matches(['"', '\\']);
            let end = v.find(['"', '\\']).unwrap_or(v.len());
            out.insert(v[..end].to_string());
        }
    }
    out
}

/// The files whose queries must only use exported names.
fn query_files() -> Vec<PathBuf> {
    let mut v = vec![
        repo("contrib/prometheus/alerts.yml"),
        repo("contrib/prometheus/alerts_test.yml"),
    ];
    for e in std::fs::read_dir(repo("contrib/grafana")).expect("contrib/grafana") {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            v.push(p);
        }
    }
    v
}

#[test]
fn name_scanner_table() {
    let t = "rate(mediamtx_stream_manager_stream_restarts_total[5m]) > 0 and \
             x_mediamtx_stream_manager_nope \"mediamtx_stream_manager_b:c\"";
    let got: Vec<String> = names_used(t).into_iter().collect();
    assert_eq!(
        got,
        [
            "mediamtx_stream_manager_b:c",
            "mediamtx_stream_manager_stream_restarts_total"
        ]
    );
    let s = states_used(
        r#"a_stream_state{state="failed"} b_stream_state{stream="x",state=\"running\"}"#,
    );
    assert_eq!(s.into_iter().collect::<Vec<_>>(), ["failed", "running"]);
}

#[test]
fn grafana_dashboard_is_json_with_prometheus_queries() {
    let path = repo("contrib/grafana/mediamtx-stream-manager.json");
    let text = std::fs::read_to_string(&path).expect("dashboard");
    let v: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let panels = v["panels"].as_array().expect("panels");
    let mut exprs = Vec::new();
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    assert!(exprs.len() >= 5, "{exprs:?}");
    for e in &exprs {
        assert!(!names_used(e).is_empty(), "query uses none of ours: {e}");
    }
    let all: String = exprs.join("\n");
    for want in [
        "stream_state",
        "stream_restarts_total",
        "stream_level_peak_dbfs",
        "stream_mediamtx_inbound_bytes",
    ] {
        assert!(all.contains(want), "dashboard lacks {want}");
    }
}

/// A supervisor on real ffmpeg (virtual ALSA tone), levels on, recording on, the MediaMTX
/// API answered by the mock, the RTSP leg received by a real ffmpeg: every family there is.
#[test]
fn real_exposition_passes_promtool_and_has_every_name_alerts_and_dashboard_use() {
    common::require_ffmpeg();
    let mut s = Sup::new();
    let conf = rtsp::virtual_mic_tone(s.dir.path(), "tonemic", 48000, 2, 0.1);
    let rx = Receiver::start_for(s.dir.path(), "garden", 30.0);
    let mock = MockMediamtx::start(Version::V1_20);
    mock.set_path("garden", true);
    mock.grow("garden", 4096);
    let textfile = s.dir.path().join("textfile/mediamtx_stream_manager.prom");
    std::fs::create_dir_all(textfile.parent().unwrap()).unwrap();
    let rec_dir = s.dir.path().join("rec");
    let port = free_port();
    s.real_metrics_box(&conf, rx.port(), &mock.url(), port, &textfile, &rec_dir);
    s.start_foreground();

    let want_present = [
        "mediamtx_stream_manager_stream_up{stream=\"garden\"} 1",
        "mediamtx_stream_manager_stream_level_peak_dbfs{stream=\"garden\"}",
        "mediamtx_stream_manager_stream_recording_ok{stream=\"garden\"} 1",
        "mediamtx_stream_manager_stream_mediamtx_path_available{stream=\"garden\"} 1",
    ];
    s.wait_for(
        "levels, recording and MediaMTX view in the textfile",
        Duration::from_secs(40),
        |_| {
            std::fs::read_to_string(&textfile)
                .is_ok_and(|t| want_present.iter().all(|w| t.contains(w)))
        },
    );
    let text = std::fs::read_to_string(&textfile).unwrap();
    let (head, body) = common::http_get(port, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // Every name the alerts, their tests and the dashboard use is a family we export,
    // and every state they select on is a state label value we export.
    let (families, series) = families_and_series(&text);
    let (live_families, _) = families_and_series(&body);
    assert_eq!(families, live_families, "textfile and /metrics differ");
    for f in query_files() {
        let q = std::fs::read_to_string(&f).unwrap();
        let used = names_used(&q);
        assert!(!used.is_empty(), "{} uses none of our names", f.display());
        for name in &used {
            assert!(
                families.contains(name),
                "{} uses {name}, which the binary does not export:\n{text}",
                f.display()
            );
        }
        for state in states_used(&q) {
            let key = format!("{PREFIX}stream_state{{stream=\"garden\",state=\"{state}\"}}");
            assert!(
                series.contains(&key),
                "{} selects state={state:?}, not exported:\n{text}",
                f.display()
            );
        }
    }

    // Prometheus' own parser and linter on both outputs.
    if promtool_available("real_exposition_passes_promtool") {
        for (what, t) in [("textfile", &text), ("/metrics", &body)] {
            let (ok, out) = promtool(&["check", "metrics"], t);
            assert!(
                ok && out.trim().is_empty(),
                "promtool check metrics on {what}: {out}\n{t}"
            );
        }
        // The checker really rejects a broken exposition (so the pass above means something).
        let (ok, _) = promtool(&["check", "metrics"], "# TYPE x counter\nx{a=\"1\" 1\n");
        assert!(!ok, "promtool accepted a broken exposition");
    }
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    if !promtool_available("alert_rules_pass_promtool_check_and_unit_tests") {
        return;
    }
    let (ok, out) = promtool(&["check", "rules", "alerts.yml"], "");
    assert!(ok, "promtool check rules: {out}");
    assert!(out.contains("SUCCESS"), "{out}");
    let (ok, out) = promtool(&["test", "rules", "alerts_test.yml"], "");
    assert!(ok, "promtool test rules: {out}");
    assert!(out.contains("SUCCESS"), "{out}");
}
