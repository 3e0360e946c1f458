//! The backend enum: the one place that sees both the kitchen and the queues.
//!
//! Like crossbeam-channel's `SenderFlavor`, each public method is one `match`
//! that delegates to a backend module; the kitchen and the web entry know
//! nothing of crossbeam or Redis, and the backends nothing of chefs and
//! diners. The words both sides share live in [`crate::vocab`], re-exported
//! here so that users of the library find them beside the enum.

use std::sync::Arc;
use std::time::Duration;

use crate::dish::{Dish, DishId};
use crate::local;
#[cfg(feature = "redis")]
use crate::redis_mode;
use crate::results::{DishResult, LocalResults};
use crate::shutdown::Shutdown;

pub use crate::vocab::{
    AckError, BackendConfig, Capacity, DeadError, DeadLetter, DeadLetters, Fault, GaugeError, Mode,
    OpenError, POLL, Put, PutError, ReadyError, RedisOptions, ResultLimits, ResultsError, Retry,
    Returned, Stamping, Take, TakeError, TlsFiles, Which, redact_url,
};

/// An open backend: hands out producers, consumers, gauges and result stores.
#[derive(Debug)]
pub enum Backend {
    /// The in-process channel.
    Local(local::LocalQueue),
    /// A Redis list, channel or stream.
    #[cfg(feature = "redis")]
    Redis(Box<redis_mode::RedisQueue>),
}

impl Backend {
    /// Opens the backend that `config` names with room for `capacity`,
    /// keeping results of tracked dishes within `results`.
    ///
    /// A shared backend is checked here (reachable, credentials, key types),
    /// so that a wrong address fails before any thread starts.
    pub fn open(
        config: &BackendConfig,
        capacity: Capacity,
        results: ResultLimits,
    ) -> Result<Backend, OpenError> {
        match config {
            BackendConfig::Local => Ok(Backend::Local(local::LocalQueue::with_results(
                capacity, results,
            ))),
            #[cfg(feature = "redis")]
            BackendConfig::Redis(o) => Ok(Backend::Redis(Box::new(redis_mode::RedisQueue::open(
                o.clone(),
                capacity,
                results,
            )?))),
            #[cfg(not(feature = "redis"))]
            BackendConfig::Redis(_) => Err(OpenError::NotCompiled),
        }
    }

    /// Like [`Backend::open`], without checking a shared backend first: for
    /// a caller that serves while it is away (the web entry's `503`s).
    pub fn open_unchecked(
        config: &BackendConfig,
        capacity: Capacity,
        results: ResultLimits,
    ) -> Result<Backend, OpenError> {
        match config {
            BackendConfig::Local => Backend::open(config, capacity, results),
            #[cfg(feature = "redis")]
            BackendConfig::Redis(o) => Ok(Backend::Redis(Box::new(
                redis_mode::RedisQueue::unchecked(o.clone(), capacity, results)?,
            ))),
            #[cfg(not(feature = "redis"))]
            BackendConfig::Redis(_) => Err(OpenError::NotCompiled),
        }
    }

    /// A producer for one chef thread. Cheap; any connection opens on first use,
    /// inside the thread that uses it.
    pub fn producer(&self) -> Result<Producer, OpenError> {
        match self {
            Backend::Local(q) => Ok(Producer::Local(q.producer()?)),
            #[cfg(feature = "redis")]
            Backend::Redis(q) => Ok(Producer::Redis(Box::new(q.producer()))),
        }
    }

    /// A producer onto the publish/subscribe channel beside the queue, for
    /// the web entry's `/pubsub`; `None` where there is no channel.
    pub fn publisher(&self) -> Option<Producer> {
        match self {
            Backend::Local(_) => None,
            #[cfg(feature = "redis")]
            Backend::Redis(q) => Some(Producer::Redis(Box::new(q.publisher()))),
        }
    }

    /// A consumer for one diner thread; like [`Backend::producer`], lazy.
    pub fn consumer(&self) -> Consumer {
        match self {
            Backend::Local(q) => Consumer::Local(q.consumer()),
            #[cfg(feature = "redis")]
            Backend::Redis(q) => Consumer::Redis(Box::new(q.consumer())),
        }
    }

    /// A gauge that reads the queue's depth and health, for status lines and figures.
    pub fn gauge(&self) -> Gauge {
        match self {
            Backend::Local(q) => Gauge::Local(q.consumer()),
            #[cfg(feature = "redis")]
            Backend::Redis(q) => Gauge::Redis(Box::new(q.gauge())),
        }
    }

