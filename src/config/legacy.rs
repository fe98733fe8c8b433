//! The legacy `/etc/mediamtx/audio-devices.conf`: shell assignments, parsed, never executed
//! (SPEC §5). Anything a shell would run rather than assign is a config error naming
//! `file:line: key`, so a file that "worked" only by side effect is never half-honoured.

use std::path::{Path, PathBuf};

use crate::config::params;
use crate::exit::Error;

/// Parameters a `DEVICE_<KEY>_` or `DEFAULT_` line may set.
pub const DEVICE_PARAMS: [&str; 8] = [
    "SAMPLE_RATE",
    "CHANNELS",
    "BITRATE",
    "CODEC",
    "THREAD_QUEUE",
    "STREAM_NAME",
    "ALSA_DEVICE",
    "ENABLED",
];

/// `DEFAULT_<PARAM>` makes no sense for a stream name or an ALSA address.
const DEFAULT_PARAMS: [&str; 6] = [
    "SAMPLE_RATE",
    "CHANNELS",
    "BITRATE",
    "CODEC",
    "THREAD_QUEUE",
    "ENABLED",
];

/// One `KEY=value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// A parsed and validated legacy device file.
#[derive(Debug, Clone)]
pub struct DeviceFile {
    pub path: PathBuf,
    /// `file:line: unknown key X (ignored)` for every key we do not know.
    pub warnings: Vec<String>,
    /// Known assignments in file order (a later one wins, like in a shell).
    pub entries: Vec<Entry>,
}

impl DeviceFile {
    /// Missing file → `Ok(None)` (all defaults); unreadable or invalid → exit-4 error.
    pub fn load(path: &Path) -> Result<Option<DeviceFile>, Error> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::config(format!(
                    "{}: cannot read device config: {}",
                    path.display(),
                    crate::util::io_reason(&e)
                )))
            }
        };
        let text = String::from_utf8(bytes).map_err(|e| {
            let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = upto.iter().filter(|b| **b == b'\n').count() + 1;
            Error::config(format!("{}:{line}: not valid UTF-8", path.display()))
        })?;
        DeviceFile::parse(path, &text).map(Some)
    }

    /// Parse and validate the whole text; the first bad line is the error.
    pub fn parse(path: &Path, text: &str) -> Result<DeviceFile, Error> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut file = DeviceFile {
            path: path.to_path_buf(),
            warnings: Vec::new(),
            entries: Vec::new(),
        };
        for (i, raw) in text.split('\n').enumerate() {
            let line = i + 1;
            // Keys and values are cut (`params::cut`/`quoted`): one short line, however long.
            let at = |key: &str, msg: &str| {
                if key.is_empty() {
                    Error::config(format!("{}:{line}: {msg}", path.display()))
                } else {
                    let key = params::cut(key);
                    Error::config(format!("{}:{line}: {key}: {msg}", path.display()))
                }
            };
            let Some((key, value)) = parse_line(raw).map_err(|(k, m)| at(&k, &m))? else {
                continue;
            };
            match classify(&key) {
                Some(param) => {
                    validate(param, &value).map_err(|m| at(&key, &m))?;
                    file.entries.push(Entry { key, value, line });
                }
                None => file.warnings.push(format!(
                    "{}:{line}: unknown key {} (ignored)",
                    path.display(),
                    params::cut(&key)
                )),
            }
        }
        Ok(file)
    }

    /// The value of the last assignment to `key` and its line; may be empty.
    pub fn get(&self, key: &str) -> Option<(&str, usize)> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.key == key)
            .map(|e| (e.value.as_str(), e.line))
    }
}

/// The PARAM of a known key (`DEVICE_<KEY>_<PARAM>` with the longest matching suffix and a
/// non-empty `<KEY>`, or `DEFAULT_<PARAM>`), or `None` for an unknown key.
pub fn classify(key: &str) -> Option<&'static str> {
    if let Some(p) = key.strip_prefix("DEFAULT_") {
        if let Some(param) = DEFAULT_PARAMS.iter().find(|x| **x == p) {
            return Some(param);
        }
    }
    let rest = key.strip_prefix("DEVICE_")?;
    DEVICE_PARAMS
        .iter()
        .filter(|p| {
            rest.strip_suffix(**p)
                .and_then(|k| k.strip_suffix('_'))
                .is_some_and(|k| !k.is_empty())
        })
        .max_by_key(|p| p.len())
        .copied()
}

