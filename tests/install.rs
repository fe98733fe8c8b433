//! `install` / `uninstall` through the built binary, into scratch roots; the contrib/
//! and etc/ files they must agree with; the Debian package when cargo-deb is present.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mediamtx_stream_manager::config::legacy::DeviceFile;
use mediamtx_stream_manager::config::params::{Codec, PartialParams};
use mediamtx_stream_manager::config::Settings;

const UNIT: &str = "etc/systemd/system/mediamtx-audio.service";
const CRON: &str = "etc/cron.d/mediamtx-monitor";
const USR_BIN: &str = "/usr/bin/mediamtx-stream-manager";
/// SPEC §9, byte for byte, with <binary> = /usr/bin/mediamtx-stream-manager.
const SPEC_CRON_LINE: &str = "*/5 * * * * root flock -n /run/mediamtx-monitor.lock -c '/usr/bin/mediamtx-stream-manager monitor; EXIT=$?; if [ $EXIT -eq 2 ]; then systemctl restart mediamtx-audio; elif [ $EXIT -ne 0 ]; then logger -t mediamtx-monitor \"Non-critical exit code $EXIT (no restart)\"; fi' || logger -t mediamtx-monitor \"Monitor already running or locked\"";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Run the binary with no inherited config or mode from the environment.
fn run(args: &[&str]) -> Output {
    cmd(args).output().expect("run binary")
}

fn cmd(args: &[&str]) -> Command {
    let mut c = Command::new(common::bin());
    c.args(args)
        .env_remove("MEDIAMTX_STREAM_MANAGER_CONFIG")
        .env_remove("STREAM_MODE")
        .env_remove("MULTIPLEX_FILTER_TYPE")
        .env_remove("MULTIPLEX_STREAM_NAME")
        .env_remove("MEDIAMTX_HOST");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// Every path under `root` with its mode and content (directories: mode only).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, Option<Vec<u8>>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let md = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if md.is_dir() {
                stack.push(p.clone());
                out.insert(rel, (md.permissions().mode(), None));
            } else {
                out.insert(rel, (md.permissions().mode(), Some(fs::read(&p).unwrap())));
            }
        }
    }
    out
}

fn install_root(root: &Path, extra: &[&str]) -> Output {
    let r = root.to_str().unwrap();
    let mut args = vec!["install", "--root", r, "--binary", USR_BIN];
    args.extend_from_slice(extra);
    run(&args)
}

fn uninstall_root(root: &Path) -> Output {
    run(&["uninstall", "--root", root.to_str().unwrap()])
}

fn ok(o: &Output, what: &str) {
    assert_eq!(
        code(o),
        0,
        "{what}: stdout {} stderr {}",
        text(&o.stdout),
        text(&o.stderr)
    );
}

#[test]
fn rendering_matches_contrib_files() {
    let t = tempfile::tempdir().unwrap();
    ok(&install_root(t.path(), &[]), "install");
    assert_eq!(
        read(&t.path().join(UNIT)),
        read(&repo("contrib/mediamtx-audio.service"))
    );
    let cron = read(&t.path().join(CRON));
    assert_eq!(cron, read(&repo("contrib/mediamtx-monitor")));
    assert!(cron.lines().any(|l| l == SPEC_CRON_LINE), "{cron}");
    assert!(
        cron.ends_with('\n'),
        "cron ignores an unterminated last line"
    );
    for (p, want) in [(UNIT, 0o644), (CRON, 0o644)] {
        let mode = fs::metadata(t.path().join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, want, "{p}");
    }
}

/// The package's cron file is the same file with the job commented out.
#[test]
fn debian_cron_file_is_the_rendered_one_disabled() {
    let active = read(&repo("contrib/mediamtx-monitor"));
    let disabled = read(&repo("contrib/debian/mediamtx-monitor"));
    let settings = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.contains('=') && !l.starts_with('#') && !l.starts_with("*/"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(settings(&active), settings(&disabled));
    assert!(disabled.lines().any(|l| l == format!("#{SPEC_CRON_LINE}")));
    assert!(
        !disabled.lines().any(|l| l.starts_with("*/")),
        "the package must not start anything by itself"
    );
}

/// Parse a unit into (section, key, value) triples.
fn unit_entries(unit: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (k, v) = line.split_once('=').expect("key=value");
        out.push((section.clone(), k.to_string(), v.to_string()));
    }
    out
}

