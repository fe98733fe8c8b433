//! `config [--check] [--json] [--init]`: the effective configuration and where every value
//! came from (SPEC §2, §5, §10). Credentials are shown as `***`.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::config::legacy::DeviceFile;
use crate::config::params::{Params, PartialParams};
use crate::config::Mode;
use crate::config::{fmt_duration, Settings};
use crate::exit::{Error, Exit};
use crate::sticky::{self, Names};
use crate::streams::{self, StreamSpec};
use crate::util::redact_url;

/// Print, validate or initialise the configuration.
pub fn run(settings: &Settings, check: bool, json: bool, init: bool) -> Result<Exit, Error> {
    let devices = crate::devices::discover(&settings.paths.proc_asound, &settings.paths.dev_snd);
    if init {
        return write_template(settings, &devices);
    }
    let path = &settings.paths.device_config;
    let file = DeviceFile::load(path)?;
    let names_file = &settings.paths.names_file;
    let (names, names_warnings) = Names::from_file(names_file);
    let plan = streams::plan_with_names(settings, file.as_ref(), &devices, &names)?;
    let multiplex = match settings.mode {
        Mode::Multiplex => streams::plan_multiplex(settings, file.as_ref(), &plan)?,
        Mode::Individual => None,
    };
    // The mapping as a supervisor started now would hold it.
    let mapping = sticky::view(&plan.names, |e| plan.live.entries.contains_key(&e.key()));

    let mut warnings = settings.warnings.clone();
    if let Some(f) = &file {
        warnings.extend(f.warnings.iter().cloned());
    }
    warnings.extend(names_warnings);
    warnings.extend(plan.warnings.iter().cloned());
    warnings.extend(crate::exposure::cmdline_warning(settings));
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if check {
        println!("config OK");
        return Ok(Exit::Ok);
    }

    let manager = settings_json(settings);
    let out = if json {
        let doc = json!({
            "settings": manager,
            "device_config": { "path": path, "found": file.is_some() },
            "warnings": warnings,
            "devices": plan.streams.iter().map(stream_json).collect::<Vec<_>>(),
            "multiplex": multiplex.as_ref().map(|m| json!({
                "stream": m.name,
                "url": m.display_url,
                "inputs": m.inputs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
                "settings": m.params,
            })),
            "names": { "file": names_file, "devices": mapping },
        });
        let mut s = serde_json::to_string_pretty(&doc)
            .map_err(|e| Error::general(format!("cannot render JSON: {e}")))?;
        s.push('\n');
        s
    } else {
        let mut s = String::new();
        render_settings(&mut s, settings, &manager);
        let found = if file.is_some() {
            "found"
        } else {
            "not found, using defaults"
        };
        s.push_str(&format!("\nDevice config: {} ({found})\n", path.display()));
        s.push_str(&format!("\nDevices: {} detected\n", plan.streams.len()));
        for st in &plan.streams {
            render_stream(&mut s, st);
        }
        if let Some(m) = &multiplex {
            s.push_str(&format!("\nMultiplex stream {}\n", m.name));
            s.push_str(&format!("    {:<13} {}\n", "url", m.display_url));
            let inputs: Vec<&str> = m.inputs.iter().map(|s| s.name.as_str()).collect();
            s.push_str(&format!("    {:<13} {}\n", "inputs", inputs.join(", ")));
            render_params(&mut s, &m.params);
        }
        s.push_str(&sticky::render_view(names_file, &mapping));
        s
    };
    // A closed pipe (`config | head`) is not an error worth a non-zero exit.
    let _ = std::io::stdout().write_all(out.as_bytes());
    Ok(Exit::Ok)
}

/// One device stream as `config --json` shows it.
fn stream_json(s: &StreamSpec) -> Value {
    let d = s.device.as_ref();
    json!({
        "stream": s.name,
        "by_id": d.and_then(|d| d.by_id.clone()),
        "by_path": d.and_then(|d| d.by_path.clone()),
        "card": d.map(|d| d.card),
        "card_id": d.map(|d| d.card_id.clone()),
        "usbid": d.and_then(|d| d.usbid.clone()),
        "alsa_device": s.alsa_device,
        "url": s.display_url,
        "enabled": s.enabled,
        "notes": s.notes,
        "settings": s.params,
    })
}

