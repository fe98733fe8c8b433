#!/usr/bin/env python3
"""compare.py: ours vs runit vs supervisord vs s6 supervising the same fake ffmpeg (issues 10, 16).

Run through benches/compare.sh (installs runit and supervisor, builds the release binary).
Python 3 stdlib only. Every figure is measured on the running system, never assumed:

* memory: sum of Pss from /proc/<pid>/smaps_rollup of the supervising processes only
  (ours: the supervisor; runit: runsvdir + every runsv; supervisord: its process;
  s6: s6-svscan + every s6-supervise);
  threads: sum of Threads from /proc/<pid>/status;
* CPU: their threads' run time (/proc/<pid>/task/*/schedstat, ns) over a steady window,
  % of one core;
* crash -> respawn: SIGKILL a child; the new child's own start-log timestamp (written by
  the fake right after exec and bash's start-up, the same for all three) minus the kill;
* hang: the fake stops writing progress (SIGUSR1) -> a new child starts (or not: bound);
* start -> all running: launching the supervisor -> every stream's child has started
  (ours also: -> `status` shows every stream running); stop -> all gone: the stop command
  -> no process with the bench marker left.

The fake ffmpeg writes progress every 0.5 s (FAKE_FFMPEG_INTERVAL) without forking.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FAKE = os.path.join(ROOT, "tests/fixtures/fake-ffmpeg")
HZ = os.sysconf("SC_CLK_TCK")
MARK = "MSM_BENCH_MARK"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- /proc helpers


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def stat_fields(pid):
    s = read(f"/proc/{pid}/stat")
    i = s.rfind(")")
    return s[i + 2:].split() if i > 0 else None


def cpu_ns(pid):
    """CPU time of every thread of a process, ns (schedstat: exact, where utime+stime
    are whole clock ticks per thread and undercount hundreds of mostly idle threads)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for t in tasks:
        s = read(f"/proc/{pid}/task/{t}/schedstat").split()
        total += int(s[0]) if s else 0
    return total


def pss_kib(pid):
    for line in read(f"/proc/{pid}/smaps_rollup").splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def threads(pid):
    for line in read(f"/proc/{pid}/status").splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def all_pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def children_of(ppid):
    out = []
    for pid in all_pids():
        f = stat_fields(pid)
        if f and int(f[1]) == ppid and f[0] != "Z":
            out.append(pid)
    return out


def marked(mark):
    """Live processes whose environment carries MSM_BENCH_MARK=<mark>."""
    want = f"{MARK}={mark}".encode()
    out = []
    for pid in all_pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if want in env:
            f = stat_fields(pid)
            if f and f[0] != "Z":
                out.append(pid)
    return out


def pct(values, q):
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


# ---------------------------------------------------------------- the start log


class StartLog:
    """Reads the fake's start log incrementally: stream -> [(pid, t)]."""

    def __init__(self, path):
        self.path = path
        self.off = 0
        self.starts = {}
        open(path, "a").close()

    def poll(self):
        with open(self.path) as f:
            f.seek(self.off)
            data = f.read()
        end = data.rfind("\n") + 1
        self.off += len(data[:end].encode())
        for line in data[:end].splitlines():
            w = line.split()
            if len(w) >= 4:
                self.starts.setdefault(w[0], []).append((int(w[1]), float(w[3])))
        return self.starts

    def current(self, stream):
        s = self.starts.get(stream)
        return s[-1] if s else None

    def count(self):
        return sum(len(v) for v in self.starts.values())


# ---------------------------------------------------------------- the three systems


def fake_env(d, mark):
    return {
        "FAKE_FFMPEG_INTERVAL": "0.5",
        "FAKE_FFMPEG_START_LOG": os.path.join(d, "starts.log"),
        "FAKE_FFMPEG_MODE": "run",
        MARK: mark,
    }