    /// Where one thread records and reads what became of tracked dishes.
    pub fn results(&self) -> Results {
        match self {
            Backend::Local(q) => Results::Local(q.results()),
            #[cfg(feature = "redis")]
            Backend::Redis(q) => Results::Redis(Box::new(q.results())),
        }
    }

    /// How dishes are stamped with the time they were made. A `quiet`
    /// full-speed run may sample, where reading the clock (and the queue's
    /// length) on every dish costs more than moving it: the local queue then
    /// relaxes its depth readings too. Redis round trips dwarf a clock read.
    pub fn stamping(&mut self, quiet_full_speed: bool) -> Stamping {
        match self {
            Backend::Local(q) if quiet_full_speed => {
                q.relax_depth();
                Stamping::Sampled
            }
            Backend::Local(_) => Stamping::Every,
            #[cfg(feature = "redis")]
            Backend::Redis(_) => Stamping::Every,
        }
    }

    /// The bound a summary shows: `None` where a bound means nothing (a
    /// channel holds nothing) or there is none.
    pub fn shown_capacity(&self, capacity: Capacity) -> Option<usize> {
        match self {
            Backend::Local(_) => capacity.limit(),
            #[cfg(feature = "redis")]
            Backend::Redis(q) => q.holds_dishes().then_some(capacity.limit()).flatten(),
        }
    }

    /// Whether other processes share this queue (so their diners, not this
    /// process's, eat what it is given).
    pub fn is_shared(&self) -> bool {
        match self {
            Backend::Local(_) => false,
            #[cfg(feature = "redis")]
            Backend::Redis(_) => true,
        }
    }

    /// Takes no more producers: once those handed out are dropped, consumers
    /// drain what is left and then see [`Take::Closed`].
    pub fn seal(&self) {
        match self {
            Backend::Local(q) => q.seal(),
            // Redis is shared with other processes: it never closes.
            #[cfg(feature = "redis")]
            Backend::Redis(_) => {}
        }
    }
}

/// One chef's end of the queue.
#[derive(Debug)]
pub enum Producer {
    /// The in-process channel.
    Local(local::Producer),
    /// A Redis list, channel or stream.
    #[cfg(feature = "redis")]
    Redis(Box<redis_mode::Producer>),
}

impl Producer {
    /// Puts `dish`, waiting for room while the queue is full, until `shutdown`.
    #[inline]
    pub fn put(&mut self, dish: &Dish, shutdown: &Shutdown) -> Result<Put, PutError> {
        match self {
            Producer::Local(p) => Ok(p.put(dish, shutdown)),
            #[cfg(feature = "redis")]
            Producer::Redis(p) => Ok(p.put(dish, shutdown)?),
        }
    }

    /// How many dishes one round trip should carry (`--batch`); 1 for local.
    pub fn batch(&self) -> usize {
        match self {
            Producer::Local(_) => 1,
            #[cfg(feature = "redis")]
            Producer::Redis(p) => p.batch(),
        }
    }

    /// Puts `dishes` in order, as few round trips as the backend allows, still
    /// waiting for room while full. One outcome per dish put; fewer than
    /// `dishes` (the last being [`Put::Stopped`]) when `shutdown` came first.
    pub fn put_all(&mut self, dishes: &[Dish], shutdown: &Shutdown) -> Result<Vec<Put>, PutError> {
        match self {
            Producer::Local(p) => Ok(p.put_all(dishes, shutdown)),
            #[cfg(feature = "redis")]
            Producer::Redis(p) => Ok(p.put_all(dishes, shutdown)?),
        }
    }

    /// Puts `dish` if there is room within `wait`; `None` when the queue is
    /// still full then.
    ///
    /// For callers that must answer soon (the web entry's `503`) rather than
    /// wait as long as a chef does.
    #[inline]
    pub fn put_within(&mut self, dish: &Dish, wait: Duration) -> Result<Option<Put>, PutError> {
        match self {
            Producer::Local(p) => Ok(p.put_within(dish, wait)),
            #[cfg(feature = "redis")]
            Producer::Redis(p) => Ok(p.put_within(dish, wait)?),
        }
    }
}

/// One diner's end of the queue.
#[derive(Debug)]
pub enum Consumer {
    /// The in-process channel.
    Local(local::Consumer),
    /// A Redis list, channel or stream.
    #[cfg(feature = "redis")]
    Redis(Box<redis_mode::Consumer>),
}

