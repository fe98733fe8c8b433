//! Every broken manager TOML gives exit 4 and exactly one short stderr line naming
//! FILE:LINE:COL, the key and (clipped) value, through the built binary (issue 8 item 11).

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn run_check(file: &Path) -> Output {
    let mut c = common::clean_bin();
    c.args(["config", "--check", "-c"])
        .arg(file)
        .output()
        .expect("run binary")
}

/// (name, file bytes, line:col the error must name, key it must name, text it must contain)
type Case = (
    &'static str,
    Vec<u8>,
    &'static str,
    &'static str,
    &'static str,
);

fn cases() -> Vec<Case> {
    let b = |s: &str| s.as_bytes().to_vec();
    let huge = format!("[backoff]\ninitial = \"{}\"\n", "x".repeat(1 << 20));
    let huge_name = format!("[devices.\"{}\"]\nchannels = 99\n", "n".repeat(1 << 20));
    let mut latin1 = b("[paths]\n# comment\nstate_dir = \"/run/caf");
    latin1.extend_from_slice(&[0xe9, b'"', b'\n']);
    vec![
        (
            "duration without unit",
            b("[backoff]\ninitial = \"200\"\n"),
            "2:11",
            "backoff.initial",
            "= \"200\"",
        ),
        (
            "duration bad unit",
            b("\n[health]\nstall_timeout = \"5 parsecs\"\n"),
            "3:17",
            "health.stall_timeout",
            "unit",
        ),
        (
            "duration as integer",
            b("[stop]\ngrace = 5\n"),
            "2:9",
            "stop.grace",
            "duration",
        ),
        (
            "mode as integer",
            b("mode = 1\n"),
            "1:8",
            "mode",
            "individual or multiplex",
        ),
        (
            "mode unknown",
            b("mode = \"stereo\"\n"),
            "1:8",
            "mode",
            "\"stereo\"",
        ),
        (
            "filter unknown",
            b("[multiplex]\nfilter = \"sum\"\n"),
            "2:10",
            "multiplex.filter",
            "amix or amerge",
        ),
        (
            "bool as string",
            b("[mediamtx]\napi = \"yes\"\n"),
            "2:7",
            "mediamtx.api",
            "true or false",
        ),
        (
            "integer as string",
            b("[backoff]\nmax_failures = \"3\"\n"),
            "2:16",
            "backoff.max_failures",
            "integer",
        ),
        (
            "integer out of range",
            b("[logs]\nkeep = 0\n"),
            "2:8",
            "logs.keep",
            "1-100",
        ),
        (
            "float as string",
            b("[monitor]\ncpu_warn = \"high\"\n"),
            "2:12",
            "monitor.cpu_warn",
            "number",
        ),
        (
            "path as integer",
            b("[paths]\nlog_dir = 7\n"),
            "2:11",
            "paths.log_dir",
            "string",
        ),
        (
            "empty path",
            b("[paths]\nffmpeg = \"\"\n"),
            "2:10",
            "paths.ffmpeg",
            "non-empty",
        ),
        (
            "size bad unit",
            b("[logs]\nmax_size = \"10X\"\n"),
            "2:12",
            "logs.max_size",
            "size",
        ),
        (
            "section not a table",
            b("backoff = \"fast\"\n"),
            "1:11",
            "backoff",
            "table",
        ),
        (
            "list of names wrong",
            b("[multiplex]\ndevices = [\"a\", 2]\n"),
            "2:11",
            "multiplex.devices",
            "list",
        ),
        (
            "url scheme",
            b("[mediamtx]\napi_url = \"ftp://u:pw@h\"\n"),
            "2:11",
            "mediamtx.api_url",
            "http://",
        ),
        (
            "listen address",
            b("[metrics]\nlisten = \"everywhere\"\n"),
            "2:10",
            "metrics.listen",
            "host:port",
        ),
        (
            "bad codec default",
            b("[defaults]\ncodec = \"flac\"\n"),
            "2:9",
            "defaults.codec",
            "flac",
        ),
        (
            "device param range",
            b("[devices.garden]\nsample_rate = 7\n"),
            "2:15",
            "devices.\"garden\".sample_rate",
            "8000-384000",
        ),
        (
            "device bool",
            b("[devices.garden]\nenabled = 0\n"),
            "2:11",
            "devices.\"garden\".enabled",
            "true or false",
        ),
        (
            "devices as array of tables",
            b("[[devices]]\nx = 1\n"),
            "1:1",
            "devices",
            "expected a table",
        ),
        (
            "integer beyond 64 bits",
            b("[backoff]\nmax_failures = 99999999999999999999\n"),
            "2:16",
            "backoff.max_failures",
            "1-1000000",
        ),
        (
            "dotted key under a duration",
            b("[backoff]\ninitial.x = \"1s\"\n"),
            "2:1",
            "backoff.initial",
            "duration",
        ),
        (
            "device not a table",
            b("[devices]\ngarden = 5\n"),
            "2:10",
            "devices.\"garden\"",
            "table",
        ),
        (
            "device stream name",
            b("[devices.garden]\nstream = \"***\"\n"),
            "2:10",
            "devices.\"garden\".stream",
            "usable",
        ),
        (
            "device record",
            b("[devices.garden]\nrecord = \"on\"\n"),
            "2:10",
            "devices.\"garden\".record",
            "true or false",
        ),
        (
            "recording enabled",
            b("[recording]\nenabled = 1\n"),
            "2:11",
            "recording.enabled",
            "true or false",
        ),
        (
            "recording segment",
            b("[recording]\nsegment = \"10\"\n"),
            "2:11",
            "recording.segment",
            "unit",
        ),
        (
            "recording segment zero",
            b("[recording]\nsegment = \"0s\"\n"),
            "2:11",
            "recording.segment",
            "1s",
        ),
        (
            "recording format",
            b("[recording]\nformat = \"../x\"\n"),
            "2:10",
            "recording.format",
            "one of ogg",
        ),
        (
            "recording max_files",
            b("[recording]\nmax_files = -1\n"),
            "2:13",
            "recording.max_files",
            "integer",
        ),
        (
            "recording max_bytes",
            b("[recording]\nmax_bytes = \"lots\"\n"),
            "2:13",
            "recording.max_bytes",
            "size",
        ),
        (
            "recording dir",
            b("[recording]\ndir = false\n"),
            "2:7",
            "recording.dir",
            "string",
        ),
        (
            "health levels",
            b("[health]\nlevels = \"yes\"\n"),
            "2:10",
            "health.levels",
            "true or false",
        ),
        (
            "discovery watch",
            b("[discovery]\nwatch = 1\n"),
            "2:9",
            "discovery.watch",
            "true or false",
        ),
        (
            "names_file",
            b("[paths]\nnames_file = []\n"),
            "2:14",
            "paths.names_file",
            "string",
        ),
        (
            "multi-line string",
            b("[backoff]\ninitial = \"\"\"\nten\nseconds\"\"\"\n"),
            "2:11",
            "backoff.initial",
            "= \"\"\"…",
        ),
        (
            "1 MB value",
            huge.into_bytes(),
            "2:11",
            "backoff.initial",
            "xxxxxxxxxx…",
        ),
        (
            "1 MB device name",
            huge_name.into_bytes(),
            "2:12",
            "devices.\"nnnnnnnn",
            "1-32",
        ),
        (
            "duplicate key",
            b("[backoff]\ninitial = \"1s\"\ninitial = \"2s\"\n"),
            "3:1",
            "backoff.initial",
            "duplicate",
        ),
        (
            "duplicate table",
            b("[stop]\ngrace = \"1s\"\n[stop]\n"),
            "3:",
            "stop",
            "invalid TOML",
        ),
        (
            "syntax: unclosed header",
            b("[logs]\nkeep = 3\n[paths\n"),
            "3:7",
            "paths",
            "invalid TOML",
        ),
        (
            "syntax: unterminated string",
            b("[backoff]\ninitial = \"10s\n"),
            "2:",
            "backoff.initial",
            "invalid TOML",
        ),
        (
            "syntax: bare word",
            b("[backoff]\nmax = 5m\n"),
            "2:",
            "backoff.max",
            "invalid TOML",
        ),
        ("non-UTF-8", latin1, "3:22", "paths.state_dir", "UTF-8"),
    ]
}

