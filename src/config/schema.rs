//! The TOML file as serde reads it. Every value is `Spanned` so that any error, from serde
//! or from the checks in `load`, can name its line; every leaf type writes its own short
//! message that never repeats the value (the error line shows the value once, clipped).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::units::{parse_duration, parse_min_free, parse_size};
use super::{parse_filter, parse_mode, Filter, Mode};

/// An optional value with its place in the file.
pub type S<T> = Option<Spanned<T>>;

#[derive(Deserialize, Default)]
#[serde(expecting = "a table")]
pub struct FileDoc {
    pub mode: S<ModeV>,
    pub paths: Option<PathsT>,
    pub discovery: Option<DiscoveryT>,
    pub mediamtx: Option<MediamtxT>,
    pub startup: Option<StartupT>,
    pub backoff: Option<BackoffT>,
    pub health: Option<HealthT>,
    pub stop: Option<StopT>,
    pub monitor: Option<MonitorT>,
    pub defaults: Option<ParamsT>,
    pub devices: Option<BTreeMap<String, DeviceT>>,
    pub multiplex: Option<MultiplexT>,
    pub metrics: Option<MetricsT>,
    pub web: Option<WebT>,
    pub logs: Option<LogsT>,
    pub recording: Option<RecordingT>,
}

#[derive(Deserialize)]
#[serde(expecting = "a table [paths]")]
pub struct PathsT {
    pub proc_asound: S<Text>,
    pub dev_snd: S<Text>,
    pub state_dir: S<Text>,
    pub log_dir: S<Text>,
    pub device_config: S<Text>,
    pub ffmpeg: S<Text>,
    pub names_file: S<Text>,
}

#[derive(Deserialize)]
#[serde(expecting = "a table [discovery]")]
pub struct DiscoveryT {
    pub rescan: S<Dur>,
    pub watch: S<Flag>,
}

#[derive(Deserialize)]
#[serde(expecting = "a table [mediamtx]")]
pub struct MediamtxT {
    pub api: S<Flag>,
    pub api_url: S<Text>,
    pub rtsp_url: S<Text>,
    pub username: S<Text>,
    pub password: S<Text>,
    pub poll: S<Dur>,
    pub timeout: S<Dur>,
    pub rtsp_timeout: S<Dur>,
}

#[derive(Deserialize)]
#[serde(expecting = "a table [startup]")]
pub struct StartupT {
    pub device_wait: S<Dur>,
    pub mediamtx_wait: S<Dur>,
    pub report_timeout: S<Dur>,
    pub require_devices: S<Flag>,
}

#[derive(Deserialize)]
#[serde(expecting = "a table [backoff]")]
pub struct BackoffT {
    pub initial: S<Dur>,
    pub max: S<Dur>,
    pub stable_after: S<Dur>,
    pub max_failures: S<Int>,
    pub failed_retry: S<Dur>,
}

#[derive(Deserialize)]
#[serde(expecting = "a table [health]")]
pub struct HealthT {
    pub stall_timeout: S<Dur>,
    pub start_timeout: S<Dur>,
    pub unpublished_timeout: S<Dur>,
    pub silence_db: S<Num>,
    pub silence_for: S<Dur>,
    pub levels: S<Flag>,
}

#[derive(Deserialize)]
#[serde(expecting = "a table [stop]")]
pub struct StopT {
    pub grace: S<Dur>,
}

#[derive(Deserialize)]
#[serde(expecting = "a table [monitor]")]
pub struct MonitorT {
    pub grace: S<Dur>,
    pub fd_warn: S<Int>,
    pub fd_critical: S<Int>,
    pub cpu_warn: S<Num>,
    pub cpu_critical: S<Num>,
    pub rss_warn_mb: S<Int>,
    pub rss_critical_mb: S<Int>,
}

#[derive(Deserialize)]
#[serde(expecting = "a table [defaults]")]
pub struct ParamsT {
    pub sample_rate: S<Param>,
    pub channels: S<Param>,
    pub bitrate: S<Param>,
    pub codec: S<Param>,
    pub thread_queue: S<Param>,
}

