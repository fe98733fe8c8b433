//! `monitor` for cron (SPEC §8): asks the supervisor, samples resources now, and returns
//! the first of 2 > 7 > 6 > 10 > 0 that applies. It never starts or stops anything.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::Global;
use crate::config::Settings;
use crate::control::{self, Request};
use crate::exit::{Error, Exit};
use crate::status::{CpuView, Snapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warning,
    Critical,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub level: Level,
    /// The exit code this finding asks for (0 for warnings).
    pub exit: u8,
    pub check: &'static str,
    pub message: String,
}

/// One process's resources, sampled over a short window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sample {
    pub pid: i32,
    pub what: String,
    pub fds: u64,
    pub cpu_percent: f64,
    pub rss_mb: f64,
}

/// The precedence of SPEC §3: 2, 7, 6, 10, then 0.
pub fn verdict(findings: &[Finding]) -> Exit {
    for code in [2u8, 7, 6, 10] {
        if findings.iter().any(|f| f.exit == code) {
            return Exit::from_code(code as i32);
        }
    }
    Exit::Ok
}

fn finding(level: Level, exit: u8, check: &'static str, message: String) -> Finding {
    Finding {
        level,
        exit,
        check,
        message,
    }
}

/// Judge resource samples against the `[monitor]` thresholds (pure, table-tested).
pub fn judge_resources(samples: &[Sample], m: &crate::config::Monitor) -> Vec<Finding> {
    let mut out = Vec::new();
    for s in samples {
        let who = format!("{} (pid {})", s.what, s.pid);
        let checks: [(&'static str, f64, f64, f64, String); 3] = [
            (
                "fds",
                s.fds as f64,
                m.fd_warn as f64,
                m.fd_critical as f64,
                format!("{} open file descriptors", s.fds),
            ),
            (
                "cpu",
                s.cpu_percent,
                m.cpu_warn,
                m.cpu_critical,
                format!("CPU {:.1}% of one core", s.cpu_percent),
            ),
            (
                "rss",
                s.rss_mb,
                m.rss_warn_mb as f64,
                m.rss_critical_mb as f64,
                format!("RSS {:.1} MiB", s.rss_mb),
            ),
        ];
        for (check, v, warn, crit, text) in checks {
            if v >= crit {
                out.push(finding(
                    Level::Critical,
                    2,
                    check,
                    format!("{who}: {text} (critical at {crit})"),
                ));
            } else if v >= warn {
                out.push(finding(
                    Level::Warning,
                    0,
                    check,
                    format!("{who}: {text} (warning at {warn})"),
                ));
            }
        }
    }
    out
}

/// Streams that have not been running, healthy and clear of failures *continuously* for
/// the last `grace` (SPEC §8.5): a stream in backoff, failed, waiting for its device, or
/// crash-looping (between crashes it runs and looks healthy) is reported on every call.
pub fn judge_streams(snap: &Snapshot, grace: Duration) -> Vec<Finding> {
    let mut out = Vec::new();
    for st in &snap.streams {
        let proven = st.healthy_for_s.is_some_and(|t| t >= grace.as_secs_f64());
        if !proven {
            out.push(finding(
                Level::Warning,
                10,
                "stream",
                stream_message(st, grace),
            ));
        }
        // Recording trouble never stops the stream, so it shows only here (no grace).
        if let Some(e) = st.recording.as_ref().and_then(|r| r.error.as_ref()) {
            out.push(finding(
                Level::Warning,
                10,
                "recording",
                format!("{}: recording: {e}", st.name),
            ));
        }
    }
    out
}

/// Why a stream is not (yet) proven healthy, in one line.
fn stream_message(st: &crate::status::StreamStatus, grace: Duration) -> String {
    if let Some(t) = st.healthy_for_s {
        return format!(
            "{} is healthy for only {t:.1}s (monitor.grace {})",
            st.name,
            crate::config::fmt_duration(grace)
        );
    }
    let failures = match st.consecutive_failures {
        0 => String::new(),
        n => format!(", {n} consecutive failure(s) not yet cleared by a stable run"),
    };
    let why = st
        .last_exit
        .as_ref()
        .map(|e| format!(": {}", e.reason))
        .unwrap_or_default();
    format!(
        "{} is {} / {} for {:.0}s{failures}{why}",
        st.name,
        st.state,
        st.health,
        st.unhealthy_for_s.unwrap_or(0.0)
    )
}

fn rss_mb(pid: i32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn fd_count(pid: i32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// The window over which `monitor` samples CPU itself, for processes the supervisor's own
/// measurement does not cover yet (SPEC §8: CPU "sampled now", never the lifetime average),
/// and between the two orphan scans.
pub const WINDOW: Duration = Duration::from_millis(300);

/// CPU from the supervisor's last full window (`crate::cpu`) where it has one. A process
/// without one is younger than that window (a child spawned since the last mark, or a
/// supervisor that just started): its whole life is then a window ending now, read at
/// once, so `monitor` right after a respawn does not wait. Anything else (an older process
/// the supervisor does not measure) is sampled over `WINDOW` here. FDs and RSS are read now.
pub fn measure(pids: &[(i32, String)], sup_pid: i32, cpu: Option<&CpuView>) -> Vec<Sample> {
    measure_with(
        pids,
        sup_pid,
        cpu,
        crate::cpu::PERIOD + Duration::from_millis(500),
    )
}

/// `measure` with the age below which a process counts as young (tests pass zero).
fn measure_with(
    pids: &[(i32, String)],
    sup_pid: i32,
    cpu: Option<&CpuView>,
    young: Duration,
) -> Vec<Sample> {
    let known = |pid: i32| -> Option<f64> {
        let cpu = cpu?;
        if pid == sup_pid {
            Some(cpu.supervisor)
        } else {
            cpu.children.get(&u32::try_from(pid).ok()?).copied()
        }
    };
    let mut out = Vec::new();
    let mut rest = Vec::new();
    for (pid, what) in pids {
        match known(*pid) {
            Some(pct) if crate::cpu::ticks(*pid).is_some() => out.push(Sample {
                pid: *pid,
                what: what.clone(),
                fds: fd_count(*pid).unwrap_or(0),
                cpu_percent: pct,
                rss_mb: rss_mb(*pid).unwrap_or(0.0),
            }),
            Some(_) => {} // exited since: nothing to judge (as a sample over a window)
            None => match crate::cpu::young_average(*pid, young) {
                Some((pct, _age)) => out.push(Sample {
                    pid: *pid,
                    what: what.clone(),
                    fds: fd_count(*pid).unwrap_or(0),
                    cpu_percent: pct,
                    rss_mb: rss_mb(*pid).unwrap_or(0.0),
                }),
                None => rest.push((*pid, what.clone())),
            },
        }
    }
    if !rest.is_empty() {
        out.extend(sample(&rest, WINDOW));
    }
    // The caller's order: supervisor first, then streams.
    out.sort_by_key(|s| pids.iter().position(|(p, _)| *p == s.pid));
    out
}

/// Sample CPU over `window` (never the lifetime average), FDs and RSS now.
pub fn sample(pids: &[(i32, String)], window: Duration) -> Vec<Sample> {
    let before: BTreeMap<i32, u64> = pids
        .iter()
        .filter_map(|(p, _)| Some((*p, crate::cpu::ticks(*p)?)))
        .collect();
    let t0 = Instant::now();
    std::thread::sleep(window);
    let dt = t0.elapsed().as_secs_f64();
    let hz = crate::cpu::clock_ticks();
    pids.iter()
        .filter_map(|(pid, what)| {
            let after = crate::cpu::ticks(*pid)?;
            let used = after.saturating_sub(*before.get(pid)?) as f64 / hz;
            Some(Sample {
                pid: *pid,
                what: what.clone(),
                fds: fd_count(*pid).unwrap_or(0),
                cpu_percent: 100.0 * used / dt,
                rss_mb: rss_mb(*pid).unwrap_or(0.0),
            })
        })
        .collect()
}

#[derive(Serialize)]
struct Report<'a> {
    exit: u8,
    findings: &'a [Finding],
    samples: &'a [Sample],
}

pub fn run(global: &Global, json: bool) -> Result<Exit, Error> {
    let settings = Settings::load(global)?;
    let (findings, samples) = check(&settings);
    let exit = verdict(&findings);
    if json {
        let r = Report {
            exit: exit.code(),
            findings: &findings,
            samples: &samples,
        };
        println!(
            "{}",
            serde_json::to_string(&r).map_err(|e| Error::general(e.to_string()))?
        );
    } else {
        for f in &findings {
            let tag = match f.level {
                Level::Ok => "OK",
                Level::Warning => "WARNING",
                Level::Critical => "CRITICAL",
            };
            println!("{tag}: {}", f.message);
        }
        if findings.iter().all(|f| f.level == Level::Ok) {
            println!("OK: supervisor and all streams healthy");
        }
    }
    Ok(exit)
}

/// Every check, in order; returns the findings and the resource samples.
pub fn check(settings: &Settings) -> (Vec<Finding>, Vec<Sample>) {
    let state_dir = &settings.paths.state_dir;
    let snap = match control::request(state_dir, &Request::Status, Duration::from_secs(2)) {
        Ok(r) => match r.status {
            Some(s) => s,
            None => {
                let msg = r.error.unwrap_or_else(|| "no status".into());
                return (
                    vec![finding(
                        Level::Critical,
                        2,
                        "supervisor",
                        format!("supervisor answered without status: {msg}"),
                    )],
                    vec![],
                );
            }
        },
        Err(e) => {
            return (
                vec![finding(Level::Critical, 2, "supervisor", e.to_string())],
                vec![],
            )
        }
    };
    let mut findings = Vec::new();
    let sup_pid = snap.supervisor.pid.unwrap_or(0) as i32;
    let mut pids = vec![(sup_pid, "supervisor".to_string())];
    pids.extend(
        snap.streams
            .iter()
            .filter_map(|s| Some((s.pid? as i32, format!("ffmpeg {}", s.name)))),
    );
    // Orphans are scanned twice, `WINDOW` apart, and reported only when seen in both: a
    // child's short-lived helper can vanish or be re-parented mid-scan, and a false 2 makes
    // cron restart the whole service. CPU comes from the supervisor's own window, so the
    // wait happens only when there is a suspect (or a process it has not measured yet).
    let t0 = Instant::now();
    let suspects: Vec<i32> = orphans(state_dir, sup_pid).iter().map(|m| m.pid).collect();
    let samples = measure(&pids, sup_pid, snap.cpu.as_ref());
    findings.extend(judge_resources(&samples, &settings.monitor));
    if !suspects.is_empty() {
        std::thread::sleep(WINDOW.saturating_sub(t0.elapsed()));
        findings.extend(
            orphans(state_dir, sup_pid)
                .into_iter()
                .filter(|m| suspects.contains(&m.pid))
                .map(orphan_finding),
        );
    }
    // Anybody can set two environment variables: another user's marked process is not
    // an orphan of ours (cron would restart the service for it); it is only mentioned.
    findings.extend(
        crate::child::find_foreign_marked(state_dir)
            .into_iter()
            .map(|(m, uid)| {
                finding(
                    Level::Warning,
                    0,
                    "orphan",
                    crate::child::foreign_note(&m, uid),
                )
            }),
    );
    findings.extend(mediamtx_finding(&snap));
    let devices = crate::devices::discover(&settings.paths.proc_asound, &settings.paths.dev_snd);
    if devices.is_empty()
        && settings.mode == crate::cli::Mode::Individual
        && snap.streams.iter().all(|s| s.device.card.is_some())
    {
        findings.push(finding(
            Level::Critical,
            6,
            "devices",
            "no USB audio capture devices found".into(),
        ));
    }
    findings.extend(judge_streams(&snap, settings.monitor.grace));
    (findings, samples)
}

fn mediamtx_finding(snap: &Snapshot) -> Option<Finding> {
    if snap.mediamtx.enabled && snap.mediamtx.reachable == Some(false) {
        let e = snap.mediamtx.error.clone().unwrap_or_default();
        return Some(finding(
            Level::Critical,
            7,
            "mediamtx",
            format!("MediaMTX API not reachable: {e}"),
        ));
    }
    None
}

/// `monitor`'s verdict as far as a snapshot alone tells it (MediaMTX 7, no streams 6,
/// streams 10), for the status page: the resource samples and the orphan scan read /proc
/// and wait, so they stay with `monitor` itself (docs/web.md). Returns the exit code it
/// would give and the findings behind it.
pub fn snapshot_verdict(snap: &Snapshot, grace: Duration) -> (u8, Vec<String>) {
    let mut findings: Vec<Finding> = mediamtx_finding(snap).into_iter().collect();
    if snap.streams.is_empty() {
        findings.push(finding(
            Level::Critical,
            6,
            "devices",
            "no USB audio capture devices found".into(),
        ));
    }
    findings.extend(judge_streams(snap, grace));
    let code = verdict(&findings).code();
    (code, findings.into_iter().map(|f| f.message).collect())
}

/// Marked processes (our ffmpeg children and their helpers) the supervisor does not own.
fn orphans(state_dir: &Path, sup_pid: i32) -> Vec<crate::child::Marked> {
    crate::child::find_marked(state_dir)
        .into_iter()
        .filter(|m| is_orphan(m, sup_pid))
        .collect()
}

/// Ours when it or its parent at scan time descends from the supervisor; a process that
/// has exited since the scan is nobody's orphan.
fn is_orphan(m: &crate::child::Marked, sup_pid: i32) -> bool {
    let gone = !Path::new(&format!("/proc/{}", m.pid)).exists() || crate::child::is_zombie(m.pid);
    if gone {
        return false;
    }
    sup_pid <= 0
        || !(crate::child::descends_from(m.pid, sup_pid)
            || crate::child::descends_from(m.ppid, sup_pid))
}

fn orphan_finding(m: crate::child::Marked) -> Finding {
    finding(
        Level::Critical,
        2,
        "orphan",
        format!(
            "orphaned process pid {} of stream {} (not owned by the supervisor)",
            m.pid, m.stream
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(exit: u8) -> Finding {
        finding(Level::Warning, exit, "x", String::new())
    }

    #[test]
    fn orphan_ownership() {
        use crate::child::Marked;
        let me = std::process::id() as i32;
        let parent = crate::child::parent_pid(me).unwrap_or(1);
        let gone = i32::MAX - 1; // beyond pid_max: never a live process
        let m = |pid, ppid| Marked {
            pid,
            ppid,
            stream: "x".into(),
        };
        let table = [
            // (marked, supervisor, orphan?)
            (m(me, parent), parent, false), // a child of the supervisor
            (m(me, parent), gone, true),    // the supervisor does not own it
            (m(me, parent), 0, true),       // no supervisor at all
            (m(gone, me), me, false),       // exited after the scan: not an orphan
            (m(gone, me), gone - 1, false), // exited: never reported
        ];
        for (i, (marked, sup, want)) in table.into_iter().enumerate() {
            assert_eq!(is_orphan(&marked, sup), want, "row {i}");
        }
    }

    /// A child spawned since the supervisor's last mark: its life so far is the window.
    #[test]
    fn a_fresh_child_is_judged_at_once() {
        let mut c = std::process::Command::new("/bin/sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = c.id() as i32;
        let pids = [(pid, "ffmpeg x".to_string())];
        let view = CpuView {
            window_s: 2.0,
            supervisor: 1.0,
            children: Default::default(),
        };
        let t0 = Instant::now();
        let got = measure(&pids, 0, Some(&view));
        assert!(t0.elapsed() < WINDOW, "waited {:?}", t0.elapsed());
        assert_eq!(got.len(), 1);
        assert!(got[0].cpu_percent >= 0.0 && got[0].fds >= 3, "{:?}", got[0]);
        let _ = c.kill();
        let _ = c.wait();
    }

    #[test]
    fn cpu_from_the_supervisor_window_needs_no_wait() {
        let me = std::process::id() as i32;
        let view = CpuView {
            window_s: 2.0,
            supervisor: 42.5,
            children: [(me as u32, 7.0)].into_iter().collect(),
        };
        let pids = [(me, "supervisor".to_string())];
        let young = crate::cpu::PERIOD + Duration::from_millis(500);
        // (supervisor pid, view, young below, cpu wanted (None: measured here), waited?)
        let table = [
            (me, Some(&view), young, Some(42.5), false),
            (0, Some(&view), young, Some(7.0), false), // a child of some other supervisor
            (me, None, Duration::ZERO, None, true),    // older, no window: sampled
        ];
        for (i, (sup, cpu, young, want, waits)) in table.into_iter().enumerate() {
            let t0 = Instant::now();
            let got = measure_with(&pids, sup, cpu, young);
            let waited = t0.elapsed() >= WINDOW;
            assert_eq!(got.len(), 1, "row {i}");
            assert_eq!(waited, waits, "row {i}");
            if let Some(w) = want {
                assert_eq!(got[0].cpu_percent, w, "row {i}");
            }
            assert!(
                got[0].fds > 0 && got[0].rss_mb > 0.0,
                "row {i}: {:?}",
                got[0]
            );
        }
    }

    #[test]
    fn precedence() {
        let table: &[(&[u8], Exit)] = &[
            (&[], Exit::Ok),
            (&[0], Exit::Ok),
            (&[10], Exit::Degraded),
            (&[10, 6], Exit::NoDevices),
            (&[6, 7, 10], Exit::MediamtxDown),
            (&[10, 7, 2], Exit::Critical),
        ];
        for (codes, want) in table {
            let fs: Vec<_> = codes.iter().map(|c| f(*c)).collect();
            assert_eq!(verdict(&fs), *want, "{codes:?}");
        }
    }

    #[test]
    fn resource_thresholds() {
        let m = Settings::default().monitor;
        let s = |fds, cpu, rss| Sample {
            pid: 1,
            what: "x".into(),
            fds,
            cpu_percent: cpu,
            rss_mb: rss,
        };
        let table = [
            (s(10, 1.0, 10.0), vec![]),
            (s(500, 1.0, 10.0), vec![(Level::Warning, 0)]),
            (s(1000, 1.0, 10.0), vec![(Level::Critical, 2)]),
            (s(10, 25.0, 10.0), vec![(Level::Warning, 0)]),
            (s(10, 45.0, 10.0), vec![(Level::Critical, 2)]),
            (s(10, 1.0, 2000.0), vec![(Level::Critical, 2)]),
        ];
        for (i, (sample, want)) in table.into_iter().enumerate() {
            let got: Vec<_> = judge_resources(&[sample], &m)
                .iter()
                .map(|f| (f.level, f.exit))
                .collect();
            assert_eq!(got, want, "row {i}");
        }
    }

    #[test]
    fn streams_need_grace_of_clear_running() {
        use crate::status::StreamStatus;
        let grace = Duration::from_secs(60);
        let st = |state: &str, healthy: Option<f64>, unhealthy: Option<f64>, fails| StreamStatus {
            name: "mic".into(),
            state: state.into(),
            healthy_for_s: healthy,
            unhealthy_for_s: unhealthy,
            consecutive_failures: fails,
            ..StreamStatus::default()
        };
        // (stream, reported?, words the message must hold)
        let table = [
            (st("running", Some(61.0), None, 0), false, ""),
            (st("running", Some(60.0), None, 0), false, ""),
            (
                st("running", Some(5.0), None, 0),
                true,
                "healthy for only 5.0s",
            ),
            // A crash-looper between crashes, or a failed stream's retry: never clear.
            (
                st("running", None, Some(500.0), 3),
                true,
                "3 consecutive failure",
            ),
            (st("failed", None, Some(1.0), 50), true, "failed"),
            (st("backoff", None, Some(0.5), 1), true, "backoff"),
            (
                st("waiting-for-device", None, Some(2.0), 0),
                true,
                "waiting-for-device",
            ),
        ];
        for (i, (stream, reported, words)) in table.into_iter().enumerate() {
            let snap = Snapshot {
                streams: vec![stream],
                ..Snapshot::default()
            };
            let got = judge_streams(&snap, grace);
            assert_eq!(got.len(), usize::from(reported), "row {i}: {got:?}");
            if let Some(f) = got.first() {
                assert_eq!(f.exit, 10, "row {i}");
                assert!(f.message.contains(words), "row {i}: {}", f.message);
            }
        }
    }
}
