//! The hardened unit and the Debian package, checked with the tools an operator uses:
//! `systemd-analyze security` scores the unit `install` writes; the supervisor runs under
//! the unit's capability set (setpriv) and still starts, stalls-kills and stops its
//! children; the `.deb` is built, passes lintian without errors, installs with `dpkg -i`,
//! runs, passes `systemd-analyze verify`, and is removed again.
//!
//! Only `debian_package_*` touches the machine (/usr/bin, /lib/systemd, /etc/cron.d), and
//! it is the only test in this binary that does: no other test here uses those paths, and
//! cargo runs test binaries one after another.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::sup::Sup;

const MAX_EXPOSURE: f64 = 3.5;
const PKG: &str = "mediamtx-stream-manager";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: {}\nstdout {}\nstderr {}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Root is needed (dpkg -i, dropping capabilities): CI runs as root, so there a non-root
/// run is a failure; elsewhere one SKIPPED line.
fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if common::in_ci() {
        panic!("{test}: CI must run as root (.ci/run)");
    }
    eprintln!("SKIPPED {test}: needs root");
    false
}

/// The unit exactly as `install` writes it, in a scratch root; returns its path.
fn rendered_unit(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    let o = Command::new(common::bin())
        .args(["install", "--root"])
        .arg(&root)
        .arg("--binary")
        .arg(common::bin())
        .env_remove("MEDIAMTX_STREAM_MANAGER_CONFIG")
        .output()
        .unwrap();
    ok(&o, "install --root");
    root.join("etc/systemd/system/mediamtx-audio.service")
}

/// `[Service]` values of `key` in a unit.
fn service_values(unit: &str, key: &str) -> Vec<String> {
    let mut in_service = false;
    let mut out = Vec::new();
    for l in unit.lines().map(str::trim) {
        if l.starts_with('[') {
            in_service = l == "[Service]";
        } else if in_service {
            if let Some(v) = l.strip_prefix(key).and_then(|r| r.strip_prefix('=')) {
                out.push(v.to_string());
            }
        }
    }
    out
}

/// `systemd-analyze security --offline=yes FILE`: the overall exposure and the report.
fn exposure(unit: &Path) -> (f64, String) {
    let o = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit)
        .output()
        .expect("systemd-analyze");
    let report = format!("{}{}", text(&o.stdout), text(&o.stderr));
    let score = report
        .lines()
        .find_map(|l| {
            l.split_once("Overall exposure level for ")?
                .1
                .split_once(": ")
        })
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    (score, report)
}

fn systemd_analyze_available(test: &str) -> bool {
    common::tool_available(
        test,
        Command::new("systemd-analyze").arg("--version"),
        "apt-get install -y systemd",
    )
}

#[test]
fn unit_exposure_is_at_most_3_5() {
    if !systemd_analyze_available("unit_exposure_is_at_most_3_5") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let unit = rendered_unit(t.path());
    let (score, report) = exposure(&unit);
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}:\n{report}"
    );
    // What it must keep: /dev/snd (no PrivateDevices), /proc/asound (no ProcSubset=pid),
    // the network (no PrivateNetwork, IPv4/IPv6 allowed).
    let text = fs::read_to_string(&unit).unwrap();
    for (key, forbidden) in [
        ("PrivateDevices", "yes"),
        ("ProcSubset", "pid"),
        ("PrivateNetwork", "yes"),
    ] {
        assert!(
            !service_values(&text, key).iter().any(|v| v == forbidden),
            "{key}={forbidden} would break ALSA or MediaMTX"
        );
    }
    let families = service_values(&text, "RestrictAddressFamilies").join(" ");
    for f in ["AF_UNIX", "AF_INET", "AF_INET6"] {
        assert!(
            families.split(' ').any(|x| x == f),
            "{f} missing: {families}"
        );
    }
    assert_eq!(service_values(&text, "DeviceAllow"), ["char-alsa rw"]);
    // The scorer is not lenient: a unit without sandboxing scores far above the limit.
    let bare = t.path().join("bare.service");
    fs::write(&bare, "[Service]\nExecStart=/bin/true\n").unwrap();
    let (bare_score, _) = exposure(&bare);
    assert!(bare_score > 9.0, "bare unit scored {bare_score}");
}

