//! The media side of a wrapper: which argv a run uses (recording or publish-only), tee leg
//! failures, the recording ring and view, and restoring publishing when the RTSP server
//! answers again (docs/recording.md).

use std::time::{Duration, Instant};

use super::Wrapper;
use crate::child::ChildSpec;
use crate::recording;

/// Media side of one child run: recording legs, levels, publishing restore.
pub(super) struct MediaRun {
    /// The recording leg is writing (the directory was writable and no failure since).
    pub(super) rec_alive: bool,
    pub(super) rec_error: Option<String>,
    /// Since when our RTSP leg is down.
    pub(super) rtsp_down: Option<Instant>,
    pub(super) next_probe: Instant,
    /// RTSP probes on their way (answers come as `Msg::Probe`). Probes start every probe
    /// interval even while an earlier one still waits out its deadline, so a server that
    /// comes back is seen within an interval, not an interval plus a deadline.
    pub(super) probing: u32,
    /// A probe found the server: the restore restart is under way.
    pub(super) restoring: bool,
    /// By then the RTSP leg has either failed or completed its handshake (each wait in it
    /// is bounded by `mediamtx.rtsp_timeout`): the stream's first verdict for `start`.
    pub(super) verdict_at: Instant,
    pub(super) next_sweep: Instant,
}

impl Wrapper {
    /// Which argv this run uses (recording when its directory takes a write, else the
    /// publish-only fallback) and the run's media bookkeeping.
    pub(super) fn media_start(&mut self) -> (ChildSpec, MediaRun) {
        let now = Instant::now();
        let mut m = MediaRun {
            rec_alive: false,
            rec_error: None,
            rtsp_down: None,
            next_probe: now,
            probing: 0,
            restoring: false,
            verdict_at: now,
            next_sweep: now + Duration::from_secs(1),
        };
        self.with(|s| s.publish_error = None);
        let Some(r) = self.cfg.recording.clone() else {
            self.with(|s| s.recording = None);
            return (self.cfg.child.clone(), m);
        };
        m.verdict_at = now + r.probe_timeout + Duration::from_millis(500);
        let spec = match recording::check_writable(&r.plan.dir) {
            Ok(()) => {
                wait_for_fresh_name(&r.plan);
                m.rec_alive = true;
                self.cfg.child.clone()
            }
            Err(e) => {
                log::warn!(
                    "{}: recording off for this run, streaming only: {e}",
                    self.cfg.name
                );
                m.rec_error = Some(e);
                r.fallback.clone()
            }
        };
        let mut view = r.plan.sweep(false);
        view.error = m.rec_error.clone();
        self.with(|s| {
            view.last_gap_s = s.recording.as_ref().and_then(|v| v.last_gap_s);
            s.recording = Some(view);
        });
        (spec, m)
    }

    /// A tee leg gave up. RTSP: keep the child (it records), mark not publishing, and
    /// start probing the server. Recording: report it; streaming goes on untouched.
    pub(super) fn leg_failed(&mut self, m: &mut MediaRun, leg: usize, why: String) {
        if self.cfg.recording.is_none() {
            return;
        }
        let name = &self.cfg.name;
        let now = Instant::now();
        match leg {
            0 if m.rtsp_down.is_none() => {
                log::warn!("{name}: RTSP leg failed ({why}); recording continues");
                m.rtsp_down = Some(now);
                m.next_probe = now + self.probe_interval();
                self.with(|s| {
                    s.publishing = false;
                    s.publish_error = Some(why);
                    if s.state == super::State::Running {
                        s.settled = true;
                    }
                    s.touch();
                });
            }
            // A stalled leg (fifo full) that then times out: the later words are sharper.
            0 => self.with(|s| s.publish_error = Some(why)),
            1 => {
                let e = format!("recording stopped: {why}");
                log::warn!("{name}: {e}; streaming continues");
                m.rec_alive = false;
                m.rec_error = Some(e.clone());
                self.with(|s| {
                    if let Some(v) = s.recording.as_mut() {
                        v.error = Some(e);
                    }
                    s.touch();
                });
            }
            _ => {}
        }
    }

