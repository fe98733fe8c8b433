//! What a child's exit means: one we asked for, an unplug (SPEC §7: the card is looked
//! at before the exit is counted, and a count the rescan explains is taken back), or a
//! failure that feeds the backoff.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::{Ending, Next, StreamConfig, Wrapper};
use crate::child;
use crate::ffmpeg::progress;
use crate::status::LastExit;

/// How soon after a counted exit a "device gone" from the rescan still explains it: the
/// default `discovery.rescan` (2 s) with room to spare.
const UNPLUG_WINDOW: Duration = Duration::from_secs(5);
/// How long to keep looking for a card whose capture just failed with EIO/ENODEV.
const UNPLUG_RECHECK: Duration = Duration::from_millis(500);

impl Wrapper {
    /// Decide what the child's end means and what comes next.
    pub(super) fn after_exit(
        &mut self,
        status: ExitStatus,
        tail: Vec<String>,
        ending: Option<Ending>,
        pending_cfg: Option<StreamConfig>,
        spawned_at: Instant,
    ) -> Next {
        let code = status.code();
        let signal = status.signal().map(child::signal_name);
        let name = self.cfg.name.clone();
        let next = match ending {
            Some(e) if e.initiated => {
                log::info!("{name}: ffmpeg ended ({})", e.reason);
                self.note_exit(code, signal, e.reason);
                e.then
            }
            other => {
                let reason = match other {
                    Some(e) => e.reason,
                    None => progress::exit_reason(&tail).unwrap_or_else(|| match (&signal, code) {
                        (Some(sig), _) => format!("killed by {sig}"),
                        (None, Some(0)) => {
                            "exited with code 0 (a live capture never ends by itself)".into()
                        }
                        (None, Some(c)) => format!("exited with code {c}"),
                        _ => "exited".into(),
                    }),
                };
                if let Some(card) = self.device_gone(&tail) {
                    log::warn!(
                        "{name}: ffmpeg ended ({reason}) and card {card} is gone: device removed, \
                         waiting for it (not counted as a failure)"
                    );
                    self.note_exit(code, signal, "device removed".into());
                    self.with(|s| {
                        s.settled = true;
                        s.running_since = None;
                    });
                    Next::Wait
                } else {
                    log::warn!(
                        "{name}: ffmpeg failed after {:.1}s ({}): {reason}",
                        spawned_at.elapsed().as_secs_f64(),
                        signal
                            .clone()
                            .unwrap_or_else(|| format!("code {}", code.unwrap_or(-1)))
                    );
                    self.record_failure_with(code, signal, reason);
                    Next::Backoff
                }
            }
        };
        if let Some(cfg) = pending_cfg {
            self.apply_cfg(cfg);
        }
        next
    }

    /// Remember how and why the child ended (the child is gone: no pid).
    fn note_exit(&mut self, code: Option<i32>, signal: Option<String>, reason: String) {
        self.with(|s| {
            s.last_exit = Some((
                LastExit {
                    code,
                    signal,
                    reason,
                    ago_s: None,
                },
                Instant::now(),
            ));
            s.pid = None;
        });
    }

    pub(super) fn record_failure(&mut self, code: Option<i32>, reason: String) {
        self.record_failure_with(code, None, reason)
    }

    /// Is a card of this stream gone? Looked at right after an unexpected exit, before it
    /// is counted. When ffmpeg's last words say the device went away but its nodes are
    /// still there (the kernel removes them a moment later), look again for a short while.
    fn device_gone(&self, tail: &[String]) -> Option<String> {
        let p = &self.cfg.presence;
        if let Some(card) = p.missing() {
            return Some(card.to_string());
        }
        if p.cards.is_empty() || !progress::looks_unplugged(tail) {
            return None;
        }
        let until = Instant::now() + UNPLUG_RECHECK;
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
            if let Some(card) = p.missing() {
                return Some(card.to_string());
            }
        }
        None
    }

    /// The rescan reports the device gone just after an exit we counted (the card's nodes
    /// outlived the exit): the unplug caused it, so the count is taken back.
    pub(super) fn forgive_unplug(&mut self) {
        let Some((before, at)) = self.last_count.take() else {
            return;
        };
        if at.elapsed() > UNPLUG_WINDOW {
            return;
        }
        log::info!(
            "{}: the device went away with the last exit: not counted as a failure",
            self.cfg.name
        );
        self.with(|s| {
            s.consecutive_failures = before;
            if let Some((e, _)) = s.last_exit.as_mut() {
                e.reason = "device removed".into();
            }
        });
    }

    fn record_failure_with(&mut self, code: Option<i32>, signal: Option<String>, reason: String) {
        let stable_after = self.cfg.backoff.stable_after;
        self.note_exit(code, signal, reason);
        let before = self.with(|s| s.consecutive_failures);
        self.last_count = Some((before, Instant::now()));
        self.with(|s| {
            // A run that lasted `stable_after` already reset the count while it ran.
            let stable = s.running_since.is_some_and(|t| t.elapsed() >= stable_after);
            s.consecutive_failures = if stable {
                1
            } else {
                s.consecutive_failures.saturating_add(1)
            };
            s.settled = true;
            s.running_since = None;
        });
    }
}
