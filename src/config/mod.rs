//! Manager settings (SPEC §10): TOML file, environment overrides, command line.
//!
//! The TOML is read by hand from a `toml::Table` rather than through serde derive so
//! that every error names the file, the dotted key and the offending value, and every
//! unknown key is a warning rather than a failure.

pub mod legacy;
pub mod params;
pub mod resolve;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{Filter, Global, Mode};
use crate::exit::Error;
use params::PartialParams;

pub const DEFAULT_CONFIG: &str = "/etc/mediamtx/stream-manager.toml";

#[derive(Debug, Clone)]
pub struct Paths {
    pub proc_asound: PathBuf,
    pub dev_snd: PathBuf,
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
    pub device_config: PathBuf,
    pub ffmpeg: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Discovery {
    pub rescan: Duration,
}

#[derive(Debug, Clone)]
pub struct Mediamtx {
    pub api: bool,
    pub api_url: String,
    pub rtsp_url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub poll: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Startup {
    pub device_wait: Duration,
    pub mediamtx_wait: Duration,
    pub report_timeout: Duration,
    pub require_devices: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub stable_after: Duration,
    pub max_failures: u32,
    pub failed_retry: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub stall_timeout: Duration,
    pub start_timeout: Duration,
    pub unpublished_timeout: Duration,
    /// Silence threshold in dB (e.g. -50); `None` turns silence detection off.
    pub silence_db: Option<f64>,
    pub silence_for: Duration,
    /// Live peak/RMS levels from the stream's own ffmpeg (astats); cheap, see docs/ffmpeg.md.
    pub levels: bool,
}

/// `[recording]`: local segments written by the stream's own ffmpeg (docs/recording.md).
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    pub enabled: bool,
    pub dir: PathBuf,
    pub segment: Duration,
    /// Container name (`ogg`, `ts`, `mp3`, ...); `None`: the codec's natural one.
    pub format: Option<String>,
    pub max_files: Option<u32>,
    pub max_bytes: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Stop {
    pub grace: Duration,
}

#[derive(Debug, Clone)]
pub struct Monitor {
    pub grace: Duration,
    pub fd_warn: u64,
    pub fd_critical: u64,
    pub cpu_warn: f64,
    pub cpu_critical: f64,
    /// RSS of one process above which monitor warns / goes critical (MiB).
    pub rss_warn_mb: u64,
    pub rss_critical_mb: u64,
}

/// A `[devices."<stream name>"]` table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceOverride {
    pub params: PartialParams,
    pub stream: Option<String>,
    pub alsa_device: Option<String>,
    pub enabled: Option<bool>,
    /// Per-stream override of `[recording] enabled`.
    pub record: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct Multiplex {
    pub name: String,
    pub filter: Filter,
    pub devices: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub textfile: Option<PathBuf>,
    pub listen: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Logs {
    pub max_size: u64,
    pub keep: u32,
}

/// The effective manager settings after file, environment and command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The TOML file that was read, if any.
    pub file: Option<PathBuf>,
    pub mode: Mode,
    pub paths: Paths,
    pub discovery: Discovery,
    pub mediamtx: Mediamtx,
    pub startup: Startup,
    pub backoff: Backoff,
    pub health: Health,
    pub stop: Stop,
    pub monitor: Monitor,
    pub defaults: PartialParams,
    pub devices: BTreeMap<String, DeviceOverride>,
    pub multiplex: Multiplex,
    pub metrics: Metrics,
    pub logs: Logs,
    pub recording: Recording,
    /// Unknown keys seen while reading the file (printed as warnings).
    pub warnings: Vec<String>,
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            file: None,
            mode: Mode::Individual,
            paths: Paths {
                proc_asound: "/proc/asound".into(),
                dev_snd: "/dev/snd".into(),
                state_dir: "/run/mediamtx-audio".into(),
                log_dir: "/var/log/mediamtx-audio".into(),
                device_config: "/etc/mediamtx/audio-devices.conf".into(),
                ffmpeg: "ffmpeg".into(),
            },
            discovery: Discovery { rescan: secs(2) },
            mediamtx: Mediamtx {
                api: true,
                api_url: "http://127.0.0.1:9997".into(),
                rtsp_url: "rtsp://127.0.0.1:8554".into(),
                username: None,
                password: None,
                poll: secs(5),
                timeout: secs(6),
            },
            startup: Startup {
                device_wait: secs(30),
                mediamtx_wait: secs(30),
                report_timeout: secs(30),
                require_devices: true,
            },
            backoff: Backoff {
                initial: secs(10),
                max: secs(300),
                stable_after: secs(300),
                max_failures: 50,
                failed_retry: secs(600),
            },
            health: Health {
                stall_timeout: secs(15),
                start_timeout: secs(20),
                unpublished_timeout: secs(30),
                silence_db: None,
                silence_for: secs(60),
                levels: true,
            },
            stop: Stop { grace: secs(5) },
            monitor: Monitor {
                grace: secs(60),
                fd_warn: 500,
                fd_critical: 1000,
                cpu_warn: 20.0,
                cpu_critical: 40.0,
                rss_warn_mb: 256,
                rss_critical_mb: 1024,
            },
            defaults: PartialParams::default(),
            devices: BTreeMap::new(),
            multiplex: Multiplex {
                name: "all_mics".into(),
                filter: Filter::Amix,
                devices: None,
            },
            metrics: Metrics::default(),
            logs: Logs {
                max_size: 10 * 1024 * 1024,
                keep: 3,
            },
            recording: Recording {
                enabled: false,
                dir: "/var/lib/mediamtx-stream-manager/recordings".into(),
                segment: secs(300),
                format: None,
                max_files: None,
                max_bytes: None,
            },
            warnings: Vec::new(),
        }
    }
}