/// Check one value with the same validators as the TOML; empty values fall through later.
fn validate(param: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Ok(());
    }
    match param {
        "SAMPLE_RATE" => params::parse_sample_rate(value).map(drop),
        "CHANNELS" => params::parse_channels(value).map(drop),
        "BITRATE" => params::parse_bitrate(value).map(drop),
        "CODEC" => params::parse_codec(value).map(drop),
        "THREAD_QUEUE" => params::parse_thread_queue(value).map(drop),
        "ENABLED" => params::parse_bool(value).map(drop),
        "STREAM_NAME" if crate::naming::sanitize(value).is_empty() => Err(format!(
            "stream name {} has no usable characters",
            params::quoted(value)
        )),
        "ALSA_DEVICE" if value.chars().any(char::is_control) => Err(format!(
            "invalid ALSA device {} (control characters)",
            params::quoted(value)
        )),
        _ => Ok(()),
    }
}

/// One line → `None` (blank/comment) or `(key, value)`; errors carry `(key, message)`.
fn parse_line(raw: &str) -> Result<Option<(String, String)>, (String, String)> {
    let line = raw.strip_suffix('\r').unwrap_or(raw).trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let line = match line.strip_prefix("export") {
        Some(r) if r.starts_with([' ', '\t']) => r.trim_start(),
        _ => line,
    };
    let key_len = line
        .char_indices()
        .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map(|(i, _)| i)
        .unwrap_or(line.len());
    let key = &line[..key_len];
    let Some(rest) = line[key_len..].strip_prefix('=').filter(|_| key_len > 0) else {
        return Err((
            String::new(),
            format!(
                "not a KEY=value assignment: {} (the file is parsed, never executed)",
                params::quoted(line)
            ),
        ));
    };
    let value = parse_value(rest).map_err(|m| (key.to_string(), m))?;
    Ok(Some((key.to_string(), value)))
}

/// The shell word after `=`: quotes and backslashes as a shell reads them, but any
/// expansion, substitution or operator is refused.
fn parse_value(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                let rest: String = chars.collect();
                let rest = rest.trim_start();
                if rest.is_empty() || rest.starts_with('#') {
                    break;
                }
                return Err(format!(
                    "unexpected text after the value: {} (quote values that contain spaces)",
                    params::quoted(rest)
                ));
            }
            '\'' => loop {
                match chars.next() {
                    Some('\'') => break,
                    Some(x) => out.push(x),
                    None => return Err("unterminated single quote".into()),
                }
            },
            '"' => loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(x @ ('"' | '\\' | '$' | '`')) => out.push(x),
                        Some(x) => {
                            out.push('\\');
                            out.push(x);
                        }
                        None => return Err("unterminated double quote".into()),
                    },
                    Some('$') => {
                        dollar(chars.peek().copied())?;
                        out.push('$');
                    }
                    Some('`') => return Err(substitution()),
                    Some(x) => out.push(x),
                    None => return Err("unterminated double quote".into()),
                }
            },
            '\\' => match chars.next() {
                Some(x) => out.push(x),
                None => {
                    return Err("trailing backslash (line continuation is not supported)".into())
                }
            },
            '$' => {
                dollar(chars.peek().copied())?;
                out.push('$');
            }
            '`' => return Err(substitution()),
            ';' | '|' | '&' | '>' | '<' | '(' | ')' => {
                return Err(format!(
                    "{c:?} is not allowed: the file is parsed, never executed"
                ))
            }
            x => out.push(x),
        }
    }
    Ok(out)
}

fn substitution() -> String {
    "command substitution is not allowed: the file is parsed, never executed".into()
}

