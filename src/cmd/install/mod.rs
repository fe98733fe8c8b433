//! `install` / `uninstall` (SPEC §9): the systemd unit and the cron monitor file.
//!
//! Both files are pure functions of this binary's path and the mode options, so
//! `uninstall` can tell "ours, unchanged" from "edited by the admin" by rendering
//! them again; it removes only the former. Files that differ are backed up before
//! they are replaced, never clobbered.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cli::Global;
use crate::exit::{Error, Exit};
use crate::util::io_reason;

/// The unit's name as `systemctl` knows it.
pub const UNIT: &str = "mediamtx-audio.service";
/// Where the unit goes, relative to the root.
pub const UNIT_PATH: &str = "etc/systemd/system/mediamtx-audio.service";
/// Where the cron monitor goes, relative to the root (no dot: cron.d skips such names).
pub const CRON_PATH: &str = "etc/cron.d/mediamtx-monitor";

const CRON_PREFIX: &str = "*/5 * * * * root flock -n /run/mediamtx-monitor.lock -c '";
const CRON_SUFFIX: &str = " monitor; EXIT=$?; if [ $EXIT -eq 2 ]; then systemctl restart mediamtx-audio; elif [ $EXIT -ne 0 ]; then logger -t mediamtx-monitor \"Non-critical exit code $EXIT (no restart)\"; fi' || logger -t mediamtx-monitor \"Monitor already running or locked\"";

/// Print a line to stdout; a closed pipe (`install --dry-run | head`) is not an error.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

fn say_raw(text: &str) {
    let _ = std::io::stdout().write_all(text.as_bytes());
}

/// What `install` was asked to do (the `install` command's flags).
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    pub root: Option<PathBuf>,
    pub dry_run: bool,
    pub enable: bool,
    pub no_cron: bool,
    /// Path written into the files instead of this binary's own (packaging, tests).
    pub binary: Option<PathBuf>,
}

