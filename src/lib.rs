//! mediamtx-stream-manager: keeps USB microphones streaming to MediaMTX.
//!
//! `main_entry` parses flags, calls `run`, and maps the result to an exit code;
//! every error travels up as `exit::Error` and is printed in one place.

pub mod child;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod control;
pub mod cpu;
pub mod devices;
pub mod exit;
pub mod exposure;
pub mod ffmpeg;
pub mod fsafe;
pub mod http;
pub mod lock;
pub mod logs;
pub mod mediamtx;
pub mod metrics;
pub mod metrics_out;
pub mod naming;
pub mod notify;
pub mod recording;
pub mod rtsp;
pub mod spawn;
pub mod status;
pub mod sticky;
pub mod streams;
pub mod supervisor;
pub mod util;
pub mod web;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use exit::{Error, Exit};

/// Parse the command line, run, print any error once, return the exit code.
pub fn main_entry() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // clap exits 2 on bad usage; our contract says 1 (2 means "restart me" to cron).
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => 1,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // Before any thread or descriptor of ours: nothing the caller passed in lives on in a
    // long-lived supervisor, and nothing crosses an exec (daemon re-exec, ffmpeg).
    child::drop_inherited_fds(matches!(cli.command, Command::Start { .. }));
    init_logging(&cli.global);
    if !matches!(
        cli.command,
        Command::Start { .. } | Command::Restart { .. } | Command::Demo { .. }
    ) {
        // Short-lived commands die quietly on a closed pipe (`status | head`) instead of
        // panicking in println!. The supervisor keeps SIGPIPE ignored: a closed stderr
        // must never kill it.
        // SAFETY: setting a signal disposition before any thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match run(cli) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            eprintln!("mediamtx-stream-manager: {e}");
            ExitCode::from(e.exit.code())
        }
    }
}

fn init_logging(g: &cli::Global) {
    let level = if g.quiet {
        "error"
    } else if g.debug || g.verbose >= 2 {
        "debug"
    } else if g.verbose == 1 {
        "info"
    } else {
        "warn"
    };
    let mut b = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level));
    // Under systemd journald adds timestamps; do not add a second one.
    if std::env::var_os("JOURNAL_STREAM").is_some() || std::env::var_os("NOTIFY_SOCKET").is_some() {
        b.format_timestamp(None);
    }
    b.target(env_logger::Target::Pipe(Box::new(logs::LogSink)));
    let _ = b.try_init();
}

/// Run one command; `Ok` carries the exit code for commands that report a state.
pub fn run(cli: Cli) -> Result<Exit, Error> {
    let g = &cli.global;
    match cli.command {
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(
                shell,
                &mut cmd,
                "mediamtx-stream-manager",
                &mut std::io::stdout(),
            );
            Ok(Exit::Ok)
        }
        Command::Start { foreground } => cmd::start::start(g, foreground),
        Command::Stop { timeout } => cmd::stop::stop(g, timeout),
        Command::ForceStop => cmd::stop::force_stop(g),
        Command::Restart { streams, timeout } => cmd::stop::restart(g, streams, timeout),
        Command::Status { json } => cmd::status::status(g, json),
        Command::Monitor { json } => cmd::monitor::run(g, json),
        Command::Install {
            root,
            dry_run,
            enable,
            no_cron,
            binary,
        } => cmd::install::install(
            g,
            &cmd::install::InstallOptions {
                root,
                dry_run,
                enable,
                no_cron,
                binary,
            },
        ),
        Command::Uninstall { root } => cmd::install::uninstall(g, root.as_deref()),
        Command::Config { check, json, init } => {
            let settings = config::Settings::load(g)?;
            cmd::config::run(&settings, check, json, init)
        }
        Command::Demo { duration } => cmd::demo::run(g, duration),
        Command::Diagnose { bundle, root } => {
            cmd::diagnose::run(g, bundle.as_deref(), root.as_deref())
        }
    }
}
