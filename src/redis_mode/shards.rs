//! `--shards N`: one logical queue over N list-mode sub-queues, each in its
//! own hash slot (so over several masters of a cluster).
//!
//! **Names.** Shard 0 is the queue `Q` itself (so `LPUSH Q 7` still
//! reaches the kitchen, and one shard is exactly the plain layout); shard
//! `i` is `{Q:shard:<i>:<k>}` (see `slot::shard_key`), each with its own
//! helper keys beside it, by the one rule of `list::Keys`.
//!
//! **Capacity.** The bound is for the whole logical queue: shard `i` holds
//! at most `capacity / N`, plus one for the first `capacity % N` shards, so
//! the shards' bounds add up to exactly `--capacity` (which must be at
//! least N).
//!
//! **Chefs** deal round-robin, one turn shared by every chef and web worker
//! of a process: each dish (or batch, with `--batch`) goes to
//! the next shard in turn, the chef waiting without polling while that
//! shard is full, so a push costs one round trip as on one queue and the
//! shards fill evenly (diners serve them all alike). The web entry, which
//! must answer soon, tries the other shards once each before it answers
//! full. FIFO holds per shard, not across.
//!
//! **Diners** serve every shard with one blocked read at a time: a sweep of
//! non-blocking takes (one round trip per shard, starting one shard further
//! each time, skipping for [`PROBE_EVERY`] a shard just found empty), then,
//! when all are empty, one blocking take (`BLMOVE`, at most
//! `list::TAKE_WAIT`) on one shard chosen by rotation. A dish that lands on
//! another shard meanwhile waits at most that long. Each shard's
//! diner keeps its own processing list and heartbeat, so recovery, acks and
//! out-of-memory handling are list mode's, per shard; a diner thread holds
//! two connections per shard (on a cluster, each reaches the nodes it needs).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{Conn, list};
use crate::dish::{Dish, DishId};
use crate::shutdown::Shutdown;
use crate::vocab::{Capacity, Fault, Put, ReadyError, RedisOptions, Take, TakeError};

/// The options of shard `i`: `opts` with the shard's queue key.
pub(crate) fn shard_opts(opts: &RedisOptions, i: usize) -> RedisOptions {
    let mut o = opts.clone();
    o.queue = super::slot::shard_key(&opts.queue, i, opts.shards.max(1));
    o
}

/// The queue keys of every shard, shard 0 first.
pub(crate) fn shard_queues(opts: &RedisOptions) -> Vec<String> {
    (0..opts.shards.max(1))
        .map(|i| super::slot::shard_key(&opts.queue, i, opts.shards.max(1)))
        .collect()
}

/// The bound of shard `i` of `n`: the shards' bounds add up to `capacity`.
pub(crate) fn shard_capacity(capacity: Capacity, i: usize, n: usize) -> Capacity {
    match capacity {
        Capacity::Unbounded => Capacity::Unbounded,
        Capacity::Bounded(c) => {
            let n = n.max(1);
            Capacity::Bounded((c / n + usize::from(i < c % n)).max(1))
        }
    }
}

/// Whose turn it is: a counter every producer of one process shares, so
/// dishes deal round-robin over the shards whichever chef or web worker
/// makes them.
pub(crate) type Turn = Arc<AtomicUsize>;

/// One chef's end of every shard.
#[derive(Debug)]
pub struct Producer {
    shards: Vec<list::Producer>,
    /// The process's turn: the shard the next dish goes to first.
    turn: Turn,
    pub(crate) batch: usize,
}

impl Producer {
    pub(crate) fn new(
        conn: impl Fn() -> Conn,
        opts: &RedisOptions,
        capacity: Capacity,
        turn: Turn,
    ) -> Producer {
        let n = opts.shards.max(1);
        let shards: Vec<list::Producer> = (0..n)
            .map(|i| {
                list::Producer::new(conn(), &shard_opts(opts, i), shard_capacity(capacity, i, n))
            })
            .collect();
        Producer {
            shards,
            turn,
            batch: opts.batch.max(1),
        }
    }

    fn advance(&mut self) -> usize {
        self.turn.fetch_add(1, Ordering::Relaxed) % self.shards.len()
    }

    /// Puts one dish on the next shard in turn, waiting (without polling)
    /// while it is full.
    pub fn put(&mut self, dish: &Dish, stop: &Shutdown) -> Result<Put, Fault> {
        let i = self.advance();
        self.shards[i].put(dish, stop)
    }

    /// Puts a batch on one shard, the next in turn.
    pub fn put_all(&mut self, dishes: &[Dish], stop: &Shutdown) -> Result<Vec<Put>, Fault> {
        let i = self.advance();
        self.shards[i].put_all(dishes, stop)
    }

    /// Puts one dish if the next shard in turn has room within `wait`; if
    /// not, the other shards get one try each without waiting, so a web
    /// request is refused only when every shard is full.
    pub fn put_within(&mut self, dish: &Dish, wait: Duration) -> Result<Option<Put>, Fault> {
        let i = self.advance();
        if let Some(put) = self.shards[i].put_within(dish, wait)? {
            return Ok(Some(put));
        }
        for _ in 1..self.shards.len() {
            let j = self.advance();
            if let Some(put) = self.shards[j].put_within(dish, Duration::ZERO)? {
                return Ok(Some(put));
            }
        }
        Ok(None)
    }
}

/// One diner's end of every shard.
#[derive(Debug)]
pub struct Consumer {
    shards: Vec<list::Consumer>,
    /// Where the next sweep starts, and the next blocking take waits.
    next: usize,
    /// Which shard handed out each dish not yet acknowledged.
    from: Vec<(DishId, usize)>,
    /// When each shard was last found empty; `None` when it last had a dish.
    empty_at: Vec<Option<Instant>>,
}

