//! The Redis backend: a list (each dish to one diner, oldest first, nothing
//! lost), a pub/sub channel (each dish to every subscribed diner), or a
//! stream read by consumer groups (each group gets every dish, each dish to
//! one diner of a group).
//!
//! Every producer, consumer and gauge owns one connection, opened lazily in
//! the thread that uses it (see `Conn`), which reconnects with backoff when
//! Redis goes away and gives up only after [`RedisOptions::reconnect_for`].
//!
//! | file | job |
//! |---|---|
//! | `list.rs` | list mode: bounded push, take into a processing list, ack, heartbeats, recovery |
//! | `pubsub.rs` | pub/sub mode: publish, subscribe, end-of-run markers |
//! | `stream.rs` | stream mode: consumer groups, bounded adds, acknowledgements, claims of dead diners' entries, trimming |
//! | `info.rs` | `kitchen info`: what an operator asks first |
//! | `results.rs` | what became of tracked dishes, beside the queue |
//! | `dead.rs` | dead letters: written by diners, read, requeued and purged by `kitchen dead` |
//! | `room.rs` | waiting for room without polling: wake-up tokens and deadlines (list and stream) |
//! | `tls.rs` | `rediss://`: certificates read once, failed handshakes explained |
//! | `acl.rs` | `NOPERM`: the command, key or channel an ACL user lacks, and its grant |
//! | `tally.rs` | a diner's counts, written into its heartbeat for the operator's view |
//! | `watch.rs` | `kitchen info --watch`: the info view every second, with rates |
//! | `cluster.rs` | one connection type for one server or a Redis Cluster; `--durable`'s `WAIT` |
//! | `slot.rs` | hash slots: helper keys in their queue's slot, shard names |
//! | `shards.rs` | `--shards`: one logical list over several hash slots |

mod acl;
mod cluster;
mod dead;
mod info;
mod list;
mod pubsub;
mod results;
mod room;
mod shards;
mod slot;
mod stream;
mod tally;
mod tls;
mod watch;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::RedisError;

use cluster::{Con, Link};

use crate::dish::Dish;
use crate::shutdown::Shutdown;
use crate::vocab::{
    Capacity, DeadError, DeadLetters, Fault, Mode, Put, ReadyError, RedisOptions, ResultLimits,
    Returned, Take, TakeError, Which, redact_url,
};

pub use info::{ConsumerInfo, GroupInfo, ShardInfo, StreamInfo};
pub use info::{Info, InfoDiner, info};
pub use results::Results;
pub use slot::slot_problem;
pub use watch::watch;

/// How long a connection attempt may take before Redis counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest any blocking command (BLMOVE, BLPOP) waits inside Redis.
const MAX_BLOCK: Duration = Duration::from_secs(1);

/// Every read waits this long for a reply. The `redis` crate drops a reply
/// that arrives after the read timeout, while Redis has already acted on the
/// command (a popped dish would be gone), so this must stay well above
/// [`MAX_BLOCK`].
const READ_TIMEOUT: Duration = Duration::from_secs(5);

const _: () = assert!(READ_TIMEOUT.as_millis() >= MAX_BLOCK.as_millis() + 2_000);

/// What fail-fast connections (the web entry's) wait for a reply, and for a
/// new connection half of it: a request is answered within about this,
/// whatever Redis does. Their only blocking command waits for room at most
/// [`list::ROOM_WAIT`], and a reply dropped after the timeout costs at most a
/// wake-up token or a dish queued twice (at least once), so the rule of
/// [`READ_TIMEOUT`] relaxes to one second of margin.
///
/// The redis crate waits the whole timeout once per reply it expects, so a
/// silent server costs a pipeline of N commands N timeouts: fail-fast paths
/// send one command or one script per round trip, connections skip the
/// crate's `CLIENT SETINFO` (two replies more), and after one timeout every
/// fail-fast connection answers [`Fault::Slow`] at once for the next
/// `FAST_TIMEOUT` (see [`Conn::run_fresh`]).
const FAST_TIMEOUT: Duration = Duration::from_millis(1_500);

/// Until when (µs since the epoch) fail-fast connections answer
/// [`Fault::Slow`] without asking, after one of them waited in vain.
static SLOW_UNTIL: AtomicU64 = AtomicU64::new(0);

/// How long (ms) the fail-fast connection that set [`SLOW_UNTIL`] waited.
static SLOW_WAITED_MS: AtomicU64 = AtomicU64::new(0);

const _: () = assert!(FAST_TIMEOUT.as_millis() >= room::ROOM_WAIT.as_millis() + 1_000);
const _: () = assert!(FAST_TIMEOUT.as_millis() >= list::TAKE_WAIT.as_millis() + 1_000);
const _: () = assert!(FAST_TIMEOUT.as_millis() <= READ_TIMEOUT.as_millis());

/// An open Redis backend: validated options and a checked server.
#[derive(Debug)]
pub struct RedisQueue {
    opts: RedisOptions,
    capacity: Capacity,
    results: ResultLimits,
    client: Link,
    /// The shard the next dish of this process goes to (`--shards`): one
    /// turn shared by every chef and web worker, so dishes deal evenly.
    turn: shards::Turn,
}

