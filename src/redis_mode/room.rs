//! Waiting for room without polling, shared by list and stream modes: wake-up tokens and deadlines.
//!
//! A chef that finds the queue full blocks in Redis (`BLPOP` on the queue's
//! `:room` list) for at most [`ROOM_WAIT`]; every dish a diner takes (or
//! acknowledges) drops a token there, which wakes one waiting chef. Tokens
//! are trimmed to [`MAX_TOKENS`] and expire after [`ROOM_TTL_MS`], so stale
//! ones cost a few spurious wake-ups at most.
//!
//! The wait and the next try share a round trip ([`wait_then_push`]): the
//! BLPOP and, right behind it in the same pipeline, the push script, which
//! checks the room itself and so is safe to run whether a token came or the
//! wait timed out. A full queue thus costs a chef one round trip per wait,
//! not two; the tokens are the same as ever, so chefs and diners of older
//! versions wake each other as before.
//!
//! A push that finds the queue full, or leaves it full, clears the tokens
//! (they stood for room that is gone: see `list::PUT`), and a chef whose
//! last push left the queue full starts its next one with a short wait for
//! a token ([`LeftFull`]), rather than a push bound to fail: with the
//! diners eating, the token comes within a round trip, and the push behind
//! it finds room.
//!
//! Redis out of memory refuses a chef's push as it would a full queue that
//! never empties: the chef waits ([`OomBackoff`], 50 ms doubling to 1 s)
//! and tries again, in list and stream mode alike.

use std::time::{Duration, Instant};

use super::Conn;
use crate::shutdown::Shutdown;
use crate::vocab::{Capacity, Fault, Put};

/// What `P:capacity` (`S:capacity`) holds for chefs that run `--unbounded`.
pub(crate) const UNBOUNDED: &str = "unbounded";

/// Writes the bound a chef keeps to `key` (`P:capacity`), once (`done`), for
/// `kitchen info`: it is not otherwise in Redis. Redis out of memory leaves
/// it for a later push: the dishes matter more.
pub(super) fn announce(
    conn: &mut Conn,
    key: &str,
    capacity: Capacity,
    done: &mut bool,
) -> Result<(), Fault> {
    if *done {
        return Ok(());
    }
    let value = capacity
        .limit()
        .map_or_else(|| UNBOUNDED.to_owned(), |c| c.to_string());
    match conn.run(|c| redis::cmd("SET").arg(key).arg(&value).query::<()>(c)) {
        Ok(()) => *done = true,
        Err(Fault::OutOfMemory { .. }) => {}
        Err(e) => return Err(e),
    }
    Ok(())
}

/// How long a chef blocks waiting for a wake-up token before checking again.
pub(crate) const ROOM_WAIT: Duration = Duration::from_millis(500);

const _: () = assert!(ROOM_WAIT.as_millis() <= super::MAX_BLOCK.as_millis());

/// The most wake-up tokens kept in a queue's `:room` list.
pub const MAX_TOKENS: usize = 16;

/// How long unclaimed wake-up tokens live.
pub(super) const ROOM_TTL_MS: u64 = 10_000;

/// The longest a chef whose last push left the queue full waits for a
/// token before pushing again anyway: short, since room may have come
/// without one (an operator emptied the queue, a chef died holding a
/// token); if the push then finds the queue full, the chef waits as usual.
const PEEK_WAIT: Duration = Duration::from_millis(50);

/// How long a chef's note that its last push left the queue full is
/// believed: far below [`ROOM_TTL_MS`], so tokens for the room diners made
/// since have not expired.
const LEFT_FULL_FOR: Duration = Duration::from_secs(1);

/// When this chef's last push left the queue full, if it did.
#[derive(Debug, Default)]
pub(super) struct LeftFull(Option<Instant>);

impl LeftFull {
    /// Notes a push's outcome: the queue `depth` long after it (or found
    /// so, when nothing went in), against the capacity `cap`.
    pub(super) fn note(&mut self, depth: usize, cap: usize) {
        self.0 = (depth >= cap).then(Instant::now);
    }

