//! The world the disk tests control: a tmpfs they mount, fill and unmount, and an RTSP
//! server that receives every publisher (tests/recording_disk.rs).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::rtsp::{self, Guard};

/// Bytes per second of the received audio (s16le, 48 kHz, stereo).
pub const PCM_RATE: f64 = 48000.0 * 4.0;

/// A tmpfs mounted on a directory of the test; unmounted on drop (lazily if ffmpeg still
/// holds a file there), so a failing test leaves no mount behind.
pub struct Tmpfs {
    at: PathBuf,
    mounted: bool,
}

impl Tmpfs {
    /// Mount `size` (e.g. "3m") at `at`. `None` (after a SKIPPED line) when mounting is not
    /// permitted here; under `CI=true` that is a failure.
    pub fn mount(test: &str, at: &Path, size: &str) -> Option<Tmpfs> {
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
    pub fn unmount(&mut self) {
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
pub struct Relay {
    pub port: u16,
    stop: Arc<AtomicBool>,
    /// (receiver, its raw output), in order of connection.
    rx: Arc<Mutex<Vec<(Guard, PathBuf)>>>,
}

impl Relay {
    pub fn start(dir: &Path) -> Relay {
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
    pub fn received(&self) -> Vec<f64> {
        let list = self.rx.lock().unwrap_or_else(|e| e.into_inner());
        list.iter()
            .map(|(_, p)| std::fs::metadata(p).map_or(0, |m| m.len()) as f64 / PCM_RATE)
            .collect()
    }

    pub fn newest(&self) -> (usize, f64) {
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

pub fn segments(dir: &Path) -> Vec<String> {
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

/// Free bytes on the filesystem holding `dir` (for unprivileged writers, like the ring).
pub fn free_bytes(dir: &Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(dir).expect("statvfs");
    st.blocks_available() as u64 * st.fragment_size() as u64
}

/// Write `bytes` of zeros to `path` (appending), stopping quietly at a full disk.
pub fn fill(path: &Path, bytes: u64) -> u64 {
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
pub struct Grabber {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Grabber {
    pub fn start(path: &Path) -> Grabber {
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

    pub fn stop(&mut self) {
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