#[derive(Deserialize)]
#[serde(expecting = "a table [devices.\"<stream name>\"]")]
pub struct DeviceT {
    pub sample_rate: S<Param>,
    pub channels: S<Param>,
    pub bitrate: S<Param>,
    pub codec: S<Param>,
    pub thread_queue: S<Param>,
    pub stream: S<Text>,
    pub alsa_device: S<Text>,
    pub enabled: S<Flag>,
    pub record: S<Flag>,
}

#[derive(Deserialize)]
#[serde(expecting = "a table [multiplex]")]
pub struct MultiplexT {
    pub name: S<Text>,
    pub filter: S<FilterV>,
    pub devices: S<Names>,
}

#[derive(Deserialize)]
#[serde(expecting = "a table [metrics]")]
pub struct MetricsT {
    pub textfile: S<Text>,
    pub listen: S<Text>,
}

#[derive(Deserialize)]
#[serde(expecting = "a table [web]")]
pub struct WebT {
    pub enabled: S<Flag>,
    pub username: S<Text>,
    pub password: S<Text>,
    pub player_url: S<Text>,
}

#[derive(Deserialize)]
#[serde(expecting = "a table [logs]")]
pub struct LogsT {
    pub max_size: S<Size>,
    pub keep: S<Int>,
}

#[derive(Deserialize)]
#[serde(expecting = "a table [recording]")]
pub struct RecordingT {
    pub enabled: S<Flag>,
    pub dir: S<Text>,
    pub segment: S<Dur>,
    pub format: S<Text>,
    pub max_files: S<Int>,
    pub max_bytes: S<Size>,
    pub min_free: S<MinFreeV>,
}

