//! `start`: every check first (config, ffmpeg, devices, MediaMTX), then the lock and the
//! supervisor, in the foreground or re-executed as a daemon that reports its streams.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::Global;
use crate::config::{fmt_duration, Settings};
use crate::control::{self, Request};
use crate::exit::{Error, Exit};
use crate::lock::{self, InstanceLock};
use crate::mediamtx::Client;
use crate::status::StreamStatus;
use crate::supervisor::source::{HostSource, StreamSource};
use crate::supervisor::Supervisor;

use super::{load, ANSWER};

/// Set in the environment of the re-executed daemon.
const DAEMON_ENV: &str = "MEDIAMTX_STREAM_MANAGER_DAEMON";

/// ffmpeg must exist and be executable (exit 3).
pub fn check_ffmpeg(program: &Path) -> Result<PathBuf, Error> {
    use std::os::unix::fs::PermissionsExt;
    let candidates: Vec<PathBuf> = if program.components().count() > 1 {
        vec![program.to_path_buf()]
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join(program)).collect())
            .unwrap_or_default()
    };
    for c in &candidates {
        if let Ok(m) = std::fs::metadata(c) {
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Ok(c.clone());
            }
        }
    }
    Err(Error::new(
        Exit::MissingDependency,
        format!(
            "ffmpeg not found or not executable: {} (install it: apt-get install -y ffmpeg, or set paths.ffmpeg)",
            program.display()
        ),
    ))
}

/// Every check `start` makes before it runs anything: config (4), ffmpeg (3), device
/// file and options (4). `restart` runs them before it stops the running supervisor.
pub(super) fn preflight(global: &Global) -> Result<(Settings, HostSource), Error> {
    let settings = load(global)?;
    check_ffmpeg(&settings.paths.ffmpeg)?;
    let source = HostSource::new(global, &settings)?;
    Ok((settings, source))
}

pub fn start(global: &Global, foreground: bool) -> Result<Exit, Error> {
    let (settings, source) = preflight(global)?;
    let daemonized = std::env::var_os(DAEMON_ENV).is_some();
    if !foreground && !daemonized && std::env::var_os("NOTIFY_SOCKET").is_none() {
        return daemonize(&settings, global);
    }
    run_supervisor(settings, Box::new(source), daemonized)
}