fn partial_json(p: &PartialParams) -> Value {
    json!({
        "sample_rate": p.sample_rate,
        "channels": p.channels,
        "bitrate": p.bitrate,
        "codec": p.codec,
        "thread_queue": p.thread_queue,
    })
}

/// Manager settings by TOML section, durations as the TOML writes them, secrets as `***`.
pub fn settings_json(s: &Settings) -> Value {
    let d = fmt_duration;
    let devices: Map<String, Value> = s
        .devices
        .iter()
        .map(|(name, o)| {
            let mut v = partial_json(&o.params);
            if let Some(m) = v.as_object_mut() {
                m.insert("stream".into(), json!(o.stream));
                m.insert("alsa_device".into(), json!(o.alsa_device));
                m.insert("enabled".into(), json!(o.enabled));
                m.insert("record".into(), json!(o.record));
            }
            (name.clone(), v)
        })
        .collect();
    json!({
        "file": s.file,
        "mode": s.mode,
        "paths": {
            "proc_asound": s.paths.proc_asound,
            "dev_snd": s.paths.dev_snd,
            "state_dir": s.paths.state_dir,
            "log_dir": s.paths.log_dir,
            "device_config": s.paths.device_config,
            "ffmpeg": s.paths.ffmpeg,
            "names_file": s.paths.names_file,
        },
        "discovery": { "rescan": d(s.discovery.rescan), "watch": s.discovery.watch },
        "mediamtx": {
            "api": s.mediamtx.api,
            "api_url": redact_url(&s.mediamtx.api_url),
            "rtsp_url": redact_url(&s.mediamtx.rtsp_url),
            "username": s.mediamtx.username,
            "password": s.mediamtx.password.as_ref().map(|_| "***"),
            "poll": d(s.mediamtx.poll),
            "timeout": d(s.mediamtx.timeout),
            "rtsp_timeout": d(s.mediamtx.rtsp_timeout),
        },
        "startup": {
            "device_wait": d(s.startup.device_wait),
            "mediamtx_wait": d(s.startup.mediamtx_wait),
            "report_timeout": d(s.startup.report_timeout),
            "require_devices": s.startup.require_devices,
        },
        "backoff": {
            "initial": d(s.backoff.initial),
            "max": d(s.backoff.max),
            "stable_after": d(s.backoff.stable_after),
            "max_failures": s.backoff.max_failures,
            "failed_retry": d(s.backoff.failed_retry),
        },
        "health": {
            "stall_timeout": d(s.health.stall_timeout),
            "start_timeout": d(s.health.start_timeout),
            "unpublished_timeout": d(s.health.unpublished_timeout),
            "silence_db": s.health.silence_db,
            "silence_for": d(s.health.silence_for),
            "levels": s.health.levels,
        },
        "stop": { "grace": d(s.stop.grace) },
        "monitor": {
            "grace": d(s.monitor.grace),
            "fd_warn": s.monitor.fd_warn,
            "fd_critical": s.monitor.fd_critical,
            "cpu_warn": s.monitor.cpu_warn,
            "cpu_critical": s.monitor.cpu_critical,
            "rss_warn_mb": s.monitor.rss_warn_mb,
            "rss_critical_mb": s.monitor.rss_critical_mb,
        },
        "defaults": partial_json(&s.defaults),
        "devices": devices,
        "multiplex": {
            "name": s.multiplex.name,
            "filter": s.multiplex.filter,
            "devices": s.multiplex.devices,
        },
        "metrics": { "textfile": s.metrics.textfile, "listen": s.metrics.listen },
        "web": {
            "enabled": s.web.enabled,
            "username": s.web.username,
            "password": s.web.password.as_ref().map(|_| "***"),
            "player_url": s.web.player_url,
        },
        "logs": { "max_size": s.logs.max_size, "keep": s.logs.keep },
        "recording": {
            "enabled": s.recording.enabled,
            "dir": s.recording.dir,
            "segment": d(s.recording.segment),
            "format": s.recording.format,
            "max_files": s.recording.max_files,
            "max_bytes": s.recording.max_bytes,
            "min_free": s.recording.min_free.show(),
        },
    })
}

