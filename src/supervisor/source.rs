//! Where streams come from: the host's USB devices (production) or a fixed list (demo).
//! The supervisor asks its source on every rescan and on reload.

use crate::child::ChildSpec;
use crate::cli::{Global, Mode};
use crate::config::legacy::DeviceFile;
use crate::config::Settings;
use crate::devices::{self, Device, Presence};
use crate::exit::Error;
use crate::ffmpeg::argv::{self, Extras, Input, InputSpec, Output, Silence};
use crate::recording;
use crate::status::DeviceView;
use crate::sticky::{self, Names};
use crate::streams::{self, Plan, StreamSpec};
use crate::supervisor::stream::{RecordSetup, StreamConfig};

pub trait StreamSource: Send {
    /// The streams that can run right now (present devices, enabled).
    fn scan(&mut self, settings: &Settings) -> Vec<StreamConfig>;
    /// Reread configuration (SIGHUP). `Ok(None)`: nothing to reread.
    fn reload(&mut self) -> Result<Option<Settings>, Error>;
    fn mode_label(&self, settings: &Settings) -> String;
}

/// Production: discovery + the legacy device file + TOML + sticky names.
pub struct HostSource {
    global: Global,
    file: Option<DeviceFile>,
    /// Loaded at the first scan (so a `HostSource` built by `status` never touches the
    /// file); `None` until then.
    names: Option<Names>,
    /// The remembered map differs from the file (a write failed): retry at the next scan.
    unsaved: bool,
    last_save_error: Option<String>,
    /// The file the map was read from or last written to (a reload may move it).
    saved_to: Option<std::path::PathBuf>,
}

impl HostSource {
    pub fn new(global: &Global, settings: &Settings) -> Result<HostSource, Error> {
        Ok(HostSource {
            global: global.clone(),
            file: DeviceFile::load(&settings.paths.device_config)?,
            names: None,
            unsaved: false,
            last_save_error: None,
            saved_to: None,
        })
    }

    /// Take the plan's names as the new state; write the file when the map changed.
    fn remember(&mut self, settings: &Settings, plan: &Plan) {
        let path = &settings.paths.names_file;
        let names = self.names.get_or_insert_with(Names::default);
        names.live = plan.live.clone();
        if plan.names != names.saved {
            for e in plan.names.entries.values() {
                if names.saved.entries.get(&e.key()) == Some(e) {
                    continue;
                }
                let port = e.port.as_deref().unwrap_or("no port path");
                match &e.suffix_from {
                    Some(from) => log::info!(
                        "{}: name for {} at {port} (suffix from {from}: a twin holds {})",
                        e.name,
                        e.by_id,
                        e.base
                    ),
                    None => log::info!("{}: name for {} at {port}", e.name, e.by_id),
                }
            }
            names.saved = plan.names.clone();
            self.unsaved = true;
        }
        if self.saved_to.as_deref() != Some(path.as_path()) && !names.saved.entries.is_empty() {
            self.unsaved = true; // paths.names_file changed at reload
        }
        if !self.unsaved {
            return;
        }
        match sticky::save(path, &names.saved) {
            Ok(()) => {
                self.saved_to = Some(path.clone());
                self.unsaved = false;
                self.last_save_error = None;
            }
            Err(e) => {
                let why = crate::util::io_reason(&e);
                if self.last_save_error.as_deref() != Some(&why) {
                    log::warn!(
                        "cannot write names file {}: {why} (names stay sticky until a restart)",
                        path.display()
                    );
                    self.last_save_error = Some(why);
                }
            }
        }
    }
}

pub fn device_view(d: &Device) -> DeviceView {
    DeviceView {
        by_id: d.by_id.clone(),
        card: Some(d.card),
        card_id: Some(d.card_id.clone()),
        by_path: d.by_path.clone(),
    }
}

fn silence(settings: &Settings) -> Option<Silence> {
    settings.health.silence_db.map(|db| Silence {
        db,
        duration: settings.health.silence_for,
    })
}