#[test]
fn every_broken_toml_is_one_short_line_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, (name, bytes, at, key, want)) in cases().into_iter().enumerate() {
        let file = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&file, &bytes).unwrap();
        let o = run_check(&file);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let lines: Vec<&str> = err.lines().collect();
        let one = lines.first().copied().unwrap_or("");
        let place = format!("{}:{at}", file.display());
        let ok = o.status.code() == Some(4)
            && lines.len() == 1
            && one.contains(&place)
            && one.contains(key)
            && one.contains(want)
            && one.chars().count() <= 200
            && o.stdout.is_empty();
        if !ok {
            let shown: String = err.chars().take(300).collect();
            failures.push(format!(
                "{name}: exit {:?}, {} lines, {} chars, want {place:?} {key:?} {want:?}: {shown}",
                o.status.code(),
                lines.len(),
                err.chars().count()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Unknown keys stay warnings, each naming file:line and the dotted key, and the check passes.
#[test]
fn unknown_keys_warn_with_file_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.toml");
    std::fs::write(
        &file,
        "colour = 1\n[recording]\nenabld = true\n[devices.garden]\nrecrod = true\n[typo]\n",
    )
    .unwrap();
    let o = run_check(&file);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(0), "{err}");
    let f = file.display();
    let want = [
        format!("warning: {f}:1: unknown key colour (ignored)"),
        format!("warning: {f}:3: unknown key recording.enabld (ignored)"),
        format!("warning: {f}:5: unknown key devices.\"garden\".recrod (ignored)"),
        format!("warning: {f}:6: unknown key typo (ignored)"),
    ];
    assert_eq!(err.lines().collect::<Vec<_>>(), want, "{err}");
}

/// Precedence is unchanged: command line > environment > TOML > built-in.
#[test]
fn precedence_cli_over_env_over_toml() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.toml");
    std::fs::write(
        &file,
        format!(
            "mode = \"multiplex\"\n[multiplex]\nfilter = \"amerge\"\nname = \"toml\"\n[paths]\nproc_asound = {:?}\ndev_snd = {:?}\n",
            dir.path().join("asound").display().to_string(),
            dir.path().join("snd").display().to_string()
        ),
    )
    .unwrap();
    let get = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = Command::new(common::bin());
        for v in [
            "STREAM_MODE",
            "MULTIPLEX_FILTER_TYPE",
            "MULTIPLEX_STREAM_NAME",
            "MEDIAMTX_HOST",
        ] {
            c.env_remove(v);
        }
        c.envs(env.iter().copied());
        c.args(["config", "--json", "-c"]).arg(&file).args(args);
        let o = c.output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let s = &v["settings"];
        (
            s["mode"].as_str().unwrap().to_string(),
            s["multiplex"]["filter"].as_str().unwrap().to_string(),
            s["multiplex"]["name"].as_str().unwrap().to_string(),
        )
    };
    let t = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(get(&[], &[]), t("multiplex", "amerge", "toml"));
    let env = [
        ("STREAM_MODE", "individual"),
        ("MULTIPLEX_FILTER_TYPE", "amix"),
        ("MULTIPLEX_STREAM_NAME", "env"),
    ];
    assert_eq!(get(&env, &[]), t("individual", "amix", "env"));
    assert_eq!(
        get(&env, &["-m", "multiplex", "-f", "amerge", "-n", "cli"]),
        t("multiplex", "amerge", "cli")
    );
}

