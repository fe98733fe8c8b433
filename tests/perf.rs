//! Performance-related behaviour proven through the built binary: `monitor` judges CPU from
//! the supervisor's own window (`src/cpu.rs`) instead of sampling 300 ms itself; one thread
//! per stream plus a fixed few (issue 16).

mod common;

use std::time::Duration;

use common::mediamtx_mock::{MockMediamtx, Version};
use common::sup::Sup;
use serde_json::Value;

/// A busy child shows in the supervisor's CPU window and in `monitor --json`'s samples; an
/// idle one does not.
#[test]
fn monitor_reads_cpu_from_the_supervisor_window() {
    let mut s = Sup::new();
    s.usb(1, "idle");
    s.usb(2, "busy");
    std::fs::create_dir_all(s.dir.path().join("modes")).unwrap();
    std::fs::write(s.dir.path().join("modes/busy"), "spin").unwrap();
    s.env.push((
        "FAKE_FFMPEG_MODE_DIR".into(),
        s.dir.path().join("modes").display().to_string(),
    ));
    s.set_mode("run");
    s.set("health", "stall_timeout", "\"30s\"");
    s.write_config();
    s.start_foreground();
    let pid = |s: &Sup, n: &str| s.stream(n).and_then(|v| v["pid"].as_u64());
    s.wait_for("both running", Duration::from_secs(20), |s| {
        s.status().is_some_and(|v| {
            v["streams"]
                .as_array()
                .is_some_and(|a| a.iter().all(|x| x["state"] == "running"))
        })
    });
    // The first window closes one period after the first mark.
    s.wait_for(
        "a CPU window with both children",
        Duration::from_secs(20),
        |s| {
            let (Some(b), Some(i)) = (pid(s, "busy"), pid(s, "idle")) else {
                return false;
            };
            s.status().is_some_and(|v| {
                let c = &v["cpu"]["children"];
                c[b.to_string()].is_number() && c[i.to_string()].is_number()
            })
        },
    );
    let v = s.status().unwrap();
    let (b, i) = (pid(&s, "busy").unwrap(), pid(&s, "idle").unwrap());
    let cpu = &v["cpu"];
    assert!(cpu["window_s"].as_f64().unwrap() >= 1.9, "{cpu}");
    let busy = cpu["children"][b.to_string()].as_f64().unwrap();
    let idle = cpu["children"][i.to_string()].as_f64().unwrap();
    assert!(
        busy >= 10.0 && busy > idle,
        "busy {busy}% idle {idle}%: {cpu}"
    );
    assert!(cpu["supervisor"].as_f64().unwrap() < 100.0, "{cpu}");

    let out = s.run(&["monitor", "--json"]);
    let m: Value = serde_json::from_slice(&out.stdout).expect("monitor --json");
    let sample = |pid: u64| {
        m["samples"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["pid"].as_u64() == Some(pid))
            .cloned()
            .unwrap_or_else(|| panic!("no sample for pid {pid}: {m}"))
    };
    assert!(sample(b)["cpu_percent"].as_f64().unwrap() >= 10.0, "{m}");
    let sup = s.supervisor_pid().unwrap() as u64;
    assert!(sample(sup)["fds"].as_u64().unwrap() > 0, "{m}");
}

/// The supervisor's threads as (tid, name), read from /proc.
fn threads(pid: i32) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let tid: i32 = e.file_name().to_str().unwrap().parse().unwrap();
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        out.push((tid, comm.trim().to_string()));
    }
    out
}

/// N streams cost N wrapper threads (named `s-<stream>`) and nothing else per stream:
/// no reader or waiter threads beside them. Everything else (main, signals, control,
/// hot-plug watch, MediaMTX poller, metrics listener) is at most 8 whatever N is. Checked
/// with every optional shared thread on, and every child seen producing progress.
#[test]
fn one_thread_per_stream_and_at_most_eight_more() {
    for n in [1usize, 8, 64] {
        let mut s = Sup::new();
        for i in 0..n {
            s.usb(i as u32, &format!("t{i}"));
        }
        s.set_mode("run");
        // The fakes' own load stays low: progress every 0.5 s without forking `sleep`.
        s.env.push(("FAKE_FFMPEG_INTERVAL".into(), "0.5".into()));
        s.set("health", "stall_timeout", "\"30s\"");
        s.set("health", "start_timeout", "\"30s\"");
        let mock = MockMediamtx::start(Version::V1_20);
        for i in 0..n {
            mock.set_path(&format!("t{i}"), true);
        }
        s.set("mediamtx", "api", "true");
        s.set("mediamtx", "api_url", &format!("{:?}", mock.url()));
        let port = common::rtsp::free_port();
        s.set("metrics", "listen", &format!("\"127.0.0.1:{port}\""));
        s.write_config();
        s.start_foreground();
        s.wait_for(
            &format!("{n} streams running"),
            Duration::from_secs(60),
            |s| {
                s.status().is_some_and(|v| {
                    v["streams"]
                        .as_array()
                        .is_some_and(|a| a.len() == n && a.iter().all(|x| x["state"] == "running"))
                })
            },
        );
        let pid = s.supervisor_pid().unwrap();
        // A connection's thread ends with it: let the last `status` finish.
        std::thread::sleep(Duration::from_millis(300));
        let all = threads(pid);
        let wrappers = all.iter().filter(|(_, c)| c.starts_with("s-t")).count();
        let others: Vec<&String> = all
            .iter()
            .filter(|(_, c)| !c.starts_with("s-t"))
            .map(|(_, c)| c)
            .collect();
        assert_eq!(
            wrappers, n,
            "N = {n}: one wrapper thread per stream: {all:?}"
        );
        assert!(
            others.len() <= 8,
            "N = {n}: {} shared threads, want at most 8: {others:?}",
            others.len()
        );
        assert!(
            all.len() <= n + 8,
            "N = {n}: {} threads, want N + at most 8",
            all.len()
        );
        let out = s.run(&["stop"]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
}