def make_host(d, n):
    proc = os.path.join(d, "proc/asound")
    dev = os.path.join(d, "dev/snd")
    for p in (proc, dev + "/by-id", dev + "/by-path"):
        os.makedirs(p, exist_ok=True)
    cards = []
    for i in range(1, n + 1):
        cid = f"mic{i}"
        os.makedirs(f"{proc}/card{i}", exist_ok=True)
        with open(f"{proc}/card{i}/id", "w") as f:
            f.write(cid + "\n")
        with open(f"{proc}/card{i}/usbid", "w") as f:
            f.write(f"1d6b:{i:04x}\n")
        for x in (f"controlC{i}", f"pcmC{i}D0c"):
            open(f"{dev}/{x}", "w").close()
        for sub, nm in (("by-id", f"usb-Bench_{cid}-00"),
                        ("by-path", f"pci-0000:01:00.0-usb-0:1.{i}:1.0")):
            link = f"{dev}/{sub}/{nm}"
            if not os.path.islink(link):
                os.symlink(f"../controlC{i}", link)
        cards.append(f"{i:2d} [{cid:<15}]: USB-Audio - {cid}\n"
                     f"                      {cid} at usb-0000:01:00.0-1.{i}, full speed\n")
    with open(f"{proc}/cards", "w") as f:
        f.write("".join(cards))


