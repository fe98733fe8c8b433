//! From detected devices and configuration to the list of streams to run (SPEC §4, §5).
//!
//! Pure: the same devices and configuration always give the same plan, so a rescan or a
//! reload can compare plans to decide which streams to touch.

use std::collections::BTreeMap;

use crate::config::legacy::DeviceFile;
use crate::config::params::Params;
use crate::config::resolve::{self, Lookup};
use crate::config::Settings;
use crate::devices::Device;
use crate::exit::Error;
use crate::naming::{is_udev_card_id, sanitize, stream_name, stream_name_from_by_id};
use crate::sticky::{self, Candidate, DeviceKey, NameMap, Names};

/// One stream to run (or list, when disabled).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StreamSpec {
    pub name: String,
    /// `None` only for a multiplex stream.
    pub device: Option<Device>,
    /// `plughw:CARD=<card id>,DEV=0` unless configured (TOML `alsa_device`, `DEVICE_<KEY>_ALSA_DEVICE`).
    pub alsa_device: String,
    pub params: Params,
    /// Full publish URL `<mediamtx.rtsp_url>/<name>`; may hold credentials: never print it.
    #[serde(skip)]
    pub url: String,
    /// `url` with credentials shown as `***`.
    pub display_url: String,
    /// Disabled streams are listed but not run.
    pub enabled: bool,
    /// Why the stream looks the way it does (renamed, suffixed, overridden, disabled).
    pub notes: Vec<String>,
}

/// The one mixed stream of `--mode multiplex`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MultiplexSpec {
    pub name: String,
    pub inputs: Vec<StreamSpec>,
    pub params: Params,
    #[serde(skip)]
    pub url: String,
    pub display_url: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Plan {
    pub streams: Vec<StreamSpec>,
    pub warnings: Vec<String>,
    /// The sticky-name map to remember (saved map plus this plan's assignments).
    #[serde(skip)]
    pub names: NameMap,
    /// The assignments of the devices present now.
    #[serde(skip)]
    pub live: NameMap,
}

/// SPEC §4 rules 2–5: udev-style card id, else the by-id name, else the `/proc/asound/cards`
/// fallback name (else, when that left nothing, the card id), sanitised and prefixed.
pub fn automatic_name(d: &Device) -> String {
    if is_udev_card_id(&d.card_id) {
        return d.card_id.clone();
    }
    stream_name_from_by_id(d.device_name().unwrap_or(&d.card_id))
}

/// `_1_4` from `...-usb-0:1.4:1.0` (the port chain); `None` when nothing usable is left.
pub fn port_suffix(by_path: &str) -> Option<String> {
    let last = by_path.rsplit('-').next().unwrap_or(by_path);
    let parts: Vec<&str> = last.split(':').collect();
    let s = match parts.as_slice() {
        [_bus, ports, ..] => sanitize(ports),
        _ => sanitize(by_path),
    };
    (!s.is_empty()).then(|| format!("_{s}"))
}

/// Publish URL for `name`, with `user:password@` from the settings when a user is set.
pub fn publish_url(settings: &Settings, name: &str) -> String {
    let base = settings.mediamtx.rtsp_url.trim_end_matches('/');
    let url = format!("{base}/{name}");
    let Some(user) = &settings.mediamtx.username else {
        return url;
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return url;
    };
    if crate::util::split_userinfo(&url).is_some() {
        return url; // the URL carries its own credentials
    }
    let auth = match &settings.mediamtx.password {
        Some(p) if !p.is_empty() => format!("{}:{}", userinfo(user), userinfo(p)),
        _ => userinfo(user),
    };
    format!("{scheme}://{auth}@{rest}")
}

