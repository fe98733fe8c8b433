//! One wrapper thread per stream: owns one ffmpeg child at a time and runs the stream's
//! state machine (SPEC §7):
//!
//! ```text
//! waiting-for-device ──device──▶ starting ──progress──▶ running
//!        ▲                          │  ▲                   │
//!        └──────device gone─────────┤  └──backoff delay────┤ exit / stall / start timeout /
//!                                   ▼                      ▼ not published
//!                                backoff ◀─────────────────┘ (failed after max_failures)
//! ```
//!
//! One thread, one `poll`: while a child runs, the wrapper waits in a single `poll` on the
//! child's stdout and stderr, its pidfd (its exit; a 100 ms look on kernels without
//! pidfds), the mailbox's eventfd (commands) and, as the timeout, its next deadline
//! (`next_due`). What arrives becomes a `Msg` handled by the loop below; no helper threads.
//!
//! Files: this one holds the wrapper's loop and its policy (exits, unplug, backoff);
//! `shared.rs` the live view others read; `media.rs` recording and publishing restore;
//! `readers.rs` the child's pipes and exit as `Msg`s; `mailbox.rs` the command channel;
//! `exits.rs` what an exit means (a failure to count, or an unplug).

mod exits;
mod mailbox;
mod media;
mod readers;
mod shared;

use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::child::{self, ChildSpec};
use crate::config::{Backoff, Health};
use crate::ffmpeg::progress::Progress;
use crate::logs::RotatingLog;
use crate::recording;
use crate::status::{DeviceView, LevelView};
use crate::supervisor::backoff;
pub use mailbox::{channel, Rx, Tx};
use readers::{redact_args, ChildIo, StderrReader, Wants};
pub use shared::{Shared, State};

/// Everything a wrapper needs to run its stream; compared on reload.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    pub name: String,
    pub child: ChildSpec,
    pub device: DeviceView,
    pub alsa_device: String,
    pub display_url: String,
    pub notes: Vec<String>,
    pub backoff: Backoff,
    pub health: Health,
    pub grace: Duration,
    pub log_path: PathBuf,
    pub log_max: u64,
    pub log_keep: u32,
    pub state_dir: PathBuf,
    /// Local recording through the tee muxer (docs/recording.md); `None`: off.
    pub recording: Option<RecordSetup>,
    /// The cards to look at after an unexpected exit, before it counts as a failure.
    pub presence: crate::devices::Presence,
}

/// How a recording stream runs: `child` (in `StreamConfig`) has the tee with both legs;
/// `fallback` publishes only, for when the directory cannot be written.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordSetup {
    pub plan: recording::Plan,
    pub fallback: ChildSpec,
    /// `host:port` of the RTSP server, probed while the RTSP leg is down.
    pub rtsp_addr: Option<String>,
    /// `user:password` from the publish URL, sent with the probe (Basic) when set.
    pub rtsp_auth: Option<String>,
    /// The probe's deadline (`mediamtx.rtsp_timeout`).
    pub probe_timeout: Duration,
}

/// Messages to a wrapper: from its child's pipes and exit (tagged with the child's
/// generation so a late message from an old child is ignored) and from the supervisor.
pub enum Msg {
    Progress(u64, Progress),
    Silence(u64, bool),
    /// Peak and RMS dBFS over the last second (astats).
    Level(u64, f64, f64),
    /// A tee leg failed: 0 RTSP, 1 recording; with ffmpeg's reason.
    Leg(u64, usize, String),
    /// The RTSP probe's verdict while the RTSP leg is down: `Ok` = the server answers.
    Probe(u64, Result<String, String>),
    Exited(u64, ExitStatus, Vec<String>),
    /// Shut down: stop the child gracefully, then end the thread.
    Stop,
    /// `restart NAME`: graceful restart, backoff reset.
    Restart,
    DeviceGone,
    DeviceBack(Box<StreamConfig>),
    /// Reload / rescan: restart only if what we would run changed.
    Update(Box<StreamConfig>),
    /// A health check (MediaMTX) wants the child restarted as a failure.
    Kill(String),
}

