//! Prometheus text exposition (format 0.0.4): a builder, an atomic textfile writer for
//! node_exporter's textfile collector, and a strict checker that tests use to validate
//! whatever the supervisor exposes. The `GET /metrics` server is `crate::http`.
//!
//! No client library: the format is a handful of lines and the product needs no
//! registry, only "render the current snapshot".

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

/// The `/metrics` listener lives in `crate::http`.
pub use crate::http::{serve, serve_listener};

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
    if path.file_name().is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: metrics textfile path has no file name", path.display()),
        ));
    }
    crate::fsafe::write_atomic(path, text.as_bytes(), 0o644)
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
        assert_eq!(Exposition::new().render(), "");
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
