//! `status`: the live snapshot from the supervisor, or what detection alone can tell.

use crate::cli::Global;
use crate::config::Settings;
use crate::control::{self, ClientError, Request};
use crate::exit::{Error, Exit};
use crate::lock::{self};
use crate::mediamtx::Client;
use crate::status::{self, MediamtxInfo, Snapshot, StreamStatus, SupervisorInfo};
use crate::supervisor::source::{self, HostSource};

use super::{live_supervisor, ANSWER};

/// Live status from the supervisor, or detection only when none answers.
pub fn gather_status(settings: &Settings, global: &Global) -> Snapshot {
    let state_dir = &settings.paths.state_dir;
    let note = match control::request(state_dir, &Request::Status, ANSWER) {
        Ok(r) => match r.status {
            Some(s) => return s,
            None => Some(
                r.error
                    .unwrap_or_else(|| "supervisor gave no status".into()),
            ),
        },
        Err(ClientError::NotRunning) => None,
        Err(e) => Some(e.to_string()),
    };
    let mut snap = detect(settings, global);
    if let Some(pid) = live_supervisor(state_dir).filter(|_| lock::is_held(state_dir)) {
        snap.supervisor.running = true;
        snap.supervisor.pid = Some(pid as u32);
    }
    snap.supervisor.note = note;
    snap
}

/// What the host and config say, without a supervisor.
pub fn detect(settings: &Settings, global: &Global) -> Snapshot {
    let mut warnings = settings.warnings.clone();
    let streams = HostSource::new(global, settings)
        .and_then(|src| {
            let devices =
                crate::devices::discover(&settings.paths.proc_asound, &settings.paths.dev_snd);
            drop(src);
            let file = crate::config::legacy::DeviceFile::load(&settings.paths.device_config)?;
            source::configs_for(settings, file.as_ref(), &devices)
        })
        .unwrap_or_else(|e| {
            warnings.push(e.to_string());
            Vec::new()
        });
    let mediamtx = if settings.mediamtx.api {
        let mut cfg = settings.mediamtx.clone();
        cfg.timeout = cfg.timeout.min(ANSWER);
        let r = Client::new(&cfg).info();
        MediamtxInfo {
            enabled: true,
            api_url: crate::util::redact_url(&settings.mediamtx.api_url),
            reachable: Some(r.is_ok()),
            version: r.as_ref().ok().and_then(|i| i.version.clone()),
            error: r.err().map(|e| e.to_string()),
        }
    } else {
        MediamtxInfo {
            enabled: false,
            api_url: crate::util::redact_url(&settings.mediamtx.api_url),
            ..Default::default()
        }
    };
    Snapshot {
        supervisor: SupervisorInfo {
            running: false,
            pid: None,
            uptime_s: None,
            mode: settings.mode.as_str().into(),
            version: env!("CARGO_PKG_VERSION").into(),
            note: None,
        },
        mediamtx,
        streams: streams
            .into_iter()
            .map(|c| StreamStatus {
                name: c.name.clone(),
                state: "stopped".into(),
                health: "unknown".into(),
                device: c.device.clone(),
                alsa_device: c.alsa_device.clone(),
                url: c.display_url.clone(),
                log: c.log_path.display().to_string(),
                notes: c.notes.clone(),
                ..StreamStatus::default()
            })
            .collect(),
        warnings,
        cpu: None,
    }
}

pub fn status(global: &Global, json: bool) -> Result<Exit, Error> {
    let settings = Settings::load(global)?;
    let snap = gather_status(&settings, global);
    if json {
        let v = status::json(&settings, &snap);
        let text = serde_json::to_string_pretty(&v).map_err(|e| Error::general(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", status::render(&snap));
        print!("{}", status::render_names(&settings, &snap));
    }
    Ok(Exit::Ok)
}
