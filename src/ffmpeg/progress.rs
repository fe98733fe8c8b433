//! What ffmpeg tells us while it runs: `-progress pipe:1` blocks (stall detection,
//! SPEC §7), silence events from stderr, and why it exited, in words.

use serde::Serialize;

use crate::util::redact_url;

/// One `-progress` block. `None` where ffmpeg wrote `N/A` or left the key out
/// (audio-only output has no `frame=`; RTSP output reports no size or bitrate).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Progress {
    pub out_time_us: Option<i64>,
    pub total_size: Option<u64>,
    pub bitrate_kbps: Option<f64>,
    pub speed: Option<f64>,
    /// `progress=end`: the last block of a run.
    pub end: bool,
}

/// Line-by-line parser of the `key=value` stream; one `Progress` per block.
#[derive(Debug, Default)]
pub struct ProgressParser {
    cur: Progress,
    /// `out_time=HH:MM:SS.ffffff`, used only when `out_time_us` is missing.
    out_time_text: Option<i64>,
}

impl ProgressParser {
    /// Feed one stdout line; returns the block at each `progress=continue|end`.
    pub fn feed(&mut self, line: &str) -> Option<Progress> {
        let (key, value) = line.trim().split_once('=')?;
        let v = value.trim();
        match key.trim() {
            "out_time_us" => self.cur.out_time_us = v.parse().ok(),
            "out_time" => self.out_time_text = parse_clock_us(v),
            "total_size" => self.cur.total_size = v.parse().ok(),
            "bitrate" => self.cur.bitrate_kbps = v.strip_suffix("kbits/s").and_then(num),
            "speed" => self.cur.speed = v.strip_suffix('x').and_then(num),
            "progress" => {
                let mut block = std::mem::take(&mut self.cur);
                block.end = v == "end";
                if block.out_time_us.is_none() {
                    block.out_time_us = self.out_time_text;
                }
                self.out_time_text = None;
                return Some(block);
            }
            _ => {}
        }
        None
    }
}

fn num(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|f| f.is_finite())
}

/// `HH:MM:SS.ffffff` (possibly negative) → microseconds.
fn parse_clock_us(s: &str) -> Option<i64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let mut parts = s.split(':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let sec: f64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !sec.is_finite() {
        return None;
    }
    let us = (h * 3600 + m * 60) * 1_000_000 + (sec * 1e6).round() as i64;
    Some(if neg { -us } else { us })
}

/// A silencedetect event in a stderr line: `Some(true)` when silence starts,
/// `Some(false)` when it ends. Accepts the `ametadata` print form our argv uses
/// (`lavfi.silence_start=12.5`) and silencedetect's own log form (`silence_start: 12.5`).
pub fn silence_event(stderr_line: &str) -> Option<bool> {
    let l = stderr_line.trim();
    if l.starts_with("lavfi.silence_start=") || has_log_key(l, "silence_start:") {
        Some(true)
    } else if l.starts_with("lavfi.silence_end=") || has_log_key(l, "silence_end:") {
        Some(false)
    } else {
        None
    }
}

/// A level print from our astats branch: `("peak"|"rms", dBFS)`; silence is `-inf`.
pub fn level_line(stderr_line: &str) -> Option<(&'static str, f64)> {
    let l = stderr_line.trim();
    let (kind, v) = if let Some(v) = l.strip_prefix("lavfi.astats.Overall.Peak_level=") {
        ("peak", v)
    } else if let Some(v) = l.strip_prefix("lavfi.astats.Overall.RMS_level=") {
        ("rms", v)
    } else {
        return None;
    };
    let db: f64 = v.trim().parse().ok()?;
    (!db.is_nan()).then_some((kind, db))
}

/// ametadata's per-frame header (`frame:12 pts:... pts_time:...`): noise in the log.
pub fn is_metadata_frame_line(stderr_line: &str) -> bool {
    let l = stderr_line.trim();
    l.starts_with("frame:") && l.contains(" pts_time:")
}

