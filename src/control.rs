//! The control socket (SPEC §7): `<state_dir>/control.sock`, mode 0600, one JSON request
//! per line, one JSON reply per line. Requests:
//!
//! ```text
//! {"cmd":"status"}                      → {"ok":true,"status":{...Snapshot...}}
//! {"cmd":"stop"}                        → {"ok":true}            (supervisor then shuts down)
//! {"cmd":"restart","streams":["a"]}     → {"ok":true} | {"ok":false,"error":"unknown stream: a"}
//! {"cmd":"reload"}                      → {"ok":true}            (same as SIGHUP)
//! {"cmd":"ping"}                        → {"ok":true,"pid":N}
//! ```

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::status::Snapshot;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Status,
    Stop,
    Restart { streams: Vec<String> },
    Reload,
    Ping,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Reply {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Snapshot>,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply {
            ok: true,
            ..Reply::default()
        }
    }
    pub fn err(msg: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            error: Some(msg.into()),
            ..Reply::default()
        }
    }
}

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("control.sock")
}

/// Bind the socket (replacing a stale one: we hold the instance lock, so it is ours),
/// mode 0600, and serve each connection on its own short-lived thread.
pub fn serve(
    state_dir: &Path,
    handler: Arc<dyn Fn(Request) -> Reply + Send + Sync>,
) -> std::io::Result<()> {
    let listener = bind_private(&socket_path(state_dir))?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let handler = handler.clone();
                let _ = std::thread::Builder::new()
                    .name("control-conn".into())
                    .spawn(move || handle(conn, &*handler));
            }
        })?;
    Ok(())
}

/// Bind a socket that nobody else can ever connect to, whatever the umask: `bind` creates
/// the file with the umask's mode and there is no `fchmod` before it, so the socket is
/// bound inside a fresh 0700 directory (nobody else may even reach it there), set to
/// 0600, and only then renamed to `path` (rename keeps the bound socket). The directory
/// goes afterwards.
pub fn bind_private(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let private = dir.join(format!(".control.{}", std::process::id()));
    let _ = std::fs::remove_file(private.join("s"));
    let _ = std::fs::remove_dir(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let result = (|| {
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700))?;
        let tmp = private.join("s");
        let listener = UnixListener::bind(&tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        let _ = std::fs::remove_file(path);
        std::fs::rename(&tmp, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(private.join("s"));
    let _ = std::fs::remove_dir(&private);
    result
}

fn handle(conn: UnixStream, handler: &(dyn Fn(Request) -> Reply + Send + Sync)) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut line = String::new();
    // Bounded: a request is a few dozen bytes.
    if (&mut reader).take(64 * 1024).read_line(&mut line).is_err() {
        return;
    }
    let reply = match serde_json::from_str::<Request>(line.trim()) {
        Ok(req) => handler(req),
        Err(e) => Reply::err(format!("bad request: {e}")),
    };
    let mut w = conn;
    if let Ok(mut text) = serde_json::to_string(&reply) {
        text.push('\n');
        let _ = w.write_all(text.as_bytes());
    }
}

use std::io::Read;

/// Why a request could not be answered.
#[derive(Debug)]
pub enum ClientError {
    /// Nobody listens (no supervisor).
    NotRunning,
    /// The socket exists but we may not open it (non-root).
    PermissionDenied,
    /// Connected but no answer in time (hung supervisor).
    Timeout,
    Other(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NotRunning => f.write_str("supervisor not running (no control socket)"),
            ClientError::PermissionDenied => {
                f.write_str("permission denied on the control socket (live details need root)")
            }
            ClientError::Timeout => {
                f.write_str("supervisor did not answer on the control socket in time")
            }
            ClientError::Other(e) => f.write_str(e),
        }
    }
}

/// Send one request and wait up to `timeout` for the reply.
pub fn request(state_dir: &Path, req: &Request, timeout: Duration) -> Result<Reply, ClientError> {
    let path = socket_path(state_dir);
    let conn = UnixStream::connect(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning
        }
        std::io::ErrorKind::PermissionDenied => ClientError::PermissionDenied,
        _ => ClientError::Other(format!(
            "{}: {}",
            path.display(),
            crate::util::io_reason(&e)
        )),
    })?;
    let _ = conn.set_read_timeout(Some(timeout));
    let _ = conn.set_write_timeout(Some(timeout));
    let mut text = serde_json::to_string(req).map_err(|e| ClientError::Other(e.to_string()))?;
    text.push('\n');
    (&conn)
        .write_all(text.as_bytes())
        .map_err(|e| ClientError::Other(crate::util::io_reason(&e)))?;
    let mut line = String::new();
    match BufReader::new(&conn).take(64 << 20).read_line(&mut line) {
        Ok(0) => Err(ClientError::Other(
            "supervisor closed the connection".into(),
        )),
        Ok(_) => {
            serde_json::from_str(&line).map_err(|e| ClientError::Other(format!("bad reply: {e}")))
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(ClientError::Timeout)
        }
        Err(e) => Err(ClientError::Other(crate::util::io_reason(&e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_round_trip() {
        let d = tempfile::tempdir().unwrap();
        serve(
            d.path(),
            Arc::new(|req| match req {
                Request::Restart { streams } if streams == ["x"] => Reply::err("unknown stream: x"),
                _ => Reply::ok(),
            }),
        )
        .unwrap();
        let mode = std::fs::metadata(socket_path(d.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Bound in a private directory, which is gone again.
        let left: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("control.sock")]);
        let r = request(d.path(), &Request::Ping, Duration::from_secs(2)).unwrap();
        assert!(r.ok);
        let r = request(
            d.path(),
            &Request::Restart {
                streams: vec!["x".into()],
            },
            Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!(r.error.as_deref(), Some("unknown stream: x"));
        assert_eq!(
            serde_json::to_string(&Request::Restart {
                streams: vec!["a".into()]
            })
            .unwrap(),
            r#"{"cmd":"restart","streams":["a"]}"#
        );
        let e = request(
            &d.path().join("nope"),
            &Request::Ping,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(e, ClientError::NotRunning));
    }
}
