//! One-line configuration errors: `FILE:LINE:COL: KEY = VALUE: why`. Byte offsets from the
//! toml parser become line:column; the key is found from the offset in the parsed tree; a
//! value is echoed at most once and clipped, secrets never.

use std::ops::Range;
use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::exit::Error;

/// Longest value echoed in an error, in characters (then `…`).
pub const MAX_VALUE: usize = 60;
/// Longest key segment (a device name can be anything), in characters.
const MAX_SEGMENT: usize = 40;
/// Longest explanation, in characters.
const MAX_WHY: usize = 100;

/// 1-based line and column (in characters) of byte offset `pos`.
pub fn line_col(text: &[u8], pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = &text[..pos];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    // Count characters, not bytes (continuation bytes do not start one).
    let col = before[start..]
        .iter()
        .filter(|b| (**b & 0xC0) != 0x80)
        .count()
        + 1;
    (line, col)
}

/// The first line of `s`, at most `max` characters; `…` marks anything cut.
pub fn clip(s: &str, max: usize) -> String {
    let first = s.split(['\n', '\r']).next().unwrap_or("");
    let mut out: String = first.chars().take(max).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// A dotted key as TOML writes it; device names always quoted (`devices."garden".codec`).
pub fn dotted(path: &[String]) -> String {
    path.iter()
        .enumerate()
        .map(|(i, seg)| {
            let bare = !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            let quote = !bare || (i == 1 && path[0] == "devices");
            let seg = clip(seg, MAX_SEGMENT);
            if quote {
                format!("\"{}\"", seg.replace('"', "\\\""))
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A parsed file: enough to turn a byte range into `file:line:col: key = value`.
pub struct Doc<'a> {
    pub file: &'a Path,
    pub text: &'a str,
    root: DeTable<'a>,
}

impl<'a> Doc<'a> {
    /// Parse `text`; a syntax error is already the one-line error.
    pub fn parse(file: &'a Path, text: &'a str) -> Result<(Doc<'a>, Spanned<DeTable<'a>>), Error> {
        let root = DeTable::parse(text).map_err(|e| syntax_error(file, text, &e))?;
        let doc = Doc {
            file,
            text,
            root: root.get_ref().clone(),
        };
        Ok((doc, root))
    }

    /// The error for the value at `span` (from serde or from a check in `load`).
    pub fn error(&self, span: Range<usize>, why: &str) -> Error {
        let (line, col) = line_col(self.text.as_bytes(), span.start);
        let why = clip(why, MAX_WHY);
        let head = format!("{}:{line}:{col}", self.file.display());
        match locate(&self.root, span.start, &mut Vec::new()) {
            Some((path, value)) => {
                let kv = self.key_value(&path, value);
                Error::config(format!("{head}: {kv}: {why}"))
            }
            None => Error::config(format!("{head}: {why}")),
        }
    }

    /// A serde error from the typed read: toml gives the value's span.
    pub fn serde_error(&self, e: &toml::de::Error) -> Error {
        let why = rewrite(e.message());
        match e.span() {
            Some(span) => self.error(span, &why),
            None => Error::config(format!("{}: {}", self.file.display(), clip(&why, MAX_WHY))),
        }
    }

    /// The value as written, clipped; secrets masked, URL credentials redacted.
    fn shown(&self, path: &[String], value: &Spanned<DeValue>) -> String {
        let last = path.last().map(String::as_str).unwrap_or("");
        if last == "password" {
            return "***".into();
        }
        if let (true, DeValue::String(s)) = (last.ends_with("_url"), value.get_ref()) {
            return format!("\"{}\"", clip(&crate::util::redact_url(s), MAX_VALUE));
        }
        let raw = self.text.get(value.span()).unwrap_or("");
        clip(raw, MAX_VALUE)
    }

    /// `key = value`, or just `key` for a table (its span is a header or a dotted key).
    fn key_value(&self, path: &[String], value: &Spanned<DeValue>) -> String {
        let key = dotted(path);
        let raw = self.text.get(value.span()).unwrap_or("");
        if value.get_ref().is_table() || raw.starts_with("[[") {
            return key;
        }
        format!("{key} = {}", self.shown(path, value))
    }

    /// `file:line: unknown key a.b (ignored)` for every key the schema does not know,
    /// in file order.
    pub fn unknown_keys(&self, sections: &[(&str, &[&str])], device_keys: &[&str]) -> Vec<String> {
        let mut found: Vec<(usize, String)> = Vec::new();
        let mut warn = |key: &Spanned<std::borrow::Cow<str>>, path: Vec<String>| {
            found.push((key.span().start, dotted(&path)));
        };
        for (k, v) in &self.root {
            let name = k.get_ref().as_ref();
            if name == "mode" {
                continue;
            }
            let Some((_, known)) = sections.iter().find(|(s, _)| *s == name) else {
                warn(k, vec![name.to_string()]);
                continue;
            };
            let Some(table) = v.get_ref().as_table() else {
                continue;
            };
            for (k2, v2) in table {
                let key2 = k2.get_ref().to_string();
                if name == "devices" {
                    for (k3, _) in v2.get_ref().as_table().into_iter().flatten() {
                        if !device_keys.contains(&k3.get_ref().as_ref()) {
                            warn(
                                k3,
                                vec![name.into(), key2.clone(), k3.get_ref().to_string()],
                            );
                        }
                    }
                } else if !known.contains(&key2.as_str()) {
                    warn(k2, vec![name.into(), key2]);
                }
            }
        }
        found.sort();
        found
            .into_iter()
            .map(|(pos, key)| {
                let (line, _) = line_col(self.text.as_bytes(), pos);
                format!(
                    "{}:{line}: unknown key {key} (ignored)",
                    self.file.display()
                )
            })
            .collect()
    }
}

/// The deepest key whose value (or key) covers byte `pos`.
fn locate<'t, 'i>(
    table: &'t DeTable<'i>,
    pos: usize,
    path: &mut Vec<String>,
) -> Option<(Vec<String>, &'t Spanned<DeValue<'i>>)> {
    for (k, v) in table {
        path.push(k.get_ref().to_string());
        if let Some(t) = v.get_ref().as_table() {
            if let Some(hit) = locate(t, pos, path) {
                return Some(hit);
            }
        }
        let sp = v.span();
        let ks = k.span();
        if sp.contains(&pos) || sp.start == pos || ks.contains(&pos) {
            return Some((path.clone(), v));
        }
        path.pop();
    }
    None
}

/// serde's "invalid type: integer `5`, expected X" echoes the value: keep "expected X".
fn rewrite(msg: &str) -> String {
    match msg.find(", expected ") {
        Some(i) if msg.starts_with("invalid type") || msg.starts_with("invalid value") => {
            // serde says "a map" for a table given as something else.
            msg[i + 2..].replace("expected a map", "expected a table")
        }
        _ => msg.to_string(),
    }
}

/// A syntax error: its line, column and the key on that line, if any.
pub fn syntax_error(file: &Path, text: &str, e: &toml::de::Error) -> Error {
    let pos = e.span().map_or(0, |s| s.start);
    located(
        file,
        text.as_bytes(),
        pos,
        &format!("invalid TOML: {}", e.message()),
    )
}

/// Bytes that are not UTF-8: the line and column of the first bad byte.
pub fn utf8_error(file: &Path, bytes: &[u8], e: &std::str::Utf8Error) -> Error {
    let pos = e.valid_up_to();
    let why = format!("not valid UTF-8 (byte 0x{:02x})", bytes[pos]);
    located(file, bytes, pos, &why)
}

/// `file:line:col: key: why`, the key read from the text of the line (the file could not
/// be parsed, so there is no tree to ask).
fn located(file: &Path, bytes: &[u8], pos: usize, why: &str) -> Error {
    let (line, col) = line_col(bytes, pos);
    let text = String::from_utf8_lossy(bytes);
    let head = format!("{}:{line}:{col}", file.display());
    let why = clip(why, MAX_WHY);
    match key_on_line(&text, line) {
        Some(key) => Error::config(format!("{head}: {key}: {why}")),
        None => Error::config(format!("{head}: {why}")),
    }
}

/// The dotted key a line assigns (`[section]` + `key =`), or the table a header opens.
pub fn key_on_line(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.split('\n').collect();
    let this = lines.get(line.checked_sub(1)?)?.trim();
    let header = |l: &str| -> Option<String> {
        let inner = l.strip_prefix('[')?.trim_start_matches('[');
        let inner = inner.split(']').next().unwrap_or(inner).trim();
        (!inner.is_empty()).then(|| clip(inner, MAX_SEGMENT * 2))
    };
    if this.starts_with('[') {
        return header(this);
    }
    let (key, _) = this.split_once('=')?;
    let key = key.trim();
    if key.is_empty() || key.starts_with('#') {
        return None;
    }
    let key = clip(key, MAX_SEGMENT * 2);
    let section = lines[..line - 1].iter().rev().find_map(|l| {
        l.trim()
            .starts_with('[')
            .then(|| header(l.trim()))
            .flatten()
    });
    Some(match section {
        Some(s) => format!("{s}.{key}"),
        None => key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_to_line_col() {
        let t = "a = 1\nbé = \"x\"\n";
        let table = [
            (0, (1, 1)),
            (4, (1, 5)),
            (6, (2, 1)),
            (11, (2, 5)),
            (99, (3, 1)),
        ];
        for (pos, want) in table {
            assert_eq!(line_col(t.as_bytes(), pos), want, "{pos}");
        }
    }

    #[test]
    fn clipping() {
        assert_eq!(clip("short", 60), "short");
        assert_eq!(clip(&"x".repeat(100), 60), format!("{}…", "x".repeat(60)));
        assert_eq!(clip("\"\"\"\nline\n\"\"\"", 60), "\"\"\"…");
        assert_eq!(clip(&"é".repeat(61), 60).chars().count(), 61);
    }

    #[test]
    fn keys() {
        let p = |v: &[&str]| dotted(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(p(&["backoff", "initial"]), "backoff.initial");
        assert_eq!(p(&["devices", "a", "codec"]), "devices.\"a\".codec");
        assert_eq!(p(&["we ird"]), "\"we ird\"");
        let t = "mode = 1\n[backoff]\n# c\ninitial = \"1s\n[paths\n";
        let table = [
            (1, Some("mode")),
            (2, Some("backoff")),
            (3, None),
            (4, Some("backoff.initial")),
            (5, Some("paths")),
            (9, None),
        ];
        for (line, want) in table {
            assert_eq!(key_on_line(t, line).as_deref(), want, "{line}");
        }
    }

    #[test]
    fn type_messages_lose_the_value() {
        assert_eq!(
            rewrite("invalid type: string \"aaaa\", expected a table [paths]"),
            "expected a table [paths]"
        );
        assert_eq!(rewrite("duplicate key"), "duplicate key");
        assert_eq!(
            rewrite("invalid type: sequence, expected a map"),
            "expected a table"
        );
    }
}