impl Consumer {
    /// Gets ready to receive: connects and, in pub/sub mode, subscribes, so
    /// that a dish published after this returns reaches this consumer.
    pub fn ready(&mut self) -> Result<(), ReadyError> {
        match self {
            Consumer::Local(_) => Ok(()),
            #[cfg(feature = "redis")]
            Consumer::Redis(c) => c.ready(),
        }
    }

    /// Takes the oldest dish, waiting up to the backend's poll interval.
    ///
    /// `finished` is stopped once every producer of this run is done: a
    /// backend that cannot see disconnection (Redis) then answers
    /// [`Take::Closed`] as soon as the queue is empty.
    // Always: the diner's loop is the hot path of a full-speed local run,
    // and the call alone costs as much as the channel's receive.
    #[inline(always)]
    pub fn take(&mut self, finished: &Shutdown) -> Result<Take, TakeError> {
        match self {
            Consumer::Local(c) => Ok(c.take(finished)),
            #[cfg(feature = "redis")]
            Consumer::Redis(c) => Ok(c.take(finished)?),
        }
    }

    /// Confirms that `dish`, the one in hand, was eaten, so the backend may forget it.
    #[inline]
    pub fn ack(&mut self, dish: &Dish) -> Result<(), AckError> {
        match self {
            // The channel forgot the dish when it handed it out.
            Consumer::Local(_) => {
                let _ = dish;
                Ok(())
            }
            #[cfg(feature = "redis")]
            Consumer::Redis(c) => Ok(c.ack(dish)?),
        }
    }

    /// Whether a failed dish can be tried again: not on a channel, which
    /// cannot take a delivery back (a failure there is final).
    pub fn can_retry(&self) -> bool {
        match self {
            Consumer::Local(_) => true,
            #[cfg(feature = "redis")]
            Consumer::Redis(c) => c.can_retry(),
        }
    }

    /// Sets `dish`, the one in hand, aside to be tried again after `delay`
    /// by any diner, as its next attempt: out of the queue and into the
    /// waiting retries at once (a killed diner or a restarted Redis loses
    /// neither).
    pub fn retry(&mut self, dish: &Dish, delay: Duration) -> Result<(), AckError> {
        match self {
            Consumer::Local(c) => {
                c.retry(dish, delay);
                Ok(())
            }
            #[cfg(feature = "redis")]
            Consumer::Redis(c) => Ok(c.retry(dish, delay)?),
        }
    }

    /// Makes `dish`, the one in hand, a dead letter for `reason` (its last
    /// attempt failed): out of the queue and into the dead letters at once,
    /// for a person to requeue or purge.
    pub fn bury(&mut self, dish: &Dish, reason: &str) -> Result<(), AckError> {
        match self {
            Consumer::Local(c) => {
                c.bury(dish, reason);
                Ok(())
            }
            #[cfg(feature = "redis")]
            Consumer::Redis(c) => Ok(c.bury(dish, reason)?),
        }
    }

    /// Gives back `dish`, the one in hand, unfinished (the shutdown
    /// deadline passed): says where it went.
    pub fn give_back(&mut self, dish: &Dish) -> Returned {
        match self {
            // The channel handed it over: this process holds it, and ends.
            Consumer::Local(_) => {
                let _ = dish;
                Returned::Held
            }
            #[cfg(feature = "redis")]
            Consumer::Redis(c) => c.give_back(dish),
        }
    }

    /// Dishes this consumer can show were sent to it and never eaten: for a
    /// pub/sub subscription, those that never arrived (it dropped) and
    /// those delivered and still unread when the diner stopped; 0 for
    /// queues, which lose nothing. Asked once, when the diner is done: a
    /// subscription stops listening here.
    pub fn lost(&mut self) -> u64 {
        match self {
            Consumer::Local(_) => 0,
            #[cfg(feature = "redis")]
            Consumer::Redis(c) => c.lost(),
        }
    }
}

/// Reads the queue's depth and health.
#[derive(Debug)]
pub enum Gauge {
    /// The in-process channel.
    Local(local::Consumer),
    /// A Redis list, channel or stream.
    #[cfg(feature = "redis")]
    Redis(Box<redis_mode::Gauge>),
}

impl Gauge {
    /// Dishes waiting now (0 for a channel, which holds nothing).
    pub fn depth(&mut self) -> Result<usize, GaugeError> {
        match self {
            Gauge::Local(c) => Ok(c.depth()),
            #[cfg(feature = "redis")]
            Gauge::Redis(g) => Ok(g.depth()?),
        }
    }