/// A tee slave giving up: `[tee @ 0x..] Slave muxer #0 failed: No space left on device,
/// continuing with 1/2 slaves.` → `(1, "No space left on device")`. Our legs: 0 is RTSP,
/// 1 the recording, whatever their place in the tee (`argv::TEE_SLAVE_*`: the segment leg
/// is slave #0, RTSP #1). The RTSP leg's fifo overflowing (`[fifo @ 0x..] FIFO queue
/// full`: the server stopped taking our data, or never finished the handshake) counts as
/// the RTSP leg failing: only the RTSP leg has a fifo.
pub fn tee_leg_failed(stderr_line: &str) -> Option<(usize, String)> {
    if stderr_line.contains("[fifo @ ") && stderr_line.contains("FIFO queue full") {
        return Some((0, STALLED.into()));
    }
    let rest = stderr_line.split_once("Slave muxer #")?.1;
    let (n, why) = rest.split_once(" failed: ")?;
    let n: usize = n.trim().parse().ok()?;
    let n = match n {
        crate::ffmpeg::argv::TEE_SLAVE_RTSP => 0,
        crate::ffmpeg::argv::TEE_SLAVE_SEGMENT => 1,
        other => other,
    };
    let why = why.split(", continuing with").next().unwrap_or(why).trim();
    let words = if n == 0 { rtsp_words(why) } else { None };
    Some((n, words.unwrap_or_else(|| redact(why))))
}

/// What the RTSP leg's fifo overflowing means to an operator.
pub const STALLED: &str = "RTSP server not answering (not taking our data)";

/// ffmpeg 5.1's words for an RTSP server that accepts and never answers, in ours: the
/// handshake read timing out (`-timeout`) surfaces as "Invalid data found when processing
/// input", a connect that never completes as "Connection timed out".
fn rtsp_words(why: &str) -> Option<String> {
    if why.contains("Invalid data found when processing input") {
        Some("RTSP server not answering (no valid RTSP reply)".into())
    } else if why.contains("Connection timed out") {
        Some("RTSP server not answering (connect timed out)".into())
    } else {
        None
    }
}

fn has_log_key(l: &str, key: &str) -> bool {
    l.starts_with("[silencedetect") && l.contains(key)
}

/// Whether ffmpeg's last words say its capture device went away (ALSA returns EIO or
/// ENODEV when a USB card is pulled); the wrapper then looks for the card a little longer.
pub fn looks_unplugged(stderr_tail: &[String]) -> bool {
    stderr_tail
        .iter()
        .rev()
        .take(5)
        .any(|l| l.contains("Input/output error") || l.contains("No such device"))
}

/// The most telling line of ffmpeg's last stderr lines, in words, credentials hidden.
/// `None` when the tail holds nothing but noise.
pub fn exit_reason(stderr_tail: &[String]) -> Option<String> {
    let lines: Vec<String> = stderr_tail
        .iter()
        .map(|l| strip_context(l.trim()))
        .filter(|l| !l.is_empty() && !is_noise(l))
        .collect();
    // Root causes first; within one kind the latest line wins.
    for rule in RULES {
        if let Some(r) = lines.iter().rev().find_map(|l| rule(l)) {
            return Some(redact(&r));
        }
    }
    let generic = lines.iter().rev().find(|l| {
        let low = l.to_ascii_lowercase();
        ERROR_WORDS.iter().any(|w| low.contains(w)) && !is_vague(l)
    });
    generic
        .or_else(|| lines.iter().rev().find(|l| !is_vague(l)))
        .or_else(|| lines.last())
        .map(|l| redact(l))
}

type Rule = fn(&str) -> Option<String>;

const RULES: &[Rule] = &[
    |l| {
        l.contains("cannot open audio device")
            .then(|| l.to_string())
    },
    |l| {
        (l.starts_with("Could not write header") && l.contains("Invalid data found"))
            .then(|| "RTSP server not answering (no valid RTSP reply)".to_string())
    },
    connection_failed,
    |l| {
        l.starts_with("Failed to resolve hostname")
            .then(|| l.to_string())
    },
    rtsp_method_failed,
    |l| l.contains("not supported in RTP").then(|| l.to_string()),
    |l| {
        ["Broken pipe", "Connection reset by peer"]
            .iter()
            .find(|w| l.contains(*w))
            .map(|w| format!("RTSP connection lost ({w})"))
    },
];

