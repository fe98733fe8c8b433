//! Event-driven hot-plug: inotify on `paths.dev_snd` and its `by-id`/`by-path` subdirs
//! wakes the supervisor's main loop for an early rescan (`discovery.watch`). The periodic
//! `discovery.rescan` stays as the safety net: this only makes a rescan come sooner.
//!
//! A USB microphone makes several nodes over a few hundred milliseconds (controlC, pcm,
//! then udev's by-id/by-path links, then its permission change), so events are debounced:
//! one wake `DEBOUNCE` after the last event. A hub that flaps for two seconds therefore
//! costs one rescan at its end, not one per node.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

/// Quiet time after the last event before the rescan (the kernel and udev finish a USB
/// audio device's nodes and links well within it; short enough for a < 0.5 s start).
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// How often the thread looks for a watched directory while one is missing (`by-id` does
/// not exist before the first USB device; a directory made again between two reads).
const RECHECK: Duration = Duration::from_secs(1);

/// The directories watched under `dev_snd`, in order (the first is `dev_snd` itself).
const SUBDIRS: [&str; 3] = ["", "by-id", "by-path"];

/// A running watcher; dropping it wakes and joins the thread at once (a stopping
/// supervisor must not wait for a poll timeout before it releases its lock).
pub struct Watch {
    stop: Arc<AtomicBool>,
    /// Write end of a pipe the thread polls with inotify: a byte (or its closing) wakes it.
    waker: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.waker.take() {
            let _ = nix::unistd::write(&w, b"x");
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What an event means for the debounce (pure, table-tested).
#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    /// A node or link came or went: (re)start the debounce.
    Changed,
    /// A watched directory is gone (or the queue overflowed): re-add watches, and rescan.
    Rewatch,
}

/// The inotify mask for every watched directory: entries created, deleted, renamed in or
/// out, or re-permissioned (udev chowns a new node to `audio` after creating it), and the
/// directory itself going away.
fn mask() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
}

/// Classify one event's mask.
pub fn effect(m: AddWatchFlags) -> Effect {
    if m.intersects(
        AddWatchFlags::IN_IGNORED
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF
            | AddWatchFlags::IN_Q_OVERFLOW,
    ) {
        return Effect::Rewatch;
    }
    // A subdir (by-id, by-path) created under dev_snd must be watched too.
    if m.contains(AddWatchFlags::IN_ISDIR)
        && m.intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
    {
        return Effect::Rewatch;
    }
    Effect::Changed
}

/// When the debounced wake is due: `DEBOUNCE` after the last event (pure).
pub fn due(last_event: Option<Instant>, debounce: Duration) -> Option<Instant> {
    last_event.map(|t| t + debounce)
}

struct Watcher {
    ino: Inotify,
    root: PathBuf,
    /// One slot per `SUBDIRS` entry.
    wds: [Option<WatchDescriptor>; 3],
}