    /// Dishes waiting in each shard of a queue spread over several, shard 0
    /// first; `None` for a queue in one piece, or when it cannot be read.
    pub fn shard_depths(&mut self) -> Option<Vec<usize>> {
        match self {
            Gauge::Local(_) => None,
            #[cfg(feature = "redis")]
            Gauge::Redis(g) => g.shard_depths().ok().filter(|d| d.len() > 1),
        }
    }

    /// Whether the queue answers and can take dishes ([`Fault::OutOfMemory`]
    /// while a shared backend is out of memory).
    pub fn health(&mut self) -> Result<(), GaugeError> {
        match self {
            Gauge::Local(_) => Ok(()),
            #[cfg(feature = "redis")]
            Gauge::Redis(g) => Ok(g.health()?),
        }
    }

    /// Whether a shared backend is out of memory now (refusing new dishes
    /// until diners free room); `None` where there is no server, or it does
    /// not say.
    pub fn out_of_memory(&mut self) -> Option<bool> {
        match self {
            Gauge::Local(_) => None,
            #[cfg(feature = "redis")]
            Gauge::Redis(g) => g.memory().ok().map(|m| m.full()),
        }
    }

    /// Diners subscribed to the channel now; `None` where there is no
    /// channel, or it cannot be read.
    pub fn subscribers(&mut self) -> Option<usize> {
        match self {
            Gauge::Local(_) => None,
            #[cfg(feature = "redis")]
            Gauge::Redis(g) => g.subscribers().ok(),
        }
    }

    /// Live diner processes' threads on a shared queue; `None` where this
    /// process cannot see them (the local queue's diners are its own).
    pub fn diners(&mut self) -> Option<usize> {
        match self {
            Gauge::Local(_) => None,
            #[cfg(feature = "redis")]
            Gauge::Redis(g) => g.diners().ok(),
        }
    }

    /// Dishes eaten and failed by the live diner processes of a shared
    /// queue, as their heartbeats tell; `None` where this process's own
    /// diners are the only ones (it counts them itself), or it cannot be read.
    pub fn diners_counts(&mut self) -> Option<(u64, u64)> {
        match self {
            Gauge::Local(_) => None,
            #[cfg(feature = "redis")]
            Gauge::Redis(g) => g.diners_counts().ok(),
        }
    }

    /// The newest `limit` dead letters (newest first), how many there are,
    /// and how many were trimmed beyond `--dead-max`.
    pub fn dead_letters(&mut self, limit: usize) -> Result<DeadLetters, DeadError> {
        match self {
            Gauge::Local(c) => Ok(c.dead_letters(limit)),
            #[cfg(feature = "redis")]
            Gauge::Redis(g) => Ok(g.dead_letters(limit)?),
        }
    }

    /// Puts the dead letters `which` names back on the queue, with fresh
    /// attempts, atomically: all of them, or (an id that is not dead, one
    /// that cannot be requeued) none. [`Which::All`] requeues every letter
    /// that can be, and leaves the others. Returns how many.
    pub fn dead_requeue(&mut self, which: &Which) -> Result<usize, DeadError> {
        match self {
            Gauge::Local(c) => c.dead_requeue(which),
            #[cfg(feature = "redis")]
            Gauge::Redis(g) => g.dead_manage(which, true),
        }
    }

    /// Deletes the dead letters `which` names: all of them, or (an id that
    /// is not dead) none. Returns how many.
    pub fn dead_purge(&mut self, which: &Which) -> Result<usize, DeadError> {
        match self {
            Gauge::Local(c) => c.dead_purge(which),
            #[cfg(feature = "redis")]
            Gauge::Redis(g) => g.dead_manage(which, false),
        }
    }

    /// Failed dishes waiting out their delay before their next attempt.
    pub fn waiting_retries(&mut self) -> Result<usize, GaugeError> {
        match self {
            Gauge::Local(c) => Ok(c.waiting_retries()),
            #[cfg(feature = "redis")]
            Gauge::Redis(g) => Ok(g.waiting_retries()?),
        }
    }
}

/// Where one thread records and reads what became of tracked dishes.
#[derive(Debug)]
pub enum Results {
    /// In this process's memory (the web entry and its own diners).
    Local(Arc<LocalResults>),
    /// In Redis, for the web entry of any process to read.
    #[cfg(feature = "redis")]
    Redis(Box<redis_mode::Results>),
}

impl Results {
    /// `dish` was just queued (recorded before the put, so a quick diner
    /// finds the record).
    pub fn queued(&mut self, dish: &Dish) -> Result<(), ResultsError> {
        match self {
            Results::Local(r) => {
                r.insert(dish);
                Ok(())
            }
            #[cfg(feature = "redis")]
            Results::Redis(r) => Ok(r.put(&DishResult::queued(dish))?),
        }
    }