    /// The probe interval doubles (1 s .. 64 s) while restores keep failing at once.
    fn probe_interval(&self) -> Duration {
        Duration::from_secs(1 << self.restore_attempts.min(6))
    }

    /// Once a second: keep the ring within bounds and refresh the view. While the RTSP leg
    /// is down and the recording runs, probe the server; `Some(reason)` = restart now.
    pub(super) fn media_tick(&mut self, m: &mut MediaRun, now: Instant) -> Option<String> {
        let r = self.cfg.recording.clone()?;
        if now >= m.next_sweep {
            m.next_sweep = now + Duration::from_secs(1);
            let mut v = r.plan.sweep(m.rec_alive);
            // The run's own failure is the cause; a listing error is its echo.
            if m.rec_error.is_some() {
                v.error = m.rec_error.clone();
            }
            self.with(|s| {
                v.last_gap_s = s.recording.as_ref().and_then(|x| x.last_gap_s);
                s.recording = Some(v);
                s.touch();
            });
        }
        if now >= m.verdict_at {
            self.with(|s| {
                if s.state == super::State::Running {
                    s.settled = true;
                }
            });
        }
        if m.rtsp_down.is_some() && m.rec_alive && m.probing < MAX_PROBES && now >= m.next_probe {
            let addr = r.rtsp_addr.clone()?;
            m.probing += 1;
            m.next_probe = now + self.probe_interval();
            let (tx, gen, path) = (self.tx.clone(), self.generation, self.cfg.name.clone());
            let deadline = r.probe_timeout;
            super::readers::spawn_named(format!("{}-probe", self.cfg.name), move || {
                let res = crate::rtsp::probe(&addr, &path, deadline)
                    .map(|a| format!("{addr} answers RTSP again ({})", a.status));
                let _ = tx.send(super::Msg::Probe(gen, res));
            });
        }
        None
    }

    /// The probe's answer. `Some(reason)`: the server answers RTSP, restart now to publish.
    pub(super) fn probe_done(
        &mut self,
        m: &mut MediaRun,
        now: Instant,
        res: Result<String, String>,
    ) -> Option<String> {
        m.probing = m.probing.saturating_sub(1);
        if m.rtsp_down.is_none() || !m.rec_alive || m.restoring {
            return None;
        }
        if m.probing == 0 && now >= m.next_probe {
            // The last probe waited out its deadline: the next one is due already.
            m.next_probe = now;
        }
        match res {
            Ok(what) => {
                m.restoring = true;
                self.restore_attempts = self.restore_attempts.saturating_add(1);
                Some(format!(
                    "publishing restore: {what} (restart at once, recording gap measured)"
                ))
            }
            Err(why) => {
                log::debug!("{}: RTSP probe: {why}", self.cfg.name);
                None
            }
        }
    }

    /// First progress after a restore: audio started `out_time` ago; the gap is from the
    /// old child's SIGINT to then.
    pub(super) fn measure_gap(&mut self, now: Instant, out_time_us: Option<i64>) {
        let Some(from) = self.gap_from.take() else {
            return;
        };
        let captured = Duration::from_micros(out_time_us.unwrap_or(0).max(0) as u64);
        let start = now.checked_sub(captured).unwrap_or(now);
        let gap = start.saturating_duration_since(from).as_secs_f64();
        log::info!(
            "{}: child restarted; recording gap about {gap:.2}s",
            self.cfg.name
        );
        self.with(|s| {
            if let Some(v) = s.recording.as_mut() {
                v.last_gap_s = Some(gap);
            }
        });
    }
}

/// Probes in flight at most (each ends by its deadline, `mediamtx.rtsp_timeout`).
const MAX_PROBES: u32 = 4;

/// Segment names have one-second resolution: a child started in the same second as the
/// newest segment would overwrite it, so wait for the next second (at most ~1 s).
pub(super) fn wait_for_fresh_name(plan: &recording::Plan) {
    let newest = plan
        .list()
        .ok()
        .and_then(|l| l.last().map(|s| s.name.clone()));
    let Some(newest) = newest else { return };
    let end = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < end
        && newest
            == format!(
                "{}-{}.{}",
                plan.stream,
                recording::local_stamp_now(),
                plan.ext
            )
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}
