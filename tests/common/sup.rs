//! Harness for supervisor tests: a temp dir with a fake host, a TOML config, the fake
//! ffmpeg, and helpers to run the real binary against it. Drop kills whatever the test
//! started: the supervisor by pid, and any process carrying this test's state-dir marker.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::fake_host::FakeHost;

pub fn fake_ffmpeg() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-ffmpeg")
}

pub struct Sup {
    pub dir: tempfile::TempDir,
    pub host: FakeHost,
    pub cfg: PathBuf,
    pub foreground: Option<Child>,
    /// Extra TOML appended to the generated config.
    pub extra: String,
    pub env: Vec<(String, String)>,
    /// The ffmpeg the supervisor runs (default: the fake).
    pub ffmpeg: PathBuf,
    /// `[mediamtx] rtsp_url` (default: a port nobody listens on).
    pub rtsp_url: String,
    /// `(table, key, value)` set over the generated config (see `set`).
    pub overrides: Vec<(String, String, String)>,
}

impl Sup {
    /// A host with no devices; call `usb` to add some, `write_config` to (re)write the TOML.
    pub fn new() -> Sup {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = FakeHost::new(dir.path());
        let cfg = dir.path().join("manager.toml");
        Sup {
            dir,
            host,
            cfg,
            foreground: None,
            extra: String::new(),
            env: Vec::new(),
            ffmpeg: fake_ffmpeg(),
            rtsp_url: "rtsp://127.0.0.1:1".into(),
            overrides: Vec::new(),
        }
    }

    /// The setup most tests share: these USB mics `(card, id)` (each streams as its id),
    /// the fake ffmpeg in `mode`, the config written. Tweak with `set`/`extra`, then
    /// `write_config` again.
    pub fn mics(cards: &[(u32, &str)], mode: &str) -> Sup {
        let mut s = Sup::new();
        for (card, id) in cards {
            s.usb(*card, id);
        }
        s.set_mode(mode);
        s.write_config();
        s
    }

    /// `start --foreground`, then wait until `n` streams are listed and all run healthy.
    pub fn start_healthy(&mut self, n: usize) {
        self.start_foreground();
        self.wait_for(
            &format!("{n} stream(s) running and healthy"),
            Duration::from_secs(10),
            |s| {
                s.status().is_some_and(|v| {
                    v["streams"].as_array().is_some_and(|a| {
                        a.len() == n
                            && a.iter()
                                .all(|x| x["state"] == "running" && x["health"] == "healthy")
                    })
                })
            },
        );
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }
    pub fn mode_file(&self) -> PathBuf {
        self.dir.path().join("mode")
    }

    /// Set the fake ffmpeg's behaviour for its next start.
    pub fn set_mode(&self, mode: &str) {
        std::fs::write(self.mode_file(), mode).expect("write mode file");
    }

    /// A USB card whose automatic stream name is its (udev-style) lowercase card id.
    pub fn usb(&mut self, card: u32, id: &str) {
        self.host.add_usb_card(
            card,
            id,
            Some(&format!("usb-Test_{id}-00")),
            Some(&format!("pci-0000:01:00.0-usb-0:1.{card}:1.0")),
        );
    }

    /// Write the config: fake host paths, fake ffmpeg, scaled-down durations, then `extra`.
    pub fn write_config(&self) {
        let d = self.dir.path();
        let text = format!(
            "[paths]\n{}state_dir = {:?}\nlog_dir = {:?}\ndevice_config = {:?}\nffmpeg = {:?}\nnames_file = {:?}\n\
             [mediamtx]\napi = false\nrtsp_url = {:?}\n\
             [discovery]\nrescan = \"100ms\"\n\
             [startup]\ndevice_wait = \"1s\"\nreport_timeout = \"5s\"\n\
             [backoff]\ninitial = \"100ms\"\nmax = \"400ms\"\nstable_after = \"1500ms\"\nmax_failures = 50\nfailed_retry = \"1s\"\n\
             [health]\nstall_timeout = \"1s\"\nstart_timeout = \"2s\"\n\
             [stop]\ngrace = \"1s\"\n\
             [monitor]\ngrace = \"1s\"\n{}",
            self.host.toml_paths(),
            self.state_dir().display().to_string(),
            self.log_dir().display().to_string(),
            d.join("audio-devices.conf").display().to_string(),
            self.ffmpeg.display().to_string(),
            self.names_file().display().to_string(),
            self.rtsp_url,
            self.extra
        );
        let text = apply_overrides(&text, &self.overrides);
        std::fs::write(&self.cfg, text).expect("write config");
    }

    /// Set `key = value` (raw TOML value) in `[table]`, replacing the generated key if any,
    /// so a test can change e.g. `[mediamtx] api` without a duplicate-table error.
    pub fn set(&mut self, table: &str, key: &str, value: &str) -> &mut Sup {
        self.overrides
            .push((table.to_string(), key.to_string(), value.to_string()));
        self
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(super::bin());
        c.args(args).arg("-c").arg(&self.cfg);
        c.env("FAKE_FFMPEG_MODE_FILE", self.mode_file());
        c.env_remove("NOTIFY_SOCKET");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run binary")
    }

    /// Start `start --foreground` as a child of the test.
    pub fn start_foreground(&mut self) {
        let child = self
            .cmd(&["start", "--foreground"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(self.dir.path().join("supervisor.err")).expect("stderr file"),
            ))
            .spawn()
            .expect("spawn supervisor");
        self.foreground = Some(child);
        self.wait_for("supervisor answering", Duration::from_secs(10), |s| {
            s.status().is_some()
        });
    }