impl RedisQueue {
    /// Parses the URL, connects once and checks that the queue key is usable,
    /// so that a wrong address, password or key fails before any thread starts.
    pub fn open(
        opts: RedisOptions,
        capacity: Capacity,
        results: ResultLimits,
    ) -> Result<RedisQueue, Fault> {
        let client = link(&opts)?;
        let mut con = connect_checked(&client, &opts.url, &opts.queue)?;
        match opts.mode {
            Mode::List => {
                for queue in shards::shard_queues(&opts) {
                    check_list(&mut con, &opts.url, &queue)?;
                    check_list(&mut con, &opts.url, &list::Keys::new(&queue).dead)?;
                }
            }
            Mode::Stream => stream::check(&mut con, &opts)?,
            Mode::Pubsub => {}
        }
        Ok(RedisQueue {
            opts,
            capacity,
            results,
            client,
            turn: shards::Turn::default(),
        })
    }

    /// Like [`RedisQueue::open`] without connecting: the URL is parsed, and
    /// the first use connects.
    pub fn unchecked(
        opts: RedisOptions,
        capacity: Capacity,
        results: ResultLimits,
    ) -> Result<RedisQueue, Fault> {
        Ok(RedisQueue {
            client: link(&opts)?,
            turn: shards::Turn::default(),
            opts,
            capacity,
            results,
        })
    }

    fn conn(&self) -> Conn {
        Conn::new(self.client.clone(), &self.opts)
    }

    /// A producer for one chef thread; connects on first use.
    pub fn producer(&self) -> Producer {
        match self.opts.mode {
            Mode::List if self.opts.shards > 1 => Producer::Sharded(shards::Producer::new(
                || self.conn(),
                &self.opts,
                self.capacity,
                self.turn.clone(),
            )),
            Mode::List => {
                Producer::List(list::Producer::new(self.conn(), &self.opts, self.capacity))
            }
            Mode::Pubsub => Producer::Pubsub(pubsub::Producer::new(self.conn(), &self.opts)),
            Mode::Stream => Producer::Stream(stream::Producer::new(
                self.conn(),
                &self.opts,
                self.capacity,
            )),
        }
    }

    /// A consumer for one diner thread; connects on first use.
    pub fn consumer(&self) -> Consumer {
        match self.opts.mode {
            Mode::List if self.opts.shards > 1 => {
                Consumer::Sharded(shards::Consumer::new(|| self.conn(), &self.opts))
            }
            Mode::List => Consumer::List(list::Consumer::new(self.conn(), self.conn(), &self.opts)),
            Mode::Pubsub => Consumer::Pubsub(pubsub::Consumer::new(
                self.client.clone(),
                self.conn(),
                &self.opts,
            )),
            Mode::Stream => {
                Consumer::Stream(stream::Consumer::new(self.conn(), self.conn(), &self.opts))
            }
        }
    }

    /// A publisher on the channel, whatever the mode (the web entry's `/pubsub`).
    pub fn publisher(&self) -> Producer {
        Producer::Pubsub(pubsub::Producer::new(self.conn(), &self.opts))
    }

    /// A gauge of depth, health, subscribers and live diners; connects on first use.
    pub fn gauge(&self) -> Gauge {
        Gauge {
            conn: self.conn(),
            queues: if self.opts.mode == Mode::List {
                shards::shard_queues(&self.opts)
            } else {
                Vec::new()
            },
            keys: list::Keys::new(&self.opts.queue),
            channel: self.opts.channel.clone(),
            stream: (self.opts.mode == Mode::Stream).then(|| stream::Gauge::new(&self.opts)),
            group: (self.opts.mode == Mode::Stream)
                .then(|| (self.opts.stream.clone(), self.opts.group.clone())),
            morgues: self.morgues(),
        }
    }

    /// The dead letters of this mode's queue: the stream's in stream mode,
    /// else the list's (where pub/sub has none of its own), one per shard
    /// with `--shards` (each beside its shard, in its hash slot).
    fn morgues(&self) -> Vec<dead::Morgue> {
        if self.opts.mode == Mode::Stream {
            let k = stream::Keys::new(&self.opts.stream);
            return vec![dead::Morgue::new(
                k.dead,
                k.dead_trimmed,
                dead::Target::Stream(k.stream),
            )];
        }
        let queues = if self.opts.mode == Mode::List {
            shards::shard_queues(&self.opts)
        } else {
            vec![self.opts.queue.clone()]
        };
        queues
            .iter()
            .map(|q| {
                let k = list::Keys::new(q);
                dead::Morgue::new(k.dead, k.dead_trimmed, dead::Target::List(k.queue))
            })
            .collect()
    }

    /// A results store for one thread; connects on first use.
    pub fn results(&self) -> Results {
        Results::new(self.conn(), &self.opts, self.results.max)
    }

    /// Whether dishes wait in Redis (a list), rather than pass through (a channel).
    pub fn holds_dishes(&self) -> bool {
        self.opts.mode != Mode::Pubsub
    }
}

/// One chef's end of Redis.
#[derive(Debug)]
pub enum Producer {
    /// Pushes onto the list.
    List(list::Producer),
    /// Publishes on the channel.
    Pubsub(pubsub::Producer),
    /// Adds to the stream.
    Stream(stream::Producer),
    /// Deals dishes over the shards of one logical list.
    Sharded(shards::Producer),
}

impl Producer {
    /// Puts one dish (see [`crate::queue::Producer::put`]).
    pub fn put(&mut self, dish: &Dish, stop: &Shutdown) -> Result<Put, Fault> {
        match self {
            Producer::List(p) => p.put(dish, stop),
            Producer::Pubsub(p) => p.put(dish),
            Producer::Stream(p) => p.put(dish, stop),
            Producer::Sharded(p) => p.put(dish, stop),
        }
    }