/// `Connection to tcp://H:P?timeout=0 failed: Connection refused` →
/// `cannot connect to H:P (Connection refused)`.
fn connection_failed(l: &str) -> Option<String> {
    let rest = l.strip_prefix("Connection to ")?;
    let (target, why) = rest.split_once(" failed: ")?;
    let addr = target.split_once("://").map_or(target, |(_, a)| a);
    let addr = addr.split('?').next().unwrap_or(addr);
    if why.contains("Connection timed out") {
        return Some(format!(
            "RTSP server not answering (cannot connect to {addr}: connect timed out)"
        ));
    }
    Some(format!("cannot connect to {addr} ({})", why.trim()))
}

/// `method ANNOUNCE failed: 401 Unauthorized` (MediaMTX refusing us).
fn rtsp_method_failed(l: &str) -> Option<String> {
    let i = l.find("method ")?;
    let s = &l[i..];
    s.contains(" failed: ")
        .then(|| format!("RTSP server refused: {s}"))
}

const ERROR_WORDS: &[&str] = &[
    "error",
    "failed",
    "cannot",
    "could not",
    "invalid",
    "not supported",
    "no such",
    "unable",
    "refused",
    "denied",
];

/// `[alsa @ 0x55d0...] msg` → `msg`; the address means nothing to a reader.
fn strip_context(l: &str) -> String {
    if l.starts_with('[') {
        if let Some(end) = l.find("] ") {
            if l[..end].contains(" @ ") {
                return l[end + 2..].trim().to_string();
            }
        }
    }
    l.to_string()
}

/// Lines that never explain an exit: repeats, benign warnings, our own echoes.
fn is_noise(l: &str) -> bool {
    const NOISE: &[&str] = &[
        "Last message repeated",
        "Thread message queue blocking",
        "non monotonically increasing dts",
        "Guessed Channel Layout",
        "No bit rate set",
        "Input channel layouts overlap",
        "fake-ffmpeg: ",
    ];
    NOISE.iter().any(|n| l.contains(n))
        || l.starts_with("frame:")
        || l.starts_with("lavfi.")
        || l.starts_with("Press [q]")
}

/// ffmpeg's follow-up lines that only repeat a cause given earlier.
fn is_vague(l: &str) -> bool {
    l.starts_with("Error initializing output stream")
        || l.starts_with("Could not write header")
        || l.starts_with("Conversion failed")
        || l.starts_with("ALSA lib ")
        || l.ends_with(": Input/output error")
}