impl Watcher {
    /// Add a watch for every existing directory that has none. Returns the first error
    /// for `dev_snd` itself (the caller reports it once).
    fn ensure(&mut self) -> Result<(), String> {
        let mut first_err = None;
        for (i, sub) in SUBDIRS.iter().enumerate() {
            let dir = if sub.is_empty() {
                self.root.clone()
            } else {
                self.root.join(sub)
            };
            if self.wds[i].is_some() {
                continue;
            }
            match self.ino.add_watch(&dir, mask()) {
                Ok(wd) => self.wds[i] = Some(wd),
                Err(e) if i == 0 => first_err = Some(format!("{}: {}", dir.display(), e.desc())),
                Err(_) => {} // by-id/by-path appear with the first USB device
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Forget the watch descriptors the kernel dropped (IN_IGNORED) so `ensure` re-adds.
    fn forget(&mut self, wd: WatchDescriptor) {
        for slot in self.wds.iter_mut() {
            if *slot == Some(wd) {
                *slot = None;
            }
        }
    }
}

/// Start watching `dev_snd`. `wake` asks the main loop for a rescan; it returns `false`
/// once nobody listens any more, which ends the thread. Errors when inotify cannot be set
/// up at all or `dev_snd` cannot be watched (the caller logs and relies on the rescan).
pub fn start(
    dev_snd: &Path,
    debounce: Duration,
    wake: impl Fn() -> bool + Send + 'static,
) -> Result<Watch, String> {
    let ino = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
        .map_err(|e| format!("inotify_init1: {}", e.desc()))?;
    let mut w = Watcher {
        ino,
        root: dev_snd.to_path_buf(),
        wds: [None, None, None],
    };
    w.ensure()?;
    let (wake_rx, wake_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("pipe2: {}", e.desc()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("hotplug-watch".into())
        .spawn(move || run(w, debounce, &flag, &wake_rx, wake))
        .map_err(|e| format!("cannot start watch thread: {e}"))?;
    Ok(Watch {
        stop,
        waker: Some(wake_tx),
        thread: Some(thread),
    })
}

fn run(
    mut w: Watcher,
    debounce: Duration,
    stop: &AtomicBool,
    stop_fd: &OwnedFd,
    wake: impl Fn() -> bool,
) {
    let mut last_event: Option<Instant> = None;
    let mut next_check = Instant::now() + RECHECK;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        // Only a missing directory needs looking for; with all three watched the thread
        // sleeps until an event (or the debounce after one) and costs nothing.
        let missing = w.wds.iter().any(Option::is_none);
        let until = [due(last_event, debounce), missing.then_some(next_check)]
            .into_iter()
            .flatten()
            .min();
        let timeout = until.map_or(PollTimeout::NONE, |u| {
            let ms = u.saturating_duration_since(now).as_millis();
            PollTimeout::from(ms.min(u16::MAX as u128) as u16)
        });
        let mut fds = [
            PollFd::new(w.ino.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop_fd.as_fd(), PollFlags::POLLIN),
        ];
        let ready = poll(&mut fds, timeout).unwrap_or(0);
        let inotify_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if ready > 0 && inotify_ready {
            let mut rewatch = false;
            while let Ok(events) = w.ino.read_events() {
                if events.is_empty() {
                    break;
                }
                for ev in events {
                    log::debug!("hot-plug watch: {:?} {:?}", ev.mask, ev.name);
                    if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                        w.forget(ev.wd);
                    }
                    if effect(ev.mask) == Effect::Rewatch {
                        rewatch = true;
                    }
                }
                last_event = Some(Instant::now());
            }
            if rewatch {
                let _ = w.ensure();
            }
        }
        let now = Instant::now();
        if due(last_event, debounce).is_some_and(|d| now >= d) {
            last_event = None;
            if !wake() {
                return;
            }
        }
        if now >= next_check {
            next_check = now + RECHECK;
            let missing = w.wds.iter().any(Option::is_none);
            if missing {
                let before = w.wds;
                let _ = w.ensure();
                // A directory that appeared unseen (dev_snd itself, or by-id created
                // between our events) may hold a new device: rescan.
                if before != w.wds {
                    last_event = Some(now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn effects() {
        use AddWatchFlags as F;
        let table = [
            (F::IN_CREATE, Effect::Changed),
            (F::IN_DELETE, Effect::Changed),
            (F::IN_MOVED_TO, Effect::Changed),
            (F::IN_ATTRIB, Effect::Changed),
            (F::IN_CREATE | F::IN_ISDIR, Effect::Rewatch),
            (F::IN_MOVED_TO | F::IN_ISDIR, Effect::Rewatch),
            (F::IN_DELETE | F::IN_ISDIR, Effect::Changed),
            (F::IN_IGNORED, Effect::Rewatch),
            (F::IN_DELETE_SELF, Effect::Rewatch),
            (F::IN_Q_OVERFLOW, Effect::Rewatch),
        ];
        for (m, want) in table {
            assert_eq!(effect(m), want, "{m:?}");
        }
    }

    #[test]
    fn debounce_due() {
        let t = Instant::now();
        assert_eq!(due(None, DEBOUNCE), None);
        assert_eq!(due(Some(t), DEBOUNCE), Some(t + DEBOUNCE));
    }

    /// A burst of node changes gives one wake, after the burst; by-id created later is
    /// watched too; a missing dev_snd is an error.
    #[test]
    fn burst_gives_one_wake_and_new_subdirs_are_watched() {
        let dir = tempfile::tempdir().unwrap();
        let snd = dir.path().join("snd");
        assert!(start(&snd, DEBOUNCE, || true).is_err());
        std::fs::create_dir(&snd).unwrap();
        let (tx, rx) = mpsc::channel();
        let _w = start(&snd, Duration::from_millis(100), move || {
            tx.send(()).is_ok()
        })
        .unwrap();
        for i in 0..10 {
            std::fs::write(snd.join(format!("pcmC{i}D0c")), "").unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
        assert!(
            rx.recv_timeout(Duration::from_millis(400)).is_err(),
            "one wake"
        );
        std::fs::create_dir(snd.join("by-id")).unwrap();
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
        std::thread::sleep(Duration::from_millis(50));
        std::os::unix::fs::symlink("../controlC1", snd.join("by-id/usb-x-00")).unwrap();
        assert!(
            rx.recv_timeout(Duration::from_secs(5)).is_ok(),
            "by-id watched"
        );
        // udev removes by-id with the last USB device and makes it again with the next.
        std::fs::remove_file(snd.join("by-id/usb-x-00")).unwrap();
        std::fs::remove_dir(snd.join("by-id")).unwrap();
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
        std::fs::create_dir(snd.join("by-id")).unwrap();
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
        std::thread::sleep(Duration::from_millis(50));
        std::os::unix::fs::symlink("../controlC2", snd.join("by-id/usb-y-00")).unwrap();
        assert!(
            rx.recv_timeout(Duration::from_secs(5)).is_ok(),
            "re-made by-id watched"
        );
    }

    /// Dropping the watch ends the thread at once, not after a poll timeout: the
    /// supervisor drops it on its way to releasing the lock.
    #[test]
    fn drop_is_immediate() {
        let dir = tempfile::tempdir().unwrap();
        let w = start(dir.path(), DEBOUNCE, || true).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        drop(w);
        assert!(
            t.elapsed() < Duration::from_millis(300),
            "{:?}",
            t.elapsed()
        );
    }
}
