//! Root acts only on what root wrote (issue 18): explicit modes whatever the umask, no
//! symlink followed where we create a file, and an owner check before a file or a process
//! is trusted.
//!
//! "Trusted" means owned by our effective uid or by root: a root supervisor trusts only
//! root's files and processes; a non-root command (e.g. `status` or `stop` as a user)
//! may read root's pid file, and the kernel refuses any signal it is not allowed to send.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Our effective uid.
pub fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Is `uid` ours (or root's)?
pub fn trusted_uid(uid: u32) -> bool {
    uid == euid() || uid == 0
}

/// The real uid of a live process, from the `Uid:` line of `/proc/<pid>/status`.
pub fn process_uid(pid: i32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A live process whose real uid we trust.
pub fn process_trusted(pid: i32) -> bool {
    process_uid(pid).is_some_and(trusted_uid)
}

/// Why `path` (not followed if a symlink) is not a file of ours, or `None` when it is a
/// regular file owned by a trusted uid.
pub fn untrusted_file(path: &Path) -> Option<String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => {
            Some(format!("{}: not a regular file", path.display()))
        }
        Ok(m) if !trusted_uid(m.uid()) => Some(format!(
            "{}: owned by uid {}, not by uid {}",
            path.display(),
            m.uid(),
            euid()
        )),
        Ok(_) => None,
        Err(e) => Some(format!(
            "{}: {}",
            path.display(),
            crate::util::io_reason(&e)
        )),
    }
}

/// Make `dir` (and its missing parents) with `mode`, whatever the umask. A directory that
/// exists must be ours: one owned by another user is an error (that user could swap any
/// file in it); one of ours that group or others may write is tightened to `mode` (an
/// older version, or a hand-made `mkdir` under `umask 000`), unless it is sticky (a
/// shared directory such as /tmp: then an error, choose a directory of its own).
pub fn ensure_dir(dir: &Path, mode: u32) -> io::Result<()> {
    make_dir(dir, mode, Tighten::Exact)
}

/// `ensure_dir` for a directory that may be shared with other programs of root's (the
/// log directory, the names file's directory): made with `mode`; when it exists, only a
/// write bit for others is taken away (a group-writable `/var/log` stays as it is).
pub fn ensure_shared_dir(dir: &Path, mode: u32) -> io::Result<()> {
    make_dir(dir, mode, Tighten::OthersWrite)
}

/// What `check_dir` does to an existing directory of ours that others may write.
#[derive(Clone, Copy)]
enum Tighten {
    /// Ours alone (the state dir and what is in it): set to the mode meant.
    Exact,
    /// Possibly shared: drop only the others' write bit.
    OthersWrite,
}

fn make_dir(dir: &Path, mode: u32, tighten: Tighten) -> io::Result<()> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Parents made on the way get the usual 0755, whatever the umask.
            let mut missing: Vec<&Path> = dir
                .ancestors()
                .skip(1)
                .filter(|p| !p.as_os_str().is_empty())
                .take_while(|p| std::fs::symlink_metadata(p).is_err())
                .collect();
            missing.reverse();
            for p in missing {
                match std::fs::DirBuilder::new().mode(0o755).create(p) {
                    Ok(()) => std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))?,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
            }
            match std::fs::DirBuilder::new().mode(mode).create(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return check_dir(dir, mode, tighten)
                }
                Err(e) => return Err(e),
            }
            // The umask narrowed the mode at mkdir; set it as meant.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        }
        Err(e) => Err(e),
        Ok(_) => check_dir(dir, mode, tighten),
    }
}

/// For a directory we made inside the state dir (`groups/`, `streams/`): `Ok(false)` when
/// it does not exist, `Ok(true)` when it is a real directory of ours (a looser mode is
/// tightened to `mode`), an error for a symlink or another user's directory.
pub fn existing_dir(dir: &Path, mode: u32) -> io::Result<bool> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
        Ok(m) if !m.file_type().is_dir() => Err(io::Error::other(format!(
            "{}: not a directory (a symlink?)",
            dir.display()
        ))),
        Ok(_) => check_dir(dir, mode, Tighten::Exact).map(|_| true),
    }
}

/// `existing_dir`, making it with `mode` when missing.
pub fn ensure_subdir(dir: &Path, mode: u32) -> io::Result<()> {
    if existing_dir(dir, mode)? {
        return Ok(());
    }
    ensure_dir(dir, mode)
}

fn check_dir(dir: &Path, mode: u32, tighten: Tighten) -> io::Result<()> {
    let m = std::fs::metadata(dir)?;
    if !m.is_dir() {
        return Err(io::Error::other(format!(
            "{}: not a directory",
            dir.display()
        )));
    }
    if !trusted_uid(m.uid()) {
        return Err(io::Error::other(format!(
            "{} is owned by uid {}, not by uid {}: refusing to use it (another user could replace its files)",
            dir.display(),
            m.uid(),
            euid()
        )));
    }
    let have = m.permissions().mode() & 0o7777;
    let want = match tighten {
        Tighten::Exact if have & 0o022 != 0 => mode,
        Tighten::OthersWrite if have & 0o002 != 0 => have & !0o002,
        _ => return Ok(()),
    };
    if have & 0o002 != 0 && have & 0o1000 != 0 {
        return Err(io::Error::other(format!(
            "{} is a shared directory (mode {have:04o}): point it at a directory of its own",
            dir.display()
        )));
    }
    log::warn!(
        "{}: mode {have:04o} let other users write into it; set to {want:04o}",
        dir.display()
    );
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(want))
}