/// `$` is kept literally only where a shell would keep it (end of word, before space or
/// punctuation); `$(`, `${`, `$VAR`, `$1`, `$?`, `$'..'` ... are refused.
fn dollar(next: Option<char>) -> Result<(), String> {
    match next {
        Some('(') => Err(substitution()),
        Some(c)
            if c == '{' || c == '_' || c.is_ascii_alphanumeric() || "?!#*@$-'\"".contains(c) =>
        {
            Err("variable expansion is not supported: write the value itself".into())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DeviceFile, Error> {
        DeviceFile::parse(Path::new("/etc/a.conf"), text)
    }

    #[test]
    fn good_forms() {
        let text = "\u{feff}# comment\r\n\
            \r\n\
            DEVICE_USB_MV7_00_SAMPLE_RATE=44100\r\n\
            export DEVICE_MIC_CHANNELS=1\n\
            \texport\tDEFAULT_CODEC='aac'\n\
            DEFAULT_BITRATE=\"96k\" # trailing comment\n\
            DEVICE_MIC_ALSA_DEVICE=\"dsnoop:CARD=\\\"x\\\",\\\\\\$\"\n\
            DEVICE_MIC_STREAM_NAME=garden#1\n\
            DEVICE_MIC_ENABLED=no\n\
            DEVICE_MIC_THREAD_QUEUE=\n\
            DEVICE_MIC_CODEC=op\"us\"\n\
            DEVICE_A_B_C_BITRATE=1M\n\
            DEVICE_MIC_SAMPLE_RATE=48000\n\
            DEVICE_MIC_SAMPLE_RATE=''\n\
            DEVICE_MIC_ALSA_DEVICE=a$ # literal dollar\n\
            DEFAULT_THREAD_QUEUE=a\\ b\n";
        // The last line is invalid (thread queue); check everything before it first.
        let ok = text.rsplit_once("DEFAULT_THREAD_QUEUE").unwrap().0;
        let f = parse(ok).unwrap();
        assert!(f.warnings.is_empty(), "{:?}", f.warnings);
        assert_eq!(f.get("DEVICE_USB_MV7_00_SAMPLE_RATE"), Some(("44100", 3)));
        assert_eq!(f.get("DEVICE_MIC_CHANNELS"), Some(("1", 4)));
        assert_eq!(f.get("DEFAULT_CODEC"), Some(("aac", 5)));
        assert_eq!(f.get("DEFAULT_BITRATE"), Some(("96k", 6)));
        assert_eq!(f.entries[4].value, "dsnoop:CARD=\"x\",\\$");
        assert_eq!(f.get("DEVICE_MIC_ALSA_DEVICE"), Some(("a$", 15)));
        assert_eq!(f.get("DEVICE_MIC_STREAM_NAME"), Some(("garden#1", 8)));
        assert_eq!(f.get("DEVICE_MIC_ENABLED"), Some(("no", 9)));
        assert_eq!(f.get("DEVICE_MIC_THREAD_QUEUE"), Some(("", 10)));
        assert_eq!(f.get("DEVICE_MIC_CODEC"), Some(("opus", 11)));
        assert_eq!(f.get("DEVICE_A_B_C_BITRATE"), Some(("1M", 12)));
        // Last assignment wins, even when empty.
        assert_eq!(f.get("DEVICE_MIC_SAMPLE_RATE"), Some(("", 14)));
        assert_eq!(f.get("DEVICE_NOPE_CODEC"), None);
        let e = parse(text).unwrap_err();
        assert!(
            e.message
                .starts_with("/etc/a.conf:16: DEFAULT_THREAD_QUEUE:"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_warn() {
        let f = parse("FOO=1\nDEVICE_SAMPLE_RATE=1\nDEFAULT_STREAM_NAME=x\nDEVICE_MIC_VOLUME=3\n")
            .unwrap();
        assert_eq!(
            f.warnings,
            [
                "/etc/a.conf:1: unknown key FOO (ignored)",
                "/etc/a.conf:2: unknown key DEVICE_SAMPLE_RATE (ignored)",
                "/etc/a.conf:3: unknown key DEFAULT_STREAM_NAME (ignored)",
                "/etc/a.conf:4: unknown key DEVICE_MIC_VOLUME (ignored)",
            ]
        );
        assert!(f.entries.is_empty());
    }

    #[test]
    fn classify_longest_suffix() {
        assert_eq!(classify("DEVICE_X_STREAM_NAME"), Some("STREAM_NAME"));
        assert_eq!(
            classify("DEVICE_SAMPLE_RATE_SAMPLE_RATE"),
            Some("SAMPLE_RATE")
        );
        assert_eq!(classify("DEVICE_X_THREAD_QUEUE"), Some("THREAD_QUEUE"));
        assert_eq!(classify("DEFAULT_ENABLED"), Some("ENABLED"));
        assert_eq!(classify("DEFAULT_ALSA_DEVICE"), None);
        assert_eq!(classify("DEVICE__CODEC"), None);
        assert_eq!(classify("DEVICE_CODEC"), None);
    }

    #[test]
    fn bad_forms() {
        // (line text, expected key in message or "" for none, words in the message)
        let table: &[(&str, &str, &str)] = &[
            ("X=1; rm -rf /", "X", "';' is not allowed"),
            ("DEFAULT_CODEC=opus;", "DEFAULT_CODEC", "';' is not allowed"),
            (
                "DEFAULT_CODEC=opus|cat",
                "DEFAULT_CODEC",
                "'|' is not allowed",
            ),
            ("DEFAULT_CODEC=opus&", "DEFAULT_CODEC", "'&' is not allowed"),
            (
                "DEFAULT_CODEC=opus>/tmp/x",
                "DEFAULT_CODEC",
                "'>' is not allowed",
            ),
            (
                "DEFAULT_CODEC=opus</tmp/x",
                "DEFAULT_CODEC",
                "'<' is not allowed",
            ),
            (
                "DEFAULT_CODEC=$(echo opus)",
                "DEFAULT_CODEC",
                "command substitution",
            ),
            (
                "DEFAULT_CODEC=\"$(echo opus)\"",
                "DEFAULT_CODEC",
                "command substitution",
            ),
            (
                "DEFAULT_CODEC=`echo opus`",
                "DEFAULT_CODEC",
                "command substitution",
            ),
            (
                "DEFAULT_CODEC=\"`echo opus`\"",
                "DEFAULT_CODEC",
                "command substitution",
            ),
            (
                "DEFAULT_CODEC=${CODEC}",
                "DEFAULT_CODEC",
                "variable expansion",
            ),
            (
                "DEFAULT_CODEC=\"$CODEC\"",
                "DEFAULT_CODEC",
                "variable expansion",
            ),
            (
                "DEFAULT_CODEC=$CODEC",
                "DEFAULT_CODEC",
                "variable expansion",
            ),
            (
                "DEFAULT_CODEC=$'opus'",
                "DEFAULT_CODEC",
                "variable expansion",
            ),
            (
                "DEFAULT_CODEC=\"$1\"",
                "DEFAULT_CODEC",
                "variable expansion",
            ),
            (
                "DEFAULT_CODEC='opus",
                "DEFAULT_CODEC",
                "unterminated single quote",
            ),
            (
                "DEFAULT_CODEC=\"opus",
                "DEFAULT_CODEC",
                "unterminated double quote",
            ),
            (
                "DEFAULT_CODEC=opus\\",
                "DEFAULT_CODEC",
                "trailing backslash",
            ),
            ("DEFAULT_CODEC=opus aac", "DEFAULT_CODEC", "unexpected text"),
            ("echo hello", "", "not a KEY=value assignment"),
            ("export DEFAULT_CODEC", "", "not a KEY=value assignment"),
            ("DEFAULT_CODEC =opus", "", "not a KEY=value assignment"),
            ("1X=opus", "", "not a KEY=value assignment"),
            ("=opus", "", "not a KEY=value assignment"),
            ("DEFAULT_CODEC+=opus", "", "not a KEY=value assignment"),
            ("source /etc/other.conf", "", "not a KEY=value assignment"),
            (
                "DEFAULT_CODEC=flac",
                "DEFAULT_CODEC",
                "invalid codec \"flac\"",
            ),
            (
                "DEFAULT_SAMPLE_RATE=7000",
                "DEFAULT_SAMPLE_RATE",
                "invalid sample rate",
            ),
            (
                "DEVICE_MIC_CHANNELS=33",
                "DEVICE_MIC_CHANNELS",
                "invalid channels",
            ),
            (
                "DEVICE_MIC_BITRATE=fast",
                "DEVICE_MIC_BITRATE",
                "invalid bitrate",
            ),
            (
                "DEVICE_MIC_THREAD_QUEUE=0",
                "DEVICE_MIC_THREAD_QUEUE",
                "invalid thread queue",
            ),
            (
                "DEVICE_MIC_ENABLED=maybe",
                "DEVICE_MIC_ENABLED",
                "invalid boolean",
            ),
            (
                "DEVICE_MIC_STREAM_NAME='--'",
                "DEVICE_MIC_STREAM_NAME",
                "no usable characters",
            ),
        ];
        for (line, key, words) in table {
            let e = parse(&format!("# ok\n\n{line}\nDEFAULT_CODEC=aac\n")).unwrap_err();
            assert_eq!(e.exit, crate::exit::Exit::Config, "{line}");
            let want = if key.is_empty() {
                "/etc/a.conf:3: ".to_string()
            } else {
                format!("/etc/a.conf:3: {key}: ")
            };
            assert!(e.message.starts_with(&want), "{line}: {}", e.message);
            assert!(e.message.contains(words), "{line}: {}", e.message);
            assert!(!e.message.contains('\n'), "{line}: one line");
        }
    }

    #[test]
    fn load_missing_and_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        assert!(DeviceFile::load(&dir.path().join("nope.conf"))
            .unwrap()
            .is_none());
        // A directory cannot be read as a file.
        let e = DeviceFile::load(dir.path()).unwrap_err();
        assert_eq!(e.exit, crate::exit::Exit::Config);
        let p = dir.path().join("bin.conf");
        std::fs::write(&p, b"DEFAULT_CODEC=aac\nX=\xff\n").unwrap();
        let e = DeviceFile::load(&p).unwrap_err();
        assert!(e.message.ends_with("bin.conf:2: not valid UTF-8"), "{e}");
    }
}
