//! The instance lock (SPEC §7): `<state_dir>/lock`, exclusive `flock`, held for the
//! supervisor's lifetime, never deleted. A crashed supervisor's lock is released by the
//! kernel, so a stale file never blocks the next start (the bash tool's failure mode).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::exit::{Error, Exit};
use crate::util::io_reason;

pub struct InstanceLock {
    /// Kept open: closing the file (or dying) releases the lock.
    _file: File,
    pid_file: PathBuf,
}

pub fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join("lock")
}

pub fn pid_path(state_dir: &Path) -> PathBuf {
    state_dir.join("supervisor.pid")
}

/// The pid recorded by the last supervisor, if the file holds one.
pub fn recorded_pid(state_dir: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_path(state_dir))
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
}

fn open(state_dir: &Path) -> Result<File, Error> {
    std::fs::create_dir_all(state_dir).map_err(|e| {
        Error::general(format!(
            "cannot create state directory {}: {}",
            state_dir.display(),
            io_reason(&e)
        ))
    })?;
    let path = lock_path(state_dir);
    // No truncation; std opens with O_CLOEXEC so no ffmpeg child inherits the lock.
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&path)
        .map_err(|e| {
            Error::general(format!(
                "cannot open lock file {}: {}",
                path.display(),
                io_reason(&e)
            ))
        })
}

impl InstanceLock {
    /// Take the lock at once or fail with exit 5 naming the holder's pid.
    pub fn acquire(state_dir: &Path) -> Result<InstanceLock, Error> {
        let file = open(state_dir)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = recorded_pid(state_dir)
                    .map(|p| format!(" (pid {p})"))
                    .unwrap_or_default();
                return Err(Error::new(
                    Exit::LockHeld,
                    format!(
                        "another supervisor is running{holder}: lock {} is held",
                        lock_path(state_dir).display()
                    ),
                ));
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::general(format!(
                    "cannot lock {}: {}",
                    lock_path(state_dir).display(),
                    io_reason(&e)
                )))
            }
        }
        let pid_file = pid_path(state_dir);
        let tmp = state_dir.join(".supervisor.pid.tmp");
        let written = File::create(&tmp)
            .and_then(|mut f| writeln!(f, "{}", std::process::id()))
            .and_then(|_| std::fs::rename(&tmp, &pid_file));
        if let Err(e) = written {
            return Err(Error::general(format!(
                "cannot write {}: {}",
                pid_file.display(),
                io_reason(&e)
            )));
        }
        Ok(InstanceLock {
            _file: file,
            pid_file,
        })
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // The lock file stays; the pid file goes so `status` does not name a dead pid.
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// True when some process holds the lock right now (probe without keeping it).
pub fn is_held(state_dir: &Path) -> bool {
    let Ok(file) = File::open(lock_path(state_dir)) else {
        return false;
    };
    matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
}

/// The pid holding the instance lock, from /proc/locks (the pid file may already be gone,
/// e.g. during shutdown): `force-stop` must not say "no supervisor" while one holds it.
pub fn holder_pid(state_dir: &Path) -> Option<i32> {
    use std::os::unix::fs::MetadataExt;
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