    /// Dishes per round trip.
    pub fn batch(&self) -> usize {
        match self {
            Producer::List(p) => p.batch,
            Producer::Pubsub(p) => p.batch,
            Producer::Stream(p) => p.batch,
            Producer::Sharded(p) => p.batch,
        }
    }

    /// Puts several dishes in few round trips (see [`crate::queue::Producer::put_all`]).
    pub fn put_all(&mut self, dishes: &[Dish], stop: &Shutdown) -> Result<Vec<Put>, Fault> {
        match self {
            Producer::List(p) => p.put_all(dishes, stop),
            Producer::Pubsub(p) => p.put_all(dishes),
            Producer::Stream(p) => p.put_all(dishes, stop),
            Producer::Sharded(p) => p.put_all(dishes, stop),
        }
    }

    /// Puts one dish if there is room within `wait` (see [`crate::queue::Producer::put_within`]).
    pub fn put_within(&mut self, dish: &Dish, wait: Duration) -> Result<Option<Put>, Fault> {
        match self {
            Producer::List(p) => p.put_within(dish, wait),
            // Publishing never waits for room: a channel holds nothing.
            Producer::Pubsub(p) => p.put(dish).map(Some),
            Producer::Stream(p) => p.put_within(dish, wait),
            Producer::Sharded(p) => p.put_within(dish, wait),
        }
    }
}

/// One diner's end of Redis.
#[derive(Debug)]
// One per diner thread, boxed by the backend enum: size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Consumer {
    /// Takes from the list.
    List(list::Consumer),
    /// Listens on the channel.
    Pubsub(pubsub::Consumer),
    /// Reads the stream in its group.
    Stream(stream::Consumer),
    /// Takes from every shard of one logical list.
    Sharded(shards::Consumer),
}

impl Consumer {
    /// Connects (and subscribes, in pub/sub mode).
    pub fn ready(&mut self) -> Result<(), ReadyError> {
        match self {
            Consumer::List(c) => c.ready(),
            Consumer::Pubsub(c) => c.ready(),
            Consumer::Stream(c) => c.ready(),
            Consumer::Sharded(c) => c.ready(),
        }
    }

    /// Takes the next dish (see [`crate::queue::Consumer::take`]).
    pub fn take(&mut self, finished: &Shutdown) -> Result<Take, TakeError> {
        match self {
            Consumer::List(c) => c.take(finished),
            Consumer::Pubsub(c) => c.take(finished),
            Consumer::Stream(c) => c.take(finished),
            Consumer::Sharded(c) => c.take(finished),
        }
    }

    /// Confirms that `dish` was eaten.
    pub fn ack(&mut self, dish: &Dish) -> Result<(), Fault> {
        match self {
            Consumer::List(c) => c.ack(dish),
            Consumer::Pubsub(_) => Ok(()),
            Consumer::Stream(c) => c.ack(dish),
            Consumer::Sharded(c) => c.ack(dish),
        }
    }

    /// Whether a failed dish can be tried again (not on a channel).
    pub fn can_retry(&self) -> bool {
        !matches!(self, Consumer::Pubsub(_))
    }

    /// Sets `dish` aside for a retry (see [`crate::queue::Consumer::retry`]).
    pub fn retry(&mut self, dish: &Dish, delay: Duration) -> Result<(), Fault> {
        match self {
            Consumer::List(c) => c.retry(dish, delay),
            // A channel cannot take a delivery back: the failure was its last.
            Consumer::Pubsub(_) => Ok(()),
            Consumer::Stream(c) => c.retry(dish, delay),
            Consumer::Sharded(c) => c.retry(dish, delay),
        }
    }

    /// Makes `dish` a dead letter (see [`crate::queue::Consumer::bury`]).
    pub fn bury(&mut self, dish: &Dish, reason: &str) -> Result<(), Fault> {
        match self {
            Consumer::List(c) => c.bury(dish, reason),
            // A channel keeps nothing: the failure is reported, and that is all.
            Consumer::Pubsub(_) => Ok(()),
            Consumer::Stream(c) => c.bury(dish, reason),
            Consumer::Sharded(c) => c.bury(dish, reason),
        }
    }

    /// Gives back `dish` unfinished (see [`crate::queue::Consumer::give_back`]).
    pub fn give_back(&mut self, dish: &Dish) -> Returned {
        match self {
            // Not acknowledged: it stays in this diner's processing list,
            // which goes back on the queue when the diner leaves (or, if it
            // is killed first, when its heartbeat expires).
            Consumer::List(_) | Consumer::Sharded(_) => {
                let _ = dish;
                Returned::Queued
            }
            Consumer::Pubsub(_) => Returned::Lost,
            // Not acknowledged: pending in its group, handed back (claimable
            // at once) when the diner leaves, or claimed once its heartbeat
            // stops.
            Consumer::Stream(_) => Returned::Queued,
        }
    }

    /// Dishes shown never eaten (pub/sub; see [`pubsub::Consumer::lost`]);
    /// a list loses none.
    pub fn lost(&mut self) -> u64 {
        match self {
            Consumer::List(_) | Consumer::Sharded(_) => 0,
            Consumer::Pubsub(c) => c.lost(),
            Consumer::Stream(c) => c.lost(),
        }
    }
}

/// Reads the list's length (the stream group's lag), and whether Redis answers.
#[derive(Debug)]
pub struct Gauge {
    conn: Conn,
    /// The list (each shard's, shard 0 first); none for a channel, which
    /// holds nothing.
    queues: Vec<String>,
    /// The queue's keys, for its registered diners.
    keys: list::Keys,
    channel: String,
    /// The stream's group, in stream mode: depth and diners are its.
    stream: Option<stream::Gauge>,
    /// The dead letters (one per shard).
    morgues: Vec<dead::Morgue>,
    /// The stream and group, in stream mode: their consumers' counts.
    group: Option<(String, String)>,
}