fn input_spec(s: &StreamSpec) -> InputSpec {
    InputSpec {
        input: Input::Alsa {
            device: s.alsa_device.clone(),
        },
        sample_rate: s.params.sample_rate.value,
        channels: s.params.channels.value,
        thread_queue: s.params.thread_queue.value,
    }
}

/// Fill the policy fields every stream shares from the settings.
pub fn stream_config(
    settings: &Settings,
    name: &str,
    child: ChildSpec,
    device: DeviceView,
    alsa_device: String,
    display_url: String,
    notes: Vec<String>,
) -> StreamConfig {
    StreamConfig {
        name: name.to_string(),
        child,
        alsa_device,
        display_url,
        notes,
        backoff: settings.backoff.clone(),
        health: settings.health.clone(),
        grace: settings.stop.grace,
        log_path: settings.paths.log_dir.join(format!("{name}.log")),
        log_max: settings.logs.max_size,
        log_keep: settings.logs.keep,
        state_dir: settings.paths.state_dir.clone(),
        recording: None,
        presence: presence(settings, device.card.zip(device.card_id.clone())),
        device,
    }
}

/// What to look at when this stream's child dies unexpectedly (SPEC §7 Unplug).
fn presence(settings: &Settings, cards: impl IntoIterator<Item = (u32, String)>) -> Presence {
    Presence {
        proc_asound: settings.paths.proc_asound.clone(),
        dev_snd: settings.paths.dev_snd.clone(),
        cards: cards.into_iter().collect(),
    }
}

/// Whether `stream` records: `[devices."<stream>"] record` over `[recording] enabled`.
fn records(settings: &Settings, stream: &str) -> bool {
    settings
        .devices
        .get(stream)
        .and_then(|d| d.record)
        .unwrap_or(settings.recording.enabled)
}

/// `user:password` of an RTSP URL, percent-decoded, for the probe's `Authorization`.
pub fn rtsp_userinfo(url: &str) -> Option<String> {
    let (_, user, _) = crate::util::split_userinfo(url)?;
    (!user.is_empty()).then(|| percent_decode(user))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `host:port` of an RTSP URL (credentials and path dropped; port 554 when absent).
pub fn rtsp_addr(url: &str) -> Option<String> {
    let rest = match crate::util::split_userinfo(url) {
        Some((_, _, rest)) => rest,
        None => url.split_once("://")?.1,
    };
    let hostport = rest.split('/').next()?;
    if hostport.is_empty() {
        return None;
    }
    let has_port = match hostport.rsplit_once(':') {
        Some((h, p)) => !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':'),
        None => false,
    };
    Some(if has_port {
        hostport.to_string()
    } else {
        format!("{hostport}:554")
    })
}

/// argv, the recording plan with its publish-only argv, a note for `status`.
type Built = (
    Vec<String>,
    Option<(recording::Plan, Vec<String>)>,
    Option<String>,
);

/// The argv with the extras settings ask for; with recording, also the fallback argv
/// (no recording leg) for when the directory cannot be written, and a note when the
/// configured format does not fit the codec.
fn build(
    settings: &Settings,
    stream: &str,
    out: &Output,
    sil: Option<&Silence>,
    make: &dyn Fn(&Extras) -> Vec<String>,
) -> Built {
    let mut x = Extras::silence(sil);
    x.levels = settings.health.levels;
    x.rtsp_timeout = Some(settings.mediamtx.rtsp_timeout);
    if !records(settings, stream) {
        return (make(&x), None, None);
    }
    let (plan, note) = recording::Plan::new(&settings.recording, stream, out.codec);
    let plain = make(&x);
    x.record = Some(plan.tee_leg());
    (make(&x), Some((plan, plain)), note)
}

fn attach(
    mut cfg: StreamConfig,
    rec: Option<(recording::Plan, Vec<String>)>,
    url: &str,
    rtsp_timeout: std::time::Duration,
) -> StreamConfig {
    if let Some((plan, plain)) = rec {
        cfg.recording = Some(RecordSetup {
            plan,
            fallback: ChildSpec {
                args: plain,
                ..cfg.child.clone()
            },
            rtsp_addr: rtsp_addr(url),
            rtsp_auth: rtsp_userinfo(url),
            probe_timeout: rtsp_timeout,
        });
    }
    cfg
}

