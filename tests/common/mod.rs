//! Shared helpers for integration tests: the built binary, temp dirs, cleanup guards.
#![allow(dead_code)]

pub mod rtsp;

use std::path::PathBuf;

/// Path of the built binary under test; `MSM_TEST_BIN` overrides it (benches/soak.sh runs
/// the release build under the debug test harness).
pub fn bin() -> PathBuf {
    std::env::var_os("MSM_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_mediamtx-stream-manager")))
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

pub mod fake_host;
pub mod mediamtx_mock;
pub mod sup;