impl Gauge {
    /// Dishes waiting now (in stream mode, not yet delivered to the group).
    pub fn depth(&mut self) -> Result<usize, Fault> {
        if let Some(s) = &self.stream {
            return self.conn.run(|c| s.depth(c));
        }
        Ok(self.shard_depths()?.iter().sum())
    }

    /// Dishes waiting in each shard now, shard 0 first (one entry without
    /// `--shards`, none for a channel). One command per shard: on a
    /// cluster they may live on different nodes.
    pub fn shard_depths(&mut self) -> Result<Vec<usize>, Fault> {
        let queues = &self.queues;
        self.conn.run(|c| {
            queues
                .iter()
                .map(|q| redis::cmd("LLEN").arg(q).query::<usize>(c))
                .collect()
        })
    }

    /// Whether Redis answers and can take dishes: [`Fault::OutOfMemory`]
    /// while it is over its `maxmemory` (read best effort: a user whose ACL
    /// forbids `INFO` sees only whether Redis answers).
    pub fn health(&mut self) -> Result<(), Fault> {
        self.conn.run(|c| redis::cmd("PING").query::<String>(c))?;
        match self.memory() {
            Ok(m) if m.full() => Err(Fault::OutOfMemory {
                url: redact_url(&self.conn.url),
                detail: m.detail(),
            }),
            _ => Ok(()),
        }
    }

    /// How much memory Redis uses, and its limit.
    pub fn memory(&mut self) -> Result<Memory, Fault> {
        self.conn.run(memory)
    }

    /// Clients subscribed to the channel now.
    pub fn subscribers(&mut self) -> Result<usize, Fault> {
        let channel = &self.channel;
        let mut numsub = redis::cmd("PUBSUB");
        numsub.arg("NUMSUB").arg(channel);
        let (_, n): (String, usize) = self
            .conn
            .run(|c| cluster::on_node_of(c, channel, &numsub))?;
        Ok(n)
    }

    /// Diner threads registered on the list with a live heartbeat (in
    /// stream mode, the group's consumers heard from within the TTL).
    pub fn diners(&mut self) -> Result<usize, Fault> {
        if let Some(s) = &self.stream {
            return self.conn.run(|c| s.diners(c));
        }
        let keys = &self.keys;
        self.conn.run(|c| list::live_diners(c, keys))
    }

    /// Dishes the live diners ate and failed, summed from their heartbeats
    /// (list mode) or notes (stream mode: the group's consumers; see
    /// `tally.rs`): every diner process's, on any machine.
    pub fn diners_counts(&mut self) -> Result<(u64, u64), Fault> {
        if let Some((stream, group)) = &self.group {
            return self.conn.run(|c| info::consumers_counts(c, stream, group));
        }
        let keys = &self.keys;
        self.conn.run(|c| {
            let ids: Vec<String> = redis::cmd("SMEMBERS").arg(&keys.diners).query(c)?;
            if ids.is_empty() {
                return Ok((0, 0));
            }
            let mut get = redis::cmd("MGET");
            for id in &ids {
                get.arg(keys.heartbeat(id));
            }
            let beats: Vec<Option<String>> = get.query(c)?;
            Ok(beats
                .iter()
                .filter_map(|b| tally::Note::parse(b.as_deref()?))
                .fold((0, 0), |(e, f), n| (e + n.eaten, f + n.failed)))
        })
    }

    /// The newest `limit` dead letters, how many there are and were trimmed.
    pub fn dead_letters(&mut self, limit: usize) -> Result<DeadLetters, Fault> {
        let morgues = &self.morgues;
        let mut all = DeadLetters::default();
        for morgue in morgues {
            let one = self.conn.run(|c| morgue.read(c, limit))?;
            all.entries.extend(one.entries);
            all.total += one.total;
            all.trimmed += one.trimmed;
        }
        // Newest first across shards, as within one.
        all.entries.sort_by_key(|l| std::cmp::Reverse(l.at_us));
        all.entries.truncate(limit);
        Ok(all)
    }

    /// Failed dishes waiting out their delay before their next attempt.
    pub fn waiting_retries(&mut self) -> Result<usize, Fault> {
        if let Some(s) = &self.stream {
            return self.conn.run(|c| s.waiting_retries(c));
        }
        let mut waiting = 0;
        for q in &self.queues {
            let key = list::Keys::new(q).retry;
            waiting += self
                .conn
                .run(|c| redis::cmd("ZCARD").arg(&key).query::<usize>(c))?;
        }
        Ok(waiting)
    }

