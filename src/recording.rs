//! Local recording (docs/recording.md): the stream's own ffmpeg writes time-stamped
//! segments through the tee muxer next to the RTSP leg, so capture survives a MediaMTX
//! outage. This module names the files, builds the tee leg, and keeps the per-stream
//! ring within `max_files` / `max_bytes` and above the filesystem's `min_free`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::params::Codec;
use crate::config::MinFree;
use crate::status::RecordingView;

pub use crate::config::RECORDING_FORMATS as FORMATS;

/// `format` → (ffmpeg muxer, file extension).
pub fn container(format: &str) -> Option<(&'static str, &'static str)> {
    Some(match format {
        "ogg" => ("ogg", "ogg"),
        "ts" => ("mpegts", "ts"),
        "m4a" => ("ipod", "m4a"),
        "mp3" => ("mp3", "mp3"),
        "aiff" => ("aiff", "aiff"),
        "mkv" => ("matroska", "mkv"),
        _ => return None,
    })
}

/// The codec's natural container. AAC goes to MPEG-TS (a cut-off file still plays);
/// PCM to AIFF because the stream is big-endian `pcm_s16be`, which WAV cannot hold
/// (the tee muxer shares one encoding between both legs).
pub fn natural(codec: Codec) -> &'static str {
    match codec {
        Codec::Opus => "ogg",
        Codec::Aac => "ts",
        Codec::Mp3 => "mp3",
        Codec::Pcm => "aiff",
    }
}

/// Whether a container can hold the codec ffmpeg encodes for the stream.
pub fn fits(codec: Codec, format: &str) -> bool {
    matches!(
        (codec, format),
        (Codec::Opus, "ogg" | "mkv")
            | (Codec::Aac, "ts" | "m4a" | "mkv")
            | (Codec::Mp3, "mp3" | "ts" | "mkv")
            | (Codec::Pcm, "aiff" | "mkv")
    )
}

/// What one stream records: resolved from `[recording]` and the stream's codec.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub stream: String,
    /// `<recording.dir>/<stream>`.
    pub dir: PathBuf,
    pub muxer: &'static str,
    pub ext: &'static str,
    pub segment: Duration,
    pub max_files: Option<u32>,
    pub max_bytes: Option<u64>,
    /// Free space to keep on the filesystem by deleting this stream's oldest segments.
    pub min_free: MinFree,
}

impl Plan {
    /// The plan for `stream`, and a note when the configured format cannot hold the codec.
    pub fn new(
        rec: &crate::config::Recording,
        stream: &str,
        codec: Codec,
    ) -> (Plan, Option<String>) {
        let mut note = None;
        let format = match rec.format.as_deref() {
            Some(f) if fits(codec, f) => f,
            Some(f) => {
                note = Some(format!(
                    "recording.format {f} cannot hold {codec}; recording as {}",
                    natural(codec)
                ));
                natural(codec)
            }
            None => natural(codec),
        };
        let (muxer, ext) = container(format).unwrap_or(("ogg", "ogg"));
        let plan = Plan {
            stream: stream.to_string(),
            dir: rec.dir.join(stream),
            muxer,
            ext,
            segment: rec.segment,
            max_files: rec.max_files,
            max_bytes: rec.max_bytes,
            min_free: rec.min_free,
        };
        (plan, note)
    }

    /// `<dir>/<stream>-%Y%m%d-%H%M%S.<ext>`; a `%` in the directory is escaped for strftime.
    pub fn pattern(&self) -> String {
        let dir = self.dir.display().to_string().replace('%', "%%");
        format!("{dir}/{}-%Y%m%d-%H%M%S.{}", self.stream, self.ext)
    }

    /// The tee slave that writes segments. `onfail=ignore`: a full disk ends this leg,
    /// never the stream. Tee syntax characters in the path are backslash-escaped.
    pub fn tee_leg(&self) -> String {
        let secs = self.segment.as_secs_f64();
        format!(
            "[f=segment:segment_format={}:segment_time={secs}:strftime=1:reset_timestamps=1:onfail=ignore]{}",
            self.muxer,
            tee_escape(&self.pattern())
        )
    }

