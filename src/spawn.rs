//! Starting a child with `clone(CLONE_VM | CLONE_VFORK)`, the way glibc's `posix_spawn`
//! does, plus what posix_spawn cannot do: `PR_SET_PDEATHSIG`.
//!
//! Why not `fork()`: it copies the page tables of a supervisor with hundreds of threads
//! and serialises on its memory map, so each spawn cost more the larger the supervisor
//! grew (docs/performance.md). Why not std's `Command`: without a `pre_exec` hook it does
//! use posix_spawn, but PDEATHSIG then needs an exec trampoline (a second exec of this
//! binary per spawn, measured at 1.5–2 ms). Here the child shares the parent's memory and
//! runs only async-signal-safe libc calls on its own small stack until it execs; the
//! parent's spawning thread is suspended meanwhile (CLONE_VFORK) and every signal is
//! blocked around the clone, so nothing of the parent runs on the shared memory but it.

use std::ffi::{c_char, c_int, c_void, CString, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;

/// A started child: its pid and the parent's ends of its stdout and stderr pipes.
pub struct Proc {
    pid: u32,
    pub stdout: Option<File>,
    pub stderr: Option<File>,
    status: Option<ExitStatus>,
}

impl Proc {
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Reap the child if it has exited (`waitpid(WNOHANG)`); the status is kept.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.wait_flags(libc::WNOHANG)
    }

    /// Block until the child exits.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(s) = self.wait_flags(0)? {
                return Ok(s);
            }
        }
    }

    fn wait_flags(&mut self, flags: c_int) -> io::Result<Option<ExitStatus>> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        let mut st: c_int = 0;
        // SAFETY: waitpid on our own child, writing into a live int.
        let r = unsafe { libc::waitpid(self.pid as libc::pid_t, &mut st, flags) };
        match r {
            0 => Ok(None),
            r if r > 0 => {
                let s = ExitStatus::from_raw(st);
                self.status = Some(s);
                Ok(Some(s))
            }
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }
}

/// What the child needs, prepared by the parent: only raw pointers and numbers, so the
/// child allocates nothing.
struct Ctx {
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    stdin: c_int,
    stdout: c_int,
    stderr: c_int,
    /// Close-on-exec write end: [step, errno] when something fails before exec.
    report: c_int,
    /// The supervisor's pid: a child whose parent is already gone exits at once.
    parent: libc::pid_t,
    /// RLIMIT_NOFILE to restore (the supervisor raised its soft limit), if any.
    nofile: Option<libc::rlimit>,
}

/// Where the child failed, for the error message.
const STEPS: [&str; 4] = ["setpgid", "PR_SET_PDEATHSIG", "dup2", "exec"];

/// Signals set back to their default even when the supervisor ignores them: ignored
/// dispositions survive exec, and a supervisor started with `&` ignores SIGINT, so its
/// ffmpeg would ignore our graceful stop. (Handled signals are reset anyway.)
const DEFAULTED: [c_int; 5] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGPIPE,
];

/// # Safety
/// Runs in the vfork'ed child on the parent's memory: only async-signal-safe libc calls,
/// no allocation, no unwinding, never returns.
unsafe fn fail(c: &Ctx, step: c_int) -> ! {
    let msg = [step, *libc::__errno_location()];
    libc::write(c.report, msg.as_ptr().cast(), std::mem::size_of_val(&msg));
    libc::_exit(127)
}

extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the parent's `Ctx`, alive while the parent is suspended (vfork);
    // see `fail` for what may run here.
    unsafe {
        let c = &*(arg as *const Ctx);
        // Every signal is blocked (the parent did it before clone). A handler must never
        // run here on the parent's memory: reset every handled signal (this process has
        // its own table: no CLONE_SIGHAND), and the five above even when ignored.
        for sig in 1..libc::SIGRTMAX() {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            if DEFAULTED.contains(&sig)
                || (old.sa_sigaction != libc::SIG_IGN && old.sa_sigaction != libc::SIG_DFL)
            {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        if libc::setpgid(0, 0) != 0 {
            fail(c, 0);
        }
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
            fail(c, 1);
        }
        // The spawning thread may have died before prctl: then nobody would kill us.
        if libc::getppid() != c.parent {
            libc::_exit(1);
        }
        for (from, to) in [(c.stdin, 0), (c.stdout, 1), (c.stderr, 2)] {
            if libc::dup2(from, to) < 0 {
                fail(c, 2);
            }
        }
        // Only 0–2 cross exec. Everything of ours is close-on-exec already; this catches
        // a descriptor some library opened without the flag. Marking, not closing: the
        // report pipe must stay open until exec. close_range needs Linux 5.11 for the
        // flag and may be refused by a seccomp filter: then mark each one by hand.
        if libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) != 0
        {
            crate::child::cloexec_each_from(3);
        }
        if let Some(lim) = c.nofile.as_ref() {
            libc::setrlimit(libc::RLIMIT_NOFILE, lim);
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::execve(c.path, c.argv, c.envp);
        fail(c, 3)
    }
}

/// The soft RLIMIT_NOFILE the supervisor had before it raised it, with today's hard one.
fn original_nofile() -> Option<libc::rlimit> {
    let soft = crate::child::NOFILE_SOFT.load(std::sync::atomic::Ordering::Relaxed);
    if soft == u64::MAX {
        return None;
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a live struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    lim.rlim_cur = soft.min(lim.rlim_max);
    Some(lim)
}

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte"))
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are new descriptors of ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The child's stack: it runs a few libc calls (glibc's posix_spawn uses 36 KiB).
const STACK: usize = 64 * 1024;

/// A fresh mapping for the child's stack, unmapped after the spawn: only the pages the
/// child touched are ever resident, and none stay behind in malloc's arenas (256
/// wrappers spawning at once would otherwise leave 16 MiB of freed stacks there).
struct Stack(*mut c_void);

impl Stack {
    fn new() -> io::Result<Stack> {
        // SAFETY: a new private anonymous mapping; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                STACK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Stack(p))
    }

