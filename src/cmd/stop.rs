//! `stop`, `force-stop` and `restart`: ask the supervisor, wait for its lock, and say
//! only what really happened.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cli::Global;
use crate::config::fmt_duration;
use crate::control::{self, ClientError, Request};
use crate::exit::{Error, Exit};
use crate::lock;

use super::start::{preflight, restart_checks, start};
use super::{is_us, live_supervisor, load, ANSWER};

pub fn stop(global: &Global, timeout: Duration) -> Result<Exit, Error> {
    let settings = load(global)?;
    let state_dir = &settings.paths.state_dir;
    if !lock::is_held(state_dir) {
        println!("supervisor not running");
        return Ok(Exit::Ok);
    }
    if let Err(e) = control::request(state_dir, &Request::Stop, ANSWER) {
        ask_by_signal(state_dir, &e)?;
    }
    let until = Instant::now() + timeout;
    while lock::is_held(state_dir) {
        if Instant::now() >= until {
            return Err(Error::general(format!(
                "supervisor did not stop within {} (try force-stop)",
                fmt_duration(timeout)
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("stopped");
    Ok(Exit::Ok)
}

/// The socket did not take the request. Either the supervisor is already stopping (it
/// removed its socket and pid file but still holds the lock: wait like the first `stop`),
/// or it is not answering (SIGTERM is the same graceful stop).
fn ask_by_signal(state_dir: &Path, why: &ClientError) -> Result<(), Error> {
    let Some(pid) = live_supervisor(state_dir) else {
        log::info!("{why}; the supervisor is already stopping, waiting for it");
        return Ok(());
    };
    log::warn!("{why}; sending SIGTERM to pid {pid}");
    match kill(Pid::from_raw(pid), Signal::SIGTERM) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(Error::general(format!(
            "cannot signal supervisor pid {pid}: {}",
            kill_error(e)
        ))),
    }
}

/// Why a signal could not be sent, in words a non-root user can act on.
fn kill_error(e: nix::errno::Errno) -> String {
    if e == nix::errno::Errno::EPERM {
        "permission denied (EPERM): it runs as another user; run this as root".into()
    } else {
        e.to_string()
    }
}

/// Wait until `pid` is gone (or a zombie) for up to `limit`.
fn gone_within(pid: i32, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    loop {
        if !Path::new(&format!("/proc/{pid}")).exists() || crate::child::is_zombie(pid) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILL everything of this state dir, and say exactly what was and was not killed:
/// a kill that failed (EPERM as non-root) is exit 1, never "killed".
pub fn force_stop(global: &Global) -> Result<Exit, Error> {
    let settings = load(global)?;
    let state_dir = &settings.paths.state_dir;
    let mut killed_sup = None;
    if lock::is_held(state_dir) {
        // The pid file may be gone already (a supervisor in shutdown): ask the kernel
        // who holds the lock.
        let holder =
            live_supervisor(state_dir).or_else(|| lock::holder_pid(state_dir).and_then(is_us));
        if let Some(pid) = holder {
            match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                Ok(()) if gone_within(pid, Duration::from_secs(2)) => killed_sup = Some(pid),
                Ok(()) => {
                    return Err(Error::general(format!(
                        "sent SIGKILL to supervisor pid {pid} but it is still alive after 2s"
                    )))
                }
                Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => {
                    return Err(Error::general(format!(
                        "cannot kill supervisor pid {pid}: {}; nothing was killed",
                        kill_error(e)
                    )))
                }
            }
        }
    }
    if killed_sup.is_none() && lock::is_held(state_dir) {
        let who = lock::holder_pid(state_dir)
            .map(|p| format!("pid {p}, not this program"))
            .unwrap_or_else(|| "an unknown process".into());
        return Err(Error::general(format!(
            "lock {} is held by {who}; nothing was killed",
            lock::lock_path(state_dir).display()
        )));
    }
    // Children die with their wrapper thread (PDEATHSIG); anything left carries our marker
    // or sits in a recorded process group.
    let mut killed = crate::child::kill_leftovers(state_dir);
    let mut failed: Vec<String> = Vec::new();
    for m in crate::child::find_marked(state_dir) {
        match kill(Pid::from_raw(m.pid), Signal::SIGKILL) {
            Ok(()) if gone_within(m.pid, Duration::from_millis(500)) => killed.push(m.pid),
            Ok(()) => failed.push(format!("pid {} still alive after SIGKILL", m.pid)),
            Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => failed.push(format!("pid {}: {}", m.pid, kill_error(e))),
        }
    }
    killed.sort_unstable();
    killed.dedup();
    let streams = state_dir.join("streams");
    if crate::fsafe::existing_dir(&streams, crate::supervisor::STREAMS_DIR_MODE).unwrap_or(false) {
        if let Ok(rd) = std::fs::read_dir(&streams) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if !lock::is_held(state_dir) {
        let _ = std::fs::remove_file(lock::pid_path(state_dir));
    }
    let what = match killed_sup {
        Some(pid) => format!("killed supervisor pid {pid}"),
        None => "no supervisor running".to_string(),
    };
    let n = killed.len();
    if !failed.is_empty() {
        return Err(Error::general(format!(
            "{what}; killed {n} leftover process(es); could not kill {}: {}",
            failed.len(),
            failed.join("; ")
        )));
    }
    println!("{what}; killed {n} leftover ffmpeg process(es)");
    Ok(Exit::Ok)
}

pub fn restart(global: &Global, streams: Vec<String>, timeout: Duration) -> Result<Exit, Error> {
    if streams.is_empty() {
        // Nothing is stopped unless the new supervisor could start.
        let (settings, _) = preflight(global)?;
        restart_checks(&settings)?;
        stop(global, timeout)?;
        return start(global, false);
    }
    let settings = load(global)?;
    let state_dir = &settings.paths.state_dir;
    match control::request(
        state_dir,
        &Request::Restart {
            streams: streams.clone(),
        },
        ANSWER,
    ) {
        Ok(r) if r.ok => {
            println!("restarting {}", streams.join(", "));
            Ok(Exit::Ok)
        }
        Ok(r) => Err(Error::general(
            r.error.unwrap_or_else(|| "restart refused".into()),
        )),
        Err(ClientError::NotRunning) => Err(Error::general("supervisor not running")),
        Err(e) => Err(Error::general(e.to_string())),
    }
}
