//! A fake `/proc/asound` + `/dev/snd` under a temp dir, in the kernel's formats
//! (TESTING.md §1). Point `paths.proc_asound` / `paths.dev_snd` at it (see `toml_paths`).
//!
//! ```ignore
//! let dir = tempfile::tempdir().unwrap();
//! let mut host = FakeHost::new(dir.path());
//! host.add_onboard_card(0, "Headphones");
//! host.add_usb_card(1, "Microphones", Some("usb-Blue_Yeti-00"), Some("pci-0000:01:00.0-usb-0:1.3:1.0"));
//! host.remove_card(1); // unplug while the supervisor runs
//! ```
//!
//! Entries are created so that a concurrent rescan never sees a half-made card as complete
//! (proc files and PCM first, by-id link and `cards` line last) and removed in reverse.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
struct Card {
    id: String,
    usb: bool,
    by_id: Option<String>,
    by_path: Option<String>,
}

#[derive(Debug)]
pub struct FakeHost {
    pub proc_asound: PathBuf,
    pub dev_snd: PathBuf,
    cards: BTreeMap<u32, Card>,
}

impl FakeHost {
    /// Empty host under `root` (creates `root/proc/asound` and `root/dev/snd/{by-id,by-path}`).
    pub fn new(root: &Path) -> FakeHost {
        let host = FakeHost {
            proc_asound: root.join("proc/asound"),
            dev_snd: root.join("dev/snd"),
            cards: BTreeMap::new(),
        };
        for d in [
            host.proc_asound.clone(),
            host.dev_snd.join("by-id"),
            host.dev_snd.join("by-path"),
        ] {
            fs::create_dir_all(&d).expect("create fake host dirs");
        }
        host.write_cards();
        host
    }

    /// The `[paths]` lines that point the manager at this host.
    pub fn toml_paths(&self) -> String {
        format!(
            "proc_asound = {:?}\ndev_snd = {:?}\n",
            self.proc_asound.display().to_string(),
            self.dev_snd.display().to_string()
        )
    }

    /// A USB capture card. usbid defaults to `1d6b:<card as hex>`; give identical devices the
    /// same one with `set_usbid`. `by_path` is the full link name, e.g.
    /// `platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.3:1.0`.
    pub fn add_usb_card(
        &mut self,
        card: u32,
        id: &str,
        by_id: Option<&str>,
        by_path: Option<&str>,
    ) -> &mut Self {
        let dir = self.proc_asound.join(format!("card{card}"));
        fs::create_dir_all(&dir).expect("create card dir");
        write(&dir.join("id"), &format!("{id}\n"));
        write(&dir.join("usbid"), &format!("1d6b:{card:04x}\n"));
        write(&self.dev_snd.join(format!("controlC{card}")), "");
        write(&self.dev_snd.join(format!("pcmC{card}D0c")), "");
        write(&self.dev_snd.join(format!("pcmC{card}D0p")), "");
        if let Some(p) = by_path {
            link(&self.dev_snd.join("by-path").join(p), card);
        }
        if let Some(b) = by_id {
            link(&self.dev_snd.join("by-id").join(b), card);
        }
        self.cards.insert(
            card,
            Card {
                id: id.into(),
                usb: true,
                by_id: by_id.map(Into::into),
                by_path: by_path.map(Into::into),
            },
        );
        self.write_cards();
        self
    }

    /// An on-board (non-USB) card: id, control and PCM, but no `usbid`.
    pub fn add_onboard_card(&mut self, card: u32, id: &str) -> &mut Self {
        let dir = self.proc_asound.join(format!("card{card}"));
        fs::create_dir_all(&dir).expect("create card dir");
        write(&dir.join("id"), &format!("{id}\n"));
        write(&self.dev_snd.join(format!("controlC{card}")), "");
        write(&self.dev_snd.join(format!("pcmC{card}D0p")), "");
        write(&self.dev_snd.join(format!("pcmC{card}D0c")), "");
        self.cards.insert(
            card,
            Card {
                id: id.into(),
                usb: false,
                by_id: None,
                by_path: None,
            },
        );
        self.write_cards();
        self
    }