/// Parse `"250ms"`, `"10s"`, `"5m"`, `"1h"`, `"1.5s"`; a bare `0` is zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("invalid duration {s:?} (needs a unit: ms, s, m, h)"))?;
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (expected e.g. 250ms, 10s, 5m)"))?;
    let mult = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "invalid duration {s:?} (unit must be ms, s, m or h)"
            ))
        }
    };
    let secs = n * mult;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("invalid duration {s:?} (out of range)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Render a duration the way the config writes it (`250ms`, `10s`, `5m`).
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".into()
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Parse a size like `10M`, `512k`, `1G` or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?} (expected e.g. 10M, 512k)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        _ => return Err(format!("invalid size {s:?} (unit must be k, M or G)")),
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("invalid size {s:?}"))
}

/// Reads typed values out of one TOML table, naming `file: key = value` on error.
struct Reader<'a> {
    file: &'a Path,
    prefix: String,
    table: &'a toml::Table,
    known: &'static [&'static str],
}

impl<'a> Reader<'a> {
    fn err(&self, key: &str, value: &toml::Value, why: &str) -> Error {
        Error::config(format!(
            "{}: {}{} = {}: {}",
            self.file.display(),
            self.prefix,
            key,
            value,
            why
        ))
    }

    fn unknown(&self, warnings: &mut Vec<String>) {
        for k in self.table.keys() {
            if !self.known.contains(&k.as_str()) {
                warnings.push(format!(
                    "{}: unknown key {}{} (ignored)",
                    self.file.display(),
                    self.prefix,
                    k
                ));
            }
        }
    }

