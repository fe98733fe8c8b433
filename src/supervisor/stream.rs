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
//! How a child's death reaches the wrapper: a waiter thread blocks in `wait()` and sends
//! `Msg::Exited` on the wrapper's channel at once; the wrapper never polls the process.
//! Its own loop wakes at least every 100 ms to check the stall and start timers.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::child::{self, ChildSpec};
use crate::config::{Backoff, Health};
use crate::ffmpeg::progress::{self, Progress, ProgressParser};
use crate::logs::RotatingLog;
use crate::recording;
use crate::status::{
    DeviceView, LastExit, LevelView, PathView, ProgressView, RecordingView, StreamStatus,
};
use crate::supervisor::backoff;

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
}

/// How a recording stream runs: `child` (in `StreamConfig`) has the tee with both legs;
/// `fallback` publishes only, for when the directory cannot be written.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordSetup {
    pub plan: recording::Plan,
    pub fallback: ChildSpec,
    /// `host:port` of the RTSP server, probed while the RTSP leg is down.
    pub rtsp_addr: Option<String>,
}

/// Messages to a wrapper: from its child's helper threads (tagged with the child's
/// generation so a late message from an old child is ignored) and from the supervisor.
pub enum Msg {
    Progress(u64, Progress),
    Silence(u64, bool),
    /// Peak and RMS dBFS over the last second (astats).
    Level(u64, f64, f64),
    /// A tee leg failed: 0 RTSP, 1 recording; with ffmpeg's reason.
    Leg(u64, usize, String),
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Starting,
    Running,
    Backoff,
    Stopping,
    Stopped,
    Failed,
    WaitingForDevice,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Backoff => "backoff",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::Failed => "failed",
            State::WaitingForDevice => "waiting-for-device",
        }
    }
}

/// The live view of one stream, read by status, the poller and metrics.
pub struct Shared {
    pub cfg_name: String,
    pub state: State,
    pub pid: Option<u32>,
    pub generation: u64,
    pub started_at: Option<Instant>,
    pub running_since: Option<Instant>,
    pub restarts: u64,
    pub consecutive_failures: u32,
    pub next_retry_at: Option<Instant>,
    pub last_exit: Option<(LastExit, Instant)>,
    pub progress: Option<Progress>,
    pub silent: bool,
    pub device: DeviceView,
    pub alsa_device: String,
    pub url: String,
    pub log: String,
    pub notes: Vec<String>,
    pub mediamtx: Option<PathView>,
    /// Set by the MediaMTX poller: false when the path is not published.
    pub published: Option<bool>,
    pub unhealthy_since: Option<Instant>,
    pub settled: bool,
    pub slow: bool,
    /// False while the child's RTSP leg is down (recording keeps the child alive).
    pub publishing: bool,
    pub recording: Option<RecordingView>,
    pub level: Option<LevelView>,
}

impl Shared {
    pub fn new(cfg: &StreamConfig) -> Shared {
        Shared {
            cfg_name: cfg.name.clone(),
            state: State::Starting,
            pid: None,
            generation: 0,
            started_at: None,
            running_since: None,
            restarts: 0,
            consecutive_failures: 0,
            next_retry_at: None,
            last_exit: None,
            progress: None,
            silent: false,
            device: cfg.device.clone(),
            alsa_device: cfg.alsa_device.clone(),
            url: cfg.display_url.clone(),
            log: cfg.log_path.display().to_string(),
            notes: cfg.notes.clone(),
            mediamtx: None,
            published: None,
            unhealthy_since: Some(Instant::now()),
            settled: false,
            slow: false,
            publishing: true,
            recording: None,
            level: None,
        }
    }