/// The unit file for a given `ExecStart=` value (everything after the `=`).
pub fn render_unit(exec_start: &str) -> String {
    format!(
        "\
# Written by `mediamtx-stream-manager install`; `uninstall` removes it only while unchanged.
# Local changes belong in a drop-in: systemctl edit mediamtx-audio
[Unit]
Description=USB microphones streaming to MediaMTX (mediamtx-stream-manager)
After=network-online.target sound.target mediamtx.service
Wants=mediamtx.service
# Never stop restarting: an unattended box has nobody to press a button.
StartLimitIntervalSec=0

[Service]
Type=notify
# READY=1, STATUS= and WATCHDOG=1 come from the supervisor, never from an ffmpeg child.
NotifyAccess=main
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
Restart=always
RestartSec=5
# SIGTERM goes to the supervisor, which stops each ffmpeg gracefully; SIGKILL catches leftovers.
KillMode=mixed
TimeoutStopSec=30
WatchdogSec=30
# Lock, pid files and control socket. Kept across stops (/run empties at boot): removing
# the lock under a supervisor started by hand would let a second one start.
RuntimeDirectory=mediamtx-audio
RuntimeDirectoryMode=0755
RuntimeDirectoryPreserve=yes
# One log per stream, rotated by the supervisor itself (no logrotate needed).
LogsDirectory=mediamtx-audio
# Sticky stream names of twin microphones (paths.names_file), kept across reboots.
StateDirectory=mediamtx-stream-manager
SupplementaryGroups=audio
# Sandbox (`systemd-analyze security`: exposure 2.0; docs/install.md). It still reads
# /proc/asound and /dev/snd, reaches MediaMTX over the network, writes its runtime, log,
# state and recording dirs, and signals its own ffmpeg children (same user and cgroup).
# Root without capabilities: no overriding file permissions, tracing, mounting, raw I/O.
CapabilityBoundingSet=
# Nor can it regain privileges through setuid binaries or file capabilities.
NoNewPrivileges=yes
# The OS is read-only, except the directories systemd creates above and these (the
# textfile collector's directory only if it exists; more in a drop-in, docs/install.md).
ProtectSystem=strict
ReadWritePaths=-/run/mediamtx-audio -/var/log/mediamtx-audio -/var/lib/prometheus/node-exporter
# Home directories are invisible (keys, shell histories).
ProtectHome=yes
# A private /tmp: other services' temporary files can be neither read nor planted.
PrivateTmp=yes
# Its own mount namespace: no mount made inside reaches the host.
PrivateMounts=yes
# Devices: only ALSA character devices (/dev/snd/*), not disks or /dev/mem.
# Not PrivateDevices=: it would hide /dev/snd.
DevicePolicy=closed
DeviceAllow=char-alsa rw
# /proc lists only processes it may inspect (its own children); /proc/asound stays
# readable (not ProcSubset=pid, which would hide it).
ProtectProc=invisible
# Kernel tunables in /proc/sys and /sys are read-only.
ProtectKernelTunables=yes
# No loading kernel modules.
ProtectKernelModules=yes
# No reading the kernel log ring buffer.
ProtectKernelLogs=yes
# The cgroup tree is read-only (systemd still kills the whole cgroup on stop).
ProtectControlGroups=yes
# No setting the system or hardware clock.
ProtectClock=yes
# No changing the hostname.
ProtectHostname=yes
# Sockets: MediaMTX over IPv4/IPv6, the control and notify sockets (AF_UNIX), netlink for
# the C library's host-name lookups; no raw or packet sockets.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
# No new namespaces (where container escapes start).
RestrictNamespaces=yes
# No creating setuid/setgid files.
RestrictSUIDSGID=yes
# No realtime scheduling: a runaway ffmpeg cannot starve the box.
RestrictRealtime=yes
# The execution domain (personality) stays fixed.
LockPersonality=yes
# Only native system calls (no 32-bit compat entry points)...
SystemCallArchitectures=native
# ...and only those ordinary services use; privileged ones (mount, reboot, swap, module
# loading, setuid, chown) fail with EPERM rather than run.
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
"
    )
}

/// The cron.d file: a header cron needs, then the compatible SPEC §9 line byte for byte.
pub fn render_cron(binary: &str) -> String {
    format!(
        "\
# Written by `mediamtx-stream-manager install`; `uninstall` removes it only while unchanged.
# Second line of defence: every 5 minutes, exit 2 (critical) from `monitor` restarts the
# service; other non-zero codes are only logged (journalctl -t mediamtx-monitor).
SHELL=/bin/sh
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

{CRON_PREFIX}{binary}{CRON_SUFFIX}
"
    )
}

/// `ExecStart=` value: the binary, `start --foreground`, then the options given to `install`.
///
/// Options are carried when given explicitly (flag or environment); values that come
/// from the TOML are left to the TOML, so editing it later still takes effect.
pub fn exec_start(binary: &Path, global: &Global, config: Option<&Path>) -> Result<String, String> {
    let mut words: Vec<String> = vec![
        path_str(binary)?.to_string(),
        "start".into(),
        "--foreground".into(),
    ];
    if let Some(m) = global.mode {
        words.extend(["-m".into(), m.as_str().into()]);
    }
    if let Some(f) = global.filter {
        words.extend(["-f".into(), f.as_str().into()]);
    }
    if let Some(n) = &global.name {
        words.extend(["-n".into(), n.clone()]);
    }
    if let Some(c) = config {
        words.extend(["-c".into(), path_str(c)?.to_string()]);
    }
    let quoted = words
        .iter()
        .map(|w| systemd_quote(w))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(quoted.join(" "))
}

fn path_str(p: &Path) -> Result<&str, String> {
    p.to_str()
        .ok_or_else(|| format!("path {} is not valid UTF-8", p.display()))
}

