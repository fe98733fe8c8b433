//! The command verbs as the CLI runs them, one file per verb or family: the supervisor's
//! lifecycle (`start`, `stop`/`force-stop`/`restart`), `status`, `config`, `monitor`,
//! `install`/`uninstall`, `demo`. `lib.rs` maps the parsed command to one of these.

pub mod config;
pub mod demo;
pub mod diagnose;
pub mod install;
pub mod monitor;
pub mod start;
pub mod status;
pub mod stop;

use std::path::Path;
use std::time::Duration;

use crate::cli::Global;
use crate::config::Settings;
use crate::exit::Error;
use crate::lock;

/// How long a CLI command waits for the supervisor to answer (SPEC §8).
pub(crate) const ANSWER: Duration = Duration::from_secs(2);

pub(crate) fn load(global: &Global) -> Result<Settings, Error> {
    let s = Settings::load(global)?;
    for w in &s.warnings {
        log::warn!("{w}");
    }
    Ok(s)
}

/// The recorded supervisor pid, if that process is alive and is this program.
pub(crate) fn live_supervisor(state_dir: &Path) -> Option<i32> {
    is_us(lock::recorded_pid(state_dir)?)
}

/// `pid`, if that process is alive, is this program, and runs as us or root (a process
/// of another user named in a pid file or holding the lock is never signalled).
pub(crate) fn is_us(pid: i32) -> Option<i32> {
    if !crate::fsafe::process_trusted(pid) {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let argv0 = cmdline.split(|b| *b == 0).next()?;
    let name = Path::new(std::str::from_utf8(argv0).ok()?)
        .file_name()?
        .to_str()?
        .to_string();
    let me = std::env::current_exe()
        .ok()?
        .file_name()?
        .to_str()?
        .to_string();
    (name == me || name.contains("mediamtx-stream-manager")).then_some(pid)
}
