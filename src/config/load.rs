//! TOML text → `Settings`: parse (syntax errors), warn on unknown keys, read the typed
//! schema with serde (type errors), then check ranges and meanings (value errors). Every
//! error goes through `Doc`, so each one names file:line:col, the key and the value.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::errors::{utf8_error, Doc};
use super::params::{self, PartialParams};
use super::schema::{self, without_value, Dur, FileDoc, Flag, Int, Num, Param, Text, S};
use super::{DeviceOverride, Settings};
use crate::exit::Error;

/// Bytes of a file (non-UTF-8 is an error naming the line of the first bad byte).
pub fn from_bytes(file: &Path, bytes: &[u8]) -> Result<Settings, Error> {
    let text = std::str::from_utf8(bytes).map_err(|e| utf8_error(file, bytes, &e))?;
    from_toml(file, text)
}

/// One TOML document on top of the built-in defaults.
pub fn from_toml(file: &Path, text: &str) -> Result<Settings, Error> {
    let (doc, root) = Doc::parse(file, text)?;
    let mut s = Settings {
        file: Some(file.to_path_buf()),
        ..Settings::default()
    };
    s.warnings = doc.unknown_keys(schema::SECTIONS, schema::DEVICE_KEYS);
    let f = FileDoc::deserialize(toml::de::Deserializer::from(root))
        .map_err(|e| doc.serde_error(&e))?;
    Read { doc: &doc }.apply(f, &mut s)?;
    Ok(s)
}

/// Overwrite `$target` when the file sets the key.
macro_rules! set {
    ($target:expr, $value:expr) => {
        if let Some(v) = $value {
            $target = v;
        }
    };
}

/// Checks that need the key's meaning (ranges, URLs, names), with the value's span.
struct Read<'a, 'd> {
    doc: &'a Doc<'d>,
}

impl Read<'_, '_> {
    fn err(&self, span: std::ops::Range<usize>, why: &str) -> Error {
        self.doc.error(span, why)
    }

    fn dur(&self, v: S<Dur>) -> Option<Duration> {
        v.map(|d| d.into_inner().0)
    }

    fn flag(&self, v: S<Flag>) -> Option<bool> {
        v.map(|b| b.into_inner().0)
    }

    fn text(&self, v: S<Text>) -> Option<String> {
        v.map(|t| t.into_inner().0)
    }

    fn path(&self, v: S<Text>) -> Result<Option<PathBuf>, Error> {
        match v {
            Some(t) if t.get_ref().0.is_empty() => {
                Err(self.err(t.span(), "expected a non-empty path"))
            }
            other => Ok(other.map(|t| PathBuf::from(t.into_inner().0))),
        }
    }

    fn uint(&self, v: S<Int>, min: u64, max: u64) -> Result<Option<u64>, Error> {
        match v {
            None => Ok(None),
            Some(n) if n.get_ref().0 >= min as i64 && (n.get_ref().0 as u64) <= max => {
                Ok(Some(n.get_ref().0 as u64))
            }
            Some(n) => Err(self.err(n.span(), &format!("expected an integer {min}-{max}"))),
        }
    }

    fn float(&self, v: S<Num>, min: f64, max: f64) -> Result<Option<f64>, Error> {
        match v {
            None => Ok(None),
            Some(f) if f.get_ref().0.is_finite() && (min..=max).contains(&f.get_ref().0) => {
                Ok(Some(f.get_ref().0))
            }
            Some(f) => Err(self.err(f.span(), &format!("expected a number from {min} to {max}"))),
        }
    }

