//! A wrapper's command mailbox: a channel plus an eventfd, so the wrapper can wait on its
//! commands and its child's descriptors in one `poll` (no helper threads). The receiving
//! side mirrors `std::sync::mpsc::Receiver` so the wrapper's match arms stay as they were.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::Msg;

/// The sending side: what the supervisor, the poller and the control thread hold.
#[derive(Clone)]
pub struct Tx {
    tx: mpsc::Sender<Msg>,
    wake: Arc<OwnedFd>,
}

/// The wrapper's side.
pub struct Rx {
    rx: mpsc::Receiver<Msg>,
    wake: Arc<OwnedFd>,
    /// Answers of the wrapper's own short-lived helpers (the RTSP probe): a queue beside
    /// the channel, so those helpers hold no `Tx` and a stream whose handles are all
    /// dropped still sees `Disconnected`.
    side: Arc<Mutex<VecDeque<Msg>>>,
}

/// A sender for the wrapper's own helpers (see `Rx::side`). It holds the wake descriptor
/// weakly: it neither keeps the mailbox open nor counts as a sender.
#[derive(Clone)]
pub struct Local {
    side: Arc<Mutex<VecDeque<Msg>>>,
    wake: Weak<OwnedFd>,
}

impl Local {
    /// Queue a message and wake the wrapper (lost only if the wrapper is gone).
    pub fn send(&self, m: Msg) {
        self.side
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(m);
        if let Some(w) = self.wake.upgrade() {
            ring(&w);
        }
    }
}

/// A mailbox; fails only when no descriptor is left (EMFILE).
pub fn channel() -> std::io::Result<(Tx, Rx)> {
    // SAFETY: eventfd returns a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is ours and open.
    let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
    let (tx, rx) = mpsc::channel();
    Ok((
        Tx {
            tx,
            wake: wake.clone(),
        },
        Rx {
            rx,
            wake,
            side: Arc::default(),
        },
    ))
}

impl Tx {
    /// Queue a message and wake the wrapper's poll.
    pub fn send(&self, m: Msg) -> Result<(), mpsc::SendError<Msg>> {
        self.tx.send(m)?;
        ring(&self.wake);
        Ok(())
    }
}

impl Drop for Tx {
    /// The last sender gone is news too (`Disconnected`): wake the wrapper to see it. Not
    /// for every clone (the poller clones the registry at each poll): only when no other
    /// sender seems left (this one and the receiver). Two last senders dropped at the same
    /// moment may both miss it; the wrapper then sees it at its next wake-up (Stop is
    /// always sent before a handle is dropped, so this is only a fallback).
    fn drop(&mut self) {
        if Arc::strong_count(&self.wake) <= 2 {
            ring(&self.wake);
        }
    }
}

fn ring(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64; EAGAIN (counter full) still leaves it readable.
    unsafe {
        libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8);
    }
}

impl Rx {
    /// The descriptor to poll for "a message may be waiting".
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Reset the wake-up counter; call before draining with `try_recv`.
    pub fn clear(&self) {
        let mut n: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; nonblocking, EAGAIN when already clear.
        unsafe {
            libc::read(self.wake.as_raw_fd(), (&mut n as *mut u64).cast(), 8);
        }
    }

    /// A sender for the wrapper's own helper threads.
    pub fn local(&self) -> Local {
        Local {
            side: self.side.clone(),
            wake: Arc::downgrade(&self.wake),
        }
    }

    pub fn try_recv(&self) -> Result<Msg, TryRecvError> {
        if let Some(m) = self
            .side
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
        {
            return Ok(m);
        }
        self.rx.try_recv()
    }

    pub fn recv(&self) -> Result<Msg, mpsc::RecvError> {
        loop {
            match self.recv_timeout(Duration::from_secs(3600)) {
                Ok(m) => return Ok(m),
                Err(RecvTimeoutError::Disconnected) => return Err(mpsc::RecvError),
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    pub fn recv_timeout(&self, wait: Duration) -> Result<Msg, RecvTimeoutError> {
        let until = Instant::now() + wait;
        loop {
            match self.try_recv() {
                Ok(m) => return Ok(m),
                Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) => {}
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvTimeoutError::Timeout);
            }
            let mut fds = [libc::pollfd {
                fd: self.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(fds.as_mut_ptr(), 1, poll_ms(left)) };
            self.clear();
        }
    }
}

/// A poll timeout in whole milliseconds, rounded up so a timer due in 0.3 ms does not
/// turn into a busy loop of zero-timeout polls.
pub(super) fn poll_ms(d: Duration) -> i32 {
    let us = d.as_micros();
    us.div_ceil(1000).min(i32::MAX as u128) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A helper's answer wakes the wrapper and is read; a helper still holding its sender
    /// does not keep a removed stream's mailbox open.
    #[test]
    fn local_sender_wakes_and_does_not_hold_the_mailbox_open() {
        let (tx, rx) = channel().unwrap();
        let local = rx.local();
        let helper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            local.send(Msg::Restart);
            local
        });
        let t0 = Instant::now();
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(20)),
            Ok(Msg::Restart)
        ));
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        let local = helper.join().unwrap();
        drop(tx);
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(5)),
            Err(RecvTimeoutError::Disconnected)
        ));
        // Queued helper answers still come before the news that the senders are gone.
        local.send(Msg::Restart);
        assert!(matches!(rx.try_recv(), Ok(Msg::Restart)));
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Disconnected)));
    }
}
