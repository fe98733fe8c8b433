//! The MediaMTX poller (SPEC §7): one thread reads `/v3/paths/list` every `mediamtx.poll`
//! and decides, per running stream, whether MediaMTX really receives it. A stream whose
//! path is not available, or whose inbound byte counter does not grow, for
//! `health.unpublished_timeout` is restarted through the backoff path ("not published").
//! MediaMTX being unreachable is reported but never kills a child.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Settings;
use crate::mediamtx::{Client, PathInfo};
use crate::status::PathView;
use crate::supervisor::stream::{Msg, State};
use crate::supervisor::{Info, Registry};

/// What the poller remembers about one stream's current child.
#[derive(Debug, Clone)]
pub struct Track {
    generation: u64,
    last_bytes: u64,
    last_at: Instant,
    bad_since: Option<Instant>,
    source_id: Option<String>,
}

/// The verdict for one stream at one poll (pure, table-tested).
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Published,
    /// Not (yet) published; how long it has been so.
    NotPublished(Duration, String),
}

/// Update `track` with the path as MediaMTX reports it now and judge it.
pub fn judge(track: &mut Track, path: Option<&PathInfo>, now: Instant) -> (Verdict, PathView) {
    let (available, bytes) = path
        .map(|p| (p.available, p.inbound_bytes))
        .unwrap_or((false, 0));
    let grew = bytes > track.last_bytes;
    let dt = now.saturating_duration_since(track.last_at).as_secs_f64();
    let rate =
        (dt > 0.0 && bytes >= track.last_bytes).then(|| (bytes - track.last_bytes) as f64 / dt);
    let source_id = path.and_then(|p| p.source_id.clone());
    let displaced = match (&track.source_id, &source_id) {
        (Some(old), Some(new)) => old != new,
        _ => false,
    };
    if track.source_id.is_none() {
        track.source_id = source_id.clone();
    }
    track.last_bytes = bytes;
    track.last_at = now;
    let problem = if !available {
        Some(if path.is_none() {
            "path not found on MediaMTX".to_string()
        } else {
            "path not available on MediaMTX".to_string()
        })
    } else if !grew {
        Some(format!("inbound bytes not growing ({bytes})"))
    } else {
        None
    };
    let view = PathView {
        available,
        inbound_bytes: bytes,
        inbound_rate_bps: rate,
        readers: path.map(|p| p.readers).unwrap_or(0),
        source_id,
        displaced,
    };
    match problem {
        None => {
            track.bad_since = None;
            (Verdict::Published, view)
        }
        Some(why) => {
            let since = *track.bad_since.get_or_insert(now);
            (
                Verdict::NotPublished(now.saturating_duration_since(since), why),
                view,
            )
        }
    }
}

impl Track {
    pub fn new(generation: u64, now: Instant) -> Track {
        Track {
            generation,
            last_bytes: 0,
            last_at: now,
            bad_since: None,
            source_id: None,
        }
    }
}

