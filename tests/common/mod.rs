//! Shared helpers for integration tests: the built binary, temp dirs, cleanup guards.
#![allow(dead_code)]

pub mod front;
pub mod rtsp;

use std::path::PathBuf;

/// Path of the built binary under test; `MSM_TEST_BIN` overrides it (benches/soak.sh runs
/// the release build under the debug test harness).
pub fn bin() -> PathBuf {
    std::env::var_os("MSM_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_mediamtx-stream-manager")))
}

/// The binary with none of the environment it reads (the bash tool's `STREAM_MODE` etc.,
/// a config path, `RUST_LOG`) inherited from whoever runs the tests.
#[allow(dead_code)]
pub fn clean_bin() -> std::process::Command {
    let mut c = std::process::Command::new(bin());
    for v in [
        "MEDIAMTX_STREAM_MANAGER_CONFIG",
        "STREAM_MODE",
        "MULTIPLEX_FILTER_TYPE",
        "MULTIPLEX_STREAM_NAME",
        "MEDIAMTX_HOST",
        "RUST_LOG",
    ] {
        c.env_remove(v);
    }
    c
}

/// Real ffmpeg on PATH; in CI its absence is a failure, elsewhere too (TESTING.md §3).
pub fn require_ffmpeg() -> PathBuf {
    let out = std::process::Command::new("ffmpeg")
        .arg("-version")
        .output();
    match out {
        Ok(o) if o.status.success() => PathBuf::from("ffmpeg"),
        _ => panic!("ffmpeg is required for this test: apt-get install -y ffmpeg"),
    }
}

pub mod browser;
pub mod exposition;
pub mod fake_host;
pub mod mediamtx_mock;
pub mod rtsp_sink;
pub mod sup;

/// Is this a CI run (`CI=true`, as .ci/run is started)? There a missing tool is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A test that needs an external tool: `true` when `probe` ran successfully. Otherwise
/// it fails under `CI=true` (CI must install it) and elsewhere prints one SKIPPED line
/// naming the test and how to install the tool, so a skip is never silent.
pub fn tool_available(test: &str, probe: &mut std::process::Command, install: &str) -> bool {
    let ok = probe
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    let tool = probe.get_program().to_string_lossy().into_owned();
    if in_ci() {
        panic!("{test}: `{tool}` is missing: CI must install it ({install}); see .ci/run");
    }
    eprintln!("SKIPPED {test}: `{tool}` not available (install: {install})");
    false
}

/// A plain HTTP/1.1 GET on 127.0.0.1: (head, body).
pub fn http_get(port: u16, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    c.read_to_string(&mut raw).expect("read answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP head");
    (head.to_string(), body.to_string())
}
