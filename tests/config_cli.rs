//! Discovery on fake hosts and the `config` command end to end, through the built binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::fake_host::FakeHost;
use mediamtx_stream_manager::config::Settings;
use mediamtx_stream_manager::devices::discover;
use mediamtx_stream_manager::streams::plan;

const YETI: &str = "usb-Blue_Microphones_Yeti_Stereo_Microphone_REV8-00";
const YETI_NAME: &str = "usb_blue_microphones_yeti_stereo_microp_98fa24af";
const PORT_13: &str = "platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.3:1.0";
const PORT_14: &str = "platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.4:1.0";

/// A temp dir with a fake host and a manager TOML pointing at it.
struct Env {
    dir: tempfile::TempDir,
    host: FakeHost,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let host = FakeHost::new(dir.path());
        Env { dir, host }
    }

    fn device_config(&self) -> PathBuf {
        self.dir.path().join("etc/audio-devices.conf")
    }

    /// Write the manager TOML (paths first, then `extra`) and return its path.
    fn toml(&self, extra: &str) -> PathBuf {
        let p = self.dir.path().join("manager.toml");
        let text = format!(
            "[paths]\n{}device_config = {:?}\nstate_dir = {:?}\nlog_dir = {:?}\n{extra}",
            self.host.toml_paths(),
            self.device_config().display().to_string(),
            self.dir.path().join("state").display().to_string(),
            self.dir.path().join("log").display().to_string(),
        );
        std::fs::write(&p, text).unwrap();
        p
    }

    fn legacy(&self, text: &str) {
        let p = self.device_config();
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// Run the binary with a clean environment (no inherited STREAM_MODE etc.).
fn run(args: &[&str]) -> Output {
    let mut c = common::clean_bin();
    c.args(args).output().expect("run binary")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", stdout(o), stderr(o)))
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

// ---------- discovery on fake trees ----------

#[test]
fn discovery_usb_only_with_capture() {
    let mut e = Env::new();
    e.host
        .add_onboard_card(0, "Headphones")
        .add_usb_card(1, "Microphones", Some(YETI), Some(PORT_13))
        .add_usb_card(2, "MV7", Some("usb-Shure_MV7-00"), None)
        .add_usb_card(3, "blue-yeti", Some("usb-Other-00"), None)
        .remove_capture(2);
    // An onboard card with a by-id-looking link is still not USB.
    std::os::unix::fs::symlink("../controlC0", e.host.dev_snd.join("by-id/usb-fake-00")).unwrap();
    let found = discover(&e.host.proc_asound, &e.host.dev_snd);
    let cards: Vec<(u32, &str)> = found.iter().map(|d| (d.card, d.card_id.as_str())).collect();
    assert_eq!(cards, [(1, "Microphones"), (3, "blue-yeti")]);
    assert_eq!(found[0].by_id.as_deref(), Some(YETI));
    assert_eq!(found[0].by_path.as_deref(), Some(PORT_13));
    assert_eq!(found[0].usbid.as_deref(), Some("1d6b:0001"));
    assert_eq!(found[1].by_path, None);

    e.host.remove_card(1);
    let found = discover(&e.host.proc_asound, &e.host.dev_snd);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].card, 3);
}

#[test]
fn discovery_skips_event_links_and_bad_targets() {
    let mut e = Env::new();
    e.host
        .add_usb_card(1, "Microphones", Some("usb-B-00"), None);
    let by_id = e.host.dev_snd.join("by-id");
    // Sorted before the real link: would win if not skipped.
    std::os::unix::fs::symlink("../controlC1", by_id.join("usb-A-event-if00")).unwrap();
    std::os::unix::fs::symlink("../pcmC1D0c", by_id.join("usb-A-00")).unwrap();
    std::os::unix::fs::symlink("../controlC9", by_id.join("usb-Gone-00")).unwrap();
    std::fs::write(by_id.join("usb-A-01"), "not a link").unwrap();
    let found = discover(&e.host.proc_asound, &e.host.dev_snd);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].by_id.as_deref(), Some("usb-B-00"));
}