/// One word of a systemd command line: quoted when needed, `%` and `$` escaped.
fn systemd_quote(word: &str) -> Result<String, String> {
    if word.is_empty() || word.chars().any(char::is_control) {
        return Err(format!(
            "{word:?} cannot be written into ExecStart= (empty or control characters)"
        ));
    }
    let safe = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._+@:,=-".contains(c));
    let body = if safe {
        word.to_string()
    } else {
        format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\""))
    };
    Ok(body.replace('%', "%%").replace('$', "$$"))
}

/// The binary path must survive the cron line's single quotes and cron's `%` rule verbatim.
fn cron_binary(binary: &Path) -> Result<&str, String> {
    let s = path_str(binary)?;
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._+@:,-".contains(c))
    {
        Ok(s)
    } else {
        Err(format!(
            "binary path {s:?} cannot go into the cron line (only letters, digits and / . _ + @ : , - are safe there); use --no-cron or move the binary"
        ))
    }
}

/// What the cron line runs before ` monitor`: the binary, and with `install -c FILE` also
/// `-c 'FILE'`, so cron checks the same state dir as the service. The line sits inside
/// `flock -c '…'`, so FILE is quoted for the inner shell and every `'` of that quoted
/// word is written as `'\''` for the outer one. Without `-c` the SPEC §9 line is unchanged.
pub fn cron_command(binary: &Path, config: Option<&Path>) -> Result<String, String> {
    let b = cron_binary(binary)?;
    let Some(c) = config else {
        return Ok(b.to_string());
    };
    let c = path_str(c)?;
    if c.chars().any(|ch| ch.is_control() || ch == '%') {
        return Err(format!(
            "config path {c:?} cannot go into the cron line (cron turns % into a newline; no control characters); use --no-cron or move the file"
        ));
    }
    let inner = format!("'{}'", c.replace('\'', "'\\''"));
    Ok(format!("{b} -c {}", inner.replace('\'', "'\\''")))
}

/// Is this unit text exactly what `install` writes, for whatever ExecStart it has?
pub fn is_our_unit(text: &str) -> bool {
    text.lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .is_some_and(|e| render_unit(e) == text)
}

/// Is this cron text exactly what `install` writes, for whatever binary it names?
pub fn is_our_cron(text: &str) -> bool {
    text.lines()
        .find_map(|l| l.strip_prefix(CRON_PREFIX)?.strip_suffix(CRON_SUFFIX))
        .is_some_and(|b| render_cron(b) == text)
}

/// `YYYYmmddTHHMMSSZ` for backup names (UTC, sortable).
pub fn utc_stamp(unix: u64) -> String {
    crate::util::utc(unix)
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// What writing one file would do.
#[derive(Debug, PartialEq)]
enum Plan {
    Create,
    Unchanged,
    Replace { backup: PathBuf },
}

fn plan(path: &Path, content: &str) -> Result<Plan, Error> {
    // A symlink here is usually `systemctl mask` (-> /dev/null): the admin's decision.
    if path
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        return Err(Error::general(format!(
            "{} is a symlink (masked unit?); not replacing it: remove it first",
            path.display()
        )));
    }
    match fs::read(path) {
        Ok(old) if old == content.as_bytes() => Ok(Plan::Unchanged),
        Ok(_) => Ok(Plan::Replace {
            backup: free_backup_name(path),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Plan::Create),
        Err(e) => Err(Error::general(format!(
            "cannot read {}: {}",
            path.display(),
            io_reason(&e)
        ))),
    }
}

/// `<path>.bak.<stamp>`, with `.N` added if that exists already (two installs in a second).
fn free_backup_name(path: &Path) -> PathBuf {
    let base = format!(
        "{}.bak.{}",
        path.display(),
        utc_stamp(crate::util::unix_now())
    );
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.symlink_metadata().is_ok() {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}

/// Carry out a plan: back up, then write a temp file and rename it into place (atomic).
fn apply(path: &Path, content: &str, plan: &Plan) -> Result<(), Error> {
    let fail = |what: &str, p: &Path, e: std::io::Error| {
        Error::general(format!("cannot {what} {}: {}", p.display(), io_reason(&e)))
    };
    if *plan == Plan::Unchanged {
        say!("unchanged {}", path.display());
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| fail("create directory", dir, e))?;
    }
    if let Plan::Replace { backup } = plan {
        fs::copy(path, backup).map_err(|e| fail("back up to", backup, e))?;
        say!("backed up {} to {}", path.display(), backup.display());
    }
    let tmp = PathBuf::from(format!("{}.tmp.{}", path.display(), std::process::id()));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(content.as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(fail("write", path, e));
    }
    say!("wrote {}", path.display());
    Ok(())
}

/// True when systemd is PID 1 here (what `sd_booted()` checks).
fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn systemctl(args: &[&str]) -> Result<(), Error> {
    let shown = format!("systemctl {}", args.join(" "));
    say!("running {shown}");
    match Command::new("systemctl").args(args).status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(Error::general(format!("{shown} failed ({s})"))),
        Err(e) => Err(Error::general(format!(
            "cannot run {shown}: {}",
            io_reason(&e)
        ))),
    }
}

