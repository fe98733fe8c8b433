//! CPU use measured by the supervisor itself, so `monitor` needs no sampling window of its
//! own (SPEC §8: CPU "sampled now", never the lifetime average). The main loop marks its
//! own CPU time and each child's every `PERIOD`; the snapshot carries the percentages of
//! the last full period, i.e. a window that ended at most one period ago.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::status::CpuView;

/// How often the supervisor marks CPU counters: the window `monitor` judges.
pub const PERIOD: Duration = Duration::from_secs(2);

/// One reading of every counter.
struct Mark {
    at: Instant,
    own: Duration,
    /// Child pid -> utime+stime in clock ticks.
    kids: BTreeMap<u32, u64>,
}

/// Keeps the previous mark and the view computed from the last full period.
#[derive(Default)]
pub struct Meter {
    last: Option<Mark>,
}

impl Meter {
    /// When the next mark is due (now, before the first one).
    pub fn next_due(&self) -> Instant {
        match &self.last {
            Some(m) => m.at + PERIOD,
            None => Instant::now(),
        }
    }

    /// Take a mark if a period has passed; returns the new view when one was computed.
    pub fn tick(&mut self, now: Instant, pids: &[u32]) -> Option<CpuView> {
        if self
            .last
            .as_ref()
            .is_some_and(|m| now.saturating_duration_since(m.at) < PERIOD)
        {
            return None;
        }
        let mark = Mark {
            at: now,
            own: own_cpu(),
            kids: pids
                .iter()
                .filter_map(|p| Some((*p, ticks(*p as i32)?)))
                .collect(),
        };
        let view = self
            .last
            .as_ref()
            .map(|prev| view(prev, &mark, clock_ticks()));
        self.last = Some(mark);
        view
    }
}

/// Percentages between two marks; a child is listed only when both marks saw it (a child
/// spawned since the previous mark has no full window yet).
fn view(prev: &Mark, now: &Mark, hz: f64) -> CpuView {
    let dt = now.at.saturating_duration_since(prev.at).as_secs_f64();
    let pct = |used_s: f64| if dt > 0.0 { 100.0 * used_s / dt } else { 0.0 };
    CpuView {
        window_s: dt,
        supervisor: pct(now.own.saturating_sub(prev.own).as_secs_f64()),
        children: now
            .kids
            .iter()
            .filter_map(|(pid, t)| {
                let before = prev.kids.get(pid)?;
                Some((*pid, pct(t.saturating_sub(*before) as f64 / hz)))
            })
            .collect(),
    }
}

/// This process's user+system CPU time, all threads (getrusage: microsecond resolution).
pub fn own_cpu() -> Duration {
    // SAFETY: getrusage writes into the struct we pass; zeroed is a valid rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Clock ticks per second for /proc/<pid>/stat times.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime+stime of a process in clock ticks (fields 14 and 15 of /proc/<pid>/stat).
pub fn ticks(pid: i32) -> Option<u64> {
    let stat = crate::child::stat_line(pid)?;
    // After "(comm) ": state is index 0, utime 11, stime 12. Read without allocating: the
    // CPU mark does this for every child every PERIOD.
    let mut f = stat[stat.rfind(')')? + 2..]
        .split_ascii_whitespace()
        .skip(11);
    Some(f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?)
}

/// A process younger than `limit`: its CPU over its whole life (a window that ends now and
/// is shorter than `limit`), with its age in seconds. `None` for an older process, where a
/// lifetime average would hide what it does now (SPEC §8), or when /proc does not say.
pub fn young_average(pid: i32, limit: Duration) -> Option<(f64, f64)> {
    let f = crate::child::stat_fields(pid)?;
    // starttime is field 22: index 19 after "(comm) ".
    let start: u64 = f.get(19)?.parse().ok()?;
    let used: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let hz = clock_ticks();
    let age = uptime - start as f64 / hz;
    if !(0.0..limit.as_secs_f64()).contains(&age) {
        return None;
    }
    // One clock tick is the resolution: a process a few ms old is given one tick of age.
    let age = age.max(1.0 / hz);
    Some((
        (100.0 * used as f64 / hz / age).min(100.0 * num_cpus()),
        age,
    ))
}

fn num_cpus() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(at: Instant, own_ms: u64, kids: &[(u32, u64)]) -> Mark {
        Mark {
            at,
            own: Duration::from_millis(own_ms),
            kids: kids.iter().copied().collect(),
        }
    }

    #[test]
    fn percentages_between_marks() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        // (prev, now, supervisor %, children)
        let table = [
            (
                mark(t0, 100, &[(10, 5), (11, 0)]),
                mark(t1, 120, &[(10, 25), (12, 3)]),
                1.0,
                vec![(10, 10.0)], // 20 ticks of 100 Hz in 2 s; 11 gone; 12 too new
            ),
            (mark(t0, 0, &[]), mark(t1, 2000, &[]), 100.0, vec![]),
            // A counter that went backwards (pid reused) is never negative.
            (
                mark(t0, 50, &[(7, 9)]),
                mark(t1, 50, &[(7, 2)]),
                0.0,
                vec![(7, 0.0)],
            ),
            // No time passed: no division by zero.
            (mark(t0, 0, &[]), mark(t0, 10, &[]), 0.0, vec![]),
        ];
        for (i, (prev, now, sup, kids)) in table.into_iter().enumerate() {
            let v = view(&prev, &now, 100.0);
            assert!(
                (v.supervisor - sup).abs() < 1e-9,
                "row {i}: {}",
                v.supervisor
            );
            let got: Vec<(u32, f64)> = v.children.into_iter().collect();
            assert_eq!(got, kids, "row {i}");
        }
    }

    #[test]
    fn marks_once_per_period() {
        let mut m = Meter::default();
        let t0 = Instant::now();
        assert!(
            m.tick(t0, &[]).is_none(),
            "first mark has nothing to compare"
        );
        assert!(m.tick(t0 + PERIOD / 2, &[]).is_none(), "within the period");
        let v = m.tick(t0 + PERIOD, &[]).expect("a full period");
        assert!((v.window_s - PERIOD.as_secs_f64()).abs() < 1e-9);
    }
}
