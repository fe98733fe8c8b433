//! Sticky stream names (SPEC §4): identical microphones share a by-id name and are told
//! apart by USB port path. Listeners know a stream by its URL, so once a device (by-id name,
//! port path) has a name it keeps it: a running stream is never renamed because a twin
//! appeared or left, and the assignment survives unplug, replug and reboot through a small
//! JSON file (`paths.names_file`) that only the supervisor writes.
//!
//! `assign` is the pure policy; the rest is the file (atomic write, tolerant read).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why a name carries a suffix.
pub const FROM_PORT: &str = "USB port path";
pub const FROM_CARD: &str = "card id";

/// More remembered devices than any box has; the oldest absent ones are dropped beyond it.
const MAX_ENTRIES: usize = 256;

/// What identifies a physical device across replugs: its by-id name (or card id when it
/// has none) and its USB port path. Card numbers and card ids change on replug; these do not.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceKey {
    pub by_id: String,
    pub port: Option<String>,
}

/// One remembered assignment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub by_id: String,
    #[serde(default)]
    pub port: Option<String>,
    /// The name the device would have on its own (automatic or explicit).
    pub base: String,
    /// The name it streams under.
    pub name: String,
    /// Set when `name` is `base` plus a suffix because a twin held `base`.
    #[serde(default)]
    pub suffix_from: Option<String>,
    /// Unix seconds when this assignment was made.
    #[serde(default)]
    pub assigned: u64,
    /// `vendor:product`, to recognise the device on its port while udev has no by-id link
    /// for it (see `recall_by_id`).
    #[serde(default)]
    pub usbid: Option<String>,
}

impl Entry {
    pub fn key(&self) -> DeviceKey {
        DeviceKey {
            by_id: self.by_id.clone(),
            port: self.port.clone(),
        }
    }
}

/// Remembered assignments by device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NameMap {
    pub entries: BTreeMap<DeviceKey, Entry>,
}

/// What a plan needs to know: the remembered map and what is running now.
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub saved: NameMap,
    /// Devices present at the last scan with their names (empty outside the supervisor).
    pub live: NameMap,
}

impl Names {
    /// For `config` and `status`: the file as it is, nothing live.
    pub fn from_file(path: &Path) -> (Names, Vec<String>) {
        let (saved, warnings) = read_only(path);
        (
            Names {
                saved,
                live: NameMap::default(),
            },
            warnings,
        )
    }
}

#[derive(Serialize, Deserialize)]
struct FileDoc {
    version: u32,
    names: Vec<Entry>,
}

/// One device as the policy sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// `None` when the device cannot be told apart from another present one (two twins
    /// without port paths): it is named, but not remembered.
    pub key: Option<DeviceKey>,
    /// The name it would have on its own.
    pub base: String,
    /// `base` came from config (TOML `stream`, `STREAM_NAME`).
    pub explicit: bool,
    /// `_1_4` from the port path, if any.
    pub port_suffix: Option<String>,
    /// `_<card id>`, for devices without a usable port path.
    pub card_suffix: String,
    /// Tie-break for devices with no history: lowest port path first, then card number.
    pub by_path: Option<String>,
    pub card: u32,
    /// `vendor:product`, remembered with the assignment.
    pub usbid: Option<String>,
}

/// The policy's answer for one candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub name: String,
    /// `Some(FROM_PORT | FROM_CARD)` when the name is `base` plus a twin suffix.
    pub suffix_from: Option<String>,
}