/// The supervisor under the unit's own capability set and no-new-privs (what systemd
/// gives it; setpriv applies the same): it starts both streams, kills a stalled child,
/// restarts it, writes its state and log dirs, and stops everything.
#[test]
fn supervisor_works_under_the_units_capability_set() {
    let test = "supervisor_works_under_the_units_capability_set";
    if !root_or_skip(test)
        || !common::tool_available(
            test,
            Command::new("setpriv").arg("--version"),
            "apt-get install -y util-linux",
        )
    {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let unit = fs::read_to_string(rendered_unit(t.path())).unwrap();
    let caps = service_values(&unit, "CapabilityBoundingSet");
    assert_eq!(caps, [""], "the unit drops every capability");
    assert_eq!(service_values(&unit, "NoNewPrivileges"), ["yes"]);

    let mut s = Sup::new();
    s.usb(1, "garden");
    s.usb(2, "studio");
    s.set_mode("run");
    s.write_config();
    let mut outer = Command::new("setpriv");
    outer.args([
        "--bounding-set=-all",
        "--inh-caps=-all",
        "--no-new-privs",
        "--",
    ]);
    s.start_wrapped(outer);
    let both_running = |s: &Sup| {
        ["garden", "studio"]
            .iter()
            .all(|n| s.stream(n).is_some_and(|v| v["state"] == "running"))
    };
    s.wait_for("both running", Duration::from_secs(20), both_running);

    // No capabilities in the supervisor or its children.
    let sup_pid = s.supervisor_pid().expect("supervisor.pid");
    let mut pids = vec![sup_pid];
    pids.extend(s.marked().iter().map(|(p, _)| *p));
    assert!(pids.len() >= 3, "supervisor and two children: {pids:?}");
    for pid in &pids {
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
            assert_ne!(*pid, sup_pid, "supervisor /proc/{pid}/status unreadable");
            continue; // a child that just exited
        };
        for field in ["CapEff:", "CapPrm:", "CapBnd:"] {
            let v = status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .map(str::trim)
                .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
            assert!(v.chars().all(|c| c == '0'), "pid {pid} {field} {v}");
        }
    }

    // The supervisor signals its own children: a stalled child is killed and replaced.
    let old = s.stream("garden").unwrap()["pid"].as_i64().unwrap();
    s.set_mode("hang");
    common::sup::kill(old as i32, libc::SIGKILL);
    s.wait_for("stalled child killed", Duration::from_secs(20), |s| {
        s.stream("garden").is_some_and(|v| {
            v["last_exit"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("stalled"))
        })
    });
    s.set_mode("run");
    s.wait_for("garden back", Duration::from_secs(20), both_running);

    // State and log dirs were written without any capability.
    assert!(s.state_dir().join("supervisor.pid").exists());
    assert!(s.log_dir().join("garden.log").exists());
    assert!(s.log_dir().join("studio.log").exists());

    let out = s.run(&["stop"]);
    ok(&out, "stop");
    let until = Instant::now() + Duration::from_secs(20);
    while !s.marked().is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(s.marked().is_empty(), "left behind: {:?}", s.marked());
    assert!(!common::sup::alive(sup_pid), "supervisor still alive");
}

/// Removes the package on drop, so a failed assertion leaves the machine as it was.
struct Installed {
    purge: bool,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = dpkg(&["-r", PKG]);
        if self.purge {
            let _ = dpkg(&["-P", PKG]);
        }
    }
}