    /// This stream's segment files, oldest first (the names sort by time): regular files
    /// with the segment name, owned by us (our ffmpeg wrote them; the ring deletes only
    /// what we wrote, whatever else is named like a segment).
    pub fn list(&self) -> std::io::Result<Vec<Segment>> {
        use std::os::unix::fs::MetadataExt;
        let me = nix::unistd::geteuid().as_raw();
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let Ok(e) = e else { continue };
            let name = e.file_name().to_string_lossy().to_string();
            if !is_segment_name(&self.stream, self.ext, &name) {
                continue;
            }
            // DirEntry::metadata does not follow a symlink: a link is not ours to count.
            let Ok(m) = e.metadata() else { continue };
            if !m.is_file() || m.uid() != me {
                continue;
            }
            out.push(Segment {
                name,
                bytes: m.len(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Free bytes on the directory's filesystem and the `min_free` floor there; `None`
    /// when it cannot be measured (the directory is gone).
    pub fn space(&self) -> Option<(u64, u64)> {
        let (free, total) = fs_space(&self.dir)?;
        Some((free, self.min_free.bytes(total)))
    }

    /// Delete the oldest finished segments beyond the bounds, then as many more as it
    /// takes to keep `min_free` free on the filesystem, and describe what is left.
    /// `writing`: the newest file is still being written (a child is running), so it
    /// is neither deleted nor counted as finished.
    pub fn sweep(&self, writing: bool) -> RecordingView {
        self.sweep_counting(writing).0
    }

    /// `sweep`, and how many segments it deleted for `min_free`.
    pub fn sweep_counting(&self, writing: bool) -> (RecordingView, usize) {
        let mut for_space = 0;
        let mut view = RecordingView {
            dir: self.dir.display().to_string(),
            ..RecordingView::default()
        };
        let segs = match self.list() {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                view.error = Some(format!(
                    "cannot list {}: {}",
                    self.dir.display(),
                    crate::util::io_reason(&e)
                ));
                return (view, 0);
            }
        };
        let mut doomed = prune(&segs, writing, self.max_files, self.max_bytes);
        for &i in &doomed {
            let p = self.dir.join(&segs[i].name);
            if let Err(e) = std::fs::remove_file(&p) {
                log::warn!("cannot delete old segment {}: {e}", p.display());
            }
        }
        // The floor: measured after the bounds freed what they did.
        let space = self.space();
        view.free_bytes = space.map(|(free, _)| free);
        if let Some((free, floor)) = space.filter(|(f, fl)| f < fl) {
            let finished = if writing {
                segs.len().saturating_sub(1)
            } else {
                segs.len()
            };
            let left: Vec<usize> = (0..finished).filter(|i| !doomed.contains(i)).collect();
            let bytes: Vec<u64> = left.iter().map(|&i| segs[i].bytes).collect();
            for &i in &left[..make_room(&bytes, free, floor)] {
                let p = self.dir.join(&segs[i].name);
                match std::fs::remove_file(&p) {
                    Ok(()) => log::info!(
                        "{}: deleted {} to keep recording.min_free ({}) free ({free} bytes were free)",
                        self.stream,
                        segs[i].name,
                        self.min_free.show()
                    ),
                    Err(e) => log::warn!("cannot delete old segment {}: {e}", p.display()),
                }
                doomed.push(i);
                for_space += 1;
            }
            view.free_bytes = fs_space(&self.dir).map(|(free, _)| free);
        }
        let kept: Vec<&Segment> = segs
            .iter()
            .enumerate()
            .filter(|(i, _)| !doomed.contains(i))
            .map(|(_, s)| s)
            .collect();
        let (finished, current) = split_current(&kept, writing);
        view.files = finished.len() as u64;
        view.bytes = finished.iter().map(|s| s.bytes).sum();
        view.oldest = finished.first().map(|s| s.name.clone());
        view.newest = finished.last().map(|s| s.name.clone());
        view.writing = current.map(|s| s.name.clone());
        (view, for_space)
    }
}

fn split_current<'a>(
    kept: &'a [&'a Segment],
    writing: bool,
) -> (&'a [&'a Segment], Option<&'a Segment>) {
    match kept.split_last() {
        Some((last, rest)) if writing => (rest, Some(*last)),
        _ => (kept, None),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub name: String,
    pub bytes: u64,
}

/// Indices (into `segs`, oldest first) to delete so the finished segments stay within
/// `max_files` and `max_bytes`. The file being written is never chosen.
pub fn prune(
    segs: &[Segment],
    writing: bool,
    max_files: Option<u32>,
    max_bytes: Option<u64>,
) -> Vec<usize> {
    let finished = if writing {
        segs.len().saturating_sub(1)
    } else {
        segs.len()
    };
    let mut files = finished as u64;
    let mut bytes: u64 = segs[..finished].iter().map(|s| s.bytes).sum();
    let mut out = Vec::new();
    for (i, s) in segs[..finished].iter().enumerate() {
        let over_files = max_files.is_some_and(|m| files > m as u64);
        let over_bytes = max_bytes.is_some_and(|m| bytes > m);
        if !over_files && !over_bytes {
            break;
        }
        out.push(i);
        files -= 1;
        bytes -= s.bytes;
    }
    out
}

/// How many of the oldest finished segments (`bytes`, oldest first) to delete so that
/// `free` reaches `floor`; all of them when even that is not enough.
pub fn make_room(bytes: &[u64], free: u64, floor: u64) -> usize {
    let mut free = free;
    let mut n = 0;
    while free < floor && n < bytes.len() {
        free = free.saturating_add(bytes[n]);
        n += 1;
    }
    n
}

/// (free bytes for unprivileged writers, total bytes) of the filesystem holding `dir`.
pub fn fs_space(dir: &Path) -> Option<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    let unit = st.fragment_size() as u64;
    Some((
        (st.blocks_available() as u64).saturating_mul(unit),
        (st.blocks() as u64).saturating_mul(unit),
    ))
}

