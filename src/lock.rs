//! The instance lock (SPEC §7): `<state_dir>/lock`, exclusive `flock`, held for the
//! supervisor's lifetime, never deleted. A crashed supervisor's lock is released by the
//! kernel, so a stale file never blocks the next start (the bash tool's failure mode).

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::exit::{Error, Exit};
use crate::util::io_reason;

pub struct InstanceLock {
    /// Kept open: closing the file (or dying) releases the lock.
    _file: File,
    pid_file: PathBuf,
}

/// The state dir: others may read it (the world-readable pid file tells a non-root
/// `status` who runs), only we write. The lock is 0600, so nobody else can open it, and
/// a lock nobody else can open cannot be held by anybody else.
pub const STATE_DIR_MODE: u32 = 0o755;
const LOCK_MODE: u32 = 0o600;
const PID_MODE: u32 = 0o644;

pub fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join("lock")
}

pub fn pid_path(state_dir: &Path) -> PathBuf {
    state_dir.join("supervisor.pid")
}

/// The pid recorded by the last supervisor, if the file holds one and is ours (a pid file
/// another user planted is ignored).
pub fn recorded_pid(state_dir: &Path) -> Option<i32> {
    let path = pid_path(state_dir);
    if let Some(why) = crate::fsafe::untrusted_file(&path) {
        if path.symlink_metadata().is_ok() {
            log::warn!("ignoring pid file {why}");
        }
        return None;
    }
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
}

/// Make the state dir with its mode, whatever the umask (see `fsafe::ensure_dir`).
pub fn ensure_state_dir(state_dir: &Path) -> Result<(), Error> {
    crate::fsafe::ensure_dir(state_dir, STATE_DIR_MODE).map_err(|e| {
        Error::general(format!(
            "cannot use state directory {}: {}",
            state_dir.display(),
            io_reason(&e)
        ))
    })
}

/// What one attempt at the lock found.
enum Take {
    Got(File),
    /// Held by a process we trust: another supervisor.
    Held,
    /// Changed under us (a replacement under way, a holder just left): look again.
    Retry,
}

fn lock_err(path: &Path, what: &str, e: &std::io::Error) -> Error {
    Error::general(format!(
        "cannot {what} {}: {}",
        path.display(),
        io_reason(e)
    ))
}

