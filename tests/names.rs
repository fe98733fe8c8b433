//! Sticky stream names for twin microphones and SPEC §4 names for `-n`, through the built
//! binary on a fake host with the fake ffmpeg (issue 8 items 3 and 12).
//!
//! Twins: two identical microphones share a by-id name (udev keeps one link; the second card
//! inherits the name through its identical usbid) and differ only by USB port path.

mod common;

use std::time::Duration;

use common::sup::{alive, Sup};
use serde_json::Value;

const YETI: &str = "usb-Blue_Microphones_Yeti_Stereo_Microphone_REV8-00";
const YETI_NAME: &str = "usb_blue_microphones_yeti_stereo_microp_98fa24af";
const USBID: &str = "b58e:9e84";
const PORT_12: &str = "platform-xhci-hcd.0-usb-0:1.2:1.0";
const PORT_14: &str = "platform-xhci-hcd.0-usb-0:1.4:1.0";
const LIMIT: Duration = Duration::from_secs(20);

fn suffixed() -> String {
    format!("{YETI_NAME}_1_2")
}

fn streams(s: &Sup) -> Vec<Value> {
    s.status()
        .and_then(|v| v["streams"].as_array().cloned())
        .unwrap_or_default()
}

fn names(s: &Sup) -> Vec<String> {
    let mut n: Vec<String> = streams(s)
        .iter()
        .map(|v| v["name"].as_str().unwrap_or("").to_string())
        .collect();
    n.sort();
    n
}

fn running(s: &Sup, name: &str) -> bool {
    s.stream(name)
        .is_some_and(|v| v["state"] == "running" && v["pid"].as_i64().is_some())
}

fn field(s: &Sup, name: &str, f: &str) -> Value {
    s.stream(name).map(|v| v[f].clone()).unwrap_or(Value::Null)
}