    /// A device parameter, validated like the legacy file; empty falls through.
    fn param<T>(
        &self,
        v: S<Param>,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, Error> {
        let Some(v) = v else { return Ok(None) };
        let s = &v.get_ref().0;
        if s.trim().is_empty() {
            return Ok(None);
        }
        parse(s)
            .map(Some)
            .map_err(|e| self.err(v.span(), &without_value(e, s)))
    }

    fn params(&self, p: [S<Param>; 5]) -> Result<PartialParams, Error> {
        let [sample_rate, channels, bitrate, codec, thread_queue] = p;
        Ok(PartialParams {
            sample_rate: self.param(sample_rate, params::parse_sample_rate)?,
            channels: self.param(channels, params::parse_channels)?,
            bitrate: self.param(bitrate, params::parse_bitrate)?,
            codec: self.param(codec, params::parse_codec)?,
            thread_queue: self.param(thread_queue, params::parse_thread_queue)?,
        })
    }

    /// Parse a text value with `f`, naming the value's place on failure.
    fn parsed<T>(
        &self,
        v: S<Text>,
        f: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, Error> {
        v.map(|t| f(&t.get_ref().0).map_err(|e| self.err(t.span(), &e)))
            .transpose()
    }

    fn apply(&self, f: FileDoc, s: &mut Settings) -> Result<(), Error> {
        set!(s.mode, f.mode.map(|m| m.into_inner().0));
        if let Some(p) = f.paths {
            set!(s.paths.proc_asound, self.path(p.proc_asound)?);
            set!(s.paths.dev_snd, self.path(p.dev_snd)?);
            set!(s.paths.state_dir, self.path(p.state_dir)?);
            set!(s.paths.log_dir, self.path(p.log_dir)?);
            set!(s.paths.device_config, self.path(p.device_config)?);
            set!(s.paths.ffmpeg, self.path(p.ffmpeg)?);
            set!(s.paths.names_file, self.path(p.names_file)?);
        }
        if let Some(d) = f.discovery {
            set!(s.discovery.rescan, self.dur(d.rescan));
            set!(s.discovery.watch, self.flag(d.watch));
        }
        if let Some(m) = f.mediamtx {
            set!(s.mediamtx.api, self.flag(m.api));
            set!(
                s.mediamtx.api_url,
                self.parsed(m.api_url, |u| check_url(u, true))?
            );
            set!(
                s.mediamtx.rtsp_url,
                self.parsed(m.rtsp_url, |u| check_url(u, false))?
            );
            s.mediamtx.username = self.text(m.username).filter(|u| !u.is_empty());
            s.mediamtx.password = self.text(m.password);
            set!(s.mediamtx.poll, self.dur(m.poll));
            set!(s.mediamtx.timeout, self.dur(m.timeout));
            if let Some(t) = &m.rtsp_timeout {
                // ffmpeg reads 0 as "wait forever", the very thing this bounds.
                if t.get_ref().0 < Duration::from_millis(100) {
                    return Err(self.err(t.span(), "expected at least 100ms"));
                }
            }
            set!(s.mediamtx.rtsp_timeout, self.dur(m.rtsp_timeout));
        }
        if let Some(t) = f.startup {
            set!(s.startup.device_wait, self.dur(t.device_wait));
            set!(s.startup.mediamtx_wait, self.dur(t.mediamtx_wait));
            set!(s.startup.report_timeout, self.dur(t.report_timeout));
            set!(s.startup.require_devices, self.flag(t.require_devices));
        }
        if let Some(b) = f.backoff {
            set!(s.backoff.initial, self.dur(b.initial));
            set!(s.backoff.max, self.dur(b.max));
            set!(s.backoff.stable_after, self.dur(b.stable_after));
            let n = self.uint(b.max_failures, 1, 1_000_000)?;
            set!(s.backoff.max_failures, n.map(|n| n as u32));
            set!(s.backoff.failed_retry, self.dur(b.failed_retry));
        }
        if let Some(h) = f.health {
            set!(s.health.stall_timeout, self.dur(h.stall_timeout));
            set!(s.health.start_timeout, self.dur(h.start_timeout));
            set!(
                s.health.unpublished_timeout,
                self.dur(h.unpublished_timeout)
            );
            if let Some(db) = self.float(h.silence_db, -200.0, 0.0)? {
                s.health.silence_db = Some(db);
            }
            set!(s.health.silence_for, self.dur(h.silence_for));
            set!(s.health.levels, self.flag(h.levels));
        }
        if let Some(t) = f.stop {
            set!(s.stop.grace, self.dur(t.grace));
        }
        if let Some(m) = f.monitor {
            set!(s.monitor.grace, self.dur(m.grace));
            set!(s.monitor.fd_warn, self.uint(m.fd_warn, 1, u32::MAX as u64)?);
            set!(
                s.monitor.fd_critical,
                self.uint(m.fd_critical, 1, u32::MAX as u64)?
            );
            set!(s.monitor.cpu_warn, self.float(m.cpu_warn, 0.0, 10000.0)?);
            set!(
                s.monitor.cpu_critical,
                self.float(m.cpu_critical, 0.0, 10000.0)?
            );
            set!(s.monitor.rss_warn_mb, self.uint(m.rss_warn_mb, 1, 1 << 30)?);
            set!(
                s.monitor.rss_critical_mb,
                self.uint(m.rss_critical_mb, 1, 1 << 30)?
            );
        }
        if let Some(d) = f.defaults {
            s.defaults = self.params([
                d.sample_rate,
                d.channels,
                d.bitrate,
                d.codec,
                d.thread_queue,
            ])?;
        }
        for (name, d) in f.devices.into_iter().flatten() {
            let stream = match d.stream {
                Some(t) if !t.get_ref().0.trim().is_empty() => {
                    if crate::naming::sanitize(&t.get_ref().0).is_empty() {
                        return Err(self.err(t.span(), "stream name has no usable characters"));
                    }
                    Some(t.into_inner().0)
                }
                _ => None,
            };
            let o = DeviceOverride {
                params: self.params([
                    d.sample_rate,
                    d.channels,
                    d.bitrate,
                    d.codec,
                    d.thread_queue,
                ])?,
                stream,
                alsa_device: self.text(d.alsa_device).filter(|x| !x.trim().is_empty()),
                enabled: self.flag(d.enabled),
                record: self.flag(d.record),
            };
            s.devices.insert(name, o);
        }
        if let Some(m) = f.multiplex {
            if let Some(n) = m.name {
                if crate::naming::sanitize(&n.get_ref().0).is_empty() {
                    return Err(self.err(n.span(), "multiplex name has no usable characters"));
                }
                s.multiplex.name = n.into_inner().0;
            }
            set!(s.multiplex.filter, m.filter.map(|f| f.into_inner().0));
            if let Some(l) = m.devices {
                s.multiplex.devices = Some(l.into_inner().0);
            }
        }
        if let Some(m) = f.metrics {
            s.metrics.textfile = self.path(m.textfile)?;
            let listen = m.listen.filter(|l| !l.get_ref().0.is_empty());
            s.metrics.listen = self.parsed(listen, |l| {
                l.parse::<std::net::SocketAddr>()
                    .map(|_| l.to_string())
                    .map_err(|_| "expected host:port, e.g. 127.0.0.1:9899".into())
            })?;
        }
        if let Some(w) = f.web {
            self.web(w, s)?;
        }
        if let Some(l) = f.logs {
            set!(s.logs.max_size, l.max_size.map(|v| v.into_inner().0));
            set!(s.logs.keep, self.uint(l.keep, 1, 100)?.map(|n| n as u32));
        }
        if let Some(r) = f.recording {
            let rec = &mut s.recording;
            set!(rec.enabled, self.flag(r.enabled));
            set!(rec.dir, self.path(r.dir)?);
            if let Some(seg) = &r.segment {
                if seg.get_ref().0 < Duration::from_secs(1) {
                    return Err(self.err(seg.span(), "expected at least 1s"));
                }
            }
            set!(rec.segment, self.dur(r.segment));
            rec.format = self.parsed(r.format, check_format)?;
            rec.max_files = self.uint(r.max_files, 1, 1_000_000)?.map(|n| n as u32);
            rec.max_bytes = r.max_bytes.map(|v| v.into_inner().0);
            set!(rec.min_free, r.min_free.map(|v| v.into_inner().0));
        }
        Ok(())
    }
}

impl Read<'_, '_> {
    /// `[web]`: credentials come in pairs, a page on a non-loopback listener must have
    /// them (the page would otherwise show every microphone to the network), and the
    /// page needs the listener it is served on. Runs after `[metrics]` was read.
    fn web(&self, w: schema::WebT, s: &mut Settings) -> Result<(), Error> {
        let nonempty = |v: S<Text>, what: &str| -> Result<Option<String>, Error> {
            match v {
                Some(t) if t.get_ref().0.is_empty() => {
                    Err(self.err(t.span(), &format!("expected a non-empty {what}")))
                }
                other => Ok(other.map(|t| t.into_inner().0)),
            }
        };
        let user_span = w.username.as_ref().map(|t| t.span());
        let pass_span = w.password.as_ref().map(|t| t.span());
        s.web.username = nonempty(w.username, "user name")?;
        s.web.password = nonempty(w.password, "password")?;
        match (user_span, pass_span) {
            (Some(span), None) => {
                return Err(self.err(span, "web.password is missing (set both or neither)"))
            }
            (None, Some(span)) => {
                return Err(self.err(span, "web.username is missing (set both or neither)"))
            }
            (Some(span), Some(_)) if s.web.username.as_deref().is_some_and(|u| u.contains(':')) => {
                return Err(self.err(span, "a Basic auth user name cannot contain ':'"))
            }
            _ => {}
        }
        s.web.player_url = self.parsed(w.player_url, check_player_url)?;
        let Some(enabled) = w.enabled else {
            return Ok(());
        };
        s.web.enabled = enabled.get_ref().0;
        if !s.web.enabled {
            return Ok(());
        }
        let Some(listen) = &s.metrics.listen else {
            return Err(self.err(
                enabled.span(),
                "the page is served on metrics.listen, which is not set (e.g. listen = \"127.0.0.1:9899\" in [metrics])",
            ));
        };
        let loopback = listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback());
        if !loopback && s.web.username.is_none() {
            return Err(self.err(
                enabled.span(),
                &format!(
                    "metrics.listen = {listen:?} is not a loopback address: set web.username and web.password"
                ),
            ));
        }
        Ok(())
    }
}

/// `http(s)://...`; `{stream}` and `{host}` are placeholders the page fills in.
fn check_player_url(u: &str) -> Result<String, String> {
    let probe = u.replace("{stream}", "s").replace("{host}", "h");
    check_url(&probe, true)?;
    if u.chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '<' || c == '>')
    {
        return Err("a URL cannot contain spaces, quotes or angle brackets".into());
    }
    Ok(u.to_string())
}

