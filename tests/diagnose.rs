//! `diagnose [--bundle FILE]` (issue 9 part 3) through the binary: every part is there,
//! with and without a supervisor, as non-root, and no configured secret ever appears in
//! the text or anywhere inside the extracted bundle.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::mediamtx_mock::{MockMediamtx, Version};
use common::sup::Sup;

const PASSWORD: &str = "S3cr3t-Pw-991";
const USERNAME: &str = "pubuser77";
const URL_USER: &str = "urluser55";
const URL_PASS: &str = "UrlPass-442";
const SECRETS: [&str; 4] = [PASSWORD, USERNAME, URL_USER, URL_PASS];

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(
            !text.contains(s),
            "{what} contains the secret {s:?}:\n{text}"
        );
    }
}

/// A host with one microphone, credentials in the config, a stream log whose tail holds
/// credentials as old ffmpeg builds printed them, and a supervisor log.
fn setup() -> Sup {
    let mut s = Sup::new();
    s.usb(1, "mic1");
    s.set("mediamtx", "username", &format!("{USERNAME:?}"));
    s.set("mediamtx", "password", &format!("{PASSWORD:?}"));
    s.write_config();
    std::fs::create_dir_all(s.log_dir()).unwrap();
    let mut log: String = (0..150).map(|i| format!("line {i}\n")).collect();
    log.push_str(&format!(
        "[tcp @ 0x1] rtsp://{URL_USER}:{URL_PASS}@127.0.0.1:1/mic1: Connection refused\n"
    ));
    log.push_str(&format!("a tool echoed the password {PASSWORD} here\n"));
    std::fs::write(s.log_dir().join("mic1.log"), log).unwrap();
    std::fs::write(
        s.log_dir().join("supervisor.log"),
        "[2026-11-23T00:00:00Z INFO] supervisor started (pid 1), 1 stream(s)\n",
    )
    .unwrap();
    s
}

