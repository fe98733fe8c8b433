//! Headless Chromium driven through chromedriver's WebDriver HTTP API (W3C), spoken with
//! ureq: no internet, no extra crate. The driver runs in its own process group on a free
//! loopback port; the session is deleted and the group SIGKILLed on drop.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::rtsp::{free_port, is_listening, Guard};

/// Flags that work here as root with no display and no network.
pub const CHROMIUM_ARGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

pub struct Browser {
    session: String,
    base: String,
    agent: ureq::Agent,
    _driver: Guard,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A fresh browser; `None` (with a SKIPPED line) outside CI when chromedriver is
    /// missing, a failure in CI (see `common::tool_available`).
    pub fn start(test: &str) -> Option<Browser> {
        let install = "apt-get install -y chromium chromium-driver";
        if !super::tool_available(test, Command::new("chromedriver").arg("--version"), install)
            || !super::tool_available(test, Command::new("chromium").arg("--version"), install)
        {
            return None;
        }
        let port = free_port();
        let mut cmd = Command::new("chromedriver");
        cmd.arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let driver = Guard::spawn(cmd);
        let until = Instant::now() + Duration::from_secs(10);
        while !is_listening(port) {
            assert!(Instant::now() < until, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push("--window-size=1200,900".into());
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .new_agent();
        let base = format!("http://127.0.0.1:{port}");
        let mut b = Browser {
            session: String::new(),
            base,
            agent,
            _driver: driver,
            _profile: profile,
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        Some(b)
    }

    /// One WebDriver command; panics with the driver's error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let resp = match method {
            "POST" => self
                .agent
                .post(&url)
                .content_type("application/json")
                .send(body.unwrap_or(json!({})).to_string()),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self.agent.get(&url).call(),
        };
        let mut resp = resp.unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if v["value"]["error"].is_string() {
            panic!("WebDriver {method} {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    fn s(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", &self.s("/url"), Some(json!({ "url": url })));
    }

    /// Run `script` (a function body: `return ...`) in the page.
    pub fn eval(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.s("/execute/sync"),
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Browser console entries at level SEVERE (errors, failed loads) since the last call.
    pub fn console_errors(&self) -> Vec<Value> {
        let v = self.call("POST", &self.s("/se/log"), Some(json!({"type": "browser"})));
        v.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .cloned()
            .collect()
    }

    /// A CSS-pixel viewport `width` × `height` as a phone would have (Chrome DevTools).
    pub fn emulate(&self, width: u32, height: u32, mobile: bool) {
        self.call(
            "POST",
            &self.s("/goog/cdp/execute"),
            Some(
                json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": {
                    "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile
                }}),
            ),
        );
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self, to: &Path) {
        use base64::Engine;
        let v = self.call("GET", &self.s("/screenshot"), None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("screenshot"))
            .expect("base64 PNG");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(to, png).expect("write screenshot");
    }

    /// Poll `script` every 50 ms until it returns true; the time it took, or a panic
    /// with the last value of `show` after `limit`.
    pub fn wait(&self, what: &str, limit: Duration, script: &str, show: &str) -> Duration {
        let t0 = Instant::now();
        loop {
            if self.eval(script) == Value::Bool(true) {
                return t0.elapsed();
            }
            if t0.elapsed() > limit {
                panic!("page: {what} not within {limit:?}: {}", self.eval(show));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = self.agent.delete(&url).call();
        }
    }
}