/// A recording container: an ffmpeg muxer / file extension name such as `ogg` or `mka`.
fn check_format(f: &str) -> Result<String, String> {
    if super::RECORDING_FORMATS.contains(&f) {
        Ok(f.to_string())
    } else {
        Err(format!(
            "expected one of {}",
            super::RECORDING_FORMATS.join(", ")
        ))
    }
}

fn check_url(u: &str, http: bool) -> Result<String, String> {
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
    Ok(u.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn err(text: &str) -> String {
        from_toml(Path::new("/e/m.toml"), text).unwrap_err().message
    }

    /// Each kind of value error: place, key, value once, and why.
    #[test]
    fn value_errors_table() {
        let table = [
            ("[backoff]\ninitial = \"200\"\n", "/e/m.toml:2:11: backoff.initial = \"200\": invalid duration (needs a unit: ms, s, m, h)"),
            ("mode = 1\n", "/e/m.toml:1:8: mode = 1: expected individual or multiplex"),
            ("[logs]\nkeep = 101\n", "/e/m.toml:2:8: logs.keep = 101: expected an integer 1-100"),
            ("[health]\nsilence_db = 3\n", "/e/m.toml:2:14: health.silence_db = 3: expected a number from -200 to 0"),
            ("[mediamtx]\npassword = 5\n", "/e/m.toml:2:12: mediamtx.password = ***: expected a string"),
            ("[mediamtx]\nrtsp_url = \"x://u:pw@h\"\n", "/e/m.toml:2:12: mediamtx.rtsp_url = \"x://***@h\": expected a URL starting with rtsp://"),
            ("[recording]\nsegment = \"500ms\"\n", "/e/m.toml:2:11: recording.segment = \"500ms\": expected at least 1s"),
            ("[mediamtx]\nrtsp_timeout = \"0s\"\n", "/e/m.toml:2:16: mediamtx.rtsp_timeout = \"0s\": expected at least 100ms"),
            ("[recording]\nformat = \"MP4\"\n", "/e/m.toml:2:10: recording.format = \"MP4\": expected one of ogg, ts, m4a, mp3, aiff, mkv"),
            ("[recording]\nmin_free = \"60%\"\n", "/e/m.toml:2:12: recording.min_free = \"60%\": invalid min_free (a percentage above 0 and at most 50%)"),
            ("[recording]\nmin_free = \"lots\"\n", "/e/m.toml:2:12: recording.min_free = \"lots\": invalid min_free (expected e.g. \"5%\" or \"100M\")"),
            ("[recording]\nmin_free = 0\n", "/e/m.toml:2:12: recording.min_free = 0: expected a percentage like \"5%\" or a size like \"100M\""),
            ("[devices.\"a b\"]\nrecord = 1\n", "/e/m.toml:2:10: devices.\"a b\".record = 1: expected true or false"),
            ("[paths]\nnames_file = \"\"\n", "/e/m.toml:2:14: paths.names_file = \"\": expected a non-empty path"),
            ("[multiplex]\nname = \"--\"\n", "/e/m.toml:2:8: multiplex.name = \"--\": multiplex name has no usable characters"),
            ("[web]\nenabled = true\n", "/e/m.toml:2:11: web.enabled = true: the page is served on metrics.listen, which is not set (e.g. listen = \"127.0.0.1:9899\" in [metrics])"),
            ("[metrics]\nlisten = \"0.0.0.0:9899\"\n[web]\nenabled = true\n", "/e/m.toml:4:11: web.enabled = true: metrics.listen = \"0.0.0.0:9899\" is not a loopback address: set web.username and web.password"),
            ("[web]\nusername = \"op\"\n", "/e/m.toml:2:12: web.username = \"op\": web.password is missing (set both or neither)"),
            ("[web]\npassword = \"hunter22\"\n", "/e/m.toml:2:12: web.password = ***: web.username is missing (set both or neither)"),
            ("[web]\nusername = \"a:b\"\npassword = \"x\"\n", "/e/m.toml:2:12: web.username = \"a:b\": a Basic auth user name cannot contain ':'"),
            ("[web]\nusername = \"a\"\npassword = \"\"\n", "/e/m.toml:3:12: web.password = ***: expected a non-empty password"),
            ("[web]\nplayer_url = \"ftp://x/{stream}\"\n", "/e/m.toml:2:14: web.player_url = \"ftp://x/{stream}\": expected a URL starting with http://"),
            ("[web]\nenabled = \"yes\"\n", "/e/m.toml:2:11: web.enabled = \"yes\": expected true or false"),
        ];
        for (text, want) in table {
            assert_eq!(err(text), want, "{text:?}");
        }
    }

    #[test]
    fn web_on_loopback_needs_no_password_elsewhere_it_does() {
        let ok = |t: &str| from_toml(Path::new("/e/m.toml"), t).unwrap().web;
        let w = ok("[metrics]\nlisten = \"127.0.0.1:9899\"\n[web]\nenabled = true\n");
        assert!(w.enabled && w.username.is_none());
        let w = ok("[metrics]\nlisten = \"[::1]:9899\"\n[web]\nenabled = true\n");
        assert!(w.enabled);
        let w = ok(
            "[metrics]\nlisten = \"0.0.0.0:9899\"\n[web]\nenabled = true\n\
                    username = \"op\"\npassword = \"s3cret\"\n\
                    player_url = \"http://{host}:8889/{stream}\"\n",
        );
        assert_eq!(w.password.as_deref(), Some("s3cret"));
        assert_eq!(w.player_url.as_deref(), Some("http://{host}:8889/{stream}"));
        assert!(!format!("{w:?}").contains("s3cret"));
        // Off: the listener may be anywhere (only /metrics is served there).
        let w = ok("[metrics]\nlisten = \"0.0.0.0:9899\"\n[web]\nenabled = false\n");
        assert!(!w.enabled);
    }

    #[test]
    fn non_utf8_names_the_line_of_the_first_bad_byte() {
        let e = from_bytes(Path::new("f.toml"), b"[stop]\ngrace = \"1\xffs\"\n").unwrap_err();
        assert_eq!(
            e.message,
            "f.toml:2:11: stop.grace: not valid UTF-8 (byte 0xff)"
        );
        assert_eq!(e.exit, crate::exit::Exit::Config);
    }

    #[test]
    fn new_settings_read() {
        let s = from_toml(
            Path::new("f.toml"),
            "[paths]\nnames_file = \"/n.json\"\n[discovery]\nwatch = false\n[health]\nlevels = false\n\
             [recording]\nenabled = true\ndir = \"/r\"\nsegment = \"1m\"\nformat = \"mkv\"\nmax_files = 3\nmax_bytes = 2048\nmin_free = \"1M\"\n\
             [devices.x]\nrecord = true\n",
        )
        .unwrap();
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        assert_eq!(s.paths.names_file, Path::new("/n.json"));
        assert!(!s.discovery.watch && !s.health.levels);
        let r = &s.recording;
        assert!(r.enabled);
        assert_eq!(
            (
                r.dir.as_path(),
                r.segment,
                r.format.as_deref(),
                r.max_files,
                r.max_bytes
            ),
            (
                Path::new("/r"),
                Duration::from_secs(60),
                Some("mkv"),
                Some(3),
                Some(2048)
            )
        );
        assert_eq!(r.min_free, super::super::MinFree::Bytes(1 << 20));
        assert_eq!(s.devices["x"].record, Some(true));
        assert_eq!(s.devices["x"].enabled, None);
    }

    /// The example, uncommented, documents the true defaults of the new settings.
    #[test]
    fn example_shows_new_defaults() {
        let example = include_str!("../../etc/stream-manager.toml.example");
        let live: String = example
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(r) if r.starts_with(|c: char| c.is_ascii_alphabetic() || c == '[') => r,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let s = from_toml(Path::new("x"), &live).unwrap();
        let d = Settings::default();
        assert_eq!(s.paths.names_file, d.paths.names_file);
        assert_eq!((s.discovery.watch, s.health.levels), (true, true));
        let (r, dr) = (&s.recording, &d.recording);
        assert_eq!(
            (r.enabled, &r.dir, r.segment),
            (dr.enabled, &dr.dir, dr.segment)
        );
        assert_eq!(s.recording.max_bytes, Some(500 << 20));
        assert_eq!(s.recording.min_free, dr.min_free);
    }
}
