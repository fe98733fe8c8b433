//! Discovery of USB capture devices from /proc/asound and /dev/snd (SPEC §4).
//!
//! Reads only under the two configured roots. A card counts when it is USB
//! (`card<N>/usbid`), has a capture PCM (`pcmC<N>D0c`) and an id. Candidates come from
//! `/dev/snd/by-id` links and from `/proc/asound/cards` (udev keeps a single by-id link
//! for identical devices, so the second one is only visible there).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// One capturable USB audio card.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Device {
    pub card: u32,
    /// ALSA card id (`/proc/asound/card<N>/id`), used in `plughw:CARD=<id>,DEV=0`.
    pub card_id: String,
    /// `/dev/snd/by-id` name. A card without its own link inherits the link name of an
    /// identical card (same usbid): udev gives identical devices one shared name.
    pub by_id: Option<String>,
    /// `/dev/snd/by-path` name (USB port path), tells identical devices apart.
    pub by_path: Option<String>,
    /// `vendor:product` from `/proc/asound/card<N>/usbid`.
    pub usbid: Option<String>,
    /// SPEC §4 rule 4: `usb-audio-<card id from /proc/asound/cards>`, the name the bash tool
    /// gave a card it found without a by-id link; used when `by_id` is `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cards_name: Option<String>,
}

impl Device {
    /// The device name of SPEC §4 rules 3–4 (bash's `device_name`): the by-id name, else the
    /// `/proc/asound/cards` fallback name. Its stream name is rule 3's; its `<KEY>` is the
    /// full config key.
    pub fn device_name(&self) -> Option<&str> {
        self.by_id.as_deref().or(self.cards_name.as_deref())
    }
}

/// All capturable USB cards, sorted by card number. Never fails: anything unreadable is
/// skipped (and logged at debug level), because a half-plugged device must not stop the rest.
pub fn discover(proc_asound: &Path, dev_snd: &Path) -> Vec<Device> {
    let by_id = control_links(&dev_snd.join("by-id"));
    let by_path = control_links(&dev_snd.join("by-path"));
    let listed = read_cards_file(&proc_asound.join("cards"));

    let candidates: BTreeSet<u32> = by_id.keys().chain(listed.keys()).copied().collect();
    let mut devices = Vec::new();
    for card in candidates {
        let dir = proc_asound.join(format!("card{card}"));
        let usbid = match read_trimmed(&dir.join("usbid")) {
            Some(u) => u,
            None => {
                log::debug!("card {card}: no {}/usbid, not USB", dir.display());
                continue;
            }
        };
        let card_id = match read_trimmed(&dir.join("id"))
            .or_else(|| listed.get(&card).map(|c| c.trim().to_string()))
        {
            Some(id) if !id.is_empty() => id,
            _ => {
                log::debug!("card {card}: no card id");
                continue;
            }
        };
        if !dev_snd.join(format!("pcmC{card}D0c")).exists() {
            log::debug!("card {card} ({card_id}): no capture PCM pcmC{card}D0c");
            continue;
        }
        devices.push(Device {
            card,
            card_id,
            by_id: by_id.get(&card).cloned(),
            by_path: by_path.get(&card).cloned(),
            usbid: Some(usbid),
            cards_name: listed
                .get(&card)
                .and_then(|c| crate::naming::cards_fallback_name(c)),
        });
    }
    inherit_shared_by_id(&mut devices);
    devices
}

/// The cards one stream reads, for the look right after its child dies unexpectedly
/// (SPEC §7 Unplug): an exit whose device is gone is not counted as a failure.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Presence {
    pub proc_asound: std::path::PathBuf,
    pub dev_snd: std::path::PathBuf,
    /// (card number, card id); empty: nothing to check (the demo's virtual inputs).
    pub cards: Vec<(u32, String)>,
}

