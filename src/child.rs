//! Starting and stopping one ffmpeg child (SPEC §6): own process group, SIGKILL when the
//! spawning thread dies, default signal handling whatever the supervisor inherited, and a
//! marker in its environment so `force-stop` and `monitor` recognise it exactly.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{killpg, SigHandler, SigSet, Signal};
use nix::unistd::Pid;

/// Environment variable naming the stream a child belongs to.
pub const MARKER: &str = "MEDIAMTX_STREAM_MANAGER_STREAM";
/// Environment variable naming the state dir of the supervisor that started the child,
/// so one host's (or one test's) supervisor never touches another's children.
pub const MARKER_STATE: &str = "MEDIAMTX_STREAM_MANAGER_STATE";

/// What to run for one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Extra environment (tests and the demo use it, e.g. ALSA_CONFIG_PATH).
    pub env: Vec<(OsString, OsString)>,
}

/// Spawn with stdin from /dev/null and stdout/stderr piped.
///
/// Must be called from the thread that will wait for the child: `PR_SET_PDEATHSIG`
/// fires when the *thread* that forked exits.
pub fn spawn(spec: &ChildSpec, stream: &str, state_dir: &Path) -> std::io::Result<Child> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .env(MARKER, stream)
        .env(MARKER_STATE, state_dir)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let parent = std::process::id() as i32;
    // SAFETY: only async-signal-safe calls (setpgid, prctl, sigprocmask, signal, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The parent may have died between fork and prctl: then nobody would kill us.
            if nix::unistd::getppid().as_raw() != parent {
                libc::_exit(1);
            }
            SigSet::empty().thread_set_mask()?;
            // Ignored signals survive exec; a supervisor started with `&` ignores SIGINT and
            // its ffmpeg would then ignore our graceful stop.
            for sig in [
                Signal::SIGINT,
                Signal::SIGTERM,
                Signal::SIGHUP,
                Signal::SIGQUIT,
                Signal::SIGPIPE,
            ] {
                nix::sys::signal::signal(sig, SigHandler::SigDfl)?;
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Signal a child's whole process group (ffmpeg and anything it forked).
pub fn signal_group(pid: u32, sig: Signal) {
    if pid == 0 {
        return;
    }
    let _ = killpg(Pid::from_raw(pid as i32), sig);
}

/// Name of a signal, e.g. `SIGKILL`.
pub fn signal_name(sig: i32) -> String {
    Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// One running process that carries our marker, found by scanning /proc.
#[derive(Debug, Clone, PartialEq)]
pub struct Marked {
    pub pid: i32,
    pub ppid: i32,
    pub stream: String,
}

/// Every process whose environment carries our marker for this state dir.
pub fn find_marked(state_dir: &Path) -> Vec<Marked> {
    let want_state = state_dir.as_os_str().as_encoded_bytes();
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for ent in rd.flatten() {
        let Some(pid) = ent.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let mut stream = None;
        let mut state_ok = false;
        for kv in env.split(|b| *b == 0) {
            if let Some(v) = kv
                .strip_prefix(MARKER.as_bytes())
                .and_then(|r| r.strip_prefix(b"="))
            {
                stream = Some(String::from_utf8_lossy(v).into_owned());
            } else if let Some(v) = kv
                .strip_prefix(MARKER_STATE.as_bytes())
                .and_then(|r| r.strip_prefix(b"="))
            {
                state_ok = v == want_state;
            }
        }
        if let (Some(stream), true) = (stream, state_ok) {
            if let Some(ppid) = parent_pid(pid) {
                if !is_zombie(pid) {
                    out.push(Marked { pid, ppid, stream });
                }
            }
        }
    }
    out
}

/// The fields after the `(comm)` in /proc/<pid>/stat.
pub fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

pub fn parent_pid(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

pub fn is_zombie(pid: i32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().map(String::as_str) == Some("Z"))
}

/// True when `pid` descends from `ancestor` (walking /proc parent links).
pub fn descends_from(mut pid: i32, ancestor: i32) -> bool {
    for _ in 0..64 {
        if pid == ancestor {
            return true;
        }
        match parent_pid(pid) {
            Some(p) if p > 1 => pid = p,
            _ => return false,
        }
    }
    false
}
