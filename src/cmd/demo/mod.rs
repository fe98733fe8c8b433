//! `demo` (SPEC §11): the real supervisor in the foreground on two synthetic sources.
//!
//! Only the edges are swapped: a fixed `StreamSource` of lavfi test tones stands in for
//! ALSA discovery, and one `ffmpeg -rtsp_flags listen` receiver per stream stands in for
//! MediaMTX. Wrappers, backoff, stall detection, status and shutdown are production code.
//! Everything lives in a fresh temp dir that is removed at the end.

use std::io::{IsTerminal, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::child::{self, ChildSpec};
use crate::cli::Global;
use crate::config::params::Codec;
use crate::config::{fmt_duration, Settings};
use crate::exit::{Error, Exit};
use crate::ffmpeg::argv::{self, Extras, Input, InputSpec, Output};
use crate::lock::InstanceLock;
use crate::status::{DeviceView, StreamStatus};
use crate::supervisor::source::{self, StreamSource};
use crate::supervisor::stream::StreamConfig;
use crate::supervisor::{self as sup, Supervisor};

/// Set (to anything) to keep the temp dir with its logs after the demo.
pub const KEEP_ENV: &str = "MEDIAMTX_STREAM_MANAGER_DEMO_KEEP";
/// The synthetic microphones: stream name and tone frequency.
const TONES: [(&str, u32); 2] = [("demo_tone_a", 440), ("demo_tone_b", 660)];
const SAMPLE_RATE: u32 = 48000;
/// How often the status table is redrawn.
const REFRESH: Duration = Duration::from_secs(2);
/// When the demo kills a child to show recovery (earlier if `--duration` is short).
const KILL_AFTER: Duration = Duration::from_secs(10);
/// How long to wait for a receiver to listen before starting the publishers anyway.
const LISTEN_WAIT: Duration = Duration::from_secs(3);

/// One synthetic microphone and the loopback port its receiver listens on.
#[derive(Debug, Clone, PartialEq)]
pub struct Tone {
    pub name: String,
    pub freq_hz: u32,
    pub port: u16,
}

impl Tone {
    /// Each stream has its own receiver, and a listen-mode receiver binds its port alone.
    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/{}", self.port, self.name)
    }
}

/// Run the demo until Ctrl-C or `duration`; exit 3 without ffmpeg.
pub fn run(global: &Global, duration: Option<Duration>) -> Result<Exit, Error> {
    let ffmpeg = match &global.config {
        // Keep it simple: from a given config only `paths.ffmpeg` matters.
        Some(_) => Settings::load(global)?.paths.ffmpeg,
        None => PathBuf::from("ffmpeg"),
    };
    let ffmpeg = crate::cmd::start::check_ffmpeg(&ffmpeg)?;
    let root = TempRoot::create()?;
    let tones = pick_ports()?;
    let settings = settings(root.path(), ffmpeg, &tones);
    write_status_config(&settings, root.path());
    say(&format!(
        "demo: state and logs in {}",
        root.path().display()
    ));
    say(&format!(
        "demo: in another terminal: mediamtx-stream-manager -c {} status",
        root.path().join("demo.toml").display()
    ));

    let lock = InstanceLock::acquire(&settings.paths.state_dir)?;
    let mut supervisor = Supervisor::new(
        settings.clone(),
        Box::new(DemoSource {
            tones: tones.clone(),
        }),
    );
    // Signal handling first: a Ctrl-C from here on is a graceful stop.
    supervisor.prepare()?;
    // The status page on a free loopback port (`metrics.listen = 127.0.0.1:0`).
    if let Some(addr) =
        crate::metrics_out::serve(&settings, supervisor.registry(), supervisor.info())?
    {
        say(&format!(
            "demo: status page (live level meters) at http://{addr}/"
        ));
    }
    let mut receivers = Receivers::start(&settings, &tones);
    receivers.wait_listening(LISTEN_WAIT);
    supervisor.launch();

    let done = Arc::new(AtomicBool::new(false));
    let show = Show {
        registry: supervisor.registry(),
        info: supervisor.info(),
        stop: supervisor.stop_handle(),
        victim: tones[0].name.clone(),
        duration,
        done: done.clone(),
        tty: std::io::stdout().is_terminal(),
    };
    let printer = std::thread::Builder::new()
        .name("demo-printer".into())
        .spawn(move || show.run())
        .map_err(|e| Error::general(format!("cannot start the demo printer thread: {e}")))?;

    supervisor.run();
    done.store(true, Ordering::SeqCst);
    let _ = printer.join();
    receivers.stop();
    drop(lock);

    let left = child::find_marked(&settings.paths.state_dir);
    if !left.is_empty() {
        let pids: Vec<String> = left
            .iter()
            .map(|m| format!("{} ({})", m.pid, m.stream))
            .collect();
        return Err(Error::general(format!(
            "demo: ffmpeg processes left running: {}",
            pids.join(", ")
        )));
    }
    say("demo: stopped; no ffmpeg process left running");
    drop(root);
    Ok(Exit::Ok)
}