fn port_of(s: &Sup, name: &str) -> Value {
    s.stream(name)
        .map(|v| v["device"]["by_path"].clone())
        .unwrap_or(Value::Null)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The names file as (port, name, suffix_from) rows, sorted.
fn names_file(s: &Sup) -> Vec<(String, String, Option<String>)> {
    let text = std::fs::read_to_string(s.names_file()).expect("names file written");
    let v: Value = serde_json::from_str(&text).expect("names file is JSON");
    assert_eq!(v["version"], 1, "{text}");
    let mut rows: Vec<_> = v["names"]
        .as_array()
        .expect("names array")
        .iter()
        .map(|e| {
            assert_eq!(e["by_id"], YETI, "{text}");
            (
                e["port"].as_str().unwrap_or("").to_string(),
                e["name"].as_str().unwrap_or("").to_string(),
                e["suffix_from"].as_str().map(str::to_string),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn expected_file() -> Vec<(String, String, Option<String>)> {
    vec![
        (
            PORT_12.into(),
            suffixed(),
            Some("USB port path".to_string()),
        ),
        (PORT_14.into(), YETI_NAME.into(), None),
    ]
}

/// One Yeti on port 1.4 streaming, then its twin plugged into the LOWER port 1.2.
/// Returns the harness and the first microphone's ffmpeg pid.
fn twin_in_lower_port() -> (Sup, i64) {
    let mut s = Sup::new();
    s.host
        .add_usb_card_with_usbid(1, "Microphones", Some(YETI), Some(PORT_14), USBID);
    s.set_mode("run");
    s.write_config();
    s.start_foreground();
    s.wait_for("the first yeti running", LIMIT, |s| running(s, YETI_NAME));
    let pid = field(&s, YETI_NAME, "pid").as_i64().unwrap();
    assert_eq!(names(&s), [YETI_NAME]);
    assert_eq!(names_file(&s), [(PORT_14.into(), YETI_NAME.into(), None)]);

    // The twin: no by-id link of its own (udev keeps one), same usbid, lower port.
    s.host
        .add_usb_card_with_usbid(2, "Microphones_1", None, Some(PORT_12), USBID);
    s.wait_for("the twin running", LIMIT, |s| running(s, &suffixed()));
    (s, pid)
}

#[test]
fn twin_in_a_lower_port_does_not_rename_the_running_mic() {
    let (mut s, pid) = twin_in_lower_port();
    // The first microphone kept its name, its URL and its very ffmpeg process.
    let first = s.stream(YETI_NAME).unwrap();
    assert_eq!(first["state"], "running", "{first}");
    assert_eq!(first["pid"].as_i64(), Some(pid), "{first}");
    assert_eq!(first["restarts"], 0, "{first}");
    assert_eq!(first["device"]["by_path"], PORT_14);
    assert_eq!(first["alsa_device"], "plughw:CARD=Microphones,DEV=0");
    assert!(alive(pid as i32));
    let twin = s.stream(&suffixed()).unwrap();
    assert_eq!(twin["device"]["by_path"], PORT_12);
    assert_eq!(twin["alsa_device"], "plughw:CARD=Microphones_1,DEV=0");
    assert_eq!(
        twin["notes"][0],
        format!("name suffixed from USB port path: duplicate of {YETI_NAME}")
    );
    assert_eq!(names(&s), [YETI_NAME.to_string(), suffixed()]);
    // Rescans and a reload (SIGHUP) that changes only the twin's settings (under its
    // suffixed name) restart only the twin; nobody is renamed.
    let twin_pid = field(&s, &suffixed(), "pid").as_i64().unwrap();
    let file = s.names_file();
    let mtime = || std::fs::metadata(&file).unwrap().modified().unwrap();
    let written = mtime();
    s.extra = format!("[devices.\"{}\"]\nchannels = 1\n", suffixed());
    s.write_config();
    common::sup::kill(s.supervisor_pid().unwrap(), libc::SIGHUP);
    s.wait_for("the twin restarted with its new settings", LIMIT, |s| {
        running(s, &suffixed()) && field(s, &suffixed(), "pid").as_i64() != Some(twin_pid)
    });
    assert_eq!(field(&s, YETI_NAME, "pid").as_i64(), Some(pid));
    assert_eq!(names(&s), [YETI_NAME.to_string(), suffixed()]);
    assert_eq!(names_file(&s), expected_file());
    // Written only when an assignment changes, not at every rescan (SD cards wear).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(mtime(), written, "names file rewritten without a change");

    // status and config show the mapping and say why the twin is suffixed.
    let st = s.status().unwrap();
    let devs = st["names"]["devices"].as_array().unwrap();
    assert_eq!(devs.len(), 2, "{st}");
    let twin_row = devs.iter().find(|d| d["port"] == PORT_12).unwrap();
    assert_eq!(twin_row["name"], suffixed().as_str());
    assert_eq!(twin_row["present"], true);
    assert_eq!(
        twin_row["suffixed"],
        format!("suffixed from USB port path: a twin holds {YETI_NAME}")
    );
    let plain_row = devs.iter().find(|d| d["port"] == PORT_14).unwrap();
    assert_eq!(plain_row["name"], YETI_NAME);
    assert_eq!(plain_row["suffixed"], Value::Null);
    let text = String::from_utf8_lossy(&s.run(&["status"]).stdout).into_owned();
    assert!(text.contains("Sticky names ("), "{text}");
    assert!(
        text.contains(&format!("a twin holds {YETI_NAME}")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{} <- {YETI} @ {PORT_12}\n    suffixed from USB port path",
            suffixed()
        )),
        "{text}"
    );
    assert!(text.contains(&format!("port {PORT_14}")), "{text}");

    let o = s.run(&["config", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let by_port = |p: &str| {
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["by_path"] == p)
            .map(|d| d["stream"].clone())
    };
    // config agrees with the running supervisor (fresh rules would swap these two).
    assert_eq!(by_port(PORT_14), Some(Value::from(YETI_NAME)));
    assert_eq!(by_port(PORT_12), Some(Value::from(suffixed())));
    assert_eq!(v["names"]["devices"].as_array().unwrap().len(), 2, "{v}");
    let o = s.run(&["config"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.contains(&format!("{} <- {YETI} @ {PORT_12}", suffixed())),
        "{text}"
    );
    assert!(text.contains(&format!("usb_port      {PORT_14}")), "{text}");
}

#[test]
fn unplug_both_then_replug_in_reverse_order_gives_each_its_own_name() {
    let (mut s, _) = twin_in_lower_port();
    // Unplug both (the twin first: the other holds the by-id link).
    s.host.remove_card(2);
    s.host.remove_card(1);
    s.wait_for("both waiting for their device", LIMIT, |s| {
        let st = streams(s);
        st.len() == 2 && st.iter().all(|v| v["state"] == "waiting-for-device")
    });
    // Replug in reverse order, with new card numbers: the 1.2 microphone first, alone
    // (it now holds the by-id link and card 1): it gets its old suffixed name back.
    s.host
        .add_usb_card_with_usbid(1, "Microphones", Some(YETI), Some(PORT_12), USBID);
    s.wait_for("the 1.2 mic back under its name", LIMIT, |s| {
        running(s, &suffixed())
    });
    assert_eq!(port_of(&s, &suffixed()), PORT_12);
    assert_eq!(
        field(&s, &suffixed(), "alsa_device"),
        "plughw:CARD=Microphones,DEV=0"
    );
    assert_eq!(field(&s, YETI_NAME, "state"), "waiting-for-device");
    // Then the 1.4 microphone: its old plain name.
    s.host
        .add_usb_card_with_usbid(2, "Microphones_1", None, Some(PORT_14), USBID);
    s.wait_for("the 1.4 mic back under its name", LIMIT, |s| {
        running(s, YETI_NAME)
    });
    assert_eq!(port_of(&s, YETI_NAME), PORT_14);
    assert_eq!(
        field(&s, YETI_NAME, "alsa_device"),
        "plughw:CARD=Microphones_1,DEV=0"
    );
    assert!(running(&s, &suffixed()));
    assert_eq!(names(&s), [YETI_NAME.to_string(), suffixed()]);
    assert_eq!(names_file(&s), expected_file());
}

#[test]
fn supervisor_restart_keeps_the_names_even_when_cards_are_renumbered() {
    let (mut s, _) = twin_in_lower_port();
    let o = s.run(&["stop"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    if let Some(mut c) = s.foreground.take() {
        let _ = c.wait();
    }
    // "Reboot": the kernel numbers the cards the other way round, and the lower port now
    // holds the by-id link. Fresh rules would give it the plain name.
    s.host.remove_card(2);
    s.host.remove_card(1);
    s.host
        .add_usb_card_with_usbid(1, "Microphones", Some(YETI), Some(PORT_12), USBID)
        .add_usb_card_with_usbid(2, "Microphones_1", None, Some(PORT_14), USBID);
    // With no supervisor, status already shows the names it will use.
    let o = s.run(&["status", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["supervisor"]["running"], false);
    let port_in_status = |name: &str| {
        v["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|st| st["name"] == name)
            .map(|st| st["device"]["by_path"].clone())
    };
    assert_eq!(port_in_status(YETI_NAME), Some(Value::from(PORT_14)), "{v}");
    assert_eq!(
        port_in_status(&suffixed()),
        Some(Value::from(PORT_12)),
        "{v}"
    );
    assert_eq!(v["names"]["devices"].as_array().unwrap().len(), 2, "{v}");
    s.start_foreground();
    s.wait_for("both running again", LIMIT, |s| {
        running(s, YETI_NAME) && running(s, &suffixed())
    });
    assert_eq!(port_of(&s, YETI_NAME), PORT_14);
    assert_eq!(port_of(&s, &suffixed()), PORT_12);
    assert_eq!(names(&s), [YETI_NAME.to_string(), suffixed()]);
    assert_eq!(names_file(&s), expected_file());
}

#[test]
fn corrupt_names_file_is_set_aside_with_a_warning_and_the_supervisor_starts() {
    let mut s = Sup::new();
    s.usb(1, "garden");
    s.set_mode("run");
    s.write_config();
    let file = s.names_file();
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "{\"version\": 1, \"names\": [tru").unwrap();

    // Readers warn, still answer, and never touch the file.
    for args in [&["config"][..], &["status"], &["config", "--json"]] {
        let o = s.run(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        let all = format!("{}{}", stderr(&o), String::from_utf8_lossy(&o.stdout));
        assert!(all.contains("unreadable names file"), "{args:?}: {all}");
    }
    assert!(file.exists());

    s.start_foreground();
    s.wait_for("garden running", LIMIT, |s| running(s, "garden"));
    let err = s.supervisor_stderr();
    assert!(
        err.contains("names file unreadable") && err.contains(".bad"),
        "{err}"
    );
    let bad = sticky_bad(&file);
    assert_eq!(
        std::fs::read_to_string(&bad).unwrap(),
        "{\"version\": 1, \"names\": [tru"
    );
    // A fresh, valid file with the new assignment replaces it.
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(v["names"][0]["name"], "garden", "{v}");
    assert_eq!(v["names"][0]["by_id"], "usb-Test_garden-00", "{v}");
}

fn sticky_bad(file: &std::path::Path) -> std::path::PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".bad");
    s.into()
}

#[test]
fn unwritable_names_file_is_a_warning_not_a_failure() {
    let mut s = Sup::new();
    s.usb(1, "garden");
    s.set_mode("run");
    // The parent "directory" is a regular file: it can never be created.
    let blocker = s.dir.path().join("blocker");
    std::fs::write(&blocker, "").unwrap();
    s.set(
        "paths",
        "names_file",
        &format!("{:?}", blocker.join("names.json").display().to_string()),
    );
    s.write_config();
    s.start_foreground();
    s.wait_for("garden running", LIMIT, |s| running(s, "garden"));
    let err = s.supervisor_stderr();
    assert!(err.contains("cannot write names file"), "{err}");
    assert_eq!(
        err.matches("cannot write names file").count(),
        1,
        "warned once: {err}"
    );
}

#[test]
fn multiplex_name_follows_spec_4() {
    let mut s = Sup::new();
    s.usb(1, "garden");
    s.write_config();
    let sixty = "Mix".repeat(20);
    let cut = {
        let full = sixty.to_lowercase();
        // 39 characters + `_` + the first 8 hex digits of the MD5 of the sanitised name.
        let out = std::process::Command::new("md5sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(full.as_bytes())?;
                c.wait_with_output()
            })
            .expect("md5sum");
        let hex = String::from_utf8_lossy(&out.stdout)[..8].to_string();
        format!("{}_{hex}", &full[..39])
    };
    for (given, want) in [
        ("api", "stream_api".to_string()),
        ("Health", "stream_health".to_string()),
        (sixty.as_str(), cut.clone()),
        ("Yard Mix", "yard_mix".to_string()),
    ] {
        let o = s.run(&["config", "--json", "-m", "multiplex", "-n", given]);
        assert_eq!(o.status.code(), Some(0), "{given}: {}", stderr(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["multiplex"]["stream"], want.as_str(), "{given}");
        assert_eq!(
            v["multiplex"]["url"],
            format!("rtsp://127.0.0.1:1/{want}"),
            "{given}"
        );
        // status without a supervisor lists the same stream.
        let o = s.run(&["status", "--json", "-m", "multiplex", "-n", given]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["streams"][0]["name"], want.as_str(), "{given}: {v}");
    }
    assert_eq!(cut.len(), 48);

    // The supervisor publishes under the SPEC name (env as the bash tool set it).
    s.env.push(("STREAM_MODE".into(), "multiplex".into()));
    s.env.push(("MULTIPLEX_STREAM_NAME".into(), "api".into()));
    s.set_mode("run");
    s.start_foreground();
    s.wait_for("stream_api running", LIMIT, |s| running(s, "stream_api"));
    assert_eq!(names(&s), ["stream_api"]);
    let pid = std::fs::read_to_string(s.state_dir().join("streams/stream_api.pid")).unwrap();
    assert_eq!(
        pid.trim(),
        field(&s, "stream_api", "pid").as_i64().unwrap().to_string()
    );
    assert!(field(&s, "stream_api", "url")
        .as_str()
        .unwrap()
        .ends_with("/stream_api"));
}

#[test]
fn explicit_names_win_and_a_new_explicit_name_starts_over() {
    let mut s = Sup::new();
    s.host
        .add_usb_card_with_usbid(1, "Microphones", Some(YETI), Some(PORT_14), USBID)
        .add_usb_card_with_usbid(2, "Microphones_1", None, Some(PORT_12), USBID)
        .add_usb_card(
            3,
            "MV7",
            Some("usb-MV7-00"),
            Some("platform-xhci-hcd.0-usb-0:1.3:1.0"),
        );
    // Remembered: the 1.4 Yeti holds the plain name, the 1.2 one the suffix; the MV7 its own.
    std::fs::create_dir_all(s.names_file().parent().unwrap()).unwrap();
    let entry = |port: &str, base: &str, name: &str, from: Option<&str>, by_id: &str| {
        serde_json::json!({"by_id": by_id, "port": port, "base": base, "name": name,
            "suffix_from": from, "assigned": 1})
    };
    let doc = serde_json::json!({"version": 1, "names": [
        entry(PORT_14, YETI_NAME, YETI_NAME, None, YETI),
        entry(PORT_12, YETI_NAME, &suffixed(), Some("USB port path"), YETI),
        entry("platform-xhci-hcd.0-usb-0:1.3:1.0", "usb_mv7_00", "usb_mv7_00", None, "usb-MV7-00"),
    ]});
    std::fs::write(s.names_file(), doc.to_string()).unwrap();
    let config = |s: &Sup| -> Vec<(String, String)> {
        let o = s.run(&["config", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let mut rows: Vec<(String, String)> = v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["by_path"].as_str().unwrap_or("").to_string(),
                    d["stream"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        rows.sort();
        rows
    };
    s.write_config();
    // Remembered names hold (fresh rules would give the 1.2 Yeti the plain name).
    assert_eq!(
        config(&s),
        [
            (PORT_12.to_string(), suffixed()),
            (
                "platform-xhci-hcd.0-usb-0:1.3:1.0".into(),
                "usb_mv7_00".into()
            ),
            (PORT_14.to_string(), YETI_NAME.to_string()),
        ]
    );
    // The MV7 is explicitly given the Yeti's name: explicit wins, the Yeti on 1.4 moves to
    // its port suffix. A new explicit name for the Yetis ("api": SPEC §4 applies) starts
    // their assignment over: lowest port plain.
    s.extra = format!(
        "[devices.usb_mv7_00]\nstream = \"{YETI_NAME}\"\n[devices.{YETI_NAME}]\nstream = \"api\"\n"
    );
    s.write_config();
    assert_eq!(
        config(&s),
        [
            (PORT_12.to_string(), "stream_api".into()),
            (
                "platform-xhci-hcd.0-usb-0:1.3:1.0".into(),
                YETI_NAME.to_string()
            ),
            (PORT_14.to_string(), "stream_api_1_4".into()),
        ]
    );
    s.extra = format!("[devices.usb_mv7_00]\nstream = \"{YETI_NAME}\"\n");
    s.write_config();
    assert_eq!(
        config(&s),
        [
            (PORT_12.to_string(), suffixed()),
            (
                "platform-xhci-hcd.0-usb-0:1.3:1.0".into(),
                YETI_NAME.to_string()
            ),
            (PORT_14.to_string(), format!("{YETI_NAME}_1_4")),
        ]
    );
    // config never writes the file.
    let now: Value =
        serde_json::from_str(&std::fs::read_to_string(s.names_file()).unwrap()).unwrap();
    assert_eq!(now, doc);
}

#[test]
fn link_holder_unplugged_the_other_twin_keeps_its_name_while_udev_has_no_link_for_it() {
    let (mut s, _) = twin_in_lower_port();
    let twin_pid = field(&s, &suffixed(), "pid").as_i64().unwrap();
    // The 1.4 mic holds the only by-id link; unplugging it leaves the twin with none until
    // udev re-points the link (here: not for a while).
    s.host.remove_card(1);
    s.wait_for("the 1.4 mic waiting for its device", LIMIT, |s| {
        field(s, YETI_NAME, "state") == "waiting-for-device"
    });
    std::thread::sleep(Duration::from_millis(500)); // several rescans without the link
    let twin = s.stream(&suffixed()).unwrap();
    assert_eq!(twin["state"], "running", "{twin}");
    assert_eq!(twin["pid"].as_i64(), Some(twin_pid), "{twin}");
    assert_eq!(twin["device"]["by_id"], YETI, "{twin}");
    assert_eq!(
        names(&s),
        [YETI_NAME.to_string(), suffixed()],
        "no new stream"
    );
    // udev re-points the link at the remaining twin: still nothing changes.
    std::os::unix::fs::symlink("../controlC2", s.host.dev_snd.join("by-id").join(YETI)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(field(&s, &suffixed(), "pid").as_i64(), Some(twin_pid));
    assert_eq!(names(&s), [YETI_NAME.to_string(), suffixed()]);
    assert_eq!(names_file(&s), expected_file());
}

/// Issue 15 through the binary: the `/proc/asound/cards` fallback name and its full
/// `DEVICE_USB_AUDIO_…` key, `stream_` for names that do not start with a letter (and the
/// friendly key that follows), ASCII-only lowercasing, a supervisor publishing under them.
#[test]
fn bash_naming_rules_fallback_prefix_and_ascii_only() {
    let mut s = Sup::new();
    // No by-id link at all (a container): bash read /proc/asound/cards.
    s.host.add_usb_card(1, "Microphones", None, None);
    s.host.add_usb_card(2, "Device_1", None, None);
    s.host.add_usb_card(3, "2Mic", None, None);
    s.write_config();
    std::fs::write(
        s.dir.path().join("audio-devices.conf"),
        "DEVICE_USB_AUDIO_MICROPHONES_SAMPLE_RATE=44100\n\
         DEVICE_DEVICE_1_CHANNELS=4\nDEVICE_DEVICE1_CHANNELS=1\n\
         DEVICE_USB_AUDIO_2MIC_BITRATE=64k\nDEVICE_STREAM_2MIC_CODEC=aac\n",
    )
    .unwrap();
    let o = s.run(&["config", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let got: Vec<(String, Value, Value)> = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["stream"].as_str().unwrap().to_string(),
                d["settings"]["sample_rate"].clone(),
                d["settings"]["channels"].clone(),
            )
        })
        .collect();
    assert_eq!(got[0].0, "microphones");
    assert_eq!(got[0].1["value"], 44100);
    assert_eq!(got[0].1["source"], "full");
    assert_eq!(got[1].0, "device1");
    assert_eq!(
        got[1].2["value"], 1,
        "the old device_1 key is not this device's"
    );
    assert_eq!(got[1].2["source"], "friendly");
    assert_eq!(got[2].0, "stream_2mic");
    let mic2 = &v["devices"][2]["settings"];
    assert_eq!(
        (&mic2["codec"]["value"], &mic2["codec"]["source"]),
        (&"aac".into(), &"friendly".into())
    );
    assert_eq!(
        (&mic2["bitrate"]["value"], &mic2["bitrate"]["source"]),
        (&"64k".into(), &"full".into())
    );

    // A by-id link appears for a digit-only model and one with a Kelvin sign.
    s.host.remove_card(3);
    s.host.add_usb_card(3, "Mic", Some("usb-audio-1234"), None);
    s.host
        .add_usb_card(4, "Mic_1", Some("usb-Kelvin_\u{212a}_Mic-00"), None);
    let o = s.run(&["config", "--json", "-m", "multiplex", "-n", "2 mix"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["stream"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["microphones", "device1", "stream_1234", "usb_kelvin_mic_00"]
    );
    assert_eq!(v["multiplex"]["stream"], "stream_2_mix");

    // The supervisor publishes under those names.
    s.set_mode("run");
    s.start_foreground();
    s.wait_for("stream_1234 running", LIMIT, |s| running(s, "stream_1234"));
    s.wait_for("usb_kelvin_mic_00 running", LIMIT, |s| {
        running(s, "usb_kelvin_mic_00")
    });
    assert!(field(&s, "stream_1234", "url")
        .as_str()
        .unwrap()
        .ends_with("/stream_1234"));
}