    /// Overwrite a card's `usbid` (e.g. `b58e:9e84` for two identical microphones).
    pub fn set_usbid(&mut self, card: u32, usbid: &str) -> &mut Self {
        write(
            &self.proc_asound.join(format!("card{card}/usbid")),
            &format!("{usbid}\n"),
        );
        self
    }

    /// Remove the capture PCM only (a playback-only card).
    pub fn remove_capture(&mut self, card: u32) -> &mut Self {
        let _ = fs::remove_file(self.dev_snd.join(format!("pcmC{card}D0c")));
        self
    }

    /// Unplug: every entry of the card disappears (links first, proc dir last).
    pub fn remove_card(&mut self, card: u32) -> &mut Self {
        if let Some(c) = self.cards.remove(&card) {
            self.write_cards();
            if let Some(b) = c.by_id {
                let _ = fs::remove_file(self.dev_snd.join("by-id").join(b));
            }
            if let Some(p) = c.by_path {
                let _ = fs::remove_file(self.dev_snd.join("by-path").join(p));
            }
        }
        for f in ["controlC", "pcmC"] {
            let suffixes: &[&str] = if f == "pcmC" { &["D0c", "D0p"] } else { &[""] };
            for s in suffixes {
                let _ = fs::remove_file(self.dev_snd.join(format!("{f}{card}{s}")));
            }
        }
        let _ = fs::remove_dir_all(self.proc_asound.join(format!("card{card}")));
        self
    }

    /// A USB card with a given `usbid` from its first appearance (identical microphones share
    /// one): no rescan ever sees it with another usbid.
    pub fn add_usb_card_with_usbid(
        &mut self,
        card: u32,
        id: &str,
        by_id: Option<&str>,
        by_path: Option<&str>,
        usbid: &str,
    ) -> &mut Self {
        let dir = self.proc_asound.join(format!("card{card}"));
        fs::create_dir_all(&dir).expect("create card dir");
        write(&dir.join("id"), &format!("{id}\n"));
        write(&dir.join("usbid"), &format!("{usbid}\n"));
        write(&self.dev_snd.join(format!("controlC{card}")), "");
        write(&self.dev_snd.join(format!("pcmC{card}D0c")), "");
        write(&self.dev_snd.join(format!("pcmC{card}D0p")), "");
        if let Some(p) = by_path {
            link(&self.dev_snd.join("by-path").join(p), card);
        }
        if let Some(b) = by_id {
            link(&self.dev_snd.join("by-id").join(b), card);
        }
        self.cards.insert(
            card,
            Card {
                id: id.into(),
                usb: true,
                by_id: by_id.map(Into::into),
                by_path: by_path.map(Into::into),
            },
        );
        self.write_cards();
        self
    }

    /// `/proc/asound/cards` in the kernel's two-line-per-card format.
    fn write_cards(&self) {
        let mut s = String::new();
        for (n, c) in &self.cards {
            let driver = if c.usb {
                "USB-Audio"
            } else {
                "bcm2835_headpho"
            };
            s.push_str(&format!(
                "{n:>2} [{:<15}]: {driver} - {}\n                      {} at usb-0000:01:00.0-1.{n}, full speed\n",
                c.id, c.id, c.id
            ));
        }
        if s.is_empty() {
            s.push_str("--- no soundcards ---\n");
        }
        write(&self.proc_asound.join("cards"), &s);
    }
}

/// Write via a temp file and rename, so a reader never sees a half-written file.
fn write(p: &Path, text: &str) {
    let tmp = p.with_extension("fake-host-tmp");
    fs::write(&tmp, text).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    fs::rename(&tmp, p).unwrap_or_else(|e| panic!("rename {}: {e}", p.display()));
}

/// `by-*/<name> -> ../controlC<card>`, replacing an existing link of that name.
fn link(at: &Path, card: u32) {
    let _ = fs::remove_file(at);
    symlink(format!("../controlC{card}"), at)
        .unwrap_or_else(|e| panic!("symlink {}: {e}", at.display()));
}