/// Production defaults with the demo's temp paths and short, visible timings.
pub fn settings(root: &Path, ffmpeg: PathBuf, tones: &[Tone]) -> Settings {
    let mut s = Settings::default();
    s.paths.state_dir = root.to_path_buf();
    s.paths.log_dir = root.join("logs");
    s.paths.device_config = root.join("audio-devices.conf");
    s.paths.ffmpeg = ffmpeg;
    s.mediamtx.api = false;
    // Synthetic sources only: no device directory to watch for hot-plug.
    s.discovery.watch = false;
    if let Some(t) = tones.first() {
        s.mediamtx.rtsp_url = format!("rtsp://127.0.0.1:{}", t.port);
    }
    s.backoff.initial = Duration::from_secs(1);
    s.backoff.max = Duration::from_secs(5);
    s.backoff.failed_retry = Duration::from_secs(10);
    s.health.stall_timeout = Duration::from_secs(5);
    s.health.start_timeout = Duration::from_secs(10);
    s.stop.grace = Duration::from_secs(2);
    // The status page, on loopback only; the kernel picks the port.
    s.metrics.listen = Some("127.0.0.1:0".into());
    s.web.enabled = true;
    s
}

/// A sine at `freq_hz` whose loudness swells and fades (between about -12 and -35 dBFS
/// RMS) every `swell_s` seconds, so the level meters visibly move.
pub fn swelling_tone(freq_hz: u32, swell_s: u32) -> Input {
    Input::Lavfi {
        graph: format!(
            "aevalsrc=exprs=0.35*(0.51+0.49*sin(2*PI*t/{swell_s}))*sin(2*PI*{freq_hz}*t):s={SAMPLE_RATE}"
        ),
    }
}

/// The stream configs for the tones: lavfi input, Opus, one receiver URL each.
pub fn stream_configs(settings: &Settings, tones: &[Tone]) -> Vec<StreamConfig> {
    tones
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let input = InputSpec {
                input: swelling_tone(t.freq_hz, 6 + 3 * i as u32),
                sample_rate: SAMPLE_RATE,
                channels: 1,
                thread_queue: 512,
            };
            let out = Output {
                codec: Codec::Opus,
                bitrate: "64k".into(),
                url: t.url(),
            };
            // Levels as in production (`health.levels`): without the astats branch the
            // LEVEL column and the page's meters had nothing to show.
            let x = Extras {
                levels: settings.health.levels,
                ..Extras::default()
            };
            let args = argv::individual_with(&input, &out, &x);
            source::stream_config(
                settings,
                &t.name,
                ChildSpec {
                    program: settings.paths.ffmpeg.clone(),
                    args,
                    env: Vec::new(),
                },
                DeviceView::default(),
                format!("lavfi sine {} Hz", t.freq_hz),
                t.url(),
                vec![format!(
                    "synthetic {} Hz tone standing in for a USB microphone",
                    t.freq_hz
                )],
            )
        })
        .collect()
}

/// A fixed set of "devices" that are always present.
struct DemoSource {
    tones: Vec<Tone>,
}

impl StreamSource for DemoSource {
    fn scan(&mut self, settings: &Settings) -> Vec<StreamConfig> {
        stream_configs(settings, &self.tones)
    }
    fn reload(&mut self) -> Result<Option<Settings>, Error> {
        Ok(None)
    }
    fn mode_label(&self, _: &Settings) -> String {
        "demo (individual, synthetic tones)".into()
    }
}

/// The loopback receiver for one stream: accepts one publisher, decodes, discards.
pub fn receiver_args(url: &str) -> Vec<String> {
    [
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-rtsp_flags",
        "listen",
        "-i",
        url,
        "-f",
        "null",
        "-",
    ]
    .map(String::from)
    .to_vec()
}

/// True when /proc/net/tcp text shows a socket listening on `port`.
pub fn is_listening(proc_net_tcp: &str, port: u16) -> bool {
    let want = format!("{port:04X}");
    proc_net_tcp.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let local_port = f.get(1).and_then(|a| a.rsplit_once(':')).map(|(_, p)| p);
        local_port == Some(want.as_str()) && f.get(3) == Some(&"0A")
    })
}