    fn str(&self, key: &str) -> Result<Option<String>, Error> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.err(key, v, "expected a string")),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, Error> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(*b)),
            Some(v) => Err(self.err(key, v, "expected true or false")),
        }
    }

    fn path(&self, key: &str) -> Result<Option<PathBuf>, Error> {
        match self.str(key)? {
            Some(s) if s.is_empty() => {
                Err(self.err(key, &toml::Value::String(s), "expected a non-empty path"))
            }
            other => Ok(other.map(PathBuf::from)),
        }
    }

    fn duration(&self, key: &str) -> Result<Option<Duration>, Error> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => parse_duration(s)
                .map(Some)
                .map_err(|e| self.err(key, &toml::Value::String(s.clone()), &e)),
            Some(v) => Err(self.err(
                key,
                v,
                "expected a duration string with a unit, e.g. \"10s\"",
            )),
        }
    }

    fn uint(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>, Error> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) if *n >= min as i64 && (*n as u64) <= max => {
                Ok(Some(*n as u64))
            }
            Some(v) => Err(self.err(key, v, &format!("expected an integer {min}-{max}"))),
        }
    }

    fn float(&self, key: &str, min: f64, max: f64) -> Result<Option<f64>, Error> {
        let v = match self.table.get(key) {
            None => return Ok(None),
            Some(v) => v,
        };
        let f = match v {
            toml::Value::Integer(n) => *n as f64,
            toml::Value::Float(f) => *f,
            _ => return Err(self.err(key, v, "expected a number")),
        };
        if f.is_finite() && (min..=max).contains(&f) {
            Ok(Some(f))
        } else {
            Err(self.err(key, v, &format!("expected a number {min}-{max}")))
        }
    }

    fn size(&self, key: &str) -> Result<Option<u64>, Error> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) if *n > 0 => Ok(Some(*n as u64)),
            Some(toml::Value::String(s)) => parse_size(s)
                .map(Some)
                .map_err(|e| self.err(key, &toml::Value::String(s.clone()), &e)),
            Some(v) => Err(self.err(key, v, "expected a size like \"10M\"")),
        }
    }

    /// A device parameter: string or integer in TOML, validated like the legacy file.
    fn param<T>(
        &self,
        key: &str,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, Error> {
        let v = match self.table.get(key) {
            None => return Ok(None),
            Some(v) => v,
        };
        let s = match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(n) => n.to_string(),
            _ => return Err(self.err(key, v, "expected a string or integer")),
        };
        if s.trim().is_empty() {
            return Ok(None);
        }
        parse(&s).map(Some).map_err(|e| self.err(key, v, &e))
    }

    fn params(&self) -> Result<PartialParams, Error> {
        Ok(PartialParams {
            sample_rate: self.param("sample_rate", params::parse_sample_rate)?,
            channels: self.param("channels", params::parse_channels)?,
            bitrate: self.param("bitrate", params::parse_bitrate)?,
            codec: self.param("codec", params::parse_codec)?,
            thread_queue: self.param("thread_queue", params::parse_thread_queue)?,
        })
    }
}

const PARAM_KEYS: [&str; 5] = [
    "sample_rate",
    "channels",
    "bitrate",
    "codec",
    "thread_queue",
];
const DEVICE_KEYS: [&str; 9] = [
    "sample_rate",
    "channels",
    "bitrate",
    "codec",
    "thread_queue",
    "stream",
    "alsa_device",
    "enabled",
    "record",
];

fn section<'a>(
    file: &'a Path,
    root: &'a toml::Table,
    name: &str,
    known: &'static [&'static str],
) -> Result<Option<Reader<'a>>, Error> {
    match root.get(name) {
        None => Ok(None),
        Some(toml::Value::Table(t)) => Ok(Some(Reader {
            file,
            prefix: format!("{name}."),
            table: t,
            known,
        })),
        Some(v) => Err(Error::config(format!(
            "{}: {} = {}: expected a table [{}]",
            file.display(),
            name,
            v,
            name
        ))),
    }
}

macro_rules! set {
    ($target:expr, $value:expr) => {
        if let Some(v) = $value {
            $target = v;
        }
    };
}

impl Settings {
    /// Load the TOML (explicit path must exist; the default path may be missing),
    /// then apply environment and command-line overrides.
    pub fn load(global: &Global) -> Result<Settings, Error> {
        let (path, explicit) = match &global.config {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(DEFAULT_CONFIG), false),
        };
        let mut s = match std::fs::read_to_string(&path) {
            Ok(text) => Settings::from_toml(&path, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Settings::default(),
            Err(e) => {
                return Err(Error::config(format!(
                    "{}: cannot read config file: {}",
                    path.display(),
                    crate::util::io_reason(&e)
                )))
            }
        };
        s.apply_env_and_cli(global, &|k| std::env::var(k).ok())?;
        Ok(s)
    }

