//! Runs a dish's command (`--exec`): placeholder until the runner lands.

use std::time::Duration;

use crate::shutdown::Shutdown;

/// A command to run once per dish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    /// Run through `sh -c`.
    pub command: String,
    /// Ended (its whole process group) after this long: a failure.
    pub timeout: Option<Duration>,
}

/// What one dish's command needs.
#[derive(Debug)]
pub struct Job<'a> {
    /// On the command's stdin.
    pub payload: &'a [u8],
    /// `KITCHEN_DISH_ID`.
    pub dish_id: &'a str,
    /// `KITCHEN_ATTEMPT`.
    pub attempt: u32,
    /// `KITCHEN_QUEUE`.
    pub queue: &'a str,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Exit 0, with its stdout (capped).
    Ate {
        /// Its stdout.
        output: Vec<u8>,
    },
    /// Anything else.
    Failed {
        /// The status and the tail of stderr.
        reason: String,
    },
    /// Ended by the shutdown deadline.
    Abandoned,
}

impl Exec {
    /// Runs the command for `job`.
    pub fn run(&self, _job: &Job<'_>, _abandon: &Shutdown) -> Ended {
        Ended::Failed {
            reason: "not yet".into(),
        }
    }
}