/// `<stream>-YYYYmmdd-HHMMSS.<ext>`.
pub fn is_segment_name(stream: &str, ext: &str, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(stream).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    let Some(stamp) = rest.strip_suffix(ext).and_then(|r| r.strip_suffix('.')) else {
        return false;
    };
    let b = stamp.as_bytes();
    b.len() == 15
        && b[8] == b'-'
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[9..].iter().all(u8::is_ascii_digit)
}

/// Backslash-escape the tee muxer's syntax characters (`\ | [ ]`) in a slave's target.
fn tee_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '|' | '[' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Make `dir` and prove a file can be written there (a full disk refuses the byte).
pub fn check_writable(dir: &Path) -> Result<(), String> {
    let fail = |what: &str, e: std::io::Error| {
        format!(
            "cannot {what} {}: {}",
            dir.display(),
            crate::util::io_reason(&e)
        )
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("create", e))?;
    let probe = dir.join(".write-test");
    // A fresh file: a planted symlink of that name is never followed (we run as root).
    let _ = std::fs::remove_file(&probe);
    let res = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| f.write_all(b"x").and_then(|_| f.sync_all()));
    let _ = std::fs::remove_file(&probe);
    res.map_err(|e| fail("write to", e))
}

/// The local-time stamp ffmpeg's strftime would put in a file name started now.
pub fn local_stamp_now() -> String {
    // SAFETY: localtime_r writes only into `tm`; time(NULL) has no preconditions.
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        format!(
            "{:04}{:02}{:02}-{:02}{:02}{:02}",
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(n: u32, bytes: u64) -> Segment {
        Segment {
            name: format!("s-20260101-0000{n:02}.ogg"),
            bytes,
        }
    }

    #[test]
    fn prune_table() {
        let segs: Vec<Segment> = (0..5).map(|n| seg(n, 100)).collect();
        // (writing, max_files, max_bytes, expected deletions)
        type Row = (bool, Option<u32>, Option<u64>, &'static [usize]);
        let table: &[Row] = &[
            (false, None, None, &[]),
            (false, Some(5), None, &[]),
            (false, Some(3), None, &[0, 1]),
            (true, Some(3), None, &[0]),
            (true, Some(4), None, &[]),
            (false, None, Some(250), &[0, 1, 2]),
            (true, None, Some(250), &[0, 1]),
            (true, Some(1), Some(1000), &[0, 1, 2]),
            (true, None, Some(50), &[0, 1, 2, 3]),
        ];
        for (writing, mf, mb, want) in table {
            assert_eq!(
                prune(&segs, *writing, *mf, *mb),
                want.to_vec(),
                "{writing} {mf:?} {mb:?}"
            );
        }
        assert!(prune(&[], true, Some(0), Some(0)).is_empty());
    }

    /// Only our own regular files named like segments are listed (and so ever deleted).
    #[test]
    fn list_takes_only_our_own_segment_files() {
        let t = tempfile::tempdir().unwrap();
        let rec = crate::config::Recording {
            enabled: true,
            dir: t.path().into(),
            segment: Duration::from_secs(1),
            format: None,
            max_files: None,
            max_bytes: None,
            min_free: MinFree::Percent(5.0),
        };
        let (p, _) = Plan::new(&rec, "mic", Codec::Opus);
        std::fs::create_dir_all(&p.dir).unwrap();
        for n in [
            "mic-20260101-000001.ogg",
            "mic-20260101-000002.ogg",
            "notes.txt",
        ] {
            std::fs::write(p.dir.join(n), "x").unwrap();
        }
        std::os::unix::fs::symlink("/etc/hostname", p.dir.join("mic-20260101-000003.ogg")).unwrap();
        std::fs::create_dir(p.dir.join("mic-20260101-000004.ogg")).unwrap();
        let mut want = vec!["mic-20260101-000001.ogg", "mic-20260101-000002.ogg"];
        // Another user's file (only root can make one here).
        let theirs = p.dir.join("mic-20260101-000005.ogg");
        std::fs::write(&theirs, "x").unwrap();
        if std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).is_err() {
            want.push("mic-20260101-000005.ogg");
        }
        let names: Vec<String> = p.list().unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, want);
        let v = p.sweep(false);
        assert_eq!(v.files, want.len() as u64);
    }

    #[test]
    fn make_room_table() {
        // (segment sizes oldest first, free, floor, how many to delete)
        let table: &[(&[u64], u64, u64, usize)] = &[
            (&[100, 100, 100], 500, 400, 0),
            (&[100, 100, 100], 400, 400, 0),
            (&[100, 100, 100], 399, 400, 1),
            (&[100, 100, 100], 250, 400, 2),
            (&[100, 100, 100], 0, 400, 3),
            (&[], 0, 400, 0),
            (&[50, 300], 100, 200, 2),
        ];
        for (bytes, free, floor, want) in table {
            assert_eq!(
                make_room(bytes, *free, *floor),
                *want,
                "{bytes:?} {free} {floor}"
            );
        }
    }

    #[test]
    fn names() {
        let table = [
            ("mic-20261123-081402.ogg", true),
            ("mic-20261123-081402.ts", false),
            ("mic2-20261123-081402.ogg", false),
            ("mic-2026112-081402.ogg", false),
            ("mic-20261123_081402.ogg", false),
            ("mic-20261123-081402.ogg.tmp", false),
        ];
        for (n, want) in table {
            assert_eq!(is_segment_name("mic", "ogg", n), want, "{n}");
        }
    }

    #[test]
    fn formats_and_leg() {
        for f in FORMATS {
            assert!(container(f).is_some(), "{f}");
        }
        for c in [Codec::Opus, Codec::Aac, Codec::Mp3, Codec::Pcm] {
            assert!(fits(c, natural(c)), "{c}");
        }
        assert!(!fits(Codec::Pcm, "ogg"));
        let rec = crate::config::Recording {
            enabled: true,
            dir: "/rec/100%".into(),
            segment: Duration::from_millis(1500),
            format: Some("ogg".into()),
            max_files: None,
            max_bytes: None,
            min_free: MinFree::Percent(5.0),
        };
        let (p, note) = Plan::new(&rec, "mic", Codec::Aac);
        assert!(note.unwrap().contains("cannot hold aac"));
        assert_eq!(p.ext, "ts");
        assert_eq!(
            p.tee_leg(),
            "[f=segment:segment_format=mpegts:segment_time=1.5:strftime=1:reset_timestamps=1:\
             onfail=ignore]/rec/100%%/mic/mic-%Y%m%d-%H%M%S.ts"
        );
        assert_eq!(tee_escape("a|b[c]\\"), "a\\|b\\[c\\]\\\\");
        assert_eq!(local_stamp_now().len(), 15);
    }
}