/// Name every present device, most entitled first:
/// 1. an explicit config name claiming exactly that name (explicit wins),
/// 2. a device that was present at the last scan keeps its name (`live`: running streams
///    are never renamed by a device appearing or leaving),
/// 3. a device with a remembered assignment (`saved`) gets it back,
/// 4. a new device gets its base name if free, else base + port suffix;
///
/// within a rank the lowest USB port path (then card number) goes first. A remembered or
/// live assignment only counts while the device's base name is unchanged (a config or udev
/// rename starts over). Returns the names (in candidate order) and the map to persist.
pub fn assign(
    cands: &[Candidate],
    live: &NameMap,
    saved: &NameMap,
    now: u64,
) -> (Vec<Assignment>, NameMap) {
    let remembered = |map: &NameMap, c: &Candidate| -> Option<Entry> {
        let e = map.entries.get(c.key.as_ref()?)?;
        (e.base == c.base).then(|| e.clone())
    };
    // (preferred assignment, rank) per candidate.
    let prefs: Vec<(Assignment, u8)> = cands
        .iter()
        .map(|c| {
            let from = |e: Entry| Assignment {
                name: e.name,
                suffix_from: e.suffix_from,
            };
            let (pref, tier) = if let Some(e) = remembered(live, c) {
                (from(e), 1)
            } else if let Some(e) = remembered(saved, c) {
                (from(e), 2)
            } else {
                (
                    Assignment {
                        name: c.base.clone(),
                        suffix_from: None,
                    },
                    3,
                )
            };
            let rank = if c.explicit && pref.name == c.base {
                0
            } else {
                tier
            };
            (pref, rank)
        })
        .collect();
    let mut order: Vec<usize> = (0..cands.len()).collect();
    order.sort_by_key(|&i| {
        let c = &cands[i];
        (prefs[i].1, c.by_path.is_none(), c.by_path.clone(), c.card)
    });

    let mut taken: BTreeSet<String> = BTreeSet::new();
    let mut out: Vec<Option<Assignment>> = vec![None; cands.len()];
    for i in order {
        let c = &cands[i];
        let pref = &prefs[i].0;
        let got = if !taken.contains(&pref.name) {
            pref.clone()
        } else if !taken.contains(&c.base) {
            Assignment {
                name: c.base.clone(),
                suffix_from: None,
            }
        } else {
            let (suffix, from) = match &c.port_suffix {
                Some(s) => (s.clone(), FROM_PORT),
                None => (c.card_suffix.clone(), FROM_CARD),
            };
            let first = format!("{}{suffix}", c.base);
            let name = std::iter::once(first.clone())
                .chain(std::iter::once(format!("{first}_{}", c.card)))
                .chain((2..).map(|n| format!("{first}_{}_{n}", c.card)))
                .find(|n| !taken.contains(n))
                .unwrap_or(first);
            Assignment {
                name,
                suffix_from: Some(from.to_string()),
            }
        };
        taken.insert(got.name.clone());
        out[i] = Some(got);
    }
    let names: Vec<Assignment> = out.into_iter().flatten().collect();

    let mut next = saved.clone();
    let mut present = BTreeSet::new();
    for (c, a) in cands.iter().zip(&names) {
        let Some(key) = &c.key else { continue };
        present.insert(key.clone());
        let same = next.entries.get(key).is_some_and(|e| {
            e.base == c.base
                && e.name == a.name
                && e.suffix_from == a.suffix_from
                && e.usbid == c.usbid
        });
        if !same {
            next.entries.insert(
                key.clone(),
                Entry {
                    by_id: key.by_id.clone(),
                    port: key.port.clone(),
                    base: c.base.clone(),
                    name: a.name.clone(),
                    suffix_from: a.suffix_from.clone(),
                    assigned: now,
                    usbid: c.usbid.clone(),
                },
            );
        }
    }
    while next.entries.len() > MAX_ENTRIES {
        let oldest = next
            .entries
            .values()
            .filter(|e| !present.contains(&e.key()))
            .min_by_key(|e| e.assigned)
            .map(Entry::key);
        match oldest {
            Some(k) => next.entries.remove(&k),
            None => break,
        };
    }
    (names, next)
}

