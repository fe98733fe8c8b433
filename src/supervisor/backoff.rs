//! Restart policy (SPEC §7): pure functions of the configured numbers and the count of
//! consecutive failures, so the whole schedule is table-tested.

use std::time::Duration;

use crate::config::Backoff;

/// Delay before the next start after `consecutive_failures` (≥ 1) failed runs:
/// `initial`, doubling, capped at `max`; once `max_failures` is reached the stream is
/// `failed` and retries slowly every `failed_retry`.
pub fn next_delay(p: &Backoff, consecutive_failures: u32) -> Duration {
    if consecutive_failures == 0 {
        return Duration::ZERO;
    }
    if is_failed(p, consecutive_failures) {
        return p.failed_retry;
    }
    let exp = (consecutive_failures - 1).min(32);
    let d = p.initial.saturating_mul(1u32 << exp.min(31));
    d.min(p.max)
}

/// The restart budget is exhausted.
pub fn is_failed(p: &Backoff, consecutive_failures: u32) -> bool {
    consecutive_failures >= p.max_failures
}

/// A run this long proves the stream healthy again: the failure count resets.
pub fn is_stable(p: &Backoff, ran_for: Duration) -> bool {
    ran_for >= p.stable_after
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Backoff {
        Backoff {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            stable_after: Duration::from_secs(300),
            max_failures: 50,
            failed_retry: Duration::from_secs(600),
        }
    }

    #[test]
    fn schedule_from_table() {
        let p = policy();
        let table: &[(u32, u64)] = &[
            (0, 0),
            (1, 10),
            (2, 20),
            (3, 40),
            (4, 80),
            (5, 160),
            (6, 300),
            (7, 300),
            (49, 300),
            (50, 600),
            (51, 600),
            (u32::MAX, 600),
        ];
        for &(n, secs) in table {
            assert_eq!(next_delay(&p, n), Duration::from_secs(secs), "failures={n}");
        }
    }

    #[test]
    fn zero_initial_and_small_budget() {
        let p = Backoff {
            initial: Duration::ZERO,
            max_failures: 3,
            failed_retry: Duration::from_millis(500),
            ..policy()
        };
        assert_eq!(next_delay(&p, 1), Duration::ZERO);
        assert_eq!(next_delay(&p, 2), Duration::ZERO);
        assert!(!is_failed(&p, 2));
        assert!(is_failed(&p, 3));
        assert_eq!(next_delay(&p, 3), Duration::from_millis(500));
    }

    #[test]
    fn stability() {
        let p = policy();
        assert!(!is_stable(&p, Duration::from_secs(299)));
        assert!(is_stable(&p, Duration::from_secs(300)));
    }
}
