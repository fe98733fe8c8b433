//! Running both sides of the differential test: the vendored bash functions through
//! `tests/bash_upstream/harness.sh`, and `config --json` of the built binary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::common;
use super::JSON_PARAMS;

// ---------------------------------------------------------------------------------------
// Running both sides

#[derive(Debug, Clone)]
pub struct BashDev {
    pub card: String,
    pub device_name: String,
    pub stream: String,
    pub values: Vec<String>,
}

#[derive(Debug, Default)]
pub struct BashJob {
    pub devs: Vec<BashDev>,
    pub rc: i32,
}

pub fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(x) => out.push(x),
            None => out.push('\\'),
        }
    }
    out
}

pub fn harness() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bash_upstream/harness.sh")
}

/// Run the vendored functions on every job, in two bash processes at once.
pub fn run_bash(
    mode: &str,
    jobs: &[(String, PathBuf, Option<PathBuf>)],
    dir: &Path,
) -> BTreeMap<String, BashJob> {
    if jobs.is_empty() {
        return BTreeMap::new();
    }
    let halves: Vec<_> = jobs.chunks(jobs.len().div_ceil(2).max(1)).collect();
    let outputs: Vec<String> = std::thread::scope(|sc| {
        let handles: Vec<_> = halves
            .iter()
            .enumerate()
            .map(|(i, part)| {
                sc.spawn(move || {
                    let list = dir.join(format!("jobs-{mode}-{i}.tsv"));
                    let mut text = String::new();
                    for (id, root, conf) in part.iter() {
                        let conf = conf
                            .as_ref()
                            .map(|c| c.display().to_string())
                            .unwrap_or_else(|| "-".into());
                        let _ = writeln!(text, "{id}\t{}\t{conf}", root.display());
                    }
                    fs::write(&list, text).unwrap();
                    let o = Command::new("bash")
                        .arg(harness())
                        .arg(mode)
                        .arg(&list)
                        .env_clear()
                        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                        .env("LC_ALL", "C")
                        .env("TMPDIR", dir)
                        .output()
                        .expect("run bash");
                    assert!(
                        o.status.success(),
                        "harness failed: {}",
                        String::from_utf8_lossy(&o.stderr)
                    );
                    String::from_utf8_lossy(&o.stdout).into_owned()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut out: BTreeMap<String, BashJob> = BTreeMap::new();
    for line in outputs.iter().flat_map(|o| o.lines()) {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["DEV", id, card, name, stream, values @ ..] if values.len() == 5 => {
                out.entry(id.to_string()).or_default().devs.push(BashDev {
                    card: unescape(card),
                    device_name: unescape(name),
                    stream: unescape(stream),
                    values: values.iter().map(|v| unescape(v)).collect(),
                })
            }
            ["END", id, rc] => out.entry(id.to_string()).or_default().rc = rc.parse().unwrap(),
            _ => panic!("harness printed {line:?}"),
        }
    }
    out
}

#[derive(Debug, Clone)]
pub struct OurDev {
    pub card: u32,
    pub stream: String,
    pub values: Vec<String>,
    pub sources: Vec<String>,
}

pub enum Ours {
    Ok(Vec<OurDev>),
    Refused { code: Option<i32>, stderr: String },
}

pub fn run_ours(dir: &Path, id: &str, root: &Path, conf: Option<&Path>) -> Ours {
    let state = dir.join(format!("state-{id}"));
    let toml = dir.join(format!("{id}.toml"));
    let conf = conf
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join("no-such.conf"));
    let s = |p: &Path| p.display().to_string();
    fs::write(
        &toml,
        format!(
            "[paths]\nproc_asound = {:?}\ndev_snd = {:?}\ndevice_config = {:?}\nstate_dir = {:?}\nnames_file = {:?}\nlog_dir = {:?}\n",
            s(&root.join("proc/asound")),
            s(&root.join("dev/snd")),
            s(&conf),
            s(&state),
            s(&state.join("names.json")),
            s(&state.join("log")),
        ),
    )
    .unwrap();
    let mut c = common::clean_bin();
    let o = c
        .args(["config", "--json", "-c"])
        .arg(&toml)
        .output()
        .expect("run binary");
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    if o.status.code() != Some(0) {
        return Ours::Refused {
            code: o.status.code(),
            stderr,
        };
    }
    let v: Value = serde_json::from_slice(&o.stdout).expect("config --json is JSON");
    let devs = v["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| OurDev {
            card: d["card"].as_u64().unwrap() as u32,
            stream: d["stream"].as_str().unwrap().to_string(),
            values: JSON_PARAMS
                .iter()
                .map(|p| match &d["settings"][p]["value"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
            sources: JSON_PARAMS
                .iter()
                .map(|p| {
                    d["settings"][p]["source"]
                        .as_str()
                        .unwrap_or("")
                        .to_string()
                })
                .collect(),
        })
        .collect();
    Ours::Ok(devs)
}

/// Run `config --json` for every job, two at a time.
pub fn run_all_ours(
    dir: &Path,
    jobs: &[(String, PathBuf, Option<PathBuf>)],
) -> BTreeMap<String, Ours> {
    let halves: Vec<_> = jobs.chunks(jobs.len().div_ceil(2).max(1)).collect();
    std::thread::scope(|sc| {
        let handles: Vec<_> = halves
            .iter()
            .map(|part| {
                sc.spawn(move || {
                    part.iter()
                        .map(|(id, root, conf)| {
                            (id.clone(), run_ours(dir, id, root, conf.as_deref()))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}
