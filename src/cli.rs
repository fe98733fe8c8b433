//! Command line (SPEC §2). Global options are accepted before or after the command.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::PossibleValue;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Overrides;
use crate::exit::Exit;

#[derive(Debug, Parser)]
#[command(
    name = "mediamtx-stream-manager",
    version,
    about = "Keeps USB microphones streaming to MediaMTX, 24/7",
    after_help = Exit::HELP_TABLE,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args, Default)]
pub struct Global {
    /// Manager settings (TOML) [default: /etc/mediamtx/stream-manager.toml]
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        env = "MEDIAMTX_STREAM_MANAGER_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// Streaming mode [default: individual]
    #[arg(
        short = 'm',
        long = "mode",
        global = true,
        env = "STREAM_MODE",
        value_enum
    )]
    pub mode: Option<Mode>,
    /// Multiplex filter [default: amix]
    #[arg(
        short = 'f',
        long = "filter",
        global = true,
        env = "MULTIPLEX_FILTER_TYPE",
        value_enum
    )]
    pub filter: Option<Filter>,
    /// Multiplex stream name [default: all_mics]
    #[arg(
        short = 'n',
        long = "name",
        global = true,
        env = "MULTIPLEX_STREAM_NAME",
        value_name = "NAME"
    )]
    pub name: Option<String>,
    /// Debug logging
    #[arg(short = 'd', long = "debug", global = true)]
    pub debug: bool,
    /// More logging (repeatable)
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors
    #[arg(short = 'q', long = "quiet", global = true)]
    pub quiet: bool,
}

/// The settings types the command line fills; they belong to `config` (re-exported here so
/// `cli::Mode` keeps working).
pub use crate::config::{Filter, Mode};

impl ValueEnum for Mode {
    fn value_variants<'a>() -> &'a [Self] {
        &Mode::ALL
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.as_str()))
    }
}

impl ValueEnum for Filter {
    fn value_variants<'a>() -> &'a [Self] {
        &Filter::ALL
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.as_str()))
    }
}

impl From<&Global> for Overrides {
    fn from(g: &Global) -> Overrides {
        Overrides {
            config: g.config.clone(),
            mode: g.mode,
            filter: g.filter,
            name: g.name.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take the instance lock and supervise one ffmpeg per USB microphone
    Start {
        /// Stay attached (systemd, containers); default is to daemonise
        #[arg(long)]
        foreground: bool,
    },
    /// Gracefully stop the running supervisor and every stream
    Stop {
        /// How long to wait for the supervisor to release its lock
        #[arg(long, value_parser = parse_duration_arg, default_value = "30s")]
        timeout: Duration,
    },
    /// SIGKILL the supervisor and every ffmpeg this product started
    ForceStop,
    /// Restart everything, or only the named streams (live)
    Restart {
        /// Stream names; none means stop then start the supervisor
        streams: Vec<String>,
        /// With no names: how long to wait for the old supervisor to stop
        #[arg(long, value_parser = parse_duration_arg, default_value = "30s")]
        timeout: Duration,
    },
    /// Show the supervisor, MediaMTX and every stream
    Status {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Print the effective configuration and where each value came from
    Config {
        /// Validate only (exit 0 or 4)
        #[arg(long)]
        check: bool,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
        /// Write a commented template device config when none exists
        #[arg(long)]
        init: bool,
    },
    /// Health check for cron (exit 0, 2, 6, 7 or 10)
    Monitor {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Write the systemd unit and the cron monitor file
    Install {
        /// Write under another root (packaging, tests); skips systemctl
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// Print what would be written
        #[arg(long)]
        dry_run: bool,
        /// Enable and start the unit
        #[arg(long)]
        enable: bool,
        /// Do not write the cron file
        #[arg(long)]
        no_cron: bool,
        /// Absolute path written into the files instead of this binary's (packaging, tests)
        #[arg(long, value_name = "PATH", hide = true)]
        binary: Option<PathBuf>,
    },
    /// Remove what `install` wrote
    Uninstall {
        /// The root `install` wrote under
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Try the product with no hardware and no MediaMTX
    Demo {
        /// Stop by itself after this long (default: run until Ctrl-C)
        #[arg(long, value_parser = parse_duration_arg)]
        duration: Option<Duration>,
    },
    /// Everything needed to ask for help: versions, redacted config, devices, status,
    /// log tails, monitor findings, disk space, installed unit and cron file
    Diagnose {
        /// Write a .tar.gz of the same, one file per part, instead of printing
        #[arg(long, value_name = "FILE")]
        bundle: Option<PathBuf>,
        /// Look for the unit and cron file under DIR (where `install --root` wrote them)
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s)
}