    /// Parse one TOML document on top of the built-in defaults.
    pub fn from_toml(file: &Path, text: &str) -> Result<Settings, Error> {
        let root: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let msg = e.message().to_string();
            let line = e
                .span()
                .map(|sp| text[..sp.start.min(text.len())].matches('\n').count() + 1);
            match line {
                Some(l) => {
                    Error::config(format!("{}:{}: invalid TOML: {}", file.display(), l, msg))
                }
                None => Error::config(format!("{}: invalid TOML: {}", file.display(), msg)),
            }
        })?;
        let mut s = Settings {
            file: Some(file.to_path_buf()),
            ..Settings::default()
        };
        let w = &mut s.warnings;

        const TOP: &[&str] = &[
            "mode",
            "paths",
            "discovery",
            "mediamtx",
            "startup",
            "backoff",
            "health",
            "stop",
            "monitor",
            "defaults",
            "devices",
            "multiplex",
            "metrics",
            "logs",
            "recording",
        ];
        let top = Reader {
            file,
            prefix: String::new(),
            table: &root,
            known: TOP,
        };
        top.unknown(w);
        if let Some(m) = top.str("mode")? {
            s.mode =
                parse_mode(&m).map_err(|e| top.err("mode", &toml::Value::String(m.clone()), &e))?;
        }

        if let Some(r) = section(
            file,
            &root,
            "paths",
            &[
                "proc_asound",
                "dev_snd",
                "state_dir",
                "log_dir",
                "device_config",
                "ffmpeg",
            ],
        )? {
            r.unknown(w);
            set!(s.paths.proc_asound, r.path("proc_asound")?);
            set!(s.paths.dev_snd, r.path("dev_snd")?);
            set!(s.paths.state_dir, r.path("state_dir")?);
            set!(s.paths.log_dir, r.path("log_dir")?);
            set!(s.paths.device_config, r.path("device_config")?);
            set!(s.paths.ffmpeg, r.path("ffmpeg")?);
        }
        if let Some(r) = section(file, &root, "discovery", &["rescan"])? {
            r.unknown(w);
            set!(s.discovery.rescan, r.duration("rescan")?);
        }
        if let Some(r) = section(
            file,
            &root,
            "mediamtx",
            &[
                "api", "api_url", "rtsp_url", "username", "password", "poll", "timeout",
            ],
        )? {
            r.unknown(w);
            set!(s.mediamtx.api, r.bool("api")?);
            set!(s.mediamtx.api_url, r.str("api_url")?);
            set!(s.mediamtx.rtsp_url, r.str("rtsp_url")?);
            s.mediamtx.username = r.str("username")?.filter(|u| !u.is_empty());
            s.mediamtx.password = r.str("password")?;
            set!(s.mediamtx.poll, r.duration("poll")?);
            set!(s.mediamtx.timeout, r.duration("timeout")?);
            for key in ["api_url", "rtsp_url"] {
                if let Some(u) = r.str(key)? {
                    check_url(&u, key == "api_url").map_err(|e| {
                        r.err(key, &toml::Value::String(crate::util::redact_url(&u)), &e)
                    })?;
                }
            }
        }
        if let Some(r) = section(
            file,
            &root,
            "startup",
            &[
                "device_wait",
                "mediamtx_wait",
                "report_timeout",
                "require_devices",
            ],
        )? {
            r.unknown(w);
            set!(s.startup.device_wait, r.duration("device_wait")?);
            set!(s.startup.mediamtx_wait, r.duration("mediamtx_wait")?);
            set!(s.startup.report_timeout, r.duration("report_timeout")?);
            set!(s.startup.require_devices, r.bool("require_devices")?);
        }
        if let Some(r) = section(
            file,
            &root,
            "backoff",
            &[
                "initial",
                "max",
                "stable_after",
                "max_failures",
                "failed_retry",
            ],
        )? {
            r.unknown(w);
            set!(s.backoff.initial, r.duration("initial")?);
            set!(s.backoff.max, r.duration("max")?);
            set!(s.backoff.stable_after, r.duration("stable_after")?);
            set!(
                s.backoff.max_failures,
                r.uint("max_failures", 1, 1_000_000)?.map(|n| n as u32)
            );
            set!(s.backoff.failed_retry, r.duration("failed_retry")?);
        }
        if let Some(r) = section(
            file,
            &root,
            "health",
            &[
                "stall_timeout",
                "start_timeout",
                "unpublished_timeout",
                "silence_db",
                "silence_for",
                "levels",
            ],
        )? {
            r.unknown(w);
            set!(s.health.stall_timeout, r.duration("stall_timeout")?);
            set!(s.health.start_timeout, r.duration("start_timeout")?);
            set!(
                s.health.unpublished_timeout,
                r.duration("unpublished_timeout")?
            );
            if let Some(db) = r.float("silence_db", -200.0, 0.0)? {
                s.health.silence_db = Some(db);
            }
            set!(s.health.silence_for, r.duration("silence_for")?);
            set!(s.health.levels, r.bool("levels")?);
        }
        if let Some(r) = section(file, &root, "stop", &["grace"])? {
            r.unknown(w);
            set!(s.stop.grace, r.duration("grace")?);
        }
        if let Some(r) = section(
            file,
            &root,
            "monitor",
            &[
                "grace",
                "fd_warn",
                "fd_critical",
                "cpu_warn",
                "cpu_critical",
                "rss_warn_mb",
                "rss_critical_mb",
            ],
        )? {
            r.unknown(w);
            set!(s.monitor.grace, r.duration("grace")?);
            set!(s.monitor.fd_warn, r.uint("fd_warn", 1, u32::MAX as u64)?);
            set!(
                s.monitor.fd_critical,
                r.uint("fd_critical", 1, u32::MAX as u64)?
            );
            set!(s.monitor.cpu_warn, r.float("cpu_warn", 0.0, 10000.0)?);
            set!(
                s.monitor.cpu_critical,
                r.float("cpu_critical", 0.0, 10000.0)?
            );
            set!(s.monitor.rss_warn_mb, r.uint("rss_warn_mb", 1, 1 << 30)?);
            set!(
                s.monitor.rss_critical_mb,
                r.uint("rss_critical_mb", 1, 1 << 30)?
            );
        }
        if let Some(r) = section(file, &root, "defaults", &PARAM_KEYS)? {
            r.unknown(w);
            s.defaults = r.params()?;
        }
        if let Some(devs) = section(file, &root, "devices", &[])? {
            for (name, v) in devs.table {
                let t = match v {
                    toml::Value::Table(t) => t,
                    other => {
                        return Err(devs.err(
                            name,
                            other,
                            "expected a table [devices.\"<stream name>\"]",
                        ))
                    }
                };
                let r = Reader {
                    file,
                    prefix: format!("devices.\"{name}\"."),
                    table: t,
                    known: &DEVICE_KEYS,
                };
                r.unknown(w);
                let stream = r.str("stream")?.filter(|x| !x.trim().is_empty());
                if let Some(st) = &stream {
                    if crate::naming::sanitize(st).is_empty() {
                        return Err(r.err(
                            "stream",
                            &toml::Value::String(st.clone()),
                            "stream name has no usable characters",
                        ));
                    }
                }
                let d = DeviceOverride {
                    params: r.params()?,
                    stream,
                    alsa_device: r.str("alsa_device")?.filter(|x| !x.trim().is_empty()),
                    enabled: r.bool("enabled")?,
                    record: r.bool("record")?,
                };
                s.devices.insert(name.clone(), d);
            }
        }
        if let Some(r) = section(file, &root, "multiplex", &["name", "filter", "devices"])? {
            r.unknown(w);
            set!(s.multiplex.name, r.str("name")?);
            if let Some(f) = r.str("filter")? {
                s.multiplex.filter = parse_filter(&f)
                    .map_err(|e| r.err("filter", &toml::Value::String(f.clone()), &e))?;
            }
            if let Some(v) = r.table.get("devices") {
                let list = v.as_array().and_then(|a| {
                    a.iter()
                        .map(|x| x.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                });
                match list {
                    Some(l) => s.multiplex.devices = Some(l),
                    None => return Err(r.err("devices", v, "expected a list of stream names")),
                }
            }
        }
        if let Some(r) = section(file, &root, "metrics", &["textfile", "listen"])? {
            r.unknown(w);
            s.metrics.textfile = r.path("textfile")?;
            s.metrics.listen = r.str("listen")?.filter(|x| !x.is_empty());
            if let Some(l) = &s.metrics.listen {
                if l.parse::<std::net::SocketAddr>().is_err() {
                    return Err(r.err(
                        "listen",
                        &toml::Value::String(l.clone()),
                        "expected host:port, e.g. 127.0.0.1:9899",
                    ));
                }
            }
        }
        if let Some(r) = section(file, &root, "logs", &["max_size", "keep"])? {
            r.unknown(w);
            set!(s.logs.max_size, r.size("max_size")?);
            set!(s.logs.keep, r.uint("keep", 1, 100)?.map(|n| n as u32));
        }
        if let Some(r) = section(
            file,
            &root,
            "recording",
            &[
                "enabled",
                "dir",
                "segment",
                "format",
                "max_files",
                "max_bytes",
            ],
        )? {
            r.unknown(w);
            set!(s.recording.enabled, r.bool("enabled")?);
            set!(s.recording.dir, r.path("dir")?);
            if let Some(d) = r.duration("segment")? {
                if d < Duration::from_secs(1) {
                    let v = toml::Value::String(fmt_duration(d));
                    return Err(r.err("segment", &v, "expected at least 1s"));
                }
                s.recording.segment = d;
            }
            if let Some(f) = r.str("format")? {
                if crate::recording::container(&f).is_none() {
                    let v = toml::Value::String(f.clone());
                    let known = crate::recording::FORMATS.join(", ");
                    return Err(r.err("format", &v, &format!("expected one of {known}")));
                }
                s.recording.format = Some(f);
            }
            if let Some(n) = r.uint("max_files", 1, u32::MAX as u64)? {
                s.recording.max_files = Some(n as u32);
            }
            if let Some(n) = r.size("max_bytes")? {
                s.recording.max_bytes = Some(n);
            }
        }
        Ok(s)
    }

    /// Environment (as the bash tool read it) then command line, each over the file.
    pub fn apply_env_and_cli(
        &mut self,
        global: &Global,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), Error> {
        // clap already folds STREAM_MODE etc. into `global` (flag beats env var).
        if let Some(m) = global.mode {
            self.mode = m;
        }
        if let Some(f) = global.filter {
            self.multiplex.filter = f;
        }
        if let Some(n) = &global.name {
            self.multiplex.name = n.clone();
        }
        if crate::naming::sanitize(&self.multiplex.name).is_empty() {
            return Err(Error::config(format!(
                "multiplex name {:?} has no usable characters",
                self.multiplex.name
            )));
        }
        if let Some(host) = env("MEDIAMTX_HOST").filter(|h| !h.trim().is_empty()) {
            let host = host.trim();
            if host.contains(['/', ' ', '@']) {
                return Err(Error::config(format!(
                    "MEDIAMTX_HOST = {host:?}: expected a host name or address"
                )));
            }
            self.mediamtx.rtsp_url = replace_host(&self.mediamtx.rtsp_url, host);
            self.mediamtx.api_url = replace_host(&self.mediamtx.api_url, host);
        }
        Ok(())
    }

    /// The TOML override for one stream name, if any.
    pub fn device(&self, stream: &str) -> Option<&DeviceOverride> {
        self.devices.get(stream)
    }
}

