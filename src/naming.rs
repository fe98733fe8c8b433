//! Stream names and legacy device keys (SPEC §4, §5). Compatibility: listeners use these URLs,
//! so every rule here is deterministic and byte-for-byte the bash tool's.

use md5::{Digest, Md5};

/// Names a stream may not take because MediaMTX or our tooling uses them as paths.
const RESERVED: [&str; 5] = ["control", "stats", "api", "metrics", "health"];

/// Longest automatic name; longer ones are cut to 39 chars + `_` + 8 hex digits of MD5.
const MAX_NAME: usize = 48;

/// Lowercase; every character outside `[0-9a-z]` becomes `_`; runs collapse; trim `_`.
pub fn sanitize(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().flat_map(|c| c.to_lowercase()) {
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

/// SPEC §4 rule 3: the automatic stream name of a `/dev/snd/by-id` name.
///
/// The `usb-audio-`/`usb_audio_` prefix is matched case-sensitively, as the bash tool did.
/// If nothing usable is left (e.g. the name was only punctuation), the result is
/// `card_<md5-8 of the input>`: deterministic, never time-based.
pub fn stream_name_from_by_id(by_id: &str) -> String {
    let rest = by_id
        .strip_prefix("usb-audio-")
        .or_else(|| by_id.strip_prefix("usb_audio_"))
        .unwrap_or(by_id);
    let name = sanitize(rest);
    if name.is_empty() {
        return format!("card_{}", md5_8(by_id));
    }
    reserve_and_cut(name)
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

/// A name given by the operator (`-n`, `[multiplex] name`, TOML `stream`, `STREAM_NAME`):
/// sanitised, reserved words prefixed and long names cut like an automatic name (SPEC §4),
/// so every stream name obeys the same rules. `None` when nothing usable is left.
pub fn stream_name(given: &str) -> Option<String> {
    let name = sanitize(given);
    (!name.is_empty()).then(|| reserve_and_cut(name))
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
            // Non-ASCII characters become `_` and collapse.
            ("usb-Müller_Mikrofon-00", "usb_m_ller_mikrofon_00"),
            ("usb-音声-00", "usb_00"),
            // Prefix match is case-sensitive and only at the start.
            ("USB-AUDIO-x", "usb_audio_x"),
            ("x-usb-audio-y", "x_usb_audio_y"),
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
            ("---", ""),
        ];
        for (input, want) in table {
            assert_eq!(device_key(input), want, "{input}");
        }
    }
}