/// The by-id name to use for a device that has no `/dev/snd/by-id` link right now but sits
/// on a port where a device with the same `vendor:product` was remembered. udev keeps one
/// link for twins and moves it when its holder leaves; in between, the remaining twin has
/// no link, and without this it would get another name (its card id) for a moment: the
/// running stream renamed because its twin left.
pub fn recall_by_id(by_path: Option<&str>, usbid: Option<&str>, names: &Names) -> Option<String> {
    let (port, usbid) = (by_path?, usbid?);
    [&names.live, &names.saved]
        .into_iter()
        .flat_map(|m| m.entries.values())
        .find(|e| e.port.as_deref() == Some(port) && e.usbid.as_deref() == Some(usbid))
        .map(|e| e.by_id.clone())
}

/// The assignments of the devices present now, as `live` for the next call.
pub fn live_of(cands: &[Candidate], names: &[Assignment], map: &NameMap) -> NameMap {
    let mut live = NameMap::default();
    for (c, a) in cands.iter().zip(names) {
        if let Some(e) = c.key.as_ref().and_then(|k| map.entries.get(k)) {
            if e.name == a.name {
                live.entries.insert(e.key(), e.clone());
            }
        }
    }
    live
}

pub fn now() -> u64 {
    crate::util::unix_now()
}

/// At most 60 characters of a value from the file, for messages.
fn short(s: &str) -> String {
    if s.chars().count() <= 60 {
        s.to_string()
    } else {
        s.chars().take(60).chain(std::iter::once('…')).collect()
    }
}

/// One remembered assignment as `config` and `status` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NameView {
    pub name: String,
    pub by_id: String,
    pub port: Option<String>,
    /// The name the device would have on its own.
    pub base: String,
    /// e.g. "suffixed from USB port path: a twin holds <base>"; `None` for a plain name.
    pub suffixed: Option<String>,
    /// The device is plugged in now.
    pub present: bool,
    /// When this assignment was made (RFC 3339, UTC).
    pub assigned: String,
}

/// The mapping for display, sorted by name; `present` decides the flag.
pub fn view(map: &NameMap, present: impl Fn(&Entry) -> bool) -> Vec<NameView> {
    let mut v: Vec<NameView> = map
        .entries
        .values()
        .map(|e| NameView {
            name: e.name.clone(),
            by_id: e.by_id.clone(),
            port: e.port.clone(),
            base: e.base.clone(),
            suffixed: e
                .suffix_from
                .as_ref()
                .map(|f| format!("suffixed from {f}: a twin holds {}", e.base)),
            present: present(e),
            assigned: crate::util::rfc3339(e.assigned),
        })
        .collect();
    v.sort_by(|a, b| (&a.name, &a.by_id, &a.port).cmp(&(&b.name, &b.by_id, &b.port)));
    v
}

/// Human rendering: a heading naming the file, then one line per device.
pub fn render_view(file: &Path, v: &[NameView]) -> String {
    let mut out = format!("\nSticky names ({}):\n", file.display());
    if v.is_empty() {
        out.push_str("  (none remembered yet)\n");
    }
    for n in v {
        out.push_str(&format!(
            "  {} <- {} @ {}{}\n",
            n.name,
            n.by_id,
            n.port.as_deref().unwrap_or("(no port path)"),
            if n.present { "" } else { " (not plugged in)" }
        ));
        if let Some(s) = &n.suffixed {
            out.push_str(&format!("    {s}\n"));
        }
    }
    out
}

/// A stream name we are willing to take from the file (it becomes a path and file names).
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.as_bytes()[0].is_ascii_alphanumeric()
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// What reading the file gave.
#[derive(Debug)]
pub enum Loaded {
    Missing,
    Ok(NameMap, Vec<String>),
    /// Not our format (or not UTF-8); the reason.
    Corrupt(String),
    /// The file exists but cannot be read (permissions, a directory, I/O error).
    Unreadable(String),
}