#[test]
fn unit_has_the_spec_keys_and_passes_systemd_analyze_verify() {
    let t = tempfile::tempdir().unwrap();
    let bin = common::bin();
    let conf = t.path().join("my settings.toml");
    fs::write(&conf, "").unwrap();
    let r = t.path().join("root");
    let o = run(&[
        "install",
        "--root",
        r.to_str().unwrap(),
        "--binary",
        bin.to_str().unwrap(),
        "-m",
        "multiplex",
        "-f",
        "amerge",
        "-n",
        "yard",
        "-c",
        conf.to_str().unwrap(),
    ]);
    ok(&o, "install");
    let unit_path = r.join(UNIT);
    let unit = read(&unit_path);
    let entries = unit_entries(&unit);
    let get = |s: &str, k: &str| -> Vec<&str> {
        entries
            .iter()
            .filter(|(es, ek, _)| es == s && ek == k)
            .map(|(_, _, v)| v.as_str())
            .collect()
    };
    let conf_abs = fs::canonicalize(&conf).unwrap();
    let exec = format!(
        "{} start --foreground -m multiplex -f amerge -n yard -c \"{}\"",
        bin.display(),
        conf_abs.display()
    );
    let required = [
        (
            "Unit",
            "After",
            "network-online.target sound.target mediamtx.service",
        ),
        ("Unit", "Wants", "mediamtx.service"),
        ("Service", "Type", "notify"),
        ("Service", "NotifyAccess", "main"),
        ("Service", "ExecStart", exec.as_str()),
        ("Service", "ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Service", "Restart", "always"),
        ("Service", "RestartSec", "5"),
        ("Service", "KillMode", "mixed"),
        ("Service", "TimeoutStopSec", "30"),
        ("Service", "WatchdogSec", "30"),
        ("Service", "RuntimeDirectory", "mediamtx-audio"),
        ("Service", "LogsDirectory", "mediamtx-audio"),
        ("Service", "SupplementaryGroups", "audio"),
        ("Service", "ProtectSystem", "strict"),
        ("Service", "ProtectHome", "yes"),
        ("Service", "PrivateTmp", "yes"),
        ("Service", "NoNewPrivileges", "yes"),
        ("Service", "DevicePolicy", "closed"),
        ("Service", "DeviceAllow", "char-alsa rw"),
        ("Install", "WantedBy", "multi-user.target"),
    ];
    for (s, k, v) in required {
        assert_eq!(get(s, k), vec![v], "[{s}] {k} in\n{unit}");
    }
    assert!(
        get("Service", "PrivateDevices").is_empty(),
        "PrivateDevices hides /dev/snd"
    );
    for (_, k, v) in &entries {
        assert!(
            !(k.starts_with("Inaccessible") && (v.contains("/dev") || v.contains("/proc"))),
            "{k}={v} would hide ALSA"
        );
    }

    // systemd's own parser: unknown keys and bad values are warnings on stderr.
    match Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit_path)
        .output()
    {
        Ok(o) => {
            let err = text(&o.stderr);
            assert!(
                o.status.success() && err.trim().is_empty(),
                "systemd-analyze verify: {}\n{err}\n{unit}",
                o.status
            );
        }
        Err(e) => panic!(
            "systemd-analyze cannot run here ({e}); install systemd (apt-get install -y systemd) — the keys above were checked by hand"
        ),
    }
}

#[test]
fn install_then_uninstall_leaves_the_root_as_it_was() {
    for pre_existing in [false, true] {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        if pre_existing {
            fs::create_dir_all(root.join("etc/cron.d")).unwrap();
            fs::create_dir_all(root.join("etc/systemd/system")).unwrap();
            fs::write(root.join("etc/cron.d/other-job"), "* * * * * root true\n").unwrap();
            fs::write(root.join("etc/systemd/system/other.service"), "[Unit]\n").unwrap();
        }
        let before = snapshot(root);
        ok(&install_root(root, &["-m", "multiplex"]), "install");
        assert!(root.join(UNIT).is_file() && root.join(CRON).is_file());
        let o = uninstall_root(root);
        ok(&o, "uninstall");
        assert_eq!(snapshot(root), before, "pre-existing={pre_existing}");
        // Second uninstall: nothing there, still fine.
        let o = uninstall_root(root);
        ok(&o, "uninstall again");
        assert!(text(&o.stdout).contains("nothing to uninstall"));
    }
}