/// Percent-encode the characters that would end the userinfo part of a URL.
fn userinfo(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '%' | '@' | ':' | '/' | '?' | '#' | '[' | ']' | ' ' => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// One stream per detected device, with no remembered names (a first start): identical
/// names are told apart by USB port path, the lowest port keeping the plain name.
pub fn plan(
    settings: &Settings,
    file: Option<&DeviceFile>,
    devices: &[Device],
) -> Result<Plan, Error> {
    plan_with_names(settings, file, devices, &Names::default())
}

/// One stream per detected device; identical names are told apart by USB port path, and
/// kept sticky through `names` (see `sticky::assign`). `Plan::names`/`Plan::live` are what
/// the supervisor carries to the next scan (and writes to `paths.names_file`).
pub fn plan_with_names(
    settings: &Settings,
    file: Option<&DeviceFile>,
    devices: &[Device],
    names: &Names,
) -> Result<Plan, Error> {
    // Pass 0: a twin whose by-id link udev has not (re)made yet keeps its by-id name.
    let recalled: Vec<Device> = devices
        .iter()
        .map(|d| {
            let mut d = d.clone();
            if d.by_id.is_none() {
                d.by_id = sticky::recall_by_id(d.by_path.as_deref(), d.usbid.as_deref(), names);
            }
            d
        })
        .collect();
    let devices = recalled.as_slice();
    // Pass 1: automatic and explicit names.
    struct Named<'d> {
        device: &'d Device,
        auto: String,
        base: String,
        explicit: bool,
        notes: Vec<String>,
    }
    let mut named: Vec<Named> = devices
        .iter()
        .map(|d| {
            let auto = automatic_name(d);
            let lookup = Lookup::new(settings, file, &[&auto], d.device_name());
            let mut notes = Vec::new();
            let explicit = lookup
                .stream_name()
                .and_then(|s| Some((stream_name(&s.value)?, s.source)));
            let base = match explicit.clone() {
                Some((name, source)) => {
                    notes.push(format!(
                        "stream name set in config ({}; automatic name {auto})",
                        source.as_str()
                    ));
                    name
                }
                None => auto.clone(),
            };
            Named {
                device: d,
                auto,
                base,
                explicit: explicit.is_some(),
                notes,
            }
        })
        .collect();

    // Pass 2: duplicates and sticky names (sticky::assign).
    let key = |d: &Device| DeviceKey {
        by_id: d.by_id.clone().unwrap_or_else(|| d.card_id.clone()),
        port: d.by_path.clone(),
    };
    let mut key_count: BTreeMap<DeviceKey, usize> = BTreeMap::new();
    for n in &named {
        *key_count.entry(key(n.device)).or_default() += 1;
    }
    let cands: Vec<Candidate> = named
        .iter()
        .map(|n| {
            let d = n.device;
            let k = key(d);
            Candidate {
                // Two present devices with one key cannot be remembered apart.
                key: (key_count[&k] == 1).then_some(k),
                base: n.base.clone(),
                explicit: n.explicit,
                port_suffix: d.by_path.as_deref().and_then(port_suffix),
                card_suffix: format!("_{}", sanitize(&d.card_id)),
                by_path: d.by_path.clone(),
                card: d.card,
                usbid: d.usbid.clone(),
            }
        })
        .collect();
    let (assigned, next) = sticky::assign(&cands, &names.live, &names.saved, sticky::now());
    let live = sticky::live_of(&cands, &assigned, &next);
    let mut warnings = Vec::new();
    let mut finals = Vec::new();
    for (n, a) in named.iter_mut().zip(assigned) {
        if let Some(from) = &a.suffix_from {
            n.notes.push(format!(
                "name suffixed from {from}: duplicate of {}",
                n.base
            ));
            let d = n.device;
            if a.name != n.base && named_base_present(&cands, &n.base) {
                warnings.push(format!(
                    "card {} ({}) would also be named {}: streaming it as {}",
                    d.card, d.card_id, n.base, a.name
                ));
            }
        }
        finals.push(a.name);
    }

    // Pass 3: settings under the final name (then the base and automatic ones).
    let mut streams = Vec::new();
    for (n, name) in named.into_iter().zip(finals) {
        let d = n.device;
        let mut names: Vec<&str> = vec![&name];
        for extra in [n.base.as_str(), n.auto.as_str()] {
            if !names.contains(&extra) {
                names.push(extra);
            }
        }
        let lookup = Lookup::new(settings, file, &names, d.device_name());
        let mut notes = n.notes;
        let alsa_device = match lookup.alsa_device() {
            Some(a) => {
                notes.push(format!("ALSA device set in config ({})", a.source.as_str()));
                a.value
            }
            None => format!("plughw:CARD={},DEV=0", d.card_id),
        };
        let enabled = lookup.enabled()?;
        if !enabled.value {
            notes.push(format!("disabled in config ({})", enabled.source.as_str()));
        }
        let url = publish_url(settings, &name);
        streams.push(StreamSpec {
            display_url: crate::util::redact_url(&url),
            url,
            params: lookup.params()?,
            name,
            device: Some(d.clone()),
            alsa_device,
            enabled: enabled.value,
            notes,
        });
    }
    Ok(Plan {
        streams,
        warnings,
        names: next,
        live,
    })
}

