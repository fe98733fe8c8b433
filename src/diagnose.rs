//! `diagnose [--bundle FILE]`: everything needed to ask for help, in one go (SPEC §2):
//! versions, the effective configuration, devices, live status, `monitor` findings, disk
//! space, the installed unit and cron file, and the last lines of every log.
//!
//! It reuses the code the other verbs run (`gather_status`, `monitor::check`,
//! `cmd_config::settings_json`, discovery and the stream plan), so it shows what they would.
//! It works without a supervisor and as non-root: what it cannot read is named in a "could
//! not read" list, never a failure. Exit 0 whenever the report was produced; 1 only when
//! `--bundle` cannot be written.
//!
//! Secrets: values are redacted where they are known (password and username as `***`,
//! `user:pass@` in every URL), and every text then goes through a last scrub that replaces
//! any configured credential of 3 characters or more wherever it appears (a log line, a
//! hand-edited unit file).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cli::Global;
use crate::config::Settings;
use crate::exit::{Error, Exit};

/// Lines kept from the end of each log.
pub const LOG_LINES: usize = 100;
/// The directory every file of a bundle sits in.
pub const BUNDLE_DIR: &str = "mediamtx-stream-manager-diagnose";

/// One file of the bundle; the text report is every part's text in order.
pub struct Part {
    /// Path inside the bundle, e.g. `logs/mic1.log`.
    pub file: String,
    /// Heading in the text report (`None`: bundle only, e.g. JSON twins).
    pub title: Option<String>,
    pub text: String,
}

/// The whole report before it is printed or packed.
pub struct Report {
    pub parts: Vec<Part>,
    /// What could not be read and why, one line each.
    pub unreadable: Vec<String>,
}

impl Report {
    fn add(&mut self, file: impl Into<String>, title: Option<&str>, text: String) {
        self.parts.push(Part {
            file: file.into(),
            title: title.map(str::to_string),
            text,
        });
    }

    /// The text report: every titled part under its heading, then what could not be read.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for p in &self.parts {
            if let Some(t) = &p.title {
                out.push_str(&format!("===== {t} =====\n"));
                out.push_str(&p.text);
                if !p.text.ends_with('\n') {
                    out.push('\n');
                }
                out.push('\n');
            }
        }
        out.push_str("===== could not read =====\n");
        out.push_str(&unreadable_text(&self.unreadable));
        out
    }
}

fn unreadable_text(u: &[String]) -> String {
    if u.is_empty() {
        return "nothing: everything was readable\n".into();
    }
    let mut s: String = u.iter().map(|l| format!("{l}\n")).collect();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        s.push_str("(run as root to include these)\n");
    }
    s
}

/// Masks credentials in free text: URL user-info first, then every known secret literal.
pub struct Scrub {
    literals: Vec<String>,
}

impl Scrub {
    /// Secrets of these settings: the password, the username, and both halves of any
    /// `user:pass@` in the RTSP and API URLs (as written and percent-decoded).
    pub fn new(s: &Settings) -> Scrub {
        let mut lits: Vec<String> = Vec::new();
        lits.extend(s.mediamtx.password.clone());
        lits.extend(s.mediamtx.username.clone());
        for url in [&s.mediamtx.rtsp_url, &s.mediamtx.api_url] {
            if let Some(info) = userinfo(url) {
                for part in info.split(':') {
                    lits.push(part.to_string());
                    lits.push(crate::mediamtx::percent_decode(part));
                }
            }
        }
        Scrub::from_literals(lits)
    }

    pub fn from_literals(lits: Vec<String>) -> Scrub {
        let mut literals: Vec<String> = lits.into_iter().filter(|l| l.len() >= 3).collect();
        // Longest first, so a secret that contains another is masked whole.
        literals.sort_by_key(|l| std::cmp::Reverse(l.len()));
        literals.dedup();
        Scrub { literals }
    }

    pub fn text(&self, t: &str) -> String {
        let mut out: String = t
            .lines()
            .map(crate::util::redact_text)
            .collect::<Vec<_>>()
            .join("\n");
        if t.ends_with('\n') {
            out.push('\n');
        }
        for l in &self.literals {
            if out.contains(l.as_str()) {
                out = out.replace(l.as_str(), "***");
            }
        }
        out
    }
}

