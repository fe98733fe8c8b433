//! Manager settings (SPEC §10): TOML file, environment overrides, command line.
//!
//! `schema` is the file as serde reads it (every value spanned), `load` turns it into
//! `Settings` with checks, `errors` makes every error one line naming file:line:col, key and
//! value. This module holds the settings types, their defaults and the overrides.
//! The command line fills `Overrides`; this module never looks at `cli`.

mod errors;
pub mod legacy;
mod load;
pub mod params;
pub mod resolve;
mod schema;
mod units;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::exit::Error;
use params::PartialParams;
pub use units::{fmt_duration, parse_duration, parse_size};

pub const DEFAULT_CONFIG: &str = "/etc/mediamtx/stream-manager.toml";

#[derive(Debug, Clone)]
pub struct Paths {
    pub proc_asound: PathBuf,
    pub dev_snd: PathBuf,
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
    pub device_config: PathBuf,
    pub ffmpeg: PathBuf,
    /// Sticky stream-name assignments (twin microphones keep their names).
    pub names_file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Discovery {
    pub rescan: Duration,
    /// inotify on `dev_snd` for immediate hot-plug (the rescan still runs).
    pub watch: bool,
}

/// `Debug` is written by hand: a `{:?}` of the settings (a log line, a panic message)
/// must never print the password or a URL's userinfo.
#[derive(Clone, PartialEq)]
pub struct Mediamtx {
    pub api: bool,
    pub api_url: String,
    pub rtsp_url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub poll: Duration,
    pub timeout: Duration,
    /// Bound on every wait on the RTSP server: ffmpeg's connect, each handshake reply and
    /// each write (`-timeout`), and the reconnect probe (docs/recording.md).
    pub rtsp_timeout: Duration,
}

impl std::fmt::Debug for Mediamtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hide = |v: &Option<String>| v.as_ref().map(|_| "***");
        f.debug_struct("Mediamtx")
            .field("api", &self.api)
            .field("api_url", &crate::util::redact_url(&self.api_url))
            .field("rtsp_url", &crate::util::redact_url(&self.rtsp_url))
            .field("username", &hide(&self.username))
            .field("password", &hide(&self.password))
            .field("poll", &self.poll)
            .field("timeout", &self.timeout)
            .finish()
    }
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
    /// Live audio levels from ffmpeg.
    pub levels: bool,
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
    /// Record this stream (over `recording.enabled`).
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

/// `[web]`: the read-only status page on `metrics.listen` (docs/web.md). `Debug` is
/// written by hand so that no log line or panic message can print the password.
#[derive(Clone, Default, PartialEq)]
pub struct Web {
    pub enabled: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    /// A "listen" link per stream; `{stream}` and `{host}` are filled in by the page.
    pub player_url: Option<String>,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hide = |v: &Option<String>| v.as_ref().map(|_| "***");
        f.debug_struct("Web")
            .field("enabled", &self.enabled)
            .field("username", &hide(&self.username))
            .field("password", &hide(&self.password))
            .field("player_url", &self.player_url)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct Logs {
    pub max_size: u64,
    pub keep: u32,
}

/// The `[recording] format` values accepted: the containers `recording::container` can
/// write (config owns the list so that it depends on nothing downstream).
pub const RECORDING_FORMATS: &[&str] = &["ogg", "ts", "m4a", "mp3", "aiff", "mkv"];

/// `[recording]`: segments of every stream written to disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    pub enabled: bool,
    pub dir: PathBuf,
    pub segment: Duration,
    /// Container (ffmpeg muxer); `None` is the codec's natural one.
    pub format: Option<String>,
    pub max_files: Option<u32>,
    /// Total size kept per stream, bytes.
    pub max_bytes: Option<u64>,
    /// Free space the ring keeps on the recording filesystem (docs/recording.md).
    pub min_free: MinFree,
}

/// `[recording] min_free`: the free space each stream's ring keeps on the recording
/// filesystem by deleting its own oldest finished segments; a size or a percentage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinFree {
    Bytes(u64),
    /// Percent of the filesystem's size (above 0, at most 50).
    Percent(f64),
}

impl MinFree {
    /// The floor in bytes on a filesystem of `fs_bytes`.
    pub fn bytes(self, fs_bytes: u64) -> u64 {
        match self {
            MinFree::Bytes(b) => b,
            MinFree::Percent(p) => (fs_bytes as f64 * p / 100.0).ceil() as u64,
        }
    }

    /// As the config writes it: `5%`, `640K`, `100M`, or a number of bytes.
    pub fn show(self) -> String {
        match self {
            MinFree::Bytes(b) => {
                let units = [(30, "G"), (20, "M"), (10, "K")];
                match units.iter().find(|(sh, _)| b % (1u64 << sh) == 0) {
                    Some((sh, u)) => format!("{}{u}", b >> sh),
                    None => b.to_string(),
                }
            }
            MinFree::Percent(p) => format!("{p}%"),
        }
    }
}