/// The settings as TOML-like text (`null` values are shown as `(unset)`).
fn render_settings(out: &mut String, s: &Settings, v: &Value) {
    let from = match &s.file {
        Some(f) => f.display().to_string(),
        None => "built-in defaults".into(),
    };
    out.push_str(&format!("Manager settings ({from}):\n"));
    out.push_str(&format!("  mode = {}\n", s.mode.as_str()));
    let Some(map) = v.as_object() else { return };
    for (section, body) in map {
        let Some(fields) = body.as_object() else {
            continue;
        };
        if section == "devices" {
            for (name, dev) in fields {
                out.push_str(&format!("  [devices.\"{name}\"]\n"));
                render_fields(out, dev);
            }
            continue;
        }
        out.push_str(&format!("  [{section}]\n"));
        render_fields(out, body);
    }
}

fn render_fields(out: &mut String, v: &Value) {
    for (k, val) in v.as_object().into_iter().flatten() {
        let shown = match val {
            Value::Null => "(unset)".to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push_str(&format!("    {k} = {shown}\n"));
    }
}

fn render_stream(out: &mut String, st: &StreamSpec) {
    let mut head = format!("\n  {}", st.name);
    if let Some(d) = &st.device {
        head.push_str(&format!("  card {} ({})", d.card, d.card_id));
        if let Some(b) = &d.by_id {
            head.push_str(&format!("  by-id {b}"));
        }
    }
    out.push_str(&head);
    out.push('\n');
    let row = |out: &mut String, k: &str, v: &str| out.push_str(&format!("    {k:<13} {v}\n"));
    row(out, "url", &st.display_url);
    row(out, "alsa_device", &st.alsa_device);
    if let Some(p) = st.device.as_ref().and_then(|d| d.by_path.as_deref()) {
        row(out, "usb_port", p);
    }
    row(out, "enabled", if st.enabled { "yes" } else { "no" });
    render_params(out, &st.params);
    for n in &st.notes {
        row(out, "note", n);
    }
}

fn render_params(out: &mut String, p: &Params) {
    let rows = [
        (
            "sample_rate",
            p.sample_rate.value.to_string(),
            p.sample_rate.source,
        ),
        ("channels", p.channels.value.to_string(), p.channels.source),
        ("bitrate", p.bitrate.value.clone(), p.bitrate.source),
        ("codec", p.codec.value.to_string(), p.codec.source),
        (
            "thread_queue",
            p.thread_queue.value.to_string(),
            p.thread_queue.source,
        ),
    ];
    for (k, v, src) in rows {
        out.push_str(&format!("    {k:<13} {v:<10} ({})\n", src.as_str()));
    }
}

/// `--init`: a commented template, never over an existing file (exit 1 then).
fn write_template(settings: &Settings, devices: &[crate::devices::Device]) -> Result<Exit, Error> {
    let path = &settings.paths.device_config;
    if path.exists() {
        return Err(Error::general(format!(
            "{}: already exists; not overwriting it",
            path.display()
        )));
    }
    // Names only, so a broken TOML device table does not block writing the template.
    let (names, _) = Names::from_file(&settings.paths.names_file);
    let plan = streams::plan_with_names(settings, None, devices, &names).ok();
    let text = template(
        path,
        plan.as_ref().map(|p| p.streams.as_slice()).unwrap_or(&[]),
    );
    let io_err = |what: &str, p: &Path, e: std::io::Error| {
        Error::general(format!(
            "{}: cannot {what}: {}",
            p.display(),
            crate::util::io_reason(&e)
        ))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io_err("create directory", dir, e))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io_err("create device config", path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| io_err("write device config", path, e))?;
    println!("wrote {}", path.display());
    Ok(Exit::Ok)
}

/// The template text: every key explained, every value commented out, one block per
/// detected device under its friendly key.
pub fn template(path: &Path, streams: &[StreamSpec]) -> String {
    let mut t = format!(
        "# {} - per-device audio settings for mediamtx-stream-manager.
# Parsed, never executed: only KEY=value lines (optionally `export`, quoted values),
# comments and blank lines. Anything else is a configuration error (exit 4).
#
# Keys: DEVICE_<KEY>_<PARAM> and DEFAULT_<PARAM>, PARAM one of
#   SAMPLE_RATE   8000-384000 Hz               (built-in 48000)
#   CHANNELS      1-32                         (built-in 2)
#   BITRATE       e.g. 96k, 128000, 1M         (built-in 128k)
#   CODEC         opus, aac, mp3 or pcm        (built-in opus)
#   THREAD_QUEUE  1-1048576                    (built-in 8192)
#   ENABLED       true/false                   (built-in true)
#   STREAM_NAME   RTSP path (DEVICE_ only)     (built-in: automatic name)
#   ALSA_DEVICE   e.g. dsnoop:CARD=x (DEVICE_ only; built-in plughw:CARD=<card id>,DEV=0)
# <KEY> is the stream name (friendly key) or the /dev/snd/by-id name (full key; a card
# without a by-id link: usb-audio-<id from /proc/asound/cards>, e.g. USB_AUDIO_DEVICE1):
# characters outside A-Z a-z 0-9 become _, runs collapse, ends are trimmed, a leading
# digit gets DEV_, all uppercase. First hit wins: TOML [devices.\"<stream>\"], friendly key,
# full key, DEFAULT_*, TOML [defaults], built-in. An empty value falls through.

#DEFAULT_SAMPLE_RATE=48000
#DEFAULT_CHANNELS=2
#DEFAULT_BITRATE=128k
#DEFAULT_CODEC=opus
#DEFAULT_THREAD_QUEUE=8192
",
        path.display()
    );
    for st in streams {
        let key = crate::naming::device_key(&st.name);
        let mut head = format!("\n# Stream {}", st.name);
        if let Some(d) = &st.device {
            head.push_str(&format!(" (card {}, {}", d.card, d.card_id));
            if let Some(b) = &d.by_id {
                head.push_str(&format!(", by-id {b}"));
            } else if let Some(n) = &d.cards_name {
                head.push_str(&format!(", device {n}"));
            }
            head.push(')');
        }
        t.push_str(&head);
        t.push('\n');
        let p = &st.params;
        for (param, value) in [
            ("SAMPLE_RATE", p.sample_rate.value.to_string()),
            ("CHANNELS", p.channels.value.to_string()),
            ("BITRATE", p.bitrate.value.clone()),
            ("CODEC", p.codec.value.to_string()),
            ("THREAD_QUEUE", p.thread_queue.value.to_string()),
        ] {
            t.push_str(&format!("#DEVICE_{key}_{param}={value}\n"));
        }
        t.push_str(&format!("#DEVICE_{key}_ENABLED=true\n"));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_and_sets_nothing() {
        let s = Settings::default();
        let d = crate::devices::Device {
            card: 1,
            card_id: "MV7".into(),
            by_id: Some("usb-MV7-00".into()),
            by_path: None,
            usbid: None,
            cards_name: None,
        };
        let plan = streams::plan(&s, None, &[d]).unwrap();
        let p = Path::new("/etc/mediamtx/audio-devices.conf");
        let t = template(p, &plan.streams);
        assert!(t.contains("#DEVICE_USB_MV7_00_SAMPLE_RATE=48000\n"), "{t}");
        let f = DeviceFile::parse(p, &t).unwrap();
        assert!(f.entries.is_empty() && f.warnings.is_empty());
        // Uncommented, every line is valid and known.
        let live: String = t
            .lines()
            .filter(|l| l.starts_with("#DE"))
            .map(|l| format!("{}\n", &l[1..]))
            .collect();
        let f = DeviceFile::parse(p, &live).unwrap();
        assert_eq!(f.entries.len(), 11);
        assert!(f.warnings.is_empty());
    }

    #[test]
    fn secrets_are_masked() {
        let mut s = Settings::default();
        s.mediamtx.password = Some("hunter2".into());
        s.mediamtx.rtsp_url = "rtsp://u:pw@h:8554".into();
        let v = settings_json(&s).to_string();
        assert!(!v.contains("hunter2") && !v.contains("pw@"), "{v}");
        assert!(v.contains("\"password\":\"***\""), "{v}");
    }
}