/// Open `path` for appending, creating it with `mode`; never through a symlink. A file of
/// ours that exists gets `mode` (an older version may have left 0666); anything else under
/// that name (another user's file, a symlink, a FIFO: planted while the directory was open
/// to others) is removed and a fresh file made in its place, with a warning.
pub fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    let opened = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        // O_NONBLOCK: a planted FIFO must not block the open (regular files ignore it).
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let why = match opened {
        Ok(f) => match own_and_mode(&f, path, mode) {
            Ok(()) => {
                use std::os::fd::AsRawFd;
                // SAFETY: F_GETFL/F_SETFL on our own open descriptor.
                unsafe {
                    let fl = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
                    libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
                }
                return Ok(f);
            }
            Err(e) => e.to_string(),
        },
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENXIO)) => {
            format!("{}: a symlink or a FIFO", path.display())
        }
        Err(e) => return Err(e),
    };
    log::warn!("{why}: not a file of ours; replacing it with a fresh one");
    std::fs::remove_file(path)?;
    let f = OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(f)
}

/// A descriptor we opened must name a regular file of ours, then gets `mode`.
pub fn own_and_mode(f: &File, path: &Path, mode: u32) -> io::Result<()> {
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(io::Error::other(format!(
            "{}: not a regular file",
            path.display()
        )));
    }
    if !trusted_uid(m.uid()) {
        return Err(io::Error::other(format!(
            "{}: owned by uid {}, not by uid {}",
            path.display(),
            m.uid(),
            euid()
        )));
    }
    if m.permissions().mode() & 0o7777 != mode {
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Replace `path` with `text`, mode `mode`: a fresh temp file (O_EXCL: never a planted
/// file or symlink) in the same directory, then rename over `path`.
pub fn write_atomic(path: &Path, text: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Our pid and a sequence number: two threads replacing the same file never share a
    // temp name. The name does not end like the target (node_exporter reads `*.prom`).
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{seq}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp); // a leftover of a crashed run with our pid
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(text)?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run `f` under `mask` (process-wide, briefly: only for these tests' own temp paths).
    fn with_umask<T>(mask: u32, f: impl FnOnce() -> T) -> T {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
        let r = f();
        nix::sys::stat::umask(old);
        r
    }

    fn with_umask_000<T>(f: impl FnOnce() -> T) -> T {
        with_umask(0, f)
    }

    #[test]
    fn a_strict_umask_does_not_narrow_the_modes_either() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("p/q/state");
        with_umask(0o077, || {
            ensure_dir(&dir, 0o755).unwrap();
            write_atomic(&dir.join("supervisor.pid"), b"1\n", 0o644).unwrap();
        });
        for p in [d.path().join("p"), d.path().join("p/q"), dir.clone()] {
            assert_eq!(mode(&p), 0o755, "{}", p.display());
        }
        assert_eq!(mode(&dir.join("supervisor.pid")), 0o644);
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn modes_are_explicit_whatever_the_umask() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("a/b/state");
        with_umask_000(|| {
            ensure_dir(&dir, 0o755).unwrap();
            ensure_dir(&dir.join("groups"), 0o700).unwrap();
            write_atomic(&dir.join("groups/x"), b"1\n", 0o600).unwrap();
            drop(open_append(&dir.join("x.log"), 0o640).unwrap());
        });
        assert_eq!(mode(&dir), 0o755);
        assert_eq!(mode(&d.path().join("a")), 0o755);
        assert_eq!(mode(&dir.join("groups")), 0o700);
        assert_eq!(mode(&dir.join("groups/x")), 0o600);
        assert_eq!(mode(&dir.join("x.log")), 0o640);
        // An existing dir of ours that others may write is tightened; a sticky one refused.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        ensure_dir(&dir, 0o755).unwrap();
        assert_eq!(mode(&dir), 0o755);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let e = ensure_dir(&dir, 0o755).unwrap_err();
        assert!(e.to_string().contains("shared directory"), "{e}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A possibly shared directory (logs): group write stays, others' write goes.
        let logs = d.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        for (have, want) in [(0o775, Some(0o775)), (0o777, Some(0o775)), (0o1777, None)] {
            std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(have)).unwrap();
            let got = ensure_shared_dir(&logs, 0o755).map(|_| mode(&logs)).ok();
            assert_eq!(got, want, "{have:04o}");
        }
        // A planted symlink is never followed.
        let target = d.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.join("y.log")).unwrap();
        assert!(untrusted_file(&dir.join("y.log")).is_some());
        let mut f = open_append(&dir.join("y.log"), 0o640).unwrap();
        f.write_all(b"line\n").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert_eq!(
            std::fs::read_to_string(dir.join("y.log")).unwrap(),
            "line\n"
        );
        assert_eq!(mode(&dir.join("y.log")), 0o640);
        // A planted FIFO neither blocks the open nor stays.
        nix::unistd::mkfifo(
            &dir.join("f.log"),
            nix::sys::stat::Mode::from_bits_truncate(0o666),
        )
        .unwrap();
        drop(open_append(&dir.join("f.log"), 0o640).unwrap());
        assert!(std::fs::symlink_metadata(dir.join("f.log"))
            .unwrap()
            .is_file());
        std::os::unix::fs::symlink(&target, dir.join("z")).unwrap();
        write_atomic(&dir.join("z"), b"new", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert!(untrusted_file(&dir.join("z")).is_none());
    }

    #[test]
    fn process_owner_from_proc() {
        assert_eq!(process_uid(std::process::id() as i32), Some(euid()));
        assert!(process_trusted(std::process::id() as i32));
        assert_eq!(process_uid(i32::MAX - 1), None);
    }
}