    /// The top, 16-byte aligned (stacks grow down).
    fn top(&self) -> usize {
        (self.0 as usize + STACK) & !15
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: our own mapping, no longer used (the child has exec'd or exited).
        unsafe { libc::munmap(self.0, STACK) };
    }
}

/// Start `path` (already resolved: no PATH search here) with `argv` and exactly `env`,
/// stdin from /dev/null, stdout and stderr piped, in a new process group, with
/// `PR_SET_PDEATHSIG(SIGKILL)`: it dies when the calling *thread* does.
pub fn spawn(path: &Path, argv: &[OsString], env: &[(OsString, OsString)]) -> io::Result<Proc> {
    let c_path = cstr(path.as_os_str().as_bytes())?;
    let c_argv = argv
        .iter()
        .map(|a| cstr(a.as_bytes()))
        .collect::<io::Result<Vec<_>>>()?;
    let c_env = env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstr(&kv)
        })
        .collect::<io::Result<Vec<_>>>()?;
    let mut p_argv: Vec<*const c_char> = c_argv.iter().map(|a| a.as_ptr()).collect();
    p_argv.push(std::ptr::null());
    let mut p_env: Vec<*const c_char> = c_env.iter().map(|a| a.as_ptr()).collect();
    p_env.push(std::ptr::null());

    let devnull = File::open("/dev/null")?; // std opens with O_CLOEXEC
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (rep_r, rep_w) = pipe()?;
    let ctx = Ctx {
        path: c_path.as_ptr(),
        argv: p_argv.as_ptr(),
        envp: p_env.as_ptr(),
        stdin: devnull.as_raw_fd(),
        stdout: out_w.as_raw_fd(),
        stderr: err_w.as_raw_fd(),
        report: rep_w.as_raw_fd(),
        parent: std::process::id() as libc::pid_t,
        nofile: original_nofile(),
    };
    let stack = Stack::new()?;
    let top = stack.top();
    // SAFETY: block every signal around the clone so no handler runs in the child on our
    // memory before it has reset them; the child gets its own copy of the mask. CLONE_VFORK
    // suspends this thread until the child has exec'd or exited, so `ctx`, the strings and
    // the stack outlive its use of them.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            child_main,
            top as *mut c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &ctx as *const Ctx as *mut c_void,
        );
        let err = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(err);
        }
        pid
    };
    drop((out_w, err_w, rep_w, devnull, stack));
    let mut proc = Proc {
        pid: pid as u32,
        stdout: Some(File::from(out_r)),
        stderr: Some(File::from(err_r)),
        status: None,
    };
    // EOF: the exec closed the child's end (another thread's child may hold a copy until
    // its own exec, a moment). Eight bytes: it failed before exec.
    let mut rep = [0u8; 8];
    let mut got = 0;
    let mut f = File::from(rep_r);
    while got < rep.len() {
        match f.read(&mut rep[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if got == rep.len() {
        let _ = proc.wait();
        let step = i32::from_ne_bytes(rep[..4].try_into().unwrap_or_default());
        let errno = i32::from_ne_bytes(rep[4..].try_into().unwrap_or_default());
        let e = io::Error::from_raw_os_error(errno);
        return Err(match STEPS.get(step as usize) {
            Some(&"exec") | None => e,
            Some(s) => io::Error::new(e.kind(), format!("{s}: {e}")),
        });
    }
    Ok(proc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn read_all(f: &mut Option<File>) -> String {
        let mut s = String::new();
        f.take().unwrap().read_to_string(&mut s).unwrap();
        s
    }

    /// Exactly the given environment, pipes on 1 and 2, /dev/null on 0, nothing else
    /// open, own process group, PDEATHSIG set, and the five signals at their default.
    #[test]
    fn the_child_gets_exactly_what_we_promise() {
        let script = "echo \"env=$MARK\"; ls /proc/self/fd | sort -n | tr '\\n' ' '; echo; \
                      readlink /proc/self/fd/0; \
                      cut -d' ' -f5 /proc/$$/stat; echo $$; \
                      grep -E '^(SigIgn|SigBlk)' /proc/self/status; \
                      echo oops >&2; exit 4";
        let env = [
            (OsString::from("MARK"), OsString::from("yes")),
            (OsString::from("PATH"), OsString::from("/usr/bin:/bin")),
        ];
        // Ignored here (harmless for this test process: nobody sends it SIGQUIT), so the
        // reset is seen; SIGPIPE is ignored by Rust's runtime anyway.
        // SAFETY: setting a disposition to SIG_IGN.
        unsafe { libc::signal(libc::SIGQUIT, libc::SIG_IGN) };
        let mut p = spawn(Path::new("/bin/sh"), &os(&["sh", "-c", script]), &env).unwrap();
        let out = read_all(&mut p.stdout);
        let err = read_all(&mut p.stderr);
        let st = p.wait().unwrap();
        assert_eq!(st.code(), Some(4), "{out}");
        assert_eq!(err, "oops\n");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "env=yes");
        // sh's own descriptors: 0-2, plus the one `ls` lists for /proc/self/fd itself.
        let fds: Vec<i32> = lines[1]
            .split_whitespace()
            .map(|f| f.parse().unwrap())
            .collect();
        assert!(fds.len() <= 4 && fds[..3] == [0, 1, 2], "{out}");
        assert_eq!(lines[2], "/dev/null");
        assert_eq!(lines[3], lines[4], "own process group: {out}");
        // (/proc lists the blocked set before the ignored one.)
        assert_eq!(lines[5], "SigBlk:\t0000000000000000", "{out}");
        let ign = u64::from_str_radix(lines[6].trim_start_matches("SigIgn:\t"), 16).unwrap();
        for sig in DEFAULTED {
            assert_eq!(ign & 1 << (sig - 1), 0, "signal {sig} still ignored: {out}");
        }
    }

    #[test]
    fn a_program_that_cannot_run_is_an_error_not_a_child() {
        let e = spawn(Path::new("/nonexistent/prog"), &os(&["prog"]), &[])
            .err()
            .unwrap();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
    }
}