/// The agreed new settings: defaults, values from the file, shown by `config --json`.
#[test]
fn new_settings_defaults_and_values_in_config_json() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.toml");
    let json = |text: &str| {
        std::fs::write(&file, text).unwrap();
        let o = Command::new(common::bin())
            .args(["config", "--json", "-c"])
            .arg(&file)
            .env_remove("STREAM_MODE")
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["settings"].clone()
    };
    let d = json("");
    assert_eq!(
        d["paths"]["names_file"],
        "/var/lib/mediamtx-stream-manager/names.json"
    );
    assert_eq!(d["health"]["levels"], true);
    assert_eq!(d["discovery"]["watch"], true);
    assert_eq!(
        d["recording"],
        serde_json::json!({
            "enabled": false,
            "dir": "/var/lib/mediamtx-stream-manager/recordings",
            "segment": "5m",
            "format": null,
            "max_files": null,
            "max_bytes": null,
            "min_free": "5%",
        })
    );
    let v = json(
        "[paths]\nnames_file = \"/tmp/n.json\"\n[health]\nlevels = false\n[discovery]\nwatch = false\n\
         [recording]\nenabled = true\ndir = \"/srv/rec\"\nsegment = \"90s\"\nformat = \"ogg\"\nmax_files = 12\nmax_bytes = \"500M\"\nmin_free = \"100M\"\n\
         [devices.garden]\nrecord = false\n",
    );
    assert_eq!(v["paths"]["names_file"], "/tmp/n.json");
    assert_eq!(v["health"]["levels"], false);
    assert_eq!(v["discovery"]["watch"], false);
    assert_eq!(
        v["recording"],
        serde_json::json!({
            "enabled": true,
            "dir": "/srv/rec",
            "segment": "90s",
            "format": "ogg",
            "max_files": 12,
            "max_bytes": 500u64 << 20,
            "min_free": "100M",
        })
    );
    assert_eq!(v["devices"]["garden"]["record"], false);
}