#[test]
fn discovery_missing_roots_is_empty_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    assert!(discover(&dir.path().join("nope"), &dir.path().join("nope2")).is_empty());
}

#[test]
fn discovery_cards_file_fallback_and_identical_devices() {
    let mut e = Env::new();
    // Identical microphones: udev keeps one by-id link, the kernel renames the second id.
    e.host
        .add_usb_card(1, "Microphones", Some(YETI), Some(PORT_14))
        .add_usb_card(2, "Microphones_1", None, Some(PORT_13))
        .add_usb_card(3, "Device", None, None)
        .set_usbid(1, "b58e:9e84")
        .set_usbid(2, "b58e:9e84");
    let found = discover(&e.host.proc_asound, &e.host.dev_snd);
    assert_eq!(found.len(), 3);
    assert_eq!(found[1].by_id.as_deref(), Some(YETI), "shared by-id name");
    assert_eq!(found[2].by_id, None, "different usbid: no sharing");

    let p = plan(&Settings::default(), None, &found).unwrap();
    let names: Vec<&str> = p.streams.iter().map(|s| s.name.as_str()).collect();
    // The lower port path (1.3, card 2) keeps the plain name.
    assert_eq!(
        names,
        [format!("{YETI_NAME}_1_4").as_str(), YETI_NAME, "device"]
    );
    assert_eq!(p.streams[0].alsa_device, "plughw:CARD=Microphones,DEV=0");
    assert_eq!(p.streams[1].alsa_device, "plughw:CARD=Microphones_1,DEV=0");
}

// ---------- the `config` command ----------