    /// Puts the dead letters `which` names back on the queue (`requeue`),
    /// or deletes them: all of them, or none when one is not there.
    pub fn dead_manage(&mut self, which: &Which, requeue: bool) -> Result<usize, DeadError> {
        let ids = match which {
            Which::All => None,
            Which::Ids(ids) => Some(&ids[..]),
        };
        let morgues = &self.morgues;
        if let [morgue] = &morgues[..] {
            return match self.conn.run(|c| morgue.manage(c, requeue, ids))? {
                dead::Managed::Done(n) => Ok(n),
                dead::Managed::Missing(ids) => Err(DeadError::NotDead(ids)),
                dead::Managed::Unrequeueable(ids) => Err(DeadError::Unrequeueable(ids)),
            };
        }
        // Shards live in different hash slots, so no one script sees them
        // all: each id is found on its shard first, and nothing is done
        // unless every id is dead somewhere. Each shard's part stays atomic
        // (a dish is never in both places, nor in neither).
        let mut parts: Vec<Option<Vec<String>>> = Vec::with_capacity(morgues.len());
        let mut found = std::collections::HashSet::new();
        for morgue in morgues {
            let held: std::collections::HashSet<String> =
                self.conn.run(|c| morgue.ids(c))?.into_iter().collect();
            parts.push(ids.map(|ids| {
                ids.iter()
                    .filter(|id| held.contains(*id))
                    .inspect(|id| {
                        found.insert((*id).clone());
                    })
                    .cloned()
                    .collect()
            }));
        }
        if let Some(ids) = ids {
            let missing: Vec<String> = ids
                .iter()
                .filter(|id| !found.contains(*id))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Err(DeadError::NotDead(missing));
            }
        }
        let mut done = 0;
        for (morgue, part) in morgues.iter().zip(&parts) {
            if part.as_ref().is_some_and(Vec::is_empty) {
                continue;
            }
            match self
                .conn
                .run(|c| morgue.manage(c, requeue, part.as_deref()))?
            {
                dead::Managed::Done(n) => done += n,
                dead::Managed::Missing(ids) => return Err(DeadError::NotDead(ids)),
                dead::Managed::Unrequeueable(ids) => return Err(DeadError::Unrequeueable(ids)),
            }
        }
        Ok(done)
    }
}

/// A connection that opens on first use and comes back after Redis does.
///
/// [`Conn::run`] retries a command on connection errors: once at once on a
/// new connection when the failed one was already open (it may predate a
/// Redis restart), then with exponential backoff (50 ms doubling to 1 s)
/// until [`RedisOptions::reconnect_for`] has passed without success; any
/// other error returns at once.
pub(crate) struct Conn {
    client: Link,
    con: Option<Con>,
    url: String,
    key: String,
    pub(crate) reconnect_for: Duration,
    /// How long a reply may take.
    timeout: Duration,
    /// Fails fast: never waits out an outage, and gives up at once while
    /// Redis is known to be slow.
    fast: bool,
    /// When the last command was sent (µs since the epoch), so that only a
    /// command sent after a spell began can end it (see [`Conn::has_room`]).
    sent_us: u64,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("url", &redact_url(&self.url))
            .field("connected", &self.con.is_some())
            .finish()
    }
}

impl Conn {
    pub(crate) fn new(client: Link, opts: &RedisOptions) -> Conn {
        Conn {
            client,
            con: None,
            url: opts.url.clone(),
            key: opts.queue.clone(),
            reconnect_for: opts.reconnect_for,
            // A caller that never waits out an outage must not wait long
            // for a reply either (see FAST_TIMEOUT).
            timeout: if opts.reconnect_for.is_zero() {
                FAST_TIMEOUT
            } else {
                READ_TIMEOUT
            },
            fast: opts.reconnect_for.is_zero(),
            sent_us: 0,
        }
    }

    /// Runs `f` on a live connection, reconnecting as needed.
    pub(crate) fn run<T>(
        &mut self,
        mut f: impl FnMut(&mut Con) -> Result<T, RedisError>,
    ) -> Result<T, Fault> {
        self.run_fresh(|c, _| f(c))
    }

    /// Like [`Conn::run`], but tells `f` whether the connection is new, so a
    /// caller can first set things right after a reconnect.
    pub(crate) fn run_fresh<T>(
        &mut self,
        mut f: impl FnMut(&mut Con, bool) -> Result<T, RedisError>,
    ) -> Result<T, Fault> {
        if self.fast && crate::dish::now_us() < SLOW_UNTIL.load(Ordering::Relaxed) {
            let waited = Duration::from_millis(SLOW_WAITED_MS.load(Ordering::Relaxed));
            return Err(self.slow(waited));
        }
        let mut retry = Reconnect::new(self.reconnect_for, Outage::Connection);
        let mut retried_stale = false;
        loop {
            let fresh = self.con.is_none();
            let attempt = Instant::now();
            self.sent_us = crate::dish::now_us();
            let result = match self.connection() {
                Ok(c) => f(c, fresh),
                Err(e) => Err(e),
            };
            let err = match result {
                Ok(v) => {
                    retry.recovered(&self.url);
                    return Ok(v);
                }
                Err(e) if is_transient(&e) => e,
                Err(e) if is_oom(&e) => return Err(self.out_of_memory()),
                // Which command a script was denied, Redis tells only when asked.
                Err(e) if acl::is_denied(&e) => {
                    return Err(acl::fault(&e, self.con.as_mut(), &self.url, &self.key));
                }
                Err(e) => return Err(classify(e, &self.url, &self.key)),
            };
            // The connection may be half-way through a reply: never reuse it.
            self.con = None;
            if err.is_timeout() {
                // Busy, not gone: a caller that must answer soon says so
                // now, and a new connection would only queue behind the
                // same slow command, so no fresh attempt at once.
                let waited = attempt.elapsed();
                if self.fast {
                    let ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
                    SLOW_WAITED_MS.store(ms, Ordering::Relaxed);
                    let until = crate::dish::now_us() + FAST_TIMEOUT.as_micros() as u64;
                    SLOW_UNTIL.fetch_max(until, Ordering::Relaxed);
                }
                if self.reconnect_for.is_zero() {
                    return Err(self.slow(waited));
                }
            } else if !fresh && !retried_stale {
                // A connection opened before a Redis restart fails on its
                // first use after it, although the server is back: one
                // fresh attempt first, or a caller that never waits
                // (`kitchen serve`) would answer 503 once per stale
                // connection after the outage ended.
                retried_stale = true;
                continue;
            }
            retry.failed(&self.url, &err)?;
        }
    }

