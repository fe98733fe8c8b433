//! The supervisor: one process per host holding the instance lock. Its main thread owns
//! the set of streams (rescans, reload, stop); each stream has a wrapper thread
//! (`stream.rs`); a control thread answers the socket; an optional poller thread reads
//! MediaMTX. See docs/architecture.md.

pub mod backoff;
pub mod poller;
mod reload;
pub mod source;
pub mod stream;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::Settings;
use crate::control::{self, Reply, Request};
use crate::exit::Error;
use crate::notify;
use crate::status::{MediamtxInfo, Snapshot, SupervisorInfo};
use source::StreamSource;

/// A wrapper's stack: it runs the stream's loop and policy, nothing deep; the default
/// 8 MiB is only address space, but 256 of them crowd a 32-bit box.
const WRAPPER_STACK: usize = 512 * 1024;

/// `<state_dir>/streams/` (each ffmpeg's pid, world-readable like supervisor.pid).
pub const STREAMS_DIR_MODE: u32 = 0o755;
/// The log directory when we make it (`LogsDirectory=` makes it 0755 too).
pub const LOG_DIR_MODE: u32 = 0o755;
use stream::{Msg, Shared, StreamConfig, Wrapper};

/// What other threads may see and poke: each stream's mailbox and live view.
#[derive(Clone)]
pub struct StreamHandle {
    pub tx: stream::Tx,
    pub shared: Arc<Mutex<Shared>>,
}

pub type Registry = Arc<RwLock<BTreeMap<String, StreamHandle>>>;

/// Facts about the supervisor itself for snapshots.
pub struct Info {
    pub started: Instant,
    /// Changes when a reload changes the mode.
    pub mode: Mutex<String>,
    pub mediamtx: Mutex<MediamtxInfo>,
    pub warnings: Mutex<Vec<String>>,
    /// The last full CPU window (`crate::cpu`), for `monitor`.
    pub cpu: Mutex<Option<crate::status::CpuView>>,
}

/// Asks the supervisor's main loop to stop gracefully.
pub struct StopHandle(Mutex<Sender<Event>>);

impl StopHandle {
    pub fn stop(&self, why: &'static str) {
        if let Ok(tx) = self.0.lock() {
            let _ = tx.send(Event::Stop(why));
        }
    }
}

enum Event {
    Stop(&'static str),
    Reload,
    Restart(Vec<String>),
    /// `/dev/snd` changed (inotify, debounced): rescan now.
    DevicesChanged,
}

/// Build a snapshot of everything, as `status` shows it.
pub fn snapshot(registry: &Registry, info: &Info) -> Snapshot {
    let now = Instant::now();
    let streams = registry
        .read()
        .map(|r| {
            r.values()
                .map(|h| {
                    h.shared
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .snapshot(now)
                })
                .collect()
        })
        .unwrap_or_default();
    Snapshot {
        supervisor: SupervisorInfo {
            running: true,
            pid: Some(std::process::id()),
            uptime_s: Some(info.started.elapsed().as_secs()),
            mode: info.mode.lock().map(|m| m.clone()).unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION").into(),
            note: None,
        },
        mediamtx: info.mediamtx.lock().map(|m| m.clone()).unwrap_or_default(),
        streams,
        warnings: info.warnings.lock().map(|w| w.clone()).unwrap_or_default(),
        cpu: info.cpu.lock().ok().and_then(|c| c.clone()),
    }
}

/// Whether a stream's wrapper is waiting for its device (it wakes on the next `Update`).
fn waiting(h: &StreamHandle) -> bool {
    let s = h.shared.lock().unwrap_or_else(|e| e.into_inner());
    s.state == stream::State::WaitingForDevice
}

/// Receives a snapshot every `mediamtx.poll` and once more after the stop; the caller
/// wires it (the metrics textfile), so the supervisor hands snapshots out and depends on
/// no consumer.
pub type Reporter = Box<dyn FnMut(&Settings, &Snapshot) + Send>;

pub struct Supervisor {
    settings: Settings,
    reporter: Option<Reporter>,
    source: Box<dyn StreamSource>,
    registry: Registry,
    info: Arc<Info>,
    /// Each stream's wrapper thread, by stream name.
    threads: BTreeMap<String, JoinHandle<()>>,
    /// Wrappers a reload removed that had not finished stopping in time (joined at the end).
    retired: Vec<JoinHandle<()>>,
    /// Bumped when `[mediamtx]` changes at a reload: the running poller then ends and a
    /// new one starts with the new client.
    poller_epoch: Arc<AtomicU64>,
    present: BTreeMap<String, bool>,
    /// The configuration each wrapper was last given: the rescan sends one only when it
    /// changed, so an idle stream's thread is not woken every rescan for nothing.
    sent: BTreeMap<String, StreamConfig>,
    events: Receiver<Event>,
    events_tx: Sender<Event>,
    last_status_line: String,
    /// The inotify hot-plug watcher (`discovery.watch`); stops when dropped.
    watch: Option<watch::Watch>,
}

impl Supervisor {
    pub fn new(settings: Settings, source: Box<dyn StreamSource>) -> Supervisor {
        crate::child::raise_nofile();
        let (events_tx, events) = mpsc::channel();
        let info = Arc::new(Info {
            started: Instant::now(),
            mode: Mutex::new(source.mode_label(&settings)),
            mediamtx: Mutex::new(MediamtxInfo {
                enabled: settings.mediamtx.api,
                api_url: crate::util::redact_url(&settings.mediamtx.api_url),
                ..MediamtxInfo::default()
            }),
            warnings: Mutex::new(Vec::new()),
            cpu: Mutex::new(None),
        });
        Supervisor {
            settings,
            reporter: None,
            source,
            registry: Arc::new(RwLock::new(BTreeMap::new())),
            info,
            threads: BTreeMap::new(),
            retired: Vec::new(),
            poller_epoch: Arc::new(AtomicU64::new(0)),
            present: BTreeMap::new(),
            sent: BTreeMap::new(),
            events,
            events_tx,
            last_status_line: String::new(),
            watch: None,
        }
    }