/// Start a poller with these settings. It ends by itself once `epoch` moves on from the
/// value it had here: a reload that changes `[mediamtx]` bumps it and starts a new one.
pub fn start(settings: &Settings, registry: Registry, info: Arc<Info>, epoch: Arc<AtomicU64>) {
    let client = Client::new(&settings.mediamtx);
    let poll = settings.mediamtx.poll;
    let limit = settings.health.unpublished_timeout;
    let mine = epoch.load(Ordering::SeqCst);
    let current = move || epoch.load(Ordering::SeqCst) == mine;
    let spawned = std::thread::Builder::new()
        .name("mediamtx".into())
        .spawn(move || {
            let mut tracks: HashMap<String, Track> = HashMap::new();
            loop {
                let version = client.info();
                let listed = match &version {
                    Ok(_) => client.list_paths(),
                    Err(e) => Err(e.clone()),
                };
                // Replaced while asking (a reload): the answer is for old settings.
                if !current() {
                    return;
                }
                if let Ok(mut m) = info.mediamtx.lock() {
                    match (&version, &listed) {
                        (Ok(v), Ok(_)) => {
                            m.reachable = Some(true);
                            m.version = v.version.clone();
                            m.error = None;
                        }
                        (Err(e), _) | (_, Err(e)) => {
                            m.reachable = Some(false);
                            m.error = Some(e.to_string());
                        }
                    }
                }
                let now = Instant::now();
                let handles = registry.read().map(|r| r.clone()).unwrap_or_default();
                match listed {
                    Ok(paths) => {
                        let by_name: HashMap<&str, &PathInfo> =
                            paths.iter().map(|p| (p.name.as_str(), p)).collect();
                        for (name, h) in &handles {
                            let mut s = h.shared.lock().unwrap_or_else(|e| e.into_inner());
                            if s.state != State::Running {
                                tracks.remove(name);
                                s.published = None;
                                s.touch();
                                continue;
                            }
                            let t = tracks
                                .entry(name.clone())
                                .or_insert_with(|| Track::new(s.generation, now));
                            if t.generation != s.generation {
                                *t = Track::new(s.generation, now);
                            }
                            let (verdict, view) =
                                judge(t, by_name.get(name.as_str()).copied(), now);
                            if view.displaced && !s.mediamtx.as_ref().is_some_and(|m| m.displaced) {
                                log::warn!("{name}: another publisher replaced ours on MediaMTX");
                            }
                            s.mediamtx = Some(view);
                            match verdict {
                                Verdict::Published => s.published = Some(true),
                                Verdict::NotPublished(for_, why) => {
                                    s.published = Some(false);
                                    if for_ >= limit {
                                        let reason = format!(
                                            "not published: {why} for {}",
                                            crate::config::fmt_duration(for_)
                                        );
                                        log::warn!("{name}: {reason}; restarting");
                                        let _ = h.tx.send(Msg::Kill(reason));
                                        tracks.remove(name);
                                    }
                                }
                            }
                            s.touch();
                        }
                    }
                    Err(_) => {
                        // Unknown is not unhealthy: never kill children because the API is down.
                        for h in handles.values() {
                            let mut s = h.shared.lock().unwrap_or_else(|e| e.into_inner());
                            s.published = None;
                            s.touch();
                        }
                        for t in tracks.values_mut() {
                            t.bad_since = None;
                        }
                    }
                }
                std::thread::sleep(poll);
                if !current() {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start the MediaMTX poller: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(available: bool, bytes: u64) -> PathInfo {
        PathInfo {
            name: "a".into(),
            available,
            inbound_bytes: bytes,
            source_type: Some("rtspSession".into()),
            source_id: Some("s1".into()),
            readers: 0,
            tracks: vec![],
        }
    }

    #[test]
    fn verdicts_over_time() {
        let t0 = Instant::now();
        let mut t = Track::new(1, t0);
        let s = |n| t0 + Duration::from_secs(n);
        // (time, path, expected: None = published, Some(secs bad))
        let table: Vec<(Instant, Option<PathInfo>, Option<u64>)> = vec![
            (s(5), Some(path(true, 100)), None),
            (s(10), Some(path(true, 200)), None),
            (s(15), Some(path(true, 200)), Some(0)),
            (s(20), Some(path(true, 200)), Some(5)),
            (s(25), Some(path(true, 300)), None),
            (s(30), Some(path(false, 300)), Some(0)),
            (s(35), None, Some(5)),
            (s(40), Some(path(true, 400)), None),
        ];
        for (i, (now, p, want)) in table.into_iter().enumerate() {
            let (v, _) = judge(&mut t, p.as_ref(), now);
            match (v, want) {
                (Verdict::Published, None) => {}
                (Verdict::NotPublished(d, _), Some(secs)) => {
                    assert_eq!(d, Duration::from_secs(secs), "row {i}")
                }
                (v, w) => panic!("row {i}: got {v:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn displacement_is_seen() {
        let t0 = Instant::now();
        let mut t = Track::new(1, t0);
        let mut p = path(true, 10);
        assert!(!judge(&mut t, Some(&p), t0).1.displaced);
        p.source_id = Some("other".into());
        p.inbound_bytes = 20;
        assert!(
            judge(&mut t, Some(&p), t0 + Duration::from_secs(1))
                .1
                .displaced
        );
    }
}
