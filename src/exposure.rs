//! What other local users can see (issue 18, item 5). ffmpeg takes its RTSP URL only on
//! its command line, so publish credentials sit in `/proc/<pid>/cmdline`, readable by
//! every local user unless `/proc` is mounted with `hidepid`. `config`, `diagnose`,
//! `install` and the supervisor's start say so, and point at the way out that needs no
//! password at all: MediaMTX letting 127.0.0.1 publish by IP.

use crate::config::Settings;

/// The `mediamtx.yml` lines that let local publishers in without a password (shown by
/// `install` and docs/install.md).
pub const MEDIAMTX_LOCAL_PUBLISH: &str = "\
authInternalUsers:
  # The stream manager's ffmpeg publishes from this host: no password needed, so none
  # sits on its command line.
  - user: any
    pass:
    ips: ['127.0.0.1', '::1']
    permissions:
      - action: publish
      - action: api
  # ... your other users (readers, remote publishers) with their passwords
";

/// Does ffmpeg's publish URL carry credentials (`rtsp_url` userinfo, or `[mediamtx]
/// username`/`password`)?
pub fn publish_has_credentials(s: &Settings) -> bool {
    let url = crate::streams::publish_url(s, "x");
    crate::util::split_userinfo(&url).is_some()
}

/// Does this `/proc/self/mountinfo` text mount `/proc` with `hidepid` set to hide other
/// users' processes (`1`/`noaccess` or `2`/`invisible`)? The last mount on `/proc` wins.
pub fn proc_hides_pids(mountinfo: &str) -> bool {
    let mut hidden = false;
    for line in mountinfo.lines() {
        let mut w = line.split_whitespace();
        if w.nth(4) != Some("/proc") {
            continue;
        }
        let (_, fs) = line.split_once(" - ").unwrap_or(("", ""));
        if fs.split_whitespace().next() != Some("proc") {
            continue;
        }
        hidden = line
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter_map(|o| o.strip_prefix("hidepid="))
            .any(|v| matches!(v, "1" | "2" | "noaccess" | "invisible"));
    }
    hidden
}

/// The warning `config`, `diagnose` and `start` give when a password would be visible to
/// every local user; `None` when there is none or `/proc` hides it.
pub fn cmdline_warning(s: &Settings) -> Option<String> {
    if !publish_has_credentials(s) {
        return None;
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if proc_hides_pids(&mountinfo) {
        return None;
    }
    Some(
        "the publish credentials (mediamtx.rtsp_url or username/password) are on ffmpeg's command \
         line, readable by every local user in /proc/<pid>/cmdline: let MediaMTX accept publishing \
         from 127.0.0.1 without a password (docs/install.md), or mount /proc with hidepid=invisible"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidepid_from_mountinfo() {
        let line = |opts: &str| {
            format!(
                "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc {opts}\n"
            )
        };
        let table = [
            (line("rw"), false),
            (line("rw,hidepid=0"), false),
            (line("rw,hidepid=off"), false),
            (line("rw,hidepid=1"), true),
            (line("rw,hidepid=2,gid=4"), true),
            (line("rw,hidepid=invisible"), true),
            (line("rw,hidepid=noaccess"), true),
            (line("rw,subset=pid"), false),
            // Another file system on /proc/sys, or proc mounted elsewhere: not /proc.
            (
                "30 22 0:5 / /proc/sys/fs/binfmt_misc rw - binfmt_misc x rw,hidepid=2\n".into(),
                false,
            ),
            (
                "40 1 0:9 / /mnt/p rw - proc proc rw,hidepid=2\n".into(),
                false,
            ),
            // The last mount on /proc wins.
            (format!("{}{}", line("rw,hidepid=2"), line("rw")), false),
            (format!("{}{}", line("rw"), line("rw,hidepid=2")), true),
            (String::new(), false),
        ];
        for (i, (text, want)) in table.iter().enumerate() {
            assert_eq!(proc_hides_pids(text), *want, "row {i}: {text}");
        }
    }

    #[test]
    fn credentials_in_the_publish_url() {
        let p = std::path::Path::new("/x.toml");
        let cases = [
            ("", false),
            ("[mediamtx]\nrtsp_url = \"rtsp://u:pa/ss@h:8554\"\n", true),
            ("[mediamtx]\nusername = \"pub\"\npassword = \"x\"\n", true),
            ("[mediamtx]\nrtsp_url = \"rtsp://127.0.0.1:8554\"\n", false),
        ];
        for (toml, want) in cases {
            let s = Settings::from_toml(p, toml).unwrap();
            assert_eq!(publish_has_credentials(&s), want, "{toml}");
        }
    }
}