class Ours:
    name = "ours"

    def __init__(self, binary, d, n, mark, extra=""):
        self.bin, self.d, self.n, self.mark = binary, d, n, mark
        make_host(d, n)
        self.cfg = os.path.join(d, "manager.toml")
        with open(self.cfg, "w") as f:
            f.write(f"""[paths]
proc_asound = "{d}/proc/asound"
dev_snd = "{d}/dev/snd"
state_dir = "{d}/state"
log_dir = "{d}/logs"
device_config = "{d}/audio-devices.conf"
names_file = "{d}/names.json"
ffmpeg = "{FAKE}"
[mediamtx]
api = false
rtsp_url = "rtsp://127.0.0.1:1"
{extra}
""")
        self.proc = None

    def start(self):
        env = dict(os.environ, **fake_env(self.d, self.mark))
        self.proc = subprocess.Popen(
            [self.bin, "-c", self.cfg, "start", "--foreground"], env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.d, "supervisor.err"), "w"))

    def supervising(self):
        return [self.proc.pid] if self.proc and self.proc.poll() is None else []

    def stop(self):
        subprocess.run([self.bin, "-c", self.cfg, "stop"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait()

    def running(self):
        out = subprocess.run([self.bin, "-c", self.cfg, "status", "--json"],
                             capture_output=True).stdout
        try:
            v = json.loads(out)
        except ValueError:
            return 0
        return sum(1 for s in v.get("streams", []) if s.get("state") == "running")


class Runit:
    name = "runit"

    def __init__(self, d, n, mark):
        self.d, self.n, self.mark = d, n, mark
        self.sv = os.path.join(d, "service")
        os.makedirs(self.sv)
        env = fake_env(d, mark)
        for i in range(1, n + 1):
            s = os.path.join(self.sv, f"mic{i}")
            os.makedirs(s)
            exports = "".join(f"export {k}='{v}'\n" for k, v in env.items())
            with open(os.path.join(s, "run"), "w") as f:
                f.write(f"#!/bin/sh\n{exports}export MEDIAMTX_STREAM_MANAGER_STREAM=mic{i}\n"
                        f"exec {FAKE} -i mic{i} 2>>{d}/mic{i}.err\n")
            os.chmod(os.path.join(s, "run"), 0o755)
        self.proc = None

    def start(self):
        # No log service: the child's stdout goes where runsvdir's goes (/dev/null).
        self.proc = subprocess.Popen(["runsvdir", "-P", self.sv], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)

    def supervising(self):
        if not self.proc or self.proc.poll() is not None:
            return []
        return [self.proc.pid] + [p for p in children_of(self.proc.pid)]

    def stop(self):
        svs = [os.path.join(self.sv, f"mic{i}") for i in range(1, self.n + 1)]
        subprocess.run(["sv", "-w", "60", "force-stop"] + svs, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        self.proc.send_signal(signal.SIGHUP)  # runsvdir: TERM every runsv, exit

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        if self.proc:
            self.proc.wait()


class Supervisord:
    name = "supervisord"

    def __init__(self, d, n, mark, fastest=False):
        self.d, self.n, self.mark = d, n, mark
        self.conf = os.path.join(d, "supervisord.conf")
        os.makedirs(os.path.join(d, "childlogs"))
        env = dict(fake_env(d, mark))
        progs = []
        for i in range(1, n + 1):
            e = ",".join(f'{k}="{v}"' for k, v in
                         dict(env, MEDIAMTX_STREAM_MANAGER_STREAM=f"mic{i}").items())
            extra = "startsecs=0\nautorestart=true\nstartretries=1000\n" if fastest else ""
            progs.append(f"[program:mic{i}]\ncommand={FAKE} -i mic{i}\nenvironment={e}\n{extra}")
        with open(self.conf, "w") as f:
            f.write(f"""[unix_http_server]
file={d}/supervisor.sock
[supervisord]
nodaemon=true
logfile={d}/supervisord.log
pidfile={d}/supervisord.pid
childlogdir={d}/childlogs
user=root
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{d}/supervisor.sock
""" + "\n".join(progs))
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["supervisord", "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)

    def supervising(self):
        return [self.proc.pid] if self.proc and self.proc.poll() is None else []

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)  # supervisord: stop every program, exit

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        if self.proc:
            self.proc.wait()


class S6:
    """s6 2.11 (Debian `s6`): s6-svscan on a scan directory, one s6-supervise per service,
    the same run scripts as runit's, no logger. s6-supervise waits 1 s before restarting a
    service that died within 1 s of its start."""
    name = "s6"

    def __init__(self, d, n, mark):
        self.d, self.n, self.mark = d, n, mark
        self.sv = os.path.join(d, "scan")
        os.makedirs(self.sv)
        env = fake_env(d, mark)
        for i in range(1, n + 1):
            s = os.path.join(self.sv, f"mic{i}")
            os.makedirs(s)
            exports = "".join(f"export {k}='{v}'\n" for k, v in env.items())
            with open(os.path.join(s, "run"), "w") as f:
                f.write(f"#!/bin/sh\n{exports}export MEDIAMTX_STREAM_MANAGER_STREAM=mic{i}\n"
                        f"exec {FAKE} -i mic{i} 2>>{d}/mic{i}.err\n")
            os.chmod(os.path.join(s, "run"), 0o755)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["s6-svscan", self.sv], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)

    def supervising(self):
        if not self.proc or self.proc.poll() is not None:
            return []
        return [self.proc.pid] + [p for p in children_of(self.proc.pid)]

    def stop(self):
        # Bring every service down (SIGTERM, wait), then end the scanner.
        svs = [os.path.join(self.sv, f"mic{i}") for i in range(1, self.n + 1)]
        subprocess.run(["s6-svc", "-wD", "-T", "60000", "-d"] + svs, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        subprocess.run(["s6-svscanctl", "-t", self.sv], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        if self.proc:
            self.proc.wait()


# ---------------------------------------------------------------- measurements


def wait_until(cond, limit, step=0.02):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return False


def measure_start(sys_, log_, n, limit):
    t0 = time.time()
    sys_.start()

    def all_started():
        log_.poll()
        return len(log_.starts) >= n

    ok = wait_until(all_started, limit, 0.01)
    t_started = (max(v[0][1] for v in log_.starts.values()) - t0) if ok else None
    t_running = None
    if ok and isinstance(sys_, Ours):
        if wait_until(lambda: sys_.running() >= n, limit, 0.05):
            t_running = time.time() - t0
    return t_started, t_running


def measure_steady(sys_, window):
    pids = sys_.supervising()
    before = {p: cpu_ns(p) for p in pids}
    t0 = time.monotonic()
    time.sleep(window)
    dt = time.monotonic() - t0
    pids = sys_.supervising()
    used = sum(cpu_ns(p) - before.get(p, cpu_ns(p)) for p in pids) / 1e9
    return {
        "cpu_pct": 100.0 * used / dt,
        "pss_kib": sum(pss_kib(p) for p in pids),
        "threads": sum(threads(p) for p in pids),
        "procs": len(pids),
    }


def measure_respawn(log_, streams, kills, min_age, limit_each):
    """SIGKILL children round-robin; each only after it ran min_age (runit throttles
    restarts of a service that ran < 1 s, supervisord counts it a failed start)."""
    lat = []
    pending = {}  # stream -> (old pid, kill time)
    lost = 0
    deadline = time.monotonic() + kills * limit_each
    i = 0
    while (len(lat) + lost < kills or pending) and time.monotonic() < deadline:
        log_.poll()
        now = time.time()
        for s, (old, tk) in list(pending.items()):
            cur = log_.current(s)
            if cur and cur[0] != old:
                lat.append(cur[1] - tk)
                del pending[s]
            elif now - tk > limit_each:
                lost += 1
                del pending[s]
        if len(lat) + lost + len(pending) < kills:
            s = streams[i % len(streams)]
            i += 1
            cur = log_.current(s)
            if s not in pending and cur and now - cur[1] >= min_age:
                tk = time.time()
                try:
                    os.kill(cur[0], signal.SIGKILL)
                    pending[s] = (cur[0], tk)
                except ProcessLookupError:
                    pass
        time.sleep(0.002)
    return lat, lost + len(pending)


def measure_hang(log_, stream, bound):
    log_.poll()
    pid, _ = log_.current(stream)
    t0 = time.time()
    os.kill(pid, signal.SIGUSR1)

    def replaced():
        log_.poll()
        return log_.current(stream)[0] != pid

    if wait_until(replaced, bound, 0.05):
        return log_.current(stream)[1] - t0
    return None


def measure_stop(sys_, mark, limit):
    t0 = time.time()
    sys_.stop()
    ok = wait_until(lambda: not marked(mark), limit, 0.02)
    return (time.time() - t0) if ok else None


def time_cmd(argv, runs):
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ts.append(time.perf_counter() - t0)
    return ts


def summary(values, scale=1000.0):
    if not values:
        return None
    v = [x * scale for x in values]
    return {"n": len(v), "median": statistics.median(v), "p10": pct(v, 10), "p90": pct(v, 90),
            "p99": pct(v, 99), "min": min(v), "max": max(v)}


# ---------------------------------------------------------------- one run


def run_one(kind, n, args, variant=""):
    d = tempfile.mkdtemp(prefix=f"msm-bench-{kind}-{n}-")
    mark = os.path.basename(d)
    if kind == "ours":
        extra = ""
        if variant == "0s":
            extra = '[backoff]\ninitial = "0s"\n'
        if variant == "hang":
            extra = f'[backoff]\ninitial = "0s"\n[health]\nstall_timeout = "{args.stall}s"\n'
        s = Ours(args.bin, d, n, mark, extra)
    elif kind == "runit":
        s = Runit(d, n, mark)
    elif kind == "s6":
        s = S6(d, n, mark)
    else:
        s = Supervisord(d, n, mark, fastest=(variant == "fastest"))
    log_ = StartLog(os.path.join(d, "starts.log"))
    res = {"system": kind, "variant": variant, "n": n}
    try:
        started, running = measure_start(s, log_, n, args.start_limit)
        res["start_s"] = started
        res["start_running_s"] = running
        if started is None:
            log(f"{kind} N={n}: not every child started within {args.start_limit}s")
            return res
        time.sleep(args.settle)
        if variant in ("", "0s") or kind != "ours":
            if args.steady > 0 and variant in ("",):
                res.update(measure_steady(s, args.steady))
        if kind == "ours" and variant == "" and n in args.cmd_ns:
            b = [args.bin, "-c", s.cfg]
            res["status_ms"] = summary(time_cmd(b + ["status"], args.cmd_runs))
            res["status_json_ms"] = summary(time_cmd(b + ["status", "--json"], args.cmd_runs))
            res["monitor_ms"] = summary(time_cmd(b + ["monitor"], args.cmd_runs))
        streams = [f"mic{i}" for i in range(1, n + 1)]
        if n in args.kill_ns and variant != "hang":
            kills = args.kills if not (kind == "ours" and variant == "") else min(n, args.kills)
            lat, lost = measure_respawn(log_, streams, kills, 1.2,
                                        args.respawn_limit if variant != "" or kind != "ours"
                                        else 30.0)
            res["respawn_ms"] = summary(lat)
            res["respawn_lost"] = lost
        if variant == "hang" or (kind != "ours" and n in args.kill_ns and variant == ""):
            bound = args.hang_bound
            h = measure_hang(log_, streams[-1], bound)
            res["hang_s"] = h
            res["hang_bound_s"] = bound
        if kind == "ours" and variant == "" and n in args.cmd_ns:
            res["hotplug_s"] = measure_hotplug(s, log_, args)
        res["stop_s"] = measure_stop(s, mark, args.start_limit)
    finally:
        s.cleanup()
        left = marked(mark)
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        if left:
            log(f"{kind} N={n}: killed {len(left)} leftover marked processes")
        shutil.rmtree(d, ignore_errors=True)
    return res


def measure_hotplug(s, log_, args):
    """Unplug the last card, wait until its stream waits, replug: replug -> child started."""
    n = s.n
    d = s.d
    card = f"{d}/proc/asound/card{n}"
    saved = read(f"{d}/proc/asound/cards")
    out = []
    for _ in range(args.hotplug_runs):
        shutil.rmtree(card)
        with open(f"{d}/proc/asound/cards", "w") as f:
            f.write("".join(saved.splitlines(True)[:-2]))
        for x in (f"controlC{n}", f"pcmC{n}D0c"):
            os.unlink(f"{d}/dev/snd/{x}")
        if not wait_until(lambda: s.running() < n, 30, 0.05):
            break
        log_.poll()
        old = log_.current(f"mic{n}")[0]
        t0 = time.time()
        make_host(d, n)

        def back():
            log_.poll()
            return log_.current(f"mic{n}")[0] != old

        if not wait_until(back, 30, 0.005):
            break
        out.append(log_.current(f"mic{n}")[1] - t0)
        wait_until(lambda: s.running() >= n, 30, 0.05)
    return summary(out, 1.0)


def exec_floor(runs):
    """fork + exec of the fake until its start-log line, straight from Python: the floor
    under every respawn figure (bash's start-up is in all three)."""
    d = tempfile.mkdtemp(prefix="msm-bench-floor-")
    log_ = StartLog(os.path.join(d, "starts.log"))
    env = dict(os.environ, **fake_env(d, os.path.basename(d)),
               MEDIAMTX_STREAM_MANAGER_STREAM="floor")
    out = []
    try:
        for _ in range(runs):
            t0 = time.time()
            p = subprocess.Popen([FAKE], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            wait_until(lambda: log_.poll() and log_.current("floor")
                       and log_.current("floor")[0] == p.pid, 10, 0.001)
            out.append(log_.current("floor")[1] - t0)
            p.kill()
            p.wait()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return summary(out)


def fmt(x, unit="", nd=1):
    if x is None:
        return "–"
    return f"{x:.{nd}f}{unit}"


def render(path):
    """Markdown tables from a results JSON."""
    doc = json.load(open(path))
    res = doc["results"]
    by = {(r["system"], r["variant"], r["n"]): r for r in res}
    ns = sorted({r["n"] for r in res})
    systems = [s for s in ("ours", "runit", "supervisord", "s6")
               if any(r["system"] == s for r in res)]
    out = []
    others = [o for o in ("runit", "supervisord", "s6") if o in systems]
    out.append("| N | measure | " + " | ".join(systems) + " | "
               + " | ".join(f"ours/{o}" for o in others) + " |")
    out.append("|---|---|" + "---|" * (len(systems) + len(others)))
    rows = [("PSS of the supervising processes, MiB", "pss_kib", 1 / 1024, 2),
            ("threads (processes)", "threads", 1, 0),
            ("CPU over the steady window, % of one core", "cpu_pct", 1, 3),
            ("start -> every child started, s", "start_s", 1, 2),
            ("stop -> every child gone, s", "stop_s", 1, 2)]
    for n in ns:
        for label, key, scale, nd in rows:
            vals = {}
            for sy in systems:
                r = by.get((sy, "", n), {})
                v = r.get(key)
                vals[sy] = None if v is None else v * scale
            cells = []
            for sy in systems:
                c = fmt(vals[sy], nd=nd)
                if key == "threads" and by.get((sy, "", n), {}).get("procs"):
                    c += f" ({by[(sy, '', n)]['procs']})"
                cells.append(c)
            ratios = []
            for other in others:
                a, b = vals.get("ours"), vals.get(other)
                ratios.append(f"{a / b:.2f}" if a is not None and b not in (None, 0) else "–")
            out.append(f"| {n} | {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    out.append("")
    out.append("Crash -> respawn (SIGKILL -> the new child's first line), ms:")
    out.append("")
    out.append("| N | system | kills | median | p10 | p90 | p99 | max | lost |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for r in res:
        m = r.get("respawn_ms")
        if m:
            name = r["system"] + (f" ({r['variant']})" if r["variant"] else " (defaults)")
            if r["system"] == "ours" and r["variant"] == "0s":
                name = "ours (backoff.initial = 0s)"
            if r["system"] == "supervisord" and r["variant"] == "fastest":
                name = "supervisord (startsecs=0)"
            out.append(f"| {r['n']} | {name} | {m['n']} | {fmt(m['median'])} | {fmt(m['p10'])} | "
                       f"{fmt(m['p90'])} | {fmt(m['p99'])} | {fmt(m['max'])} | {r.get('respawn_lost', 0)} |")
    fl = doc.get("floor_ms")
    if fl:
        out.append(f"| – | floor: fork+exec of the fake from Python | {fl['n']} | {fmt(fl['median'])} | "
                   f"{fmt(fl['p10'])} | {fmt(fl['p90'])} | {fmt(fl['p99'])} | {fmt(fl['max'])} | – |")
    out.append("")
    out.append("Hang (progress stops, process alive) -> replaced:")
    out.append("")
    for r in res:
        if "hang_bound_s" in r:
            who = r["system"] + (" (stall_timeout = %gs, backoff.initial = 0s)" % doc["args"]["stall"]
                                 if r["variant"] == "hang" else "")
            h = r.get("hang_s")
            out.append(f"- N={r['n']} {who}: " + (f"replaced after {h:.2f} s" if h is not None else
                       f"never replaced (waited {r['hang_bound_s']:.0f} s)"))
    out.append("")
    out.append("Ours alone (wall time of the command, ms; hot-plug: replug -> child started, s):")
    out.append("")
    out.append("| N | status | status --json | monitor | hot-plug | start -> status shows all running, s |")
    out.append("|---|---|---|---|---|---|")
    for r in res:
        if r["system"] == "ours" and r["variant"] == "" and r.get("status_ms"):
            def m(k, nd=1):
                x = r.get(k)
                return f"{x['median']:.{nd}f} ({x['p10']:.{nd}f}–{x['p90']:.{nd}f})" if x else "–"
            out.append(f"| {r['n']} | {m('status_ms')} | {m('status_json_ms')} | {m('monitor_ms')} | "
                       f"{m('hotplug_s', 2)} | {fmt(r.get('start_running_s'), nd=2)} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/mediamtx-stream-manager"))
    ap.add_argument("--ns", default="1,8,64,256")
    ap.add_argument("--systems", default="ours,runit,supervisord,s6")
    ap.add_argument("--steady", type=float, default=30.0, help="CPU window, s")
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--kill-ns", default="8")
    ap.add_argument("--cmd-ns", default="8,256")
    ap.add_argument("--cmd-runs", type=int, default=20)
    ap.add_argument("--stall", type=float, default=5.0, help="ours' stall_timeout for the hang run")
    ap.add_argument("--hang-bound", type=float, default=30.0)
    ap.add_argument("--hotplug-runs", type=int, default=5)
    ap.add_argument("--respawn-limit", type=float, default=10.0)
    ap.add_argument("--start-limit", type=float, default=120.0)
    ap.add_argument("--out", default="-")
    ap.add_argument("--render", metavar="JSON", help="print Markdown tables of a results file")
    args = ap.parse_args()
    if args.render:
        print(render(args.render))
        return
    args.kill_ns = [int(x) for x in args.kill_ns.split(",") if x]
    args.cmd_ns = [int(x) for x in args.cmd_ns.split(",") if x]
    results = []
    floor = exec_floor(50)
    log(f"floor: {json.dumps(floor)}")
    for n in [int(x) for x in args.ns.split(",")]:
        for kind in args.systems.split(","):
            variants = [""]
            if n in args.kill_ns:
                variants += {"ours": ["0s", "hang"], "supervisord": ["fastest"]}.get(kind, [])
            for v in variants:
                log(f"== {kind}{'/' + v if v else ''} N={n}")
                r = run_one(kind, n, args, v)
                log(json.dumps(r))
                results.append(r)
    text = json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       "nproc": os.cpu_count(), "args": vars(args), "floor_ms": floor,
                       "load_before": read("/proc/loadavg").split()[:3],
                       "results": results},
                      indent=1)
    if args.out == "-":
        print(text)
    else:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