/// The keys each table knows; anything else is an "unknown key" warning. Kept next to the
/// structs above (tests/install.rs uncomments the example, which uses every key, and
/// asserts there is no warning).
pub const PARAM_KEYS: &[&str] = &[
    "sample_rate",
    "channels",
    "bitrate",
    "codec",
    "thread_queue",
];
pub const DEVICE_KEYS: &[&str] = &[
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
pub const SECTIONS: &[(&str, &[&str])] = &[
    (
        "paths",
        &[
            "proc_asound",
            "dev_snd",
            "state_dir",
            "log_dir",
            "device_config",
            "ffmpeg",
            "names_file",
        ],
    ),
    ("discovery", &["rescan", "watch"]),
    (
        "mediamtx",
        &[
            "api",
            "api_url",
            "rtsp_url",
            "username",
            "password",
            "poll",
            "timeout",
            "rtsp_timeout",
        ],
    ),
    (
        "startup",
        &[
            "device_wait",
            "mediamtx_wait",
            "report_timeout",
            "require_devices",
        ],
    ),
    (
        "backoff",
        &[
            "initial",
            "max",
            "stable_after",
            "max_failures",
            "failed_retry",
        ],
    ),
    (
        "health",
        &[
            "stall_timeout",
            "start_timeout",
            "unpublished_timeout",
            "silence_db",
            "silence_for",
            "levels",
        ],
    ),
    ("stop", &["grace"]),
    (
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
    ),
    ("defaults", PARAM_KEYS),
    ("devices", &[]),
    ("multiplex", &["name", "filter", "devices"]),
    ("metrics", &["textfile", "listen"]),
    ("web", &["enabled", "username", "password", "player_url"]),
    ("logs", &["max_size", "keep"]),
    (
        "recording",
        &[
            "enabled",
            "dir",
            "segment",
            "format",
            "max_files",
            "max_bytes",
            "min_free",
        ],
    ),
];

/// Any one TOML value, reduced to what the leaf types below need.
enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A table, array or date: never valid where a leaf is expected.
    Other,
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string, number or boolean")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Str(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v))
    }
    // Integers beyond i64 are clamped: the range check of the key then names its range.
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Int(i64::try_from(v).unwrap_or(i64::MAX)))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Scalar, E> {
        Ok(Scalar::Int(
            v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
        ))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Scalar, E> {
        Ok(Scalar::Int(i64::try_from(v).unwrap_or(i64::MAX)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Scalar, A::Error> {
        while a.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Scalar, A::Error> {
        while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
}

/// Read one value and convert it, turning a refusal into a serde error (toml adds the span).
fn leaf<'de, D: Deserializer<'de>, T>(
    d: D,
    f: impl FnOnce(Scalar) -> Result<T, String>,
) -> Result<T, D::Error> {
    let v = d.deserialize_any(ScalarVisitor)?;
    f(v).map_err(de::Error::custom)
}

/// Remove the quoted value from a message of the shared validators (`invalid codec "x"
/// (...)`): the error line already shows the value once, clipped.
pub fn without_value(msg: String, value: &str) -> String {
    let cut = format!(" {}", crate::config::params::quoted(value));
    let whole = format!(" {value:?}");
    let form = if msg.contains(&cut) { cut } else { whole };
    msg.replacen(&form, "", 1)
}

macro_rules! leaf_type {
    ($(#[$doc:meta])* $name:ident($t:ty), $f:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name(pub $t);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                leaf(d, $f).map($name)
            }
        }
    };
}

leaf_type!(
    /// A string.
    Text(String),
    |v| match v {
        Scalar::Str(s) => Ok(s),
        _ => Err("expected a string".into()),
    }
);

leaf_type!(
    /// `true` or `false`.
    Flag(bool),
    |v| match v {
        Scalar::Bool(b) => Ok(b),
        _ => Err("expected true or false".into()),
    }
);

leaf_type!(
    /// An integer (ranges are checked by `load`, which knows the key).
    Int(i64),
    |v| match v {
        Scalar::Int(n) => Ok(n),
        _ => Err("expected an integer".into()),
    }
);

leaf_type!(
    /// A number, integer or float.
    Num(f64),
    |v| match v {
        Scalar::Int(n) => Ok(n as f64),
        Scalar::Float(f) => Ok(f),
        _ => Err("expected a number".into()),
    }
);

leaf_type!(
    /// A duration string with a unit.
    Dur(Duration),
    |v| match v {
        Scalar::Str(s) => parse_duration(&s).map_err(|e| without_value(e, &s)),
        _ => Err("expected a duration string with a unit, e.g. \"10s\"".into()),
    }
);

leaf_type!(
    /// A size string (`"10M"`) or a positive number of bytes.
    Size(u64),
    |v| match v {
        Scalar::Int(n) if n > 0 => Ok(n as u64),
        Scalar::Str(s) => parse_size(&s).map_err(|e| without_value(e, &s)),
        _ => Err("expected a size like \"10M\"".into()),
    }
);

leaf_type!(
    /// `recording.min_free`: `"5%"`, a size like `"100M"`, or a positive number of bytes.
    MinFreeV(super::MinFree),
    |v| match v {
        Scalar::Int(n) if n > 0 => Ok(super::MinFree::Bytes(n as u64)),
        Scalar::Str(s) => parse_min_free(&s).map_err(|e| without_value(e, &s)),
        _ => Err("expected a percentage like \"5%\" or a size like \"100M\"".into()),
    }
);

leaf_type!(
    /// A device parameter: a string or an integer, validated by `load` like the legacy file.
    Param(String),
    |v| match v {
        Scalar::Str(s) => Ok(s),
        Scalar::Int(n) => Ok(n.to_string()),
        _ => Err("expected a string or integer".into()),
    }
);

leaf_type!(
    /// `individual` or `multiplex`.
    ModeV(Mode),
    |v| match v {
        Scalar::Str(s) => parse_mode(&s),
        _ => parse_mode(""),
    }
);

leaf_type!(
    /// `amix` or `amerge`.
    FilterV(Filter),
    |v| match v {
        Scalar::Str(s) => parse_filter(&s),
        _ => parse_filter(""),
    }
);

/// A list of strings (stream names).
#[derive(Debug, Clone, PartialEq)]
pub struct Names(pub Vec<String>);

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<Vec<String>>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of stream names")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                let mut ok = true;
                while let Some(v) = a.next_element_seed(ScalarSeed)? {
                    match v {
                        Scalar::Str(s) => out.push(s),
                        _ => ok = false,
                    }
                }
                Ok(ok.then_some(out))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(None)
            }
        }
        match d.deserialize_any(V)? {
            Some(v) => Ok(Names(v)),
            None => Err(de::Error::custom("expected a list of stream names")),
        }
    }
}

struct ScalarSeed;

impl<'de> de::DeserializeSeed<'de> for ScalarSeed {
    type Value = Scalar;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}