/// Two distinct free loopback ports (both held while picking so they differ).
fn pick_ports() -> Result<Vec<Tone>, Error> {
    let bind = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr().map(|a| (l, a.port())))
            .map_err(|e| {
                Error::general(format!(
                    "cannot find a free port on 127.0.0.1: {}",
                    crate::util::io_reason(&e)
                ))
            })
    };
    let held: Vec<_> = TONES.iter().map(|_| bind()).collect::<Result<_, _>>()?;
    Ok(TONES
        .iter()
        .zip(held)
        .map(|((name, freq), (_, port))| Tone {
            name: name.to_string(),
            freq_hz: *freq,
            port,
        })
        .collect())
}

/// A config file pointing at the demo's state dir, so `status`/`monitor` can watch it.
fn write_status_config(settings: &Settings, root: &Path) {
    let q = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
    let text = format!(
        "# Written by `mediamtx-stream-manager demo`; removed with this directory.\n\
         [paths]\nstate_dir = {}\nlog_dir = {}\nffmpeg = {}\n\n[mediamtx]\napi = false\n",
        q(&settings.paths.state_dir),
        q(&settings.paths.log_dir),
        q(&settings.paths.ffmpeg)
    );
    let _ = std::fs::write(root.join("demo.toml"), text);
}

/// Print one line; a closed stdout must not panic the supervisor (SIGPIPE is ignored).
fn say(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// The demo's private directory: removed on drop unless `KEEP_ENV` is set.
struct TempRoot {
    path: PathBuf,
}

impl TempRoot {
    fn create() -> Result<TempRoot, Error> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "mediamtx-stream-manager-demo.{}.{nanos:09}",
            std::process::id()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| {
                Error::general(format!(
                    "cannot create demo directory {}: {}",
                    path.display(),
                    crate::util::io_reason(&e)
                ))
            })?;
        Ok(TempRoot { path })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        if std::env::var_os(KEEP_ENV).is_some() {
            say(&format!(
                "demo: logs kept in {}",
                self.path.join("logs").display()
            ));
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
            say(&format!(
                "demo: removed {} (set {KEEP_ENV}=1 to keep the logs)",
                self.path.display()
            ));
        }
    }
}

/// One receiver's current child, and whether we are shutting down.
#[derive(Default)]
struct Slot {
    pid: Option<u32>,
    stopping: bool,
}

/// The loopback receivers, each respawned by its own thread whenever it exits (a
/// listen-mode receiver ends when its publisher disconnects; the next publisher must
/// find a listener again). Killed by process group on `stop` or drop, always.
struct Receivers {
    slots: Vec<(u16, Arc<Mutex<Slot>>)>,
    threads: Vec<JoinHandle<()>>,
}

impl Receivers {
    fn start(settings: &Settings, tones: &[Tone]) -> Receivers {
        let mut r = Receivers {
            slots: Vec::new(),
            threads: Vec::new(),
        };
        for t in tones {
            let slot = Arc::new(Mutex::new(Slot::default()));
            let program = settings.paths.ffmpeg.clone();
            let state_dir = settings.paths.state_dir.clone();
            let log = settings
                .paths
                .log_dir
                .join(format!("{}-receiver.log", t.name));
            let (url, slot2) = (t.url(), slot.clone());
            let thread = std::thread::Builder::new()
                .name(format!(
                    "rx-{}",
                    t.name.chars().take(12).collect::<String>()
                ))
                .spawn(move || respawn_loop(&program, &url, &state_dir, &log, &slot2));
            match thread {
                Ok(h) => r.threads.push(h),
                Err(e) => log::error!("{}: cannot start receiver thread: {e}", t.name),
            }
            r.slots.push((t.port, slot));
        }
        r
    }

