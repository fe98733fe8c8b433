//! Size-rotated log files (SPEC §7): `<name>.log`, `.log.1` … `.log.<keep>`, kept across
//! restarts. ffmpeg can print one warning thousands of times a second, so identical
//! consecutive lines are folded into one "repeated N times" line: the file stays small and
//! the supervisor spends one comparison, not one write, per repeat.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct RotatingLog {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    file: Option<File>,
    size: u64,
    last: String,
    repeats: u64,
    repeats_since: Instant,
}

/// Log files: the supervisor's user writes, its group reads (logs may name hosts and
/// users; `diagnose` as another user lists them as unreadable), whatever the umask.
pub const LOG_MODE: u32 = 0o640;

/// How long repeats are folded before a summary line is written anyway.
const REPEAT_FLUSH: Duration = Duration::from_secs(5);

impl RotatingLog {
    pub fn open(path: &Path, max_size: u64, keep: u32) -> io::Result<RotatingLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::fsafe::ensure_shared_dir(dir, crate::supervisor::LOG_DIR_MODE)?;
        }
        let file = crate::fsafe::open_append(path, LOG_MODE)?;
        let size = file.metadata()?.len();
        Ok(RotatingLog {
            path: path.to_path_buf(),
            max_size: max_size.max(1024),
            keep,
            file: Some(file),
            size,
            last: String::new(),
            repeats: 0,
            repeats_since: Instant::now(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one line (a newline is added), folding exact repeats.
    pub fn line(&mut self, line: &str) {
        if !self.last.is_empty() && line == self.last {
            self.repeats += 1;
            if self.repeats_since.elapsed() >= REPEAT_FLUSH {
                self.flush_repeats();
            }
            return;
        }
        self.flush_repeats();
        self.write_raw(line);
        self.last.clear();
        self.last.push_str(line);
    }

    /// Write any pending "repeated" summary (call before closing).
    pub fn flush_repeats(&mut self) {
        if self.repeats > 0 {
            let msg = format!("(last line repeated {} more times)", self.repeats);
            self.repeats = 0;
            self.write_raw(&msg);
        }
        self.repeats_since = Instant::now();
    }

    fn write_raw(&mut self, line: &str) {
        let len = line.len() as u64 + 1;
        if self.size + len > self.max_size && self.size > 0 {
            self.rotate();
        }
        if let Some(f) = self.file.as_mut() {
            let mut buf = Vec::with_capacity(line.len() + 1);
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            if f.write_all(&buf).is_ok() {
                self.size += len;
            }
        }
    }

    fn rotate(&mut self) {
        self.file = None;
        let gen = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        let _ = std::fs::remove_file(gen(self.keep));
        for n in (1..self.keep).rev() {
            let _ = std::fs::rename(gen(n), gen(n + 1));
        }
        if self.keep > 0 {
            let _ = std::fs::rename(&self.path, gen(1));
        } else {
            let _ = std::fs::remove_file(&self.path);
        }
        self.file = crate::fsafe::open_append(&self.path, LOG_MODE).ok();
        self.size = 0;
    }
}

impl Write for RotatingLog {
    /// Lets env_logger write the supervisor's own log through rotation.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        for l in text.lines() {
            self.flush_repeats();
            self.write_raw(l);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for RotatingLog {
    fn drop(&mut self) {
        self.flush_repeats();
    }
}

/// Where the supervisor's own log goes: stderr, until a daemon switches it to
/// `<log_dir>/supervisor.log` (rotated like the stream logs).
static SINK_FILE: std::sync::Mutex<Option<RotatingLog>> = std::sync::Mutex::new(None);

pub struct LogSink;

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut guard = SINK_FILE.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            Some(f) => f.write(buf),
            None => io::stderr().write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Send the supervisor's log to a rotating file from now on.
pub fn log_to_file(path: &Path, max_size: u64, keep: u32) -> io::Result<()> {
    let f = RotatingLog::open(path, max_size, keep)?;
    *SINK_FILE.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_and_keeps_generations() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.log");
        let mut log = RotatingLog::open(&p, 1024, 2).unwrap();
        for i in 0..200 {
            log.line(&format!(
                "line {i:04} ........................................"
            ));
        }
        drop(log);
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(size(&p) <= 1024);
        assert!(size(&d.path().join("s.log.1")) > 0);
        assert!(size(&d.path().join("s.log.2")) > 0);
        assert!(!d.path().join("s.log.3").exists());
        let last = std::fs::read_to_string(&p).unwrap();
        assert!(last.contains("line 0199"));
    }

    #[test]
    fn folds_repeats() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.log");
        let mut log = RotatingLog::open(&p, 1 << 20, 3).unwrap();
        for _ in 0..10_000 {
            log.line("warning: same thing");
        }
        log.line("different");
        drop(log);
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            text,
            "warning: same thing\n(last line repeated 9999 more times)\ndifferent\n"
        );
    }
}
