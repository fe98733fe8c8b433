//! A strict checker for the Prometheus text exposition, used by the tests beside the real
//! parser (`promtool check metrics`, tests/prometheus.rs): it names the line of a fault,
//! so a failing test says where.

use std::collections::{HashMap, HashSet};

use mediamtx_stream_manager::metrics::{valid_label_name, valid_metric_name};

/// Strictly validate a text exposition: every sample `name{labels} value [timestamp]`
/// with valid names, label names, escapes and floats; every family has a `# TYPE`
/// before its samples; HELP/TYPE at most once; a family's samples grouped together;
/// no duplicate series; counters non-negative; the text ends with a newline.
/// The error names the line number.
pub fn check_exposition(text: &str) -> Result<(), String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("last line does not end with a newline".into());
    }
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashSet<String> = HashSet::new();
    let mut started: HashSet<String> = HashSet::new(); // families with samples
    let mut closed: HashSet<String> = HashSet::new(); // families whose group ended
    let mut current: Option<String> = None;
    let mut series: HashSet<String> = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let err = |m: String| format!("line {n}: {m}");
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut toks = rest.trim_start_matches([' ', '\t']).splitn(3, [' ', '\t']);
            let kw = toks.next().unwrap_or("");
            if kw != "HELP" && kw != "TYPE" {
                continue; // plain comment
            }
            let name = toks.next().unwrap_or("");
            let arg = toks.next().unwrap_or("");
            if !valid_metric_name(name) {
                return Err(err(format!("invalid metric name {name:?} in # {kw}")));
            }
            if started.contains(name) {
                return Err(err(format!("# {kw} {name} after its samples")));
            }
            if kw == "HELP" {
                if !helps.insert(name.to_string()) {
                    return Err(err(format!("second # HELP for {name}")));
                }
                unescape(arg, false).map_err(|e| err(format!("HELP of {name}: {e}")))?;
            } else {
                let t = arg.trim();
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                    return Err(err(format!("unknown type {t:?} for {name}")));
                }
                if types.insert(name.to_string(), t.to_string()).is_some() {
                    return Err(err(format!("second # TYPE for {name}")));
                }
            }
            continue;
        }
        let s = parse_sample(line).map_err(&err)?;
        let family = family_of(&s.name, &types)
            .ok_or_else(|| err(format!("sample {} has no # TYPE line before it", s.name)))?;
        if current.as_deref() != Some(family.as_str()) {
            if let Some(prev) = current.take() {
                closed.insert(prev);
            }
            if closed.contains(&family) {
                return Err(err(format!("samples of {family} are not grouped together")));
            }
            current = Some(family.clone());
        }
        started.insert(family.clone());
        if types.get(&family).map(String::as_str) == Some("counter")
            && (s.value.is_nan() || s.value < 0.0)
        {
            return Err(err(format!("counter {} has value {}", s.name, s.value)));
        }
        let mut labels = s.labels.clone();
        labels.sort();
        let key = format!("{}{:?}", s.name, labels);
        if !series.insert(key) {
            return Err(err(format!("duplicate series {}{:?}", s.name, labels)));
        }
    }
    Ok(())
}

/// The family a sample belongs to: its own name if typed, else a histogram/summary base.
fn family_of(name: &str, types: &HashMap<String, String>) -> Option<String> {
    if types.contains_key(name) {
        return Some(name.to_string());
    }
    for suffix in ["_bucket", "_count", "_sum"] {
        if let Some(base) = name.strip_suffix(suffix) {
            match types.get(base).map(String::as_str) {
                Some("histogram") => return Some(base.to_string()),
                Some("summary") if suffix != "_bucket" => return Some(base.to_string()),
                _ => {}
            }
        }
    }
    None
}

struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Parse `name[{k="v",...}] value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels: Vec<(String, String)> = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            rest = rest.trim_start_matches([' ', '\t']);
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = rest
                .find('=')
                .ok_or_else(|| format!("{name}: label without '='"))?;
            let lname = rest[..eq].trim_end();
            if !valid_label_name(lname) {
                return Err(format!("{name}: invalid label name {lname:?}"));
            }
            if labels.iter().any(|(k, _)| k == lname) {
                return Err(format!("{name}: label {lname} given twice"));
            }
            rest = rest[eq + 1..].trim_start_matches([' ', '\t']);
            rest = rest
                .strip_prefix('"')
                .ok_or_else(|| format!("{name}: value of {lname} is not quoted"))?;
            let close = closing_quote(rest)
                .ok_or_else(|| format!("{name}: unterminated value of {lname}"))?;
            let value = unescape(&rest[..close], true)
                .map_err(|e| format!("{name}: label {lname}: {e}"))?;
            labels.push((lname.to_string(), value));
            rest = rest[close + 1..].trim_start_matches([' ', '\t']);
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return Err(format!("{name}: expected ',' or '}}' after label {lname}"));
            }
        }
    }
    if !rest.starts_with([' ', '\t']) {
        return Err(format!("{name}: expected a space before the value"));
    }
    let mut toks = rest.split([' ', '\t']).filter(|t| !t.is_empty());
    let vtext = toks
        .next()
        .ok_or_else(|| format!("{name}: missing value"))?;
    let value = parse_float(vtext).ok_or_else(|| format!("{name}: invalid value {vtext:?}"))?;
    if let Some(ts) = toks.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("{name}: invalid timestamp {ts:?}"))?;
    }
    if let Some(extra) = toks.next() {
        return Err(format!("{name}: unexpected {extra:?} after the value"));
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Index of the first unescaped `"`.
fn closing_quote(s: &str) -> Option<usize> {
    let mut esc = false;
    for (i, c) in s.char_indices() {
        match (esc, c) {
            (true, _) => esc = false,
            (false, '\\') => esc = true,
            (false, '"') => return Some(i),
            _ => {}
        }
    }
    None
}

/// Undo `\\`, `\n` (and `\"` in label values); any other escape is an error.
fn unescape(s: &str, label: bool) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if label => out.push('"'),
            Some(o) => return Err(format!("invalid escape \\{o}")),
            None => return Err("dangling backslash".into()),
        }
    }
    Ok(out)
}

/// A Prometheus float: decimal/scientific, `NaN`, `+Inf`, `-Inf`, `Inf`.
fn parse_float(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ if s
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
            && s.chars().any(|c| c.is_ascii_digit()) =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}