/// `user:pass` of `scheme://user:pass@host/...`, if any.
fn userinfo(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let host_end = rest.find('/').unwrap_or(rest.len());
    let at = rest[..host_end].rfind('@')?;
    Some(&rest[..at])
}

/// Why a read failed, in words (`permission denied`), with the path.
fn cannot(path: &Path, e: &std::io::Error) -> String {
    format!("{}: {}", path.display(), crate::util::io_reason(e))
}

/// Settings as the other verbs would load them; when that fails (a config error, or a
/// 0600 config file read by a non-root user), built-in defaults with the reason.
fn settings(global: &Global, unreadable: &mut Vec<String>) -> (Settings, Option<String>) {
    match Settings::load(global) {
        Ok(s) => (s, None),
        Err(e) => {
            let why = e.to_string();
            if why.contains("cannot read config file") {
                unreadable.push(why.clone());
            }
            let mut s = Settings::default();
            let over = crate::config::Overrides::from(global);
            let _ = s.apply_env_and_cli(&over, &|k| std::env::var(k).ok());
            (s, Some(why))
        }
    }
}

/// Gather everything. Never fails: each part says what it could not get.
pub fn gather(global: &Global, root: &Path) -> (Report, Scrub) {
    let mut r = Report {
        parts: Vec::new(),
        unreadable: Vec::new(),
    };
    let (settings, config_error) = settings(global, &mut r.unreadable);
    let scrub = Scrub::new(&settings);
    let snap = crate::commands::gather_status(&settings, global);
    if let Some(n) = &snap.supervisor.note {
        r.unreadable
            .push(format!("live status from the control socket: {n}"));
    }

    r.add("versions.txt", Some("versions"), versions(&settings, &snap));

    let cfg = crate::cmd_config::settings_json(&settings);
    r.add(
        "config.txt",
        Some("effective configuration (secrets as ***)"),
        config_text(&settings, &cfg, config_error.as_deref()),
    );
    r.add(
        "config.json",
        None,
        serde_json::to_string_pretty(&mask_username(cfg)).unwrap_or_default() + "\n",
    );

    let (devices, devices_json) = devices(&settings, &mut r.unreadable);
    r.add("devices.txt", Some("devices"), devices);
    r.add("devices.json", None, devices_json);

    let mut status = crate::status::render(&snap);
    status.push_str(&crate::status::render_names(&settings, &snap));
    r.add("status.txt", Some("status"), status);
    let mut sj = serde_json::to_value(&snap).unwrap_or_default();
    sj["names"] = crate::status::names_view(&settings, &snap);
    r.add(
        "status.json",
        None,
        serde_json::to_string_pretty(&sj).unwrap_or_default() + "\n",
    );

    let (findings, samples) = crate::monitor::check(&settings);
    let exit = crate::monitor::verdict(&findings);
    r.add(
        "monitor.txt",
        Some("monitor findings"),
        monitor_text(&findings, exit, &snap),
    );
    r.add(
        "monitor.json",
        None,
        serde_json::to_string_pretty(&serde_json::json!({
            "exit": exit.code(), "findings": findings, "samples": samples,
        }))
        .unwrap_or_default()
            + "\n",
    );

    r.add("disk.txt", Some("disk space"), disk(&settings));

    let installed = installed(root, &mut r);
    r.add(
        "installed.txt",
        Some("installed unit and cron files"),
        installed,
    );

    logs(&settings, &snap, &mut r);

    // Every text through the scrub, whatever its source.
    for p in &mut r.parts {
        p.text = scrub.text(&p.text);
    }
    r.unreadable = r.unreadable.iter().map(|u| scrub.text(u)).collect();
    (r, scrub)
}

