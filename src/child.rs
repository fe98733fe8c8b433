//! Starting and stopping one ffmpeg child (SPEC §6): own process group, SIGKILL when the
//! spawning thread dies, default signal handling whatever the supervisor inherited, and a
//! marker in its environment so `force-stop` and `monitor` recognise it exactly.
//!
//! Spawning must not cost more as the supervisor grows: `fork()` copies the page tables of
//! a process with hundreds of threads and serialises on its memory map. `crate::spawn`
//! starts a child with `clone(CLONE_VM | CLONE_VFORK)` (what posix_spawn does) and sets
//! the process group, PDEATHSIG, signals and descriptors in the child before exec.

use std::ffi::{CString, OsString};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

pub use crate::spawn::Proc;

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
/// fires when the *thread* that spawned exits.
pub fn spawn(spec: &ChildSpec, stream: &str, state_dir: &Path) -> std::io::Result<Proc> {
    // The environment: ours, the markers, then the spec's extras (later wins).
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let mut set = |k: OsString, v: OsString| match env.iter_mut().find(|(x, _)| *x == k) {
        Some(e) => e.1 = v,
        None => env.push((k, v)),
    };
    set(MARKER.into(), stream.into());
    set(MARKER_STATE.into(), state_dir.as_os_str().to_owned());
    for (k, v) in &spec.env {
        set(k.clone(), v.clone());
    }
    let path_env = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone());
    let exe = resolve(&spec.program, path_env.as_deref())?;
    let mut argv = vec![spec.program.as_os_str().to_owned()];
    argv.extend(spec.args.iter().map(OsString::from));
    let child = crate::spawn::spawn(&exe, &argv, &env)?;
    record_group(state_dir, stream, child.id() as i32);
    Ok(child)
}

/// Where `program` would be found (a path, or a name looked up in `path`, as `execvp`
/// does), or the error exec would give: ENOENT when nowhere, EACCES when not an
/// executable file.
pub fn resolve(program: &Path, path: Option<&std::ffi::OsStr>) -> std::io::Result<PathBuf> {
    let usable = |p: &Path| -> std::io::Result<()> {
        let c = CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::ENOENT))?;
        let meta = std::fs::metadata(p)?;
        // SAFETY: access on a valid C string.
        if !meta.is_file() || unsafe { libc::access(c.as_ptr(), libc::X_OK) } != 0 {
            return Err(std::io::Error::from_raw_os_error(libc::EACCES));
        }
        Ok(())
    };
    if program.as_os_str().as_bytes().contains(&b'/') {
        return usable(program).map(|_| program.to_path_buf());
    }
    let mut err = std::io::Error::from_raw_os_error(libc::ENOENT);
    let dirs = path.unwrap_or(std::ffi::OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    for dir in std::env::split_paths(dirs) {
        let cand = dir.join(program);
        match usable(&cand) {
            Ok(()) => return Ok(cand),
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => err = e,
            Err(_) => {}
        }
    }
    Err(err)
}

/// A pidfd for `pid` (Linux >= 5.3): readable once the process exits. Close-on-exec.
pub fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall; returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0u32) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// How a wrapper learns its child exited, for `diagnose`: a pidfd in its poll, or (older
/// kernels, or a seccomp filter refusing pidfd_open) a look every 100 ms.
pub fn exit_watch() -> &'static str {
    match pidfd_open(std::process::id()) {
        Ok(_) => "pidfd (Linux >= 5.3): the wrapper's poll wakes at the exit",
        Err(_) => "no pidfd on this kernel: the wrapper looks for the exit every 100 ms",
    }
}

/// The soft RLIMIT_NOFILE before `raise_nofile` (u64::MAX: not raised): children get it
/// back before exec, so ffmpeg runs with the limit the admin set (select() users need it).
pub static NOFILE_SOFT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(u64::MAX);

