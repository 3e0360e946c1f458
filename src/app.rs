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
        Command::Info {
            redis,
            capacity,
            json,
        } => info(&redis, capacity, json),
    }
}

#[cfg(feature = "redis")]
fn info(
    redis: &crate::queue::RedisOptions,
    capacity: crate::queue::Capacity,
    json: bool,
) -> Result<(), KitchenError> {
    let info = crate::redis_mode::info(redis, capacity)?;
    let text = if json {
        info.to_json() + "\n"
    } else {
        info.to_table()
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(())
}

#[cfg(not(feature = "redis"))]
fn info(
    _: &crate::queue::RedisOptions,
    _: crate::queue::Capacity,
    _: bool,
) -> Result<(), KitchenError> {
    Err(crate::queue::QueueError::RedisNotCompiled.into())
}