#[test]
fn differing_unit_is_backed_up_identical_left_alone() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let unit = root.join(UNIT);
    fs::create_dir_all(unit.parent().unwrap()).unwrap();
    fs::write(&unit, "[Service]\nExecStart=/old/binary\n").unwrap();

    let o = install_root(root, &[]);
    ok(&o, "install over an old unit");
    let backups: Vec<PathBuf> = fs::read_dir(unit.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("mediamtx-audio.service.bak."))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(read(&backups[0]), "[Service]\nExecStart=/old/binary\n");
    assert!(text(&o.stdout).contains("backed up"), "{}", text(&o.stdout));
    assert_eq!(read(&unit), read(&repo("contrib/mediamtx-audio.service")));

    // Same content again: no new backup, files untouched.
    let before = snapshot(root);
    let o = install_root(root, &[]);
    ok(&o, "re-install");
    assert!(text(&o.stdout).contains("unchanged"));
    assert_eq!(snapshot(root), before);

    // Uninstall removes what install wrote and keeps the backup.
    ok(&uninstall_root(root), "uninstall");
    assert!(!unit.exists() && !root.join(CRON).exists());
    assert!(backups[0].is_file());
}

#[test]
fn uninstall_refuses_edited_files_and_removes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    ok(&install_root(root, &[]), "install");
    let cron = root.join(CRON);
    let edited = format!("{}MAILTO=admin\n", read(&cron));
    fs::write(&cron, &edited).unwrap();
    let before = snapshot(root);
    let o = uninstall_root(root);
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("mediamtx-monitor") && err.contains("differs") && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(snapshot(root), before, "nothing removed");
}

#[test]
fn dry_run_writes_nothing_and_no_cron_skips_cron() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let before = snapshot(root);
    let o = install_root(root, &["--dry-run", "--enable"]);
    ok(&o, "dry run");
    assert_eq!(snapshot(root), before, "dry run wrote something");
    let out = text(&o.stdout);
    assert!(
        out.contains("would create") && out.contains(SPEC_CRON_LINE),
        "{out}"
    );
    assert!(out.contains("ExecStart=/usr/bin/mediamtx-stream-manager start --foreground"));

    ok(&install_root(root, &["--no-cron"]), "install --no-cron");
    assert!(root.join(UNIT).is_file());
    assert!(!root.join(CRON).exists() && !root.join("etc/cron.d").exists());
}

#[test]
fn bad_paths_are_clear_errors() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path().to_str().unwrap();
    let o = run(&["install", "--root", r, "--binary", "relative/bin"]);
    assert_eq!(code(&o), 1);
    assert!(text(&o.stderr).contains("absolute"), "{}", text(&o.stderr));

    let o = run(&["install", "--root", r, "--binary", "/opt/my bin/x"]);
    assert_eq!(code(&o), 1);
    assert!(text(&o.stderr).contains("cron line"), "{}", text(&o.stderr));
    assert!(snapshot(t.path()).is_empty(), "nothing written on error");
    // Without the cron file the unit quotes the path instead.
    let o = run(&[
        "install",
        "--root",
        r,
        "--binary",
        "/opt/my bin/x",
        "--no-cron",
    ]);
    ok(&o, "--no-cron with a space");
    assert!(read(&t.path().join(UNIT)).contains("ExecStart=\"/opt/my bin/x\" start"));

    // A masked unit (symlink to /dev/null) is the admin's decision: never replaced.
    let masked = tempfile::tempdir().unwrap();
    let unit = masked.path().join(UNIT);
    fs::create_dir_all(unit.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/dev/null", &unit).unwrap();
    let before = snapshot(masked.path());
    let o = install_root(masked.path(), &[]);
    assert_eq!(code(&o), 1);
    assert!(text(&o.stderr).contains("symlink"), "{}", text(&o.stderr));
    assert_eq!(snapshot(masked.path()), before);

    let missing = t.path().join("missing.toml");
    let o = run(&["install", "--root", r, "-c", missing.to_str().unwrap()]);
    assert_eq!(code(&o), 4, "missing explicit config is exit 4");
    assert!(text(&o.stderr).contains("missing.toml"));
}