/// `install --root` into the test's dir: the unit and cron file diagnose must show.
fn install(s: &Sup) -> PathBuf {
    let root = s.dir.path().join("root");
    let out = s.run(&[
        "install",
        "--root",
        root.to_str().unwrap(),
        "--binary",
        "/usr/bin/mediamtx-stream-manager",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    root
}

#[test]
fn report_without_supervisor_names_every_part_and_no_secret() {
    let s = setup();
    let root = install(&s);
    let out = s.run(&["diagnose", "--root", root.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}\n{err}");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    for want in [
        &format!("mediamtx-stream-manager {}", env!("CARGO_PKG_VERSION")),
        "ffmpeg: ",
        &format!("kernel: {}", kernel.trim()),
        // This kernel (>= 5.3) has pidfds: the wrapper's poll wakes at a child's exit.
        "child exit: pidfd (Linux >= 5.3)",
        "mediamtx: API not used",
        // Redacted configuration.
        "password = \"***\"",
        "username = \"***\"",
        // Devices with names and ALSA addresses.
        "stream mic1",
        "plughw:CARD=mic1,DEV=0",
        "usb-Test_mic1-00",
        "usb-Test_mic1-00 -> ../controlC1",
        // Status without a supervisor.
        "supervisor: not running",
        // Monitor findings from the monitor's own checks.
        "monitor would exit 2",
        "supervisor not running",
        // Disk space of the product's directories.
        "paths.log_dir",
        "recording.dir",
        " free of ",
        // The installed files as written.
        "ExecStart=/usr/bin/mediamtx-stream-manager start --foreground",
        "*/5 * * * * root flock -n /run/mediamtx-monitor.lock",
        // Log tails.
        "supervisor started (pid 1)",
        "line 149",
        "rtsp://***@127.0.0.1:1/mic1: Connection refused",
        "a tool echoed the password *** here",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // The last 100 lines of mic1.log: lines 52..149 and the two credential lines.
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&"line 52") && !lines.contains(&"line 51"));
    assert!(
        text.contains("===== could not read =====\nnothing"),
        "{text}"
    );
    assert_no_secret("stdout", &text);
    assert_no_secret("stderr", &err);
}

/// Every file of the extracted bundle, as (path inside the bundle, content).
fn extract(bundle: &Path, into: &Path) -> Vec<(String, String)> {
    std::fs::create_dir_all(into).unwrap();
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(bundle)
        .arg("-C")
        .arg(into)
        .status()
        .expect("system tar");
    assert!(st.success(), "tar -xzf failed");
    let mut out = Vec::new();
    let mut stack = vec![into.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(into).unwrap().display().to_string();
                let bytes = std::fs::read(&p).unwrap();
                out.push((rel, String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn bundle_with_running_supervisor_and_mediamtx_has_every_file_and_no_secret() {
    let mock = MockMediamtx::start(Version::V1_20);
    mock.require_auth(USERNAME, PASSWORD, Duration::ZERO);
    mock.set_path("mic1", true);
    mock.grow("mic1", 1000);
    let mut s = setup();
    s.set("mediamtx", "api", "true");
    s.set("mediamtx", "api_url", &format!("{:?}", mock.url()));
    s.set("mediamtx", "poll", "\"200ms\"");
    s.write_config();
    let root = install(&s);
    s.start_foreground();
    s.wait_for("mic1 running", Duration::from_secs(10), |s| {
        s.stream("mic1").is_some_and(|st| st["state"] == "running")
    });
    let bundle = s.dir.path().join("out/diag.tar.gz");
    std::fs::create_dir_all(bundle.parent().unwrap()).unwrap();
    let out = s.run(&[
        "diagnose",
        "--bundle",
        bundle.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("wrote ") && stdout.contains("diag.tar.gz"),
        "{stdout}"
    );
    // Only the bundle is left in its directory (no temp file).
    let left: Vec<_> = std::fs::read_dir(bundle.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("diag.tar.gz")]);

    let files = extract(&bundle, &s.dir.path().join("x"));
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let d = "mediamtx-stream-manager-diagnose";
    for want in [
        "diagnose.txt",
        "versions.txt",
        "config.txt",
        "config.json",
        "devices.txt",
        "devices.json",
        "status.txt",
        "status.json",
        "monitor.txt",
        "monitor.json",
        "disk.txt",
        "installed.txt",
        "installed/etc/systemd/system/mediamtx-audio.service",
        "installed/etc/cron.d/mediamtx-monitor",
        "logs.txt",
        "logs/mic1.log",
        "logs/supervisor.log",
        "unreadable.txt",
    ] {
        let full = format!("{d}/{want}");
        assert!(
            names.contains(&full.as_str()),
            "missing {full} in {names:?}"
        );
    }
    let get = |n: &str| {
        files
            .iter()
            .find(|(f, _)| f == &format!("{d}/{n}"))
            .map(|(_, t)| t.clone())
            .unwrap()
    };
    assert!(
        get("versions.txt").contains("mediamtx: v1.20.1"),
        "{}",
        get("versions.txt")
    );
    let status: serde_json::Value = serde_json::from_str(&get("status.json")).unwrap();
    assert_eq!(status["supervisor"]["running"], true);
    assert_eq!(status["streams"][0]["name"], "mic1");
    assert_eq!(status["streams"][0]["state"], "running");
    // The live log: the supervisor's header line for the start, with the URL redacted.
    let log = get("logs/mic1.log");
    assert!(
        log.contains("fake-ffmpeg: ") && log.contains("rtsp://***@"),
        "{log}"
    );
    let monitor: serde_json::Value = serde_json::from_str(&get("monitor.json")).unwrap();
    assert!(monitor["exit"].is_u64(), "{monitor}");
    assert!(get("diagnose.txt").contains("===== monitor findings ====="));
    for (name, text) in &files {
        assert_no_secret(name, text);
    }
    // The whole tar stream too (entry names, headers), through the system's gzip.
    let o = Command::new("gzip")
        .arg("-dc")
        .arg(&bundle)
        .output()
        .expect("gzip");
    assert!(o.status.success());
    assert_no_secret("tar stream", &String::from_utf8_lossy(&o.stdout));
}

#[test]
fn unwritable_bundle_is_exit_1_with_one_line() {
    let s = setup();
    let bundle = s.dir.path().join("no/such/dir/diag.tar.gz");
    let out = s.run(&["diagnose", "--bundle", bundle.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot write bundle") && err.contains(bundle.to_str().unwrap()),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    assert!(!bundle.exists());
}

/// As a user who may read neither a 0000 log nor root's 0600 control socket: the report
/// is still produced (exit 0) and names what it could not read. Root bypasses file
/// permissions, so under root the command runs as `nobody` through `setpriv`.
#[test]
fn non_root_report_names_what_it_could_not_read() {
    let mut s = setup();
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    s.start_foreground();
    s.wait_for("mic1 running", Duration::from_secs(10), |s| {
        s.stream("mic1").is_some_and(|st| st["state"] == "running")
    });
    let secret_log = s.log_dir().join("old.log");
    std::fs::write(&secret_log, format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&secret_log, std::fs::Permissions::from_mode(0o000)).unwrap();
    for p in [s.cfg.clone(), s.log_dir().join("supervisor.log")] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(common::bin());
        c
    } else {
        Command::new(common::bin())
    };
    let out = cmd
        .args(["diagnose", "-c"])
        .arg(&s.cfg)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .expect("run diagnose");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unreadable = text
        .split("===== could not read =====\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no could-not-read section:\n{text}"));
    assert!(
        unreadable.lines().any(|l| l
            .strip_prefix(&format!("{}: ", secret_log.display()))
            .is_some_and(|why| why.eq_ignore_ascii_case("permission denied"))),
        "{unreadable}"
    );
    assert!(unreadable.contains("run as root"), "{unreadable}");
    if root {
        // The supervisor runs as root: its 0600 socket is closed to nobody.
        assert!(
            unreadable.contains("live status from the control socket"),
            "{unreadable}"
        );
        assert!(text.contains("supervisor: running (pid"), "{text}");
        assert!(
            text.contains("run as root for the verdict cron gets"),
            "{text}"
        );
    }
    // What was readable is there.
    assert!(text.contains("supervisor started (pid 1)"), "{text}");
    assert!(text.contains("plughw:CARD=mic1,DEV=0"), "{text}");
    assert_no_secret("stdout", &text);
}