impl Presence {
    /// The first card that is gone (its id file no longer names it, or its capture PCM
    /// node is missing): one small read and one stat per card, no directory scan.
    pub fn missing(&self) -> Option<&str> {
        self.cards.iter().find_map(|(card, id)| {
            let here = read_trimmed(&self.proc_asound.join(format!("card{card}/id")))
                .is_some_and(|now| now == *id)
                && self.dev_snd.join(format!("pcmC{card}D0c")).exists();
            (!here).then_some(id.as_str())
        })
    }
}

/// Give a card without a by-id link the link name of an identical card (same usbid).
fn inherit_shared_by_id(devices: &mut [Device]) {
    let named: BTreeMap<String, String> = devices
        .iter()
        .rev() // so that the lowest card's name wins in the map
        .filter_map(|d| Some((d.usbid.clone()?, d.by_id.clone()?)))
        .collect();
    for d in devices.iter_mut().filter(|d| d.by_id.is_none()) {
        if let Some(name) = d.usbid.as_ref().and_then(|u| named.get(u)) {
            log::debug!("card {}: shares by-id name {name}", d.card);
            d.by_id = Some(name.clone());
        }
    }
}

/// Symlinks in a by-id/by-path dir that point at `controlC<N>`: card → first name (sorted).
fn control_links(dir: &Path) -> BTreeMap<u32, String> {
    let mut out = BTreeMap::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            log::debug!("{}: {}", dir.display(), crate::util::io_reason(&e));
            return out;
        }
    };
    let mut names: Vec<(String, std::path::PathBuf)> = entries
        .filter_map(|e| e.ok())
        // A name that is not UTF-8 still names a device: its odd bytes become U+FFFD, which
        // the naming rules turn into `_` as bash under `LC_ALL=C` does with each such byte.
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(n, _)| !n.contains("-event-"))
        .collect();
    names.sort();
    for (name, path) in names {
        let Ok(target) = fs::read_link(&path) else {
            continue;
        };
        let card_of = |p: &Path| {
            p.file_name()
                .and_then(|f| f.to_str())
                .and_then(control_card)
        };
        // udev links straight to `../controlC<N>`; a link to another link is followed to the
        // end, as bash's `readlink -f` did.
        let card =
            card_of(&target).or_else(|| fs::canonicalize(&path).ok().and_then(|p| card_of(&p)));
        if let Some(card) = card {
            out.entry(card).or_insert(name);
        }
    }
    out
}

/// `controlC12` → 12.
fn control_card(file: &str) -> Option<u32> {
    let n = file.strip_prefix("controlC")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

fn read_trimmed(p: &Path) -> Option<String> {
    match crate::util::read_small(p) {
        Ok(s) => Some(s.trim().to_string()),
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::debug!("{}: {}", p.display(), crate::util::io_reason(&e));
            }
            None
        }
    }
}

/// `/proc/asound/cards`: card number → text in brackets, padding kept.
fn read_cards_file(p: &Path) -> BTreeMap<u32, String> {
    match fs::read(p) {
        Ok(b) => parse_cards(&String::from_utf8_lossy(&b)),
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::debug!("{}: {}", p.display(), crate::util::io_reason(&e));
            }
            BTreeMap::new()
        }
    }
}

