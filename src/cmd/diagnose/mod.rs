//! `diagnose [--bundle FILE]`: everything needed to ask for help, in one go (SPEC §2):
//! versions, the effective configuration, devices, live status, `monitor` findings, disk
//! space, the installed unit and cron file, and the last lines of every log.
//!
//! It reuses the code the other verbs run (`gather_status`, `monitor::check`,
//! `config::settings_json`, discovery and the stream plan), so it shows what they would.
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

mod scrub;
mod sections;

pub use scrub::Scrub;
use sections::*;
pub use sections::{ffmpeg_version, human, tail};

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
    let snap = crate::cmd::status::gather_status(&settings, global);
    if let Some(n) = &snap.supervisor.note {
        r.unreadable
            .push(format!("live status from the control socket: {n}"));
    }

    r.add("versions.txt", Some("versions"), versions(&settings, &snap));

    let cfg = crate::cmd::config::settings_json(&settings);
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

    let (findings, samples) = crate::cmd::monitor::check(&settings);
    let exit = crate::cmd::monitor::verdict(&findings);
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
mod tests;
