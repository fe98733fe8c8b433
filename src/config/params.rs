//! Per-device audio parameters: types, validation and provenance (SPEC §5).
//! Shared by the TOML settings and the legacy device file, so both reject the same values.

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    Opus,
    Aac,
    Mp3,
    Pcm,
}

impl Codec {
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::Aac => "aac",
            Codec::Mp3 => "mp3",
            Codec::Pcm => "pcm",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a resolved value came from, in lookup order (first hit wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    TomlDevice,
    Friendly,
    Full,
    FileDefault,
    TomlDefault,
    BuiltIn,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::TomlDevice => "toml-device",
            Source::Friendly => "friendly",
            Source::Full => "full",
            Source::FileDefault => "file-default",
            Source::TomlDefault => "toml-default",
            Source::BuiltIn => "built-in",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

/// Parameters as one source gives them; `None` falls through to the next source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartialParams {
    pub sample_rate: Option<u32>,
    pub channels: Option<u32>,
    pub bitrate: Option<String>,
    pub codec: Option<Codec>,
    pub thread_queue: Option<u32>,
}

/// Fully resolved parameters of one stream, each with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Params {
    pub sample_rate: Sourced<u32>,
    pub channels: Sourced<u32>,
    pub bitrate: Sourced<String>,
    pub codec: Sourced<Codec>,
    pub thread_queue: Sourced<u32>,
}

impl Params {
    /// The values only, for comparing effective settings on reload.
    pub fn values(&self) -> (u32, u32, &str, Codec, u32) {
        (
            self.sample_rate.value,
            self.channels.value,
            &self.bitrate.value,
            self.codec.value,
            self.thread_queue.value,
        )
    }
}

/// Longest value a validator echoes, in characters (then `…`): a megabyte value in a
/// config file still gives one short error line.
pub const MAX_ECHO: usize = 80;

/// `v` quoted for an error message, cut to `MAX_ECHO` characters plus `…`.
pub fn quoted(v: &str) -> String {
    match v.char_indices().nth(MAX_ECHO) {
        Some((i, _)) => format!("{:?}…", &v[..i]),
        None => format!("{v:?}"),
    }
}

/// `s` (a key, a name) cut to `MAX_ECHO` characters plus `…`, unquoted.
pub fn cut(s: &str) -> String {
    match s.char_indices().nth(MAX_ECHO) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

pub const BUILTIN_SAMPLE_RATE: u32 = 48000;
pub const BUILTIN_CHANNELS: u32 = 2;
pub const BUILTIN_BITRATE: &str = "128k";
pub const BUILTIN_CODEC: Codec = Codec::Opus;
pub const BUILTIN_THREAD_QUEUE: u32 = 8192;

/// Sample rate in Hz, 8000–384000.
pub fn parse_sample_rate(v: &str) -> Result<u32, String> {
    match v.trim().parse::<u32>() {
        Ok(n) if (8000..=384_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "invalid sample rate {} (expected 8000-384000)",
            quoted(v)
        )),
    }
}

/// Channel count, 1–32.
pub fn parse_channels(v: &str) -> Result<u32, String> {
    match v.trim().parse::<u32>() {
        Ok(n) if (1..=32).contains(&n) => Ok(n),
        _ => Err(format!("invalid channels {} (expected 1-32)", quoted(v))),
    }
}

/// Bitrate like `96k`, `128000`, `1M` (passed to ffmpeg unchanged).
pub fn parse_bitrate(v: &str) -> Result<String, String> {
    let t = v.trim();
    let digits = t.trim_end_matches(['k', 'K', 'm', 'M']);
    let suffix_len = t.len() - digits.len();
    let ok = !digits.is_empty()
        && suffix_len <= 1
        && digits.bytes().all(|b| b.is_ascii_digit())
        && digits.parse::<u64>().map(|n| n > 0).unwrap_or(false);
    if ok {
        Ok(t.to_string())
    } else {
        Err(format!(
            "invalid bitrate {} (expected e.g. 96k, 128000, 1M)",
            quoted(v)
        ))
    }
}

/// One of `opus`, `aac`, `mp3`, `pcm` (case-insensitive).
pub fn parse_codec(v: &str) -> Result<Codec, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "opus" => Ok(Codec::Opus),
        "aac" => Ok(Codec::Aac),
        "mp3" => Ok(Codec::Mp3),
        "pcm" => Ok(Codec::Pcm),
        _ => Err(format!(
            "invalid codec {} (expected opus, aac, mp3 or pcm)",
            quoted(v)
        )),
    }
}

/// ffmpeg `-thread_queue_size`, 1–1048576.
pub fn parse_thread_queue(v: &str) -> Result<u32, String> {
    match v.trim().parse::<u32>() {
        Ok(n) if (1..=1_048_576).contains(&n) => Ok(n),
        _ => Err(format!(
            "invalid thread queue {} (expected 1-1048576)",
            quoted(v)
        )),
    }
}

/// `true/false/yes/no/1/0/on/off` as a shell user writes them.
pub fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "invalid boolean {} (expected true or false)",
            quoted(v)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrates() {
        for ok in ["96k", "128000", "1M", "64K"] {
            assert_eq!(parse_bitrate(ok).unwrap(), ok);
        }
        for bad in ["", "k", "12kk", "1.5M", "-5k", "0", "abc", "12 k"] {
            assert!(parse_bitrate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges() {
        assert!(parse_sample_rate("7999").is_err());
        assert_eq!(parse_sample_rate("384000").unwrap(), 384000);
        assert!(parse_sample_rate("384001").is_err());
        assert!(parse_channels("0").is_err());
        assert_eq!(parse_channels("32").unwrap(), 32);
        assert!(parse_channels("33").is_err());
        assert!(parse_thread_queue("0").is_err());
        assert_eq!(parse_thread_queue("1048576").unwrap(), 1048576);
        assert_eq!(parse_codec("OPUS").unwrap(), Codec::Opus);
        assert!(parse_codec("flac").is_err());
    }

    #[test]
    fn echoed_values_are_cut() {
        let huge = "4".repeat(1 << 20);
        for e in [
            parse_sample_rate(&huge).unwrap_err(),
            parse_channels(&huge).unwrap_err(),
            parse_bitrate(&huge).unwrap_err(),
            parse_codec(&huge).unwrap_err(),
            parse_thread_queue(&huge).unwrap_err(),
            parse_bool(&huge).unwrap_err(),
        ] {
            assert!(e.len() < 200, "{e}");
            assert!(e.contains(&format!("\"{}\"…", "4".repeat(MAX_ECHO))), "{e}");
        }
        assert_eq!(quoted("aé"), "\"aé\"");
        let long = "é".repeat(81);
        assert_eq!(quoted(&long), format!("{:?}…", "é".repeat(80)));
        assert_eq!(cut(&long), format!("{}…", "é".repeat(80)));
        assert_eq!(cut("KEY"), "KEY");
    }
}
