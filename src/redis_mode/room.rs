//! Waiting for room without polling, shared by list and stream modes: wake-up tokens and deadlines.
//!
//! A chef that finds the queue full blocks in Redis (`BLPOP` on the queue's
//! `:room` list) for at most [`ROOM_WAIT`]; every dish a diner takes (or
//! acknowledges) drops a token there, which wakes one waiting chef. Tokens
//! are trimmed to [`MAX_TOKENS`] and expire after [`ROOM_TTL_MS`], so stale
//! ones cost a few spurious wake-ups at most.

use std::time::{Duration, Instant};

use super::Conn;
use crate::shutdown::Shutdown;
use crate::vocab::{Fault, Put};

/// How long a chef blocks waiting for a wake-up token before checking again.
pub(crate) const ROOM_WAIT: Duration = Duration::from_millis(500);

const _: () = assert!(ROOM_WAIT.as_millis() <= super::MAX_BLOCK.as_millis());

/// The most wake-up tokens kept in a queue's `:room` list.
pub const MAX_TOKENS: usize = 16;

/// How long unclaimed wake-up tokens live.
pub(super) const ROOM_TTL_MS: u64 = 10_000;

/// How long a full queue is waited on.
#[derive(Debug, Clone, Copy)]
pub(super) enum Until<'a> {
    /// Until room, or the stop.
    Stopped(&'a Shutdown),
    /// Until room, or this instant.
    Deadline(Instant),
}

impl Until<'_> {
    /// How long the next blocking wait for room may last; `None`: no more waiting.
    pub(super) fn wait(self) -> Option<Duration> {
        match self {
            Until::Stopped(stop) => (!stop.is_stopped()).then_some(ROOM_WAIT),
            Until::Deadline(at) => {
                let left = at.saturating_duration_since(Instant::now());
                // BLPOP takes a timeout of 0 as "forever"; Redis counts in ms.
                (left >= Duration::from_millis(1)).then(|| left.min(ROOM_WAIT))
            }
        }
    }

    /// Sleeps up to `d` before another try; `false`: stop trying (stopped,
    /// or the deadline came).
    pub(super) fn pause(self, d: Duration) -> bool {
        match self {
            Until::Stopped(stop) => !stop.sleep(d),
            Until::Deadline(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                std::thread::sleep(d.min(left));
                true
            }
        }
    }
}

/// The outcomes of `n` dishes pushed at once, the queue `depth` long after.
pub(super) fn queued(depth: usize, n: usize) -> impl Iterator<Item = Put> {
    (0..n).map(move |i| Put::Queued {
        depth: (depth + i + 1).saturating_sub(n),
    })
}

/// Adds `n` wake-up tokens (at least one) for waiting chefs, keeping at most [`MAX_TOKENS`].
pub(super) fn wake(pipe: &mut redis::Pipeline, room: &str, n: usize) {
    pipe.cmd("LPUSH").arg(room);
    for _ in 0..n.clamp(1, MAX_TOKENS) {
        pipe.arg(1);
    }
    pipe.ignore()
        .cmd("LTRIM")
        .arg(room)
        .arg(0)
        .arg(MAX_TOKENS - 1)
        .ignore()
        // Tokens nobody waited for go stale: let them vanish.
        .cmd("PEXPIRE")
        .arg(room)
        .arg(ROOM_TTL_MS)
        .ignore();
}

/// The queue was full: sleeps in Redis until a diner hands over a token, or
/// the wait `until` allows ends. `false`: stop waiting (stopped, or the
/// deadline came), and the dish was not put.
pub(super) fn wait_for_room(conn: &mut Conn, room: &str, until: Until<'_>) -> Result<bool, Fault> {
    let Some(wait) = until.wait() else {
        return Ok(false);
    };
    let _: Option<(String, String)> = conn.run(|c| {
        redis::cmd("BLPOP")
            .arg(room)
            .arg(wait.as_secs_f64())
            .query(c)
    })?;
    Ok(until.wait().is_some())
}