    /// Hand every periodic snapshot to `r` (see `Reporter`).
    pub fn on_snapshot(&mut self, r: Reporter) {
        self.reporter = Some(r);
    }

    fn report(&mut self) {
        if let Some(r) = self.reporter.as_mut() {
            r(&self.settings, &snapshot(&self.registry, &self.info));
        }
    }

    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }

    pub fn info(&self) -> Arc<Info> {
        self.info.clone()
    }

    /// A handle other threads (the demo, tests) use to ask for a graceful stop.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(Mutex::new(self.events_tx.clone()))
    }

    /// Scan until at least one stream exists or `wait` passes; returns the count.
    pub fn wait_for_streams(&mut self, wait: Duration) -> usize {
        let until = Instant::now() + wait;
        loop {
            let n = self.source.scan(&self.settings).len();
            if n > 0 || Instant::now() >= until {
                return n;
            }
            std::thread::sleep(Duration::from_millis(200).min(until - Instant::now()));
        }
    }

    /// Bind the control socket and install signal handling. Call once, before `launch`.
    pub fn prepare(&mut self) -> Result<(), Error> {
        let state_dir = &self.settings.paths.state_dir;
        let streams_dir = state_dir.join("streams");
        crate::fsafe::ensure_subdir(&streams_dir, STREAMS_DIR_MODE).map_err(|e| {
            Error::general(format!(
                "cannot create {}: {}",
                streams_dir.display(),
                crate::util::io_reason(&e)
            ))
        })?;
        crate::fsafe::ensure_shared_dir(&self.settings.paths.log_dir, LOG_DIR_MODE).map_err(
            |e| {
                Error::general(format!(
                    "cannot create log directory {}: {}",
                    self.settings.paths.log_dir.display(),
                    crate::util::io_reason(&e)
                ))
            },
        )?;
        let registry = self.registry.clone();
        let info = self.info.clone();
        let tx = Mutex::new(self.events_tx.clone());
        let handler = Arc::new(move |req: Request| -> Reply {
            let send = |ev| {
                let _ = tx.lock().map(|t| t.send(ev));
            };
            match req {
                Request::Ping => Reply {
                    pid: Some(std::process::id()),
                    ..Reply::ok()
                },
                Request::Status => Reply {
                    status: Some(snapshot(&registry, &info)),
                    ..Reply::ok()
                },
                Request::Stop => {
                    send(Event::Stop("stop requested"));
                    Reply::ok()
                }
                Request::Reload => {
                    send(Event::Reload);
                    Reply::ok()
                }
                Request::Restart { streams } => {
                    if streams.is_empty() {
                        return Reply::err("name at least one stream");
                    }
                    let known = registry
                        .read()
                        .map(|r| r.keys().cloned().collect::<Vec<_>>())
                        .unwrap_or_default();
                    let unknown: Vec<_> = streams
                        .iter()
                        .filter(|s| !known.contains(s))
                        .cloned()
                        .collect();
                    if !unknown.is_empty() {
                        return Reply::err(format!("unknown stream: {}", unknown.join(", ")));
                    }
                    send(Event::Restart(streams));
                    Reply::ok()
                }
            }
        });
        control::serve(state_dir, handler).map_err(|e| {
            Error::general(format!(
                "cannot bind control socket {}: {}",
                control::socket_path(state_dir).display(),
                crate::util::io_reason(&e)
            ))
        })?;
        // Signals become events for the main loop.
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
            .map_err(|e| Error::general(format!("cannot install signal handlers: {e}")))?;
        let tx = self.events_tx.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    let ev = match sig {
                        SIGHUP => Event::Reload,
                        SIGINT => Event::Stop("SIGINT"),
                        _ => Event::Stop("SIGTERM"),
                    };
                    if tx.send(ev).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| Error::general(format!("cannot start signal thread: {e}")))?;
        self.start_watch();
        if self.settings.mediamtx.api {
            self.start_poller();
        }
        Ok(())
    }

    fn start_poller(&self) {
        poller::start(
            &self.settings,
            self.registry.clone(),
            self.info.clone(),
            self.poller_epoch.clone(),
        );
    }

    /// Wake the main loop for a rescan when `dev_snd` changes; without it (setting off, no
    /// inotify) the periodic rescan alone finds devices.
    fn start_watch(&mut self) {
        if !self.settings.discovery.watch {
            return;
        }
        let tx = self.events_tx.clone();
        let wake = move || tx.send(Event::DevicesChanged).is_ok();
        match watch::start(&self.settings.paths.dev_snd, watch::DEBOUNCE, wake) {
            Ok(w) => self.watch = Some(w),
            Err(e) => log::warn!(
                "cannot watch for hot-plug ({e}); devices are found by the rescan every {}",
                crate::config::fmt_duration(self.settings.discovery.rescan)
            ),
        }
    }

    /// Start wrappers for what is present now.
    pub fn launch(&mut self) {
        self.rescan();
    }

    fn spawn_stream(&mut self, cfg: StreamConfig) {
        let name = cfg.name.clone();
        let (tx, rx) = match stream::channel() {
            Ok(c) => c,
            Err(e) => {
                log::error!("{name}: cannot start wrapper (eventfd): {e}");
                return;
            }
        };
        let shared = Arc::new(Mutex::new(Shared::new(&cfg)));
        self.sent.insert(name.clone(), cfg.clone());
        let wrapper = Wrapper::new(cfg, rx, shared.clone());
        let thread = std::thread::Builder::new()
            .name(format!("s-{}", name.chars().take(13).collect::<String>()))
            .stack_size(WRAPPER_STACK)
            .spawn(move || wrapper.run(true));
        match thread {
            Ok(t) => {
                if let Some(old) = self.threads.insert(name.clone(), t) {
                    self.retired.push(old);
                }
                if let Ok(mut r) = self.registry.write() {
                    r.insert(name.clone(), StreamHandle { tx, shared });
                }
                self.present.insert(name, true);
            }
            Err(e) => log::error!("{name}: cannot start wrapper thread: {e}"),
        }
    }

    /// Compare what the host offers now with the running set (hot-plug).
    fn rescan(&mut self) {
        self.sync(None);
    }

    /// Bring the running set in line with the source. `prune` (a reload): a stream that is
    /// not planned any more is stopped and removed rather than left waiting for a device
    /// that will never carry its name again; only the streams in `prune` (waiting for an
    /// unplugged device that the new settings would still stream under the same name)
    /// are kept besides the plan.
    fn sync(&mut self, prune: Option<&BTreeSet<String>>) {
        let configs = self.source.scan(&self.settings);
        if let Some(absent) = prune {
            let mut keep: BTreeSet<String> = configs.iter().map(|c| c.name.clone()).collect();
            keep.extend(absent.iter().cloned());
            self.retire_all_but(&keep);
        }
        let mut seen = Vec::new();
        for cfg in configs {
            seen.push(cfg.name.clone());
            let handle = self
                .registry
                .read()
                .ok()
                .and_then(|r| r.get(&cfg.name).cloned());
            match handle {
                None => {
                    log::info!("{}: device found, starting stream", cfg.name);
                    self.spawn_stream(cfg);
                }
                Some(h) => {
                    let was_present = self.present.get(&cfg.name).copied().unwrap_or(false);
                    self.present.insert(cfg.name.clone(), true);
                    if !was_present {
                        log::info!("{}: device is back", cfg.name);
                        self.sent.insert(cfg.name.clone(), cfg.clone());
                        let _ = h.tx.send(Msg::DeviceBack(Box::new(cfg)));
                    } else if self.sent.get(&cfg.name) != Some(&cfg) || waiting(&h) {
                        // A wrapper that found its device gone on its own waits for this
                        // to start again (the device came back before a rescan saw it go).
                        self.sent.insert(cfg.name.clone(), cfg.clone());
                        let _ = h.tx.send(Msg::Update(Box::new(cfg)));
                    }
                }
            }
        }
        let gone: Vec<String> = self
            .present
            .iter()
            .filter(|(n, p)| **p && !seen.contains(n))
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            log::warn!("{name}: device removed, waiting for it");
            self.present.insert(name.clone(), false);
            if let Some(h) = self
                .registry
                .read()
                .ok()
                .and_then(|r| r.get(&name).cloned())
            {
                let _ = h.tx.send(Msg::DeviceGone);
            }
        }
    }

    /// The main loop; returns after a stop with every child reaped.
    pub fn run(mut self) {
        notify::notify("READY=1");
        let watchdog = notify::watchdog_interval();
        let mut next_watchdog = Instant::now();
        let mut next_scan = Instant::now() + self.settings.discovery.rescan;
        let mut next_metrics = Instant::now();
        let mut cpu = crate::cpu::Meter::default();
        loop {
            // Sleep until the next job is due (rescan, watchdog, report, CPU mark) or an
            // event arrives: no fixed tick, so an idle supervisor wakes about every 2 s.
            let mut due = next_scan.min(next_metrics).min(cpu.next_due());
            if watchdog.is_some() {
                due = due.min(next_watchdog);
            }
            let wait = due.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(wait) {
                Ok(Event::Stop(why)) => {
                    log::info!("stopping ({why})");
                    break;
                }
                Ok(Event::Reload) => self.reload(),
                Ok(Event::Restart(names)) => {
                    let reg = self.registry.read().map(|r| r.clone()).unwrap_or_default();
                    for n in names {
                        if let Some(h) = reg.get(&n) {
                            log::info!("{n}: restart requested");
                            let _ = h.tx.send(Msg::Restart);
                        }
                    }
                }
                // The periodic rescan below runs now and restarts its interval.
                Ok(Event::DevicesChanged) => next_scan = Instant::now(),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            if now >= next_scan {
                self.rescan();
                next_scan = now + self.settings.discovery.rescan;
            }
            if let Some(iv) = watchdog {
                if now >= next_watchdog {
                    notify::notify("WATCHDOG=1");
                    next_watchdog = now + iv;
                }
            }
            if now >= next_metrics {
                self.report();
                next_metrics = now + self.settings.mediamtx.poll;
            }
            self.update_status_line(&mut cpu, now);
        }
        self.shutdown();
    }

    /// The systemd status line (refreshed at every wake, so at most one CPU period,
    /// 2 s, late), and a CPU mark when one is due. Reads each stream's state and pid only: a
    /// full snapshot at every wake was a third of the supervisor's CPU at hundreds of
    /// streams (docs/performance.md).
    fn update_status_line(&mut self, cpu: &mut crate::cpu::Meter, now: Instant) {
        let (mut ok, mut total, mut pids) = (0, 0, Vec::new());
        if let Ok(r) = self.registry.read() {
            for h in r.values() {
                let s = h.shared.lock().unwrap_or_else(|e| e.into_inner());
                total += 1;
                ok += usize::from(s.state == stream::State::Running);
                pids.extend(s.pid);
            }
        }
        if let Some(view) = cpu.tick(now, &pids) {
            if let Ok(mut c) = self.info.cpu.lock() {
                *c = Some(view);
            }
        }
        let line = format!("{ok}/{total} streams running");
        if line != self.last_status_line {
            notify::notify(&format!("STATUS={line}"));
            self.last_status_line = line;
        }
    }

    fn shutdown(mut self) {
        notify::notify("STOPPING=1");
        let reg = self.registry.read().map(|r| r.clone()).unwrap_or_default();
        for h in reg.values() {
            let _ = h.tx.send(Msg::Stop);
        }
        // Every wrapper stops its child in parallel (SIGINT, grace, SIGKILL) and reaps it.
        let threads = std::mem::take(&mut self.threads);
        let retired = std::mem::take(&mut self.retired);
        for t in threads.into_values().chain(retired) {
            let _ = t.join();
        }
        // A last textfile: a stopped supervisor must not leave "up 1" behind for scrapers.
        self.report();
        let _ = std::fs::remove_file(control::socket_path(&self.settings.paths.state_dir));
        log::info!("all streams stopped");
    }
}
