//! The supervisor's verbs as the CLI runs them: start, stop, force-stop, restart, status.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cli::Global;
use crate::config::{fmt_duration, Settings};
use crate::control::{self, ClientError, Request};
use crate::exit::{Error, Exit};
use crate::lock::{self, InstanceLock};
use crate::mediamtx::Client;
use crate::status::{self, MediamtxInfo, Snapshot, StreamStatus, SupervisorInfo};
use crate::supervisor::source::{self, HostSource, StreamSource};
use crate::supervisor::Supervisor;

/// Set in the environment of the re-executed daemon.
const DAEMON_ENV: &str = "MEDIAMTX_STREAM_MANAGER_DAEMON";
/// How long a CLI command waits for the supervisor to answer (SPEC §8).
const ANSWER: Duration = Duration::from_secs(2);

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

fn load(global: &Global) -> Result<Settings, Error> {
    let s = Settings::load(global)?;
    for w in &s.warnings {
        log::warn!("{w}");
    }
    Ok(s)
}

/// Every check `start` makes before it runs anything: config (4), ffmpeg (3), device
/// file and options (4). `restart` runs them before it stops the running supervisor.
fn preflight(global: &Global) -> Result<(Settings, HostSource), Error> {
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
    let lock = InstanceLock::acquire(&settings.paths.state_dir)?;
    if daemonized {
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

fn wait_for_mediamtx(settings: &Settings) -> Result<(), Error> {
    let client = Client::new(&settings.mediamtx);
    let until = Instant::now() + settings.startup.mediamtx_wait;
    loop {
        match client.info() {
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

fn report_line(st: &StreamStatus) -> String {
    if st.state == "running" {
        format!("[OK] {}", st.url)
    } else {
        let why = st
            .last_exit
            .as_ref()
            .map(|e| e.reason.clone())
            .unwrap_or_else(|| format!("{} (no verdict yet)", st.state));
        format!("[FAIL] {} ({why})", st.url)
    }
}

/// The recorded supervisor pid, if that process is alive and is this program.
fn live_supervisor(state_dir: &Path) -> Option<i32> {
    is_us(lock::recorded_pid(state_dir)?)
}

/// `pid`, if that process is alive and is this program.
fn is_us(pid: i32) -> Option<i32> {
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
    if let Ok(rd) = std::fs::read_dir(state_dir.join("streams")) {
        for e in rd.flatten() {
            let _ = std::fs::remove_file(e.path());
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
        preflight(global)?;
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

/// Live status from the supervisor, or detection only when none answers.
pub fn gather_status(settings: &Settings, global: &Global) -> Snapshot {
    let state_dir = &settings.paths.state_dir;
    let note = match control::request(state_dir, &Request::Status, ANSWER) {
        Ok(r) => match r.status {
            Some(s) => return s,
            None => Some(
                r.error
                    .unwrap_or_else(|| "supervisor gave no status".into()),
            ),
        },
        Err(ClientError::NotRunning) => None,
        Err(e) => Some(e.to_string()),
    };
    let mut snap = detect(settings, global);
    if let Some(pid) = live_supervisor(state_dir).filter(|_| lock::is_held(state_dir)) {
        snap.supervisor.running = true;
        snap.supervisor.pid = Some(pid as u32);
    }
    snap.supervisor.note = note;
    snap
}

/// What the host and config say, without a supervisor.
pub fn detect(settings: &Settings, global: &Global) -> Snapshot {
    let mut warnings = settings.warnings.clone();
    let streams = HostSource::new(global, settings)
        .and_then(|src| {
            let devices =
                crate::devices::discover(&settings.paths.proc_asound, &settings.paths.dev_snd);
            drop(src);
            let file = crate::config::legacy::DeviceFile::load(&settings.paths.device_config)?;
            source::configs_for(settings, file.as_ref(), &devices)
        })
        .unwrap_or_else(|e| {
            warnings.push(e.to_string());
            Vec::new()
        });
    let mediamtx = if settings.mediamtx.api {
        let mut cfg = settings.mediamtx.clone();
        cfg.timeout = cfg.timeout.min(ANSWER);
        let r = Client::new(&cfg).info();
        MediamtxInfo {
            enabled: true,
            api_url: crate::util::redact_url(&settings.mediamtx.api_url),
            reachable: Some(r.is_ok()),
            version: r.as_ref().ok().and_then(|i| i.version.clone()),
            error: r.err().map(|e| e.to_string()),
        }
    } else {
        MediamtxInfo {
            enabled: false,
            api_url: crate::util::redact_url(&settings.mediamtx.api_url),
            ..Default::default()
        }
    };
    Snapshot {
        supervisor: SupervisorInfo {
            running: false,
            pid: None,
            uptime_s: None,
            mode: settings.mode.as_str().into(),
            version: env!("CARGO_PKG_VERSION").into(),
            note: None,
        },
        mediamtx,
        streams: streams
            .into_iter()
            .map(|c| StreamStatus {
                name: c.name.clone(),
                state: "stopped".into(),
                health: "unknown".into(),
                device: c.device.clone(),
                alsa_device: c.alsa_device.clone(),
                url: c.display_url.clone(),
                log: c.log_path.display().to_string(),
                notes: c.notes.clone(),
                ..StreamStatus::default()
            })
            .collect(),
        warnings,
        cpu: None,
    }
}

pub fn status(global: &Global, json: bool) -> Result<Exit, Error> {
    let settings = Settings::load(global)?;
    let snap = gather_status(&settings, global);
    let names = status::names_view(&settings, &snap);
    if json {
        let mut v = serde_json::to_value(&snap).map_err(|e| Error::general(e.to_string()))?;
        v["names"] = names;
        let text = serde_json::to_string_pretty(&v).map_err(|e| Error::general(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", status::render(&snap));
        print!("{}", status::render_names(&settings, &snap));
    }
    Ok(Exit::Ok)
}
