//! Reload (SIGHUP): reread both files, check the whole plan first, then make the running
//! set exactly what a fresh start would run (docs/architecture.md "Hot-plug and reload").

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::stream::Msg;
use super::Supervisor;
use crate::config::Settings;
use crate::status::MediamtxInfo;

impl Supervisor {
    pub(super) fn reload(&mut self) {
        match self.source.reload() {
            Ok(Some(settings)) => {
                log::info!("configuration reloaded");
                let old = std::mem::replace(&mut self.settings, settings);
                self.apply_reloaded(&old);
                let absent: BTreeSet<String> = self
                    .present
                    .iter()
                    .filter(|(n, here)| !**here && still_wanted(&old, &self.settings, n))
                    .map(|(n, _)| n.clone())
                    .collect();
                self.sync(Some(&absent));
            }
            Ok(None) => self.rescan(),
            Err(e) => log::error!("reload failed, keeping the running configuration: {e}"),
        }
    }

    /// Stop and remove every stream not in `keep` (renamed, disabled, mode changed, or
    /// its device absent: a fresh start would not list it either). Their children are
    /// reaped before the new set starts, so a renamed stream's successor finds the ALSA
    /// device free; a wrapper slower than the stop grace is left to finish on its own.
    pub(super) fn retire_all_but(&mut self, keep: &BTreeSet<String>) {
        let names: Vec<String> = self
            .registry
            .read()
            .map(|r| r.keys().filter(|n| !keep.contains(*n)).cloned().collect())
            .unwrap_or_default();
        let mut stopping = Vec::new();
        for name in names {
            let handle = self.registry.write().ok().and_then(|mut r| r.remove(&name));
            self.present.remove(&name);
            self.sent.remove(&name);
            if let Some(h) = handle {
                log::info!("{name}: not in the reloaded configuration; stopping and removing it");
                let _ = h.tx.send(Msg::Stop);
            }
            stopping.extend(self.threads.remove(&name));
        }
        let until = Instant::now() + self.settings.stop.grace + Duration::from_secs(2);
        while Instant::now() < until && stopping.iter().any(|t| !t.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for t in stopping {
            if t.is_finished() {
                let _ = t.join();
            } else {
                self.retired.push(t);
            }
        }
    }

    /// Apply what a reload changed outside the stream set: the mode label, the MediaMTX
    /// poller, and a warning (in the log and in `status`) for settings that only take
    /// effect at the next start, whose old values stay in force until then.
    fn apply_reloaded(&mut self, old: &Settings) {
        if let Ok(mut m) = self.info.mode.lock() {
            *m = self.source.mode_label(&self.settings);
        }
        let new = &mut self.settings;
        let mut fixed = Vec::new();
        if new.paths.state_dir != old.paths.state_dir {
            fixed.push(format!(
                "paths.state_dir {} (lock, control socket, pid files)",
                old.paths.state_dir.display()
            ));
            new.paths.state_dir = old.paths.state_dir.clone();
        }
        if new.paths.log_dir != old.paths.log_dir {
            fixed.push(format!("paths.log_dir {}", old.paths.log_dir.display()));
            new.paths.log_dir = old.paths.log_dir.clone();
        }
        if new.discovery.watch != old.discovery.watch {
            fixed.push(format!("discovery.watch = {}", old.discovery.watch));
            new.discovery.watch = old.discovery.watch;
        }
        if new.paths.dev_snd != old.paths.dev_snd && old.discovery.watch {
            fixed.push(format!(
                "the hot-plug watch on {} (paths.dev_snd; scans use the new one)",
                old.paths.dev_snd.display()
            ));
        }
        if new.metrics.listen != old.metrics.listen {
            fixed.push(format!(
                "metrics.listen {}",
                old.metrics.listen.as_deref().unwrap_or("(off)")
            ));
            new.metrics.listen = old.metrics.listen.clone();
        }
        if new.web != old.web {
            fixed.push("the [web] settings".into());
            new.web = old.web.clone();
        }
        let warnings: Vec<String> = fixed
            .iter()
            .map(|f| format!("reload: cannot change while running, keeps {f} until the next start"))
            .collect();
        for w in &warnings {
            log::warn!("{w}");
        }
        if let Ok(mut w) = self.info.warnings.lock() {
            *w = warnings;
        }
        if new.mediamtx != old.mediamtx
            || new.health.unpublished_timeout != old.health.unpublished_timeout
        {
            self.poller_epoch.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut m) = self.info.mediamtx.lock() {
                *m = MediamtxInfo {
                    enabled: new.mediamtx.api,
                    api_url: crate::util::redact_url(&new.mediamtx.api_url),
                    ..MediamtxInfo::default()
                };
            }
            // What the old poller saw says nothing about the new server.
            let reg = self.registry.read().map(|r| r.clone()).unwrap_or_default();
            for h in reg.values() {
                let mut st = h.shared.lock().unwrap_or_else(|e| e.into_inner());
                st.published = None;
                st.mediamtx = None;
                st.touch();
            }
            log::info!(
                "MediaMTX settings changed: {}",
                if new.mediamtx.api {
                    "poller restarted with them"
                } else {
                    "API checks off"
                }
            );
            if new.mediamtx.api {
                self.start_poller();
            }
        }
    }
}

/// Whether a stream waiting for its unplugged device would still stream under the same
/// name after the reload: same mode, not disabled, not renamed. It then keeps its wrapper
/// (its restart count, and `monitor` keeps reporting the missing device); otherwise it
/// goes like any stream the new plan does not have.
fn still_wanted(old: &Settings, new: &Settings, name: &str) -> bool {
    let d = new.devices.get(name);
    old.mode == new.mode
        && d.and_then(|d| d.enabled) != Some(false)
        && d.and_then(|d| d.stream.as_deref())
            .is_none_or(|s| s == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DeviceOverride, Mode};

    #[test]
    fn absent_stream_kept_only_if_still_wanted() {
        let base = Settings::default();
        let with = |f: &dyn Fn(&mut Settings)| {
            let mut s = Settings::default();
            f(&mut s);
            s
        };
        let dev = |enabled: Option<bool>, stream: Option<&str>| DeviceOverride {
            enabled,
            stream: stream.map(str::to_string),
            ..DeviceOverride::default()
        };
        let table: Vec<(Settings, bool)> = vec![
            (Settings::default(), true),
            (with(&|s| s.mode = Mode::Multiplex), false),
            (
                with(&|s| {
                    s.devices.insert("mic".into(), dev(Some(false), None));
                }),
                false,
            ),
            (
                with(&|s| {
                    s.devices.insert("mic".into(), dev(None, Some("pond")));
                }),
                false,
            ),
            (
                with(&|s| {
                    s.devices.insert("mic".into(), dev(Some(true), Some("mic")));
                }),
                true,
            ),
            (
                with(&|s| {
                    s.devices.insert("other".into(), dev(Some(false), None));
                }),
                true,
            ),
        ];
        for (i, (new, want)) in table.iter().enumerate() {
            assert_eq!(still_wanted(&base, new, "mic"), *want, "row {i}");
        }
    }
}
