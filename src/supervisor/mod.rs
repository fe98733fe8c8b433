//! The supervisor: one process per host holding the instance lock. Its main thread owns
//! the set of streams (rescans, reload, stop); each stream has a wrapper thread
//! (`stream.rs`); a control thread answers the socket; an optional poller thread reads
//! MediaMTX. See docs/architecture.md.

pub mod backoff;
pub mod poller;
pub mod source;
pub mod stream;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
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
use stream::{Msg, Shared, StreamConfig, Wrapper};

/// What other threads may see and poke: each stream's channel and live view.
#[derive(Clone)]
pub struct StreamHandle {
    pub tx: Sender<Msg>,
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
    }
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
    events: Receiver<Event>,
    events_tx: Sender<Event>,
    last_status_line: String,
    /// The inotify hot-plug watcher (`discovery.watch`); stops when dropped.
    watch: Option<watch::Watch>,
}

impl Supervisor {
    pub fn new(settings: Settings, source: Box<dyn StreamSource>) -> Supervisor {
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
        std::fs::create_dir_all(&streams_dir).map_err(|e| {
            Error::general(format!(
                "cannot create {}: {}",
                streams_dir.display(),
                crate::util::io_reason(&e)
            ))
        })?;
        std::fs::create_dir_all(&self.settings.paths.log_dir).map_err(|e| {
            Error::general(format!(
                "cannot create log directory {}: {}",
                self.settings.paths.log_dir.display(),
                crate::util::io_reason(&e)
            ))
        })?;
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
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Mutex::new(Shared::new(&cfg)));
        let wrapper = Wrapper::new(cfg, rx, tx.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name(format!("s-{}", name.chars().take(13).collect::<String>()))
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
        self.sync(false);
    }

    /// Bring the running set in line with the source. `prune` (a reload): a stream that is
    /// not planned any more is stopped and removed rather than left waiting for a device
    /// that will never carry its name again, so the set is exactly what a fresh start runs.
    fn sync(&mut self, prune: bool) {
        let configs = self.source.scan(&self.settings);
        if prune {
            let keep: BTreeSet<String> = configs.iter().map(|c| c.name.clone()).collect();
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
                        let _ = h.tx.send(Msg::DeviceBack(Box::new(cfg)));
                    } else {
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

    /// Stop and remove every stream not in `keep` (renamed, disabled, mode changed, or
    /// its device absent: a fresh start would not list it either). Their children are
    /// reaped before the new set starts, so a renamed stream's successor finds the ALSA
    /// device free; a wrapper slower than the stop grace is left to finish on its own.
    fn retire_all_but(&mut self, keep: &BTreeSet<String>) {
        let names: Vec<String> = self
            .registry
            .read()
            .map(|r| r.keys().filter(|n| !keep.contains(*n)).cloned().collect())
            .unwrap_or_default();
        let mut stopping = Vec::new();
        for name in names {
            let handle = self.registry.write().ok().and_then(|mut r| r.remove(&name));
            self.present.remove(&name);
            if let Some(h) = handle {
                log::info!("{name}: not in the reloaded configuration; stopping and removing it");
                let _ = h.tx.send(Msg::Stop);
            }
            stopping.extend(self.threads.remove(&name));
        }
        let until = Instant::now() + self.settings.stop.grace + Duration::from_secs(2);
        while Instant::now() < until && stopping.iter().any(|t| !t.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for t in stopping {
            if t.is_finished() {
                let _ = t.join();
            } else {
                self.retired.push(t);
            }
        }
    }

    /// Apply what a reload changed outside the stream set: the mode label, the MediaMTX
    /// poller, and a warning (in the log and in `status`) for settings that only take
    /// effect at the next start, whose old values stay in force until then.
    fn apply_reloaded(&mut self, old: &Settings) {
        if let Ok(mut m) = self.info.mode.lock() {
            *m = self.source.mode_label(&self.settings);
        }
        let new = &mut self.settings;
        let mut fixed = Vec::new();
        if new.paths.state_dir != old.paths.state_dir {
            fixed.push(format!(
                "paths.state_dir {} (lock, control socket, pid files)",
                old.paths.state_dir.display()
            ));
            new.paths.state_dir = old.paths.state_dir.clone();
        }
        if new.paths.log_dir != old.paths.log_dir {
            fixed.push(format!("paths.log_dir {}", old.paths.log_dir.display()));
            new.paths.log_dir = old.paths.log_dir.clone();
        }
        if new.discovery.watch != old.discovery.watch {
            fixed.push(format!("discovery.watch = {}", old.discovery.watch));
            new.discovery.watch = old.discovery.watch;
        }
        if new.paths.dev_snd != old.paths.dev_snd && old.discovery.watch {
            fixed.push(format!(
                "the hot-plug watch on {} (paths.dev_snd; scans use the new one)",
                old.paths.dev_snd.display()
            ));
        }
        if new.metrics.listen != old.metrics.listen {
            fixed.push(format!(
                "metrics.listen {}",
                old.metrics.listen.as_deref().unwrap_or("(off)")
            ));
            new.metrics.listen = old.metrics.listen.clone();
        }
        let warnings: Vec<String> = fixed
            .iter()
            .map(|f| format!("reload: cannot change while running, keeps {f} until the next start"))
            .collect();
        for w in &warnings {
            log::warn!("{w}");
        }
        if let Ok(mut w) = self.info.warnings.lock() {
            *w = warnings;
        }
        if new.mediamtx != old.mediamtx
            || new.health.unpublished_timeout != old.health.unpublished_timeout
        {
            self.poller_epoch.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut m) = self.info.mediamtx.lock() {
                *m = MediamtxInfo {
                    enabled: new.mediamtx.api,
                    api_url: crate::util::redact_url(&new.mediamtx.api_url),
                    ..MediamtxInfo::default()
                };
            }
            // What the old poller saw says nothing about the new server.
            let reg = self.registry.read().map(|r| r.clone()).unwrap_or_default();
            for h in reg.values() {
                let mut st = h.shared.lock().unwrap_or_else(|e| e.into_inner());
                st.published = None;
                st.mediamtx = None;
                st.touch();
            }
            log::info!(
                "MediaMTX settings changed: {}",
                if new.mediamtx.api {
                    "poller restarted with them"
                } else {
                    "API checks off"
                }
            );
            if new.mediamtx.api {
                self.start_poller();
            }
        }
    }

    fn reload(&mut self) {
        match self.source.reload() {
            Ok(Some(settings)) => {
                log::info!("configuration reloaded");
                let old = std::mem::replace(&mut self.settings, settings);
                self.apply_reloaded(&old);
                self.sync(true);
            }
            Ok(None) => self.rescan(),
            Err(e) => log::error!("reload failed, keeping the running configuration: {e}"),
        }
    }

    /// The main loop; returns after a stop with every child reaped.
    pub fn run(mut self) {
        notify::notify("READY=1");
        let watchdog = notify::watchdog_interval();
        let mut next_watchdog = Instant::now();
        let mut next_scan = Instant::now() + self.settings.discovery.rescan;
        let mut next_metrics = Instant::now();
        loop {
            match self.events.recv_timeout(Duration::from_millis(100)) {
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
            self.update_status_line();
        }
        self.shutdown();
    }

    fn update_status_line(&mut self) {
        let snap = snapshot(&self.registry, &self.info);
        let total = snap.streams.len();
        let ok = snap.streams.iter().filter(|s| s.state == "running").count();
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
