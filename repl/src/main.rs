//! finq: a local-first personal-finance data pipeline with a query REPL.
//! `main` only parses the command line, sets up logging and hands over to [`cli::run`].

mod app;
mod ask;
mod bench;
mod categories;
mod chart;
mod cli;
mod demo;
mod doctor;
mod items;
mod manual;
mod pipeline;
mod repl;
mod report;
mod server;
mod transfers;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    init_logging(args.verbose);
    // `finq sql … | head`: a command's output cut short by its reader ends it quietly, as
    // with any Unix tool (Rust ignores SIGPIPE, and printing to the closed pipe would
    // panic). Sockets are unaffected (written with MSG_NOSIGNAL); servers keep ignoring it.
    if !args.command.serves() {
        use nix::sys::signal::{SigHandler, Signal, signal};
        // SAFETY: the default disposition; no handler code of ours runs in a signal.
        let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    }
    // Everything finq writes (the mirror, history, exports, its database's files) holds
    // the person's money: readable by its owner only.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    match cli::run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (never into query output); `FINQ_LOG` / `RUST_LOG` or `-v` set the level.
/// By default only finq's own warnings show: libraries' chatter (sqlx's "slow statement"
/// notes on a long first sync) is not for a cron mail, and colours only go to a terminal.
fn init_logging(verbose: u8) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = std::env::var("FINQ_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(format!("{default},sqlx=error")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
