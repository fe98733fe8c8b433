//! Issue 14 (h): the recording disk fails dirty and comes back, with real ffmpeg 5.1, the
//! virtual ALSA microphone and real RTSP receivers (docs/recording.md "Disk full,
//! directory not writable"). The recording directory is a small tmpfs mounted in the
//! test's temp dir (root only; elsewhere a SKIPPED line, and a failure under `CI=true`).
//!
//! The stream is pcm (aiff segments of 1 s ≈ 188 KiB, and 1.5 Mbit/s of RTSP) so a 3 MiB
//! filesystem fills in seconds.

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::rtsp::{self, Guard};
use common::sup::Sup;

/// Bytes per second of the received audio (s16le, 48 kHz, stereo).
const PCM_RATE: f64 = 48000.0 * 4.0;

/// A tmpfs mounted on a directory of the test; unmounted on drop (lazily if ffmpeg still
/// holds a file there), so a failing test leaves no mount behind.
struct Tmpfs {
    at: PathBuf,
    mounted: bool,
}

impl Tmpfs {
    /// Mount `size` (e.g. "3m") at `at`. `None` (after a SKIPPED line) when mounting is not
    /// permitted here; under `CI=true` that is a failure.
    fn mount(test: &str, at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).expect("mount point");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(at)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs {
                at: at.to_path_buf(),
                mounted: true,
            }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                if common::in_ci() {
                    panic!("{test}: cannot mount a tmpfs (run the tests as root): {why}");
                }
                eprintln!("SKIPPED {test}: cannot mount a tmpfs (needs root): {why}");
                None
            }
        }
    }

    /// Unmount now (lazily: ffmpeg may hold a segment open there, as on a real unmount).
    fn unmount(&mut self) {
        if self.mounted {
            let st = Command::new("umount").arg("-l").arg(&self.at).status();
            assert!(st.is_ok_and(|s| s.success()), "umount -l {:?}", self.at);
            self.mounted = false;
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if self.mounted {
            let plain = Command::new("umount")
                .arg(&self.at)
                .stderr(Stdio::null())
                .status();
            if !plain.is_ok_and(|s| s.success()) {
                let _ = Command::new("umount").arg("-l").arg(&self.at).status();
            }
        }
    }
}

/// The RTSP server the supervisor publishes to: every connection that sends a byte gets a
/// fresh listen-mode ffmpeg receiver (they take one publisher each) writing raw PCM to its
/// own file, so a restarted child is received again and every byte of audio is counted.
struct Relay {
    port: u16,
    stop: Arc<AtomicBool>,
    /// (receiver, its raw output), in order of connection.
    rx: Arc<Mutex<Vec<(Guard, PathBuf)>>>,
}