/// How the current child is being ended, if we are ending it.
struct Ending {
    /// We asked for it (stop, restart, reload, device gone): not a failure.
    initiated: bool,
    reason: String,
    /// When to escalate SIGINT to SIGKILL.
    kill_at: Option<Instant>,
    /// When to send the second SIGINT: ffmpeg 5.1 interrupts blocking network I/O (a hung
    /// RTSP handshake or write) only from its second signal on, and then still closes its
    /// files properly, where a SIGKILL would leave the last segment without its trailer.
    int_again_at: Option<Instant>,
    then: Next,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Next {
    Exit,
    Wait,
    StartNow,
    Backoff,
}

pub struct Wrapper {
    cfg: StreamConfig,
    rx: Rx,
    shared: Arc<Mutex<Shared>>,
    generation: u64,
    /// When the last child was stopped to bring publishing back (the recording gap starts).
    gap_from: Option<Instant>,
    /// Publishing restores in a row whose new RTSP leg failed again soon (probe backoff).
    restore_attempts: u32,
    /// Recording-leg restores in a row whose new leg failed again soon (probe backoff).
    rec_restores: u32,
    /// The `recording.dir` a run of this stream has recorded in (media.rs: once seen, it
    /// is not made again, in case its disk was unmounted).
    rec_dir_seen: Option<PathBuf>,
    /// The failure count before the last counted exit, and when: taken back when the
    /// rescan reports the device gone right after (SPEC §7 Unplug).
    last_count: Option<(u32, Instant)>,
}

/// The longest a wrapper sleeps between looks at its timers, a safety net only: it sleeps
/// until the next one is due (`next_due`) or a message comes. Every wake-up costs a context
/// switch, which is most of the supervisor's CPU at hundreds of streams: a fixed 100 ms
/// tick, then a 1 s one, were a quarter or more of it (docs/performance.md).
const TICK: Duration = Duration::from_secs(30);

/// When a running child's wrapper must look at its timers next (None: only messages).
/// `ending`: Some(kill_at) once the child is being ended (nothing else is checked then);
/// `media`: (next sweep, next probe if probing) when recording; `progress`: the start
/// timeout before the first progress, the stall deadline after it.
fn next_due(
    ending: Option<Option<Instant>>,
    media: Option<(Instant, Option<Instant>)>,
    progress: Instant,
) -> Option<Instant> {
    if let Some(kill_at) = ending {
        return kill_at;
    }
    let mut due = progress;
    if let Some((sweep, probe)) = media {
        due = due.min(sweep);
        if let Some(p) = probe {
            due = due.min(p);
        }
    }
    Some(due)
}

/// Whether output time `t` counts as progress since the last checkpoint (`last`, taken
/// `since` ago): it must have moved at least a quarter as fast as the wall clock. A child
/// whose every write waits out ffmpeg's `-timeout` (an RTSP server that stopped reading:
/// ffmpeg 5.1 ignores the failed write and goes on to the next) still creeps forward a
/// packet per timeout; that is a stall too. A slow capture clock (0.8x) is not.
fn advances(last: Option<i64>, t: i64, since: Duration) -> bool {
    match last {
        None => true,
        Some(l) => t > l && (t - l) as u128 >= since.as_micros() / 4,
    }
}

impl Wrapper {
    pub fn new(cfg: StreamConfig, rx: Rx, shared: Arc<Mutex<Shared>>) -> Wrapper {
        Wrapper {
            cfg,
            rx,
            shared,
            generation: 0,
            gap_from: None,
            restore_attempts: 0,
            rec_restores: 0,
            rec_dir_seen: None,
            last_count: None,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Shared) -> R) -> R {
        let mut g = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// The thread body. Returns when told to stop, after its child is reaped.
    pub fn run(mut self, present: bool) {
        let mut next = if present { Next::StartNow } else { Next::Wait };
        loop {
            next = match next {
                Next::Exit => break,
                Next::StartNow => self.run_child(),
                Next::Wait => self.wait_for_device(),
                Next::Backoff => self.backoff(),
            };
        }
        self.with(|s| {
            s.set_state(State::Stopped);
            s.next_retry_at = None;
        });
    }

    fn wait_for_device(&mut self) -> Next {
        self.with(|s| {
            s.set_state(State::WaitingForDevice);
            s.next_retry_at = None;
            s.progress = None;
        });
        loop {
            match self.rx.recv() {
                Err(_) | Ok(Msg::Stop) => return Next::Exit,
                Ok(Msg::DeviceBack(cfg)) | Ok(Msg::Update(cfg)) => {
                    self.apply_cfg(*cfg);
                    return Next::StartNow;
                }
                Ok(Msg::Restart) => self.with(|s| s.consecutive_failures = 0),
                Ok(_) => {}
            }
        }
    }

    fn apply_cfg(&mut self, cfg: StreamConfig) {
        self.with(|s| {
            s.device = cfg.device.clone();
            s.alsa_device = cfg.alsa_device.clone();
            s.url = cfg.display_url.clone();
            s.notes = cfg.notes.clone();
        });
        self.cfg = cfg;
    }

    fn backoff(&mut self) -> Next {
        let failures = self.with(|s| s.consecutive_failures);
        let delay = backoff::next_delay(&self.cfg.backoff, failures);
        let failed = backoff::is_failed(&self.cfg.backoff, failures);
        let until = Instant::now() + delay;
        self.with(|s| {
            s.set_state(if failed {
                State::Failed
            } else {
                State::Backoff
            });
            s.next_retry_at = Some(until);
            s.pid = None;
        });
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Next::StartNow;
            }
            match self.rx.recv_timeout(left) {
                Err(RecvTimeoutError::Timeout) => return Next::StartNow,
                Err(RecvTimeoutError::Disconnected) | Ok(Msg::Stop) => return Next::Exit,
                Ok(Msg::Restart) => {
                    self.with(|s| s.consecutive_failures = 0);
                    return Next::StartNow;
                }
                Ok(Msg::DeviceGone) => {
                    self.forgive_unplug();
                    return Next::Wait;
                }
                Ok(Msg::Update(cfg)) | Ok(Msg::DeviceBack(cfg)) => self.apply_cfg(*cfg),
                Ok(_) => {}
            }
        }
    }

