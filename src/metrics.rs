//! Prometheus text exposition (format 0.0.4): a builder, an atomic textfile writer for
//! node_exporter's textfile collector, a tiny `GET /metrics` server, and a strict checker
//! that tests use to validate whatever the supervisor exposes.
//!
//! No client library: the format is a handful of lines and the product needs no
//! registry, only "render the current snapshot".

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Metric family type, as written on the `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

#[derive(Debug, Clone)]
struct Family {
    name: String,
    help: String,
    kind: Kind,
    /// Rendered `{a="b"}` label sets (possibly empty) and values, in insertion order.
    samples: Vec<(String, f64)>,
}

/// One scrape's worth of metrics. Families keep first-insertion order; samples of a
/// family are grouped under one HELP/TYPE; adding the same series twice keeps the last
/// value, so the output never has duplicate series.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    families: Vec<Family>,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Add a gauge sample (a value that goes up and down).
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.add(Kind::Gauge, name, help, labels, value);
    }

    /// Add a counter sample (monotonic; by convention named `*_total`).
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.add(Kind::Counter, name, help, labels, value);
    }

    /// Invalid names or a type clash are programming errors, but never worth a panic in a
    /// 24/7 supervisor: the sample is dropped with a warning.
    fn add(&mut self, kind: Kind, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        if !valid_metric_name(name) {
            log::warn!("metrics: invalid metric name {name:?}; sample dropped");
            return;
        }
        let mut seen = HashSet::new();
        for (k, _) in labels {
            if !valid_label_name(k) || !seen.insert(*k) {
                log::warn!("metrics: invalid or repeated label {k:?} on {name}; sample dropped");
                return;
            }
        }
        let rendered = render_labels(labels);
        let fam = match self.families.iter_mut().position(|f| f.name == name) {
            Some(i) => &mut self.families[i],
            None => {
                self.families.push(Family {
                    name: name.to_string(),
                    help: help.to_string(),
                    kind,
                    samples: Vec::new(),
                });
                let last = self.families.len() - 1;
                &mut self.families[last]
            }
        };
        if fam.kind != kind {
            log::warn!(
                "metrics: {name} is a {} and cannot take a {} sample; dropped",
                fam.kind.as_str(),
                kind.as_str()
            );
            return;
        }
        match fam.samples.iter_mut().find(|(l, _)| *l == rendered) {
            Some(s) => s.1 = value,
            None => fam.samples.push((rendered, value)),
        }
    }

    /// The text exposition; empty string when there is nothing to expose.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.families {
            let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(&f.help));
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.as_str());
            for (labels, v) in &f.samples {
                let _ = writeln!(out, "{}{} {}", f.name, labels, format_value(*v));
            }
        }
        out
    }
}

/// `{a="x",b="y"}` with values escaped, or "" for no labels.
fn render_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// Label values escape backslash, double quote and newline.
pub fn escape_label_value(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

/// HELP text escapes backslash and newline only.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Go-compatible float text: `NaN`, `+Inf`, `-Inf`, else shortest decimal.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn valid_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, and not `__`-prefixed (reserved for Prometheus).
pub fn valid_label_name(s: &str) -> bool {
    let mut c = s.chars();
    !s.starts_with("__")
        && matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// Replace `path` atomically (temp file in the same directory, then rename) so
/// node_exporter never reads half a file; mode 0644 so it can read it at all. The temp
/// name does not end in `.prom`, so the collector ignores it.
pub fn write_textfile(path: &Path, text: &str) -> io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: metrics textfile path has no file name", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        // The umask may have narrowed the mode at create time.
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Largest request head accepted; a scrape request is a few hundred bytes.
const MAX_REQUEST: usize = 8 * 1024;
/// A client that does not send its request head within this is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Concurrent connections served; more are closed at once (scrapers retry).
const MAX_CONNECTIONS: usize = 16;

/// Bind `listen` and serve `GET /metrics` from a background thread.
pub fn serve(
    listen: SocketAddr,
    render: Arc<dyn Fn() -> String + Send + Sync>,
) -> io::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(listen)?;
    serve_listener(listener, render)
}

/// Serve on an already bound listener (lets callers and tests bind port 0 first).
pub fn serve_listener(
    listener: TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
) -> io::Result<JoinHandle<()>> {
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || loop {
            let stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) => {
                    log::debug!("metrics: accept: {e}");
                    // EMFILE and friends: do not spin.
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                continue; // dropping the stream closes it
            }
            active.fetch_add(1, Ordering::SeqCst);
            let (render, active2) = (render.clone(), active.clone());
            let spawned = std::thread::Builder::new()
                .name("metrics-conn".into())
                .spawn(move || {
                    handle_connection(stream, &*render);
                    active2.fetch_sub(1, Ordering::SeqCst);
                });
            if spawned.is_err() {
                active.fetch_sub(1, Ordering::SeqCst);
            }
        })
}

/// Answer one request and close; every failure just drops the connection.
fn handle_connection(mut s: TcpStream, render: &(dyn Fn() -> String + Send + Sync)) {
    let _ = s.set_read_timeout(Some(READ_TIMEOUT));
    let _ = s.set_write_timeout(Some(WRITE_TIMEOUT));
    let head = match read_head(&mut s) {
        Ok(Some(h)) => h,
        Ok(None) => {
            let _ = respond(&mut s, 431, "text/plain", b"request too large\n", false);
            return;
        }
        Err(_) => return,
    };
    let (status, ctype, body, head_only) = route(&head, render);
    let _ = respond(&mut s, status, ctype, body.as_bytes(), head_only);
}

/// Decide the answer for a request head: (status, content type, body, HEAD?).
fn route(
    head: &str,
    render: &(dyn Fn() -> String + Send + Sync),
) -> (u16, &'static str, String, bool) {
    let mut parts = head.lines().next().unwrap_or("").split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let ok_version = matches!(version, Some(v) if v.starts_with("HTTP/1."));
    let (Some(method), Some(target), true) = (method, target, ok_version) else {
        return (400, "text/plain", "bad request\n".into(), false);
    };
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let text = std::panic::catch_unwind(std::panic::AssertUnwindSafe(render));
            match text {
                Ok(t) => (
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    t,
                    head_only,
                ),
                Err(_) => (500, "text/plain", "render failed\n".into(), head_only),
            }
        }
        _ => (
            404,
            "text/plain",
            "not found; try /metrics\n".into(),
            head_only,
        ),
    }
}

/// Read up to the blank line; `Ok(None)` when the head exceeds `MAX_REQUEST`.
fn read_head(s: &mut TcpStream) -> io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_head_end(&buf) {
            return Ok(Some(String::from_utf8_lossy(&buf[..end]).into_owned()));
        }
        if buf.len() > MAX_REQUEST {
            return Ok(None);
        }
    }
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| b.windows(2).position(|w| w == b"\n\n"))
}

fn respond(
    s: &mut TcpStream,
    status: u16,
    ctype: &str,
    body: &[u8],
    head_only: bool,
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    if !head_only {
        s.write_all(body)?;
    }
    s.flush()
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_groups_escapes_and_dedups() {
        let mut e = Exposition::new();
        e.gauge("up", "Is it up.", &[("stream", "a")], 1.0);
        e.counter(
            "restarts_total",
            "Restarts.\nSecond \\ line",
            &[("stream", "a\"b\\c\nd")],
            3.0,
        );
        e.gauge("up", "ignored second help", &[("stream", "b")], 0.0);
        e.gauge("up", "", &[("stream", "a")], 2.0); // same series: replaced
        e.gauge("bad-name", "", &[], 1.0); // dropped
        e.gauge("x", "", &[("__reserved", "v")], 1.0); // dropped
        e.counter("up", "", &[], 1.0); // type clash: dropped
        e.gauge("nan", "", &[], f64::NAN);
        e.gauge("inf", "", &[], f64::NEG_INFINITY);
        let want = "\
# HELP up Is it up.
# TYPE up gauge
up{stream=\"a\"} 2
up{stream=\"b\"} 0
# HELP restarts_total Restarts.\\nSecond \\\\ line
# TYPE restarts_total counter
restarts_total{stream=\"a\\\"b\\\\c\\nd\"} 3
# HELP nan 
# TYPE nan gauge
nan NaN
# HELP inf 
# TYPE inf gauge
inf -Inf
";
        let got = e.render();
        assert_eq!(got, want);
        check_exposition(&got).unwrap();
        assert_eq!(Exposition::new().render(), "");
    }

    #[test]
    fn checker_accepts_good() {
        let good = [
            "",
            "# TYPE a gauge\na 1\n",
            "# HELP a x \\\\ \\n\n# TYPE a gauge\na{b=\"c\",d=\"\\\"\\\\\\n\"} 1.5e3 1700000000\n",
            "# TYPE a counter\na{x=\"1\"} 0\na{x=\"2\"} +Inf\n",
            "# just a comment\n\n# TYPE a gauge\na{b=\"1\",} -0.5\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n",
            "# TYPE a gauge\na NaN\n# TYPE b gauge\nb 1\n",
            "# TYPE a:b gauge\na:b{c=\"ü\"} 1\n",
        ];
        for t in good {
            assert_eq!(check_exposition(t), Ok(()), "{t:?}");
        }
    }

    #[test]
    fn checker_rejects_bad() {
        let bad = [
            ("# TYPE a gauge\na 1", "newline"),
            ("a 1\n", "no # TYPE"),
            ("# TYPE a gauge\na 1\n# TYPE a gauge\n", "after its samples"),
            ("# TYPE a gauge\n# TYPE a counter\na 1\n", "second # TYPE"),
            (
                "# HELP a x\n# HELP a y\n# TYPE a gauge\na 1\n",
                "second # HELP",
            ),
            ("# TYPE a gauge\na 1\na 2\n", "duplicate series"),
            (
                "# TYPE a gauge\na{x=\"1\",y=\"2\"} 1\na{y=\"2\",x=\"1\"} 1\n",
                "duplicate",
            ),
            (
                "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x=\"1\"} 1\n",
                "not grouped",
            ),
            ("# TYPE a gauge\na{x=\"\\t\"} 1\n", "invalid escape"),
            ("# TYPE a gauge\na{x=\"1} 1\n", "unterminated"),
            ("# TYPE a gauge\na{x=1} 1\n", "not quoted"),
            ("# TYPE a gauge\na{1x=\"1\"} 1\n", "invalid label name"),
            ("# TYPE a gauge\na{__x=\"1\"} 1\n", "invalid label name"),
            ("# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n", "twice"),
            ("# TYPE a gauge\na one\n", "invalid value"),
            ("# TYPE a gauge\na 0x10\n", "invalid value"),
            ("# TYPE a gauge\na\n", "space before the value"),
            ("# TYPE a gauge\na 1 2.5\n", "timestamp"),
            ("# TYPE a gauge\na 1 2 3\n", "unexpected"),
            ("# TYPE a gauge\na{x=\"1\"}1\n", "space before"),
            ("# TYPE 1a gauge\n", "invalid metric name"),
            ("# TYPE a-b gauge\n", "invalid metric name"),
            ("# TYPE a gaug\na 1\n", "unknown type"),
            ("# HELP a bad \\q\n# TYPE a gauge\n", "invalid escape"),
            ("# TYPE c counter\nc -1\n", "counter"),
            ("# TYPE c counter\nc NaN\n", "counter"),
            ("# TYPE a gauge\na{x=\"1\" y=\"2\"} 1\n", "expected ','"),
        ];
        for (t, why) in bad {
            match check_exposition(t) {
                Ok(()) => panic!("accepted bad exposition {t:?}"),
                Err(e) => assert!(e.contains(why), "{t:?}: {e} (wanted {why})"),
            }
        }
    }

    #[test]
    fn name_validation_table() {
        for (n, ok) in [
            ("a", true),
            ("_a:b_1", true),
            (":x", true),
            ("", false),
            ("1a", false),
            ("a-b", false),
            ("a b", false),
            ("ä", false),
        ] {
            assert_eq!(valid_metric_name(n), ok, "{n}");
        }
        for (n, ok) in [("a", true), ("_a1", true), ("a:b", false), ("__a", false)] {
            assert_eq!(valid_label_name(n), ok, "{n}");
        }
    }

    #[test]
    fn route_table() {
        let r = || "x 1\n".to_string();
        for (head, status, body) in [
            ("GET /metrics HTTP/1.1\r\nHost: x", 200, "x 1\n"),
            ("GET /metrics?foo=1 HTTP/1.0", 200, "x 1\n"),
            ("HEAD /metrics HTTP/1.1", 200, "x 1\n"),
            ("GET / HTTP/1.1", 404, "not found; try /metrics\n"),
            ("POST /metrics HTTP/1.1", 404, "not found; try /metrics\n"),
            ("GET /metrics", 400, "bad request\n"),
            ("\u{0}\u{1}garbage", 400, "bad request\n"),
            ("", 400, "bad request\n"),
        ] {
            let (s, _, b, _) = route(head, &r);
            assert_eq!((s, b.as_str()), (status, body), "{head:?}");
        }
        let boom = || -> String { panic!("render bug") };
        assert_eq!(route("GET /metrics HTTP/1.1", &boom).0, 500);
    }

    #[test]
    fn textfile_is_atomic_and_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mediamtx_audio.prom");
        write_textfile(&p, "# TYPE a gauge\na 1\n").unwrap();
        write_textfile(&p, "# TYPE a gauge\na 2\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "# TYPE a gauge\na 2\n"
        );
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temp file left behind");
        let missing = d.path().join("no/such/dir/x.prom");
        assert!(write_textfile(&missing, "").is_err());
    }
}
