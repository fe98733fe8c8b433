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