fn versions(s: &Settings, snap: &crate::status::Snapshot) -> String {
    let mut out = String::new();
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "?".into());
    out.push_str(&format!(
        "mediamtx-stream-manager {} ({exe})\n",
        env!("CARGO_PKG_VERSION")
    ));
    out.push_str(&format!("ffmpeg: {}\n", ffmpeg_version(&s.paths.ffmpeg)));
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|t| t.trim().to_string())
            .unwrap_or_else(|e| format!("unknown ({})", crate::util::io_reason(&e)))
    };
    out.push_str(&format!(
        "kernel: {} ({})\n",
        read("/proc/sys/kernel/osrelease"),
        std::env::consts::ARCH
    ));
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    out.push_str(&format!("os: {os}\n"));
    let m = &snap.mediamtx;
    let mtx = if !m.enabled {
        "API not used (mediamtx.api = false)".to_string()
    } else {
        match (m.reachable, &m.version, &m.error) {
            (Some(true), Some(v), _) => format!("{v} (from {}/v3/info)", m.api_url),
            (Some(true), None, _) => format!("reachable at {}, version not reported", m.api_url),
            (_, _, Some(e)) => format!("not reachable at {}: {e}", m.api_url),
            _ => format!("not polled yet ({})", m.api_url),
        }
    };
    out.push_str(&format!("mediamtx: {mtx}\n"));
    out.push_str(&format!(
        "time: {} (uid {})\n",
        crate::util::rfc3339(crate::util::unix_now()),
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() }
    ));
    out
}

/// The first line of `ffmpeg -version`, waiting at most 5 s (a wedged or fake binary must
/// not hang the report).
pub fn ffmpeg_version(program: &Path) -> String {
    let path = match crate::commands::check_ffmpeg(program) {
        Ok(p) => p,
        Err(e) => return e.to_string(),
    };
    let mut cmd = Command::new(&path);
    cmd.arg("-version");
    match capture(&mut cmd, Duration::from_secs(5), true) {
        Ok(l) if !l.trim().is_empty() => format!("{} ({})", l.trim(), path.display()),
        Ok(_) => format!("{}: printed no version", path.display()),
        Err(e) => format!("{}: {e}", path.display()),
    }
}

/// Run `cmd` (stdin and stderr to /dev/null, own process group) and return its stdout, at
/// most 1 MiB, or only the first line; after `limit` or the answer the whole group is
/// SIGKILLed and the child reaped, so nothing outlives the report.
fn capture(cmd: &mut Command, limit: Duration, first_line: bool) -> Result<String, String> {
    use std::os::unix::process::CommandExt;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run: {}", crate::util::io_reason(&e)))?;
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut r = std::io::BufReader::new(out.take(1 << 20));
            let mut buf = Vec::new();
            let _ = if first_line {
                r.read_until(b'\n', &mut buf)
            } else {
                r.read_to_end(&mut buf)
            };
            let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
        });
    }
    let got = rx.recv_timeout(limit);
    // SAFETY: kill(2) on the child's own process group.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.wait();
    got.map_err(|_| format!("no answer within {}", crate::config::fmt_duration(limit)))
}

/// The supervisor's journal under systemd (where it logs; `supervisor.log` is only written
/// in daemon mode), when `journalctl` exists.
fn journal() -> Option<Result<String, String>> {
    let unit = crate::install::UNIT;
    let mut cmd = Command::new("journalctl");
    cmd.args([
        "-u",
        unit,
        "-n",
        &LOG_LINES.to_string(),
        "--no-pager",
        "-q",
        "-o",
        "short-iso",
    ]);
    match capture(&mut cmd, Duration::from_secs(10), false) {
        Err(e) if e.contains("No such file") => None,
        r => Some(r),
    }
}

fn mask_username(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(u) = v.pointer_mut("/mediamtx/username") {
        if !u.is_null() {
            *u = "***".into();
        }
    }
    v
}

