//! The status snapshot shared by the control socket, `status`, `monitor`, metrics and the
//! demo, and its human rendering (one row per stream, readable at 80 columns).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Snapshot {
    pub supervisor: SupervisorInfo,
    pub mediamtx: MediamtxInfo,
    pub streams: Vec<StreamStatus>,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// CPU measured by the supervisor over its last full period (absent until one passed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuView>,
}

/// CPU use over the supervisor's last marking period (`cpu.rs`), % of one core.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct CpuView {
    pub window_s: f64,
    pub supervisor: f64,
    /// Child pid -> % of one core; only children alive for the whole window.
    pub children: std::collections::BTreeMap<u32, f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct SupervisorInfo {
    pub running: bool,
    pub pid: Option<u32>,
    pub uptime_s: Option<u64>,
    pub mode: String,
    pub version: String,
    /// e.g. "live details need root" or "not answering".
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct MediamtxInfo {
    pub enabled: bool,
    pub api_url: String,
    /// None until the first poll.
    pub reachable: Option<bool>,
    pub version: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct DeviceView {
    pub by_id: Option<String>,
    pub card: Option<u32>,
    pub card_id: Option<String>,
    pub by_path: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct LastExit {
    pub code: Option<i32>,
    pub signal: Option<String>,
    pub reason: String,
    /// Seconds since it happened.
    pub ago_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct ProgressView {
    pub out_time_s: Option<f64>,
    pub total_size: Option<u64>,
    pub bitrate_kbps: Option<f64>,
    pub speed: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct PathView {
    pub available: bool,
    pub inbound_bytes: u64,
    pub inbound_rate_bps: Option<f64>,
    pub readers: usize,
    pub source_id: Option<String>,
    /// Another publisher replaced ours on this path.
    pub displaced: bool,
}

/// Local recording of one stream (docs/recording.md). `files`/`bytes`/`oldest`/`newest`
/// cover finished segments only; `writing` is the one ffmpeg has open.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct RecordingView {
    pub dir: String,
    pub files: u64,
    pub bytes: u64,
    pub oldest: Option<String>,
    pub newest: Option<String>,
    pub writing: Option<String>,
    /// Why recording is not happening (dir not writable, disk full); None when fine.
    pub error: Option<String>,
    /// Audio lost across the last restart that brought publishing back (seconds).
    pub last_gap_s: Option<f64>,
    /// Free bytes on the recording filesystem at the last sweep (`recording.min_free`).
    #[serde(default)]
    pub free_bytes: Option<u64>,
}

/// Live levels over the last second, dBFS; `None` is -inf (digital silence).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct LevelView {
    pub peak_db: Option<f64>,
    pub rms_db: Option<f64>,
    /// RFC 3339 time of the measurement.
    pub at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct StreamStatus {
    pub name: String,
    /// starting | running | backoff | stopping | stopped | failed | waiting-for-device | disabled
    pub state: String,
    /// healthy | degraded | unhealthy | failed | unknown
    pub health: String,
    pub pid: Option<u32>,
    pub uptime_s: Option<f64>,
    pub restarts: u64,
    pub consecutive_failures: u32,
    pub next_retry_s: Option<f64>,
    pub last_exit: Option<LastExit>,
    pub progress: Option<ProgressView>,
    pub device: DeviceView,
    pub alsa_device: String,
    pub url: String,
    pub log: String,
    pub silent: bool,
    pub mediamtx: Option<PathView>,
    /// Seconds the stream has not been running-and-healthy (None when it is).
    pub unhealthy_for_s: Option<f64>,
    /// Seconds the stream has been running, healthy and clear of pending failures without
    /// a break (None when it is not); `monitor` wants `monitor.grace` of it.
    #[serde(default)]
    pub healthy_for_s: Option<f64>,
    /// The stream reached its first verdict (running, or a failed start).
    pub settled: bool,
    #[serde(default)]
    pub notes: Vec<String>,
    /// False while ffmpeg's RTSP leg is down and only the recording runs.
    #[serde(default = "yes")]
    pub publishing: bool,
    /// Why the RTSP leg is down while the recording runs (e.g. `RTSP server not answering
    /// (no valid RTSP reply)`); null while publishing.
    #[serde(default)]
    pub publish_error: Option<String>,
    #[serde(default)]
    pub recording: Option<RecordingView>,
    #[serde(default)]
    pub level: Option<LevelView>,
}

fn yes() -> bool {
    true
}

/// `-23 dB`, `-inf dB`, or `-` when levels are off or not yet measured.
pub fn level_text(l: Option<&LevelView>) -> String {
    match l {
        None => "-".into(),
        Some(l) => match l.rms_db {
            Some(v) => format!("{v:.0} dB"),
            None => "-inf dB".into(),
        },
    }
}

impl StreamStatus {
    pub fn is_ok(&self) -> bool {
        self.state == "running" && self.health == "healthy"
    }
}

fn secs(s: f64) -> String {
    let s = s.max(0.0);
    if s < 60.0 {
        format!("{s:.0}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else if s < 86400.0 {
        format!(
            "{}h{:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    } else {
        format!(
            "{}d{:02}h",
            (s / 86400.0) as u64,
            ((s % 86400.0) / 3600.0) as u64
        )
    }
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Human rendering: a header, then one compact row per stream, then details that need room.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let sup = &s.supervisor;
    if sup.running {
        out.push_str(&format!(
            "supervisor: running (pid {}, up {}, mode {})",
            sup.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
            sup.uptime_s
                .map(|u| secs(u as f64))
                .unwrap_or_else(|| "?".into()),
            sup.mode
        ));
    } else {
        out.push_str("supervisor: not running");
    }
    if let Some(n) = &sup.note {
        out.push_str(&format!("; {n}"));
    }
    out.push('\n');
    let m = &s.mediamtx;
    if !m.enabled {
        out.push_str("mediamtx:   API checks off (mediamtx.api = false)\n");
    } else {
        match (m.reachable, &m.version, &m.error) {
            (Some(true), Some(v), _) => {
                out.push_str(&format!("mediamtx:   reachable, {v} ({})\n", m.api_url))
            }
            (Some(true), None, _) => {
                out.push_str(&format!("mediamtx:   reachable ({})\n", m.api_url))
            }
            (Some(false), _, Some(e)) => out.push_str(&format!("mediamtx:   UNREACHABLE: {e}\n")),
            _ => out.push_str(&format!("mediamtx:   not checked ({})\n", m.api_url)),
        }
    }
    for w in &s.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    if s.streams.is_empty() {
        out.push_str("no USB audio capture devices detected\n");
        return out;
    }
    out.push_str(&format!(
        "\n{:<19} {:<12} {:<9} {:>7} {:>7} {:>5} {:>7} {:>7}\n",
        "STREAM", "STATE", "HEALTH", "PID", "UPTIME", "RST", "KBIT/S", "LEVEL"
    ));
    for st in &s.streams {
        let state = match st.next_retry_s {
            Some(n) if st.state == "backoff" || st.state == "failed" => {
                format!("{} {}", st.state, secs(n))
            }
            _ => st.state.clone(),
        };
        // MediaMTX's inbound rate when the API is on (ffmpeg's RTSP muxer reports none).
        let rate = st
            .mediamtx
            .as_ref()
            .and_then(|m| m.inbound_rate_bps)
            .map(|r| r * 8.0 / 1000.0)
            .or_else(|| st.progress.as_ref().and_then(|p| p.bitrate_kbps))
            .map(|b| format!("{b:.1}"))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<19} {:<12} {:<9} {:>7} {:>7} {:>5} {:>7} {:>7}\n",
            cut(&st.name, 19),
            cut(&state, 12),
            cut(&st.health, 9),
            st.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            st.uptime_s.map(secs).unwrap_or_else(|| "-".into()),
            format!("{}/{}", st.restarts, st.consecutive_failures),
            rate,
            level_text(st.level.as_ref())
        ));
    }
    out.push('\n');
    for st in &s.streams {
        out.push_str(&format!("{}\n", st.name));
        out.push_str(&format!("  url:    {}\n", st.url));
        let d = &st.device;
        let mut dev = format!("  device: {}", st.alsa_device);
        if let Some(c) = &d.card_id {
            dev.push_str(&format!(
                " (card {} {c})",
                d.card.map(|n| n.to_string()).unwrap_or_default()
            ));
        }
        if let Some(b) = &d.by_id {
            dev.push_str(&format!(" by-id {b}"));
        }
        if let Some(p) = &d.by_path {
            dev.push_str(&format!(" port {p}"));
        }
        out.push_str(&dev);
        out.push('\n');
        if let Some(p) = &st.progress {
            // ffmpeg's RTSP muxer reports no size or bitrate; show what it does report.
            let mut parts = vec![format!(
                "out_time {}",
                p.out_time_s.map(secs).unwrap_or_else(|| "?".into())
            )];
            if let Some(x) = p.speed {
                parts.push(format!("speed {x:.2}x"));
            }
            if let Some(t) = p.total_size {
                parts.push(format!("{t} bytes out"));
            }
            if let Some(b) = p.bitrate_kbps {
                parts.push(format!("{b:.1} kbit/s"));
            }
            out.push_str(&format!("  ffmpeg: {}\n", parts.join(", ")));
        }
        if let Some(m) = &st.mediamtx {
            out.push_str(&format!(
                "  mediamtx: {}, inbound {} bytes{}, {} reader(s){}\n",
                if m.available {
                    "available"
                } else {
                    "NOT available"
                },
                m.inbound_bytes,
                m.inbound_rate_bps
                    .map(|r| format!(" ({:.1} kbit/s)", r * 8.0 / 1000.0))
                    .unwrap_or_default(),
                m.readers,
                if m.displaced {
                    ", DISPLACED by another publisher"
                } else {
                    ""
                }
            ));
        }
        if st.silent {
            out.push_str("  input is silent\n");
        }
        if !st.publishing && st.state == "running" {
            let why = st.publish_error.as_deref().unwrap_or("RTSP leg down");
            out.push_str(&format!("  NOT publishing: {why}; recording continues\n"));
        }
        if let Some(l) = &st.level {
            let db = |v: Option<f64>| v.map_or("-inf".into(), |v| format!("{v:.1}"));
            out.push_str(&format!(
                "  level:  peak {} dBFS, rms {} dBFS\n",
                db(l.peak_db),
                db(l.rms_db)
            ));
        }
        if let Some(r) = &st.recording {
            let mut line = format!(
                "  recording: {} ({} files, {} bytes",
                r.dir, r.files, r.bytes
            );
            if let (Some(o), Some(n)) = (&r.oldest, &r.newest) {
                line.push_str(&format!(", {o} .. {n}"));
            }
            if let Some(f) = r.free_bytes {
                line.push_str(&format!(", {f} bytes free on disk"));
            }
            line.push(')');
            if let Some(e) = &r.error {
                line.push_str(&format!(" ERROR: {e}"));
            }
            out.push_str(&line);
            out.push('\n');
        }
        if let Some(e) = &st.last_exit {
            let how = match (&e.signal, e.code) {
                (Some(sig), _) => sig.clone(),
                (None, Some(c)) => format!("exit {c}"),
                _ => "exit".into(),
            };
            let ago = e
                .ago_s
                .map(|a| format!(", {} ago", secs(a)))
                .unwrap_or_default();
            out.push_str(&format!("  last exit: {how}{ago}: {}\n", e.reason));
        }
        for n in &st.notes {
            out.push_str(&format!("  note: {n}\n"));
        }
        if !st.log.is_empty() {
            out.push_str(&format!("  log:    {}\n", st.log));
        }
    }
    out
}

/// Is the device of a remembered name streaming (or waiting to) under it right now?
fn name_present(snap: &Snapshot, e: &crate::sticky::Entry) -> bool {
    snap.streams.iter().any(|st| {
        st.name == e.name && st.device.by_path == e.port && st.state != "waiting-for-device"
    })
}

/// The sticky-name mapping (`paths.names_file`, read only) for `status --json`:
/// `{"file": path, "devices": [...], "warnings": [...]}`.
/// `status --json` (and the status page's `/api/status`): the snapshot plus the sticky
/// names view.
pub fn json(settings: &crate::config::Settings, snap: &Snapshot) -> serde_json::Value {
    let mut v = serde_json::to_value(snap).unwrap_or_default();
    v["names"] = names_view(settings, snap);
    v
}

pub fn names_view(settings: &crate::config::Settings, snap: &Snapshot) -> serde_json::Value {
    let path = &settings.paths.names_file;
    let (map, warnings) = crate::sticky::read_only(path);
    let devices = crate::sticky::view(&map, |e| name_present(snap, e));
    serde_json::json!({ "file": path, "devices": devices, "warnings": warnings })
}

/// The mapping for the human `status`: only when something is remembered or wrong, so a
/// box that never had a name to remember shows nothing new.
pub fn render_names(settings: &crate::config::Settings, snap: &Snapshot) -> String {
    let path = &settings.paths.names_file;
    let (map, warnings) = crate::sticky::read_only(path);
    let mut out = String::new();
    if !map.entries.is_empty() {
        let v = crate::sticky::view(&map, |e| name_present(snap, e));
        out.push_str(&crate::sticky::render_view(path, &v));
    }
    for w in warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_fit_80_columns_and_show_the_level() {
        let st = |name: &str, rms: Option<f64>| StreamStatus {
            name: name.into(),
            state: "backoff".into(),
            health: "unhealthy".into(),
            pid: Some(4_194_303),
            uptime_s: Some(86_399.0),
            restarts: 99,
            consecutive_failures: 9,
            next_retry_s: Some(299.0),
            progress: Some(ProgressView {
                bitrate_kbps: Some(1536.0),
                ..ProgressView::default()
            }),
            level: Some(LevelView {
                peak_db: Some(-20.0),
                rms_db: rms,
                at: String::new(),
            }),
            ..StreamStatus::default()
        };
        let snap = Snapshot {
            streams: vec![
                st("a_very_long_stream_name_indeed", Some(-23.01)),
                st("quiet", None),
            ],
            ..Snapshot::default()
        };
        let text = render(&snap);
        let table: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("STREAM"))
            .take(3)
            .collect();
        assert_eq!(table.len(), 3, "{text}");
        for l in &table {
            assert!(
                l.chars().count() <= 80,
                "{} columns: {l}",
                l.chars().count()
            );
        }
        assert!(table[0].ends_with("LEVEL"), "{}", table[0]);
        assert!(table[1].ends_with("-23 dB"), "{}", table[1]);
        assert!(table[2].ends_with("-inf dB"), "{}", table[2]);
        assert!(
            text.contains("level:  peak -20.0 dBFS, rms -inf dBFS"),
            "{text}"
        );
        assert_eq!(level_text(None), "-");
    }
}
