//! A real RTSP receiver for tests: `ffmpeg -rtsp_flags listen` on a free loopback port
//! that decodes what one publisher sends into a WAV file, then measures it.
//! Also a process-group guard so nothing a test starts outlives it.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A child in its own process group, SIGKILLed (whole group) on drop, and also
/// when the spawning thread dies (PR_SET_PDEATHSIG) so a killed test leaks nothing.
pub struct Guard {
    pub child: Child,
}

impl Guard {
    pub fn spawn(mut cmd: Command) -> Guard {
        cmd.process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
        Guard { child }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Wait for exit at most `limit`; `None` if still running.
    pub fn wait_for(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // The group id is the child's pid (process_group(0)); never kill by name.
        unsafe {
            libc::kill(-self.pid(), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1 (the kernel picks; we release it for ffmpeg). Never the
/// same port twice in one test process: the kernel may hand a just-released port to the
/// next caller before the first receiver has bound it.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local addr").port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Whether something LISTENs on 127.0.0.1:`port`, read from /proc/net/tcp so
/// the check does not consume the receiver's single accept.
pub fn is_listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .map(|t| {
            t.lines().skip(1).any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[1] == want && f[3] == "0A"
            })
        })
        .unwrap_or(false)
}

/// What arrived at the receiver, measured from the decoded WAV.
#[derive(Debug, Clone)]
pub struct Audio {
    /// Codec of the incoming RTSP stream as ffmpeg names it (`opus`, `aac`, `mp3`, `pcm_s16be`).
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u32,
    pub frames: u64,
    /// RMS level of all samples in dBFS (a 0.125 sine is about -21 dB; silence is -inf).
    pub mean_db: f64,
    /// RMS level of each channel in dBFS.
    pub channel_db: Vec<f64>,
}

impl Audio {
    pub fn seconds(&self) -> f64 {
        self.frames as f64 / self.sample_rate.max(1) as f64
    }
}

pub struct Receiver {
    guard: Guard,
    port: u16,
    name: String,
    wav: PathBuf,
    log: PathBuf,
}

impl Receiver {
    /// Listen for one publisher on a free port and decode 2 s of what it sends.
    pub fn start(dir: &Path, name: &str) -> Receiver {
        Receiver::start_for(dir, name, 2.0)
    }

    /// Like `start`, decoding `secs` seconds. Files go under `dir` (the test's tempdir).
    pub fn start_for(dir: &Path, name: &str, secs: f64) -> Receiver {
        Receiver::start_on(dir, name, secs, free_port())
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/{}", self.port, self.name)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Bytes of decoded audio written so far (the WAV grows as audio arrives).
    pub fn received_bytes(&self) -> u64 {
        std::fs::metadata(&self.wav)
            .map(|m| m.len().saturating_sub(78))
            .unwrap_or(0)
    }

    /// The receiver's own log (ffmpeg stderr at info level).
    pub fn log(&self) -> String {
        read(&self.log)
    }

    /// Wait (bounded) until the receiver has decoded its seconds, then measure them.
    /// Panics with the receiver's log when nothing usable arrived.
    pub fn wait_audio(&mut self, limit: Duration) -> Audio {
        match self.guard.wait_for(limit) {
            Some(st) if st.success() => {}
            Some(st) => panic!("receiver failed ({st}): {}", self.log()),
            None => panic!("receiver still waiting after {limit:?}: {}", self.log()),
        }
        let bytes = std::fs::read(&self.wav).unwrap_or_default();
        let mut a = measure_wav(&bytes)
            .unwrap_or_else(|| panic!("no decodable WAV from receiver: {}", self.log()));
        a.codec = incoming_codec(&self.log()).unwrap_or_default();
        a
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// `Stream #0:0: Audio: opus, 48000 Hz, ...` of the input section → `opus`.
fn incoming_codec(log: &str) -> Option<String> {
    let l = log.lines().find(|l| l.contains("Stream #0:0: Audio: "))?;
    let rest = l.split("Audio: ").nth(1)?;
    Some(rest.split([',', ' ']).next()?.to_string())
}

/// Parse a 16-bit PCM WAV (plain or extensible) and measure RMS per channel.
pub fn measure_wav(b: &[u8]) -> Option<Audio> {
    if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        return None;
    }
    let u16at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let u32at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let (mut pos, mut fmt, mut data) = (12usize, None, None);
    while pos + 8 <= b.len() {
        let id = &b[pos..pos + 4];
        let size = u32at(pos + 4) as usize;
        let body = pos + 8;
        if id == b"fmt " && body + 16 <= b.len() {
            fmt = Some((u16at(body + 2) as u32, u32at(body + 4), u16at(body + 14)));
        } else if id == b"data" {
            data = Some(&b[body..b.len().min(body.saturating_add(size))]);
            break;
        }
        pos = body.saturating_add(size + (size & 1));
    }
    let (channels, sample_rate, bits) = fmt?;
    let data = data?;
    if bits != 16 || channels == 0 {
        return None;
    }
    let n = channels as usize;
    let mut sums = vec![0f64; n];
    let samples: Vec<i16> = data
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    let frames = (samples.len() / n) as u64;
    for (i, s) in samples.iter().enumerate() {
        let v = *s as f64 / 32768.0;
        sums[i % n] += v * v;
    }
    let db = |sum: f64, count: f64| 10.0 * (sum / count.max(1.0)).log10();
    let channel_db = sums.iter().map(|s| db(*s, frames as f64)).collect();
    Some(Audio {
        codec: String::new(),
        sample_rate,
        channels,
        frames,
        mean_db: db(sums.iter().sum(), samples.len() as f64),
        channel_db,
    })
}

/// Lines of a child's pipe collected by a thread, for asserting on while it runs.
pub type Lines = Arc<Mutex<Vec<String>>>;

pub fn collect_lines<R: std::io::Read + Send + 'static>(r: R) -> Lines {
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines().map_while(Result::ok) {
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(l);
        }
    });
    lines
}

pub fn snapshot(lines: &Lines) -> Vec<String> {
    lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// A `type file` ALSA capture PCM named `name` replaying a 30 s sine (longer than any test:
/// past its end a `type file` PCM captures noise) made by ffmpeg,
/// and `quiet` replaying 30 s of digital silence. (`type null` is no silent mic: with
/// alsa-lib 1.2.8 it captures a constant at about -3.7 dBFS.)
pub fn virtual_mic(dir: &Path, name: &str, rate: u32, channels: u32) -> PathBuf {
    let raw = dir.join(format!("{name}.raw"));
    let st = std::process::Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
        ])
        .arg("-i")
        .arg(format!("sine=frequency=440:sample_rate={rate}"))
        .args([
            "-ac",
            &channels.to_string(),
            "-t",
            "120",
            "-f",
            "s16le",
            "-y",
        ])
        .arg(&raw)
        .status()
        .expect("run ffmpeg");
    assert!(st.success(), "could not make the tone file");
    let zeros = dir.join("quiet.raw");
    std::fs::write(&zeros, vec![0u8; (rate * channels * 2 * 30) as usize]).expect("zeros");
    let pcm = |n: &str, file: &Path| {
        format!(
            "pcm.{n} {{\n  type file\n  slave.pcm \"null\"\n  file \"/dev/null\"\n  \
             infile \"{}\"\n  format \"raw\"\n}}\n",
            file.display()
        )
    };
    let conf = dir.join("asound.conf");
    let text = pcm(name, &raw) + &pcm("quiet", &zeros);
    std::fs::write(&conf, text).expect("write asound.conf");
    conf
}