    /// The wait for a token to put before the next push: a short one when
    /// the last push left the queue full, lately; none otherwise.
    pub(super) fn first_wait(&self, until: Until<'_>) -> Option<Duration> {
        let recent = self.0.is_some_and(|at| at.elapsed() < LEFT_FULL_FOR);
        if !recent {
            return None;
        }
        until.wait().map(|w| w.min(PEEK_WAIT))
    }
}

/// The first wait after Redis refused a chef's push for want of memory;
/// it doubles up to [`OOM_WAIT_MAX`] while the spell lasts.
const OOM_WAIT: Duration = Duration::from_millis(50);

/// The longest wait between a chef's pushes while Redis is out of memory.
const OOM_WAIT_MAX: Duration = Duration::from_secs(1);

/// A chef's wait between pushes Redis refuses for want of memory: only
/// eating frees memory, so the chef waits for diners as for a full queue,
/// backing off while the spell lasts (Redis says why once per spell, see
/// `Conn::out_of_memory`).
#[derive(Debug)]
pub(super) struct OomBackoff(Duration);

impl Default for OomBackoff {
    fn default() -> OomBackoff {
        OomBackoff(OOM_WAIT)
    }
}

impl OomBackoff {
    /// Redis refused a push for want of memory (`fault`): waits before the
    /// next try. `Ok(true)`: try again; `Ok(false)`: stopped while waiting,
    /// the dish never made; `Err(fault)`: the deadline came first, and a
    /// caller that must answer soon (the web entry) learns why.
    pub(super) fn refused(&mut self, until: Until<'_>, fault: Fault) -> Result<bool, Fault> {
        if until.pause(self.0) {
            self.0 = (self.0 * 2).min(OOM_WAIT_MAX);
            return Ok(true);
        }
        match until {
            Until::Deadline(_) => Err(fault),
            Until::Stopped(_) => Ok(false),
        }
    }

    /// A push added dishes: a spell is over (said once), and the next one
    /// starts waiting short again.
    #[inline]
    pub(super) fn took(&mut self, conn: &Conn) {
        conn.has_room();
        self.0 = OOM_WAIT;
    }
}

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

/// The push loop of every bounded chef, list and stream: pushes
/// `payloads`, as many per try as there is room for, until all are in,
/// waiting for room while the queue is full and for memory while Redis
/// refuses, as long as `until` allows. `try_push(conn, rest, wait)` is one
/// round trip (with `wait`, a wait for a wake-up token first) and answers
/// (pushed, depth after); pushed 0 means full.
pub(super) fn push_all(
    conn: &mut Conn,
    left_full: &mut LeftFull,
    payloads: &[String],
    cap: usize,
    until: Until<'_>,
    mut try_push: impl FnMut(&mut Conn, &[String], Option<Duration>) -> Result<(usize, usize), Fault>,
) -> Result<Vec<Put>, Fault> {
    let mut out = Vec::with_capacity(payloads.len());
    let mut rest = payloads;
    let mut oom = OomBackoff::default();
    // Set when the last try found or left the queue full: the next one
    // waits for a token first, in the same round trip (`wait_then_push`).
    let mut wait = left_full.first_wait(until);
    while !rest.is_empty() {
        let (pushed, depth) = match try_push(conn, rest, wait) {
            Ok(got) => got,
            // A spell, not an end: wait for diners to free memory, as for a
            // full queue, and try again. The push added nothing: Redis
            // refuses a script's write only before its first one.
            Err(fault @ Fault::OutOfMemory { .. }) => {
                wait = None;
                if oom.refused(until, fault)? {
                    continue;
                }
                out.push(Put::Stopped);
                break;
            }
            Err(e) => return Err(e),
        };
        left_full.note(depth, cap);
        if pushed > 0 {
            // Only a dish that went in shows Redis has memory again: a
            // push that found the queue full wrote nothing it refuses.
            oom.took(conn);
            wait = left_full.first_wait(until);
            out.extend(queued(depth, pushed));
            rest = &rest[pushed.min(rest.len())..];
            continue;
        }
        // Full: wait for room (stopped, or past the deadline: give up).
        wait = until.wait();
        if wait.is_none() {
            out.push(Put::Stopped);
            break;
        }
    }
    Ok(out)
}