impl InstanceLock {
    /// Take the lock at once or fail with exit 5 naming the holder's pid.
    pub fn acquire(state_dir: &Path) -> Result<InstanceLock, Error> {
        ensure_state_dir(state_dir)?;
        let path = lock_path(state_dir);
        let mut got = None;
        for _ in 0..40 {
            match try_take(&path)? {
                Take::Got(f) => {
                    got = Some(f);
                    break;
                }
                Take::Held => {
                    let holder = recorded_pid(state_dir)
                        .map(|p| format!(" (pid {p})"))
                        .unwrap_or_default();
                    return Err(Error::new(
                        Exit::LockHeld,
                        format!(
                            "another supervisor is running{holder}: lock {} is held",
                            path.display()
                        ),
                    ));
                }
                Take::Retry => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        let file = got.ok_or_else(|| {
            Error::general(format!(
                "cannot take lock {}: it kept changing for 2s",
                path.display()
            ))
        })?;
        let pid_file = pid_path(state_dir);
        let text = format!("{}\n", std::process::id());
        if let Err(e) = crate::fsafe::write_atomic(&pid_file, text.as_bytes(), PID_MODE) {
            return Err(lock_err(&pid_file, "write", &e));
        }
        Ok(InstanceLock {
            _file: file,
            pid_file,
        })
    }
}

/// Open (or create) the lock file: never through a symlink; `None` when what is there is
/// not a regular file of ours (then it is replaced). Ours with a looser mode (an older
/// version made it 0644) gets 0600.
fn open_lock(path: &Path) -> Result<Option<File>, Error> {
    // No truncation; std opens with O_CLOEXEC so no ffmpeg child inherits the lock.
    let f = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(LOCK_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(e) => return Err(lock_err(path, "open lock file", &e)),
    };
    let m = f
        .metadata()
        .map_err(|e| lock_err(path, "open lock file", &e))?;
    if !m.is_file() || !crate::fsafe::trusted_uid(m.uid()) {
        return Ok(None);
    }
    if m.permissions().mode() & 0o7777 != LOCK_MODE {
        f.set_permissions(std::fs::Permissions::from_mode(LOCK_MODE))
            .map_err(|e| lock_err(path, "set the mode of", &e))?;
    }
    Ok(Some(f))
}

fn try_take(path: &Path) -> Result<Take, Error> {
    let Some(f) = open_lock(path)? else {
        let why = crate::fsafe::untrusted_file(path).unwrap_or_default();
        return replace(path, None, &why);
    };
    match f.try_lock() {
        Ok(()) if settled(&f, path) => Ok(Take::Got(f)),
        Ok(()) => Ok(Take::Retry),
        Err(TryLockError::WouldBlock) => {
            let ino = f.metadata().map(|m| m.ino()).unwrap_or(0);
            match foreign_holders(ino) {
                Some(who) => replace(path, Some(ino), &who),
                None if holders(ino).is_some_and(|h| h.is_empty()) => Ok(Take::Retry),
                None => Ok(Take::Held),
            }
        }
        Err(TryLockError::Error(e)) => Err(lock_err(path, "lock", &e)),
    }
}

/// Name of the file a replacement is prepared under; its existence is the mutex between
/// two starts that both find the lock squatted.
fn new_path(path: &Path) -> PathBuf {
    path.with_file_name("lock.new")
}

fn same_inode(f: &File, path: &Path) -> bool {
    match (f.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// After our flock succeeded: no replacement is under way (else it may rename another
/// file over ours) and the path still names the inode we locked.
fn settled(f: &File, path: &Path) -> bool {
    let new = new_path(path);
    let until = Instant::now() + Duration::from_secs(2);
    while new.symlink_metadata().is_ok() {
        clear_stale(&new);
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    same_inode(f, path)
}

/// A `lock.new` nobody holds (its maker died) or that is not ours goes.
fn clear_stale(new: &Path) {
    if crate::fsafe::untrusted_file(new).is_some() {
        let _ = std::fs::remove_file(new);
        return;
    }
    let Ok(f) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(new)
    else {
        return;
    };
    let old = f
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > Duration::from_secs(1));
    if old && f.try_lock().is_ok() {
        let _ = std::fs::remove_file(new);
    }
}

/// The lock file is not ours, or only other users' processes hold it (an older version
/// made it 0644 and somebody took it): make a fresh 0600 one, lock it, and rename it over
/// the old name. The squatter keeps a lock on a file nobody looks at any more.
fn replace(path: &Path, squatted: Option<u64>, why: &str) -> Result<Take, Error> {
    let new = new_path(path);
    let nf = match OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(LOCK_MODE)
        .open(&new)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            clear_stale(&new);
            return Ok(Take::Retry);
        }
        Err(e) => return Err(lock_err(&new, "create", &e)),
    };
    if nf.try_lock().is_err() {
        return Ok(Take::Retry);
    }
    nf.set_permissions(std::fs::Permissions::from_mode(LOCK_MODE))
        .map_err(|e| lock_err(&new, "set the mode of", &e))?;
    // Under the mutex, look again: still the same squatted or foreign file?
    let still = match squatted {
        Some(ino) => {
            std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == ino)
                && foreign_holders(ino).is_some()
        }
        None => crate::fsafe::untrusted_file(path).is_some(),
    };
    if !still {
        let _ = std::fs::remove_file(&new);
        return Ok(Take::Retry);
    }
    if let Err(e) = std::fs::rename(&new, path) {
        let _ = std::fs::remove_file(&new);
        return Err(lock_err(path, "replace", &e));
    }
    if !same_inode(&nf, path) {
        return Ok(Take::Retry);
    }
    log::warn!(
        "lock {}: {why}; replaced it with a fresh one only this user can open",
        path.display()
    );
    Ok(Take::Got(nf))
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // The lock file stays; the pid file goes so `status` does not name a dead pid.
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// True when a process we trust (ours or root's) holds the lock right now. A lock held
/// only by other users' processes is nobody's: it does not stop a start or make `status`
/// say running.
pub fn is_held(state_dir: &Path) -> bool {
    let path = lock_path(state_dir);
    let Ok(m) = std::fs::metadata(&path) else {
        return false;
    };
    match holders(m.ino()) {
        Some(h) => h
            .iter()
            .any(|pid| *pid == 0 || crate::fsafe::process_trusted(*pid)),
        // No /proc/locks: probe (without keeping it).
        None => File::open(&path)
            .is_ok_and(|f| matches!(f.try_lock_shared(), Err(TryLockError::WouldBlock))),
    }
}

/// Every FLOCK holder (shared or exclusive, not waiters) of inode `ino`; `None` when
/// /proc/locks cannot be read.
fn holders(ino: u64) -> Option<Vec<i32>> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    Some(holders_in(&locks, ino))
}

fn holders_in(locks: &str, ino: u64) -> Vec<i32> {
    locks
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.len() < 6 || w[1] != "FLOCK" {
                return None;
            }
            let file_ino: u64 = w[5].rsplit(':').next()?.parse().ok()?;
            (file_ino == ino).then(|| w[4].parse().ok()).flatten()
        })
        .collect()
}