    /// How many one-second waits for a replica a `--durable` push may take:
    /// as long as this connection rides out an outage (`--reconnect-timeout`),
    /// and one for a fail-fast caller, which must answer soon.
    pub(crate) fn durable_tries(&self) -> u32 {
        let secs = self.reconnect_for.as_secs() / cluster::DURABLE_WAIT.as_secs().max(1);
        u32::try_from(secs).unwrap_or(u32::MAX).max(1)
    }

    fn slow(&self, waited: Duration) -> Fault {
        Fault::Slow {
            url: redact_url(&self.url),
            secs: secs(waited),
        }
    }

    fn connection(&mut self) -> Result<&mut Con, RedisError> {
        if self.con.is_none() {
            // Fail-fast: the handshake (AUTH, SELECT) and a command fit
            // in about one timeout between them.
            let connect = if self.fast {
                self.timeout / 2
            } else {
                CONNECT_TIMEOUT
            };
            self.con = Some(connect_within(&self.client, connect, self.timeout)?);
        }
        // Just filled in above; `Option::insert` would borrow twice.
        self.con
            .as_mut()
            .ok_or_else(|| RedisError::from(std::io::Error::other("no connection")))
    }
}

impl Conn {
    /// Redis refused a write for want of memory: the fault, with Redis's
    /// limit when it says; the first of a spell is announced on stderr.
    fn out_of_memory(&mut self) -> Fault {
        // Best effort: an ACL user may not read INFO.
        let detail = self
            .con
            .as_mut()
            .and_then(|c| memory(c).ok())
            .map_or_else(|| "over its maxmemory".to_owned(), |m| m.detail());
        let url = redact_url(&self.url);
        let now = crate::dish::now_us().max(1);
        if OOM_SINCE
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            crate::notice!(
                "kitchen: redis at {url} is out of memory ({detail}): chefs wait until diners free room"
            );
        }
        Fault::OutOfMemory { url, detail }
    }

    /// The last command, one that Redis refuses when out of memory, went
    /// through: a spell announced is over, and says so with how long it
    /// lasted. Only if the command was sent after the spell began: a BLMOVE
    /// blocked since before it, or a reply overtaken by another thread's
    /// refusal, proves nothing.
    #[inline]
    pub(crate) fn has_room(&self) {
        // One relaxed load on the hot path; the rest only after a spell.
        let since = OOM_SINCE.load(Ordering::Relaxed);
        if since == 0 || self.sent_us < since {
            return;
        }
        if OOM_SINCE
            .compare_exchange(since, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            let secs = crate::dish::now_us().saturating_sub(since) as f64 / 1e6;
            crate::notice!(
                "kitchen: redis at {} has room again after {secs:.1} s",
                redact_url(&self.url)
            );
        }
    }
}

/// When this process's current out-of-memory spell began (µs since the
/// epoch), 0 when there is none: one notice per spell, not one per chef.
static OOM_SINCE: AtomicU64 = AtomicU64::new(0);

/// What `INFO memory` says of Redis's memory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Memory {
    /// Bytes in use.
    pub used: u64,
    /// The limit in bytes; 0 for none.
    pub max: u64,
    /// What Redis does at the limit (`noeviction`, `allkeys-lru`, …).
    pub policy: String,
    /// `used`, as Redis writes it for people (`1.93M`).
    #[serde(skip)]
    pub used_human: String,
    /// `max`, likewise.
    #[serde(skip)]
    pub max_human: String,
}

impl Memory {
    /// Whether Redis refuses writes for want of memory: over its limit with
    /// a policy that cannot evict every key (with `allkeys-*` it evicts
    /// instead, and writes go through).
    pub fn full(&self) -> bool {
        self.max > 0 && self.used > self.max && !self.policy.starts_with("allkeys")
    }

    /// `maxmemory 2.00M, noeviction`, for messages.
    pub fn detail(&self) -> String {
        format!("maxmemory {}, {}", self.max_human, self.policy)
    }

    fn parse(info: &str) -> Memory {
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
                .unwrap_or_default()
                .to_owned()
        };
        Memory {
            used: field("used_memory").parse().unwrap_or(0),
            max: field("maxmemory").parse().unwrap_or(0),
            policy: field("maxmemory_policy"),
            used_human: field("used_memory_human"),
            max_human: field("maxmemory_human"),
        }
    }
}

/// Reads `INFO memory`.
fn memory(c: &mut Con) -> Result<Memory, RedisError> {
    let info: String = redis::cmd("INFO").arg("memory").query(c)?;
    Ok(Memory::parse(&info))
}

/// Whether Redis refused a command for want of memory (`OOM command not
/// allowed when used memory > 'maxmemory'`), alone, in a script or in a
/// pipeline (whose error carries no code of its own).
fn is_oom(e: &RedisError) -> bool {
    e.code() == Some("OOM")
        || e.to_string()
            .contains("command not allowed when used memory")
}

/// `0.8` or `5`: seconds as messages print them, to a tenth.
fn secs(d: Duration) -> String {
    let tenths = (d.as_millis() + 50) / 100;
    if tenths.is_multiple_of(10) {
        (tenths / 10).to_string()
    } else {
        format!("{}.{}", tenths / 10, tenths % 10)
    }
}

