//! What the supervisor exports to Prometheus (names in docs/metrics.md): rendered from the
//! same snapshot `status` shows, written atomically to `metrics.textfile` every poll and
//! served on `metrics.listen`.

use std::sync::Arc;

use crate::config::Settings;
use crate::metrics::Exposition;
use crate::status::Snapshot;
use crate::supervisor::{snapshot, Info, Registry};

const STATES: [&str; 7] = [
    "starting",
    "running",
    "backoff",
    "stopping",
    "stopped",
    "failed",
    "waiting-for-device",
];

/// The exposition text for one snapshot.
pub fn render(s: &Snapshot) -> String {
    let mut e = Exposition::new();
    let p = "mediamtx_stream_manager";
    e.gauge(
        &format!("{p}_build_info"),
        "Build information; always 1.",
        &[
            ("version", &s.supervisor.version),
            ("mode", &s.supervisor.mode),
        ],
        1.0,
    );
    // Fleet alerts compare this with time(): a textfile left behind by a dead supervisor
    // keeps its last values but stops advancing (contrib/prometheus/alerts.yml).
    e.gauge(
        &format!("{p}_last_update_timestamp_seconds"),
        "Unix time this exposition was rendered.",
        &[],
        crate::util::unix_now() as f64,
    );
    if s.mediamtx.enabled {
        e.gauge(
            &format!("{p}_mediamtx_up"),
            "1 when the MediaMTX control API answered the last poll.",
            &[],
            if s.mediamtx.reachable == Some(true) {
                1.0
            } else {
                0.0
            },
        );
    }
    for st in &s.streams {
        let l = [("stream", st.name.as_str())];
        for state in STATES {
            e.gauge(
                &format!("{p}_stream_state"),
                "Current state of the stream (one-hot over the state label).",
                &[("stream", &st.name), ("state", state)],
                if st.state == state { 1.0 } else { 0.0 },
            );
        }
        e.gauge(
            &format!("{p}_stream_up"),
            "1 when the stream is running and healthy.",
            &l,
            if st.is_ok() { 1.0 } else { 0.0 },
        );
        e.counter(
            &format!("{p}_stream_restarts_total"),
            "Children started after the first.",
            &l,
            st.restarts as f64,
        );
        e.gauge(
            &format!("{p}_stream_consecutive_failures"),
            "Failed runs since the last stable one.",
            &l,
            st.consecutive_failures as f64,
        );
        e.gauge(
            &format!("{p}_stream_uptime_seconds"),
            "Seconds the current child has run.",
            &l,
            st.uptime_s.unwrap_or(0.0),
        );
        if let Some(x) = &st.last_exit {
            e.gauge(
                &format!("{p}_stream_last_exit_code"),
                "Exit code of the last child (-1 when killed by a signal).",
                &l,
                x.code.map(f64::from).unwrap_or(-1.0),
            );
        }
        if let Some(pr) = &st.progress {
            e.gauge(
                &format!("{p}_stream_progress_out_time_seconds"),
                "ffmpeg's out_time for the current child.",
                &l,
                pr.out_time_s.unwrap_or(0.0),
            );
        }
        e.gauge(
            &format!("{p}_stream_silent"),
            "1 when silencedetect reports silence.",
            &l,
            if st.silent { 1.0 } else { 0.0 },
        );
        if let Some(lv) = &st.level {
            let db = |v: Option<f64>| v.unwrap_or(f64::NEG_INFINITY);
            e.gauge(
                &format!("{p}_stream_level_peak_dbfs"),
                "Peak level over the last second in dBFS (-Inf: digital silence).",
                &l,
                db(lv.peak_db),
            );
            e.gauge(
                &format!("{p}_stream_level_rms_dbfs"),
                "RMS level over the last second in dBFS (-Inf: digital silence).",
                &l,
                db(lv.rms_db),
            );
        }
        if let Some(r) = &st.recording {
            e.gauge(
                &format!("{p}_stream_recording_ok"),
                "1 when local recording is writing without error.",
                &l,
                if r.error.is_none() { 1.0 } else { 0.0 },
            );
            e.gauge(
                &format!("{p}_stream_recording_files"),
                "Finished recording segments on disk.",
                &l,
                r.files as f64,
            );
            e.gauge(
                &format!("{p}_stream_recording_bytes"),
                "Bytes of finished recording segments on disk.",
                &l,
                r.bytes as f64,
            );
        }
        e.gauge(
            &format!("{p}_stream_publishing"),
            "0 while ffmpeg's RTSP leg is down and only the recording runs.",
            &l,
            if st.publishing || st.state != "running" {
                1.0
            } else {
                0.0
            },
        );
        if let Some(m) = &st.mediamtx {
            e.gauge(
                &format!("{p}_stream_mediamtx_path_available"),
                "1 when MediaMTX reports the path available.",
                &l,
                if m.available { 1.0 } else { 0.0 },
            );
            e.gauge(
                &format!("{p}_stream_mediamtx_inbound_bytes"),
                "MediaMTX's inbound byte counter for the path.",
                &l,
                m.inbound_bytes as f64,
            );
        }
    }
    e.render()
}

/// Write the textfile if configured; the supervisor's `Reporter` (every poll, and after
/// the stop).
pub fn write(settings: &Settings, snap: &Snapshot) {
    if let Some(path) = &settings.metrics.textfile {
        let text = render(snap);
        if let Err(e) = crate::metrics::write_textfile(path, &text) {
            log::warn!(
                "cannot write metrics to {}: {}",
                path.display(),
                crate::util::io_reason(&e)
            );
        }
    }
}

/// Serve `/metrics` when `metrics.listen` is set, renders a fresh snapshot per scrape;
/// with `[web] enabled` the status page too (`crate::web`). Returns the address bound.
pub fn serve(
    settings: &Settings,
    registry: Registry,
    info: Arc<Info>,
) -> Result<Option<std::net::SocketAddr>, crate::exit::Error> {
    let Some(listen) = &settings.metrics.listen else {
        return Ok(None);
    };
    let addr: std::net::SocketAddr = listen.parse().map_err(|_| {
        crate::exit::Error::config(format!("metrics.listen = {listen:?}: expected host:port"))
    })?;
    let cannot = |e: std::io::Error| {
        crate::exit::Error::general(format!(
            "cannot listen on {addr} for metrics: {}",
            crate::util::io_reason(&e)
        ))
    };
    let listener = std::net::TcpListener::bind(addr).map_err(cannot)?;
    let bound = listener.local_addr().map_err(cannot)?;
    let pages: Option<Arc<dyn crate::http::Pages>> = if settings.web.enabled {
        let (registry, info) = (registry.clone(), info.clone());
        let site = crate::web::Site::new(settings, Arc::new(move || snapshot(&registry, &info)))
            .map_err(|e| {
                crate::exit::Error::general(format!("cannot start the status page: {e}"))
            })?;
        Some(Arc::new(site))
    } else {
        None
    };
    crate::http::serve_with(
        listener,
        Arc::new(move || render(&snapshot(&registry, &info))),
        pages,
    )
    .map_err(cannot)?;
    if settings.web.enabled {
        log::info!("status page on http://{bound}/");
    }
    Ok(Some(bound))
}