/// Take the lock, wait for devices and MediaMTX, supervise until stopped.
pub fn run_supervisor(
    settings: Settings,
    source: Box<dyn StreamSource>,
    daemonized: bool,
) -> Result<Exit, Error> {
    // Files ffmpeg makes (recordings) are never writable by others, whatever umask we
    // were started with; our own files get explicit modes anyway (crate::fsafe).
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    nix::sys::stat::umask(old | nix::sys::stat::Mode::from_bits_truncate(0o022));
    if daemonized {
        // Before the lock, so that what taking it says (a replaced lock) is in the log.
        let path = settings.paths.log_dir.join("supervisor.log");
        crate::logs::log_to_file(&path, settings.logs.max_size, settings.logs.keep).map_err(
            |e| {
                Error::general(format!(
                    "cannot open {}: {}",
                    path.display(),
                    crate::util::io_reason(&e)
                ))
            },
        )?;
    }
    let lock = InstanceLock::acquire(&settings.paths.state_dir)?;
    // A SIGKILLed predecessor's grandchildren (no PDEATHSIG) would stream on as orphans.
    let leftovers = crate::child::kill_leftovers(&settings.paths.state_dir);
    if !leftovers.is_empty() {
        log::warn!(
            "killed {} process(es) a previous supervisor left behind: pid {}",
            leftovers.len(),
            leftovers
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(w) = crate::exposure::cmdline_warning(&settings) {
        log::warn!("{w}");
    }
    let mut sup = Supervisor::new(settings.clone(), source);
    let found = sup.wait_for_streams(settings.startup.device_wait);
    if found == 0 && settings.startup.require_devices {
        return Err(Error::new(
            Exit::NoDevices,
            format!(
                "no USB audio capture devices found (looked in {} and {} for {})",
                settings.paths.proc_asound.display(),
                settings.paths.dev_snd.display(),
                fmt_duration(settings.startup.device_wait)
            ),
        ));
    }
    if settings.mediamtx.api {
        wait_for_mediamtx(&settings)?;
    }
    sup.prepare()?;
    crate::metrics_out::serve(&settings, sup.registry(), sup.info())?;
    sup.on_snapshot(Box::new(crate::metrics_out::write));
    sup.launch();
    log::info!(
        "supervisor started (pid {}), {found} stream(s)",
        std::process::id()
    );
    if daemonized {
        detach_stdio();
    }
    sup.run();
    // Every child was stopped and reaped; a grandchild that ignored the group's SIGINT
    // goes now, and no group record outlives its group (a stale pgid could one day name
    // somebody else's).
    let left = crate::child::kill_leftovers(&settings.paths.state_dir);
    if !left.is_empty() {
        log::warn!(
            "killed {} leftover process(es) at stop: pid {left:?}",
            left.len()
        );
    }
    drop(lock);
    Ok(Exit::Ok)
}

/// The start-time checks that depend on the world rather than on files: devices (6) and
/// MediaMTX (7). `restart` runs them before it stops anything (devices are looked at
/// once: the running supervisor already holds them; MediaMTX is waited for as at start).
pub(super) fn restart_checks(settings: &Settings) -> Result<(), Error> {
    if settings.startup.require_devices
        && crate::devices::discover(&settings.paths.proc_asound, &settings.paths.dev_snd).is_empty()
    {
        return Err(Error::new(
            Exit::NoDevices,
            format!(
                "no USB audio capture devices found in {} and {}: not restarting (the running supervisor is left alone)",
                settings.paths.proc_asound.display(),
                settings.paths.dev_snd.display()
            ),
        ));
    }
    if settings.mediamtx.api {
        wait_for_mediamtx(settings).map_err(|e| {
            Error::new(
                e.exit,
                format!(
                    "{}: not restarting (the running supervisor is left alone)",
                    e.message
                ),
            )
        })?;
    }
    Ok(())
}

fn wait_for_mediamtx(settings: &Settings) -> Result<(), Error> {
    let until = Instant::now() + settings.startup.mediamtx_wait;
    loop {
        // A hung API (accepts, never answers) must not stretch the wait: each try gets at
        // most what is left of it (at least 100 ms, so the last try is a real one).
        let mut cfg = settings.mediamtx.clone();
        let left = until.saturating_duration_since(Instant::now());
        cfg.timeout = cfg.timeout.min(left.max(Duration::from_millis(100)));
        match Client::new(&cfg).info() {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= until => {
                return Err(Error::new(
                    Exit::MediamtxDown,
                    format!(
                        "MediaMTX API at {} not reachable after {}: {e}",
                        crate::util::redact_url(&settings.mediamtx.api_url),
                        fmt_duration(settings.startup.mediamtx_wait)
                    ),
                ))
            }
            Err(e) => log::debug!("waiting for MediaMTX: {e}"),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The daemon is ready: its stdout/stderr (a pipe to the starting CLI) go to /dev/null,
/// so the CLI sees EOF and nothing later writes into a closed pipe.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto our own standard descriptors.
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
            libc::dup2(null.as_raw_fd(), 2);
        }
    }
}

/// Re-exec ourselves in the foreground in a new session (never fork a threaded
/// process), relay its early failure, or wait for each stream's first verdict.
fn daemonize(settings: &Settings, global: &Global) -> Result<Exit, Error> {
    let state_dir = &settings.paths.state_dir;
    if lock::is_held(state_dir) {
        let holder = lock::recorded_pid(state_dir)
            .map(|p| format!(" (pid {p})"))
            .unwrap_or_default();
        return Err(Error::new(
            Exit::LockHeld,
            format!("another supervisor is running{holder}"),
        ));
    }
    let exe = std::env::current_exe()
        .map_err(|e| Error::general(format!("cannot find own binary: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.args(global_args(global))
        .args(["start", "--foreground"])
        .env(DAEMON_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::general(format!("cannot start the daemon: {e}")))?;
    let mut early = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = (&mut err).take(1 << 20).read_to_string(&mut early);
    }
    if let Ok(Some(status)) = child.try_wait() {
        eprint!("{early}");
        return Ok(Exit::from_code(status.code().unwrap_or(1)));
    }
    // Ready: wait for first verdicts, then report one line per stream.
    let until = Instant::now() + settings.startup.report_timeout;
    let mut snap = None;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            eprint!("{early}");
            return Ok(Exit::from_code(status.code().unwrap_or(1)));
        }
        if let Ok(r) = control::request(state_dir, &Request::Status, ANSWER) {
            if let Some(s) = r.status {
                let done = s.streams.iter().all(|st| st.settled);
                snap = Some(s);
                if done {
                    break;
                }
            }
        }
        if Instant::now() >= until {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("supervisor started (pid {})", child.id());
    for st in snap.map(|s| s.streams).unwrap_or_default() {
        println!("{}", report_line(&st));
    }
    Ok(Exit::Ok)
}

/// The global options as arguments, so a re-exec (daemon, `restart`) runs with the same.
fn global_args(g: &Global) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = Vec::new();
    if let Some(c) = &g.config {
        a.push("-c".into());
        a.push(std::path::absolute(c).unwrap_or_else(|_| c.clone()).into());
    }
    if let Some(m) = g.mode {
        a.extend(["-m".into(), m.as_str().into()]);
    }
    if let Some(f) = g.filter {
        a.extend(["-f".into(), f.as_str().into()]);
    }
    if let Some(n) = &g.name {
        a.extend(["-n".into(), n.into()]);
    }
    if g.debug {
        a.push("-d".into());
    }
    for _ in 0..g.verbose {
        a.push("-v".into());
    }
    if g.quiet {
        a.push("-q".into());
    }
    a
}

/// One line per stream; `[OK]`/`[FAIL]` first (scripts grep for them). A stream that
/// records but cannot publish is `[OK]` (its audio is kept) and says why it does not publish.
pub fn report_line(st: &StreamStatus) -> String {
    if st.state == "running" {
        match (&st.recording, st.publishing) {
            (Some(_), false) => format!(
                "[OK] {} (recording; not publishing: {})",
                st.url,
                st.publish_error.as_deref().unwrap_or("RTSP leg down")
            ),
            _ => format!("[OK] {}", st.url),
        }
    } else {
        let why = st
            .last_exit
            .as_ref()
            .map(|e| e.reason.clone())
            .unwrap_or_else(|| format!("{} (no verdict yet)", st.state));
        format!("[FAIL] {} ({why})", st.url)
    }
}