pub fn parse_mode(s: &str) -> Result<Mode, String> {
    match s {
        "individual" => Ok(Mode::Individual),
        "multiplex" => Ok(Mode::Multiplex),
        _ => Err("expected individual or multiplex".into()),
    }
}

pub fn parse_filter(s: &str) -> Result<Filter, String> {
    match s {
        "amix" => Ok(Filter::Amix),
        "amerge" => Ok(Filter::Amerge),
        _ => Err("expected amix or amerge".into()),
    }
}

fn check_url(u: &str, http: bool) -> Result<(), String> {
    let scheme = if http { "http://" } else { "rtsp://" };
    let rest = u
        .strip_prefix(scheme)
        .or_else(|| {
            if http {
                u.strip_prefix("https://")
            } else {
                u.strip_prefix("rtsps://")
            }
        })
        .ok_or_else(|| format!("expected a URL starting with {scheme}"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err("URL has no host".into());
    }
    Ok(())
}

/// Swap the host of `scheme://[user@]host[:port][/path]`, keeping everything else.
fn replace_host(url: &str, host: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, hostport_path) = match rest.rsplit_once('@') {
        Some((a, r)) => (format!("{a}@"), r),
        None => (String::new(), rest),
    };
    let (hostport, path) = match hostport_path.find('/') {
        Some(i) => hostport_path.split_at(i),
        None => (hostport_path, ""),
    };
    let port = if hostport.starts_with('[') {
        hostport
            .find("]:")
            .map(|i| &hostport[i + 1..])
            .unwrap_or("")
    } else {
        hostport.rfind(':').map(|i| &hostport[i..]).unwrap_or("")
    };
    format!("{scheme}://{auth}{host}{port}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use params::Codec;

    #[test]
    fn durations() {
        let table = [
            ("250ms", 250),
            ("10s", 10_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1.5s", 1500),
            ("0", 0),
            ("0s", 0),
        ];
        for (s, ms) in table {
            assert_eq!(parse_duration(s).unwrap(), Duration::from_millis(ms), "{s}");
        }
        for bad in ["", "10", "s", "10x", "-1s", "1e400s", "ten s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_duration(Duration::from_secs(300)), "5m");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10M").unwrap(), 10 << 20);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("10X").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn toml_errors_name_file_key_value() {
        let p = Path::new("/etc/x.toml");
        let e = Settings::from_toml(p, "[backoff]\ninitial = 10\n").unwrap_err();
        assert_eq!(e.exit, crate::exit::Exit::Config);
        assert!(
            e.message.contains("/etc/x.toml")
                && e.message.contains("backoff.initial")
                && e.message.contains("10"),
            "{}",
            e.message
        );
        let e = Settings::from_toml(p, "[defaults]\ncodec = \"flac\"\n").unwrap_err();
        assert!(
            e.message.contains("defaults.codec") && e.message.contains("flac"),
            "{}",
            e.message
        );
        let e = Settings::from_toml(p, "[paths\n").unwrap_err();
        assert!(e.message.starts_with("/etc/x.toml:1:"), "{}", e.message);
        let e = Settings::from_toml(p, "[devices.\"a\"]\nsample_rate = 7\n").unwrap_err();
        assert!(
            e.message.contains("devices.\"a\".sample_rate = 7"),
            "{}",
            e.message
        );
    }

    #[test]
    fn toml_unknown_keys_warn() {
        let s = Settings::from_toml(
            Path::new("f.toml"),
            "bogus = 1\n[backoff]\ninitail = \"1s\"\n",
        )
        .unwrap();
        assert_eq!(s.warnings.len(), 2);
        assert!(s.warnings[1].contains("backoff.initail"));
    }

    #[test]
    fn toml_values() {
        let s = Settings::from_toml(
            Path::new("f.toml"),
            "mode = \"multiplex\"\n[backoff]\ninitial = \"50ms\"\nmax_failures = 3\n[defaults]\nsample_rate = 44100\ncodec = \"aac\"\n[devices.mic]\nstream = \"garden\"\nenabled = false\n[logs]\nmax_size = \"1M\"\n",
        )
        .unwrap();
        assert_eq!(s.mode, Mode::Multiplex);
        assert_eq!(s.backoff.initial, Duration::from_millis(50));
        assert_eq!(s.backoff.max_failures, 3);
        assert_eq!(s.defaults.sample_rate, Some(44100));
        assert_eq!(s.defaults.codec, Some(Codec::Aac));
        assert_eq!(s.devices["mic"].stream.as_deref(), Some("garden"));
        assert_eq!(s.devices["mic"].enabled, Some(false));
        assert_eq!(s.logs.max_size, 1 << 20);
    }

    #[test]
    fn env_host_override() {
        let mut s = Settings::default();
        let g = Global::default();
        s.apply_env_and_cli(&g, &|k| {
            (k == "MEDIAMTX_HOST").then(|| "10.0.0.5".to_string())
        })
        .unwrap();
        assert_eq!(s.mediamtx.rtsp_url, "rtsp://10.0.0.5:8554");
        assert_eq!(s.mediamtx.api_url, "http://10.0.0.5:9997");
        assert_eq!(
            replace_host("rtsp://u:p@old:1/x", "new"),
            "rtsp://u:p@new:1/x"
        );
    }
}
