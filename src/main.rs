//! The `kitchen` binary: parse, install the Ctrl-C handler, hand over, report.

// No unwrap or expect where I/O or user input can reach; tests may.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use kitchen::{Shutdown, app, cli::Cli};

fn main() -> ExitCode {
    let command = match Cli::parse_command() {
        Ok(c) => c,
        // Prints clap's message; exit 2 for usage errors, 0 for --help/--version.
        Err(e) => e.exit(),
    };
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kitchen: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(command: kitchen::cli::Command) -> anyhow::Result<()> {
    let shutdown = Shutdown::new();
    let handler_token = shutdown.clone();
    let interrupted = AtomicBool::new(false);
    // SIGINT, SIGTERM and SIGHUP (ctrlc's "termination" feature): the first
    // drains, the second leaves at once.
    ctrlc::set_handler(move || {
        if interrupted.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        handler_token.stop();
        eprintln!("kitchen: stopping: finishing what is in hand (Ctrl-C again to quit now)");
    })
    .map_err(|e| anyhow::anyhow!("cannot install the Ctrl-C handler: {e}"))?;
    app::execute(command, &shutdown)?;
    Ok(())
}