/// Streaming mode (`mode`, `-m`, `STREAM_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Individual,
    Multiplex,
}

/// Multiplex filter (`multiplex.filter`, `-f`, `MULTIPLEX_FILTER_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    Amix,
    Amerge,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Individual, Mode::Multiplex];
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Individual => "individual",
            Mode::Multiplex => "multiplex",
        }
    }
}

impl Filter {
    pub const ALL: [Filter; 2] = [Filter::Amix, Filter::Amerge];
    pub fn as_str(self) -> &'static str {
        match self {
            Filter::Amix => "amix",
            Filter::Amerge => "amerge",
        }
    }
}

/// What the command line (with its environment variables) sets over the file. The CLI
/// fills it; `Settings::load` takes anything that converts into it (e.g. `&cli::Global`).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub mode: Option<Mode>,
    pub filter: Option<Filter>,
    pub name: Option<String>,
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
    pub web: Web,
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
                names_file: "/var/lib/mediamtx-stream-manager/names.json".into(),
            },
            discovery: Discovery {
                rescan: secs(2),
                watch: true,
            },
            mediamtx: Mediamtx {
                api: true,
                api_url: "http://127.0.0.1:9997".into(),
                rtsp_url: "rtsp://127.0.0.1:8554".into(),
                username: None,
                password: None,
                poll: secs(5),
                timeout: secs(6),
                rtsp_timeout: secs(5),
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
            web: Web::default(),
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
                min_free: MinFree::Percent(5.0),
            },
            warnings: Vec::new(),
        }
    }
}

impl Settings {
    /// Load the TOML (explicit path must exist; the default path may be missing),
    /// then apply environment and command-line overrides.
    pub fn load(over: impl Into<Overrides>) -> Result<Settings, Error> {
        let over = over.into();
        let (path, explicit) = match &over.config {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(DEFAULT_CONFIG), false),
        };
        let mut s = match std::fs::read(&path) {
            Ok(bytes) => Settings::from_bytes(&path, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Settings::default(),
            Err(e) => {
                return Err(Error::config(format!(
                    "{}: cannot read config file: {}",
                    path.display(),
                    crate::util::io_reason(&e)
                )))
            }
        };
        s.apply_env_and_cli(&over, &|k| std::env::var(k).ok())?;
        Ok(s)
    }

    /// Parse one TOML document on top of the built-in defaults.
    pub fn from_toml(file: &Path, text: &str) -> Result<Settings, Error> {
        load::from_toml(file, text)
    }

    /// As `from_toml`, from the file's bytes (non-UTF-8 names the line of the first bad byte).
    pub fn from_bytes(file: &Path, bytes: &[u8]) -> Result<Settings, Error> {
        load::from_bytes(file, bytes)
    }

    /// Environment (as the bash tool read it) then command line, each over the file.
    pub fn apply_env_and_cli(
        &mut self,
        over: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), Error> {
        // clap already folds STREAM_MODE etc. into the overrides (flag beats env var).
        if let Some(m) = over.mode {
            self.mode = m;
        }
        if let Some(f) = over.filter {
            self.multiplex.filter = f;
        }
        if let Some(n) = &over.name {
            if crate::naming::sanitize(n).is_empty() {
                return Err(Error::config(format!(
                    "-n/MULTIPLEX_STREAM_NAME = {:?}: multiplex name has no usable characters",
                    errors::clip(n, errors::MAX_VALUE)
                )));
            }
            self.multiplex.name = n.clone();
        }
        if let Some(host) = env("MEDIAMTX_HOST").filter(|h| !h.trim().is_empty()) {
            let host = host.trim();
            if host.contains(['/', ' ', '@']) {
                return Err(Error::config(format!(
                    "MEDIAMTX_HOST = {:?}: expected a host name or address",
                    errors::clip(host, errors::MAX_VALUE)
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
    fn debug_never_prints_credentials() {
        let p = Path::new("/etc/x.toml");
        let s = Settings::from_toml(
            p,
            "[mediamtx]\nrtsp_url = \"rtsp://pub:se/cret1@h:8554\"\napi_url = \"http://a:apisecret2@h:9997\"\nusername = \"userword3\"\npassword = \"password4\"\n",
        )
        .unwrap();
        let text = format!("{:?} {:#?}", s.mediamtx, s);
        for secret in ["cret1", "apisecret2", "userword3", "password4"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("rtsp://***@h:8554"), "{text}");
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
        let g = Overrides::default();
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