/// Parse the file's text. Entries with an unusable name are dropped (with a warning).
pub fn parse(text: &str) -> Result<(NameMap, Vec<String>), String> {
    let doc: FileDoc = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if doc.version != 1 {
        return Err(format!("unknown version {}", doc.version));
    }
    let mut map = NameMap::default();
    let mut warnings = Vec::new();
    for e in doc.names {
        if !valid_name(&e.name) || e.by_id.is_empty() {
            warnings.push(format!(
                "ignoring entry for {:?}: invalid name {:?}",
                e.by_id,
                short(&e.name)
            ));
            continue;
        }
        map.entries.insert(e.key(), e);
    }
    Ok((map, warnings))
}

/// Read the file; never fails (a missing file is an empty map).
pub fn read(path: &Path) -> Loaded {
    match std::fs::read(path) {
        Ok(bytes) => match std::str::from_utf8(&bytes)
            .map_err(|e| e.to_string())
            .and_then(parse)
        {
            Ok((m, w)) => Loaded::Ok(m, w),
            Err(e) => Loaded::Corrupt(e),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Loaded::Missing,
        Err(e) => Loaded::Unreadable(crate::util::io_reason(&e)),
    }
}

/// For `config` and `status`: the map, plus a warning to show when the file is unusable.
pub fn read_only(path: &Path) -> (NameMap, Vec<String>) {
    match read(path) {
        Loaded::Missing => (NameMap::default(), Vec::new()),
        Loaded::Ok(m, w) => (
            m,
            w.into_iter()
                .map(|w| format!("{}: {w}", path.display()))
                .collect(),
        ),
        Loaded::Corrupt(e) => (
            NameMap::default(),
            vec![format!(
                "{}: unreadable names file ({e}); the supervisor will start it afresh",
                path.display()
            )],
        ),
        Loaded::Unreadable(e) => (
            NameMap::default(),
            vec![format!("{}: cannot read names file: {e}", path.display())],
        ),
    }
}

/// `names.json` → `names.json.bad`.
pub fn bad_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".bad");
    PathBuf::from(s)
}

/// Temp files of `save` calls that a crash interrupted (`.<name>.tmp.<pid>`): removed.
fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!(".{}.tmp.", name.to_string_lossy());
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// For the supervisor: a corrupt file is logged, moved aside as `.bad`, and we start fresh;
/// one we cannot read is logged and left alone (it is not known to be bad).
pub fn load_for_supervisor(path: &Path) -> NameMap {
    remove_stale_temps(path);
    match read(path) {
        Loaded::Missing => NameMap::default(),
        Loaded::Ok(m, w) => {
            for w in w {
                log::warn!("{}: {w}", path.display());
            }
            m
        }
        Loaded::Corrupt(e) => {
            let bad = bad_path(path);
            let kept = match std::fs::rename(path, &bad) {
                Ok(()) => format!("kept as {}", bad.display()),
                Err(e) => format!("cannot move it aside: {}", crate::util::io_reason(&e)),
            };
            log::warn!(
                "{}: names file unreadable ({e}); starting with no remembered names ({kept})",
                path.display()
            );
            NameMap::default()
        }
        Loaded::Unreadable(e) => {
            log::warn!(
                "{}: cannot read names file ({e}); starting with no remembered names",
                path.display()
            );
            NameMap::default()
        }
    }
}

/// The file's text: entries sorted by device, one JSON document.
pub fn render(map: &NameMap) -> String {
    let doc = FileDoc {
        version: 1,
        names: map.entries.values().cloned().collect(),
    };
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

/// Write atomically: temp file in the same directory, fsync, rename, fsync the directory.
/// Creates the parent directory.
pub fn save(path: &Path, map: &NameMap) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    crate::fsafe::ensure_shared_dir(dir, 0o755)?;
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "names.json".into());
    let tmp = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
    let result = (|| {
        // A fresh file (never a planted one or a symlink), 0644 whatever the umask.
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.write_all(render(map).as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests;
