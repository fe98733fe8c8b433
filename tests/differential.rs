//! Differential test against the bash tool's own code (issue 15): the naming and lookup
//! functions of lyrebird-stream-manager.sh v1.5.0, vendored verbatim under
//! `tests/bash_upstream/` (with its Apache-2.0 licence), and `config --json` of the built
//! binary run on the same fake `/proc/asound` + `/dev/snd` trees and the same
//! `audio-devices.conf` files.
//!
//! Every comparison is identical, sanctioned (a difference SPEC.md asks for; the rule is
//! named) or unsanctioned. The test prints a summary and every unsanctioned case, and fails on
//! any. Run with `-- --nocapture` to see the summary when it passes.
//!
//! - Names: every device of every host, compared without a device config (the file cannot
//!   change an automatic name).
//! - Settings: the five parameters of every device of every host that has a device config.
//!
//! Sanctioned differences, each checked narrowly:
//! - bash's time-based `stream_<epoch>` (a name with nothing usable) vs our deterministic
//!   `card_<md5>` (SPEC §4 rule 3: "Never a time-based fallback"), and a setting we take from
//!   the friendly key of that name where bash's friendly key was `STREAM_<epoch>`;
//! - a card bash does not stream because another card has a by-id link while it has none, or
//!   because it is the twin without the shared link (SPEC §4: both twins stream; rule 4);
//! - settings equal to what bash gives once the file's BOM and CRs are dropped (SPEC §5: CRLF
//!   and BOM accepted), once its `DEFAULT_*` lines count (SPEC §5: honoured; bash crashed on
//!   them), once the value is validated and normalised (SPEC §5 validation), or a file we
//!   refuse with exit 4 and file:line because a value is invalid or a line is not a plain
//!   assignment (SPEC §5: validated; parsed, never executed).
//!
//! The bash side runs under `LC_ALL=C` with an empty environment (as cron runs the tool);
//! `tests/bash_upstream/harness.sh` says what it changes at run time (only path prefixes,
//! `log`, `sleep`). Many hosts go through one bash process, so the whole test takes well
//! under a minute on a loaded two-core machine.

mod common;
#[path = "differential/corpus.rs"]
mod corpus;
#[path = "differential/run.rs"]
mod run;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use corpus::{build_hosts, make_conf, normalised, refused_confs, Host, Kind, Rng};
use run::{run_all_ours, run_bash, BashDev, BashJob, Ours};

const PARAMS: [&str; 5] = [
    "SAMPLE_RATE",
    "CHANNELS",
    "CODEC",
    "BITRATE",
    "THREAD_QUEUE",
];
const JSON_PARAMS: [&str; 5] = [
    "sample_rate",
    "channels",
    "codec",
    "bitrate",
    "thread_queue",
];

const R_DETERMINISTIC: &str =
    "SPEC §4 rule 3: names are deterministic (card_<md5>, never bash's stream_<epoch>)";
const R_TWINS: &str = "SPEC §4: two devices that would get the same name both stream";
const R_NO_LINK: &str =
    "SPEC §4 rule 4: a card without a by-id link streams even when others have one";
const R_CRLF_BOM: &str = "SPEC §5: CRLF line endings and a UTF-8 BOM are accepted";
const R_DEFAULTS: &str = "SPEC §5: DEFAULT_* lines are honoured (bash crashed on them)";
const R_NORMALISED: &str = "SPEC §5 validation: the value is checked and normalised";
const R_VALIDATION: &str = "SPEC §5 validation: an invalid value is exit 4 naming file:line";
const R_NEVER_EXECUTED: &str =
    "SPEC §5: the file is parsed, never executed (exit 4 naming file:line)";

// ---------------------------------------------------------------------------------------
// Classification

#[derive(Default)]
struct Tally {
    identical: usize,
    sanctioned: BTreeMap<&'static str, usize>,
    unsanctioned: Vec<String>,
}