    pub fn health(&self) -> &'static str {
        match self.state {
            State::Running => {
                if self.published == Some(false) || !self.publishing {
                    "unhealthy"
                } else if self.silent
                    || self.slow
                    || self.recording.as_ref().is_some_and(|r| r.error.is_some())
                {
                    "degraded"
                } else {
                    "healthy"
                }
            }
            State::Failed => "failed",
            State::Starting | State::Stopped | State::Stopping => "unknown",
            State::Backoff | State::WaitingForDevice => "unhealthy",
        }
    }

    /// Keep `unhealthy_since` in step with state and health (monitor's grace needs it).
    pub fn touch(&mut self) {
        let ok = self.state == State::Running && self.health() == "healthy";
        match (ok, self.unhealthy_since) {
            (true, Some(_)) => self.unhealthy_since = None,
            (false, None) => self.unhealthy_since = Some(Instant::now()),
            _ => {}
        }
    }

    fn set_state(&mut self, s: State) {
        self.state = s;
        self.touch();
    }

    pub fn snapshot(&self, now: Instant) -> StreamStatus {
        let since = |t: Instant| now.saturating_duration_since(t).as_secs_f64();
        StreamStatus {
            name: self.cfg_name.clone(),
            state: self.state.as_str().into(),
            health: self.health().into(),
            pid: self.pid,
            uptime_s: self.started_at.filter(|_| self.pid.is_some()).map(since),
            restarts: self.restarts,
            consecutive_failures: self.consecutive_failures,
            next_retry_s: self
                .next_retry_at
                .map(|t| t.saturating_duration_since(now).as_secs_f64()),
            last_exit: self.last_exit.as_ref().map(|(e, at)| LastExit {
                ago_s: Some(since(*at)),
                ..e.clone()
            }),
            progress: self.progress.as_ref().map(|p| ProgressView {
                out_time_s: p.out_time_us.map(|u| u as f64 / 1e6),
                total_size: p.total_size,
                bitrate_kbps: p.bitrate_kbps,
                speed: p.speed,
            }),
            device: self.device.clone(),
            alsa_device: self.alsa_device.clone(),
            url: self.url.clone(),
            log: self.log.clone(),
            silent: self.silent,
            mediamtx: self.mediamtx.clone(),
            unhealthy_for_s: self.unhealthy_since.map(since),
            settled: self.settled,
            notes: self.notes.clone(),
            publishing: self.publishing,
            recording: self.recording.clone(),
            level: self.level.clone(),
        }
    }
}

/// How the current child is being ended, if we are ending it.
struct Ending {
    /// We asked for it (stop, restart, reload, device gone): not a failure.
    initiated: bool,
    reason: String,
    /// When to escalate SIGINT to SIGKILL.
    kill_at: Option<Instant>,
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
    rx: Receiver<Msg>,
    tx: Sender<Msg>,
    shared: Arc<Mutex<Shared>>,
    generation: u64,
    /// When the last child was stopped to bring publishing back (the recording gap starts).
    gap_from: Option<Instant>,
    /// Publishing restores in a row whose new RTSP leg failed again soon (probe backoff).
    restore_attempts: u32,
}

/// Media side of one child run: recording legs, levels, publishing restore.
struct MediaRun {
    /// The recording leg is writing (the directory was writable and no failure since).
    rec_alive: bool,
    rec_error: Option<String>,
    /// Since when our RTSP leg is down.
    rtsp_down: Option<Instant>,
    next_probe: Instant,
    next_sweep: Instant,
}

/// The longest a wrapper sleeps between looks at its timers. It normally sleeps until the
/// next one is due (`next_due`): a fixed 100 ms tick per stream was most of the supervisor's
/// CPU at hundreds of streams (docs/performance.md).
const TICK: Duration = Duration::from_secs(1);

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
const TAIL_LINES: usize = 30;