    pub fn supervisor_stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("supervisor.err")).unwrap_or_default()
    }

    /// `status --json`, parsed; None when the supervisor is not answering.
    pub fn status(&self) -> Option<serde_json::Value> {
        let out = self.run(&["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["supervisor"]["running"].as_bool().filter(|r| *r)?;
        v["supervisor"]["uptime_s"].as_u64()?;
        Some(v)
    }

    pub fn stream(&self, name: &str) -> Option<serde_json::Value> {
        self.status()?["streams"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
    }

    /// Poll `cond` every 50 ms until true or panic after `limit` with the last status.
    pub fn wait_for(&self, what: &str, limit: Duration, cond: impl Fn(&Sup) -> bool) {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if cond(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out after {limit:?} waiting for {what}\nstatus: {}\nsupervisor stderr:\n{}",
            self.status()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "(none)".into()),
            self.supervisor_stderr()
        );
    }

    /// Processes carrying this test's marker (state dir), as (pid, stream).
    pub fn marked(&self) -> Vec<(i32, String)> {
        marked(&self.state_dir())
    }

    pub fn supervisor_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.state_dir().join("supervisor.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// `[paths] names_file`: in the test's temp dir, never /var/lib.
    pub fn names_file(&self) -> PathBuf {
        self.dir.path().join("var/names.json")
    }
}

/// Put each `(table, key, value)` into the TOML text: replace the key's line inside that
/// table, else add it right after the table header, else append the table.
pub fn apply_overrides(text: &str, overrides: &[(String, String, String)]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for (table, key, value) in overrides {
        let header = format!("[{table}]");
        let line = format!("{key} = {value}");
        let Some(h) = lines.iter().position(|l| l.trim() == header) else {
            lines.push(header);
            lines.push(line);
            continue;
        };
        let end = lines[h + 1..]
            .iter()
            .position(|l| l.trim_start().starts_with('['))
            .map_or(lines.len(), |i| h + 1 + i);
        let is_key = |l: &String| l.split('=').next().is_some_and(|k| k.trim() == key);
        match lines[h + 1..end].iter().position(is_key) {
            Some(i) => lines[h + 1 + i] = line,
            None => lines.insert(h + 1, line),
        }
    }
    lines.join("\n") + "\n"
}

/// Scan /proc for processes whose environment names `state_dir` as theirs.
pub fn marked(state_dir: &Path) -> Vec<(i32, String)> {
    let want = format!("MEDIAMTX_STREAM_MANAGER_STATE={}", state_dir.display());
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let vars: Vec<String> = env
            .split(|b| *b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        if !vars.contains(&want) {
            continue;
        }
        if is_zombie(pid) {
            continue;
        }
        let stream = vars
            .iter()
            .find_map(|v| {
                v.strip_prefix("MEDIAMTX_STREAM_MANAGER_STREAM=")
                    .map(str::to_string)
            })
            .unwrap_or_default();
        out.push((pid, stream));
    }
    out
}

pub fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .unwrap_or(false)
}

pub fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

pub fn kill(pid: i32, sig: i32) {
    // SAFETY: plain kill(2).
    unsafe {
        libc::kill(pid, sig);
    }
}

impl Drop for Sup {
    fn drop(&mut self) {
        if let Some(mut c) = self.foreground.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(pid) = self.supervisor_pid() {
            if alive(pid) {
                kill(pid, libc::SIGKILL);
            }
        }
        for _ in 0..3 {
            for (pid, _) in marked(&self.state_dir()) {
                kill(pid, libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Sup {
    /// `start --foreground` run under `wrapper` (e.g. `setpriv ... --`, `strace ... --`),
    /// with this harness's environment and stderr file, as its foreground child (so a
    /// failing test still kills it).
    pub fn start_wrapped(&mut self, mut wrapper: Command) {
        let inner = self.cmd(&["start", "--foreground"]);
        wrapper
            .arg(inner.get_program())
            .args(inner.get_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(self.dir.path().join("supervisor.err")).expect("stderr file"),
            );
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => wrapper.env(k, v),
                None => wrapper.env_remove(k),
            };
        }
        self.foreground = Some(wrapper.spawn().expect("spawn wrapped supervisor"));
    }

    /// One real-ffmpeg stream "garden" on the virtual ALSA tone mic of `asound_conf`,
    /// publishing to `rtsp_port`, recording 1 s segments into `rec_dir`, with the MediaMTX
    /// API at `api_url` and metrics in `textfile` and on `127.0.0.1:<listen_port>`.
    pub fn real_metrics_box(
        &mut self,
        asound_conf: &Path,
        rtsp_port: u16,
        api_url: &str,
        listen_port: u16,
        textfile: &Path,
        rec_dir: &Path,
    ) {
        self.usb(1, "garden");
        self.ffmpeg = "ffmpeg".into();
        self.rtsp_url = format!("rtsp://127.0.0.1:{rtsp_port}");
        self.extra = format!(
            "[devices.garden]\nalsa_device = \"tonemic\"\n\
             [recording]\nenabled = true\ndir = {:?}\nsegment = \"1s\"\n",
            rec_dir.display().to_string()
        );
        self.env.push((
            "ALSA_CONFIG_PATH".into(),
            format!("/usr/share/alsa/alsa.conf:{}", asound_conf.display()),
        ));
        self.set("health", "start_timeout", "\"10s\"")
            .set("health", "stall_timeout", "\"3s\"")
            .set("mediamtx", "api", "true")
            .set("mediamtx", "api_url", &format!("{api_url:?}"))
            .set("mediamtx", "poll", "\"200ms\"")
            .set("startup", "mediamtx_wait", "\"2s\"")
            .set(
                "metrics",
                "textfile",
                &format!("{:?}", textfile.display().to_string()),
            )
            .set("metrics", "listen", &format!("\"127.0.0.1:{listen_port}\""));
        self.write_config();
    }
}