/// A supervisor holds about five descriptors per stream (pipes, pidfd, mailbox, log):
/// raise the soft RLIMIT_NOFILE to the hard one so 256 streams fit under a 1024 default.
/// We never use select(), so a high limit is safe.
pub fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a live struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let before = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max.min(1 << 20);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                NOFILE_SOFT.store(before, std::sync::atomic::Ordering::Relaxed);
            } else {
                log::debug!(
                    "cannot raise RLIMIT_NOFILE: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

/// Mark every open descriptor from `first` up close-on-exec, one by one (the fallback when
/// `close_range` is missing). Only getrlimit and fcntl, no allocation.
/// Descriptors at or above the soft RLIMIT_NOFILE cannot have been opened under it.
pub fn cloexec_each_from(first: i32) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `lim`; fcntl on any number is harmless (EBADF).
    unsafe {
        let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur.min(1 << 20) as i32
        } else {
            65536
        };
        for fd in first..max {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// Where each stream's current process group is recorded, so the next supervisor can
/// kill what a SIGKILLed one left behind (grandchildren have no PDEATHSIG).
pub fn groups_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("groups")
}

/// This boot's id: a recorded group from an earlier boot is nobody's now.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Start time of a process (clock ticks since boot), field 22 of /proc/<pid>/stat.
pub fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Record `<state_dir>/groups/<stream>` = "pgid boot_id leader_start_time" (overwritten at
/// each spawn; best effort: a failure only weakens the next start's clean-up).
fn record_group(state_dir: &Path, stream: &str, pgid: i32) {
    let dir = groups_dir(state_dir);
    let start = start_time(pgid).unwrap_or(0);
    let text = format!("{pgid} {} {start}\n", boot_id());
    let safe: String = stream
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(safe.trim_start_matches('.'));
    let written = crate::fsafe::ensure_subdir(&dir, GROUPS_DIR_MODE)
        .and_then(|_| crate::fsafe::write_atomic(&path, text.as_bytes(), RECORD_MODE));
    if let Err(e) = written {
        log::warn!(
            "cannot record process group in {}: {}",
            path.display(),
            crate::util::io_reason(&e)
        );
    }
}

/// `groups/` and its records: only the supervisor's user may read or write them (a
/// record names a process group root will SIGKILL).
pub const GROUPS_DIR_MODE: u32 = 0o700;
const RECORD_MODE: u32 = 0o600;

/// Is the recorded group still the one we started? Same boot, and no other process
/// has taken the leader's pid since (Linux never reuses a pid while a group uses it).
pub fn group_is_ours(record: &str, this_boot: &str) -> Option<i32> {
    let mut w = record.split_whitespace();
    let pgid: i32 = w.next()?.parse().ok().filter(|p| *p > 1)?;
    let boot = w.next()?;
    let start: u64 = w.next()?.parse().ok()?;
    if boot != this_boot {
        return None;
    }
    match start_time(pgid) {
        Some(now) if now != start => None,
        _ => Some(pgid),
    }
}

/// What a previous supervisor of this state dir left behind: recorded process groups
/// (SIGKILLed) and marked processes (SIGKILLed). Call with the instance lock held, before
/// spawning anything. Returns the pids that were alive and killed.
pub fn kill_leftovers(state_dir: &Path) -> Vec<i32> {
    let this_boot = boot_id();
    let mut killed = Vec::new();
    let note = |pid: i32, killed: &mut Vec<i32>| {
        if !killed.contains(&pid) {
            killed.push(pid);
        }
    };
    let dir = groups_dir(state_dir);
    // An older version (or a hand-made directory) may have left it open to others, or
    // somebody may have put a symlink there: records are read only from a directory of
    // ours, tightened to its mode.
    let usable = match crate::fsafe::existing_dir(&dir, GROUPS_DIR_MODE) {
        Ok(there) => there,
        Err(e) => {
            log::warn!("ignoring group records: {}", crate::util::io_reason(&e));
            false
        }
    };
    let records = std::fs::read_dir(&dir).ok().filter(|_| usable);
    if let Some(rd) = records {
        for e in rd.flatten() {
            if let Some(why) = crate::fsafe::untrusted_file(&e.path()) {
                log::warn!("ignoring group record {why}");
                let _ = std::fs::remove_file(e.path());
                continue;
            }
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            if let Some(pgid) = group_is_ours(&text, &this_boot) {
                let members = group_members(pgid);
                match members
                    .iter()
                    .find(|p| !crate::fsafe::process_trusted(**p))
                {
                    Some(p) => log::warn!(
                        "not killing process group {pgid} ({}): its member pid {p} runs as another user",
                        e.path().display()
                    ),
                    None => {
                        for pid in members {
                            note(pid, &mut killed);
                        }
                        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                    }
                }
            }
            let _ = std::fs::remove_file(e.path());
        }
    }
    for (m, uid) in find_foreign_marked(state_dir) {
        log::warn!("{}", foreign_note(&m, uid));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let left = find_marked(state_dir);
        if left.is_empty() || std::time::Instant::now() >= deadline {
            break;
        }
        for m in left {
            note(m.pid, &mut killed);
            let _ = nix::sys::signal::kill(Pid::from_raw(m.pid), Signal::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    killed
}

/// Live (non-zombie) processes whose process group is `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Some(f) = stat_fields(pid) else { continue };
        if f.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
            && f.first().map(String::as_str) != Some("Z")
        {
            out.push(pid);
        }
    }
    out
}

/// Descriptors above 2 that the caller passed in (`start 7>&1 | cat`) must not live on in
/// the daemon or its ffmpeg. `close`: close them (long-lived commands); else mark them
/// close-on-exec. Call first thing in main, before any thread or descriptor of ours exists.
pub fn drop_inherited_fds(close: bool) {
    let fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect(),
        Err(_) => return,
    };
    // The directory's own descriptor is closed by now; a stale number just gives EBADF.
    for fd in fds {
        // SAFETY: no thread exists yet and nothing of ours uses descriptors above 2.
        unsafe {
            if close {
                libc::close(fd);
            } else {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
    }
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

/// Every process of a trusted user (ours or root's) whose environment carries our marker
/// for this state dir. Anybody can set two environment variables: a marked process of
/// another user is never ours (`find_foreign_marked` lists them for the log).
pub fn find_marked(state_dir: &Path) -> Vec<Marked> {
    scan_marked(state_dir)
        .into_iter()
        .filter(|m| crate::fsafe::process_trusted(m.pid))
        .collect()
}

/// Marked processes of other users: ignored, reported.
pub fn find_foreign_marked(state_dir: &Path) -> Vec<(Marked, Option<u32>)> {
    scan_marked(state_dir)
        .into_iter()
        .filter(|m| !crate::fsafe::process_trusted(m.pid))
        .map(|m| {
            let uid = crate::fsafe::process_uid(m.pid);
            (m, uid)
        })
        .filter(|(_, uid)| uid.is_some())
        .collect()
}

/// One line for a marked process of another user that we leave alone.
pub fn foreign_note(m: &Marked, uid: Option<u32>) -> String {
    format!(
        "ignored pid {} (uid {}): it carries the marker of stream {:?} but runs as another user, so it is not ours",
        m.pid,
        uid.map(|u| u.to_string()).unwrap_or_else(|| "?".into()),
        m.stream
    )
}

fn scan_marked(state_dir: &Path) -> Vec<Marked> {
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
    let stat = stat_line(pid)?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// /proc/<pid>/stat as it is (`stat_fields` splits it).
pub fn stat_line(pid: i32) -> Option<String> {
    crate::util::read_small(std::path::Path::new(&format!("/proc/{pid}/stat"))).ok()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn recorded_group_is_ours_only_on_this_boot_and_unreused() {
        let me = std::process::id() as i32;
        let my_start = start_time(me).unwrap();
        let boot = "b-this";
        let table: Vec<(String, Option<i32>)> = vec![
            // Leader alive with the recorded start time: still ours.
            (format!("{me} {boot} {my_start}"), Some(me)),
            // Leader's pid now names a process that started at another time: reused.
            (format!("{me} {boot} {}", my_start + 1), None),
            // Leader gone (pid free): its group may still hold grandchildren.
            (format!("{} {boot} 5", i32::MAX - 1), Some(i32::MAX - 1)),
            // Another boot: nobody's now.
            (format!("{me} b-other {my_start}"), None),
            // Never init's group, never garbage.
            (format!("1 {boot} 0"), None),
            ("".into(), None),
            ("12 b-this".into(), None),
            ("x b-this 3".into(), None),
        ];
        for (record, want) in table {
            assert_eq!(group_is_ours(&record, boot), want, "{record:?}");
        }
    }

    #[test]
    fn the_close_range_fallback_marks_every_open_descriptor() {
        // Two descriptors without close-on-exec, as a library might leave them.
        let path = c"/dev/null";
        // SAFETY: plain open/fcntl/close on descriptors this test owns.
        unsafe {
            let a = libc::open(path.as_ptr(), libc::O_RDONLY);
            let b = libc::open(path.as_ptr(), libc::O_RDONLY);
            assert!(a > 2 && b > a);
            let cloexec = |fd| libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC != 0;
            assert!(!cloexec(a) && !cloexec(b));
            cloexec_each_from(a);
            assert!(cloexec(a) && cloexec(b));
            libc::close(a);
            libc::close(b);
        }
    }

    #[test]
    fn records_of_other_users_are_ignored() {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to make a file of another user");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        // A group leader without our marker: only its record could get it killed.
        let mut c = std::process::Command::new("/bin/sleep")
            .arg("5")
            .process_group(0)
            .spawn()
            .unwrap();
        record_group(d.path(), "mic", c.id() as i32);
        let record = groups_dir(d.path()).join("mic");
        let mode = std::fs::metadata(groups_dir(d.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, GROUPS_DIR_MODE);
        assert_eq!(
            std::fs::metadata(&record).unwrap().permissions().mode() & 0o7777,
            RECORD_MODE
        );
        // The same record, but the file belongs to nobody: never acted on.
        std::os::unix::fs::chown(&record, Some(65534), Some(65534)).unwrap();
        assert!(kill_leftovers(d.path()).is_empty());
        assert!(c.try_wait().unwrap().is_none(), "the group was killed");
        assert!(!record.exists(), "the foreign record is dropped");
        // A symlinked groups/ is not read at all.
        let elsewhere = tempfile::tempdir().unwrap();
        let pid = c.id() as i32;
        let valid = format!("{pid} {} {}", boot_id(), start_time(pid).unwrap());
        std::fs::write(elsewhere.path().join("x"), valid).unwrap();
        std::fs::remove_dir(groups_dir(d.path())).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), groups_dir(d.path())).unwrap();
        assert!(kill_leftovers(d.path()).is_empty());
        assert!(elsewhere.path().join("x").exists());
        assert!(c.try_wait().unwrap().is_none(), "the group was killed");
        let _ = c.kill();
        let _ = c.wait();
    }

    #[test]
    fn spawn_records_the_group() {
        let d = tempfile::tempdir().unwrap();
        let spec = ChildSpec {
            program: "/bin/sleep".into(),
            args: vec!["5".into()],
            env: Vec::new(),
        };
        let mut c = spawn(&spec, "a/b", d.path()).unwrap();
        let text = std::fs::read_to_string(groups_dir(d.path()).join("a_b")).unwrap();
        assert_eq!(group_is_ours(&text, &boot_id()), Some(c.id() as i32));
        assert_eq!(kill_leftovers(d.path()), vec![c.id() as i32]);
        let _ = c.wait();
        assert!(!groups_dir(d.path()).join("a_b").exists());
    }
}
