//! Performance-related behaviour proven through the built binary: `monitor` judges CPU from
//! the supervisor's own window (`src/cpu.rs`) instead of sampling 300 ms itself.

mod common;

use std::time::Duration;

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