    /// Spawn one child and supervise it until it is gone; say what comes next.
    fn run_child(&mut self) -> Next {
        self.generation += 1;
        let gen = self.generation;
        let name = self.cfg.name.clone();
        let (spec, mut media) = self.media_start();
        let spawned_at = Instant::now();
        let header = format!(
            "=== {} starting: {} {}",
            crate::util::rfc3339(crate::util::unix_now()),
            self.cfg.child.program.display(),
            redact_args(&spec.args)
        );
        let proc = match child::spawn(&spec, &name, &self.cfg.state_dir) {
            Ok(c) => c,
            Err(e) => {
                let reason = format!(
                    "cannot start {}: {}",
                    self.cfg.child.program.display(),
                    crate::util::io_reason(&e)
                );
                log::error!("{name}: {reason}");
                self.record_failure(None, reason);
                return Next::Backoff;
            }
        };
        let pid = proc.id();
        log::info!("{name}: started ffmpeg pid {pid}");
        let pid_file = self
            .cfg
            .state_dir
            .join("streams")
            .join(format!("{name}.pid"));
        let _ = crate::fsafe::write_atomic(&pid_file, format!("{pid}\n").as_bytes(), 0o644);
        self.with(|s| {
            if s.generation > 0 {
                s.restarts += 1;
            }
            s.generation = gen;
            s.pid = Some(pid);
            s.started_at = Some(spawned_at);
            s.running_since = None;
            s.progress = None;
            s.silent = false;
            s.slow = false;
            s.published = None;
            s.mediamtx = None;
            s.next_retry_at = None;
            s.publishing = true;
            s.level = None;
            s.set_state(State::Starting);
        });

        // One poll from here on: progress from stdout, log + tail from stderr, the exit.
        let log = RotatingLog::open(&self.cfg.log_path, self.cfg.log_max, self.cfg.log_keep);
        let want = Wants {
            silence: self.cfg.health.silence_db.is_some(),
            levels: self.cfg.health.levels,
        };
        let err = StderrReader::new(log.ok(), &header, want);
        let rest = readers::output_rest(self.cfg.health.stall_timeout);
        let mut io = ChildIo::new(gen, proc, err, &name, rest);

        let mut ending: Option<Ending> = None;
        let mut last_out: Option<i64> = None;
        let mut last_advance = spawned_at;
        let mut got_progress = false;
        let mut pending_cfg: Option<StreamConfig> = None;

        loop {
            let due = next_due(
                ending.as_ref().map(|e| match (e.kill_at, e.int_again_at) {
                    (Some(k), Some(i)) => Some(k.min(i)),
                    (k, i) => k.or(i),
                }),
                self.cfg.recording.as_ref().map(|_| {
                    let probing = media.rtsp_down.is_some() && media.rec_alive;
                    (media.next_sweep, probing.then_some(media.next_probe))
                }),
                if got_progress {
                    last_advance + self.cfg.health.stall_timeout
                } else {
                    spawned_at + self.cfg.health.start_timeout
                },
            );
            let wait = due.map_or(TICK, |d| {
                d.saturating_duration_since(Instant::now()).min(TICK)
            });
            let msg = io.next(&self.rx, wait);
            let now = Instant::now();
            match msg {
                Ok(Msg::Progress(g, p)) if g == gen => {
                    if let Some(t) = p.out_time_us {
                        if advances(last_out, t, now.duration_since(last_advance)) {
                            last_out = Some(t);
                            last_advance = now;
                        }
                    }
                    let first = !got_progress;
                    got_progress = true;
                    if first {
                        last_advance = now;
                        self.measure_gap(now, p.out_time_us);
                    }
                    if media.rtsp_down.is_none()
                        && now.duration_since(spawned_at) >= Duration::from_secs(10)
                    {
                        self.restore_attempts = 0;
                    }
                    let stable_after = self.cfg.backoff.stable_after;
                    let recording = self.cfg.recording.is_some();
                    self.with(|s| {
                        s.slow = p.speed.is_some_and(|v| v < 0.8) && !first;
                        s.progress = Some(p);
                        if s.state == State::Starting && ending.is_none() {
                            s.running_since = Some(now);
                            // Recording: the first verdict waits for the RTSP leg's.
                            s.settled =
                                !recording || media.rtsp_down.is_some() || now >= media.verdict_at;
                            s.set_state(State::Running);
                        }
                        if let Some(since) = s.running_since {
                            if s.consecutive_failures > 0
                                && now.duration_since(since) >= stable_after
                            {
                                s.consecutive_failures = 0;
                            }
                        }
                        s.touch();
                    });
                }
                Ok(Msg::Silence(g, silent)) if g == gen => self.with(|s| {
                    s.silent = silent;
                    s.touch();
                }),
                Ok(Msg::Exited(g, status, tail)) if g == gen => {
                    // Reap anything ffmpeg forked: the group may outlive its leader.
                    child::signal_group(pid, Signal::SIGKILL);
                    let _ = std::fs::remove_file(&pid_file);
                    media.rec_alive = false;
                    media.next_sweep = Instant::now();
                    // No child, no level: a stale reading would look live.
                    self.with(|s| s.level = None);
                    let _ = self.media_tick(&mut media, Instant::now());
                    return self.after_exit(status, tail, ending, pending_cfg, spawned_at);
                }
                Ok(Msg::Level(g, peak, rms)) if g == gen => {
                    self.with(|s| {
                        s.level = Some(LevelView {
                            peak_db: Some(peak).filter(|v| v.is_finite()),
                            rms_db: Some(rms).filter(|v| v.is_finite()),
                            at: crate::util::rfc3339(crate::util::unix_now()),
                        })
                    });
                }
                Ok(Msg::Leg(g, leg, why)) if g == gen => self.leg_failed(&mut media, leg, why),
                Ok(Msg::Probe(g, res)) if g == gen => {
                    if let Some(reason) = self.probe_done(&mut media, now, res) {
                        if ending.is_none() {
                            self.gap_from = Some(now);
                            self.end(&mut ending, pid, true, reason, Next::StartNow, true);
                        }
                    }
                }
                Ok(Msg::Progress(..))
                | Ok(Msg::Silence(..))
                | Ok(Msg::Exited(..))
                | Ok(Msg::Level(..))
                | Ok(Msg::Leg(..))
                | Ok(Msg::Probe(..)) => {}
                Ok(Msg::Stop) => {
                    self.end(&mut ending, pid, true, "stopped".into(), Next::Exit, true);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.end(&mut ending, pid, true, "stopped".into(), Next::Exit, true);
                }
                Ok(Msg::Restart) => {
                    self.with(|s| s.consecutive_failures = 0);
                    self.end(
                        &mut ending,
                        pid,
                        true,
                        "restarted on request".into(),
                        Next::StartNow,
                        true,
                    );
                }
                Ok(Msg::DeviceGone) => {
                    self.end(
                        &mut ending,
                        pid,
                        true,
                        "device removed".into(),
                        Next::Wait,
                        true,
                    );
                }
                Ok(Msg::Update(cfg)) | Ok(Msg::DeviceBack(cfg)) => {
                    if cfg.child != self.cfg.child {
                        pending_cfg = Some(*cfg);
                        self.end(
                            &mut ending,
                            pid,
                            true,
                            "settings changed".into(),
                            Next::StartNow,
                            true,
                        );
                    } else {
                        self.apply_cfg(*cfg);
                    }
                }
                Ok(Msg::Kill(reason)) if media.rec_alive && media.rtsp_down.is_some() => {
                    // We know already (the RTSP leg is down, recording runs): the RTSP
                    // probe brings publishing back; a restart now would only cost a gap.
                    log::debug!("{name}: {reason}: RTSP leg already down, probing");
                }
                Ok(Msg::Kill(reason)) => {
                    if media.rec_alive {
                        // A backoff would stop the recording too: restart at once instead.
                        self.gap_from = Some(Instant::now());
                        let reason = format!("{reason}; restarting at once to keep recording");
                        self.end(&mut ending, pid, true, reason, Next::StartNow, true);
                    } else {
                        self.end(&mut ending, pid, false, reason, Next::Backoff, true);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Timers: escalate a graceful stop, catch a child that never starts or stalls.
            let now = Instant::now();
            if let Some(e) = ending.as_mut() {
                if e.int_again_at.is_some_and(|t| now >= t) {
                    log::info!("{name}: pid {pid} still running; SIGINT again");
                    child::signal_group(pid, Signal::SIGINT);
                    e.int_again_at = None;
                }
                if e.kill_at.is_some_and(|t| now >= t) {
                    log::warn!(
                        "{name}: pid {pid} ignored SIGINT for {:?}; SIGKILL",
                        self.cfg.grace
                    );
                    child::signal_group(pid, Signal::SIGKILL);
                    e.kill_at = None;
                }
                continue;
            }
            if let Some(reason) = self.media_tick(&mut media, now) {
                self.gap_from = Some(now);
                self.end(&mut ending, pid, true, reason, Next::StartNow, true);
                continue;
            }
            let h = &self.cfg.health;
            if !got_progress && now.duration_since(spawned_at) >= h.start_timeout {
                let reason = format!(
                    "start timeout: no progress within {}",
                    crate::config::fmt_duration(h.start_timeout)
                );
                self.end(&mut ending, pid, false, reason, Next::Backoff, false);
            } else if got_progress && now.duration_since(last_advance) >= h.stall_timeout {
                let reason = format!(
                    "stalled: no progress for {}",
                    crate::config::fmt_duration(h.stall_timeout)
                );
                self.end(&mut ending, pid, false, reason, Next::Backoff, false);
            }
        }
    }

    /// Begin ending the child: SIGINT with a grace period, or SIGKILL at once for a
    /// child that is hung (it would not answer SIGINT anyway).
    fn end(
        &mut self,
        ending: &mut Option<Ending>,
        pid: u32,
        initiated: bool,
        reason: String,
        then: Next,
        graceful: bool,
    ) {
        if let Some(e) = ending.as_mut() {
            // Already ending: a stop overrides what comes next, nothing else does.
            if then == Next::Exit {
                e.then = Next::Exit;
                e.initiated = true;
            }
            return;
        }
        log::info!("{}: ending pid {pid}: {reason}", self.cfg.name);
        self.with(|s| s.set_state(State::Stopping));
        if graceful {
            child::signal_group(pid, Signal::SIGINT);
        } else {
            child::signal_group(pid, Signal::SIGKILL);
        }
        *ending = Some(Ending {
            initiated,
            reason,
            kill_at: graceful.then(|| Instant::now() + self.cfg.grace),
            int_again_at: graceful
                .then(|| Instant::now() + (self.cfg.grace / 2).min(Duration::from_secs(1))),
            then,
        });
    }
}

#[cfg(test)]
mod tests;