#[test]
fn not_root_without_root_flag_is_exit_1() {
    let as_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| text(&o.stdout).trim() == "0")
        .unwrap_or(false);
    for args in [
        vec!["install", "--binary", USR_BIN],
        vec!["install", "--enable"],
        vec!["uninstall"],
    ] {
        let o = if as_root {
            // Drop to nobody; setpriv is in util-linux, present wherever this runs as root.
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(common::bin())
                .args(&args);
            c.env_remove("MEDIAMTX_STREAM_MANAGER_CONFIG");
            c.output()
                .expect("setpriv (util-linux) is needed to test as a non-root user")
        } else {
            run(&args)
        };
        let err = text(&o.stderr);
        assert_eq!(code(&o), 1, "{args:?}: {err}");
        assert!(err.contains("root") && err.lines().count() == 1, "{err}");
    }
}

/// Uncomment `#key = value` and `#[section]` lines (prose comments are `# ...`).
fn uncomment(example: &str) -> String {
    example
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '[') => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn toml_example_documents_every_key_with_its_true_default() {
    let path = repo("etc/stream-manager.toml.example");
    let example = read(&path);
    let s = Settings::from_toml(&path, &example).expect("example parses as is");
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    // And as an operator would check it, through the binary.
    let out = run(&["config", "--check", "-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).is_empty(),
        "no warnings: {}",
        text(&out.stderr)
    );

    let full = uncomment(&example);
    let u = Settings::from_toml(&path, &full).unwrap_or_else(|e| panic!("uncommented: {e}"));
    assert!(u.warnings.is_empty(), "unknown keys: {:?}", u.warnings);
    let d = Settings::default();
    // Keys with a built-in default must show exactly that default.
    assert_eq!(format!("{:?}", u.paths), format!("{:?}", d.paths));
    assert_eq!(format!("{:?}", u.discovery), format!("{:?}", d.discovery));
    assert_eq!(format!("{:?}", u.startup), format!("{:?}", d.startup));
    assert_eq!(u.backoff, d.backoff);
    assert_eq!(format!("{:?}", u.stop), format!("{:?}", d.stop));
    assert_eq!(format!("{:?}", u.monitor), format!("{:?}", d.monitor));
    assert_eq!(format!("{:?}", u.logs), format!("{:?}", d.logs));
    assert_eq!(u.mode, d.mode);
    assert_eq!(
        (u.multiplex.name.as_str(), u.multiplex.filter),
        (d.multiplex.name.as_str(), d.multiplex.filter)
    );
    let (um, dm) = (&u.mediamtx, &d.mediamtx);
    assert_eq!(
        (um.api, &um.api_url, &um.rtsp_url, um.poll, um.timeout),
        (dm.api, &dm.api_url, &dm.rtsp_url, dm.poll, dm.timeout)
    );
    let (uh, dh) = (&u.health, &d.health);
    assert_eq!(
        (
            uh.stall_timeout,
            uh.start_timeout,
            uh.unpublished_timeout,
            uh.silence_for
        ),
        (
            dh.stall_timeout,
            dh.start_timeout,
            dh.unpublished_timeout,
            dh.silence_for
        )
    );
    // [defaults] shows the built-in values of SPEC §5.
    assert_eq!(
        u.defaults,
        PartialParams {
            sample_rate: Some(48000),
            channels: Some(2),
            bitrate: Some("128k".into()),
            codec: Some(Codec::Opus),
            thread_queue: Some(8192),
        }
    );
    // Optional keys are shown too (every key of the file format is documented).
    assert!(u.mediamtx.username.is_some() && u.mediamtx.password.is_some());
    assert!(u.health.silence_db.is_some());
    assert!(u.metrics.textfile.is_some() && u.metrics.listen.is_some());
    assert!(u.web.enabled && u.web.username.is_some() && u.web.password.is_some());
    assert!(u.web.player_url.is_some());
    assert!(!d.web.enabled, "the page is off by default");
    assert!(u.multiplex.devices.is_some());
    let dev = u.device("garden").expect("[devices.\"garden\"] example");
    assert!(dev.stream.is_some() && dev.alsa_device.is_some() && dev.enabled.is_some());
    assert!(dev.params.sample_rate.is_some() && dev.params.thread_queue.is_some());
}

#[test]
fn legacy_example_parses_with_the_real_parser() {
    let path = repo("etc/audio-devices.conf.example");
    let text = read(&path);
    // As shipped, and with every commented assignment switched on: both must parse with
    // no unknown-key warnings, and show DEFAULT_* and DEVICE_* lines.
    for (what, body) in [
        ("as shipped", text.clone()),
        ("uncommented", uncomment(&text)),
    ] {
        let f = DeviceFile::parse(&path, &body).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(f.warnings.is_empty(), "{what}: {:?}", f.warnings);
        if what == "uncommented" {
            let keys: Vec<&str> = f.entries.iter().map(|e| e.key.as_str()).collect();
            assert!(keys.iter().any(|k| k.starts_with("DEFAULT_")), "{keys:?}");
            assert!(
                keys.iter().filter(|k| k.starts_with("DEVICE_")).count() >= 3,
                "{keys:?}"
            );
        }
    }
}

#[test]
fn udev_rule_sets_a_lowercase_card_id() {
    let rules = read(&repo("contrib/99-usb-microphone.rules"));
    let lines: Vec<&str> = rules
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert!(!lines.is_empty());
    for l in lines {
        assert!(l.contains("SUBSYSTEM==\"sound\""), "{l}");
        assert!(l.contains("ATTRS{idVendor}==") && l.contains("ATTRS{idProduct}=="));
        let id = l
            .split("ATTR{id}=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("ATTR{id}=");
        let valid = id.len() <= 15
            && id.starts_with(|c: char| c.is_ascii_lowercase())
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        assert!(valid, "card id {id:?} would not become the stream name");
    }
}

/// Build the .deb from the already built debug binary and inspect it.
/// CI (`CI=true`): a missing cargo-deb fails the test; elsewhere it prints SKIPPED.
#[test]
fn debian_package_contents() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    if !common::tool_available(
        "debian_package_contents",
        Command::new(&cargo).args(["deb", "--version"]),
        "cargo install cargo-deb --locked",
    ) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let deb = t.path().join("pkg.deb");
    // --no-build packages the binary cargo test already built, placed where a release
    // build would be in a scratch target dir (no release build on a 2-core box).
    let target = t.path().join("target");
    fs::create_dir_all(target.join("release")).unwrap();
    fs::copy(
        common::bin(),
        target.join("release/mediamtx-stream-manager"),
    )
    .unwrap();
    let o = Command::new(&cargo)
        .args(["deb", "--no-build", "--no-strip", "--fast", "--output"])
        .arg(&deb)
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo deb");
    ok(&o, "cargo deb");
    let contents = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .unwrap();
    ok(&contents, "dpkg-deb -c");
    let listing = text(&contents.stdout);
    for want in [
        "./usr/bin/mediamtx-stream-manager",
        "./lib/systemd/system/mediamtx-audio.service",
        "./etc/cron.d/mediamtx-monitor",
        "./usr/share/doc/mediamtx-stream-manager/install.md",
        "./usr/share/doc/mediamtx-stream-manager/migration.md",
        "./usr/share/doc/mediamtx-stream-manager/logrotate.md",
        "./usr/share/doc/mediamtx-stream-manager/examples/stream-manager.toml.example",
        "./usr/share/doc/mediamtx-stream-manager/examples/audio-devices.conf.example",
        "./usr/share/doc/mediamtx-stream-manager/examples/99-usb-microphone.rules",
    ] {
        assert!(listing.contains(want), "{want} missing from\n{listing}");
    }
    let info = Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .output()
        .unwrap();
    ok(&info, "dpkg-deb -I");
    let info = text(&info.stdout);
    let depends = info
        .lines()
        .find(|l| l.trim_start().starts_with("Depends:"))
        .unwrap_or_default();
    assert!(depends.contains("ffmpeg"), "{info}");
    for script in ["postinst", "prerm", "postrm", "conffiles"] {
        assert!(info.contains(script), "{script} missing: {info}");
    }
    let x = t.path().join("x");
    let o = Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(&x)
        .output()
        .unwrap();
    ok(&o, "dpkg-deb -e");
    assert!(read(&x.join("conffiles"))
        .lines()
        .any(|l| l == "/etc/cron.d/mediamtx-monitor"));
    let postinst = read(&x.join("postinst"));
    assert!(postinst.contains("systemctl daemon-reload"));
    let commands: Vec<&str> = postinst
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    for verb in ["enable", "start", "restart", "reenable"] {
        let bad = format!("systemctl {verb} ");
        assert!(
            !commands.iter().any(|l| l.contains(&bad)),
            "postinst must not start anything ({bad}): {postinst}"
        );
    }
}