/// How long a diner's sweep skips a shard it found empty: the longest a dish
/// on that shard waits while the other shards keep the diner busy (when
/// all are empty, the blocking take rotates over every shard anyway).
const PROBE_EVERY: Duration = Duration::from_millis(20);

impl Consumer {
    pub(crate) fn new(conn: impl Fn() -> Conn, opts: &RedisOptions) -> Consumer {
        let n = opts.shards.max(1);
        // One diner, one set of counts: `info` and the rates read them from
        // any shard's heartbeat.
        let tally = Arc::default();
        let shards = (0..n)
            .map(|i| {
                list::Consumer::new(conn(), conn(), &shard_opts(opts, i))
                    .counting_into(Arc::clone(&tally))
            })
            .collect();
        let next = usize::try_from(crate::dish::now_us()).unwrap_or(0) % n;
        Consumer {
            empty_at: vec![None; n],
            shards,
            next,
            from: Vec::new(),
        }
    }

    /// Readies every shard's diner.
    pub fn ready(&mut self) -> Result<(), ReadyError> {
        self.shards.iter_mut().try_for_each(list::Consumer::ready)
    }

    /// Takes the next dish from any shard (see the module docs).
    pub fn take(&mut self, finished: &Shutdown) -> Result<Take, TakeError> {
        let n = self.shards.len();
        // Read before sweeping: a chef's last push may land between an
        // empty sweep and a later read (as in list mode).
        let was_finished = finished.is_stopped();
        if let Some(take) = self.sweep(was_finished)? {
            return Ok(take);
        }
        // Failed dishes waiting for a retry will be back (a heartbeat moves
        // each onto its shard when due): a closing diner stays for them.
        // Counted after the empty sweep, then one more sweep, since a retry
        // moved between the two is on a queue by then: only an empty one
        // closes.
        let mut i = self.next;
        if was_finished {
            match self.retries_waiting()? {
                None => return Ok(self.sweep(true)?.unwrap_or(Take::Closed)),
                // Wait on a shard where one waits: its take blocks for it
                // rather than closing at once (and being asked again, and
                // again, until the retry is due).
                Some(shard) => i = shard,
            }
        }
        self.next = (i + 1) % n;
        let take = self.shards[i].take(finished)?;
        self.empty_at[i] = match take {
            Take::Dish { .. } | Take::Rejected { .. } => None,
            _ => Some(Instant::now()),
        };
        Ok(match take {
            // One shard closed is not all: the next call sweeps them all.
            Take::Closed => Take::Idle,
            other => self.note(other, i),
        })
    }

    /// One look at the shards without blocking: the first dish found. A
    /// shard found empty a moment ago is not asked again yet, unless
    /// `every` (closing must see every shard empty).
    fn sweep(&mut self, every: bool) -> Result<Option<Take>, TakeError> {
        let n = self.shards.len();
        let now = Instant::now();
        for k in 0..n {
            let i = (self.next + k) % n;
            let recent = self.empty_at[i].is_some_and(|at| now.duration_since(at) < PROBE_EVERY);
            if recent && !every {
                continue;
            }
            match self.shards[i].take_nowait()? {
                Some(take) => {
                    self.empty_at[i] = None;
                    self.next = (i + 1) % n;
                    return Ok(Some(self.note(take, i)));
                }
                None => self.empty_at[i] = Some(now),
            }
        }
        Ok(None)
    }

    /// The first shard where failed dishes wait for a retry, if any.
    fn retries_waiting(&mut self) -> Result<Option<usize>, Fault> {
        for (i, shard) in self.shards.iter_mut().enumerate() {
            if shard.retries_waiting()? {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    fn note(&mut self, take: Take, shard: usize) -> Take {
        if let Take::Dish { dish, .. } = &take {
            self.from.push((dish.id, shard));
        }
        take
    }

    /// Acknowledges `dish` on the shard it came from.
    pub fn ack(&mut self, dish: &Dish) -> Result<(), Fault> {
        match self.settle(dish) {
            Some(shard) => shard.ack(dish),
            None => Ok(()),
        }
    }

    /// Sets `dish` aside for a retry on the shard it came from (whose
    /// diners bring it back when due).
    pub fn retry(&mut self, dish: &Dish, delay: Duration) -> Result<(), Fault> {
        match self.settle(dish) {
            Some(shard) => shard.retry(dish, delay),
            None => Ok(()),
        }
    }

    /// Makes `dish` a dead letter of the shard it came from.
    pub fn bury(&mut self, dish: &Dish, reason: &str) -> Result<(), Fault> {
        match self.settle(dish) {
            Some(shard) => shard.bury(dish, reason),
            None => Ok(()),
        }
    }

    /// The shard `dish` came from, forgotten there; `None` for a dish this
    /// diner does not hold (given back by a reconnect meanwhile).
    fn settle(&mut self, dish: &Dish) -> Option<&mut list::Consumer> {
        let pos = self.from.iter().position(|(id, _)| *id == dish.id)?;
        let (_, shard) = self.from.swap_remove(pos);
        self.shards.get_mut(shard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_bounds_add_up_to_the_capacity() {
        for (c, n) in [(10, 3), (10, 1), (3, 3), (100, 7)] {
            let sum: usize = (0..n)
                .map(|i| {
                    shard_capacity(Capacity::Bounded(c), i, n)
                        .limit()
                        .unwrap_or(0)
                })
                .sum();
            assert_eq!(sum, c, "{c} over {n}");
        }
        assert_eq!(
            shard_capacity(Capacity::Unbounded, 1, 3),
            Capacity::Unbounded
        );
    }
}
