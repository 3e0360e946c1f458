//! `kitchen enqueue`: queue tracked dishes with given payloads, and maybe wait for their results.
//!
//! Each payload becomes a dish its maker tracks, so whichever diner eats it
//! records what became of it beside the queue; `--wait` reads those records
//! until every dish is eaten or failed, prints each output, and fails if any
//! dish did. The queue's bound holds: a full queue makes `enqueue` wait.

use std::io::{self, BufRead, Write};
use std::time::Duration;

use crate::dish::{Dish, DishId, Payload};
use crate::kitchen::IdBlock;
use crate::queue::{
    Backend, BackendConfig, Capacity, OpenError, Put, PutError, ResultLimits, Results, ResultsError,
};
use crate::results::Status;
use crate::shutdown::Shutdown;

/// What `kitchen enqueue` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueueConfig {
    /// Where the queue lives.
    pub backend: BackendConfig,
    /// The bound chefs keep; `enqueue` waits for room like a chef.
    pub capacity: Capacity,
    /// The payloads, `-` for one per line of stdin.
    pub payloads: Vec<String>,
    /// Wait for each result.
    pub wait: bool,
    /// The largest payload, in bytes.
    pub max_payload: usize,
}

/// What stops `kitchen enqueue`.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The queue cannot be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A dish could not be queued.
    #[error(transparent)]
    Put(#[from] PutError),
    /// A result could not be recorded or read.
    #[error(transparent)]
    Results(#[from] ResultsError),
    /// Stdin could not be read.
    #[error("cannot read payloads from stdin: {0}")]
    Stdin(#[source] io::Error),
    /// A payload over the limit.
    #[error(
        "payload {index} is {size} bytes, over the {limit}-byte limit: raise --max-payload, or send a reference to the data instead"
    )]
    TooLarge {
        /// Its place among the payloads, from 1.
        index: usize,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Stopped (Ctrl-C) before every dish was queued or done.
    #[error("stopped with {left} of {total} dishes not done")]
    Stopped {
        /// Not queued, or not finished.
        left: usize,
        /// All of them.
        total: usize,
    },
    /// A dish's record was gone before it finished.
    #[error("the result of dish {0} expired before it finished: raise --result-ttl on the diners")]
    Expired(String),
    /// Some dishes failed (with `--wait`).
    #[error("{failed} of {total} dishes failed")]
    Failed {
        /// How many failed.
        failed: usize,
        /// All of them.
        total: usize,
    },
}

/// How often `--wait` reads the records of dishes not yet done.
const WAIT_POLL: Duration = Duration::from_millis(100);

/// Queues the payloads, printing each dish's id on `out`; with `wait`,
/// then prints each dish's output, in order, as it is eaten (failures go to
/// `err`).
pub fn run(
    config: &EnqueueConfig,
    shutdown: &Shutdown,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), EnqueueError> {
    let payloads = read_payloads(&config.payloads, config.max_payload)?;
    let backend = Backend::open(&config.backend, config.capacity, ResultLimits::default())?;
    let mut producer = backend.producer()?;
    let mut results = backend.results();
    let mut ids = IdBlock::default();
    let mut queued = Vec::with_capacity(payloads.len());
    for payload in payloads.iter().cloned() {
        let mut dish = Dish::carrying(ids.next(), payload, 0);
        dish.track = true;
        // Recorded before it is queued, so a quick diner finds the record.
        results.queued(&dish)?;
        if producer.put(&dish, shutdown)? == Put::Stopped {
            results.forget(dish.id);
            return Err(EnqueueError::Stopped {
                left: payloads.len() - queued.len(),
                total: payloads.len(),
            });
        }
        if !config.wait {
            let _ = writeln!(out, "{}", dish.id);
        }
        queued.push(dish.id);
    }
    if config.wait {
        wait_for(&queued, &mut results, shutdown, out, err)
    } else {
        Ok(())
    }
}

/// The payloads to queue, `-` expanded to stdin's lines.
fn read_payloads(args: &[String], limit: usize) -> Result<Vec<Payload>, EnqueueError> {
    let mut texts = Vec::new();
    for a in args {
        if a == "-" {
            for line in io::stdin().lock().lines() {
                let line = line.map_err(EnqueueError::Stdin)?;
                if !line.trim().is_empty() {
                    texts.push(line);
                }
            }
        } else {
            texts.push(a.clone());
        }
    }
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if t.len() > limit {
                return Err(EnqueueError::TooLarge {
                    index: i + 1,
                    size: t.len(),
                    limit,
                });
            }
            Ok(Payload::read(t))
        })
        .collect()
}

/// Reads the records of `ids` until each is eaten or failed, printing
/// outputs in order.
fn wait_for(
    ids: &[DishId],
    results: &mut Results,
    shutdown: &Shutdown,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), EnqueueError> {
    let mut failed = 0;
    for (done, id) in ids.iter().enumerate() {
        let record = loop {
            match results.get(*id)? {
                Some(r) if matches!(r.status, Status::Eaten | Status::Failed) => break r,
                Some(_) => {}
                None => return Err(EnqueueError::Expired(id.to_string())),
            }
            if shutdown.sleep(WAIT_POLL) {
                return Err(EnqueueError::Stopped {
                    left: ids.len() - done,
                    total: ids.len(),
                });
            }
        };
        if record.status == Status::Failed {
            failed += 1;
            let why = record.error.unwrap_or_default();
            let _ = writeln!(err, "kitchen: dish {id} failed: {why}");
        } else if let Some(output) = record.output {
            let _ = out.write_all(output.as_bytes());
            if !output.is_empty() && !output.ends_with('\n') {
                let _ = out.write_all(b"\n");
            }
        }
    }
    if failed > 0 {
        return Err(EnqueueError::Failed {
            failed,
            total: ids.len(),
        });
    }
    Ok(())
}