/// A multiplex name from the command line with nothing usable: exit 4, one line, clipped.
#[test]
fn bad_cli_name_is_exit_4_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.toml");
    std::fs::write(&file, "").unwrap();
    let name = "!".repeat(10_000);
    let o = Command::new(common::bin())
        .args(["config", "--check", "-c"])
        .arg(&file)
        .args(["-n", &name])
        .env_remove("MULTIPLEX_STREAM_NAME")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("MULTIPLEX_STREAM_NAME") && err.chars().count() < 200,
        "{err}"
    );
}

/// Every legacy `audio-devices.conf` error is one short line, however long the key or value
/// (issue 15): a megabyte in each key kind gives exit 4, one line naming file:line, the key
/// cut to 80 characters + `…`, the value cut to 80 characters + `…`. An unknown megabyte key
/// stays a one-line warning.
#[test]
fn legacy_megalines_are_one_short_line_for_every_key_kind() {
    const MB: usize = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("audio-devices.conf");
    let toml = dir.path().join("m.toml");
    std::fs::create_dir_all(dir.path().join("proc/asound")).unwrap();
    std::fs::create_dir_all(dir.path().join("dev/snd")).unwrap();
    std::fs::write(
        &toml,
        format!(
            "[paths]\ndevice_config = {:?}\nproc_asound = {:?}\ndev_snd = {:?}\nstate_dir = {:?}\n",
            conf.display().to_string(),
            dir.path().join("proc/asound").display().to_string(),
            dir.path().join("dev/snd").display().to_string(),
            dir.path().join("state").display().to_string(),
        ),
    )
    .unwrap();
    let digits = "4".repeat(MB);
    let letters = "x".repeat(MB);
    let dashes = "-".repeat(MB);
    let key = format!("DEVICE_{}", "K".repeat(MB));
    // (case, line 2 of the file, the key as the error shows it, the value as it shows it)
    let cut_key = |k: &str| format!("{}…", &k[..80]);
    let cases: Vec<(String, String, String, String)> = [
        ("SAMPLE_RATE", &digits),
        ("CHANNELS", &digits),
        ("BITRATE", &letters),
        ("CODEC", &letters),
        ("THREAD_QUEUE", &digits),
        ("ENABLED", &letters),
        ("STREAM_NAME", &dashes),
    ]
    .iter()
    .flat_map(|(param, value)| {
        let shown = format!("\"{}\"…", &value[..80]);
        let mut v = vec![(
            format!("DEVICE_X_{param}"),
            format!("DEVICE_X_{param}={value}"),
            format!("DEVICE_X_{param}"),
            shown.clone(),
        )];
        if *param != "STREAM_NAME" {
            v.push((
                format!("DEFAULT_{param}"),
                format!("DEFAULT_{param}='{value}'"),
                format!("DEFAULT_{param}"),
                shown.clone(),
            ));
        }
        // A megabyte key with a megabyte value.
        let k = format!("{key}_{param}");
        v.push((
            format!("huge key {param}"),
            format!("{k}={value}"),
            cut_key(&k),
            shown,
        ));
        v
    })
    .chain([
        (
            "ALSA_DEVICE".to_string(),
            format!("DEVICE_X_ALSA_DEVICE=\"{}\u{1}\"", "a".repeat(MB)),
            "DEVICE_X_ALSA_DEVICE".to_string(),
            format!("\"{}\"…", "a".repeat(80)),
        ),
        (
            "text after the value".to_string(),
            format!("DEFAULT_CODEC=opus {letters}"),
            "DEFAULT_CODEC".to_string(),
            format!("\"{}\"…", "x".repeat(80)),
        ),
        (
            "not an assignment".to_string(),
            letters.clone(),
            String::new(),
            format!("\"{}\"…", "x".repeat(80)),
        ),
        (
            "operator".to_string(),
            format!("{key}_CODEC=opus;{letters}"),
            cut_key(&format!("{key}_CODEC")),
            "';' is not allowed".to_string(),
        ),
    ])
    .collect();
    let mut failures = Vec::new();
    for (name, line, shown_key, shown_value) in &cases {
        std::fs::write(&conf, format!("# ok\n{line}\nDEFAULT_CODEC=aac\n")).unwrap();
        for args in [&["config", "--check"][..], &["config", "--json"]] {
            let o = std::process::Command::new(common::bin())
                .args(args)
                .arg("-c")
                .arg(&toml)
                .env_remove("RUST_LOG")
                .output()
                .expect("run binary");
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            let place = format!("{}:2: ", conf.display());
            let ok = o.status.code() == Some(4)
                && err.lines().count() == 1
                && err.contains(&format!("{place}{shown_key}"))
                && err.contains(shown_value.as_str())
                && err.len() < 400
                && o.stdout.is_empty();
            if !ok {
                let shown: String = err.chars().take(400).collect();
                failures.push(format!(
                    "{name} ({args:?}): exit {:?}, {} bytes: {shown}",
                    o.status.code(),
                    err.len()
                ));
            }
        }
    }
    // An unknown megabyte key: a warning of one short line, and the check passes.
    std::fs::write(&conf, format!("{key}_VOLUME=3\n")).unwrap();
    let o = run_check(&toml);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if !(o.status.code() == Some(0) && err.lines().count() == 1 && err.len() < 400) {
        failures.push(format!(
            "unknown key: exit {:?}, {} bytes: {}",
            o.status.code(),
            err.len(),
            err.chars().take(400).collect::<String>()
        ));
    }
    assert!(
        err.contains(&format!("unknown key {}… (ignored)", &key[..80])),
        "{err}"
    );
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
