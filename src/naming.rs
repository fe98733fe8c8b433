//! Stream names and legacy device keys (SPEC §4, §5). Compatibility: listeners use these URLs,
//! so every rule here is deterministic and byte-for-byte the bash tool's under `LC_ALL=C`
//! (what cron gives it): no Unicode case mapping, every non-ASCII character is "other".

use md5::{Digest, Md5};

/// Names a stream may not take because MediaMTX or our tooling uses them as paths.
const RESERVED: [&str; 5] = ["control", "stats", "api", "metrics", "health"];

/// Longest automatic name; longer ones are cut to 39 chars + `_` + 8 hex digits of MD5.
const MAX_NAME: usize = 48;

/// Longest final stream name (bash `generate_stream_path`), after the `stream_` prefix.
const MAX_PATH: usize = 64;

/// ASCII-lowercase; every character outside `[0-9a-z]` becomes `_`; runs collapse; trim `_`.
/// Only ASCII letters are lowercased (bash `tr '[:upper:]' '[:lower:]'` under `C`): `K`
/// (U+212A) and `İ` are not letters here and become `_` like any other non-ASCII character.
pub fn sanitize(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '_'
        };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    out.trim_matches('_').to_string()
}

/// First 8 hex digits of the MD5 of `s` (as `printf %s "$s" | md5sum | cut -c1-8`).
pub fn md5_8(s: &str) -> String {
    Md5::digest(s.as_bytes())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// bash's `echo "$name"` takes a word made only of `-n`/`-e`/`-E` letters (`-n`, `-en`, ...)
/// as options and prints no name at all: such a rest sanitises to nothing.
fn is_echo_option(s: &str) -> bool {
    s.len() > 1 && s.starts_with('-') && s[1..].bytes().all(|b| matches!(b, b'n' | b'e' | b'E'))
}

/// SPEC §4 rule 3 then rule 5: the stream name of a device name (a `/dev/snd/by-id` name,
/// or the rule 4 `usb-audio-…` name of a card without one).
///
/// A leading `usb-audio-` then a leading `usb_audio_` are dropped (both, in that order, and
/// case-sensitively, as bash `sanitize_path_name` does). If nothing usable is left (e.g. the
/// name was only punctuation), the result is `card_<md5-8 of the input>`: deterministic,
/// never bash's time-based `stream_<epoch>`.
pub fn stream_name_from_by_id(by_id: &str) -> String {
    let rest = by_id.strip_prefix("usb-audio-").unwrap_or(by_id);
    let rest = rest.strip_prefix("usb_audio_").unwrap_or(rest);
    let name = if is_echo_option(rest) {
        String::new()
    } else {
        sanitize(rest)
    };
    if name.is_empty() {
        return format!("card_{}", md5_8(by_id));
    }
    finish(reserve_and_cut(name))
}

/// The rest of SPEC §4 rule 3 on an already sanitised name: reserved words get `stream_`,
/// names longer than 48 characters become 39 characters + `_` + MD5-8 of the whole.
fn reserve_and_cut(mut name: String) -> String {
    if RESERVED.contains(&name.as_str()) {
        name = format!("stream_{name}");
    }
    if name.len() > MAX_NAME {
        // `name` is ASCII after sanitize, so byte slicing is safe.
        name = format!("{}_{}", &name[..39], md5_8(&name));
    }
    name
}

/// SPEC §4 rule 5 (bash `generate_stream_path`): a name that does not match
/// `^[a-zA-Z][a-zA-Z0-9_-]*$` gets the prefix `stream_`; the result is cut to 64 characters.
pub fn finish(name: String) -> String {
    let b = name.as_bytes();
    let ok = b.first().is_some_and(u8::is_ascii_alphabetic)
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-');
    let mut name = if ok { name } else { format!("stream_{name}") };
    if name.len() > MAX_PATH {
        let mut end = MAX_PATH;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

/// A name given by the operator (`-n`, `[multiplex] name`, TOML `stream`, `STREAM_NAME`):
/// sanitised, reserved words prefixed, long names cut and digit-leading names prefixed like
/// an automatic name (SPEC §4), so every stream name obeys the same rules. `None` when
/// nothing usable is left.
pub fn stream_name(given: &str) -> Option<String> {
    let name = sanitize(given);
    (!name.is_empty()).then(|| finish(reserve_and_cut(name)))
}

/// SPEC §4 rule 2: a card id set by a udev mapping rule is used as the stream name as is.
pub fn is_udev_card_id(card_id: &str) -> bool {
    let b = card_id.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_lowercase()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// SPEC §4 rule 4: the device name of a card with no by-id link, from the text between the
/// brackets of its `/proc/asound/cards` line as the kernel pads it (`Microphones    `):
/// `usb-audio-` + that text with ASCII letters lowercased, spaces turned into `-` and every
/// other character outside `[a-z0-9-]` deleted (bash `detect_audio_devices`). `None` when
/// nothing is left (bash then skips the card).
pub fn cards_fallback_name(bracketed: &str) -> Option<String> {
    if is_echo_option(bracketed) {
        return None; // bash's `echo "$card_name"` printed nothing
    }
    let safe: String = bracketed
        .chars()
        .map(|c| {
            if c == ' ' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
        .collect();
    (!safe.is_empty()).then(|| format!("usb-audio-{safe}"))
}

/// Legacy `<KEY>` of `DEVICE_<KEY>_<PARAM>`: non-alphanumerics → `_`, runs collapse, trim,
/// `dev_` prefix when it starts with a digit, uppercase. Empty when nothing usable is left.
pub fn device_key(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    let out = out.trim_matches('_');
    let out = if out.starts_with(|c: char| c.is_ascii_digit()) {
        format!("dev_{out}")
    } else {
        out.to_string()
    };
    out.to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_id_names() {
        let table = [
            // The three SPEC §4 examples.
            (
                "usb-Blue_Microphones_Yeti_Stereo_Microphone_REV8-00",
                "usb_blue_microphones_yeti_stereo_microp_98fa24af",
            ),
            ("usb-MV7-00", "usb_mv7_00"),
            ("usb-audio-blue-yeti", "blue_yeti"),
            ("usb_audio_Zoom H2n", "zoom_h2n"),
            // Reserved words get a prefix, also after the usb-audio- drop.
            ("usb-audio-control", "stream_control"),
            ("Stats", "stream_stats"),
            ("api", "stream_api"),
            ("usb-audio-metrics", "stream_metrics"),
            ("__health__", "stream_health"),
            ("healthy", "healthy"),
            // Non-ASCII characters become `_` and collapse; only ASCII letters are lowercased.
            ("usb-Müller_Mikrofon-00", "usb_m_ller_mikrofon_00"),
            ("usb-音声-00", "usb_00"),
            ("usb-Kelvin_\u{212a}_Mic-00", "usb_kelvin_mic_00"),
            ("usb-\u{130}stanbul_Mic-00", "usb_stanbul_mic_00"),
            ("usb-ÄÖÜ_Mic-00", "usb_mic_00"),
            // Prefix match is case-sensitive and only at the start; both prefixes in turn.
            ("USB-AUDIO-x", "usb_audio_x"),
            ("x-usb-audio-y", "x_usb_audio_y"),
            ("usb-audio-usb_audio_mic", "mic"),
            ("usb_audio_usb-audio-mic", "usb_audio_mic"),
            // Rule 5: a name that does not start with a letter gets `stream_`.
            ("usb-audio-1234", "stream_1234"),
            ("2nd_Mic-00", "stream_2nd_mic_00"),
            ("usb_audio_48k", "stream_48k"),
            ("_9", "stream_9"),
        ];
        for (input, want) in table {
            assert_eq!(stream_name_from_by_id(input), want, "{input}");
        }
    }

    #[test]
    fn long_names_are_cut_with_md5() {
        let exactly_48 = "a".repeat(48);
        assert_eq!(stream_name_from_by_id(&exactly_48), exactly_48);
        let long = "b".repeat(49);
        let got = stream_name_from_by_id(&long);
        assert_eq!(got.len(), 48);
        assert_eq!(&got[..40], &format!("{}_", "b".repeat(39)));
        assert_eq!(&got[40..], md5_8(&long));
        // A long digit-leading name keeps its hashed form and gets the prefix in front.
        let digits = "1".repeat(60);
        let got = stream_name_from_by_id(&digits);
        assert_eq!(got, format!("stream_{}_{}", "1".repeat(39), md5_8(&digits)));
        assert_eq!(got.len(), 55);
        let d48 = "7".repeat(48);
        assert_eq!(stream_name_from_by_id(&d48), format!("stream_{d48}"));
        // md5 of the sanitised string, known value (`printf %s x | md5sum`).
        assert_eq!(md5_8("x"), "9dd4e461");
    }

    #[test]
    fn empty_results_fall_back_deterministically() {
        let a = stream_name_from_by_id("usb-audio-");
        assert_eq!(a, format!("card_{}", md5_8("usb-audio-")));
        assert_eq!(
            stream_name_from_by_id("---"),
            format!("card_{}", md5_8("---"))
        );
        assert_ne!(stream_name_from_by_id("---"), stream_name_from_by_id("--"));
        assert_eq!(stream_name_from_by_id(""), format!("card_{}", md5_8("")));
        // bash's `echo "$name"` prints nothing for an echo option: no name either.
        for opt in ["usb-audio--n", "usb-audio--eE"] {
            assert_eq!(stream_name_from_by_id(opt), format!("card_{}", md5_8(opt)));
        }
        assert_eq!(stream_name_from_by_id("usb-audio--x"), "x");
        assert_eq!(
            stream_name_from_by_id("usb-audio--"),
            format!("card_{}", md5_8("usb-audio--"))
        );
    }

    #[test]
    fn rule_5_prefix_and_cut() {
        let table = [
            ("usb_mv7", "usb_mv7"),
            ("Mic-1", "Mic-1"),
            ("1234", "stream_1234"),
            ("_x", "stream__x"),
            ("a.b", "stream_a.b"),
            ("", "stream_"),
        ];
        for (input, want) in table {
            assert_eq!(finish(input.to_string()), want, "{input}");
        }
        assert_eq!(finish("a".repeat(70)), "a".repeat(64));
        assert_eq!(finish("9".repeat(70)), format!("stream_{}", "9".repeat(57)));
    }

    #[test]
    fn cards_fallback_names() {
        let table = [
            ("Microphones    ", Some("usb-audio-microphones----")),
            ("Device_1   ", Some("usb-audio-device1---")),
            ("Device_1", Some("usb-audio-device1")),
            ("USB Audio", Some("usb-audio-usb-audio")),
            ("Mic.2+\u{130}", Some("usb-audio-mic2")),
            ("___", None),
            ("", None),
            ("-n", None),
            ("-n  ", Some("usb-audio--n--")),
        ];
        for (input, want) in table {
            assert_eq!(cards_fallback_name(input).as_deref(), want, "{input:?}");
        }
        // Its stream name (rules 3 and 5) and full key (SPEC §4 rule 4, §5).
        let name = cards_fallback_name("Microphones    ").unwrap();
        assert_eq!(stream_name_from_by_id(&name), "microphones");
        assert_eq!(device_key(&name), "USB_AUDIO_MICROPHONES");
        let name = cards_fallback_name("2Mic           ").unwrap();
        assert_eq!(stream_name_from_by_id(&name), "stream_2mic");
        assert_eq!(device_key(&name), "USB_AUDIO_2MIC");
    }

    #[test]
    fn given_names_follow_the_same_rules() {
        let sixty = "m".repeat(60);
        let table = [
            ("all_mics", Some("all_mics".to_string())),
            ("All Mics!", Some("all_mics".into())),
            ("api", Some("stream_api".into())),
            ("API", Some("stream_api".into())),
            ("health", Some("stream_health".into())),
            // No usb-audio- drop: that rule is about by-id names only.
            ("usb-audio-mix", Some("usb_audio_mix".into())),
            (
                &sixty,
                Some(format!("{}_{}", "m".repeat(39), md5_8(&sixty))),
            ),
            ("---", None),
            ("", None),
            ("2nd mix", Some("stream_2nd_mix".into())),
            ("\u{212a}itchen", Some("itchen".into())),
        ];
        for (input, want) in table {
            assert_eq!(stream_name(input), want, "{input}");
        }
        assert_eq!(stream_name(&sixty).unwrap().len(), 48);
    }

    #[test]
    fn udev_card_ids() {
        for ok in ["a", "blue-yeti", "mic_1", &format!("a{}", "b".repeat(31))] {
            assert!(is_udev_card_id(ok), "{ok}");
        }
        for bad in [
            "",
            "Microphones",
            "1mic",
            "_mic",
            "mic.1",
            "mic 1",
            "mïc",
            &format!("a{}", "b".repeat(32)),
        ] {
            assert!(!is_udev_card_id(bad), "{bad}");
        }
    }

    #[test]
    fn device_keys() {
        let table = [
            ("usb_mv7_00", "USB_MV7_00"),
            ("blue-yeti", "BLUE_YETI"),
            (
                "usb-Blue_Microphones_Yeti_Stereo_Microphone_REV8-00",
                "USB_BLUE_MICROPHONES_YETI_STEREO_MICROPHONE_REV8_00",
            ),
            ("__a..b__", "A_B"),
            ("2nd-mic", "DEV_2ND_MIC"),
            ("Müller", "M_LLER"),
            ("usb-\u{212a}elvin-00", "USB_ELVIN_00"),
            ("usb-audio-device1", "USB_AUDIO_DEVICE1"),
            ("---", ""),
        ];
        for (input, want) in table {
            assert_eq!(device_key(input), want, "{input}");
        }
    }
}
