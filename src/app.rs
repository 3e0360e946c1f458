//! Carries out a validated command and reports its outcome where the user expects it.

use std::io::Write;
use std::net::TcpListener;

use crate::cli::Command;
use crate::kitchen::{self, KitchenError, Printer};
use crate::queue::{self, OpenError};
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
    /// The queue could not be read.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// `kitchen enqueue` failed.
    #[error(transparent)]
    Enqueue(#[from] crate::enqueue::EnqueueError),
    /// `kitchen dead` failed.
    #[error(transparent)]
    Dead(#[from] crate::dead::DeadCommandError),
}

/// Runs `command` until done or `shutdown`; prints the summary (a table on
/// stderr, or JSON as the last line of stdout).
pub fn execute(command: Command, shutdown: &Shutdown) -> Result<(), AppError> {
    match command {
        Command::Kitchen { config, json } => {
            let (summary, failure) = match kitchen::run(&config, shutdown, Printer::stdout()) {
                Ok(s) => (Some(s), None),
                Err(e) => (e.summary.map(|s| *s), Some(e.error)),
            };
            // Every exit that has a summary prints it, a failed one too:
            // a chef that gave up on Redis still tells what it made.
            if let Some(summary) = summary {
                if json {
                    // A reader that went away (`kitchen --json | head -1`) is not an error.
                    let _ = writeln!(std::io::stdout().lock(), "{}", summary.to_json());
                } else {
                    let _ = std::io::stderr()
                        .lock()
                        .write_all(summary.to_table().as_bytes());
                }
            }
            failure.map_or(Ok(()), |e| Err(e.into()))
        }
        Command::Serve { bind, config } => {
            let listener = TcpListener::bind(&bind).map_err(|error| ServeError::Bind {
                addr: bind.clone(),
                error,
            })?;
            let addr = listener.local_addr().map_err(ServeError::Listener)?;
            // Opened before the announcement: a server that says it is
            // listening is ready to answer.
            let server = serve::Server::open(listener, &config)?;
            let diners = match config.backend {
                crate::queue::BackendConfig::Local => format!(", {} diners", config.diners),
                crate::queue::BackendConfig::Redis(_) => String::new(),
            };
            let mut err = std::io::stderr().lock();
            // Tests and scripts read the address from this line (`--bind 127.0.0.1:0`).
            let _ = writeln!(
                err,
                "kitchen serve: listening on http://{addr}/ ({} backend{diners}, {} workers)",
                config.backend.name(),
                config.workers
            );
            if server.waiting_for_queue {
                let _ = writeln!(
                    err,
                    "kitchen serve: the queue does not answer yet: requests get 503 until it does"
                );
            }
            drop(err);
            server.run(shutdown)?;
            Ok(())
        }
        Command::Enqueue(config) => {
            let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
            crate::enqueue::run(&config, shutdown, &mut out, &mut err)?;
            Ok(())
        }
        Command::Dead { redis, command } => {
            crate::dead::run(&redis, &command, &mut std::io::stdout().lock())?;
            Ok(())
        }
        Command::Info {
            redis,
            capacity,
            watch: true,
            ..
        } => {
            use std::io::IsTerminal;
            let mut out = std::io::stdout();
            let tty = out.is_terminal();
            queue::watch(&redis, capacity, shutdown, &mut out, tty)?;
            Ok(())
        }
        Command::Info {
            redis,
            capacity,
            json,
            watch: false,
        } => {
            let text = queue::info(&redis, capacity, json)?;
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            Ok(())
        }
    }
}