/// dpkg, retried while another dpkg/apt run holds its lock (up to 2 minutes).
fn dpkg(args: &[&str]) -> Output {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let o = Command::new("dpkg").args(args).output().expect("dpkg");
        let locked = !o.status.success() && text(&o.stderr).contains("lock");
        if !locked || Instant::now() > until {
            return o;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn installed_status() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", PKG])
        .output()
        .map(|o| text(&o.stdout))
        .unwrap_or_default()
}

/// Lintian tags of a level ("E" or "W") from lintian's one-line output.
fn lintian_tags(out: &str, level: &str) -> Vec<String> {
    let prefix = format!("{level}: {PKG}");
    out.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.split_once(": ")?.1.split_once(": ")?.1.split(' ').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn lintian_tag_parser_table() {
    let out = "running with root privileges is not recommended!\n\
               E: mediamtx-stream-manager: bogus-mail-host Maintainer root@localhost\n\
               W: mediamtx-stream-manager: no-manual-page [usr/bin/x]\n\
               W: mediamtx-stream-manager binary: old-style-tag\n\
               N: W: not-a-tag\n";
    assert_eq!(lintian_tags(out, "E"), ["bogus-mail-host"]);
    assert_eq!(lintian_tags(out, "W"), ["no-manual-page", "old-style-tag"]);
}

#[test]
fn debian_package_lints_installs_runs_and_removes() {
    let test = "debian_package_lints_installs_runs_and_removes";
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    if !root_or_skip(test)
        || !common::tool_available(
            test,
            Command::new("dpkg").arg("--version"),
            "a Debian system",
        )
        || !common::tool_available(
            test,
            Command::new(&cargo).args(["deb", "--version"]),
            "cargo install cargo-deb --locked",
        )
        || !common::tool_available(
            test,
            Command::new("lintian").arg("--version"),
            "apt-get install -y lintian",
        )
        || !systemd_analyze_available(test)
    {
        return;
    }
    // An admin's real installation is never touched outside CI (CI machines are fresh).
    if installed_status().starts_with("install ok installed") && !common::in_ci() {
        eprintln!("SKIPPED {test}: {PKG} is installed on this machine; leaving it alone");
        return;
    }

    // Build from the binary cargo test already built (no release build on a 2-core box),
    // placed where a release build would be, in a scratch target dir; cargo-deb strips it.
    let t = tempfile::tempdir().unwrap();
    let deb = t.path().join("pkg.deb");
    let target = t.path().join("target");
    fs::create_dir_all(target.join("release")).unwrap();
    fs::copy(common::bin(), target.join("release").join(PKG)).unwrap();
    let o = Command::new(&cargo)
        .args(["deb", "--no-build", "--output"])
        .arg(&deb)
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo deb");
    ok(&o, "cargo deb");

    // lintian: no errors; every warning is one docs/install.md explains.
    let o = Command::new("lintian")
        .args(["--tag-display-limit", "0"])
        .arg(&deb)
        .output()
        .expect("lintian");
    let report = format!("{}{}", text(&o.stdout), text(&o.stderr));
    let errors = lintian_tags(&report, "E");
    assert!(errors.is_empty(), "lintian errors {errors:?}:\n{report}");
    assert!(
        o.status.success(),
        "lintian failed ({}):\n{report}",
        o.status
    );
    let docs = fs::read_to_string(repo("docs/install.md")).unwrap();
    for w in lintian_tags(&report, "W") {
        assert!(
            docs.contains(&format!("`{w}`")),
            "lintian warning {w} is not explained in docs/install.md:\n{report}"
        );
    }

    // Install it into this machine.
    let log_dir_existed = Path::new("/var/log/mediamtx-audio").exists();
    let o = dpkg(&["-i", deb.to_str().unwrap()]);
    let _installed = Installed {
        purge: !log_dir_existed,
    };
    ok(&o, "dpkg -i");
    assert!(
        installed_status().starts_with("install ok installed"),
        "{}",
        installed_status()
    );
    let bin = Path::new("/usr/bin").join(PKG);
    let mode = fs::metadata(&bin)
        .expect("binary installed")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755, "{}", bin.display());
    let unit = Path::new("/lib/systemd/system/mediamtx-audio.service");
    assert_eq!(
        fs::read_to_string(unit).expect("unit installed"),
        fs::read_to_string(repo("contrib/mediamtx-audio.service")).unwrap()
    );
    let cron = fs::read_to_string("/etc/cron.d/mediamtx-monitor").expect("cron file");
    assert!(
        !cron.lines().any(|l| l.starts_with("*/")),
        "the package must not enable the cron line:\n{cron}"
    );
    let doc = Path::new("/usr/share/doc").join(PKG);
    for f in [
        "copyright",
        "changelog.Debian.gz",
        "install.md",
        "examples/stream-manager.toml.example",
        "examples/prometheus-alerts.yml",
        "examples/grafana-dashboard.json",
    ] {
        assert!(doc.join(f).exists(), "{f} not installed");
    }

    let o = Command::new(&bin).arg("--version").output().unwrap();
    ok(&o, "--version");
    assert!(
        text(&o.stdout).contains(env!("CARGO_PKG_VERSION")),
        "{}",
        text(&o.stdout)
    );

    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert!(
        o.status.success() && err.trim().is_empty(),
        "systemd-analyze verify {}: {}\n{err}",
        unit.display(),
        o.status
    );
    let (score, report) = exposure(unit);
    assert!(score <= MAX_EXPOSURE, "installed unit: {score}\n{report}");

    // Remove it again: binary and unit gone.
    let o = dpkg(&["-r", PKG]);
    ok(&o, "dpkg -r");
    assert!(!bin.exists(), "binary left after dpkg -r");
    assert!(!unit.exists(), "unit left after dpkg -r");
}

/// Every system call named by a `systemd-analyze syscall-filter` group, nested groups expanded.
fn syscall_group(group: &str) -> std::collections::BTreeSet<String> {
    let o = Command::new("systemd-analyze")
        .args(["syscall-filter", "--no-pager", group])
        .output()
        .expect("systemd-analyze syscall-filter");
    ok(&o, "systemd-analyze syscall-filter");
    let mut out = std::collections::BTreeSet::new();
    for l in text(&o.stdout).lines().skip(1).map(str::trim) {
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if l.starts_with('@') {
            out.extend(syscall_group(l));
        } else {
            out.insert(l.to_string());
        }
    }
    out
}

/// The unit's `SystemCallFilter=` lines as (allowed, denied) sets.
fn unit_filter(unit: &str) -> (Vec<String>, Vec<String>) {
    let (mut allow, mut deny) = (Vec::new(), Vec::new());
    for v in service_values(unit, "SystemCallFilter") {
        match v.strip_prefix('~') {
            Some(d) => deny.extend(d.split_whitespace().map(str::to_string)),
            None => allow.extend(v.split_whitespace().map(str::to_string)),
        }
    }
    (allow, deny)
}

/// The unit's system-call filter lets everything through that the service really does:
/// a supervisor on real ffmpeg (ALSA capture from a virtual microphone, levels, local
/// recording, RTSP publishing, the MediaMTX API, the metrics listener and textfile),
/// traced with `strace -f -c` through start, a child restart and stop.
#[test]
fn every_system_call_the_service_makes_passes_the_units_filter() {
    let test = "every_system_call_the_service_makes_passes_the_units_filter";
    if !systemd_analyze_available(test)
        || !common::tool_available(
            test,
            Command::new("strace").arg("-V"),
            "apt-get install -y strace",
        )
    {
        return;
    }
    common::require_ffmpeg();
    let t = tempfile::tempdir().unwrap();
    let unit = fs::read_to_string(rendered_unit(t.path())).unwrap();
    let (allow, deny) = unit_filter(&unit);
    assert!(!allow.is_empty(), "the unit has a SystemCallFilter");
    let allowed: std::collections::BTreeSet<String> =
        allow.iter().flat_map(|g| syscall_group(g)).collect();
    let denied: std::collections::BTreeSet<String> =
        deny.iter().flat_map(|g| syscall_group(g)).collect();
    assert!(allowed.contains("read") && !allowed.contains("mount") && denied.contains("reboot"));

    let mut s = Sup::new();
    let conf = common::rtsp::virtual_mic_tone(s.dir.path(), "tonemic", 48000, 2, 0.1);
    let rx = common::rtsp::Receiver::start_for(s.dir.path(), "garden", 30.0);
    let mock = common::mediamtx_mock::MockMediamtx::start(common::mediamtx_mock::Version::V1_20);
    mock.set_path("garden", true);
    mock.grow("garden", 4096);
    let port = common::rtsp::free_port();
    let textfile = s.dir.path().join("m.prom");
    let rec_dir = s.dir.path().join("rec");
    s.real_metrics_box(&conf, rx.port(), &mock.url(), port, &textfile, &rec_dir);

    let trace = s.dir.path().join("strace.txt");
    let mut outer = Command::new("strace");
    outer.args(["-f", "-qq", "-c", "-o"]).arg(&trace).arg("--");
    s.start_wrapped(outer);
    s.wait_for("supervisor answering", Duration::from_secs(30), |s| {
        s.status().is_some()
    });
    s.wait_for(
        "levels, recording, metrics",
        Duration::from_secs(40),
        |_| {
            fs::read_to_string(&textfile).is_ok_and(|t| {
                t.contains("stream_level_peak_dbfs{stream=\"garden\"}")
                    && t.contains("stream_recording_files{stream=\"garden\"}")
                    && t.contains("stream_mediamtx_path_available{stream=\"garden\"} 1")
            })
        },
    );
    let _ = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut c| {
        use std::io::{Read, Write};
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut b = Vec::new();
        c.read_to_end(&mut b).map(|_| ())
    });
    // A child restart: the supervisor's kill, wait and re-spawn paths.
    let old = s.stream("garden").unwrap()["pid"].as_i64().unwrap();
    common::sup::kill(old as i32, libc::SIGKILL);
    s.wait_for("restarted", Duration::from_secs(30), |s| {
        s.stream("garden")
            .is_some_and(|v| v["state"] == "running" && v["pid"].as_i64().is_some_and(|p| p != old))
    });
    ok(&s.run(&["stop"]), "stop");
    let until = Instant::now() + Duration::from_secs(30);
    let mut ended = false;
    while !ended && Instant::now() < until {
        ended = s.foreground.as_mut().unwrap().try_wait().unwrap().is_some();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ended, "strace did not end");

    let report = fs::read_to_string(&trace).expect("strace summary");
    let used: Vec<String> = report
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|w| {
            !w.is_empty()
                && *w != "total"
                && *w != "syscall"
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_string)
        .collect();
    assert!(used.len() > 30, "too few system calls traced:\n{report}");
    for must in ["execve", "kill", "connect", "accept4", "rename"] {
        assert!(
            used.iter().any(|u| u == must),
            "{must} not traced:\n{report}"
        );
    }
    let blocked: Vec<&String> = used
        .iter()
        .filter(|u| !allowed.contains(*u) || denied.contains(*u))
        .collect();
    assert!(
        blocked.is_empty(),
        "the unit's SystemCallFilter would refuse {blocked:?}:\n{report}"
    );
}