    /// `dish` is in `diner`'s hands, on its `attempt`th try, since `started` (µs).
    pub fn eating(
        &mut self,
        dish: &Dish,
        diner: &str,
        attempt: u32,
        started: u64,
    ) -> Result<(), ResultsError> {
        self.record(DishResult::eating(dish, diner, attempt, started))
    }

    /// `diner` has eaten `dish`; its command printed `output`.
    pub fn eaten(
        &mut self,
        dish: &Dish,
        diner: &str,
        attempt: u32,
        started: u64,
        output: Option<String>,
    ) -> Result<(), ResultsError> {
        self.record(DishResult::eaten(dish, diner, attempt, started, output))
    }

    /// `dish` failed in `diner`'s hands, for `reason`.
    pub fn failed(
        &mut self,
        dish: &Dish,
        diner: &str,
        attempt: u32,
        started: u64,
        reason: &str,
    ) -> Result<(), ResultsError> {
        self.record(DishResult::failed(dish, diner, attempt, started, reason))
    }

    /// `dish` failed in `diner`'s hands, for `reason`, and will be tried
    /// again at `retry_at` (µs since the epoch).
    pub fn retrying(
        &mut self,
        dish: &Dish,
        diner: &str,
        started: u64,
        reason: &str,
        retry_at: u64,
    ) -> Result<(), ResultsError> {
        self.record(DishResult::retrying(
            dish,
            diner,
            dish.attempt,
            started,
            reason,
            retry_at,
        ))
    }

    /// Replaces a tracked dish's record.
    fn record(&mut self, r: DishResult) -> Result<(), ResultsError> {
        match self {
            Results::Local(store) => {
                if let Ok(id) = r.id.parse() {
                    store.set(id, r);
                }
                Ok(())
            }
            #[cfg(feature = "redis")]
            Results::Redis(store) => Ok(store.put(&r)?),
        }
    }

    /// Forgets `id`: its dish never made it onto the queue. Best effort: a
    /// record left behind expires with its TTL.
    pub fn forget(&mut self, id: DishId) {
        match self {
            Results::Local(r) => r.remove(id),
            #[cfg(feature = "redis")]
            Results::Redis(r) => {
                let _ = r.remove(id);
            }
        }
    }

    /// The record of `id`, unless unknown or expired.
    pub fn get(&mut self, id: DishId) -> Result<Option<DishResult>, ResultsError> {
        match self {
            Results::Local(r) => Ok(r.get(id)),
            #[cfg(feature = "redis")]
            Results::Redis(r) => Ok(r.get(id)?),
        }
    }
}

/// What is in a shared queue now, as `kitchen info` prints it: a table for
/// people, or one JSON object.
pub fn info(opts: &RedisOptions, capacity: Capacity, json: bool) -> Result<String, OpenError> {
    #[cfg(feature = "redis")]
    {
        let info = redis_mode::info(opts, capacity)?;
        Ok(if json {
            info.to_json() + "\n"
        } else {
            info.to_table()
        })
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = (opts, capacity, json);
        Err(OpenError::NotCompiled)
    }
}

/// `kitchen info --watch`: the info view on `out` every second until
/// `shutdown`, redrawn in place on a terminal (`tty`), else each frame
/// followed by a `----` line.
pub fn watch(
    opts: &RedisOptions,
    capacity: Capacity,
    shutdown: &Shutdown,
    out: &mut dyn std::io::Write,
    tty: bool,
) -> Result<(), OpenError> {
    #[cfg(feature = "redis")]
    {
        Ok(redis_mode::watch(opts, capacity, shutdown, out, tty)?)
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = (opts, capacity, shutdown, out, tty);
        Err(OpenError::NotCompiled)
    }
}

/// Checks a Redis URL as the backend will read it; `Err` is the usage
/// error to print (never echoing a password). Without the `redis` feature
/// there is nothing more to check: opening says the feature is missing.
pub fn check_redis_url(url: &str) -> Result<(), String> {
    #[cfg(feature = "redis")]
    {
        redis_mode::validate_url(url)
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = url;
        Ok(())
    }
}

/// Why a key name cannot have its helper keys in its own hash slot (see
/// `redis_mode/slot.rs`), for `--cluster`'s usage error; `None` when it can.
pub fn slot_problem(key: &str) -> Option<String> {
    #[cfg(feature = "redis")]
    {
        redis_mode::slot_problem(key)
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = key;
        None
    }
}
