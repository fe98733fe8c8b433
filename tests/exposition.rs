//! The exposition checker of tests/common (what the metrics tests lean on) accepts what
//! the format allows and rejects, by line, what it does not; and the product's builder
//! output passes it.

mod common;

use common::exposition::check_exposition;
use mediamtx_stream_manager::metrics::Exposition;

#[test]
fn builder_output_passes_the_checker() {
    let mut e = Exposition::new();
    e.gauge(
        "level",
        "Escapes: \\ and \n.",
        &[("stream", "q\"uote")],
        -23.0,
    );
    e.counter("starts_total", "", &[("stream", "s")], 4.0);
    e.gauge("level", "", &[("stream", "t")], f64::NEG_INFINITY);
    check_exposition(&e.render()).unwrap();
}

#[test]
fn checker_accepts_good() {
    let good = [
        "",
        "# TYPE a gauge\na 1\n",
        "# HELP a x \\\\ \\n\n# TYPE a gauge\na{b=\"c\",d=\"\\\"\\\\\\n\"} 1.5e3 1700000000\n",
        "# TYPE a counter\na{x=\"1\"} 0\na{x=\"2\"} +Inf\n",
        "# just a comment\n\n# TYPE a gauge\na{b=\"1\",} -0.5\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n",
        "# TYPE a gauge\na NaN\n# TYPE b gauge\nb 1\n",
        "# TYPE a:b gauge\na:b{c=\"ü\"} 1\n",
    ];
    for t in good {
        assert_eq!(check_exposition(t), Ok(()), "{t:?}");
    }
}

#[test]
fn checker_rejects_bad() {
    let bad = [
        ("# TYPE a gauge\na 1", "newline"),
        ("a 1\n", "no # TYPE"),
        ("# TYPE a gauge\na 1\n# TYPE a gauge\n", "after its samples"),
        ("# TYPE a gauge\n# TYPE a counter\na 1\n", "second # TYPE"),
        (
            "# HELP a x\n# HELP a y\n# TYPE a gauge\na 1\n",
            "second # HELP",
        ),
        ("# TYPE a gauge\na 1\na 2\n", "duplicate series"),
        (
            "# TYPE a gauge\na{x=\"1\",y=\"2\"} 1\na{y=\"2\",x=\"1\"} 1\n",
            "duplicate",
        ),
        (
            "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x=\"1\"} 1\n",
            "not grouped",
        ),
        ("# TYPE a gauge\na{x=\"\\t\"} 1\n", "invalid escape"),
        ("# TYPE a gauge\na{x=\"1} 1\n", "unterminated"),
        ("# TYPE a gauge\na{x=1} 1\n", "not quoted"),
        ("# TYPE a gauge\na{1x=\"1\"} 1\n", "invalid label name"),
        ("# TYPE a gauge\na{__x=\"1\"} 1\n", "invalid label name"),
        ("# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n", "twice"),
        ("# TYPE a gauge\na one\n", "invalid value"),
        ("# TYPE a gauge\na 0x10\n", "invalid value"),
        ("# TYPE a gauge\na\n", "space before the value"),
        ("# TYPE a gauge\na 1 2.5\n", "timestamp"),
        ("# TYPE a gauge\na 1 2 3\n", "unexpected"),
        ("# TYPE a gauge\na{x=\"1\"}1\n", "space before"),
        ("# TYPE 1a gauge\n", "invalid metric name"),
        ("# TYPE a-b gauge\n", "invalid metric name"),
        ("# TYPE a gaug\na 1\n", "unknown type"),
        ("# HELP a bad \\q\n# TYPE a gauge\n", "invalid escape"),
        ("# TYPE c counter\nc -1\n", "counter"),
        ("# TYPE c counter\nc NaN\n", "counter"),
        ("# TYPE a gauge\na{x=\"1\" y=\"2\"} 1\n", "expected ','"),
    ];
    for (t, why) in bad {
        match check_exposition(t) {
            Ok(()) => panic!("accepted bad exposition {t:?}"),
            Err(e) => assert!(e.contains(why), "{t:?}: {e} (wanted {why})"),
        }
    }
}
