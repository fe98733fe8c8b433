//! The media side of a wrapper: which argv a run uses (recording or publish-only), tee leg
//! failures, the recording ring and view, restoring publishing when the RTSP server
//! answers again, and restoring the recording leg when the disk takes writes again
//! (docs/recording.md).

use std::path::Path;
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
    /// The recording leg is down in this run (failed, or the run started publish-only):
    /// when to look next whether the disk takes writes again.
    pub(super) rec_probe: Option<Instant>,
    pub(super) started: Instant,
    /// The last sweep deleted segments for `min_free`: give whatever else writes to the
    /// disk a moment before a probe judges the space (the next sweep).
    pub(super) made_room: bool,
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
            rec_probe: None,
            started: now,
            made_room: false,
        };
        self.with(|s| s.publish_error = None);
        let Some(r) = self.cfg.recording.clone() else {
            self.with(|s| s.recording = None);
            return (self.cfg.child.clone(), m);
        };
        m.verdict_at = now + r.probe_timeout + Duration::from_millis(500);
        // Once recording worked, a start makes only the stream's own directory, not
        // `recording.dir`: a disk unmounted under a running supervisor is waited for, not
        // replaced by the filesystem underneath.
        let base = r.plan.dir.parent().unwrap_or(&r.plan.dir);
        let checked = if self.rec_dir_seen.as_deref() == Some(base) && !base.is_dir() {
            Err(format!(
                "recording.dir {} is gone (disk unmounted?); waiting for it",
                base.display()
            ))
        } else {
            recording::check_writable(&r.plan.dir)
        };
        let spec = match checked {
            Ok(()) => {
                wait_for_fresh_name(&r.plan);
                m.rec_alive = true;
                self.rec_dir_seen = r.plan.dir.parent().map(Path::to_path_buf);
                self.cfg.child.clone()
            }
            Err(e) => {
                log::warn!(
                    "{}: recording off for this run, streaming only: {e}",
                    self.cfg.name
                );
                m.rec_error = Some(e);
                m.rec_probe = Some(now + self.rec_probe_interval());
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
                // Make room at once (ENOSPC), then look for the cause to be gone.
                m.next_sweep = now;
                m.rec_probe = Some(now + self.rec_probe_interval());
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
            let (mut v, for_space) = r.plan.sweep_counting(m.rec_alive);
            m.made_room = for_space > 0;
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
            let (tx, gen, path) = (self.rx.local(), self.generation, self.cfg.name.clone());
            let (deadline, auth) = (r.probe_timeout, r.rtsp_auth.clone());
            spawn_probe(format!("{}-probe", self.cfg.name), move || {
                let res = crate::rtsp::probe(&addr, &path, auth.as_deref(), deadline)
                    .map(|a| format!("{addr} answers RTSP again ({})", a.status));
                tx.send(super::Msg::Probe(gen, res));
            });
        }
        self.rec_restore_tick(m, &r.plan, now)
    }

    /// The recording-leg side of `media_tick`: a leg that has held 10 s clears the restore
    /// backoff; a leg that is down is probed (cheap statvfs first, then a one-byte write)
    /// and `Some(reason)` = restart now to bring it back.
    fn rec_restore_tick(
        &mut self,
        m: &mut MediaRun,
        plan: &recording::Plan,
        now: Instant,
    ) -> Option<String> {
        if m.rec_alive && now.duration_since(m.started) >= Duration::from_secs(10) {
            self.rec_restores = 0;
        }
        let due = m.rec_probe?;
        if now < due || m.made_room {
            // `next_due` wakes the wrapper for the sweep: make it wake for the probe too
            // (a probe put off after making room waits for the next sweep).
            if due > now {
                m.next_sweep = m.next_sweep.min(due);
            }
            return None;
        }
        let next = now + self.rec_probe_interval();
        m.rec_probe = Some(next);
        m.next_sweep = m.next_sweep.min(next);
        let make_base = self.rec_dir_seen.as_deref() != plan.dir.parent();
        match restorable(plan, make_base) {
            Ok(()) => {
                self.rec_restores = self.rec_restores.saturating_add(1);
                Some(format!(
                    "recording restore: {} takes writes again (restart at once)",
                    plan.dir.display()
                ))
            }
            Err(Wait::Space(why)) => {
                // Waiting for space is not a restore that failed: when space comes back,
                // recording comes back at the next probe (within a second or two).
                self.rec_restores = 0;
                let shown = m
                    .rec_error
                    .as_deref()
                    .map(|e| match e.split_once("; waiting") {
                        Some((head, _)) => format!("{head}; waiting {why}"),
                        None => format!("{e}; waiting {why}"),
                    });
                if shown != m.rec_error {
                    m.rec_error = shown.clone();
                    self.with(|s| {
                        if let Some(v) = s.recording.as_mut() {
                            v.error = shown;
                        }
                    });
                }
                None
            }
            Err(Wait::Other) => None,
        }
    }

    /// Recording restores back off like publishing's (1 s .. 64 s) while each new leg fails
    /// again within 10 s; a leg that holds 10 s resets it.
    fn rec_probe_interval(&self) -> Duration {
        Duration::from_secs(1 << self.rec_restores.min(6))
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

/// The RTSP probe's thread: short-lived, only while a recording stream's RTSP leg is down
/// (at most `MAX_PROBES` at once), so a hung server never blocks the wrapper's poll.
fn spawn_probe(name: String, f: impl FnOnce() + Send + 'static) {
    let short: String = name.chars().take(15).collect();
    if let Err(e) = std::thread::Builder::new().name(short).spawn(f) {
        log::error!("cannot start thread {name}: {e}");
    }
}

/// Why a failed recording leg cannot come back yet.
enum Wait {
    /// Free space below `min_free` (the leg comes back only above the floor: a leg that
    /// stopped at a full disk would fail again at once, and each restore costs a restart).
    Space(String),
    /// Anything else: the cause is already in `recording.error`.
    Other,
}

/// Whether a failed recording leg can be brought back: `recording.dir` itself still exists
/// once this stream has recorded there (`make_base` false: only the stream's own directory
/// is made again; when `recording.dir` is gone, its disk perhaps unmounted, recording
/// waits instead of filling the filesystem underneath), free space is at `min_free`, and
/// a byte can be written and synced.
fn restorable(plan: &recording::Plan, make_base: bool) -> Result<(), Wait> {
    if !make_base && !plan.dir.parent().is_some_and(Path::is_dir) {
        return Err(Wait::Other);
    }
    // Measured at the nearest directory that exists (the one that would hold the files).
    let at = plan
        .dir
        .ancestors()
        .find(|d| d.is_dir())
        .ok_or(Wait::Other)?;
    let (free, total) = recording::fs_space(at).ok_or(Wait::Other)?;
    let floor = plan.min_free.bytes(total);
    if free < floor {
        return Err(Wait::Space(format!(
            "for recording.min_free ({}): {free} of {floor} bytes free",
            plan.min_free.show()
        )));
    }
    recording::check_writable(&plan.dir).map_err(|_| Wait::Other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MinFree;

    fn plan(dir: &Path, min_free: MinFree) -> recording::Plan {
        recording::Plan {
            stream: "mic".into(),
            dir: dir.join("rec").join("mic"),
            muxer: "ogg",
            ext: "ogg",
            segment: Duration::from_secs(1),
            max_files: None,
            max_bytes: None,
            min_free,
        }
    }

    /// When a failed recording leg may come back: (recording.dir exists, may make it,
    /// floor) → verdict.
    #[test]
    fn restorable_table() {
        let small = MinFree::Bytes(1);
        let huge = MinFree::Bytes(u64::MAX / 2);
        // (make recording.dir first, make_base, min_free, want: Ok / Space / Other)
        let table = [
            (true, false, small, "ok"),
            (false, false, small, "other"),
            (false, true, small, "ok"),
            (true, false, huge, "space"),
            (false, true, huge, "space"),
        ];
        for (exists, make_base, min_free, want) in table {
            let t = tempfile::tempdir().unwrap();
            let p = plan(t.path(), min_free);
            if exists {
                std::fs::create_dir(p.dir.parent().unwrap()).unwrap();
            }
            let got = match restorable(&p, make_base) {
                Ok(()) => "ok",
                Err(Wait::Space(why)) => {
                    assert!(why.contains("recording.min_free"), "{why}");
                    "space"
                }
                Err(Wait::Other) => "other",
            };
            assert_eq!(got, want, "{exists} {make_base} {min_free:?}");
            assert_eq!(p.dir.is_dir(), want == "ok", "{exists} {make_base}");
        }
        // A file where the stream's directory should be: not writable.
        let t = tempfile::tempdir().unwrap();
        let p = plan(t.path(), small);
        std::fs::create_dir(p.dir.parent().unwrap()).unwrap();
        std::fs::write(&p.dir, "x").unwrap();
        assert!(matches!(restorable(&p, false), Err(Wait::Other)));
    }
}