fn config_text(s: &Settings, v: &serde_json::Value, error: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(e) = error {
        out.push_str(&format!(
            "CONFIG ERROR: {e}\nshowing built-in defaults (and command-line options) instead\n\n"
        ));
    }
    let from = match &s.file {
        Some(f) => f.display().to_string(),
        None => "built-in defaults".into(),
    };
    out.push_str(&format!("manager settings from {from}\n"));
    out.push_str(&format!("mode = {}\n", s.mode.as_str()));
    let v = mask_username(v.clone());
    for (section, body) in v.as_object().into_iter().flatten() {
        match body.as_object() {
            _ if section == "file" || section == "mode" => {}
            Some(fields) => {
                out.push_str(&format!("[{section}]\n"));
                for (k, val) in fields {
                    out.push_str(&format!("  {k} = {val}\n"));
                }
            }
            None => out.push_str(&format!("{section} = {body}\n")),
        }
    }
    for w in &s.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

/// Detected devices with the names and ALSA addresses a supervisor would use, then the
/// raw kernel view they come from.
fn devices(s: &Settings, unreadable: &mut Vec<String>) -> (String, String) {
    let mut out = String::new();
    let found = crate::devices::discover(&s.paths.proc_asound, &s.paths.dev_snd);
    let file = match crate::config::legacy::DeviceFile::load(&s.paths.device_config) {
        Ok(f) => f,
        Err(e) => {
            let msg = e.to_string();
            if msg.contains("permission denied") || msg.contains("cannot read") {
                unreadable.push(msg.clone());
            }
            out.push_str(&format!("device config: {msg}\n"));
            None
        }
    };
    let (names, _) = crate::sticky::Names::from_file(&s.paths.names_file);
    let plan = crate::streams::plan_with_names(s, file.as_ref(), &found, &names);
    out.push_str(&format!(
        "{} USB capture device(s) under {} and {}\n",
        found.len(),
        s.paths.proc_asound.display(),
        s.paths.dev_snd.display()
    ));
    let mut json = serde_json::json!({ "devices": found });
    match &plan {
        Ok(p) => {
            for st in &p.streams {
                out.push_str(&format!("\n  stream {}\n", st.name));
                if let Some(d) = &st.device {
                    out.push_str(&format!("    card          {} ({})\n", d.card, d.card_id));
                    let show = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
                    out.push_str(&format!("    by-id         {}\n", show(&d.by_id)));
                    out.push_str(&format!("    by-path       {}\n", show(&d.by_path)));
                    out.push_str(&format!("    usbid         {}\n", show(&d.usbid)));
                }
                out.push_str(&format!("    alsa_device   {}\n", st.alsa_device));
                out.push_str(&format!("    url           {}\n", st.display_url));
                out.push_str(&format!(
                    "    enabled       {}\n",
                    if st.enabled { "yes" } else { "no" }
                ));
                for n in &st.notes {
                    out.push_str(&format!("    note          {n}\n"));
                }
            }
            for w in &p.warnings {
                out.push_str(&format!("warning: {w}\n"));
            }
            json["streams"] = serde_json::to_value(&p.streams).unwrap_or_default();
        }
        Err(e) => out.push_str(&format!("cannot plan streams: {e}\n")),
    }
    let cards = s.paths.proc_asound.join("cards");
    out.push_str(&format!("\n{}:\n", cards.display()));
    match std::fs::read_to_string(&cards) {
        Ok(t) => out.push_str(&t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            out.push_str("  (does not exist: no sound cards, or ALSA not loaded)\n")
        }
        Err(e) => {
            unreadable.push(cannot(&cards, &e));
            out.push_str(&format!("  cannot read: {}\n", crate::util::io_reason(&e)));
        }
    }
    for sub in ["", "by-id", "by-path"] {
        let dir = if sub.is_empty() {
            s.paths.dev_snd.clone()
        } else {
            s.paths.dev_snd.join(sub)
        };
        out.push_str(&format!("\n{}:\n", dir.display()));
        match std::fs::read_dir(&dir) {
            Ok(rd) => {
                let mut names: Vec<String> = rd
                    .flatten()
                    .map(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        match std::fs::read_link(e.path()) {
                            Ok(t) => format!("  {n} -> {}", t.display()),
                            Err(_) => format!("  {n}"),
                        }
                    })
                    .collect();
                names.sort();
                for n in names {
                    out.push_str(&n);
                    out.push('\n');
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                out.push_str("  (does not exist)\n")
            }
            Err(e) => {
                unreadable.push(cannot(&dir, &e));
                out.push_str(&format!("  cannot read: {}\n", crate::util::io_reason(&e)));
            }
        }
    }
    (
        out,
        serde_json::to_string_pretty(&json).unwrap_or_default() + "\n",
    )
}

fn monitor_text(
    findings: &[crate::monitor::Finding],
    exit: Exit,
    snap: &crate::status::Snapshot,
) -> String {
    let mut out = format!("monitor would exit {} ({exit:?})\n", exit.code());
    if snap.supervisor.running && snap.supervisor.note.is_some() {
        out.push_str(
            "(as this user the running supervisor could not be asked; run as root for the verdict cron gets)\n",
        );
    }
    for f in findings {
        out.push_str(&format!("{:?}: [{}] {}\n", f.level, f.check, f.message));
    }
    out
}

/// Space on the filesystems of the directories the product writes; a directory not
/// created yet is measured at its nearest existing parent (and says so).
fn disk(s: &Settings) -> String {
    let mut dirs: Vec<(&str, PathBuf)> = vec![
        ("paths.log_dir", s.paths.log_dir.clone()),
        ("paths.state_dir", s.paths.state_dir.clone()),
        ("recording.dir", s.recording.dir.clone()),
    ];
    if let Some(p) = s.paths.names_file.parent() {
        dirs.push(("paths.names_file", p.to_path_buf()));
    }
    let mut out = String::new();
    for (key, dir) in dirs {
        let mut at = dir.as_path();
        while !at.exists() {
            match at.parent() {
                Some(p) if !p.as_os_str().is_empty() => at = p,
                _ => break,
            }
        }
        let note = if at == dir {
            String::new()
        } else {
            format!(" (not created yet; measured at {})", at.display())
        };
        let line = match nix::sys::statvfs::statvfs(at) {
            Ok(v) => {
                let f = v.fragment_size();
                let total = v.blocks() * f;
                let avail = v.blocks_available() * f;
                let used = total.saturating_sub(v.blocks_free() * f);
                let pct = if total > 0 {
                    100.0 * used as f64 / total as f64
                } else {
                    0.0
                };
                format!(
                    "{} free of {} ({pct:.0}% used), {} inodes free",
                    human(avail),
                    human(total),
                    v.files_available()
                )
            }
            Err(e) => format!("cannot stat: {}", e.desc()),
        };
        out.push_str(&format!("{key:<17} {}{note}: {line}\n", dir.display()));
    }
    out
}

/// `1.5 GiB`, `200 MiB`, `12 KiB`, `10 B`.
pub fn human(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else if v < 10.0 {
        format!("{v:.1} {}", U[i])
    } else {
        format!("{v:.0} {}", U[i])
    }
}

/// The unit (admin's copy, the package's copy, drop-ins) and the cron file under `root`.
fn installed(root: &Path, r: &mut Report) -> String {
    let unit = crate::install::UNIT;
    let mut paths: Vec<String> = vec![
        crate::install::UNIT_PATH.to_string(),
        format!("lib/systemd/system/{unit}"),
        format!("usr/lib/systemd/system/{unit}"),
    ];
    let dropins = root.join(format!("etc/systemd/system/{unit}.d"));
    if let Ok(rd) = std::fs::read_dir(&dropins) {
        let mut d: Vec<String> = rd
            .flatten()
            .map(|e| {
                format!(
                    "etc/systemd/system/{unit}.d/{}",
                    e.file_name().to_string_lossy()
                )
            })
            .collect();
        d.sort();
        paths.extend(d);
    }
    paths.push(crate::install::CRON_PATH.to_string());
    let mut out = String::new();
    for rel in paths {
        let full = root.join(&rel);
        match std::fs::read_to_string(&full) {
            Ok(t) => {
                out.push_str(&format!("--- {} ---\n{t}", full.display()));
                if !t.ends_with('\n') {
                    out.push('\n');
                }
                r.add(format!("installed/{rel}"), None, t);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                out.push_str(&format!("--- {}: not installed\n", full.display()));
            }
            Err(e) => {
                r.unreadable.push(cannot(&full, &e));
                out.push_str(&format!(
                    "--- {}: cannot read: {}\n",
                    full.display(),
                    crate::util::io_reason(&e)
                ));
            }
        }
    }
    out
}

/// The last `LOG_LINES` lines of every `*.log` in the log dir (streams and
/// `supervisor.log`) and of any stream log kept elsewhere.
fn logs(s: &Settings, snap: &crate::status::Snapshot, r: &mut Report) {
    let mut files: Vec<PathBuf> = Vec::new();
    match std::fs::read_dir(&s.paths.log_dir) {
        Ok(rd) => files.extend(
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "log")),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => r.unreadable.push(cannot(&s.paths.log_dir, &e)),
    }
    for st in &snap.streams {
        let p = PathBuf::from(&st.log);
        if !st.log.is_empty() && !files.contains(&p) && p.exists() {
            files.push(p);
        }
    }
    files.sort();
    let mut summary = String::new();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match tail(&f, LOG_LINES) {
            Ok(t) => {
                summary.push_str(&format!(
                    "--- {} (last {} lines) ---\n{t}",
                    f.display(),
                    t.lines().count()
                ));
                if !t.is_empty() && !t.ends_with('\n') {
                    summary.push('\n');
                }
                r.add(format!("logs/{name}"), None, t);
            }
            Err(e) => {
                r.unreadable.push(cannot(&f, &e));
                summary.push_str(&format!(
                    "--- {}: cannot read: {}\n",
                    f.display(),
                    crate::util::io_reason(&e)
                ));
            }
        }
    }
    if summary.is_empty() {
        summary = format!("no logs in {}\n", s.paths.log_dir.display());
    }
    match journal() {
        Some(Ok(t)) => {
            let t = if t.trim().is_empty() {
                "(no entries, or not readable by this user)\n".to_string()
            } else {
                t
            };
            summary.push_str(&format!(
                "--- journalctl -u {} (last {LOG_LINES} lines) ---\n{t}",
                crate::install::UNIT
            ));
            r.add("logs/journal.txt", None, t);
        }
        Some(Err(e)) => r.unreadable.push(format!("journalctl: {e}")),
        None => {}
    }
    r.add("logs.txt", Some("logs"), summary);
}