/// The stream configs for a set of detected devices, with the names remembered in
/// `paths.names_file` (read only): what a supervisor started now would run.
pub fn configs_for(
    settings: &Settings,
    file: Option<&DeviceFile>,
    devices: &[Device],
) -> Result<Vec<StreamConfig>, Error> {
    let (names, _) = Names::from_file(&settings.paths.names_file);
    Ok(configs_with(settings, file, devices, &names)?.0)
}

/// The stream configs for a set of detected devices and name state (pure), with the plan
/// they came from.
pub fn configs_with(
    settings: &Settings,
    file: Option<&DeviceFile>,
    devices: &[Device],
    names: &Names,
) -> Result<(Vec<StreamConfig>, Plan), Error> {
    let plan = streams::plan_with_names(settings, file, devices, names)?;
    let configs = plan_configs(settings, file, &plan)?;
    Ok((configs, plan))
}

fn plan_configs(
    settings: &Settings,
    file: Option<&DeviceFile>,
    plan: &Plan,
) -> Result<Vec<StreamConfig>, Error> {
    let program = settings.paths.ffmpeg.clone();
    let sil = silence(settings);
    match settings.mode {
        Mode::Individual => Ok(plan
            .streams
            .iter()
            .filter(|s| s.enabled)
            .map(|s| {
                let out = Output {
                    codec: s.params.codec.value,
                    bitrate: s.params.bitrate.value.clone(),
                    url: s.url.clone(),
                };
                let spec = input_spec(s);
                let (args, rec, note) = build(settings, &s.name, &out, sil.as_ref(), &|x| {
                    argv::individual_with(&spec, &out, x)
                });
                let mut notes = s.notes.clone();
                notes.extend(note);
                let cfg = stream_config(
                    settings,
                    &s.name,
                    ChildSpec {
                        program: program.clone(),
                        args,
                        env: Vec::new(),
                    },
                    s.device.as_ref().map(device_view).unwrap_or_default(),
                    s.alsa_device.clone(),
                    s.display_url.clone(),
                    notes,
                );
                attach(cfg, rec, &s.url, settings.mediamtx.rtsp_timeout)
            })
            .collect()),
        Mode::Multiplex => {
            let Some(m) = streams::plan_multiplex(settings, file, plan)? else {
                return Ok(Vec::new());
            };
            let inputs: Vec<InputSpec> = m
                .inputs
                .iter()
                .filter(|s| s.enabled)
                .map(input_spec)
                .collect();
            if inputs.is_empty() {
                return Ok(Vec::new());
            }
            let out = Output {
                codec: m.params.codec.value,
                bitrate: m.params.bitrate.value.clone(),
                url: m.url.clone(),
            };
            let filter = settings.multiplex.filter;
            let (args, rec, note) = build(settings, &m.name, &out, sil.as_ref(), &|x| {
                argv::multiplex_with(&inputs, filter, &out, x)
            });
            let alsa = m
                .inputs
                .iter()
                .filter(|s| s.enabled)
                .map(|s| s.alsa_device.as_str())
                .collect::<Vec<_>>()
                .join(" + ");
            let mut notes = vec![format!(
                "multiplex ({}) of: {}",
                settings.multiplex.filter.as_str(),
                m.inputs
                    .iter()
                    .filter(|s| s.enabled)
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )];
            notes.extend(note);
            let mut cfg = stream_config(
                settings,
                &m.name,
                ChildSpec {
                    program,
                    args,
                    env: Vec::new(),
                },
                DeviceView::default(),
                alsa,
                m.display_url.clone(),
                notes,
            );
            // Any input gone ends the mix; the rescan then restarts it with those present.
            cfg.presence = presence(
                settings,
                m.inputs
                    .iter()
                    .filter(|s| s.enabled)
                    .filter_map(|s| s.device.as_ref().map(|d| (d.card, d.card_id.clone()))),
            );
            Ok(vec![attach(
                cfg,
                rec,
                &m.url,
                settings.mediamtx.rtsp_timeout,
            )])
        }
    }
}