/// One round trip of a bounded push script (`list::PUT`, `stream::ADD`;
/// KEYS: the queue or stream `key`, `room`; ARGV: capacity, payloads…):
/// with `wait`, a wait for a wake-up token first, in the same round trip;
/// `durable`, then a replica's acknowledgement of what went in. Answers
/// (pushed, depth after).
#[allow(clippy::too_many_arguments)]
pub(super) fn push_round_trip(
    conn: &mut Conn,
    script: &redis::Script,
    key: &str,
    room: &str,
    cap: usize,
    payloads: &[String],
    wait: Option<Duration>,
    durable: bool,
) -> Result<(usize, usize), Fault> {
    let tries = conn.durable_tries();
    conn.run(|c| {
        let got: (usize, usize) = match wait {
            None => script.key(key).key(room).arg(cap).arg(payloads).invoke(c)?,
            Some(wait) => {
                let mut push = evalsha(script, &[key, room]);
                push.arg(cap).arg(payloads);
                wait_then_push(c, room, wait, script, &push)?
            }
        };
        if durable && got.0 > 0 {
            super::cluster::wait_for_replica(c, key, tries)?;
        }
        Ok(got)
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

/// EVALSHA of `script` on `keys`, for [`wait_then_push`]; the caller adds
/// the arguments.
pub(super) fn evalsha(script: &redis::Script, keys: &[&str]) -> redis::Cmd {
    let mut eval = redis::cmd("EVALSHA");
    eval.arg(script.get_hash()).arg(keys.len()).arg(keys);
    eval
}

/// The queue was full: blocks in Redis until a diner hands over a token (or
/// `wait` ends), then runs `push` (an [`evalsha`] of `script`), both in one
/// round trip; answers what the push script answers. A script Redis does
/// not know (restarted, flushed) is loaded and run on its own: the wait has
/// happened, the push is all that is left.
pub(super) fn wait_then_push<T: redis::FromRedisValue>(
    c: &mut super::cluster::Con,
    room: &str,
    wait: Duration,
    script: &redis::Script,
    push: &redis::Cmd,
) -> redis::RedisResult<T> {
    let mut pipe = redis::pipe();
    pipe.cmd("BLPOP")
        .arg(room)
        .arg(wait.as_secs_f64())
        .ignore()
        .add_command(push.clone());
    match pipe.query::<(T,)>(c) {
        Ok((got,)) => Ok(got),
        Err(e) if e.code() == Some("NOSCRIPT") || e.to_string().contains("NOSCRIPT") => {
            script.load(c)?;
            push.query(c)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> Fault {
        Fault::OutOfMemory {
            url: "redis://127.0.0.1:6379/5".to_owned(),
            detail: "over its maxmemory".to_owned(),
        }
    }

    #[test]
    fn oom_backoff_doubles_and_answers_as_each_caller_needs_it() {
        let far = Until::Deadline(Instant::now() + Duration::from_secs(60));
        let mut b = OomBackoff(Duration::from_millis(1));
        assert!(matches!(b.refused(far, refused()), Ok(true)));
        assert_eq!(b.0, Duration::from_millis(2));
        // A chef stopped while waiting: the dish was never made.
        let stop = Shutdown::new();
        stop.stop();
        assert!(matches!(
            b.refused(Until::Stopped(&stop), refused()),
            Ok(false)
        ));
        // The web entry past its deadline: it learns why.
        let past = Until::Deadline(Instant::now());
        assert!(matches!(
            b.refused(past, refused()),
            Err(Fault::OutOfMemory { .. })
        ));
    }
}
