use super::*;
use crate::cli::{Filter, Mode};

#[test]
fn quoting() {
    let table = [
        ("/usr/bin/x", "/usr/bin/x"),
        ("all_mics", "all_mics"),
        ("my mics", "\"my mics\""),
        ("50%", "\"50%%\""),
        ("$HOME", "\"$$HOME\""),
        ("a\"b", "\"a\\\"b\""),
        ("a\\b", "\"a\\\\b\""),
        ("x;y", "\"x;y\""),
    ];
    for (word, want) in table {
        assert_eq!(systemd_quote(word).unwrap(), want, "{word}");
    }
    assert!(systemd_quote("a\nb").is_err());
    assert!(systemd_quote("").is_err());
}

#[test]
fn exec_start_carries_given_options_only() {
    let bin = Path::new("/usr/bin/mediamtx-stream-manager");
    let g = Global::default();
    assert_eq!(
        exec_start(bin, &g, None).unwrap(),
        "/usr/bin/mediamtx-stream-manager start --foreground"
    );
    let g = Global {
        mode: Some(Mode::Multiplex),
        filter: Some(Filter::Amerge),
        name: Some("yard mics".into()),
        ..Global::default()
    };
    assert_eq!(
        exec_start(bin, &g, Some(Path::new("/etc/m/s.toml"))).unwrap(),
        "/usr/bin/mediamtx-stream-manager start --foreground -m multiplex -f amerge -n \"yard mics\" -c /etc/m/s.toml"
    );
}

#[test]
fn cron_line_is_the_compatible_one() {
    let text = render_cron("/usr/bin/mediamtx-stream-manager");
    let line = "*/5 * * * * root flock -n /run/mediamtx-monitor.lock -c '/usr/bin/mediamtx-stream-manager monitor; EXIT=$?; if [ $EXIT -eq 2 ]; then systemctl restart mediamtx-audio; elif [ $EXIT -ne 0 ]; then logger -t mediamtx-monitor \"Non-critical exit code $EXIT (no restart)\"; fi' || logger -t mediamtx-monitor \"Monitor already running or locked\"";
    assert!(text.lines().any(|l| l == line));
    assert!(
        text.ends_with('\n'),
        "cron ignores a last line without newline"
    );
    for bad in ["/opt/my bin/x", "/opt/it's/x", "/opt/50%/x", "/opt/$x/x"] {
        assert!(cron_binary(Path::new(bad)).is_err(), "{bad}");
    }
    assert!(cron_binary(Path::new("/usr/local/bin/mediamtx-stream-manager")).is_ok());
}

#[test]
fn cron_command_quotes_the_config_for_both_shells() {
    let b = Path::new("/usr/bin/m");
    let table: &[(Option<&str>, Result<&str, ()>)] = &[
        (None, Ok("/usr/bin/m")),
        (
            Some("/etc/m.toml"),
            Ok(r"/usr/bin/m -c '\''/etc/m.toml'\''"),
        ),
        (
            Some("/a b/c.toml"),
            Ok(r"/usr/bin/m -c '\''/a b/c.toml'\''"),
        ),
        (
            Some("/it's.toml"),
            Ok(r"/usr/bin/m -c '\''/it'\''\'\'''\''s.toml'\''"),
        ),
        (Some("/50%.toml"), Err(())),
        (Some("/a\nb"), Err(())),
    ];
    for (config, want) in table {
        let got = cron_command(b, config.map(Path::new));
        assert_eq!(got.map_err(|_| ()), want.map(str::to_string), "{config:?}");
    }
    let text = render_cron(&cron_command(b, Some(Path::new("/it's.toml"))).unwrap());
    assert!(is_our_cron(&text));
}

#[test]
fn recognises_only_unchanged_files() {
    let unit = render_unit("/opt/x start --foreground -m multiplex");
    assert!(is_our_unit(&unit));
    assert!(!is_our_unit(&unit.replace("RestartSec=5", "RestartSec=9")));
    assert!(!is_our_unit(&format!("{unit}# mine\n")));
    assert!(!is_our_unit(""));
    let cron = render_cron("/opt/x");
    assert!(is_our_cron(&cron));
    assert!(!is_our_cron(&cron.replace("*/5", "*/1")));
    assert!(!is_our_cron(&format!("# {cron}")));
}

#[test]
fn stamps() {
    let table = [
        (0, "19700101T000000Z"),
        (951_782_400, "20000229T000000Z"),
        (1_795_397_196, "20261123T012636Z"),
    ];
    for (t, want) in table {
        assert_eq!(utc_stamp(t), want, "{t}");
    }
}
