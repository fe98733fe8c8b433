//! Issue 18: no local user can stop the supervisor, restart it, or make root kill for
//! them. Each attack is set up first, as another user (`nobody`, through `setpriv`), and
//! then shown harmless, through the built binary run as root. Also: credentials with `/`
//! stay redacted, and slow HTTP clients never starve a scrape.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::sup::{alive, Sup};

const NOBODY: u32 = 65534;

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

/// Root with `setpriv`: the other user can be played. Otherwise one SKIPPED line, and a
/// failure under CI=true (CI runs as root and installs util-linux).
fn can_play_nobody(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            !common::in_ci(),
            "{test}: must run as root in CI to play another user"
        );
        eprintln!("SKIPPED {test}: needs root to play another user with setpriv");
        return false;
    }
    common::tool_available(
        test,
        Command::new("setpriv").arg("--version"),
        "apt-get install -y util-linux",
    )
}

/// `cmd` as nobody:nogroup without supplementary groups.
fn as_nobody(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(program)
        .stdin(Stdio::null());
    c
}

/// A helper of the other user in its own process group (so that killing it can never
/// reach the test runner); the group is SIGKILLed on drop, even when the test fails.
struct Foreign {
    child: std::process::Child,
}

impl Foreign {
    fn spawn(mut c: Command) -> Foreign {
        let child = c
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the other user's process");
        Foreign { child }
    }
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        // SAFETY: killpg on the group this test created.
        unsafe {
            libc::killpg(self.pid(), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

fn uid_of(pid: i32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Let nobody reach the test's directory and read the config (as on a real box, where
/// /etc and /run are traversable).
fn open_to_nobody(s: &Sup) {
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&s.cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
}

fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pids holding a flock on `path`, from /proc/locks.
fn flock_holders(path: &Path) -> Vec<i32> {
    let Ok(m) = std::fs::metadata(path) else {
        return Vec::new();
    };
    std::fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.len() < 6 || w[1] != "FLOCK" {
                return None;
            }
            let ino: u64 = w[5].rsplit(':').next()?.parse().ok()?;
            (ino == m.ino()).then(|| w[4].parse().ok()).flatten()
        })
        .collect()
}

fn healthy(s: &Sup) -> bool {
    s.stream("garden")
        .is_some_and(|v| v["state"] == "running" && v["health"] == "healthy")
}

// ---- 1. the lock ---------------------------------------------------------------------

#[test]
fn start_works_while_another_user_holds_or_tries_the_lock() {
    if !can_play_nobody("start_works_while_another_user_holds_or_tries_the_lock") {
        return;
    }
    let mut s = Sup::mics(&[(1, "garden")], "run");
    open_to_nobody(&s);
    let state = s.state_dir();
    let lock = state.join("lock");

    // Reproduce: the state dir and lock as the earlier version left them (0755, 0644),
    // and nobody takes a shared flock on it, as in the issue.
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(&lock, "").unwrap();
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).unwrap();
    let squat_ino = std::fs::metadata(&lock).unwrap().ino();
    let mut c = as_nobody("flock");
    c.arg("-s").arg(&lock).args(["sleep", "60"]);
    let squatter = Foreign::spawn(c);
    wait_until("nobody's flock on the lock", Duration::from_secs(5), || {
        flock_holders(&lock)
            .iter()
            .any(|p| uid_of(*p) == Some(NOBODY))
    });

    // Harmless: `start` (daemon) comes up all the same, with a fresh 0600 lock.
    let out = s.run(&["start"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains("[OK]"), "{}", text(&out));
    s.wait_for("garden healthy", Duration::from_secs(10), healthy);
    let m = std::fs::metadata(&lock).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o600);
    assert_ne!(m.ino(), squat_ino, "the squatted file was replaced");
    let sup = s.supervisor_pid().expect("supervisor.pid");
    assert!(
        flock_holders(&lock).contains(&sup),
        "the supervisor holds the new lock"
    );
    let log = std::fs::read_to_string(s.log_dir().join("supervisor.log")).unwrap_or_default();
    assert!(log.contains("replaced it"), "{log}");
    assert!(
        alive(squatter.pid()),
        "the other user's process is left alone"
    );

    // And nobody can no longer take the lock at all, neither shared nor exclusive.
    for mode in ["-s", "-x"] {
        let out = as_nobody("flock")
            .args(["-n", mode])
            .arg(&lock)
            .arg("true")
            .output()
            .unwrap();
        assert_ne!(
            code(&out),
            0,
            "nobody took the lock with {mode}: {}",
            text(&out)
        );
    }
    let out = s.run(&["stop"]);
    assert_eq!(code(&out), 0, "{}", text(&out));

    // With nobody trying again while no supervisor runs, `start --foreground` works too.
    let out = as_nobody("flock")
        .args(["-n", "-s"])
        .arg(&lock)
        .arg("true")
        .output()
        .unwrap();
    assert_ne!(code(&out), 0, "{}", text(&out));
    s.start_foreground();
    s.wait_for("garden healthy", Duration::from_secs(10), healthy);
    let out = s.run(&["stop"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
}

/// Children killed on drop (whatever the test's outcome).
struct Kids(Vec<std::process::Child>);
impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn concurrent_starts_against_a_squatted_lock_run_exactly_one_supervisor() {
    if !can_play_nobody("concurrent_starts_against_a_squatted_lock_run_exactly_one_supervisor") {
        return;
    }
    let s = Sup::mics(&[(1, "garden")], "run");
    open_to_nobody(&s);
    let state = s.state_dir();
    let lock = state.join("lock");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(&lock, "").unwrap();
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut c = as_nobody("flock");
    c.arg("-x").arg(&lock).args(["sleep", "60"]);
    let _squatter = Foreign::spawn(c);
    wait_until("nobody's flock on the lock", Duration::from_secs(5), || {
        !flock_holders(&lock).is_empty()
    });

    // Four starts race to replace the squatted lock: one wins, the others see it held.
    let mut kids = Kids(Vec::new());
    for i in 0..4 {
        let err = std::fs::File::create(s.dir.path().join(format!("start{i}.err"))).unwrap();
        kids.0.push(
            s.cmd(&["start", "--foreground"])
                .stdout(Stdio::null())
                .stderr(err)
                .spawn()
                .unwrap(),
        );
    }
    s.wait_for("a supervisor answering", Duration::from_secs(10), |s| {
        s.status().is_some()
    });
    let until = Instant::now() + Duration::from_secs(10);
    let mut codes;
    loop {
        codes = kids
            .0
            .iter_mut()
            .map(|k| k.try_wait().unwrap().and_then(|st| st.code()))
            .collect::<Vec<_>>();
        if codes.iter().filter(|c| c.is_some()).count() == 3 || Instant::now() >= until {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let errs: Vec<String> = (0..4)
        .map(|i| std::fs::read_to_string(s.dir.path().join(format!("start{i}.err"))).unwrap())
        .collect();
    assert_eq!(
        codes.iter().filter(|c| **c == Some(5)).count(),
        3,
        "{codes:?}\n{errs:#?}"
    );
    let winner = codes.iter().position(|c| c.is_none()).unwrap();
    assert_eq!(
        s.supervisor_pid(),
        Some(kids.0[winner].id() as i32),
        "{errs:#?}"
    );
    let m = std::fs::metadata(&lock).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o600);
    assert!(!state.join("lock.new").exists());
    let out = s.run(&["stop"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
}

// ---- 2. the marker -------------------------------------------------------------------

#[test]
fn a_spoofed_marker_of_another_user_is_neither_an_orphan_nor_killed() {
    if !can_play_nobody("a_spoofed_marker_of_another_user_is_neither_an_orphan_nor_killed") {
        return;
    }
    let mut s = Sup::mics(&[(1, "garden")], "run");
    s.start_healthy(1);
    wait_until("monitor exit 0", Duration::from_secs(10), || {
        code(&s.run(&["monitor"])) == 0
    });

    // Reproduce: nobody runs a process carrying both marker variables.
    let state = s.state_dir();
    let mut c = as_nobody("env");
    c.arg("MEDIAMTX_STREAM_MANAGER_STREAM=garden")
        .arg(format!("MEDIAMTX_STREAM_MANAGER_STATE={}", state.display()))
        .args(["sleep", "60"]);
    let spoof = Foreign::spawn(c);
    // `env` execs sleep: the same pid, now with the marker in its environment.
    wait_until(
        "the spoof carries the marker",
        Duration::from_secs(5),
        || {
            common::sup::marked(&state)
                .iter()
                .any(|(p, _)| *p == spoof.pid())
        },
    );
    assert_eq!(uid_of(spoof.pid()), Some(NOBODY));

    // Harmless: monitor says 0 (it mentions the process, as a warning) ...
    let out = s.run(&["monitor"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("ignored pid {} (uid {NOBODY})", spoof.pid())),
        "{stdout}"
    );
    let out = s.run(&["monitor", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["exit"], 0, "{v}");
    // ... and force-stop kills the supervisor and its ffmpeg, not the spoof.
    let ffmpeg = s.stream("garden").unwrap()["pid"].as_i64().unwrap() as i32;
    let out = s.run(&["force-stop"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let _ = s.foreground.as_mut().map(|c| c.wait());
    wait_until("our ffmpeg gone", Duration::from_secs(3), || !alive(ffmpeg));
    assert!(
        alive(spoof.pid()),
        "force-stop killed another user's process"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("ignored pid {}", spoof.pid())),
        "{err}"
    );
}

// ---- 3. modes and records --------------------------------------------------------------

/// Every entry under `dir` (not following symlinks): (path, mode, uid).
fn walk(dir: &Path) -> Vec<(PathBuf, u32, u32)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let m = std::fs::symlink_metadata(&d).unwrap();
        out.push((d.clone(), m.permissions().mode() & 0o7777, m.uid()));
        if m.is_dir() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                todo.push(e.path());
            }
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// `start --foreground` under `umask 000`.
fn start_under_umask_000(s: &mut Sup) {
    let mut sh = Command::new("sh");
    sh.args(["-c", "umask 000; exec \"$@\"", "sh"]);
    s.start_wrapped(sh);
    s.wait_for("garden healthy", Duration::from_secs(10), healthy);
}

#[test]
fn under_umask_000_nothing_is_writable_by_others_and_planted_records_are_ignored() {
    if !can_play_nobody(
        "under_umask_000_nothing_is_writable_by_others_and_planted_records_are_ignored",
    ) {
        return;
    }
    let mut s = Sup::mics(&[(1, "garden")], "run");
    open_to_nobody(&s);
    start_under_umask_000(&mut s);
    let state = s.state_dir();

    for (p, m, _) in walk(&state).into_iter().chain(walk(&s.log_dir())) {
        assert_eq!(
            m & 0o022,
            0,
            "{} is writable by others: {m:04o}",
            p.display()
        );
    }
    let want = [
        (state.clone(), 0o755),
        (state.join("lock"), 0o600),
        (state.join("supervisor.pid"), 0o644),
        (state.join("control.sock"), 0o600),
        (state.join("groups"), 0o700),
        (state.join("groups/garden"), 0o600),
        (state.join("streams"), 0o755),
        (state.join("streams/garden.pid"), 0o644),
        (s.log_dir(), 0o755),
        (s.log_dir().join("garden.log"), 0o640),
    ];
    // The sticky names file and the directory made for it.
    let names = s.names_file();
    if names.exists() {
        assert_eq!(mode(&names), 0o644, "{}", names.display());
        assert_eq!(mode(names.parent().unwrap()), 0o755);
    }
    for (p, m) in &want {
        assert_eq!(mode(p), *m, "{}", p.display());
    }
    // nobody cannot plant a record now.
    let out = as_nobody("sh")
        .arg("-c")
        .arg("echo 1 > \"$0\"/evil")
        .arg(state.join("groups"))
        .output()
        .unwrap();
    assert_ne!(code(&out), 0, "nobody wrote into groups/: {}", text(&out));
    assert!(!state.join("groups/evil").exists());
    let out = s.run(&["stop"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let _ = s.foreground.take().map(|mut c| c.wait());

    // Reproduce: the directories as the earlier version left them under umask 000
    // (0777), and nobody plants a record naming a process group of its own, with the
    // right boot id and start time, so that it looks like one of ours.
    for d in [state.clone(), state.join("groups")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let mut c = as_nobody("sleep");
    c.arg("60");
    let victim = Foreign::spawn(c);
    let pgid = victim.pid();
    wait_until("victim runs as nobody", Duration::from_secs(5), || {
        uid_of(pgid) == Some(NOBODY)
    });
    let stat = std::fs::read_to_string(format!("/proc/{pgid}/stat")).unwrap();
    let start: u64 = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let record = format!("{pgid} {} {start}", boot.trim());
    let out = as_nobody("sh")
        .arg("-c")
        .arg("printf '%s\\n' \"$1\" > \"$0\"/evil")
        .arg(state.join("groups"))
        .arg(&record)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(
        std::fs::metadata(state.join("groups/evil")).unwrap().uid(),
        NOBODY
    );
    // The same record written by root (as if copied in): the group's members are not ours.
    std::fs::write(state.join("groups/copied"), format!("{record}\n")).unwrap();

    // Harmless: the next start under umask 000 kills neither, and tightens the modes.
    start_under_umask_000(&mut s);
    assert!(
        alive(pgid),
        "root killed a process group planted by another user"
    );
    assert_eq!(mode(&state), 0o755);
    assert_eq!(mode(&state.join("groups")), 0o700);
    assert!(!state.join("groups/evil").exists());
    let err = s.supervisor_stderr();
    assert!(
        err.contains("ignoring group record") && err.contains("owned by uid 65534"),
        "{err}"
    );
    assert!(
        err.contains(&format!("not killing process group {pgid}")),
        "{err}"
    );
    let out = s.run(&["force-stop"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        alive(pgid),
        "force-stop killed another user's process group"
    );
}

// ---- 4. redaction of a password with `/` ---------------------------------------------

#[test]
fn a_password_with_a_slash_is_redacted_everywhere() {
    const SECRET: &str = "se/cr3t";
    let mut s = Sup::mics(&[(1, "garden")], "run");
    s.rtsp_url = format!("rtsp://pub:{SECRET}@127.0.0.1:1");
    s.write_config();
    let leaks = |what: &str, t: &str| {
        assert!(
            !t.contains(SECRET) && !t.contains("cr3t"),
            "{what} shows the password:\n{t}"
        );
    };

    let out = s.run(&["config"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    leaks("config", &text(&out));
    assert!(
        text(&out).contains("rtsp://***@127.0.0.1:1"),
        "{}",
        text(&out)
    );
    // The password is on ffmpeg's command line and /proc is not mounted with hidepid here
    // (when it is, there is rightly no warning).
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    if !mountinfo.contains("hidepid=") {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("/proc/<pid>/cmdline"), "{err}");
    }
    let out = s.run(&["config", "--json"]);
    leaks("config --json", &text(&out));
    // A symlink planted in the log directory is not followed by root's diagnose (the
    // report may be posted publicly).
    std::fs::create_dir_all(s.log_dir()).unwrap();
    let private = s.dir.path().join("private.txt");
    std::fs::write(&private, "TOP-SECRET-CONTENT\n").unwrap();
    std::os::unix::fs::symlink(&private, s.log_dir().join("planted.log")).unwrap();
    let out = s.run(&["diagnose"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    leaks("diagnose", &text(&out));
    assert!(!text(&out).contains("TOP-SECRET-CONTENT"), "{}", text(&out));
    assert!(
        text(&out).contains("planted.log: not a regular file: skipped"),
        "{}",
        text(&out)
    );
    std::fs::remove_file(s.log_dir().join("planted.log")).unwrap();
    if !mountinfo.contains("hidepid=") {
        assert!(text(&out).contains("/proc/<pid>/cmdline"), "{}", text(&out));
    }

    s.start_healthy(1);
    let out = s.run(&["status"]);
    assert_eq!(code(&out), 0);
    leaks("status", &text(&out));
    assert!(
        text(&out).contains("rtsp://***@127.0.0.1:1/garden"),
        "{}",
        text(&out)
    );
    let out = s.run(&["status", "--json"]);
    leaks("status --json", &text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["streams"][0]["url"], "rtsp://***@127.0.0.1:1/garden",
        "{v}"
    );

    // The stream log: its header (the argv) and ffmpeg's own lines (the fake prints its
    // arguments, URL included, as its first stderr line).
    let log = std::fs::read_to_string(s.log_dir().join("garden.log")).unwrap();
    assert!(log.contains("fake-ffmpeg:"), "{log}");
    leaks("the stream log", &log);
    assert!(log.contains("rtsp://***@127.0.0.1:1/garden"), "{log}");
    leaks("the supervisor's log", &s.supervisor_stderr());
    let out = s.run(&["stop"]);
    assert_eq!(code(&out), 0);
}

// ---- 6. slow HTTP clients ------------------------------------------------------------

#[test]
fn sixteen_slowloris_clients_leave_metrics_answering_within_a_second() {
    let port = common::rtsp::free_port();
    let mut s = Sup::mics(&[(1, "garden")], "run");
    s.set("metrics", "listen", &format!("\"127.0.0.1:{port}\""));
    s.write_config();
    s.start_healthy(1);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(scrape(addr).0.starts_with("HTTP/1.1 200"));

    // 16 clients that send one byte a second and reconnect whenever they are dropped.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || slowloris(addr, &stop))
        })
        .collect();
    let _stop_them = StopOnDrop(stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    // Over 5 s: past the 2 s head deadline twice, so through their reconnections too.
    let t0 = Instant::now();
    let mut n = 0;
    while t0.elapsed() < Duration::from_secs(5) {
        let (status, took) = scrape(addr);
        assert!(
            status.starts_with("HTTP/1.1 200") && took < Duration::from_secs(1),
            "scrape {n}: {status:?} after {took:?}"
        );
        n += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        let _ = c.join();
    }
    assert!(n >= 10);
}

struct StopOnDrop(Arc<AtomicBool>);
impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn slowloris(addr: std::net::SocketAddr, stop: &AtomicBool) {
    use std::io::Write;
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut c) = std::net::TcpStream::connect(addr) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        for b in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .cycle()
        {
            if c.write_all(&[*b]).is_err() {
                break;
            }
            // One byte a second, watching `stop` meanwhile.
            for _ in 0..10 {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// One scrape: the status line and how long the whole answer took.
fn scrape(addr: std::net::SocketAddr) -> (String, Duration) {
    use std::io::{Read, Write};
    let t0 = Instant::now();
    let Ok(mut c) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return ("connect failed".into(), t0.elapsed());
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    let status = out.lines().next().unwrap_or("empty reply").to_string();
    (status, t0.elapsed())
}

// ---- 5. install recommends publishing by IP ------------------------------------------

#[test]
fn install_recommends_publishing_by_ip_when_a_password_is_configured() {
    let mut s = Sup::mics(&[(1, "garden")], "run");
    let root = s.dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let install = |s: &Sup| {
        s.run(&[
            "install",
            "--root",
            root.to_str().unwrap(),
            "--dry-run",
            "--binary",
            "/usr/bin/mediamtx-stream-manager",
        ])
    };
    let out = install(&s);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(!text(&out).contains("authInternalUsers"), "{}", text(&out));

    s.rtsp_url = "rtsp://pub:se/cr3t@127.0.0.1:8554".into();
    s.write_config();
    let out = install(&s);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("authInternalUsers")
            && err.contains("ips: ['127.0.0.1', '::1']")
            && err.contains("action: publish"),
        "{err}"
    );
    assert!(!text(&out).contains("cr3t"), "{}", text(&out));
}