impl Relay {
    fn start(dir: &Path) -> Relay {
        std::fs::create_dir_all(dir).expect("relay dir");
        let port = rtsp::free_port();
        let l = TcpListener::bind(("127.0.0.1", port)).expect("bind relay");
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let rx: Arc<Mutex<Vec<(Guard, PathBuf)>>> = Arc::default();
        let (flag, list, dir) = (stop.clone(), rx.clone(), dir.to_path_buf());
        std::thread::spawn(move || {
            let mut n = 0;
            while !flag.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((c, _)) => {
                        n += 1;
                        let (list, dir) = (list.clone(), dir.clone());
                        std::thread::spawn(move || serve(c, n, &dir, list));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Relay { port, stop, rx }
    }

    /// Seconds of audio each receiver has written so far, in order of connection.
    fn received(&self) -> Vec<f64> {
        let list = self.rx.lock().unwrap_or_else(|e| e.into_inner());
        list.iter()
            .map(|(_, p)| std::fs::metadata(p).map_or(0, |m| m.len()) as f64 / PCM_RATE)
            .collect()
    }

    fn newest(&self) -> (usize, f64) {
        let r = self.received();
        (r.len(), r.last().copied().unwrap_or(0.0))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The receivers' guards kill their process groups.
        self.rx.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

fn serve(mut c: TcpStream, n: usize, dir: &Path, list: Arc<Mutex<Vec<(Guard, PathBuf)>>>) {
    use std::io::Read;
    let _ = c.set_nonblocking(false);
    let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
    let mut first = [0u8; 4096];
    let len = match c.read(&mut first) {
        Ok(0) | Err(_) => return,
        Ok(len) => len,
    };
    let _ = c.set_read_timeout(None);
    let port = rtsp::free_port();
    let raw = dir.join(format!("received-{n}.raw"));
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "info", "-nostats"])
        .args(["-rtsp_flags", "listen", "-listen_timeout", "30"])
        .arg("-i")
        .arg(format!("rtsp://127.0.0.1:{port}/garden"))
        .args(["-f", "s16le", "-ac", "2", "-ar", "48000", "-y"])
        .arg(&raw)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(dir.join(format!("receiver-{n}.log"))).expect("receiver log"),
        );
    let guard = Guard::spawn(cmd);
    list.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((guard, raw));
    let end = Instant::now() + Duration::from_secs(10);
    while !rtsp::is_listening(port) {
        if Instant::now() > end {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Ok(mut u) = TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    if u.write_all(&first[..len]).is_err() {
        return;
    }
    let (mut c2, mut u2) = (c.try_clone().unwrap(), u.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut u2, &mut c2);
        let _ = c2.shutdown(std::net::Shutdown::Both);
    });
    let _ = std::io::copy(&mut c, &mut u);
    let _ = u.shutdown(std::net::Shutdown::Both);
}

/// One pcm stream recording 1 s aiff segments into `rec_dir`, publishing to `relay`.
fn setup(s: &mut Sup, rec_dir: &Path, relay_port: u16, min_free: &str) {
    s.usb(1, "garden");
    let conf = rtsp::virtual_mic(s.dir.path(), "fakemic1", 48000, 2);
    s.ffmpeg = "ffmpeg".into();
    s.rtsp_url = format!("rtsp://127.0.0.1:{relay_port}");
    s.extra = format!(
        "[devices.garden]\nalsa_device = \"fakemic1\"\ncodec = \"pcm\"\n\
         [recording]\nenabled = true\ndir = {:?}\nsegment = \"1s\"\nmin_free = {min_free:?}\n",
        rec_dir.display().to_string()
    );
    s.env.push((
        "ALSA_CONFIG_PATH".into(),
        format!("/usr/share/alsa/alsa.conf:{}", conf.display()),
    ));
    s.set("health", "start_timeout", "\"10s\"");
    s.set("health", "stall_timeout", "\"3s\"");
    // A just-started ffmpeg on a loaded test machine may sample at 100% CPU.
    s.set("monitor", "cpu_warn", "5000");
    s.set("monitor", "cpu_critical", "9000");
    s.write_config();
}

fn segments(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with("garden-") && n.ends_with(".aiff"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("stat")
        .args(["-f", "-c", "%a %S"])
        .arg(dir)
        .output()
        .expect("stat -f");
    let t = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = t
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    v[0] * v[1]
}

/// Write `bytes` of zeros to `path` (appending), stopping quietly at a full disk.
fn fill(path: &Path, bytes: u64) -> u64 {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("filler");
    let chunk = vec![0u8; 4096];
    let mut done = 0;
    while done < bytes {
        let n = chunk.len().min((bytes - done) as usize);
        if f.write_all(&chunk[..n]).is_err() {
            break;
        }
        done += n as u64;
    }
    let _ = f.sync_all();
    done
}

/// A thread that keeps the filesystem full: whatever space appears, the filler takes.
struct Grabber {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Grabber {
    fn start(path: &Path) -> Grabber {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, path) = (stop.clone(), path.to_path_buf());
        let thread = std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .expect("filler");
            let chunk = vec![0u8; 4096];
            while !flag.load(Ordering::SeqCst) {
                if f.write_all(&chunk).is_err() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        Grabber {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Grabber {
    fn drop(&mut self) {
        self.stop();
    }
}

fn rec(v: &serde_json::Value) -> &serde_json::Value {
    &v["recording"]
}

/// A finished segment holds about a second of the tone, as ffmpeg's own `volumedetect`
/// measures it (`n_samples` counts both channels of 48 kHz).
fn assert_tone(dir: &Path, name: &str) {
    let p = dir.join(name);
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-nostats", "-i"])
        .arg(&p)
        .args(["-af", "volumedetect", "-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    let field = |key: &str| -> Option<f64> {
        let rest = log.split(key).nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    };
    let (Some(samples), Some(mean_db)) = (field("n_samples: "), field("mean_volume: ")) else {
        panic!("{} does not decode: {log}", p.display());
    };
    let seconds = samples / (48000.0 * 2.0);
    // The tone is -24 dB RMS. On a starved box ffmpeg's `aresample=async` pads silence
    // for capture it fell behind on (seen: -31 dB), so "present" is above -40 dB;
    // digital silence is -91 dB here.
    assert!(
        seconds > 0.8 && seconds < 1.3 && mean_db > -40.0,
        "segment without its second of the tone: {name}: {seconds:.3}s at {mean_db} dB \
         (all: {:?})",
        segments(dir)
    );
}

/// (1) other files take the disk: the ring deletes its own oldest segments down to
/// `min_free` and the same ffmpeg keeps recording and publishing; (2) the disk is taken
/// entirely: own files gone, `recording stopped: No space left on device`, publishing goes
/// on; space back: recording resumes within 5 s (a fresh child, not a failure).
#[test]
fn full_disk_ring_makes_room_then_stops_and_resumes_when_space_is_back() {
    const TEST: &str = "full_disk_ring_makes_room_then_stops_and_resumes_when_space_is_back";
    common::require_ffmpeg();
    let mut s = Sup::new();
    let rec_dir = s.dir.path().join("rec");
    let seg_dir = rec_dir.join("garden");
    let relay = Relay::start(&s.dir.path().join("rx"));
    setup(&mut s, &rec_dir, relay.port, "640K");
    let Some(_fs) = Tmpfs::mount(TEST, &rec_dir, "3m") else {
        return;
    };
    // Files that are not this stream's segments: never touched.
    std::fs::create_dir_all(&seg_dir).unwrap();
    let foreign = seg_dir.join("garden-notes.txt");
    std::fs::write(&foreign, "keep me").unwrap();
    let filler = rec_dir.join("filler.bin");
    // Leave about 1.5 MiB: the floor (640K) is reached after ~4 segments.
    let free0 = free_bytes(&rec_dir);
    let filled = fill(&filler, free0.saturating_sub(1536 << 10));

    s.start_foreground();
    s.wait_for("recording and publishing", Duration::from_secs(20), |s| {
        s.stream("garden").is_some_and(|v| {
            v["state"] == "running"
                && v["publishing"] == true
                && rec(&v)["files"].as_u64() >= Some(1)
        })
    });
    let v = s.stream("garden").unwrap();
    let pid = v["pid"].as_u64();
    let failures = v["consecutive_failures"].as_u64();

    // (1) The ring makes room: watch 10 s of recording at the floor.
    let first_seen = segments(&seg_dir)[0].clone();
    let mut seen: Vec<String> = Vec::new();
    let (rx_n, rx_at_start) = relay.newest();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        let v = s.stream("garden").unwrap();
        assert_eq!(v["pid"].as_u64(), pid, "same ffmpeg while making room: {v}");
        assert_eq!(v["publishing"], true, "{v}");
        assert!(rec(&v)["error"].is_null(), "{v}");
        for n in segments(&seg_dir) {
            if !seen.contains(&n) {
                seen.push(n);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let now = segments(&seg_dir);
    for n in &now {
        if !seen.contains(n) {
            seen.push(n.clone());
        }
    }
    assert!(
        !now.contains(&first_seen),
        "oldest segment deleted: {now:?}"
    );
    // No gap: the same ffmpeg wrote all along with no leg failure (pid and error above).
    // Names are wall-clock seconds: on a starved box a segment can take a little longer
    // than its second of audio, so a name may skip a second.
    assert!(seen.len() >= 7, "a segment about every second: {seen:?}");
    assert!(now.len() >= 2, "the newest are kept: {now:?}");
    // Deleted oldest first: what is left is the newest of what was seen.
    assert_eq!(now[..], seen[seen.len() - now.len()..], "{seen:?}");
    let v = s.stream("garden").unwrap();
    let free = rec(&v)["free_bytes"].as_u64().expect("free_bytes");
    assert!(
        free >= (640 << 10) - (200 << 10),
        "kept near the floor: {v}"
    );
    assert_eq!(std::fs::metadata(&filler).unwrap().len(), filled);
    assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "keep me");
    // The ring may delete the oldest of these any moment: copy them off the tmpfs first,
    // skipping one that went in between (the newest finished ones stay for seconds).
    let kept = s.dir.path().join("kept");
    std::fs::create_dir_all(&kept).unwrap();
    let mut copied = 0;
    for n in &now[..now.len() - 1] {
        if std::fs::copy(seg_dir.join(n), kept.join(n)).is_ok() {
            assert_tone(&kept, n);
            copied += 1;
        }
    }
    assert!(copied >= 1, "no finished segment to check: {now:?}");
    let (rx_n2, rx_now) = relay.newest();
    assert_eq!(rx_n2, rx_n, "one RTSP connection throughout");
    assert!(
        rx_now - rx_at_start >= 8.5,
        "publishing uninterrupted: {:.2}s received in 10s",
        rx_now - rx_at_start
    );

    // (1b) The filler takes every free byte at once: ffmpeg's next write meets ENOSPC
    // (or, if a sweep comes first, the floor); either way the ring deletes its own oldest
    // segments and recording goes on (through a restore restart, not a failure).
    // Other files now hold all but what the ring frees: it keeps about one segment.
    let before = segments(&seg_dir);
    let filled = filled + fill(&filler, u64::MAX);
    let t = Instant::now();
    let new_seen = std::cell::RefCell::new(Vec::<String>::new());
    s.wait_for(
        "recording on after the disk filled",
        Duration::from_secs(15),
        |s| {
            let mut seen = new_seen.borrow_mut();
            for n in segments(&seg_dir) {
                if !before.contains(&n) && !seen.contains(&n) {
                    seen.push(n);
                }
            }
            s.stream("garden").is_some_and(|v| {
                v["state"] == "running" && rec(&v)["error"].is_null() && seen.len() >= 3
            })
        },
    );
    let v = s.stream("garden").unwrap();
    eprintln!(
        "disk filled at once: recording on after {:.2}s ({}; last gap {:?})",
        t.elapsed().as_secs_f64(),
        if v["pid"].as_u64() == pid {
            "same child".to_string()
        } else {
            format!("restored: {}", v["last_exit"]["reason"])
        },
        rec(&v)["last_gap_s"].as_f64()
    );
    assert_eq!(v["consecutive_failures"].as_u64(), failures, "{v}");
    assert!(
        !segments(&seg_dir).contains(&before[0]),
        "the oldest went first: {before:?} {:?}",
        segments(&seg_dir)
    );
    assert_eq!(std::fs::metadata(&filler).unwrap().len(), filled);
    assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "keep me");
    let pid = v["pid"].as_u64();

    // (2) The disk is taken entirely: the ring deletes all it may, then stops.
    let mut grab = Grabber::start(&filler);
    s.wait_for("recording stopped", Duration::from_secs(30), |s| {
        s.stream("garden").is_some_and(|v| {
            rec(&v)["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("recording stopped: No space left on device"))
        })
    });
    s.wait_for("own segments gone", Duration::from_secs(10), |_| {
        segments(&seg_dir).is_empty()
    });
    let (rx_n, rx_at_full) = relay.newest();
    std::thread::sleep(Duration::from_secs(3));
    let v = s.stream("garden").unwrap();
    assert_eq!(
        v["pid"].as_u64(),
        pid,
        "no restart while the disk is full: {v}"
    );
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["publishing"], true, "{v}");
    assert_eq!(v["health"], "degraded", "{v}");
    assert!(segments(&seg_dir).is_empty(), "{:?}", segments(&seg_dir));
    let (rx_n2, rx_now) = relay.newest();
    assert_eq!(rx_n2, rx_n, "publishing not interrupted");
    assert!(
        rx_now - rx_at_full >= 2.5,
        "publishing goes on: {rx_now} {rx_at_full}"
    );
    let text = String::from_utf8_lossy(&s.run(&["status"]).stdout).to_string();
    assert!(
        text.contains("ERROR: recording stopped: No space left on device"),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "keep me");

    // Space comes back: recording resumes within 5 s, through a restart not counted.
    grab.stop();
    std::fs::remove_file(&filler).unwrap();
    let back = Instant::now();
    s.wait_for("a new segment", Duration::from_secs(10), |_| {
        !segments(&seg_dir).is_empty()
    });
    let resumed = back.elapsed();
    eprintln!(
        "recording resumed {:.2}s after space came back",
        resumed.as_secs_f64()
    );
    assert!(resumed <= Duration::from_secs(5), "{resumed:?}");
    s.wait_for("recording again", Duration::from_secs(10), |s| {
        s.stream("garden").is_some_and(|v| {
            v["state"] == "running"
                && v["publishing"] == true
                && rec(&v)["error"].is_null()
                && rec(&v)["files"].as_u64() >= Some(1)
        })
    });
    let v = s.stream("garden").unwrap();
    assert_ne!(v["pid"].as_u64(), pid, "{v}");
    assert_eq!(v["consecutive_failures"].as_u64(), failures, "{v}");
    assert!(
        v["last_exit"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("recording restore")),
        "{v}"
    );
    let gap = rec(&v)["last_gap_s"].as_f64().expect("gap measured");
    eprintln!("publishing gap at the restore {gap:.3}s");
    assert!(gap < 2.0, "{v}");
    let now = segments(&seg_dir);
    assert_tone(&seg_dir, &now[0]);
    // The new child publishes again (a new RTSP connection, audio arriving).
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let (n, secs) = relay.newest();
        if n > rx_n && secs >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "publishing after the restore: {:?}",
            relay.received()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The recording filesystem is unmounted under a running stream (recording.dir lives on
/// it, so it vanishes): recording stops, is not moved onto the filesystem underneath, and
/// resumes once the disk is back. Before that, the stream's own directory is removed: it
/// is made again at once.
#[test]
fn recording_dir_removed_or_unmounted_resumes_when_back() {
    const TEST: &str = "recording_dir_removed_or_unmounted_resumes_when_back";
    common::require_ffmpeg();
    let mut s = Sup::new();
    let mnt = s.dir.path().join("mnt");
    let rec_dir = mnt.join("rec");
    let seg_dir = rec_dir.join("garden");
    let relay = Relay::start(&s.dir.path().join("rx"));
    setup(&mut s, &rec_dir, relay.port, "64K");
    let Some(mut fs) = Tmpfs::mount(TEST, &mnt, "16m") else {
        return;
    };
    s.start_foreground();
    s.wait_for("recording", Duration::from_secs(20), |s| {
        s.stream("garden")
            .is_some_and(|v| v["state"] == "running" && rec(&v)["files"].as_u64() >= Some(1))
    });
    let pid = s.stream("garden").unwrap()["pid"].as_u64();

    // The stream's directory removed: the next segment cannot open; made again at once.
    std::fs::remove_dir_all(&seg_dir).unwrap();
    let removed = Instant::now();
    s.wait_for("recording again after rm", Duration::from_secs(10), |s| {
        s.stream("garden").is_some_and(|v| {
            v["pid"].as_u64() != pid
                && v["state"] == "running"
                && rec(&v)["error"].is_null()
                && segments(&seg_dir).len() >= 2
        })
    });
    eprintln!(
        "directory removed: recording again {:.2}s later",
        removed.elapsed().as_secs_f64()
    );
    let v = s.stream("garden").unwrap();
    assert_eq!(v["consecutive_failures"], 0, "{v}");
    let pid = v["pid"].as_u64();

    // The disk unmounted: recording.dir is gone; it must not be made on the filesystem
    // underneath (the mount point's directory).
    fs.unmount();
    s.wait_for("recording stopped", Duration::from_secs(10), |s| {
        s.stream("garden").is_some_and(|v| {
            rec(&v)["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("recording stopped"))
        })
    });
    std::thread::sleep(Duration::from_secs(3));
    let v = s.stream("garden").unwrap();
    assert_eq!(
        v["pid"].as_u64(),
        pid,
        "no restart while the disk is away: {v}"
    );
    assert_eq!(v["publishing"], true, "{v}");
    assert!(
        !rec_dir.exists(),
        "recording.dir made on the wrong filesystem"
    );
    // A fresh child meanwhile (here `restart garden`) does not make it either.
    let out = s.run(&["restart", "garden"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    s.wait_for(
        "a fresh child, still waiting",
        Duration::from_secs(10),
        |s| {
            s.stream("garden").is_some_and(|v| {
                v["pid"].as_u64() != pid
                    && v["state"] == "running"
                    && v["publishing"] == true
                    && rec(&v)["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("is gone (disk unmounted?)"))
            })
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(!rec_dir.exists(), "recording.dir made by a fresh child");

    // The disk is back (a fresh tmpfs, with its recording directory).
    let _fs2 = Tmpfs::mount(TEST, &mnt, "16m").expect("remount");
    std::fs::create_dir_all(&rec_dir).unwrap();
    let back = Instant::now();
    s.wait_for("a new segment", Duration::from_secs(10), |_| {
        !segments(&seg_dir).is_empty()
    });
    let resumed = back.elapsed();
    eprintln!(
        "disk back: recording resumed {:.2}s later",
        resumed.as_secs_f64()
    );
    assert!(resumed <= Duration::from_secs(5), "{resumed:?}");
    s.wait_for("recording, no error", Duration::from_secs(10), |s| {
        s.stream("garden").is_some_and(|v| {
            v["state"] == "running" && rec(&v)["error"].is_null() && segments(&seg_dir).len() >= 2
        })
    });
    let v = s.stream("garden").unwrap();
    assert_eq!(v["consecutive_failures"], 0, "{v}");
    assert_tone(&seg_dir, &segments(&seg_dir)[0]);
    drop(relay);
}

/// `recording.min_free`: a size or a percentage; anything else is a one-line config error
/// naming file:line and the key, exit 4.
#[test]
fn bad_min_free_is_a_config_error() {
    let mut s = Sup::new();
    for (value, ok) in [
        ("\"5%\"", true),
        ("\"0.5%\"", true),
        ("\"100M\"", true),
        ("1048576", true),
        ("\"0%\"", false),
        ("\"60%\"", false),
        ("\"lots\"", false),
        ("0", false),
        ("true", false),
    ] {
        s.extra = format!("[recording]\nmin_free = {value}\n");
        s.write_config();
        let out = s.run(&["config", "--check"]);
        let err = String::from_utf8_lossy(&out.stderr);
        if ok {
            assert_eq!(out.status.code(), Some(0), "{value}: {err}");
            continue;
        }
        assert_eq!(out.status.code(), Some(4), "{value}: {err}");
        let cfg = s.cfg.display().to_string();
        assert!(
            err.lines().count() == 1
                && err.contains(&format!("{cfg}:"))
                && err.contains(&format!("recording.min_free = {value}")),
            "{value}: {err}"
        );
    }
    s.extra = "[recording]\nmin_free = \"2%\"\n".into();
    s.write_config();
    let out = s.run(&["config", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("config --json");
    assert_eq!(v["settings"]["recording"]["min_free"], "2%", "{v}");
}

/// The recording directory cannot be made at the first start (a regular file where a
/// directory should be): streaming only, the error in `status`. The file is removed →
/// recording starts by itself within a few seconds, not counted as a failure.
#[test]
fn unwritable_recording_dir_fixed_later_records_by_itself() {
    common::require_ffmpeg();
    let mut s = Sup::new();
    let blocker = s.dir.path().join("blocker");
    std::fs::write(&blocker, "x").unwrap();
    let rec_dir = blocker.join("rec");
    let seg_dir = rec_dir.join("garden");
    let relay = Relay::start(&s.dir.path().join("rx"));
    setup(&mut s, &rec_dir, relay.port, "5%");
    s.start_foreground();
    s.wait_for("streaming, not recording", Duration::from_secs(20), |s| {
        s.stream("garden").is_some_and(|v| {
            v["state"] == "running"
                && v["publishing"] == true
                && rec(&v)["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("cannot create"))
        })
    });
    std::thread::sleep(Duration::from_secs(2));
    let v = s.stream("garden").unwrap();
    assert_eq!(v["restarts"], 0, "no restart while it cannot record: {v}");
    let pid = v["pid"].as_u64();

    std::fs::remove_file(&blocker).unwrap();
    let fixed = Instant::now();
    s.wait_for("a segment", Duration::from_secs(10), |_| {
        !segments(&seg_dir).is_empty()
    });
    let took = fixed.elapsed();
    eprintln!(
        "directory fixed: recording {:.2}s later",
        took.as_secs_f64()
    );
    assert!(took <= Duration::from_secs(5), "{took:?}");
    s.wait_for("recording, no error", Duration::from_secs(10), |s| {
        s.stream("garden").is_some_and(|v| {
            v["state"] == "running"
                && v["publishing"] == true
                && rec(&v)["error"].is_null()
                && segments(&seg_dir).len() >= 2
        })
    });
    let v = s.stream("garden").unwrap();
    assert_ne!(v["pid"].as_u64(), pid, "{v}");
    assert_eq!(v["consecutive_failures"], 0, "{v}");
    assert_tone(&seg_dir, &segments(&seg_dir)[0]);
    drop(relay);
}
