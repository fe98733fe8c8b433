use super::*;

#[test]
fn wrapper_wakes_when_the_next_timer_is_due() {
    let t = Instant::now();
    let at = |ms: u64| t + Duration::from_millis(ms);
    // (ending, media, progress deadline, want)
    let table = [
        (None, None, at(3000), Some(at(3000))), // stall/start deadline only
        (None, Some((at(1000), None)), at(3000), Some(at(1000))), // recording sweep
        (
            None,
            Some((at(1000), Some(at(500)))),
            at(3000),
            Some(at(500)),
        ), // probe
        (
            None,
            Some((at(4000), Some(at(5000)))),
            at(3000),
            Some(at(3000)),
        ),
        (
            Some(Some(at(200))),
            Some((at(100), None)),
            at(50),
            Some(at(200)),
        ), // grace
        (Some(None), None, at(50), None), // SIGKILL sent: only the exit matters
    ];
    for (i, (ending, media, progress, want)) in table.into_iter().enumerate() {
        assert_eq!(next_due(ending, media, progress), want, "row {i}");
    }
}

#[test]
fn progress_must_keep_a_quarter_of_real_time() {
    let ms = Duration::from_millis;
    // (last checkpoint out_time µs, new out_time µs, wall time since the checkpoint, counts)
    let table = [
        (None, 0, ms(0), true),
        (Some(1_000_000), 1_500_000, ms(500), true), // 1x
        (Some(1_000_000), 1_400_000, ms(500), true), // 0.8x (slow virtual mic)
        (Some(1_000_000), 1_000_000, ms(500), false), // frozen
        (Some(1_000_000), 1_020_000, ms(5000), false), // a packet per 5 s write timeout
        (Some(1_000_000), 2_000_000, ms(3000), true), // caught up after a hiccup
        (Some(1_000_000), 900_000, ms(100), false),  // went back
    ];
    for (i, (last, t, since, want)) in table.into_iter().enumerate() {
        assert_eq!(advances(last, t, since), want, "row {i}");
    }
}
