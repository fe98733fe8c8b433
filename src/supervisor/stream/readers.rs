//! The threads that read a child's pipes: `-progress` blocks from stdout; stderr into the
//! rotating log, the exit-reason tail, silence, levels and tee leg events.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::Sender;

use super::Msg;
use crate::ffmpeg::progress::{self, ProgressParser};
use crate::logs::RotatingLog;

const TAIL_LINES: usize = 30;

pub(super) fn spawn_named(name: String, f: impl FnOnce() + Send + 'static) {
    let short: String = name.chars().take(15).collect();
    if let Err(e) = std::thread::Builder::new().name(short).spawn(f) {
        log::error!("cannot start thread {name}: {e}");
    }
}

/// Credentials never reach a log: redact any URL argument.
pub(super) fn redact_args(args: &[String]) -> String {
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

pub(super) fn read_progress(out: impl Read, gen: u64, tx: Sender<Msg>) {
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
pub(super) struct Wants {
    pub(super) silence: bool,
    pub(super) levels: bool,
}

/// Copy stderr into the rotating log, keep the last lines for the exit reason, and pass
/// silencedetect events, levels and tee leg failures on. Level prints (one per second)
/// stay out of the log and the tail. Returns the tail when ffmpeg closes stderr.
pub(super) fn read_stderr(
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