impl StreamSource for HostSource {
    fn scan(&mut self, settings: &Settings) -> Vec<StreamConfig> {
        let devices = devices::discover(&settings.paths.proc_asound, &settings.paths.dev_snd);
        if self.names.is_none() {
            self.names = Some(Names {
                saved: sticky::load_for_supervisor(&settings.paths.names_file),
                live: Default::default(),
            });
            self.saved_to = Some(settings.paths.names_file.clone());
        }
        let names = self.names.clone().unwrap_or_default();
        match configs_with(settings, self.file.as_ref(), &devices, &names) {
            Ok((c, plan)) => {
                self.remember(settings, &plan);
                c
            }
            Err(e) => {
                log::error!("cannot plan streams: {e}");
                Vec::new()
            }
        }
    }

    fn reload(&mut self) -> Result<Option<Settings>, Error> {
        let settings = Settings::load(&self.global)?;
        let file = DeviceFile::load(&settings.paths.device_config)?;
        // Validate the whole plan before swapping anything in: a bad edit changes nothing.
        let devices = devices::discover(&settings.paths.proc_asound, &settings.paths.dev_snd);
        let names = self.names.clone().unwrap_or_default();
        configs_with(&settings, file.as_ref(), &devices, &names)?;
        for w in &settings.warnings {
            log::warn!("{w}");
        }
        self.file = file;
        Ok(Some(settings))
    }

    fn mode_label(&self, settings: &Settings) -> String {
        match settings.mode {
            Mode::Individual => "individual".into(),
            Mode::Multiplex => format!("multiplex ({})", settings.multiplex.filter.as_str()),
        }
    }
}

#[cfg(test)]
mod media_tests {
    use super::rtsp_addr;

    #[test]
    fn rtsp_addr_table() {
        let table = [
            ("rtsp://127.0.0.1:8554/mic", Some("127.0.0.1:8554")),
            ("rtsp://u:p%40w@host:8554/a/b", Some("host:8554")),
            ("rtsp://host/mic", Some("host:554")),
            ("rtsp://[::1]:8554/mic", Some("[::1]:8554")),
            ("rtsp://u:pa/ss@host:8554/mic", Some("host:8554")),
            ("nonsense", None),
        ];
        for (url, want) in table {
            assert_eq!(rtsp_addr(url).as_deref(), want, "{url}");
        }
    }

    #[test]
    fn rtsp_userinfo_table() {
        let table = [
            ("rtsp://127.0.0.1:8554/mic", None),
            ("rtsp://u:p%40w@host:8554/a/b", Some("u:p@w")),
            ("rtsp://u:pa/ss@host/mic", Some("u:pa/ss")),
            ("rtsp://@host/mic", None),
            ("rtsp://u:%zz@host/mic", Some("u:%zz")),
        ];
        for (url, want) in table {
            assert_eq!(super::rtsp_userinfo(url).as_deref(), want, "{url}");
        }
    }
}

#[cfg(test)]
mod record_override_tests {
    use crate::config::{DeviceOverride, Settings};

    #[test]
    fn per_stream_record_overrides_the_global_switch() {
        // (global enabled, override for "garden", expected for garden, expected for other)
        let table = [
            (false, None, false, false),
            (true, None, true, true),
            (true, Some(false), false, true),
            (false, Some(true), true, false),
        ];
        for (global, over, garden, other) in table {
            let mut s = Settings::default();
            s.recording.enabled = global;
            s.devices.insert(
                "garden".into(),
                DeviceOverride {
                    record: over,
                    ..DeviceOverride::default()
                },
            );
            assert_eq!(super::records(&s, "garden"), garden, "{global} {over:?}");
            assert_eq!(super::records(&s, "other"), other, "{global} {over:?}");
        }
    }
}
