//! The exit-code contract (SPEC §3) and the one error type that carries it to `main`.

use std::fmt;

/// Every exit code the binary can return. Compatible with the bash stream manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exit {
    Ok = 0,
    General = 1,
    Critical = 2,
    MissingDependency = 3,
    Config = 4,
    LockHeld = 5,
    NoDevices = 6,
    MediamtxDown = 7,
    Degraded = 10,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The table printed by `--help`.
    pub const HELP_TABLE: &'static str = "\
Exit codes:
   0  success
   1  general error (bad arguments, not root, stop timed out, unknown stream)
   2  critical state (monitor; the cron line restarts the service on it)
   3  missing dependency (ffmpeg not found or not executable)
   4  configuration error (message names file, line and key)
   5  lock held: another supervisor is running
   6  no USB audio devices found
   7  MediaMTX not reachable
  10  degraded: at least one stream is not healthy (monitor)";
}

/// An error that reached the top: one line of text and the exit code it maps to.
#[derive(Debug)]
pub struct Error {
    pub exit: Exit,
    pub message: String,
}

impl Error {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Error {
            exit,
            message: message.into(),
        }
    }
    pub fn general(message: impl Into<String>) -> Self {
        Error::new(Exit::General, message)
    }
    pub fn config(message: impl Into<String>) -> Self {
        Error::new(Exit::Config, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Exit {
    /// The variant for a child's exit code (daemon start relays it).
    pub fn from_code(code: i32) -> Exit {
        match code {
            0 => Exit::Ok,
            2 => Exit::Critical,
            3 => Exit::MissingDependency,
            4 => Exit::Config,
            5 => Exit::LockHeld,
            6 => Exit::NoDevices,
            7 => Exit::MediamtxDown,
            10 => Exit::Degraded,
            _ => Exit::General,
        }
    }
}