#[test]
fn config_json_shape_and_provenance() {
    let mut e = Env::new();
    e.host
        .add_onboard_card(0, "Headphones")
        .add_usb_card(1, "Microphones", Some(YETI), Some(PORT_13))
        .add_usb_card(2, "MV7", Some("usb-MV7-00"), None);
    e.legacy(
        "# generated by mic-check\nDEFAULT_CODEC=aac\nDEVICE_USB_MV7_00_CHANNELS=1\nDEVICE_USB_BLUE_MICROPHONES_YETI_STEREO_MICROPHONE_REV8_00_BITRATE=96k\nBOGUS=1\n",
    );
    let toml = e.toml(
        "[mediamtx]\nrtsp_url = \"rtsp://127.0.0.1:8554\"\nusername = \"pub\"\npassword = \"s3cret\"\n\
         [defaults]\nsample_rate = 44100\n[devices.usb_mv7_00]\nthread_queue = 512\n",
    );
    let o = run(&["-c", p(&toml), "config", "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!stdout(&o).contains("s3cret") && !stderr(&o).contains("s3cret"));
    assert!(
        stderr(&o).contains(&format!(
            "warning: {}:5: unknown key BOGUS (ignored)",
            e.device_config().display()
        )),
        "{}",
        stderr(&o)
    );
    let v = json(&o);
    assert_eq!(v["device_config"]["found"], true);
    assert_eq!(v["device_config"]["path"], p(&e.device_config()));
    // Besides BOGUS, the publish password on ffmpeg's command line is warned about unless
    // /proc hides other users' processes (issue 18).
    let hidepid = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains("hidepid=");
    let warnings = v["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), if hidepid { 1 } else { 2 }, "{warnings:?}");
    if !hidepid {
        assert!(
            warnings
                .iter()
                .any(|w| w.as_str().unwrap().contains("/proc/<pid>/cmdline")),
            "{warnings:?}"
        );
    }
    assert_eq!(v["settings"]["mediamtx"]["password"], "***");
    assert_eq!(v["settings"]["backoff"]["initial"], "10s");
    let devs = v["devices"].as_array().unwrap();
    assert_eq!(devs.len(), 2);
    let yeti = &devs[0];
    assert_eq!(yeti["stream"], YETI_NAME);
    assert_eq!(yeti["by_id"], YETI);
    assert_eq!(yeti["card"], 1);
    assert_eq!(yeti["card_id"], "Microphones");
    assert_eq!(yeti["alsa_device"], "plughw:CARD=Microphones,DEV=0");
    assert_eq!(
        yeti["url"],
        format!("rtsp://***@127.0.0.1:8554/{YETI_NAME}")
    );
    assert_eq!(yeti["enabled"], true);
    assert!(yeti["notes"].as_array().unwrap().is_empty());
    let s = &yeti["settings"];
    let src = |d: &serde_json::Value, k: &str| (d[k]["value"].clone(), d[k]["source"].clone());
    assert_eq!(src(s, "bitrate"), ("96k".into(), "full".into()));
    assert_eq!(src(s, "codec"), ("aac".into(), "file-default".into()));
    assert_eq!(src(s, "sample_rate"), (44100.into(), "toml-default".into()));
    assert_eq!(src(s, "channels"), (2.into(), "built-in".into()));
    let mv7 = &devs[1]["settings"];
    assert_eq!(src(mv7, "channels"), (1.into(), "friendly".into()));
    assert_eq!(src(mv7, "thread_queue"), (512.into(), "toml-device".into()));
    assert_eq!(devs[1]["by_id"], "usb-MV7-00");
}

#[test]
fn config_text_lists_sources_and_hides_credentials() {
    let mut e = Env::new();
    e.host.add_usb_card(1, "garden", None, None);
    let toml = e.toml("[mediamtx]\nrtsp_url = \"rtsp://u:topsecret@127.0.0.1:8554\"\n");
    let o = run(&["config", "-c", p(&toml)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(!out.contains("topsecret"), "{out}");
    assert!(out.contains("rtsp://***@127.0.0.1:8554/garden"), "{out}");
    assert!(out.contains("(not found, using defaults)"), "{out}");
    assert!(out.contains("sample_rate   48000      (built-in)"), "{out}");
    assert!(out.contains("plughw:CARD=garden,DEV=0"), "{out}");
}

#[test]
fn duplicate_devices_both_listed_with_note() {
    let mut e = Env::new();
    e.host
        .add_usb_card(1, "Microphones", Some(YETI), Some(PORT_13))
        .add_usb_card(2, "Microphones_1", None, Some(PORT_14))
        .set_usbid(1, "b58e:9e84")
        .set_usbid(2, "b58e:9e84");
    let toml = e.toml("");
    let o = run(&["config", "--json", "-c", p(&toml)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    let devs = v["devices"].as_array().unwrap();
    assert_eq!(devs[0]["stream"], YETI_NAME);
    assert_eq!(devs[1]["stream"], format!("{YETI_NAME}_1_4"));
    assert_eq!(
        devs[1]["notes"][0],
        format!("name suffixed from USB port path: duplicate of {YETI_NAME}")
    );
}

#[test]
fn bad_device_file_is_exit_4_with_file_line_key() {
    let mut e = Env::new();
    e.host.add_usb_card(1, "mic", None, None);
    let toml = e.toml("");
    for (text, want) in [
        (
            "DEFAULT_CODEC=opus\nDEVICE_MIC_SAMPLE_RATE=$(reboot)\n",
            ":2: DEVICE_MIC_SAMPLE_RATE: command substitution",
        ),
        (
            "\n\n\nDEVICE_MIC_CHANNELS=64\n",
            ":4: DEVICE_MIC_CHANNELS: invalid channels \"64\"",
        ),
        (
            "DEFAULT_CODEC=opus; reboot\n",
            ":1: DEFAULT_CODEC: ';' is not allowed",
        ),
        ("rm -rf /\n", ":1: not a KEY=value assignment"),
    ] {
        e.legacy(text);
        for args in [
            &["config"][..],
            &["config", "--check"],
            &["config", "--json"],
        ] {
            let mut a = vec!["-c", p(&toml)];
            a.extend_from_slice(args);
            let o = run(&a);
            assert_eq!(code(&o), 4, "{text:?} {args:?}: {}", stderr(&o));
            let err = stderr(&o);
            let path = e.device_config().display().to_string();
            assert!(err.contains(&format!("{path}{want}")), "{text:?}: {err}");
            assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
            assert!(stdout(&o).is_empty(), "nothing on stdout: {}", stdout(&o));
        }
    }
}

#[test]
fn bad_toml_is_exit_4_naming_the_key() {
    let e = Env::new();
    let toml = e.toml("[defaults]\nchannels = 99\n");
    let o = run(&["config", "--check", "-c", p(&toml)]);
    assert_eq!(code(&o), 4);
    assert!(
        stderr(&o).contains("defaults.channels = 99"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn check_prints_config_ok_and_warnings() {
    let mut e = Env::new();
    e.host.add_usb_card(1, "mic", None, None);
    e.legacy("\u{feff}export DEVICE_MIC_CODEC='mp3'\r\nFOO=bar\r\n");
    let toml = e.toml("[typo]\n");
    let o = run(&["config", "--check", "-c", p(&toml)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "config OK\n");
    let err = stderr(&o);
    assert!(
        err.contains("warning: ") && err.contains("unknown key typo"),
        "{err}"
    );
    assert!(err.contains("conf:2: unknown key FOO (ignored)"), "{err}");
}

#[test]
fn init_writes_once_and_never_overwrites() {
    let mut e = Env::new();
    e.host
        .add_usb_card(1, "Microphones", Some("usb-MV7-00"), None);
    let toml = e.toml("");
    let o = run(&["config", "--init", "-c", p(&toml)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let written = std::fs::read_to_string(e.device_config()).unwrap();
    assert!(
        written.contains("#DEVICE_USB_MV7_00_SAMPLE_RATE=48000"),
        "{written}"
    );
    // The template itself is a valid device file.
    let o = run(&["config", "--check", "-c", p(&toml)]);
    assert_eq!(
        (code(&o), stdout(&o).as_str()),
        (0, "config OK\n"),
        "{}",
        stderr(&o)
    );

    std::fs::write(e.device_config(), "DEFAULT_CODEC=aac\n").unwrap();
    let o = run(&["config", "--init", "-c", p(&toml)]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(e.device_config()).unwrap(),
        "DEFAULT_CODEC=aac\n"
    );
}

#[test]
fn missing_explicit_config_is_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let o = run(&["config", "-c", p(&missing)]);
    assert_eq!(code(&o), 4);
    assert!(stderr(&o).contains("nope.toml"), "{}", stderr(&o));
}

#[test]
fn bad_arguments_are_exit_1() {
    for args in [
        &["config", "--bogus"][..],
        &["config", "--mode", "stereo"],
        &["frobnicate"],
        &["config", "--check", "extra"],
    ] {
        let o = run(args);
        assert_eq!(code(&o), 1, "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn global_options_after_the_command() {
    let mut e = Env::new();
    e.host
        .add_usb_card(1, "mic_a", None, None)
        .add_usb_card(2, "mic_b", None, None);
    let toml = e.toml("[devices.mix]\ncodec = \"aac\"\n");
    let o = run(&[
        "config",
        "--json",
        "-c",
        p(&toml),
        "-m",
        "multiplex",
        "-n",
        "Mix",
        "-f",
        "amerge",
        "-q",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["settings"]["mode"], "multiplex");
    assert_eq!(v["settings"]["multiplex"]["filter"], "amerge");
    assert_eq!(v["multiplex"]["stream"], "mix");
    assert_eq!(
        v["multiplex"]["inputs"],
        serde_json::json!(["mic_a", "mic_b"])
    );
    assert_eq!(v["multiplex"]["settings"]["codec"]["source"], "toml-device");
    assert_eq!(v["multiplex"]["url"], "rtsp://127.0.0.1:8554/mix");
}