/// Hide `user:password@` in every URL-looking word.
fn redact(l: &str) -> String {
    if !l.contains("://") {
        return l.to_string();
    }
    l.split(' ')
        .map(|w| {
            if w.contains("://") {
                redact_url(w)
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn unplug_words() {
        let t = |l: &[&str]| l.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let table: [(&[&str], bool); 5] = [
            (&["[alsa @ 0x1] ALSA read error: No such device"], true),
            (
                &[
                    "plughw:CARD=mic,DEV=0: Input/output error",
                    "Exiting normally",
                ],
                true,
            ),
            (
                &["[alsa @ 0x1] cannot open audio device x (Device or resource busy)"],
                false,
            ),
            (&["Conversion failed!"], false),
            (&[], false),
        ];
        for (lines, want) in table {
            assert_eq!(looks_unplugged(&t(lines)), want, "{lines:?}");
        }
    }

    use super::*;

    fn parse_all(text: &str) -> Vec<Progress> {
        let mut p = ProgressParser::default();
        text.lines().filter_map(|l| p.feed(l)).collect()
    }

    #[test]
    fn blocks_from_real_ffmpeg_shape() {
        let text = "bitrate= 128.4kbits/s\ntotal_size=32768\nout_time_us=2040000\n\
                    out_time_ms=2040000\nout_time=00:00:02.040000\ndup_frames=0\n\
                    drop_frames=0\nspeed=1.01x\nprogress=continue\n\
                    bitrate=N/A\ntotal_size=N/A\nout_time_us=N/A\nout_time=N/A\n\
                    speed=N/A\nprogress=end\n";
        let got = parse_all(text);
        assert_eq!(
            got,
            vec![
                Progress {
                    out_time_us: Some(2_040_000),
                    total_size: Some(32768),
                    bitrate_kbps: Some(128.4),
                    speed: Some(1.01),
                    end: false,
                },
                Progress {
                    end: true,
                    ..Progress::default()
                },
            ]
        );
    }

    #[test]
    fn fields_do_not_leak_between_blocks_and_out_time_is_a_fallback() {
        let got = parse_all(
            "out_time_us=5\nspeed= 0.5x\nprogress=continue\n\
             out_time=01:02:03.500000\nprogress=continue\n\
             out_time=-00:00:00.000100\nprogress=continue\n",
        );
        assert_eq!(got[0].out_time_us, Some(5));
        assert_eq!(got[0].speed, Some(0.5));
        assert_eq!(got[1].speed, None);
        assert_eq!(got[1].out_time_us, Some(3_723_500_000));
        assert_eq!(got[2].out_time_us, Some(-100));
    }

    #[test]
    fn garbage_never_panics() {
        for l in [
            "",
            "=",
            "progress",
            "out_time_us=abc",
            "speed=inf x",
            "speed=NaNx",
            "bitrate=kbits/s",
            "out_time=1:2",
            "out_time=::",
            "total_size=-1",
            "\u{feff}progress=continue",
        ] {
            let mut p = ProgressParser::default();
            let _ = p.feed(l);
        }
        let got = parse_all("speed=NaNx\nbitrate=xkbits/s\ntotal_size=-1\nprogress=continue\n");
        assert_eq!(got, vec![Progress::default()]);
    }

    #[test]
    fn silence_events() {
        let table: &[(&str, Option<bool>)] = &[
            ("lavfi.silence_start=1", Some(true)),
            ("lavfi.silence_end=2.00002", Some(false)),
            ("lavfi.silence_duration=1.00002", None),
            ("frame:70   pts:71680   pts_time:1.49333", None),
            ("[silencedetect @ 0x55] silence_start: 1", Some(true)),
            (
                "[silencedetect @ 0x55] silence_end: 2.5 | silence_duration: 1.5",
                Some(false),
            ),
            ("[silencedetect @ 0x55] [info] silence_start: 1", Some(true)),
            ("Connection to tcp://x/silence_start: failed", None),
            ("", None),
        ];
        for (line, want) in table {
            assert_eq!(silence_event(line), *want, "{line}");
        }
    }

    fn tail(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exit_reasons() {
        let table: &[(&[&str], Option<&str>)] = &[
            (
                &[
                    "ALSA lib confmisc.c:165:(snd_config_get_card) Cannot get card index for Nope",
                    "[alsa @ 0x557e30ff5900] cannot open audio device plughw:CARD=Nope,DEV=0 (No such device)",
                    "plughw:CARD=Nope,DEV=0: Input/output error",
                ],
                Some("cannot open audio device plughw:CARD=Nope,DEV=0 (No such device)"),
            ),
            (
                &[
                    "[libopus @ 0x558b16126400] No bit rate set. Defaulting to 64000 bps.",
                    "[tcp @ 0x558b16152680] Connection to tcp://127.0.0.1:1?timeout=0 failed: Connection refused",
                    "Could not write header for output file #0 (incorrect codec parameters ?): Connection refused",
                    "Error initializing output stream 0:0 -- ",
                ],
                Some("cannot connect to 127.0.0.1:1 (Connection refused)"),
            ),
            (
                &["[tcp @ 0x5] Failed to resolve hostname nonexistent.invalid: Name or service not known"],
                Some("Failed to resolve hostname nonexistent.invalid: Name or service not known"),
            ),
            (
                &["[rtsp @ 0x5] method ANNOUNCE failed: 401 Unauthorized"],
                Some("RTSP server refused: method ANNOUNCE failed: 401 Unauthorized"),
            ),
            (
                &[
                    "[rtp @ 0x5] Multistream opus not supported in RTP",
                    "Could not write header for output file #0 (incorrect codec parameters ?): Invalid argument",
                ],
                Some("Multistream opus not supported in RTP"),
            ),
            (
                &[
                    "av_interleaved_write_frame(): Broken pipe",
                    "    Last message repeated 1 times",
                    "Error writing trailer of rtsp://u:secret@127.0.0.1:8554/x: Broken pipe",
                ],
                Some("RTSP connection lost (Broken pipe)"),
            ),
            (
                &["fake-ffmpeg: -i x", "Error opening input: simulated crash", "frame:1 pts:2"],
                Some("Error opening input: simulated crash"),
            ),
            (
                &["Error while opening rtsp://admin:pw@h/x for writing"],
                Some("Error while opening rtsp://***@h/x for writing"),
            ),
            (
                &[
                    "Could not write header for output file #0 (incorrect codec parameters ?): Invalid data found when processing input",
                    "Error initializing output stream 0:0 -- ",
                    "Conversion failed!",
                ],
                Some("RTSP server not answering (no valid RTSP reply)"),
            ),
            (
                &["[tcp @ 0x7f] Connection to tcp://127.0.0.1:19045?timeout=3000000 failed: Connection timed out"],
                Some("RTSP server not answering (cannot connect to 127.0.0.1:19045: connect timed out)"),
            ),
            (&["something odd happened"], Some("something odd happened")),
            (&["Error initializing output stream 0:0 -- "], Some("Error initializing output stream 0:0 --")),
            (&["    Last message repeated 3 times", "", "lavfi.silence_start=1"], None),
            (&[], None),
        ];
        for (lines, want) in table {
            assert_eq!(exit_reason(&tail(lines)).as_deref(), *want, "{lines:?}");
        }
    }
}

#[cfg(test)]
mod media_tests {
    use super::*;

    #[test]
    fn level_lines() {
        let table: &[(&str, Option<(&str, f64)>)] = &[
            (
                "lavfi.astats.Overall.Peak_level=-20.000000",
                Some(("peak", -20.0)),
            ),
            (
                "lavfi.astats.Overall.RMS_level=-23.010300",
                Some(("rms", -23.0103)),
            ),
            (
                "lavfi.astats.Overall.RMS_level=-inf",
                Some(("rms", f64::NEG_INFINITY)),
            ),
            ("lavfi.astats.Overall.RMS_level=nan", None),
            ("lavfi.astats.1.RMS_level=-3", None),
            ("lavfi.silence_start=1.5", None),
        ];
        for (l, want) in table {
            assert_eq!(level_line(l), *want, "{l}");
        }
        assert!(is_metadata_frame_line("frame:3    pts:144000  pts_time:3"));
        assert!(!is_metadata_frame_line("frame=  3 fps"));
    }

    #[test]
    fn tee_failures() {
        let table: &[(&str, Option<(usize, &str)>)] = &[
            (
                "[tee @ 0x5566b0793a80] Slave muxer #1 failed: Broken pipe, continuing with 1/2 slaves.",
                Some((0, "Broken pipe")),
            ),
            (
                "[tee @ 0x55] Slave muxer #0 failed: No space left on device, continuing with 1/2 slaves.",
                Some((1, "No space left on device")),
            ),
            ("[tee @ 0x55] All tee outputs failed.", None),
            ("Slave muxer #x failed: y", None),
            // Real ffmpeg 5.1 lines for a server that accepts and never answers, one that
            // never completes the connect, and one that stops reading (docs/ffmpeg.md).
            (
                "[tee @ 0x55ea91b5e540] Slave muxer #1 failed: Invalid data found when processing input, continuing with 1/2 slaves.",
                Some((0, "RTSP server not answering (no valid RTSP reply)")),
            ),
            (
                "[tee @ 0x55eebba1a080] Slave muxer #1 failed: Connection timed out, continuing with 1/2 slaves.",
                Some((0, "RTSP server not answering (connect timed out)")),
            ),
            ("[fifo @ 0x55ea91b62ac0] FIFO queue full", Some((0, STALLED))),
            ("FIFO queue full", None),
        ];
        for (l, want) in table {
            assert_eq!(
                tee_leg_failed(l),
                want.map(|(n, w)| (n, w.to_string())),
                "{l}"
            );
        }
    }
}
