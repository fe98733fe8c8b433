//! The live view of one stream: what `status`, the poller and metrics read, and the
//! state/health rules that keep `monitor`'s clocks.

use std::time::Instant;

use super::StreamConfig;
use crate::ffmpeg::progress::Progress;
use crate::status::{
    DeviceView, LastExit, LevelView, PathView, ProgressView, RecordingView, StreamStatus,
};

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
    /// Since when the stream is running, healthy and clear of failures without a break
    /// (`monitor` needs `monitor.grace` of it; SPEC §8.5).
    pub ok_since: Option<Instant>,
    pub settled: bool,
    pub slow: bool,
    /// False while the child's RTSP leg is down (recording keeps the child alive).
    pub publishing: bool,
    /// Why not publishing (the RTSP leg's failure), while the recording runs.
    pub publish_error: Option<String>,
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
            ok_since: None,
            settled: false,
            slow: false,
            publishing: true,
            publish_error: None,
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

    /// Whether `monitor` may count this moment as good: running, healthy, and no failure
    /// still pending (a crash-looper between crashes, or a `failed` stream's slow retry,
    /// runs healthy for a while but is not cleared until a run lasts `stable_after`).
    pub fn clear(&self) -> bool {
        self.state == State::Running && self.health() == "healthy" && self.consecutive_failures == 0
    }

    /// Keep `unhealthy_since` / `ok_since` in step with state, health and failures.
    pub fn touch(&mut self) {
        if self.clear() {
            self.unhealthy_since = None;
            self.ok_since.get_or_insert_with(Instant::now);
        } else {
            self.ok_since = None;
            self.unhealthy_since.get_or_insert_with(Instant::now);
        }
    }

    pub(super) fn set_state(&mut self, s: State) {
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
            healthy_for_s: self.ok_since.map(since),
            settled: self.settled,
            notes: self.notes.clone(),
            publishing: self.publishing,
            publish_error: self.publish_error.clone(),
            recording: self.recording.clone(),
            level: self.level.clone(),
        }
    }
}