/// `Some(description)` when `ino` is held, and only by processes we do not trust. Pid 0
/// is a holder in another pid namespace (a supervisor in a container sharing the state
/// dir?): unknown, so never "foreign". A positive pid that is gone took the lock and
/// passed its descriptor on before dying: never a supervisor (ours holds its own lock for
/// as long as it lives).
fn foreign_holders(ino: u64) -> Option<String> {
    let h = holders(ino)?;
    if h.is_empty()
        || h.iter()
            .any(|p| *p == 0 || crate::fsafe::process_trusted(*p))
    {
        return None;
    }
    let who: Vec<String> = h
        .iter()
        .map(|p| match crate::fsafe::process_uid(*p) {
            Some(uid) => format!("pid {p} (uid {uid})"),
            None => format!("pid {p} (gone)"),
        })
        .collect();
    Some(format!("held by {}, not by this user", who.join(", ")))
}

/// The pid holding the instance lock, from /proc/locks (the pid file may already be gone,
/// e.g. during shutdown): `force-stop` must not say "no supervisor" while one holds it.
pub fn holder_pid(state_dir: &Path) -> Option<i32> {
    let ino = std::fs::metadata(lock_path(state_dir)).ok()?.ino();
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    holder_in(&locks, ino)
}

/// The FLOCK WRITE holder of inode `ino` in /proc/locks text (waiters, `->`, skipped).
fn holder_in(locks: &str, ino: u64) -> Option<i32> {
    locks.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() < 6 || w[1] != "FLOCK" || w[3] != "WRITE" {
            return None;
        }
        let file_ino: u64 = w[5].rsplit(':').next()?.parse().ok()?;
        (file_ino == ino).then(|| w[4].parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_holder_from_proc_locks() {
        let text = "1: FLOCK  ADVISORY  WRITE 27640 fe:00:5391466 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 99 fe:00:42 0 EOF\n\
                    2: FLOCK  ADVISORY  READ 11 fe:00:42 0 EOF\n\
                    3: POSIX  ADVISORY  WRITE 12 fe:00:42 0 EOF\n\
                    4: FLOCK  ADVISORY  WRITE 25788 fe:00:42 0 EOF\n";
        assert_eq!(holder_in(text, 42), Some(25788));
        assert_eq!(holder_in(text, 5391466), Some(27640));
        assert_eq!(holder_in(text, 7), None);
        let d = tempfile::tempdir().unwrap();
        let _l = InstanceLock::acquire(d.path()).unwrap();
        assert_eq!(holder_pid(d.path()), Some(std::process::id() as i32));
    }

    #[test]
    fn every_flock_holder_of_the_inode() {
        let text = "1: FLOCK  ADVISORY  WRITE 27640 fe:00:42 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 99 fe:00:42 0 EOF\n\
                    2: FLOCK  ADVISORY  READ 11 fe:00:42 0 EOF\n\
                    3: POSIX  ADVISORY  WRITE 12 fe:00:42 0 EOF\n\
                    4: FLOCK  ADVISORY  READ 13 fe:00:43 0 EOF\n";
        assert_eq!(holders_in(text, 42), vec![27640, 11]);
        assert_eq!(holders_in(text, 7), Vec::<i32>::new());
    }

    #[test]
    fn the_lock_is_0600_and_a_foreign_one_is_replaced() {
        let d = tempfile::tempdir().unwrap();
        let path = lock_path(d.path());
        // An earlier version's 0644 lock of ours: tightened, same file.
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let ino = std::fs::metadata(&path).unwrap().ino();
        let l = InstanceLock::acquire(d.path()).unwrap();
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!((m.permissions().mode() & 0o7777, m.ino()), (0o600, ino));
        let pid = std::fs::metadata(pid_path(d.path())).unwrap();
        assert_eq!(pid.permissions().mode() & 0o7777, 0o644);
        drop(l);
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        // Another user's lock file (or a symlink) is replaced by a fresh one of ours.
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        let l = InstanceLock::acquire(d.path()).unwrap();
        let m = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!((m.uid(), m.permissions().mode() & 0o7777), (0, 0o600));
        assert_ne!(m.ino(), ino);
        assert!(!d.path().join("lock.new").exists());
        drop(l);
        let target = d.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        drop(InstanceLock::acquire(d.path()).unwrap());
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }

    #[test]
    fn second_acquire_fails_with_5_and_release_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let l = InstanceLock::acquire(d.path()).unwrap();
        assert!(is_held(d.path()));
        let e = InstanceLock::acquire(d.path()).err().unwrap();
        assert_eq!(e.exit, Exit::LockHeld);
        assert!(
            e.message.contains(&format!("pid {}", std::process::id())),
            "{}",
            e.message
        );
        drop(l);
        assert!(!is_held(d.path()));
        assert!(lock_path(d.path()).exists(), "lock file is never deleted");
        InstanceLock::acquire(d.path()).unwrap();
    }
}