fn require_root(what: &str) -> Result<(), Error> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(Error::general(format!(
            "{what} writes to /etc and runs systemctl: run it as root (sudo), or use --root DIR{}",
            if what == "install" {
                " or --dry-run"
            } else {
                ""
            }
        )))
    }
}

fn this_binary(given: Option<&Path>) -> Result<PathBuf, Error> {
    match given {
        Some(p) if p.is_absolute() => Ok(p.to_path_buf()),
        Some(p) => Err(Error::general(format!(
            "--binary {}: must be an absolute path",
            p.display()
        ))),
        None => std::env::current_exe()
            .and_then(fs::canonicalize)
            .map_err(|e| {
                Error::general(format!(
                    "cannot find this binary's own path: {}",
                    io_reason(&e)
                ))
            }),
    }
}

fn root_dir(root: Option<&Path>) -> PathBuf {
    root.map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

/// `install`: write the unit (and the cron file), then reload and optionally enable systemd.
pub fn install(global: &Global, opts: &InstallOptions) -> Result<Exit, Error> {
    let live = opts.root.is_none() && !opts.dry_run;
    if live {
        require_root("install")?;
    }
    let settings = crate::config::Settings::load(global)?;
    for w in &settings.warnings {
        log::warn!("{w}");
    }
    if crate::exposure::publish_has_credentials(&settings) {
        // ffmpeg's command line (and so the password) is readable by every local user.
        eprintln!(
            "note: ffmpeg publishes with a password, and every local user can read it in \
             /proc/<pid>/cmdline. Recommended: let MediaMTX accept publishing from this host \
             without one (mediamtx.yml, then drop the credentials from rtsp_url/username/password):\n{}",
            crate::exposure::MEDIAMTX_LOCAL_PUBLISH
        );
    }
    let config = match &global.config {
        Some(c) => Some(fs::canonicalize(c).map_err(|e| {
            Error::config(format!(
                "{}: cannot resolve path: {}",
                c.display(),
                io_reason(&e)
            ))
        })?),
        None => None,
    };
    let binary = this_binary(opts.binary.as_deref())?;
    let exec = exec_start(&binary, global, config.as_deref()).map_err(Error::general)?;
    let root = root_dir(opts.root.as_deref());
    let mut files = vec![(root.join(UNIT_PATH), render_unit(&exec))];
    if !opts.no_cron {
        let b = cron_command(&binary, config.as_deref()).map_err(Error::general)?;
        files.push((root.join(CRON_PATH), render_cron(&b)));
    }
    let plans = files
        .iter()
        .map(|(p, c)| plan(p, c))
        .collect::<Result<Vec<_>, _>>()?;

    if opts.dry_run {
        for ((path, content), plan) in files.iter().zip(&plans) {
            match plan {
                Plan::Create => say!("would create {}:", path.display()),
                Plan::Unchanged => say!("unchanged {} (would leave it alone):", path.display()),
                Plan::Replace { backup } => say!(
                    "would back up {} to {} and replace it with:",
                    path.display(),
                    backup.display()
                ),
            }
            say_raw(content);
        }
        if opts.root.is_none() {
            say!("would run: systemctl daemon-reload");
            if opts.enable {
                say!("would run: systemctl enable --now {UNIT}");
            }
        }
        return Ok(Exit::Ok);
    }

    for ((path, content), plan) in files.iter().zip(&plans) {
        apply(path, content, plan)?;
    }
    if !live {
        if opts.enable {
            eprintln!("note: --enable ignored with --root (systemctl is skipped)");
        }
        return Ok(Exit::Ok);
    }
    if !systemd_running() {
        if opts.enable {
            return Err(Error::general(
                "files written, but systemd is not running here (no /run/systemd/system): cannot enable the unit",
            ));
        }
        eprintln!("note: systemd is not running here; skipped systemctl daemon-reload");
        return Ok(Exit::Ok);
    }
    systemctl(&["daemon-reload"])?;
    if opts.enable {
        systemctl(&["enable", "--now", UNIT])?;
    }
    if matches!(plans[0], Plan::Replace { .. }) {
        say!(
            "the unit changed: `systemctl restart mediamtx-audio` applies it to a running service"
        );
    }
    Ok(Exit::Ok)
}

/// Tells whether a file's text is exactly what `install` writes.
type Recognise = fn(&str) -> bool;

/// `uninstall`: remove the unit and the cron file if, and only if, they are unchanged.
pub fn uninstall(_global: &Global, root: Option<&Path>) -> Result<Exit, Error> {
    let live = root.is_none();
    if live {
        require_root("uninstall")?;
    }
    let base = root_dir(root);
    let targets: [(PathBuf, Recognise); 2] = [
        (base.join(UNIT_PATH), is_our_unit),
        (base.join(CRON_PATH), is_our_cron),
    ];
    let mut present = Vec::new();
    let mut refused = Vec::new();
    for (path, ours) in &targets {
        match fs::read(path) {
            Ok(bytes) if std::str::from_utf8(&bytes).is_ok_and(ours) => present.push(path),
            Ok(_) => refused.push(path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                say!("not installed: {}", path.display())
            }
            Err(e) => {
                return Err(Error::general(format!(
                    "cannot read {}: {}",
                    path.display(),
                    io_reason(&e)
                )))
            }
        }
    }
    if !refused.is_empty() {
        return Err(Error::general(format!(
            "not removing {}: content differs from what install writes (edited, or another version); remove it by hand",
            refused.join(" and ")
        )));
    }
    if present.is_empty() {
        say!("nothing to uninstall");
        return Ok(Exit::Ok);
    }
    let unit_present = present.iter().any(|p| p.ends_with(UNIT_PATH));
    let systemd = live && systemd_running();
    if systemd && unit_present {
        systemctl(&["disable", "--now", UNIT])?;
    }
    for path in &present {
        fs::remove_file(path).map_err(|e| {
            Error::general(format!(
                "cannot remove {}: {}",
                path.display(),
                io_reason(&e)
            ))
        })?;
        say!("removed {}", path.display());
    }
    if systemd {
        systemctl(&["daemon-reload"])?;
    }
    if !live {
        remove_empty_dirs(&base);
    }
    Ok(Exit::Ok)
}

/// Under `--root`, drop the directories `install` created if they are now empty,
/// so install + uninstall leaves a scratch root exactly as it was.
fn remove_empty_dirs(base: &Path) {
    for rel in ["etc/systemd/system", "etc/systemd", "etc/cron.d", "etc"] {
        // remove_dir fails on non-empty directories, which is what we want.
        let _ = fs::remove_dir(base.join(rel));
    }
}

#[cfg(test)]
mod tests;