/// The last `n` lines of a file, reading at most its last 1 MiB.
pub fn tail(path: &Path, n: usize) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    const WINDOW: u64 = 1 << 20;
    if len > WINDOW {
        f.seek(SeekFrom::Start(len - WINDOW))?;
    }
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut out = lines[start..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    Ok(out)
}

/// One ustar header + data, padded to 512 bytes. Names longer than 99 bytes are cut
/// (ours are short: stream names are at most 48 characters).
fn tar_entry(out: &mut Vec<u8>, name: &str, data: &[u8], mtime: u64) {
    let mut h = [0u8; 512];
    let mut name = name.as_bytes().to_vec();
    name.truncate(99);
    h[..name.len()].copy_from_slice(&name);
    let mut field = |at: usize, width: usize, v: u64| {
        let s = format!("{v:0w$o}\0", w = width - 1);
        h[at..at + width].copy_from_slice(s.as_bytes());
    };
    field(100, 8, 0o644);
    field(108, 8, 0);
    field(116, 8, 0);
    field(124, 12, data.len() as u64);
    field(136, 12, mtime);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|b| *b as u64).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

/// The report as a tar archive: `diagnose.txt` (the text report), every part, and
/// `unreadable.txt`, all under `BUNDLE_DIR/`.
pub fn tar(r: &Report) -> Vec<u8> {
    let now = crate::util::unix_now();
    let mut out = Vec::new();
    let text = r.text();
    tar_entry(
        &mut out,
        &format!("{BUNDLE_DIR}/diagnose.txt"),
        text.as_bytes(),
        now,
    );
    for p in &r.parts {
        tar_entry(
            &mut out,
            &format!("{BUNDLE_DIR}/{}", p.file),
            p.text.as_bytes(),
            now,
        );
    }
    tar_entry(
        &mut out,
        &format!("{BUNDLE_DIR}/unreadable.txt"),
        unreadable_text(&r.unreadable).as_bytes(),
        now,
    );
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

/// Write the gzipped tar next to `path` and rename it into place, so a failed write never
/// leaves a partial bundle under the requested name.
fn write_bundle(
    path: &Path,
    tar: &[u8],
    tmp: std::fs::File,
    tmp_path: &Path,
) -> std::io::Result<()> {
    let mut gz = flate2::write::GzEncoder::new(tmp, flate2::Compression::default());
    gz.write_all(tar)?;
    let f = gz.finish()?;
    f.sync_all()?;
    std::fs::rename(tmp_path, path)
}

pub fn run(global: &Global, bundle: Option<&Path>, root: Option<&Path>) -> Result<Exit, Error> {
    let root = root.unwrap_or(Path::new("/"));
    // Open the bundle's temp file first: an unwritable place fails at once, before the
    // report is gathered.
    let target = match bundle {
        Some(path) => {
            let tmp_path = PathBuf::from(format!("{}.tmp-{}", path.display(), std::process::id()));
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp_path)
                .map_err(|e| {
                    Error::general(format!(
                        "cannot write bundle {}: {}",
                        path.display(),
                        crate::util::io_reason(&e)
                    ))
                })?;
            Some((path, tmp_path, f))
        }
        None => None,
    };
    let (report, _) = gather(global, root);
    match target {
        None => {
            // A closed pipe (`diagnose | head`) is not an error.
            let _ = std::io::stdout().write_all(report.text().as_bytes());
        }
        Some((path, tmp_path, f)) => {
            let tar = tar(&report);
            if let Err(e) = write_bundle(path, &tar, f, &tmp_path) {
                let _ = std::fs::remove_file(&tmp_path);
                return Err(Error::general(format!(
                    "cannot write bundle {}: {}",
                    path.display(),
                    crate::util::io_reason(&e)
                )));
            }
            println!(
                "wrote {} ({} files under {BUNDLE_DIR}/; no passwords or URL credentials)",
                path.display(),
                report.parts.len() + 2
            );
            if !report.unreadable.is_empty() {
                print!("could not read:\n{}", unreadable_text(&report.unreadable));
            }
        }
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_masks_urls_and_literals() {
        let mut s = Settings::default();
        s.mediamtx.password = Some("hunter22".into());
        s.mediamtx.username = Some("pub".into());
        s.mediamtx.rtsp_url = "rtsp://urluser:p%40ss@h:8554".into();
        let sc = Scrub::new(&s);
        let table = [
            ("rtsp://a:b@h/x refused", "rtsp://***@h/x refused"),
            ("the password is hunter22!", "the password is ***!"),
            ("user pub logged in", "user *** logged in"),
            ("decoded p@ss and raw p%40ss", "decoded *** and raw ***"),
            ("urluser was here\n", "*** was here\n"),
            ("nothing secret", "nothing secret"),
        ];
        for (input, want) in table {
            assert_eq!(sc.text(input), want, "{input}");
        }
        // Too short to search for: only masked where it is known to be a value.
        let sc = Scrub::from_literals(vec!["ab".into()]);
        assert_eq!(sc.text("abc"), "abc");
    }

    #[test]
    fn tar_layout() {
        let r = Report {
            parts: vec![Part {
                file: "a.txt".into(),
                title: Some("A".into()),
                text: "hello\n".into(),
            }],
            unreadable: vec![],
        };
        let t = tar(&r);
        assert_eq!(t.len() % 512, 0);
        assert_eq!(&t[257..263], b"ustar\0");
        // Checksum: the sum of the header with the checksum field as spaces.
        let mut h = t[..512].to_vec();
        let stored = u64::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        h[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, h.iter().map(|b| *b as u64).sum::<u64>());
        assert!(t.ends_with(&[0u8; 1024]));
    }

    #[test]
    fn human_sizes() {
        let table = [
            (10, "10 B"),
            (1536, "1.5 KiB"),
            (200 << 20, "200 MiB"),
            (3 << 30, "3.0 GiB"),
        ];
        for (b, want) in table {
            assert_eq!(human(b), want);
        }
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        let text: String = (0..250).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, text).unwrap();
        let t = tail(&p, 100).unwrap();
        assert_eq!(t.lines().count(), 100);
        assert!(t.starts_with("line 150\n") && t.ends_with("line 249\n"));
    }
}