/// More than one present device has this base name (the twin is here now).
fn named_base_present(cands: &[Candidate], base: &str) -> bool {
    cands.iter().filter(|c| c.base == base).count() > 1
}

/// The multiplex stream's name (`-n`, `[multiplex] name`): SPEC §4 like any stream name;
/// `all_mics` when nothing usable is left.
pub fn multiplex_name(settings: &Settings) -> String {
    stream_name(&settings.multiplex.name).unwrap_or_else(|| "all_mics".into())
}

/// The mixed stream: every enabled device stream of `plan` (restricted to
/// `multiplex.devices` when set), with settings from the multiplex name's entry, then
/// defaults. `None` when no input.
pub fn plan_multiplex(
    settings: &Settings,
    file: Option<&DeviceFile>,
    plan: &Plan,
) -> Result<Option<MultiplexSpec>, Error> {
    let name = multiplex_name(settings);
    let inputs: Vec<StreamSpec> = plan
        .streams
        .iter()
        .filter(|s| s.enabled)
        .filter(|s| match &settings.multiplex.devices {
            Some(allow) => allow
                .iter()
                .any(|a| sanitize(a) == s.name || stream_name(a).as_deref() == Some(&s.name)),
            None => true,
        })
        .cloned()
        .collect();
    if inputs.is_empty() {
        return Ok(None);
    }
    let params = resolve::params(settings, file, &name, None)?;
    let url = publish_url(settings, &name);
    Ok(Some(MultiplexSpec {
        display_url: crate::util::redact_url(&url),
        url,
        name,
        inputs,
        params,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::params::Source;
    use std::path::Path;

    fn dev(card: u32, id: &str, by_id: Option<&str>, by_path: Option<&str>) -> Device {
        Device {
            card,
            card_id: id.into(),
            by_id: by_id.map(Into::into),
            by_path: by_path.map(Into::into),
            usbid: Some("b58e:9e84".into()),
            cards_name: None,
        }
    }

    /// A card seen only in `/proc/asound/cards` (SPEC §4 rule 4), padded as the kernel does.
    fn fallback(card: u32, id: &str) -> Device {
        let mut d = dev(card, id, None, None);
        d.cards_name = crate::naming::cards_fallback_name(&format!("{id:<15}"));
        d
    }

    #[test]
    fn fallback_devices_use_the_full_usb_audio_key() {
        let f = DeviceFile::parse(
            Path::new("d.conf"),
            "DEVICE_USB_AUDIO_MICROPHONES_SAMPLE_RATE=44100\nDEVICE_MICROPHONES_CHANNELS=1\n",
        )
        .unwrap();
        let p = plan(
            &Settings::default(),
            Some(&f),
            &[fallback(1, "Microphones")],
        )
        .unwrap();
        let s = &p.streams[0];
        assert_eq!(s.name, "microphones");
        assert_eq!(s.params.sample_rate.value, 44100);
        assert_eq!(s.params.sample_rate.source, Source::Full);
        assert_eq!(s.params.channels.value, 1);
        assert_eq!(s.params.channels.source, Source::Friendly);
    }

    fn settings(toml: &str) -> Settings {
        Settings::from_toml(Path::new("m.toml"), toml).unwrap()
    }

    const YETI: &str = "usb-Blue_Microphones_Yeti_Stereo_Microphone_REV8-00";
    const YETI_NAME: &str = "usb_blue_microphones_yeti_stereo_microp_98fa24af";

    #[test]
    fn automatic_names() {
        let table = [
            (dev(1, "Microphones", Some(YETI), None), YETI_NAME),
            (dev(2, "blue-yeti", Some(YETI), None), "blue-yeti"),
            (dev(3, "Device_1", None, None), "device_1"),
            (dev(4, "---", None, None), "card_9efc314b"),
            (dev(5, "Mic", Some("usb-audio-1234"), None), "stream_1234"),
            (fallback(6, "Device_1"), "device1"),
            (fallback(7, "Microphones"), "microphones"),
            (fallback(8, "2Mic"), "stream_2mic"),
            (fallback(9, "garden"), "garden"),
        ];
        for (d, want) in table {
            assert_eq!(automatic_name(&d), want, "{d:?}");
        }
        assert_eq!(crate::naming::md5_8("---"), "9efc314b");
    }

    #[test]
    fn port_suffixes() {
        let table = [
            (
                "platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.4:1.0",
                Some("_1_4"),
            ),
            ("pci-0000:00:14.0-usb-0:2:1.0", Some("_2")),
            ("platform-xhci-hcd.0-usbv2-0:1.2.3:1.0", Some("_1_2_3")),
            ("odd", Some("_odd")),
            ("--", None),
        ];
        for (p, want) in table {
            assert_eq!(port_suffix(p).as_deref(), want, "{p}");
        }
    }

    #[test]
    fn duplicates_get_port_suffix_lowest_port_keeps_name() {
        let devices = [
            dev(1, "Microphones", Some(YETI), Some("pci-usb-0:1.4:1.0")),
            dev(2, "Microphones_1", Some(YETI), Some("pci-usb-0:1.3:1.0")),
            dev(3, "Microphones_2", Some(YETI), None),
        ];
        let p = plan(&Settings::default(), None, &devices).unwrap();
        let names: Vec<&str> = p.streams.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                format!("{YETI_NAME}_1_4"),
                YETI_NAME.to_string(),
                format!("{YETI_NAME}_microphones_2"),
            ]
        );
        assert_eq!(
            p.streams[0].notes,
            [format!(
                "name suffixed from USB port path: duplicate of {YETI_NAME}"
            )]
        );
        assert!(p.streams[2].notes[0].contains("card id"));
        assert!(p.streams[1].notes.is_empty());
        assert_eq!(p.warnings.len(), 2);
        assert_eq!(p.streams[1].alsa_device, "plughw:CARD=Microphones_1,DEV=0");
    }

    #[test]
    fn a_twin_without_its_by_id_link_keeps_its_name_on_its_port() {
        let devices = [
            dev(1, "Microphones", Some(YETI), Some("pci-usb-0:1.4:1.0")),
            dev(2, "Microphones_1", Some(YETI), Some("pci-usb-0:1.2:1.0")),
        ];
        let s = Settings::default();
        let first = plan(&s, None, &devices).unwrap();
        let names = Names {
            saved: first.names.clone(),
            live: first.live.clone(),
        };
        // The 1.2 mic (plain name) leaves with the link; the 1.4 one has none and no twin to
        // inherit it from: it keeps its by-id name, hence its name.
        let alone = [dev(2, "Microphones_1", None, Some("pci-usb-0:1.4:1.0"))];
        let p = plan_with_names(&s, None, &alone, &names).unwrap();
        assert_eq!(p.streams[0].name, format!("{YETI_NAME}_1_4"));
        assert_eq!(
            p.streams[0].device.as_ref().unwrap().by_id.as_deref(),
            Some(YETI)
        );
        // Another model on that port (other usbid) is not mistaken for it.
        let mut other = alone[0].clone();
        other.usbid = Some("1234:5678".into());
        let p = plan_with_names(&s, None, &[other], &names).unwrap();
        assert_eq!(p.streams[0].name, "microphones_1");
        // Nor is a device on a port nobody was seen on.
        let mut moved = alone[0].clone();
        moved.by_path = Some("pci-usb-0:1.7:1.0".into());
        assert_eq!(
            plan_with_names(&s, None, &[moved], &names).unwrap().streams[0].name,
            "microphones_1"
        );
    }

    #[test]
    fn explicit_names_settings_and_urls() {
        let s = settings(
            "[mediamtx]\nrtsp_url = \"rtsp://127.0.0.1:8554/\"\nusername = \"pub\"\npassword = \"p@ss:w\"\n\
             [devices.usb_mv7_00]\nstream = \"Garden Mic!\"\nchannels = 1\n\
             [devices.garden_mic]\nalsa_device = \"dsnoop:CARD=MV7\"\nchannels = 2\n",
        );
        let f = DeviceFile::parse(
            Path::new("d.conf"),
            "DEVICE_MICROPHONES_ENABLED=false\nDEVICE_USB_MV7_00_CODEC=aac\n",
        )
        .unwrap();
        let devices = [
            dev(1, "MV7", Some("usb-MV7-00"), None),
            dev(2, "Microphones", None, None),
        ];
        let p = plan(&s, Some(&f), &devices).unwrap();
        let g = &p.streams[0];
        assert_eq!(g.name, "garden_mic");
        assert_eq!(g.alsa_device, "dsnoop:CARD=MV7");
        // The final name's table beats the automatic name's table; both are honoured.
        assert_eq!(g.params.channels.value, 2);
        assert_eq!(g.params.codec.source, Source::Friendly);
        assert_eq!(g.url, "rtsp://pub:p%40ss%3Aw@127.0.0.1:8554/garden_mic");
        assert_eq!(g.display_url, "rtsp://***@127.0.0.1:8554/garden_mic");
        assert!(g.enabled);
        assert_eq!(g.notes.len(), 2, "{:?}", g.notes);
        let m = &p.streams[1];
        assert_eq!(m.name, "microphones");
        assert!(!m.enabled);
        assert_eq!(m.alsa_device, "plughw:CARD=Microphones,DEV=0");
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("p%40ss"), "credentials leak: {json}");
    }

    #[test]
    fn explicit_name_collision_is_suffixed() {
        let s = settings("[devices.usb_a]\nstream = \"usb_b\"\n");
        let devices = [
            dev(1, "A", Some("usb-a"), Some("x-usb-0:1.1:1.0")),
            dev(2, "B", Some("usb-b"), Some("x-usb-0:1.2:1.0")),
        ];
        let p = plan(&s, None, &devices).unwrap();
        assert_eq!(p.streams[0].name, "usb_b");
        assert_eq!(p.streams[1].name, "usb_b_1_2");
    }

    #[test]
    fn multiplex() {
        let s = settings(
            "[multiplex]\nname = \"All Mics\"\ndevices = [\"usb_a\", \"nope\"]\n\
             [devices.all_mics]\ncodec = \"aac\"\n",
        );
        let devices = [
            dev(1, "A", Some("usb-a"), None),
            dev(2, "B", Some("usb-b"), None),
        ];
        let mp = |d: &[Device]| {
            let p = plan(&s, None, d).unwrap();
            plan_multiplex(&s, None, &p).unwrap()
        };
        let m = mp(&devices).unwrap();
        assert_eq!(m.name, "all_mics");
        assert_eq!(m.inputs.len(), 1);
        assert_eq!(m.inputs[0].name, "usb_a");
        assert_eq!(m.params.codec.source, Source::TomlDevice);
        assert_eq!(m.url, "rtsp://127.0.0.1:8554/all_mics");
        assert!(mp(&devices[1..]).is_none());
    }
}
