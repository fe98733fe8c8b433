//! What the wrapper's one `poll` waits on while a child runs (`ChildIo`): `-progress`
//! blocks from stdout; stderr into the rotating log, the exit-reason tail, silence, levels
//! and tee leg events; the child's exit through a pidfd; and the wrapper's mailbox. All
//! of it turns into the same `Msg`s the wrapper's loop has always handled.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::mailbox::{poll_ms, Rx};
use super::Msg;
use crate::child;
use crate::ffmpeg::progress::{self, ProgressParser};
use crate::logs::RotatingLog;

const TAIL_LINES: usize = 30;
/// A line longer than this is cut (a child cannot make the wrapper buffer without end).
const MAX_LINE: usize = 64 * 1024;
/// After the exit, how long stderr may take to deliver ffmpeg's last words (the reason).
const DRAIN: Duration = Duration::from_millis(300);
/// Without a pidfd (Linux < 5.3), how often the wrapper looks whether its child exited.
const EXIT_POLL: Duration = Duration::from_millis(100);

/// Credentials never reach a log: redact any URL argument.
pub(super) fn redact_args(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.contains("://") {
                crate::util::redact_url(a)
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Splits bytes into lines across reads.
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
}

impl Lines {
    /// Feed `data`, calling `f` with each complete line (with its `\n`, as `read_until`
    /// gave it). `eof`: pass a last unterminated line too.
    fn feed(&mut self, data: &[u8], eof: bool, mut f: impl FnMut(&[u8])) {
        let mut rest = data;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            if self.buf.is_empty() {
                f(&rest[..=i]);
            } else {
                self.buf.extend_from_slice(&rest[..=i]);
                f(&self.buf);
                self.buf.clear();
            }
            rest = &rest[i + 1..];
        }
        self.buf.extend_from_slice(rest);
        if self.buf.len() > MAX_LINE || (eof && !self.buf.is_empty()) {
            f(&self.buf);
            self.buf.clear();
        }
    }
}

/// `-progress` blocks from stdout.
#[derive(Default)]
pub(super) struct ProgressReader {
    parser: ProgressParser,
    lines: Lines,
    /// Part of a block has arrived, not its `progress=` line.
    mid_block: bool,
}

impl ProgressReader {
    fn feed(&mut self, data: &[u8], eof: bool, gen: u64, out: &mut VecDeque<Msg>) {
        let parser = &mut self.parser;
        let mid = &mut self.mid_block;
        self.lines.feed(data, eof, |l| {
            let line = String::from_utf8_lossy(l);
            *mid = true;
            if let Some(p) = parser.feed(line.trim_end()) {
                *mid = false;
                out.push_back(Msg::Progress(gen, p));
            }
        });
        *mid |= !self.lines.buf.is_empty();
    }
}

/// After reading part of a progress block, how long stdout is left alone so the rest
/// arrives in one read: a writer that writes each line of a block on its own (line
/// buffered, like the bash fake) would otherwise wake the wrapper nine times a block.
/// Real ffmpeg writes a block at once; progress only feeds second-scale timers.
const BLOCK_GATHER: Duration = Duration::from_millis(5);

/// Once progress flows, how long the child's pipes are left alone after a read: ffmpeg
/// writes a progress block every 0.5 s and a level line every second, each a wake-up (a
/// context switch, most of the supervisor's CPU at hundreds of streams); read together
/// once a second they are one. Capped at a tenth of the stall timeout, so a stall is
/// still caught within 10 % of `stall_timeout`. Exit (pidfd) and commands wake at once;
/// a flood on stderr (a read that fills the buffer) is read without rest.
pub(super) fn output_rest(stall_timeout: Duration) -> Duration {
    (stall_timeout / 10).min(Duration::from_secs(1))
}

/// What the stderr reader looks for besides the log.
#[derive(Clone, Copy)]
pub(super) struct Wants {
    pub(super) silence: bool,
    pub(super) levels: bool,
}