    /// Wait (bounded) until every receiver listens, so the first publish succeeds.
    fn wait_listening(&self, limit: Duration) {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
            if self.slots.iter().all(|(port, _)| is_listening(&tcp, *port)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        log::warn!(
            "demo: receivers not listening after {}; starting anyway",
            fmt_duration(limit)
        );
    }

    fn stop(&mut self) {
        for (_, slot) in &self.slots {
            let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
            s.stopping = true;
            if let Some(pid) = s.pid {
                child::signal_group(pid, Signal::SIGKILL);
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        self.stop();
    }
}

fn respawn_loop(program: &Path, url: &str, state_dir: &Path, log: &Path, slot: &Mutex<Slot>) {
    loop {
        let spawned = {
            // Spawn under the lock so `stop` never misses a child started concurrently.
            let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
            if s.stopping {
                return;
            }
            let c = spawn_receiver(program, url, state_dir, log);
            s.pid = c.as_ref().ok().map(|c| c.id());
            c
        };
        match spawned {
            Ok(mut c) => {
                let _ = c.wait();
            }
            Err(e) => log::error!(
                "demo: cannot start receiver for {url}: {}",
                crate::util::io_reason(&e)
            ),
        }
        slot.lock().unwrap_or_else(|e| e.into_inner()).pid = None;
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Own process group, killed with the spawning thread, tagged with the demo's state dir
/// (`MARKER_STATE` only: it is no stream, so `force-stop` and `monitor` ignore it).
fn spawn_receiver(
    program: &Path,
    url: &str,
    state_dir: &Path,
    log: &Path,
) -> std::io::Result<std::process::Child> {
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut cmd = Command::new(program);
    cmd.args(receiver_args(url))
        .env(child::MARKER_STATE, state_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .process_group(0);
    let parent = std::process::id() as i32;
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if nix::unistd::getppid().as_raw() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Where the recovery show stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    Before,
    Killed { pid: u32 },
    Recovered,
}

/// What to do next, given the victim stream's status and whether the kill is due.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    Stay,
    Kill(u32),
    Recovered(u32),
}

/// Kill a running child once; report when a different child is running again.
pub fn advance(phase: Phase, victim: Option<&StreamStatus>, kill_due: bool) -> Step {
    let running_pid = victim.filter(|s| s.state == "running").and_then(|s| s.pid);
    match (phase, running_pid) {
        (Phase::Before, Some(pid)) if kill_due => Step::Kill(pid),
        (Phase::Killed { pid }, Some(now)) if now != pid => Step::Recovered(now),
        _ => Step::Stay,
    }
}

/// The printer thread: status table every `REFRESH`, the kill, the recovery, the end.
struct Show {
    registry: sup::Registry,
    info: Arc<sup::Info>,
    stop: sup::StopHandle,
    victim: String,
    duration: Option<Duration>,
    done: Arc<AtomicBool>,
    tty: bool,
}

impl Show {
    fn run(self) {
        let started = Instant::now();
        let kill_at = self.duration.map_or(KILL_AFTER, |d| KILL_AFTER.min(d / 2));
        let mut phase = Phase::Before;
        let mut events: Vec<String> = Vec::new();
        let mut next_draw = started;
        let mut stop_sent = false;
        while !self.done.load(Ordering::SeqCst) {
            let now = Instant::now();
            let snap = sup::snapshot(&self.registry, &self.info);
            let victim = snap.streams.iter().find(|s| s.name == self.victim);
            let event = match advance(phase, victim, now.duration_since(started) >= kill_at) {
                Step::Stay => None,
                Step::Kill(pid) => {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        Signal::SIGKILL,
                    );
                    phase = Phase::Killed { pid };
                    Some(format!(
                        "demo: killed ffmpeg pid {pid} of {} to show recovery",
                        self.victim
                    ))
                }
                Step::Recovered(pid) => {
                    phase = Phase::Recovered;
                    Some(format!("demo: {} recovered (new pid {pid})", self.victim))
                }
            };
            if let Some(e) = event {
                say(&e);
                events.push(e);
            }
            if now >= next_draw {
                self.draw(&crate::status::render(&snap), &events, started);
                next_draw = now + REFRESH;
            }
            if let Some(d) = self.duration {
                if !stop_sent && now.duration_since(started) >= d {
                    say(&format!("demo: {} passed, stopping", fmt_duration(d)));
                    self.stop.stop("demo finished");
                    stop_sent = true;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn draw(&self, table: &str, events: &[String], started: Instant) {
        let mut out = String::new();
        if self.tty {
            // Redraw in place; the events are repeated below so the clear does not lose them.
            out.push_str("\x1b[2J\x1b[H");
        }
        let until = match self.duration {
            Some(d) => format!("stops by itself after {}", fmt_duration(d)),
            None => "Ctrl-C stops it".into(),
        };
        out.push_str(&format!(
            "demo: {}s in, {until}; synthetic tones -> loopback RTSP receivers\n\n",
            started.elapsed().as_secs()
        ));
        out.push_str(table);
        if self.tty {
            for e in events {
                out.push_str(e);
                out.push('\n');
            }
        }
        let _ = writeln!(std::io::stdout().lock(), "{out}");
    }
}

#[cfg(test)]
mod tests;
