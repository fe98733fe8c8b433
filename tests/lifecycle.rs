//! Lifecycle seams (issue 8 items 5–10), proven through the built binary: `restart` checks
//! before it stops, `force-stop` claims only kills it did, concurrent `stop`s, the cron
//! line with `install -c`, no inherited descriptors, no surviving grandchildren.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::sup::{alive, kill, Sup};

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn text(o: &Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn one_mic(mode: &str) -> Sup {
    Sup::mics(&[(1, "garden")], mode)
}

fn running(s: &Sup) -> bool {
    s.stream("garden")
        .is_some_and(|v| v["state"] == "running" && v["health"] == "healthy")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Wait until `pid` is gone (or a zombie), up to `limit`.
fn gone(pid: i32, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    !alive(pid)
}

/// The targets of every descriptor of `pid`, as (fd, link).
fn fds(pid: i32) -> Vec<(i32, String)> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            let link = std::fs::read_link(e.path()).ok()?;
            Some((fd, link.display().to_string()))
        })
        .collect()
}

// ---- item 5: restart checks before it stops -------------------------------------------

#[test]
fn restart_with_missing_ffmpeg_or_bad_config_keeps_the_running_supervisor() {
    let mut s = one_mic("run");
    s.start_foreground();
    s.wait_for("garden running", Duration::from_secs(10), running);
    let pid = s.supervisor_pid().expect("pid file");
    let child_pid = s.stream("garden").unwrap()["pid"].as_u64();

    // ffmpeg gone from the configured path: 3, nothing stopped.
    let good = s.ffmpeg.clone();
    s.ffmpeg = s.dir.path().join("no-such-ffmpeg");
    s.write_config();
    let out = s.run(&["restart"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ffmpeg not found"),
        "{}",
        text(&out)
    );
    assert!(alive(pid), "the supervisor was stopped");
    assert_eq!(s.supervisor_pid(), Some(pid));
    // (`status` reads the config too: put the good one back before asking.)
    let bad = s.ffmpeg.clone();
    s.ffmpeg = good.clone();
    s.write_config();
    assert!(
        running(&s),
        "garden still streams: {}",
        text(&s.run(&["status", "--json"]))
    );
    assert_eq!(s.stream("garden").unwrap()["pid"].as_u64(), child_pid);

    assert!(!bad.exists());

    // An invalid config: 4, nothing stopped.
    s.set("backoff", "initial", "\"banana\"");
    s.write_config();
    let out = s.run(&["restart"]);
    assert_eq!(code(&out), 4, "{}", text(&out));
    s.overrides.clear();
    s.write_config();
    assert!(alive(pid), "the supervisor was stopped");
    assert!(
        running(&s),
        "garden still streams: {}",
        text(&s.run(&["status", "--json"]))
    );
    assert_eq!(s.stream("garden").unwrap()["pid"].as_u64(), child_pid);

    // Valid: restart replaces the supervisor.
    let out = s.run(&["restart"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let _ = s.foreground.as_mut().map(|c| c.wait());
    assert!(gone(pid, Duration::from_secs(5)));
    let new = s.supervisor_pid().expect("new pid file");
    assert_ne!(new, pid);
    s.wait_for("garden running again", Duration::from_secs(10), running);
    let out = s.run(&["stop"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(s.marked().is_empty());
}

/// The world-dependent start checks too: no devices (6) or MediaMTX unreachable (7) leave
/// the running supervisor and its streams alone.
#[test]
fn restart_with_no_devices_or_mediamtx_down_keeps_the_running_supervisor() {
    use common::mediamtx_mock::{MockMediamtx, Version};
    let mut mock = MockMediamtx::start(Version::V1_20);
    mock.set_path("garden", true);
    mock.grow("garden", 4096);
    let mut s = one_mic("run");
    s.set("mediamtx", "api", "true")
        .set("mediamtx", "api_url", &format!("{:?}", mock.url()))
        .set("mediamtx", "poll", "\"100ms\"")
        .set("startup", "mediamtx_wait", "\"500ms\"");
    s.write_config();
    s.start_foreground();
    s.wait_for("garden running", Duration::from_secs(10), running);
    let pid = s.supervisor_pid().expect("pid file");
    let child_pid = s.stream("garden").unwrap()["pid"].as_u64();

    mock.stop();
    let out = s.run(&["restart"]);
    assert_eq!(code(&out), 7, "{}", text(&out));
    assert!(text(&out).contains("not restarting"), "{}", text(&out));
    assert!(alive(pid), "the supervisor was stopped");
    assert_eq!(s.stream("garden").unwrap()["pid"].as_u64(), child_pid);

    s.set("mediamtx", "api", "false");
    s.write_config();
    s.host.remove_card(1);
    let out = s.run(&["restart"]);
    assert_eq!(code(&out), 6, "{}", text(&out));
    assert!(text(&out).contains("not restarting"), "{}", text(&out));
    assert!(alive(pid), "the supervisor was stopped");
    assert_eq!(s.supervisor_pid(), Some(pid));
}

// ---- item 6: force-stop claims only the kills it did ----------------------------------

/// Let "nobody" reach the config and the state dir (the socket stays 0600).
fn open_to_nobody(s: &Sup) {
    for p in [s.dir.path().to_path_buf(), s.state_dir()] {
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&s.cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
}

fn as_nobody(s: &Sup, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(common::bin())
        .args(args)
        .arg("-c")
        .arg(&s.cfg)
        .stdin(Stdio::null())
        .output()
        .expect("setpriv (util-linux) is needed to test as a non-root user")
}

#[test]
fn force_stop_as_non_root_fails_naming_permission_and_kills_nothing() {
    if !is_root() {
        eprintln!("skipped: needs root to drop privileges (CI runs as root)");
        return;
    }
    let mut s = one_mic("run");
    open_to_nobody(&s);
    s.start_foreground();
    s.wait_for("garden running", Duration::from_secs(10), running);
    let pid = s.supervisor_pid().unwrap();
    // The ffmpeg itself (the fake's short `sleep`s carry the marker too, and come and go).
    let children = vec![(
        s.stream("garden").unwrap()["pid"].as_i64().unwrap() as i32,
        (),
    )];

    let out = as_nobody(&s, &["force-stop"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        err.contains("EPERM") && err.to_lowercase().contains("permission"),
        "{err}"
    );
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("killed supervisor"),
        "{}",
        text(&out)
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(pid), "supervisor still alive");
    for (p, _) in &children {
        assert!(alive(*p), "child {p} still alive");
    }
    assert!(running(&s));
    assert!(s.state_dir().join("supervisor.pid").exists());

    // As root it does kill, and says so.
    let out = s.run(&["force-stop"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("killed supervisor pid {pid}")),
        "{}",
        text(&out)
    );
    let _ = s.foreground.as_mut().map(|c| c.wait());
    assert!(!alive(pid));
    assert!(gone(children[0].0, Duration::from_secs(3)));
    assert!(s.marked().is_empty());
}

#[test]
fn force_stop_finds_the_supervisor_by_its_lock_when_the_pid_file_is_gone() {
    let mut s = one_mic("run");
    s.start_foreground();
    s.wait_for("garden running", Duration::from_secs(10), running);
    let pid = s.supervisor_pid().unwrap();
    let ffmpeg = s.stream("garden").unwrap()["pid"].as_i64().unwrap() as i32;
    std::fs::remove_file(s.state_dir().join("supervisor.pid")).unwrap();
    let out = s.run(&["force-stop"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("killed supervisor pid {pid}")),
        "{}",
        text(&out)
    );
    let _ = s.foreground.take().map(|mut c| c.wait());
    assert!(!alive(pid));
    assert!(gone(ffmpeg, Duration::from_secs(3)));
    assert!(s.marked().is_empty());
}

#[test]
fn force_stop_names_a_foreign_lock_holder_and_kills_nothing() {
    let s = one_mic("run");
    std::fs::create_dir_all(s.state_dir()).unwrap();
    let lock = s.state_dir().join("lock");
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "30"])
        .process_group(0)
        .spawn()
        .expect("flock (util-linux)");
    let _guard = Group(holder.id() as i32);
    let until = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string("/proc/locks")
        .unwrap()
        .contains(&format!(" {} ", holder.id()))
    {
        assert!(Instant::now() < until, "flock never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = s.run(&["force-stop"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("pid {}", holder.id())) && err.contains("nothing was killed"),
        "{err}"
    );
    assert!(
        holder.try_wait().unwrap().is_none(),
        "the foreign holder lives"
    );
}

#[test]
fn stop_as_non_root_fails_naming_permission() {
    if !is_root() {
        eprintln!("skipped: needs root to drop privileges (CI runs as root)");
        return;
    }
    let mut s = one_mic("run");
    open_to_nobody(&s);
    s.start_foreground();
    let pid = s.supervisor_pid().unwrap();
    let out = as_nobody(&s, &["stop", "--timeout", "2s"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("EPERM"),
        "{}",
        text(&out)
    );
    assert!(alive(pid));
}

// ---- item 7: concurrent stops --------------------------------------------------------

#[test]
fn ten_rounds_of_ten_concurrent_stops_all_exit_0() {
    let mut s = one_mic("run");
    for round in 0..10 {
        s.start_foreground();
        let pid = s.supervisor_pid().unwrap();
        let outs: Vec<Output> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..10)
                .map(|_| sc.spawn(|| s.run(&["stop", "--timeout", "30s"])))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, o) in outs.iter().enumerate() {
            assert_eq!(code(o), 0, "round {round} stop {i}: {}", text(o));
        }
        let st = s.foreground.take().unwrap().wait().unwrap();
        assert_eq!(st.code(), Some(0), "round {round}");
        assert!(!alive(pid), "round {round}");
        assert!(s.marked().is_empty(), "round {round}: {:?}", s.marked());
    }
}

// ---- item 8: the cron line with install -c ----------------------------------------------

#[test]
fn cron_line_from_install_c_checks_the_same_state_dir() {
    let mut s = one_mic("run");
    // A config path with a space and a single quote, and a moved state_dir.
    let conf_dir = s.dir.path().join("my conf's dir");
    std::fs::create_dir_all(&conf_dir).unwrap();
    s.cfg = conf_dir.join("manager.toml");
    s.write_config();
    let root = s.dir.path().join("root");
    let out = Command::new(common::bin())
        .arg("install")
        .arg("--root")
        .arg(&root)
        .arg("--binary")
        .arg(common::bin())
        .arg("-c")
        .arg(&s.cfg)
        .env_remove("MEDIAMTX_STREAM_MANAGER_CONFIG")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    let unit =
        std::fs::read_to_string(root.join("etc/systemd/system/mediamtx-audio.service")).unwrap();
    assert!(unit.contains("my conf's dir"), "{unit}");
    let cron = std::fs::read_to_string(root.join("etc/cron.d/mediamtx-monitor")).unwrap();
    let line = cron
        .lines()
        .find(|l| l.starts_with("*/5 "))
        .expect("cron line");
    let command = line.strip_prefix("*/5 * * * * root ").expect("user field");
    assert!(command.contains(" -c '"), "{command}");

    // Stubs for systemctl and logger; the flock lock moved into the temp dir.
    let stubs = s.dir.path().join("stubs");
    std::fs::create_dir_all(&stubs).unwrap();
    let record = s.dir.path().join("calls");
    for name in ["systemctl", "logger"] {
        let p = stubs.join(name);
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho \"{name} $*\" >> '{}'\n", record.display()),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let lock = s.dir.path().join("monitor.lock");
    let command = command.replace("/run/mediamtx-monitor.lock", &lock.display().to_string());
    let run_cron = || -> (i32, Vec<String>) {
        let _ = std::fs::remove_file(&record);
        let out = Command::new("env")
            .arg("-i")
            .arg(format!("PATH={}:/usr/bin:/bin", stubs.display()))
            .args(["sh", "-c", &command])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let rec = std::fs::read_to_string(&record).unwrap_or_default();
        (code(&out), rec.lines().map(str::to_string).collect())
    };

    s.start_foreground();
    s.wait_for("garden running", Duration::from_secs(10), running);
    // Healthy for monitor: the cron run does nothing (the default config would give 2 and
    // restart the service).
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (c, rec) = run_cron();
        assert_eq!(c, 0);
        if rec.is_empty() {
            break;
        }
        assert!(
            !rec.iter().any(|r| r.starts_with("systemctl")),
            "a healthy service was restarted: {rec:?}"
        );
        assert!(Instant::now() < until, "monitor never healthy: {rec:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // Supervisor gone: the same line now restarts the service.
    let out = s.run(&["stop"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let (c, rec) = run_cron();
    assert_eq!(c, 0);
    assert_eq!(rec, ["systemctl restart mediamtx-audio"]);
    // And uninstall recognises the file as its own.
    let out = Command::new(common::bin())
        .arg("uninstall")
        .arg("--root")
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(!root.join("etc/cron.d/mediamtx-monitor").exists());
}

#[test]
fn install_refuses_a_config_path_cron_would_mangle() {
    let mut s = one_mic("run");
    s.cfg = s.dir.path().join("100%.toml");
    s.write_config();
    let root = s.dir.path().join("root");
    let out = Command::new(common::bin())
        .arg("install")
        .arg("--root")
        .arg(&root)
        .arg("--binary")
        .arg(common::bin())
        .arg("-c")
        .arg(&s.cfg)
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--no-cron"),
        "{}",
        text(&out)
    );
    assert!(!root.join("etc/cron.d/mediamtx-monitor").exists());
}

// ---- item 9: no inherited descriptors -------------------------------------------------

/// Kills a process group on drop (the shell pipeline, when a test fails mid-way).
struct Group(i32);
impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: plain killpg(2) on the group this test created.
        unsafe {
            libc::killpg(self.0, libc::SIGKILL);
        }
    }
}

#[test]
fn start_with_fd_7_piped_to_cat_returns_and_nobody_keeps_the_pipe() {
    let s = one_mic("run");
    verb_with_fd_7_piped_to_cat(&s, "start");
    let out = s.run(&["stop"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
}

#[test]
fn restart_with_fd_7_piped_to_cat_returns_and_nobody_keeps_the_pipe() {
    let s = one_mic("run");
    let out = s.run(&["start"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let first = s.supervisor_pid().unwrap();
    verb_with_fd_7_piped_to_cat(&s, "restart");
    assert_ne!(s.supervisor_pid(), Some(first));
    let out = s.run(&["stop"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
}

/// `<bin> -c CFG <verb> 7>&1 | cat` returns (bounded), and neither the supervisor nor its
/// ffmpeg holds the pipe `cat` reads.
fn verb_with_fd_7_piped_to_cat(s: &Sup, verb: &str) {
    let pipe_name = s.dir.path().join("pipe-name");
    let out_file = s.dir.path().join("cat.out");
    // The user's sequence; the subshell first notes which pipe `| cat` reads.
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg("( readlink /proc/self/fd/3 3>&1 >\"$2\"; exec \"$0\" -c \"$1\" \"$3\" 7>&1 ) | cat")
        .arg(common::bin())
        .arg(&s.cfg)
        .arg(&pipe_name)
        .arg(verb)
        .env("FAKE_FFMPEG_MODE_FILE", s.mode_file())
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&out_file).unwrap()))
        .stderr(Stdio::null())
        .process_group(0);
    let t0 = Instant::now();
    let mut child = sh.spawn().unwrap();
    let _group = Group(child.id() as i32);
    let limit = Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < limit,
            "`{verb} 7>&1 | cat` still hangs after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    let printed = std::fs::read_to_string(&out_file).unwrap();
    assert!(printed.contains("supervisor started"), "{printed}");
    let pipe = std::fs::read_to_string(&pipe_name)
        .unwrap()
        .trim()
        .to_string();
    assert!(pipe.starts_with("pipe:["), "{pipe}");

    let sup = s.supervisor_pid().expect("daemon running");
    let kids: Vec<i32> = s.marked().into_iter().map(|(p, _)| p).collect();
    assert!(!kids.is_empty(), "ffmpeg running");
    // By target: the supervisor's own files soon take number 7 again.
    for pid in std::iter::once(sup).chain(kids.iter().copied()) {
        let f = fds(pid);
        assert!(
            !f.iter().any(|(_, link)| *link == pipe),
            "pid {pid} kept the caller's pipe {pipe}: {f:?}"
        );
    }
    for pid in kids {
        // The fake is a bash script: 255 is bash's handle on the script file, and bash
        // briefly saves a redirected stderr in fd 10+ (a copy of its own pipe).
        let all = fds(pid);
        let std: Vec<String> = all
            .iter()
            .filter(|(fd, _)| *fd <= 2)
            .map(|(_, l)| l.clone())
            .collect();
        let extra: Vec<_> = all
            .into_iter()
            .filter(|(fd, link)| {
                *fd > 2 && !std.contains(link) && !(*fd == 255 && link.ends_with("fake-ffmpeg"))
            })
            .collect();
        assert!(
            extra.is_empty(),
            "ffmpeg {pid} has more than 0-2: {extra:?}"
        );
    }
}

#[test]
fn foreground_supervisor_closes_inherited_descriptors() {
    let mut s = one_mic("run");
    let marker_file = s.dir.path().join("inherited.txt");
    std::fs::write(&marker_file, "x").unwrap();
    let child = Command::new("sh")
        .arg("-c")
        .arg("exec \"$0\" -c \"$1\" start --foreground 7>>\"$2\" 9<\"$2\"")
        .arg(common::bin())
        .arg(&s.cfg)
        .arg(&marker_file)
        .env("FAKE_FFMPEG_MODE_FILE", s.mode_file())
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    s.foreground = Some(child);
    s.wait_for("garden running", Duration::from_secs(10), running);
    let sup = s.supervisor_pid().unwrap();
    let want = marker_file.display().to_string();
    for pid in std::iter::once(sup).chain(s.marked().into_iter().map(|(p, _)| p)) {
        // By target, not number: a closed number is soon reused for our own files.
        let f = fds(pid);
        assert!(
            !f.iter().any(|(_, link)| *link == want),
            "pid {pid} kept an inherited descriptor: {f:?}"
        );
    }
    let out = s.run(&["stop"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
}

// ---- item 10: no grandchildren survive ----------------------------------------------

fn monitor_code(s: &Sup) -> i32 {
    code(&s.run(&["monitor"]))
}

#[test]
fn start_kills_grandchildren_a_sigkilled_supervisor_left_behind() {
    let mut s = one_mic("grandchild");
    s.start_foreground();
    s.wait_for("garden running", Duration::from_secs(10), running);
    let sup = s.supervisor_pid().unwrap();
    let ffmpeg = s.stream("garden").unwrap()["pid"].as_i64().unwrap() as i32;
    let wait_two = Instant::now() + Duration::from_secs(5);
    while s.marked().len() < 2 && Instant::now() < wait_two {
        std::thread::sleep(Duration::from_millis(50));
    }
    let grandchild = s
        .marked()
        .into_iter()
        .map(|(p, _)| p)
        .find(|p| *p != ffmpeg)
        .expect("the fake forked a grandchild");
    assert!(
        s.state_dir().join("groups/garden").exists(),
        "the child's group is recorded"
    );

    kill(sup, libc::SIGKILL);
    let _ = s.foreground.take().map(|mut c| c.wait());
    assert!(gone(ffmpeg, Duration::from_secs(3)), "ffmpeg dies with it");
    std::thread::sleep(Duration::from_millis(200));
    assert!(alive(grandchild), "the grandchild outlives the supervisor");
    assert_eq!(monitor_code(&s), 2, "an orphan is critical");

    // The next start cleans up before spawning anything, and says so in its log.
    s.set_mode("run");
    let out = s.run(&["start"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        gone(grandchild, Duration::from_secs(3)),
        "grandchild killed"
    );
    let log = std::fs::read_to_string(s.log_dir().join("supervisor.log")).unwrap_or_default();
    assert!(
        log.contains("left behind") && log.contains(&grandchild.to_string()),
        "{log}"
    );
    s.wait_for("garden running", Duration::from_secs(10), running);
    let until = Instant::now() + Duration::from_secs(20);
    let mut c = monitor_code(&s);
    while c != 0 && Instant::now() < until {
        assert_ne!(c, 2, "monitor still critical after the clean start");
        std::thread::sleep(Duration::from_millis(300));
        c = monitor_code(&s);
    }
    assert_eq!(c, 0);
    let out = s.run(&["stop"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(s.marked().is_empty());
}

/// A wrapper configured as paths.ffmpeg that strips our marker from what it forks: only
/// the recorded process group finds its grandchild.
#[test]
fn start_kills_an_unmarked_grandchild_by_its_recorded_group() {
    unmarked_grandchild_then("start");
}

#[test]
fn force_stop_kills_an_unmarked_grandchild_by_its_recorded_group() {
    unmarked_grandchild_then("force-stop");
}

/// SIGKILL the supervisor while its ffmpeg's wrapper has forked an unmarked grandchild,
/// then run `verb`: the grandchild goes.
fn unmarked_grandchild_then(verb: &str) {
    let mut s = one_mic("run");
    let wrapper = s.dir.path().join("ffmpeg-wrapper");
    let pid_file = s.dir.path().join("grandchild.pid");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nenv -u MEDIAMTX_STREAM_MANAGER_STATE -u MEDIAMTX_STREAM_MANAGER_STREAM sleep 1000 &\necho $! > '{}'\nexec '{}' \"$@\"\n",
            pid_file.display(),
            common::sup::fake_ffmpeg().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    s.ffmpeg = wrapper;
    s.write_config();
    s.start_foreground();
    s.wait_for("garden running", Duration::from_secs(10), running);
    let grandchild: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _guard = Pid(grandchild);
    assert!(!s.marked().iter().any(|(p, _)| *p == grandchild));
    let sup = s.supervisor_pid().unwrap();
    kill(sup, libc::SIGKILL);
    let _ = s.foreground.take().map(|mut c| c.wait());
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        alive(grandchild),
        "the unmarked grandchild outlives the supervisor"
    );

    let out = s.run(&[verb]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        gone(grandchild, Duration::from_secs(3)),
        "grandchild killed by {verb}"
    );
    if verb == "force-stop" {
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        // At least the grandchild (a `sleep` of the fake's loop may still be on its way).
        assert!(
            said.contains("no supervisor running; killed ") && !said.contains("killed 0 "),
            "{said}"
        );
    }
    let out = s.run(&["stop"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
}

/// SIGKILLs a pid on drop (an unmarked process the Sup guard cannot find).
struct Pid(i32);
impl Drop for Pid {
    fn drop(&mut self) {
        if alive(self.0) {
            kill(self.0, libc::SIGKILL);
        }
    }
}