/// Copies stderr into the rotating log, keeps the last lines for the exit reason, and
/// passes silencedetect events, levels and tee leg failures on. Level prints (one per
/// second) stay out of the log and the tail.
pub(super) struct StderrReader {
    peak: Option<f64>,
    tail: VecDeque<String>,
    log: Option<RotatingLog>,
    want: Wants,
    lines: Lines,
}

impl StderrReader {
    pub(super) fn new(mut log: Option<RotatingLog>, header: &str, want: Wants) -> StderrReader {
        if let Some(l) = log.as_mut() {
            l.line(header);
        }
        StderrReader {
            peak: None,
            tail: VecDeque::with_capacity(TAIL_LINES),
            log,
            want,
            lines: Lines::default(),
        }
    }

    fn feed(&mut self, data: &[u8], eof: bool, gen: u64, out: &mut VecDeque<Msg>) {
        let mut lines = std::mem::take(&mut self.lines);
        lines.feed(data, eof, |l| self.line(l, gen, out));
        self.lines = lines;
        if eof {
            if let Some(l) = self.log.as_mut() {
                l.flush_repeats();
            }
        }
    }

    fn line(&mut self, buf: &[u8], gen: u64, out: &mut VecDeque<Msg>) {
        // ffmpeg uses \r for in-place updates; keep the last segment.
        let text = String::from_utf8_lossy(buf);
        let line = text.trim_end().rsplit('\r').next().unwrap_or("").trim_end();
        let redacted = crate::util::redact_text(line);
        let line = redacted.as_str();
        if line.is_empty() {
            return;
        }
        if self.want.levels {
            if let Some((kind, db)) = progress::level_line(line) {
                if kind == "peak" {
                    self.peak = Some(db);
                } else {
                    out.push_back(Msg::Level(gen, self.peak.take().unwrap_or(db), db));
                }
                return;
            }
            if progress::is_metadata_frame_line(line) {
                return;
            }
        }
        if let Some((leg, why)) = progress::tee_leg_failed(line) {
            out.push_back(Msg::Leg(gen, leg, why));
        }
        if let Some(l) = self.log.as_mut() {
            l.line(line);
        }
        if self.want.silence {
            if let Some(silent) = progress::silence_event(line) {
                out.push_back(Msg::Silence(gen, silent));
            }
        }
        if self.tail.back().map(String::as_str) != Some(line) {
            if self.tail.len() == TAIL_LINES {
                self.tail.pop_front();
            }
            self.tail.push_back(line.to_string());
        }
    }

    fn take_tail(&mut self) -> Vec<String> {
        std::mem::take(&mut self.tail).into_iter().collect()
    }
}

/// Everything of one running child the wrapper waits on, in one `poll`: stdout, stderr,
/// its pidfd (or, on kernels without pidfds, a look every `EXIT_POLL`) and the mailbox.
pub(super) struct ChildIo {
    gen: u64,
    proc: child::Proc,
    pid: u32,
    stdout: Option<File>,
    stderr: Option<File>,
    pidfd: Option<OwnedFd>,
    progress: ProgressReader,
    err: StderrReader,
    /// Messages made from the child's output, handed out before anything else.
    queue: VecDeque<Msg>,
    /// The child is reaped: its status and until when stderr may still drain.
    exited: Option<(ExitStatus, Instant)>,
    /// Every sender is gone (a removed stream): reported once as `Disconnected`.
    mailbox_gone: bool,
    /// stdout is not polled until then (`BLOCK_GATHER`).
    gather_until: Option<Instant>,
    /// How long the pipes rest after a read that brought progress (`output_rest`).
    rest: Duration,
    /// Neither pipe is polled until then.
    rest_until: Option<Instant>,
    name: String,
}

/// One read's worth: a `-progress` block is ~250 bytes; a burst of stderr takes several
/// reads (poll is level-triggered). On the stack: 256 wrappers do not keep 256 buffers.
const READ_BUF: usize = 8 * 1024;

fn set_nonblocking(fd: i32) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
}