impl Tally {
    fn same(&mut self) {
        self.identical += 1;
    }
    fn ok(&mut self, rule: &'static str) {
        *self.sanctioned.entry(rule).or_default() += 1;
    }
    fn bad(&mut self, what: String) {
        self.unsanctioned.push(what);
    }
    fn total_sanctioned(&self) -> usize {
        self.sanctioned.values().sum()
    }
    fn report(&self, title: &str) -> String {
        let mut s = format!(
            "{title}: {} compared: {} identical, {} sanctioned, {} unsanctioned\n",
            self.identical + self.total_sanctioned() + self.unsanctioned.len(),
            self.identical,
            self.total_sanctioned(),
            self.unsanctioned.len()
        );
        for (rule, n) in &self.sanctioned {
            let _ = writeln!(s, "    {n:>5} sanctioned by {rule}");
        }
        s
    }
}

/// bash's `stream_$(date +%s)` from a run between `t0` and `t1`.
fn is_epoch_name(name: &str, t0: u64, t1: u64) -> bool {
    name.strip_prefix("stream_")
        .and_then(|n| n.parse::<u64>().ok())
        .is_some_and(|t| t + 5 >= t0 && t <= t1 + 5)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn bash_and_config_json_agree_on_names_and_settings() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let hosts = build_hosts(&dir.join("hosts"));

    // Jobs: every host without a device config (names), then hosts with one (settings).
    let mut name_jobs = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        name_jobs.push((format!("n{i}"), h.root.clone(), None));
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut conf_jobs = Vec::new();
    let mut conf_host: BTreeMap<String, usize> = BTreeMap::new();
    let confs_dir = dir.join("confs");
    fs::create_dir_all(&confs_dir).unwrap();
    let mut shape = 0;
    let mut add_conf = |host: usize, bytes: Vec<u8>, conf_jobs: &mut Vec<_>| {
        let id = format!("c{}", conf_jobs.len());
        let path = confs_dir.join(format!("{id}.conf"));
        fs::write(&path, bytes).unwrap();
        conf_host.insert(id.clone(), host);
        conf_jobs.push((id, hosts[host].root.clone(), Some(path)));
    };
    // Which devices each host has, for writing keys: read back from the host tree.
    let devices_of = |h: &Host| -> Vec<(Option<String>, String)> {
        let devs = mediamtx_stream_manager::devices::discover(
            &h.root.join("proc/asound"),
            &h.root.join("dev/snd"),
        );
        devs.into_iter().map(|d| (d.by_id, d.card_id)).collect()
    };
    // Settings hosts: every host that is not a lone linked card, every 16th lone one, and
    // every fourth lone one whose name is unusual (not ASCII, not starting with a letter once the
    // prefix is gone, or near the 48-character cut).
    let unusual = |b: &str| {
        let rest = b.strip_prefix("usb-audio-").unwrap_or(b);
        let rest = rest.strip_prefix("usb_audio_").unwrap_or(rest);
        !b.is_ascii() || !rest.starts_with(|c: char| c.is_ascii_alphabetic()) || b.len() > 44
    };
    let picked: Vec<usize> = (0..hosts.len())
        .filter(|&i| match (&hosts[i].kind, &hosts[i].by_id) {
            (Kind::Single, Some(b)) => i % 16 == 0 || (i % 4 == 0 && unusual(b)),
            (Kind::Single, None) => false,
            _ => true,
        })
        .collect();
    for &i in &picked {
        let devices = devices_of(&hosts[i]);
        if devices.is_empty() {
            continue;
        }
        shape += 1;
        let bytes = make_conf(&mut rng, &devices, shape);
        add_conf(i, bytes, &mut conf_jobs);
    }
    for &i in picked.iter().step_by(20) {
        let devices = devices_of(&hosts[i]);
        for bytes in refused_confs(&devices) {
            add_conf(i, bytes, &mut conf_jobs);
        }
    }

    let t0 = now();
    let built = started.elapsed();
    let all: Vec<_> = name_jobs.iter().chain(conf_jobs.iter()).cloned().collect();
    let bash_asis = run_bash("asis", &all, dir);
    // The sanctioned modes only where they can change something (saves bash time).
    let text_of = |c: &Option<PathBuf>| fs::read(c.as_ref().unwrap()).unwrap();
    let crlf_jobs: Vec<_> = conf_jobs
        .iter()
        .filter(|(_, _, c)| {
            let t = text_of(c);
            t.contains(&b'\r') || t.starts_with("\u{feff}".as_bytes())
        })
        .cloned()
        .collect();
    let default_jobs: Vec<_> = conf_jobs
        .iter()
        .filter(|(_, _, c)| String::from_utf8_lossy(&text_of(c)).contains("DEFAULT_"))
        .cloned()
        .collect();
    let mut bash_crlf = run_bash("crlf", &crlf_jobs, dir);
    let mut bash_defaults = run_bash("defaults", &default_jobs, dir);
    // Where a mode would change nothing, its result is the previous mode's.
    for (id, _, _) in &conf_jobs {
        if !bash_crlf.contains_key(id) {
            let a = &bash_asis[id];
            bash_crlf.insert(
                id.clone(),
                BashJob {
                    devs: a.devs.clone(),
                    rc: a.rc,
                },
            );
        }
        if !bash_defaults.contains_key(id) {
            let c = &bash_crlf[id];
            bash_defaults.insert(
                id.clone(),
                BashJob {
                    devs: c.devs.clone(),
                    rc: c.rc,
                },
            );
        }
    }
    let t1 = now();
    let bash_took = started.elapsed() - built;
    let ours = run_all_ours(dir, &all);
    let ours_took = started.elapsed() - built - bash_took;
    eprintln!("corpus {built:?}, bash {bash_took:?}, ours {ours_took:?}");

    // Names.
    let mut names = Tally::default();
    let mut device_names = 0;
    for (i, h) in hosts.iter().enumerate() {
        let id = format!("n{i}");
        let bash = &bash_asis[&id];
        let Ours::Ok(our) = &ours[&id] else {
            names.bad(format!("{}: config --json failed", h.what));
            continue;
        };
        if bash.rc != 0 {
            names.bad(format!("{}: bash exited {}", h.what, bash.rc));
        }
        let mut seen = BTreeSet::new();
        for b in &bash.devs {
            device_names += 1;
            let card: u32 = b.card.parse().unwrap_or(u32::MAX);
            seen.insert(card);
            let mine = our.iter().find(|o| o.card == card);
            match mine {
                Some(o) if o.stream == b.stream => names.same(),
                Some(o) if is_epoch_name(&b.stream, t0, t1) && o.stream.starts_with("card_") => {
                    names.ok(R_DETERMINISTIC)
                }
                Some(o)
                    if !h.twins.is_empty()
                        && our
                            .iter()
                            .any(|t| t.stream == b.stream && h.twins.contains(&t.card)) =>
                {
                    let _ = o;
                    names.ok(R_TWINS)
                }
                Some(o) => names.bad(format!(
                    "{}: card {card} (device {:?}): bash {:?}, ours {:?}",
                    h.what, b.device_name, b.stream, o.stream
                )),
                None => names.bad(format!(
                    "{}: card {card} (device {:?}): bash streams {:?}, we do not",
                    h.what, b.device_name, b.stream
                )),
            }
        }
        for o in our.iter().filter(|o| !seen.contains(&o.card)) {
            if h.twins.contains(&o.card) {
                names.ok(R_TWINS);
            } else if h.any_link && !h.linked.contains(&o.card) {
                names.ok(R_NO_LINK);
            } else {
                names.bad(format!(
                    "{}: card {}: we stream {:?}, bash does not",
                    h.what, o.card, o.stream
                ));
            }
        }
    }

    // Settings.
    let mut settings = Tally::default();
    let mut with_conf = 0;
    for (id, _, conf) in &conf_jobs {
        let h = &hosts[conf_host[id]];
        let conf = conf.as_ref().unwrap();
        let text = String::from_utf8_lossy(&fs::read(conf).unwrap()).into_owned();
        let what = |extra: String| {
            format!(
                "{} with {} ({:?}): {extra}",
                h.what,
                id,
                text.chars().take(300).collect::<String>()
            )
        };
        let defaults = &bash_defaults[id];
        if defaults.rc != 0 {
            settings.bad(what(format!(
                "bash (DEFAULT_* honoured) exited {}",
                defaults.rc
            )));
            continue;
        }
        with_conf += 1;
        let our = match &ours[id] {
            Ours::Ok(d) => d,
            Ours::Refused { code, stderr } => {
                let place = format!("{}:", conf.display());
                let one_line = stderr.lines().count() == 1 && stderr.contains(&place);
                let rule = if stderr.contains("is not allowed")
                    || stderr.contains("substitution")
                    || stderr.contains("expansion")
                    || stderr.contains("not a KEY=value")
                {
                    Some(R_NEVER_EXECUTED)
                } else if stderr.contains(": invalid ") {
                    Some(R_VALIDATION)
                } else {
                    None
                };
                match (code, one_line, rule) {
                    (Some(4), true, Some(rule)) => {
                        for _ in 0..defaults.devs.len() * PARAMS.len() {
                            settings.ok(rule);
                        }
                    }
                    _ => settings.bad(what(format!("we refused it: exit {code:?}: {stderr}"))),
                }
                continue;
            }
        };
        let asis = &bash_asis[id];
        let crlf = &bash_crlf[id];
        let find = |run: &BashJob, card: &str| -> Option<BashDev> {
            (run.rc == 0)
                .then(|| run.devs.iter().find(|d| d.card == card).cloned())
                .flatten()
        };
        for b in &defaults.devs {
            let card: u32 = b.card.parse().unwrap_or(u32::MAX);
            let Some(o) = our.iter().find(|o| o.card == card) else {
                for _ in PARAMS {
                    settings.bad(what(format!("card {card}: bash has it, we do not")));
                }
                continue;
            };
            let a = find(asis, &b.card);
            let c = find(crlf, &b.card);
            for (p, param) in PARAMS.iter().enumerate() {
                let mine = &o.values[p];
                if a.as_ref().is_some_and(|a| &a.values[p] == mine) {
                    settings.same();
                } else if c.as_ref().is_some_and(|c| &c.values[p] == mine) {
                    settings.ok(R_CRLF_BOM);
                } else if &b.values[p] == mine {
                    settings.ok(R_DEFAULTS);
                } else if normalised(param, &b.values[p]).as_ref() == Some(mine) {
                    settings.ok(R_NORMALISED);
                } else if is_epoch_name(&b.stream, t0, t1) && o.sources[p] == "friendly" {
                    // bash's friendly key was STREAM_<epoch>; ours follows our name.
                    settings.ok(R_DETERMINISTIC);
                } else {
                    settings.bad(what(format!(
                        "card {card} stream {:?} {param}: bash {:?} (as is {:?}), ours {mine:?} ({})",
                        o.stream,
                        b.values[p],
                        a.as_ref().map(|a| a.values[p].clone()),
                        o.sources[p]
                    )));
                }
            }
        }
    }

    let mut report = format!(
        "differential against lyrebird-stream-manager.sh v1.5.0 (8d1a709): {} hosts, {} device names, {} device config files, {:.1}s\n",
        hosts.len(),
        device_names,
        with_conf,
        started.elapsed().as_secs_f64()
    );
    report.push_str(&names.report("stream names"));
    report.push_str(&settings.report("setting values"));
    for u in names.unsanctioned.iter().chain(&settings.unsanctioned) {
        let _ = writeln!(report, "UNSANCTIONED: {u}");
    }
    println!("{report}");
    assert!(
        device_names >= 200,
        "corpus too small: {device_names} names\n{report}"
    );
    assert!(
        with_conf >= 40,
        "too few config files: {with_conf}\n{report}"
    );
    assert!(
        names.unsanctioned.is_empty() && settings.unsanctioned.is_empty(),
        "\n{report}"
    );
}
