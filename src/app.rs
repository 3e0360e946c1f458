//! Carries out a validated command and reports its outcome where the user expects it.

use std::io::Write;

use crate::cli::Command;
use crate::kitchen::{self, KitchenError, Printer};
use crate::shutdown::Shutdown;

/// Runs `command` until done or `shutdown`; prints the summary (a table on
/// stderr, or JSON as the last line of stdout).
pub fn execute(command: Command, shutdown: &Shutdown) -> Result<(), KitchenError> {
    match command {
        Command::Kitchen { config, json } => {
            let summary = kitchen::run(&config, shutdown, Printer::stdout())?;
            if json {
                // A reader that went away (`kitchen --json | head -1`) is not an error.
                let _ = writeln!(std::io::stdout().lock(), "{}", summary.to_json());
            } else {
                let _ = std::io::stderr()
                    .lock()
                    .write_all(summary.to_table().as_bytes());
            }
            Ok(())
        }
    }
}