/// Whether an outage was announced on stderr and its end not yet.
static OUTAGE: AtomicBool = AtomicBool::new(false);

/// What went away, for the notices.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outage<'a> {
    /// A command connection.
    Connection,
    /// A diner's subscription to this channel.
    Subscription(&'a str),
}

/// The one reconnect policy of every Redis role: exponential backoff (50 ms
/// doubling to 1 s) until `limit` has passed without success, one notice on
/// stderr when an outage starts and one when it ends.
pub(crate) struct Reconnect<'a> {
    limit: Duration,
    what: Outage<'a>,
    failing_since: Option<Instant>,
    backoff: Duration,
}

impl<'a> Reconnect<'a> {
    pub(crate) fn new(limit: Duration, what: Outage<'a>) -> Reconnect<'a> {
        Reconnect {
            limit,
            what,
            failing_since: None,
            backoff: Duration::from_millis(50),
        }
    }

    /// After a transient failure: waits out the backoff, or answers
    /// [`Fault::Gone`] once `limit` has passed.
    pub(crate) fn failed(&mut self, url: &str, err: &RedisError) -> Result<(), Fault> {
        if self.failing_since.is_none() && !self.limit.is_zero() {
            match self.what {
                // One notice per outage, not one per connection.
                Outage::Connection => {
                    if !OUTAGE.swap(true, Ordering::Relaxed) {
                        if err.is_timeout() {
                            crate::notice!(
                                "kitchen: redis at {} did not answer in time (busy or overloaded); trying again for up to {} s",
                                redact_url(url),
                                self.limit.as_secs()
                            );
                        } else {
                            crate::notice!(
                                "kitchen: lost redis at {} ({err}); reconnecting for up to {} s",
                                redact_url(url),
                                self.limit.as_secs()
                            );
                        }
                    }
                }
                Outage::Subscription(channel) => crate::notice!(
                    "kitchen: the subscription to {channel} at {} dropped ({err}); resubscribing: dishes published meanwhile are lost to this diner and counted as lost",
                    redact_url(url)
                ),
            }
        }
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= self.limit {
            if err.is_timeout() {
                return Err(Fault::Slow {
                    url: redact_url(url),
                    secs: secs(since.elapsed()),
                });
            }
            return Err(Fault::Gone {
                url: redact_url(url),
                secs: self.limit.as_secs(),
                detail: err.to_string(),
            });
        }
        std::thread::sleep(self.backoff);
        self.backoff = (self.backoff * 2).min(Duration::from_secs(1));
        Ok(())
    }

    /// After a success: ends the outage, saying so if it was announced.
    pub(crate) fn recovered(&mut self, url: &str) {
        let Some(since) = self.failing_since.take() else {
            return;
        };
        self.backoff = Duration::from_millis(50);
        let secs = since.elapsed().as_secs_f64();
        match self.what {
            Outage::Connection => {
                if OUTAGE.swap(false, Ordering::Relaxed) {
                    crate::notice!(
                        "kitchen: reconnected to redis at {} after {secs:.1} s",
                        redact_url(url)
                    );
                }
            }
            Outage::Subscription(channel) => {
                crate::notice!("kitchen: resubscribed to {channel} after {secs:.1} s");
            }
        }
    }
}

/// Where `opts` says Redis is: one server, or (`--cluster`) a cluster
/// reached through the node the URL names.
pub(crate) fn link(opts: &RedisOptions) -> Result<Link, Fault> {
    let url = &opts.url;
    let shape = || Fault::Redis {
        url: redact_url(url),
        detail: URL_SHAPE.to_owned(),
    };
    let info =
        redis::IntoConnectionInfo::into_connection_info(url.as_str()).map_err(|_| shape())?;
    // No `CLIENT SETINFO` in the handshake: two replies fewer to wait for
    // from a server that hangs (see FAST_TIMEOUT), and Redis before 7.2
    // refuses it anyway.
    let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
    if opts.cluster {
        // A cluster has database 0 only; the command line refused any other.
        settings = settings.set_db(0);
        let seeds = cluster::Seeds::new(
            info.set_redis_settings(settings),
            tls::certificates(&opts.tls)?,
        )
        .map_err(|e| Fault::Redis {
            url: redact_url(url),
            detail: e.to_string(),
        })?;
        return Ok(Link::Cluster(seeds));
    }
    tls::client(info.set_redis_settings(settings), url, &opts.tls).map(Link::Single)
}

/// What a Redis URL looks like.
const URL_SHAPE: &str = "use redis://[user:password@]host[:port][/db]";

/// Checks a URL at parse time: `Err` is the usage error clap prints.
pub fn validate_url(url: &str) -> Result<(), String> {
    // The crate's own message may echo the URL, password and all: ours does not.
    redis::IntoConnectionInfo::into_connection_info(url)
        .map(|_| ())
        .map_err(|_| format!("`{}` is not a Redis URL: {URL_SHAPE}", redact_url(url)))
}

/// The database number in a URL (`…/5`), 0 when absent.
fn db_of(url: &str) -> i64 {
    crate::redis_url::database(url).unwrap_or(0)
}

fn connect(client: &Link) -> Result<Con, RedisError> {
    connect_within(client, CONNECT_TIMEOUT, READ_TIMEOUT)
}

/// [`connect`], its failure classified: a server that accepts and does not
/// answer within [`CONNECT_TIMEOUT`] is slow, not absent, unless it speaks
/// another protocol than the URL's (TLS or plain).
fn connect_checked(client: &Link, url: &str, key: &str) -> Result<Con, Fault> {
    connect(client).map_err(|e| {
        if (e.is_timeout() || e.is_connection_dropped())
            && let Some(fault) = tls::mismatch(url)
        {
            return fault;
        }
        match classify(e, url, key) {
            Fault::Slow { url, .. } => Fault::Slow {
                url,
                secs: secs(CONNECT_TIMEOUT),
            },
            other => other,
        }
    })
}

/// Connects within `connect` (the handshake included); every reply then
/// waits at most `timeout`.
fn connect_within(client: &Link, connect: Duration, timeout: Duration) -> Result<Con, RedisError> {
    client.connect(connect, timeout)
}

/// Errors after which a new connection may succeed: not a failed TLS
/// check, which the next connection meets again.
fn is_transient(e: &RedisError) -> bool {
    (e.is_io_error() && tls::fault(e, "").is_none())
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(e.code(), Some("LOADING" | "MASTERDOWN" | "TRYAGAIN"))
        || cluster::is_moving(e)
}

/// Turns a Redis error into one line that says what to do.
pub(crate) fn classify(e: RedisError, url: &str, key: &str) -> Fault {
    let url = redact_url(url);
    let code = e.code().unwrap_or_default().to_owned();
    let text = e.to_string();
    // Redis answers NOAUTH to the first command (SELECT, for a URL with a
    // database) of a client that sent no password: the URL lacks one.
    if code == "NOAUTH" || text.contains("Authentication required") {
        return Fault::NoPassword { url };
    }
    if acl::is_denied(&e) {
        return acl::fault(&e, None::<&mut Con>, &url, key);
    }
    if let Some(fault) = tls::fault(&e, &url) {
        return fault;
    }
    if e.kind() == redis::ErrorKind::AuthenticationFailed || code == "WRONGPASS" {
        return Fault::Auth {
            url,
            detail: code_or(&code, "authentication failed"),
        };
    }
    if is_oom(&e) {
        return Fault::OutOfMemory {
            url,
            detail: "over its maxmemory".to_owned(),
        };
    }
    if code == "WRONGTYPE" || text.contains("WRONGTYPE") {
        return Fault::WrongType {
            key: key.to_owned(),
            found: "value of another type".to_owned(),
            want: "list (or one of its companion keys)",
            db: db_of(&url),
        };
    }
    if e.is_timeout() {
        return Fault::Slow {
            url,
            secs: secs(READ_TIMEOUT),
        };
    }
    if e.is_io_error() || e.is_connection_refusal() {
        return Fault::Unreachable { url, detail: text };
    }
    // kitchen's own errors (`--durable` without a replica) carry their
    // whole message as the detail.
    if e.kind() == redis::ErrorKind::Client
        && let Some(detail) = e.detail()
    {
        return Fault::Redis {
            url,
            detail: detail.to_owned(),
        };
    }
    Fault::Redis { url, detail: text }
}

fn code_or(code: &str, default: &str) -> String {
    if code.is_empty() {
        default.to_owned()
    } else {
        code.to_owned()
    }
}

/// Fails unless `key` is a list or absent.
fn check_list(con: &mut Con, url: &str, key: &str) -> Result<(), Fault> {
    let found: String = redis::cmd("TYPE")
        .arg(key)
        .query(con)
        .map_err(|e| classify(e, url, key))?;
    match found.as_str() {
        "list" | "none" => Ok(()),
        _ => Err(Fault::WrongType {
            key: key.to_owned(),
            found,
            want: "list",
            db: db_of(url),
        }),
    }
}

/// A name unique to this process and `n`, for diner and chef ids.
pub(crate) fn unique_name(prefix: &str, n: u64) -> String {
    format!(
        "{prefix}-{}-{:08x}-{n}",
        std::process::id(),
        crate::dish::DishId::process_origin() as u32
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_without_echoing_passwords() {
        assert!(validate_url("redis://127.0.0.1:6379/5").is_ok());
        assert!(validate_url("redis://u:pw@127.0.0.1/5").is_ok());
        let bad = validate_url("redis://u:pw@127.0.0.1:x/5").unwrap_err();
        assert!(!bad.contains("pw@"), "{bad}");
        assert!(validate_url("rediss://h/0").is_ok());
    }

    #[test]
    fn memory_is_full_over_the_limit_unless_every_key_can_go() {
        let info = "# Memory\r\nused_memory:3000\r\nused_memory_human:2.93K\r\n\
                    maxmemory:2000\r\nmaxmemory_human:1.95K\r\nmaxmemory_policy:noeviction\r\n";
        let m = Memory::parse(info);
        assert_eq!(
            (m.used, m.max, m.policy.as_str()),
            (3000, 2000, "noeviction")
        );
        assert!(m.full());
        assert_eq!(m.detail(), "maxmemory 1.95K, noeviction");
        let evicts = Memory {
            policy: "allkeys-lru".into(),
            ..m.clone()
        };
        assert!(!evicts.full());
        let unlimited = Memory { max: 0, ..m };
        assert!(!unlimited.full());
    }

    #[test]
    fn seconds_print_to_a_tenth() {
        assert_eq!(secs(Duration::from_millis(1_500)), "1.5");
        assert_eq!(secs(Duration::from_millis(750)), "0.8");
        assert_eq!(secs(Duration::from_secs(5)), "5");
    }

    #[test]
    fn the_database_number_comes_from_the_path() {
        assert_eq!(db_of("redis://h:1/5"), 5);
        assert_eq!(db_of("redis://h:1"), 0);
        assert_eq!(db_of("redis://h:1/"), 0);
    }
}
