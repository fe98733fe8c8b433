//! The report's sections: versions, config, devices, monitor, disk, installed files, logs.

use super::*;

pub(super) fn versions(s: &Settings, snap: &crate::status::Snapshot) -> String {
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
    // How wrappers learn of a child's exit on this kernel (docs/architecture.md).
    out.push_str(&format!("child exit: {}\n", crate::child::exit_watch()));
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
    let path = match crate::cmd::start::check_ffmpeg(program) {
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
pub(super) fn capture(
    cmd: &mut Command,
    limit: Duration,
    first_line: bool,
) -> Result<String, String> {
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
pub(super) fn journal() -> Option<Result<String, String>> {
    let unit = crate::cmd::install::UNIT;
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

pub(super) fn mask_username(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(u) = v.pointer_mut("/mediamtx/username") {
        if !u.is_null() {
            *u = "***".into();
        }
    }
    v
}

pub(super) fn config_text(s: &Settings, v: &serde_json::Value, error: Option<&str>) -> String {
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
    for w in s
        .warnings
        .iter()
        .cloned()
        .chain(crate::exposure::cmdline_warning(s))
    {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

/// Detected devices with the names and ALSA addresses a supervisor would use, then the
/// raw kernel view they come from.
pub(super) fn devices(s: &Settings, unreadable: &mut Vec<String>) -> (String, String) {
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

pub(super) fn monitor_text(
    findings: &[crate::cmd::monitor::Finding],
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
pub(super) fn disk(s: &Settings) -> String {
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
pub(super) fn installed(root: &Path, r: &mut Report) -> String {
    let unit = crate::cmd::install::UNIT;
    let mut paths: Vec<String> = vec![
        crate::cmd::install::UNIT_PATH.to_string(),
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
    paths.push(crate::cmd::install::CRON_PATH.to_string());
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
pub(super) fn logs(s: &Settings, snap: &crate::status::Snapshot, r: &mut Report) {
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
        // Never through a symlink or into another user's file (planted while the log
        // directory was open to others): a report may be posted publicly.
        if let Some(why) = crate::fsafe::untrusted_file(&f) {
            r.unreadable
                .push(format!("{why}: skipped, not a log of ours"));
            continue;
        }
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
                crate::cmd::install::UNIT
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