impl Wrapper {
    pub fn new(
        cfg: StreamConfig,
        rx: Receiver<Msg>,
        tx: Sender<Msg>,
        shared: Arc<Mutex<Shared>>,
    ) -> Wrapper {
        Wrapper {
            cfg,
            rx,
            tx,
            shared,
            generation: 0,
            gap_from: None,
            restore_attempts: 0,
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
                Ok(Msg::DeviceGone) => return Next::Wait,
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
        let mut proc = match child::spawn(&spec, &name, &self.cfg.state_dir) {
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
        let _ = std::fs::write(&pid_file, format!("{pid}\n"));
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

        // Helper threads: progress from stdout, log + tail from stderr, and the waiter.
        let stdout = proc.stdout.take();
        let stderr = proc.stderr.take();
        let tx = self.tx.clone();
        if let Some(out) = stdout {
            spawn_named(format!("{name}-progress"), move || {
                read_progress(out, gen, tx)
            });
        }
        let (tail_tx, tail_rx) = mpsc::channel::<Vec<String>>();
        let log = RotatingLog::open(&self.cfg.log_path, self.cfg.log_max, self.cfg.log_keep);
        let tx = self.tx.clone();
        let want = Wants {
            silence: self.cfg.health.silence_db.is_some(),
            levels: self.cfg.health.levels,
        };
        if let Some(err) = stderr {
            let name2 = name.clone();
            spawn_named(format!("{name}-stderr"), move || {
                let tail = read_stderr(err, gen, tx, log.ok(), header, want, &name2);
                let _ = tail_tx.send(tail);
            });
        }
        let tx = self.tx.clone();
        spawn_named(format!("{name}-wait"), move || {
            let status = proc.wait();
            // Anything ffmpeg forked dies with it; its inherited pipes then close, so the
            // stderr reader reaches EOF at once instead of when the last straggler exits.
            child::signal_group(pid, Signal::SIGKILL);
            // Give the stderr reader a moment to drain ffmpeg's last words (the reason).
            let tail = tail_rx
                .recv_timeout(Duration::from_millis(300))
                .unwrap_or_default();
            let status = status.unwrap_or_else(|_| ExitStatus::from_raw(0));
            let _ = tx.send(Msg::Exited(gen, status, tail));
        });

        let mut ending: Option<Ending> = None;
        let mut last_out: Option<i64> = None;
        let mut last_advance = spawned_at;
        let mut got_progress = false;
        let mut pending_cfg: Option<StreamConfig> = None;

        loop {
            let due = next_due(
                ending.as_ref().map(|e| e.kill_at),
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
            let msg = self.rx.recv_timeout(wait);
            let now = Instant::now();
            match msg {
                Ok(Msg::Progress(g, p)) if g == gen => {
                    if let Some(t) = p.out_time_us {
                        if last_out.is_none_or(|l| t > l) {
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
                    self.with(|s| {
                        s.slow = p.speed.is_some_and(|v| v < 0.8) && !first;
                        s.progress = Some(p);
                        if s.state == State::Starting && ending.is_none() {
                            s.running_since = Some(now);
                            s.settled = true;
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
                Ok(Msg::Progress(..))
                | Ok(Msg::Silence(..))
                | Ok(Msg::Exited(..))
                | Ok(Msg::Level(..))
                | Ok(Msg::Leg(..)) => {}
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
            then,
        });
    }

    /// Which argv this run uses (recording when its directory takes a write, else the
    /// publish-only fallback) and the run's media bookkeeping.
    fn media_start(&mut self) -> (ChildSpec, MediaRun) {
        let now = Instant::now();
        let mut m = MediaRun {
            rec_alive: false,
            rec_error: None,
            rtsp_down: None,
            next_probe: now,
            next_sweep: now + Duration::from_secs(1),
        };
        let Some(r) = self.cfg.recording.clone() else {
            self.with(|s| s.recording = None);
            return (self.cfg.child.clone(), m);
        };
        let spec = match recording::check_writable(&r.plan.dir) {
            Ok(()) => {
                wait_for_fresh_name(&r.plan);
                m.rec_alive = true;
                self.cfg.child.clone()
            }
            Err(e) => {
                log::warn!(
                    "{}: recording off for this run, streaming only: {e}",
                    self.cfg.name
                );
                m.rec_error = Some(e);
                r.fallback.clone()
            }
        };
        let mut view = r.plan.sweep(false);
        view.error = m.rec_error.clone();
        self.with(|s| {
            view.last_gap_s = s.recording.as_ref().and_then(|v| v.last_gap_s);
            s.recording = Some(view);
        });
        (spec, m)
    }

    /// A tee leg gave up. RTSP: keep the child (it records), mark not publishing, and
    /// start probing the server. Recording: report it; streaming goes on untouched.
    fn leg_failed(&mut self, m: &mut MediaRun, leg: usize, why: String) {
        if self.cfg.recording.is_none() {
            return;
        }
        let name = &self.cfg.name;
        let now = Instant::now();
        match leg {
            0 if m.rtsp_down.is_none() => {
                log::warn!("{name}: RTSP leg failed ({why}); recording continues");
                m.rtsp_down = Some(now);
                m.next_probe = now + self.probe_interval();
                self.with(|s| {
                    s.publishing = false;
                    s.touch();
                });
            }
            1 => {
                let e = format!("recording stopped: {why}");
                log::warn!("{name}: {e}; streaming continues");
                m.rec_alive = false;
                m.rec_error = Some(e.clone());
                self.with(|s| {
                    if let Some(v) = s.recording.as_mut() {
                        v.error = Some(e);
                    }
                    s.touch();
                });
            }
            _ => {}
        }
    }

    /// The probe interval doubles (1 s .. 64 s) while restores keep failing at once.
    fn probe_interval(&self) -> Duration {
        Duration::from_secs(1 << self.restore_attempts.min(6))
    }

    /// Once a second: keep the ring within bounds and refresh the view. While the RTSP leg
    /// is down and the recording runs, probe the server; `Some(reason)` = restart now.
    fn media_tick(&mut self, m: &mut MediaRun, now: Instant) -> Option<String> {
        let r = self.cfg.recording.clone()?;
        if now >= m.next_sweep {
            m.next_sweep = now + Duration::from_secs(1);
            let mut v = r.plan.sweep(m.rec_alive);
            if v.error.is_none() {
                v.error = m.rec_error.clone();
            }
            self.with(|s| {
                v.last_gap_s = s.recording.as_ref().and_then(|x| x.last_gap_s);
                s.recording = Some(v);
                s.touch();
            });
        }
        if m.rtsp_down.is_some() && m.rec_alive && now >= m.next_probe {
            m.next_probe = now + self.probe_interval();
            let addr = r.rtsp_addr.as_deref()?;
            if reachable(addr) {
                self.restore_attempts = self.restore_attempts.saturating_add(1);
                return Some(format!(
                    "publishing restore: {addr} answers again (restart at once, recording gap measured)"
                ));
            }
        }
        None
    }

    /// First progress after a restore: audio started `out_time` ago; the gap is from the
    /// old child's SIGINT to then.
    fn measure_gap(&mut self, now: Instant, out_time_us: Option<i64>) {
        let Some(from) = self.gap_from.take() else {
            return;
        };
        let captured = Duration::from_micros(out_time_us.unwrap_or(0).max(0) as u64);
        let start = now.checked_sub(captured).unwrap_or(now);
        let gap = start.saturating_duration_since(from).as_secs_f64();
        log::info!(
            "{}: child restarted; recording gap about {gap:.2}s",
            self.cfg.name
        );
        self.with(|s| {
            if let Some(v) = s.recording.as_mut() {
                v.last_gap_s = Some(gap);
            }
        });
    }

    fn after_exit(
        &mut self,
        status: ExitStatus,
        tail: Vec<String>,
        ending: Option<Ending>,
        pending_cfg: Option<StreamConfig>,
        spawned_at: Instant,
    ) -> Next {
        let code = status.code();
        let signal = status.signal().map(child::signal_name);
        let name = self.cfg.name.clone();
        let next = match ending {
            Some(e) if e.initiated => {
                log::info!("{name}: ffmpeg ended ({})", e.reason);
                self.with(|s| {
                    s.last_exit = Some((
                        LastExit {
                            code,
                            signal: signal.clone(),
                            reason: e.reason.clone(),
                            ago_s: None,
                        },
                        Instant::now(),
                    ));
                    s.pid = None;
                });
                e.then
            }
            other => {
                let reason = match other {
                    Some(e) => e.reason,
                    None => progress::exit_reason(&tail).unwrap_or_else(|| match (&signal, code) {
                        (Some(sig), _) => format!("killed by {sig}"),
                        (None, Some(0)) => {
                            "exited with code 0 (a live capture never ends by itself)".into()
                        }
                        (None, Some(c)) => format!("exited with code {c}"),
                        _ => "exited".into(),
                    }),
                };
                let ran = spawned_at.elapsed();
                log::warn!(
                    "{name}: ffmpeg failed after {:.1}s ({}): {reason}",
                    ran.as_secs_f64(),
                    signal
                        .clone()
                        .unwrap_or_else(|| format!("code {}", code.unwrap_or(-1)))
                );
                self.record_failure_with(code, signal, reason);
                Next::Backoff
            }
        };
        if let Some(cfg) = pending_cfg {
            self.apply_cfg(cfg);
        }
        next
    }

    fn record_failure(&mut self, code: Option<i32>, reason: String) {
        self.record_failure_with(code, None, reason)
    }

    fn record_failure_with(&mut self, code: Option<i32>, signal: Option<String>, reason: String) {
        let stable_after = self.cfg.backoff.stable_after;
        self.with(|s| {
            // A run that lasted `stable_after` already reset the count while it ran.
            let stable = s.running_since.is_some_and(|t| t.elapsed() >= stable_after);
            s.consecutive_failures = if stable {
                1
            } else {
                s.consecutive_failures.saturating_add(1)
            };
            s.last_exit = Some((
                LastExit {
                    code,
                    signal,
                    reason,
                    ago_s: None,
                },
                Instant::now(),
            ));
            s.pid = None;
            s.settled = true;
            s.running_since = None;
        });
    }
}

/// Segment names have one-second resolution: a child started in the same second as the
/// newest segment would overwrite it, so wait for the next second (at most ~1 s).
fn wait_for_fresh_name(plan: &recording::Plan) {
    let newest = plan
        .list()
        .ok()
        .and_then(|l| l.last().map(|s| s.name.clone()));
    let Some(newest) = newest else { return };
    let end = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < end
        && newest
            == format!(
                "{}-{}.{}",
                plan.stream,
                recording::local_stamp_now(),
                plan.ext
            )
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a TCP connection to `addr` opens within 500 ms.
fn reachable(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    let Ok(addrs) = addr.to_socket_addrs() else {
        return false;
    };
    addrs
        .take(2)
        .any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok())
}

fn spawn_named(name: String, f: impl FnOnce() + Send + 'static) {
    let short: String = name.chars().take(15).collect();
    if let Err(e) = std::thread::Builder::new().name(short).spawn(f) {
        log::error!("cannot start thread {name}: {e}");
    }
}

/// Credentials never reach a log: redact any URL argument.
fn redact_args(args: &[String]) -> String {
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

fn read_progress(out: impl Read, gen: u64, tx: Sender<Msg>) {
    let mut parser = ProgressParser::default();
    let mut reader = BufReader::new(out);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                if let Some(p) = parser.feed(line.trim_end()) {
                    if tx.send(Msg::Progress(gen, p)).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// What the stderr reader looks for besides the log.
#[derive(Clone, Copy)]
struct Wants {
    silence: bool,
    levels: bool,
}

/// Copy stderr into the rotating log, keep the last lines for the exit reason, and pass
/// silencedetect events, levels and tee leg failures on. Level prints (one per second)
/// stay out of the log and the tail. Returns the tail when ffmpeg closes stderr.
fn read_stderr(
    err: impl Read,
    gen: u64,
    tx: Sender<Msg>,
    mut log: Option<RotatingLog>,
    header: String,
    want: Wants,
    name: &str,
) -> Vec<String> {
    let mut peak: Option<f64> = None;
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    if let Some(l) = log.as_mut() {
        l.line(&header);
    }
    let mut reader = BufReader::with_capacity(64 * 1024, err);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        // ffmpeg uses \r for in-place updates; keep the last segment.
        let text = String::from_utf8_lossy(&buf);
        let line = text.trim_end().rsplit('\r').next().unwrap_or("").trim_end();
        let redacted = crate::util::redact_text(line);
        let line = redacted.as_str();
        if line.is_empty() {
            continue;
        }
        if want.levels {
            if let Some((kind, db)) = progress::level_line(line) {
                if kind == "peak" {
                    peak = Some(db);
                } else {
                    let _ = tx.send(Msg::Level(gen, peak.take().unwrap_or(db), db));
                }
                continue;
            }
            if progress::is_metadata_frame_line(line) {
                continue;
            }
        }
        if let Some((leg, why)) = progress::tee_leg_failed(line) {
            let _ = tx.send(Msg::Leg(gen, leg, why));
        }
        if let Some(l) = log.as_mut() {
            l.line(line);
        }
        if want.silence {
            if let Some(silent) = progress::silence_event(line) {
                let _ = tx.send(Msg::Silence(gen, silent));
            }
        }
        if tail.back().map(String::as_str) != Some(line) {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line.to_string());
        }
    }
    if let Some(l) = log.as_mut() {
        l.flush_repeats();
    }
    log::debug!("{name}: stderr closed");
    tail.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapper_wakes_when_the_next_timer_is_due() {
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        // (ending, media, progress deadline, want)
        let table = [
            (None, None, at(3000), Some(at(3000))), // stall/start deadline only
            (None, Some((at(1000), None)), at(3000), Some(at(1000))), // recording sweep
            (
                None,
                Some((at(1000), Some(at(500)))),
                at(3000),
                Some(at(500)),
            ), // probe
            (
                None,
                Some((at(4000), Some(at(5000)))),
                at(3000),
                Some(at(3000)),
            ),
            (
                Some(Some(at(200))),
                Some((at(100), None)),
                at(50),
                Some(at(200)),
            ), // grace
            (Some(None), None, at(50), None), // SIGKILL sent: only the exit matters
        ];
        for (i, (ending, media, progress, want)) in table.into_iter().enumerate() {
            assert_eq!(next_due(ending, media, progress), want, "row {i}");
        }
    }
}