impl Receiver {
    /// Like `start_for`, on a port the caller chose.
    pub fn start_on(dir: &Path, name: &str, secs: f64, port: u16) -> Receiver {
        super::require_ffmpeg();
        std::fs::create_dir_all(dir).expect("receiver dir");
        let wav = dir.join(format!("{name}-received.wav"));
        let log = dir.join(format!("{name}-receiver.log"));
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-nostdin", "-hide_banner", "-loglevel", "info", "-nostats"])
            .args(["-rtsp_flags", "listen", "-listen_timeout", "30"])
            .arg("-i")
            .arg(format!("rtsp://127.0.0.1:{port}/{name}"))
            .args([
                "-t",
                &secs.to_string(),
                "-c:a",
                "pcm_s16le",
                "-f",
                "wav",
                "-y",
            ])
            .arg(&wav)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("receiver log"));
        let mut guard = Guard::spawn(cmd);
        let end = Instant::now() + Duration::from_secs(5);
        while !is_listening(port) {
            if let Ok(Some(st)) = guard.child.try_wait() {
                panic!("receiver exited early ({st}): {}", read(&log));
            }
            assert!(
                Instant::now() < end,
                "receiver did not listen on {port} within 5 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Receiver {
            guard,
            port,
            name: name.to_string(),
            wav,
            log,
        }
    }
}

/// Like `virtual_mic`, but the tone is a 440 Hz sine of the given peak amplitude
/// (0.1 = -20 dBFS peak, -23.0 dBFS RMS).
pub fn virtual_mic_tone(dir: &Path, name: &str, rate: u32, channels: u32, amp: f64) -> PathBuf {
    let conf = virtual_mic(dir, name, rate, channels);
    let raw = dir.join(format!("{name}.raw"));
    let st = std::process::Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
        ])
        .arg("-i")
        // One expression per channel: `-ac` would upmix mono at -3 dB.
        .arg(format!(
            "aevalsrc=exprs={}:s={rate}",
            vec![format!("{amp}*sin(2*PI*440*t)"); channels.max(1) as usize].join("|")
        ))
        .args(["-t", "120", "-f", "s16le", "-y"])
        .arg(&raw)
        .status()
        .expect("run ffmpeg");
    assert!(st.success(), "could not make the tone file");
    conf
}

/// Decode any audio file to 16-bit WAV with ffmpeg and measure it.
pub fn decode(path: &Path) -> Option<Audio> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-i"])
        .arg(path)
        .args(["-c:a", "pcm_s16le", "-f", "wav", "-"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    measure_wav(&out.stdout)
}
