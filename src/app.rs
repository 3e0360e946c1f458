//! Carries out a validated command and reports its outcome where the user expects it.

use std::io::Write;
use std::net::TcpListener;

use crate::cli::Command;
use crate::kitchen::{self, KitchenError, Printer};
use crate::serve::{self, ServeError};
use crate::shutdown::Shutdown;

/// What stops a command.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The kitchen failed.
    #[error(transparent)]
    Kitchen(#[from] KitchenError),
    /// The web entry failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Runs `command` until done or `shutdown`; prints the summary (a table on
/// stderr, or JSON as the last line of stdout).
pub fn execute(command: Command, shutdown: &Shutdown) -> Result<(), AppError> {
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
        Command::Serve { bind, config } => {
            let listener = TcpListener::bind(&bind).map_err(|error| ServeError::Bind {
                addr: bind.clone(),
                error,
            })?;
            let addr = listener.local_addr().map_err(ServeError::Listener)?;
            let diners = match config.backend {
                crate::queue::BackendConfig::Local => format!(", {} diners", config.diners),
                crate::queue::BackendConfig::Redis(_) => String::new(),
            };
            // Tests and scripts read the address from this line (`--bind 127.0.0.1:0`).
            let _ = writeln!(
                std::io::stderr().lock(),
                "kitchen serve: listening on http://{addr}/ ({} backend{diners}, {} workers)",
                config.backend.name(),
                config.workers
            );
            serve::run(listener, &config, shutdown)?;
            Ok(())
        }
        Command::Info {
            redis,
            capacity,
            json,
        } => Ok(info(&redis, capacity, json)?),
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