/// Parse the kernel's `cards` listing (` 1 [Microphones    ]: USB-Audio - ...`) into card
/// number → the text between the brackets as written (the kernel pads the id to 15
/// characters; SPEC §4 rule 4 turns that padding into `-`). Continuation lines (no leading
/// number) are ignored, as bash's `^[[:space:]]*([0-9]+)[[:space:]]+\[([^]]+)\]` does.
pub fn parse_cards(text: &str) -> BTreeMap<u32, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let t = line.trim_start();
        let digits = t.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            continue;
        }
        let Ok(card) = t[..digits].parse::<u32>() else {
            continue;
        };
        let rest = t[digits..].trim_start();
        let Some(inner) = rest.strip_prefix('[') else {
            continue;
        };
        match inner.find(']') {
            Some(end) if end > 0 => {
                out.entry(card).or_insert_with(|| inner[..end].to_string());
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_file() {
        let text = " 0 [Headphones     ]: bcm2835_headpho - bcm2835 Headphones\n                      bcm2835 Headphones\n 1 [Microphones    ]: USB-Audio - Yeti\n                      Blue at usb-0000:01:00.0-1.3, full speed\n10 [blue-yeti      ]: USB-Audio - Yeti\ngarbage\n 3 no brackets\n";
        let m = parse_cards(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[&0], "Headphones     ");
        assert_eq!(m[&1], "Microphones    ");
        assert_eq!(m[&10], "blue-yeti      ");
    }

    #[test]
    fn presence_sees_a_removed_or_replaced_card() {
        let dir = tempfile::tempdir().unwrap();
        let (pa, ds) = (dir.path().join("asound"), dir.path().join("snd"));
        fs::create_dir_all(pa.join("card1")).unwrap();
        fs::create_dir_all(&ds).unwrap();
        fs::write(pa.join("card1/id"), "garden\n").unwrap();
        fs::write(ds.join("pcmC1D0c"), "").unwrap();
        let p = |cards: Vec<(u32, &str)>| Presence {
            proc_asound: pa.clone(),
            dev_snd: ds.clone(),
            cards: cards.into_iter().map(|(c, i)| (c, i.to_string())).collect(),
        };
        assert_eq!(p(vec![]).missing(), None);
        assert_eq!(p(vec![(1, "garden")]).missing(), None);
        // Another card took number 1 (unplug + plug of a different mic).
        assert_eq!(p(vec![(1, "studio")]).missing(), Some("studio"));
        assert_eq!(p(vec![(1, "garden"), (2, "pond")]).missing(), Some("pond"));
        fs::remove_file(ds.join("pcmC1D0c")).unwrap();
        assert_eq!(p(vec![(1, "garden")]).missing(), Some("garden"));
    }

    #[test]
    fn device_names_from_by_id_or_the_cards_file() {
        let dir = tempfile::tempdir().unwrap();
        let (pa, ds) = (dir.path().join("asound"), dir.path().join("snd"));
        fs::create_dir_all(ds.join("by-id")).unwrap();
        for (card, id) in [(1, "Microphones"), (2, "Device_1"), (3, "Mic")] {
            fs::create_dir_all(pa.join(format!("card{card}"))).unwrap();
            fs::write(pa.join(format!("card{card}/id")), format!("{id}\n")).unwrap();
            fs::write(
                pa.join(format!("card{card}/usbid")),
                format!("1d6b:000{card}\n"),
            )
            .unwrap();
            fs::write(ds.join(format!("pcmC{card}D0c")), "").unwrap();
        }
        fs::write(
            pa.join("cards"),
            " 1 [Microphones    ]: USB-Audio - Yeti\n                      Blue at usb-1\n \
             2 [Device_1       ]: USB-Audio - X\n 3 [Mic            ]: USB-Audio - Y\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("../controlC3", ds.join("by-id/usb-MV7-00")).unwrap();
        let found = discover(&pa, &ds);
        let names: Vec<Option<&str>> = found.iter().map(Device::device_name).collect();
        assert_eq!(
            names,
            [
                Some("usb-audio-microphones----"),
                Some("usb-audio-device1-------"),
                Some("usb-MV7-00"),
            ]
        );
        assert_eq!(found[0].card_id, "Microphones");
        assert_eq!(found[2].by_id.as_deref(), Some("usb-MV7-00"));
    }

    #[test]
    fn control_targets() {
        assert_eq!(control_card("controlC1"), Some(1));
        assert_eq!(control_card("controlC12"), Some(12));
        for bad in ["controlC", "controlCx", "pcmC1D0c", "controlC1x"] {
            assert_eq!(control_card(bad), None, "{bad}");
        }
    }
}