/// Read once from a nonblocking pipe: `Some(n)` bytes (0 = EOF), `None` = nothing yet.
fn read_some(r: &mut impl Read, buf: &mut [u8]) -> Option<usize> {
    match r.read(buf) {
        Ok(n) => Some(n),
        Err(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::Interrupted =>
        {
            None
        }
        Err(_) => Some(0),
    }
}

impl ChildIo {
    pub(super) fn new(
        gen: u64,
        mut proc: child::Proc,
        err: StderrReader,
        name: &str,
        rest: Duration,
    ) -> ChildIo {
        let pid = proc.id();
        let stdout = proc.stdout.take();
        let stderr = proc.stderr.take();
        if let Some(o) = &stdout {
            set_nonblocking(o.as_raw_fd());
        }
        if let Some(e) = &stderr {
            set_nonblocking(e.as_raw_fd());
        }
        ChildIo {
            gen,
            pid,
            pidfd: child::pidfd_open(pid).ok(),
            proc,
            stdout,
            stderr,
            progress: ProgressReader::default(),
            err,
            queue: VecDeque::new(),
            exited: None,
            mailbox_gone: false,
            gather_until: None,
            rest,
            rest_until: None,
            name: name.to_string(),
        }
    }

    /// The next message for the wrapper, from its child or its mailbox, waiting at most
    /// `wait`: the wrapper's `recv_timeout`. `Msg::Exited` comes once the child is reaped
    /// and its stderr closed (or `DRAIN` passed), with the tail for the exit reason.
    pub(super) fn next(&mut self, rx: &Rx, wait: Duration) -> Result<Msg, RecvTimeoutError> {
        let until = Instant::now() + wait;
        loop {
            if let Some(m) = self.queue.pop_front() {
                return Ok(m);
            }
            match rx.try_recv() {
                Ok(m) => return Ok(m),
                // Said once: the wrapper then ends its child and keeps waiting for the exit.
                Err(TryRecvError::Disconnected) if !self.mailbox_gone => {
                    self.mailbox_gone = true;
                    return Err(RecvTimeoutError::Disconnected);
                }
                Err(_) => {}
            }
            let now = Instant::now();
            if self.exited.is_none() && (self.pidfd.is_none() || self.outputs_closed()) {
                self.try_reap();
            }
            if let Some((status, drain_until)) = self.exited {
                if self.stderr.is_none() || now >= drain_until {
                    // Whatever is left unread stays unread: the child is gone.
                    self.stderr = None;
                    self.stdout = None;
                    self.exited = Some((status, now + Duration::from_secs(3600)));
                    return Ok(Msg::Exited(self.gen, status, self.err.take_tail()));
                }
            }
            if now >= until {
                return Err(RecvTimeoutError::Timeout);
            }
            let mut due = until;
            if let Some(r) = self.rest_until {
                if r <= now || self.exited.is_some() {
                    self.rest_until = None;
                } else {
                    due = due.min(r);
                }
            }
            if let Some(g) = self.gather_until {
                if g <= now {
                    self.gather_until = None;
                } else {
                    due = due.min(g);
                }
            }
            if let Some((_, d)) = self.exited {
                due = due.min(d);
            } else if self.pidfd.is_none() {
                due = due.min(now + EXIT_POLL);
            }
            self.poll_once(rx, due.saturating_duration_since(now));
        }
    }

    fn outputs_closed(&self) -> bool {
        self.stdout.is_none() && self.stderr.is_none()
    }

    fn poll_once(&mut self, rx: &Rx, wait: Duration) {
        let none = -1;
        let resting = self.rest_until.is_some();
        let fd_of = |o: Option<i32>| o.unwrap_or(none);
        // Only the pipes rest; the pidfd and the mailbox are always polled.
        let pipe = |o: Option<i32>| o.filter(|_| !resting).unwrap_or(none);
        let mut fds = [
            libc::pollfd {
                fd: rx.fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pipe(
                    self.stdout
                        .as_ref()
                        .filter(|_| self.gather_until.is_none())
                        .map(|o| o.as_raw_fd()),
                ),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pipe(self.stderr.as_ref().map(|o| o.as_raw_fd())),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: fd_of(
                    self.pidfd
                        .as_ref()
                        .filter(|_| self.exited.is_none())
                        .map(|p| p.as_raw_fd()),
                ),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: four valid pollfds (a negative fd is skipped by the kernel).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, poll_ms(wait)) };
        if n <= 0 {
            return;
        }
        if fds[0].revents != 0 {
            rx.clear();
        }
        let mut buf = [0u8; READ_BUF];
        let mut rest = false;
        if fds[1].revents != 0 {
            if let Some(o) = self.stdout.as_mut() {
                match read_some(o, &mut buf) {
                    Some(0) => {
                        self.progress.feed(&[], true, self.gen, &mut self.queue);
                        self.stdout = None;
                    }
                    Some(k) => {
                        self.progress
                            .feed(&buf[..k], false, self.gen, &mut self.queue);
                        if self.progress.mid_block {
                            self.gather_until = Some(Instant::now() + BLOCK_GATHER);
                        } else {
                            rest = k < READ_BUF;
                        }
                    }
                    None => {}
                }
            }
        }
        if fds[2].revents != 0 {
            if let Some(e) = self.stderr.as_mut() {
                match read_some(e, &mut buf) {
                    Some(0) => {
                        self.err.feed(&[], true, self.gen, &mut self.queue);
                        self.stderr = None;
                        log::debug!("{}: stderr closed", self.name);
                    }
                    Some(k) => {
                        self.err.feed(&buf[..k], false, self.gen, &mut self.queue);
                        rest &= k < READ_BUF;
                    }
                    None => {}
                }
            }
        }
        if rest && !self.rest.is_zero() {
            self.rest_until = Some(Instant::now() + self.rest);
        }
        if fds[3].revents != 0 {
            self.try_reap();
        }
    }

    /// Reap the child if it has exited. Anything ffmpeg forked dies with it: its inherited
    /// pipes then close, so stderr reaches EOF at once instead of when a straggler exits.
    fn try_reap(&mut self) {
        let status = match self.proc.try_wait() {
            Ok(Some(s)) => s,
            Ok(None) => return,
            // Somebody else reaped it (cannot happen here): treat it as gone.
            Err(_) => ExitStatus::from_raw(0),
        };
        child::signal_group(self.pid, Signal::SIGKILL);
        self.pidfd = None;
        self.exited = Some((status, Instant::now() + DRAIN));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shell child spawned as the wrapper spawns ffmpeg.
    fn shell(script: &str) -> child::Proc {
        let d = tempfile::tempdir().unwrap();
        let spec = child::ChildSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: Vec::new(),
        };
        child::spawn(&spec, "t", d.path()).unwrap()
    }

    /// Every message until the exit, with how long the exit took to arrive.
    fn run_to_exit(mut io: ChildIo, rx: &Rx) -> (Vec<Msg>, Duration) {
        let t0 = Instant::now();
        let mut got = Vec::new();
        while t0.elapsed() < Duration::from_secs(10) {
            match io.next(rx, Duration::from_millis(500)) {
                Ok(m @ Msg::Exited(..)) => {
                    got.push(m);
                    return (got, t0.elapsed());
                }
                Ok(m) => got.push(m),
                Err(_) => {}
            }
        }
        panic!("no exit within 10 s");
    }

    /// Progress, stderr tail and exit arrive through one poll, with a pidfd and without
    /// one (the fallback for kernels before 5.3), and a grandchild holding the pipes open
    /// does not hold the exit back (its group is killed at the exit).
    #[test]
    fn one_poll_delivers_progress_tail_and_exit() {
        let script = "sleep 30 & printf 'out_time_us=5\\nprogress=continue\\n'; \
                      echo 'first words' >&2; echo 'last words' >&2; exit 3";
        for with_pidfd in [true, false] {
            let (_tx, rx) = super::super::mailbox::channel().unwrap();
            let want = Wants {
                silence: false,
                levels: false,
            };
            let err = StderrReader::new(None, "header", want);
            let mut io = ChildIo::new(7, shell(script), err, "t", Duration::ZERO);
            if !with_pidfd {
                io.pidfd = None;
            }
            let (got, took) = run_to_exit(io, &rx);
            assert!(
                matches!(got.first(), Some(Msg::Progress(7, p)) if p.out_time_us == Some(5)),
                "pidfd {with_pidfd}: progress first"
            );
            let Some(Msg::Exited(7, status, tail)) = got.last() else {
                unreachable!()
            };
            assert_eq!(status.code(), Some(3), "pidfd {with_pidfd}");
            assert_eq!(tail, &["first words", "last words"], "pidfd {with_pidfd}");
            assert!(
                took < Duration::from_secs(3),
                "pidfd {with_pidfd}: {took:?}"
            );
        }
    }

    /// While the pipes rest, the exit still wakes the wrapper at once (the pidfd is never
    /// left out of the poll), and the output written during the rest is all delivered.
    #[test]
    fn resting_pipes_never_delay_the_exit() {
        let script = "printf 'out_time_us=5\\nprogress=continue\\n'; sleep 0.3; \
                      printf 'out_time_us=6\\nprogress=end\\n'; echo 'bye' >&2; exit 3";
        let (_tx, rx) = super::super::mailbox::channel().unwrap();
        let want = Wants {
            silence: false,
            levels: false,
        };
        let err = StderrReader::new(None, "header", want);
        let io = ChildIo::new(7, shell(script), err, "t", Duration::from_secs(5));
        let (got, took) = run_to_exit(io, &rx);
        assert!(took < Duration::from_secs(2), "exit seen after {took:?}");
        let times: Vec<i64> = got
            .iter()
            .filter_map(|m| match m {
                Msg::Progress(7, p) => p.out_time_us,
                _ => None,
            })
            .collect();
        assert_eq!(times, [5, 6]);
        let Some(Msg::Exited(7, status, tail)) = got.last() else {
            unreachable!()
        };
        assert_eq!(status.code(), Some(3));
        assert_eq!(tail, &["bye"]);
    }

    /// A command in the mailbox wakes the poll at once while the child runs quietly.
    #[test]
    fn a_command_wakes_the_poll() {
        let (tx, rx) = super::super::mailbox::channel().unwrap();
        let want = Wants {
            silence: false,
            levels: false,
        };
        let mut proc = shell("exec sleep 30");
        let pid = proc.id();
        proc.stdout.take();
        let err = StderrReader::new(None, "header", want);
        let mut io = ChildIo::new(1, proc, err, "t", Duration::ZERO);
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            let _ = tx.send(Msg::Restart);
            tx
        });
        let t0 = Instant::now();
        let m = io.next(&rx, Duration::from_secs(20));
        assert!(matches!(m, Ok(Msg::Restart)));
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        drop(sender.join());
        child::signal_group(pid, Signal::SIGKILL);
        let (got, _) = run_to_exit(io, &rx);
        assert!(matches!(got.last(), Some(Msg::Exited(1, s, _)) if s.signal() == Some(9)));
    }

    #[test]
    fn output_rest_is_a_tenth_of_the_stall_timeout_at_most_a_second() {
        let ms = Duration::from_millis;
        for (stall, rest) in [
            (0, 0),
            (2_000, 200),
            (3_000, 300),
            (10_000, 1_000),
            (15_000, 1_000),
        ] {
            assert_eq!(output_rest(ms(stall)), ms(rest), "stall {stall} ms");
        }
    }

    #[test]
    fn lines_are_split_across_reads_and_flushed_at_eof() {
        let mut l = Lines::default();
        let mut got: Vec<String> = Vec::new();
        let mut push = |b: &[u8]| got.push(String::from_utf8_lossy(b).into_owned());
        l.feed(b"a=1\nb=", false, &mut push);
        l.feed(b"2\nc", false, &mut push);
        l.feed(b"", true, &mut push);
        assert_eq!(got, ["a=1\n", "b=2\n", "c"]);
    }

    #[test]
    fn an_endless_line_is_cut() {
        let mut l = Lines::default();
        let mut n = 0;
        let big = vec![b'x'; MAX_LINE + 1];
        l.feed(&big, false, |_| n += 1);
        assert_eq!(n, 1);
        assert!(l.buf.is_empty());
    }
}
