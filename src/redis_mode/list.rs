//! List mode: chefs LPUSH, diners move dishes from the right into a
//! processing list of their own, eat, then acknowledge.
//!
//! Keys, all in the hash slot of the queue `Q` (the tutorial's
//! `task:prodcons:queue`); `P` is `{Q}`, or `Q` itself when it has a hash
//! tag (see [`Keys`] and `slot.rs`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `Q` | list | waiting dishes, newest on the left (so `LPUSH Q 7` works) |
//! | `P:processing:<diner>` | list | what that diner holds, not yet eaten |
//! | `P:diner:<diner>` | string with TTL | the diner's heartbeat: its counts as JSON (`tally.rs`) |
//! | `P:diners` | set | diner ids, so live diners can find dead ones |
//! | `P:room` | list | wake-up tokens for chefs waiting for room (at most [`MAX_TOKENS`], expire after 10 s) |
//! | `P:dead` | list | dead letters: dishes that failed their last attempt, payloads that are not dishes (see `dead.rs`) |
//! | `P:dead:trimmed` | string | how many dead letters were trimmed beyond `--dead-max` |
//! | `P:retry` | sorted set | failed dishes waiting for their next attempt, scored by when it is due (ms, Redis's clock) |
//! | `P:capacity` | string | the bound the last chef to start keeps, for `kitchen info` |
//!
//! **Bounded without polling.** A chef pushes through a script that checks
//! the length first (the only script on the hot path: a check-and-push must be
//! atomic across processes; diners take with plain commands). When full, the chef blocks on `P:room` (BLPOP,
//! `room::ROOM_WAIT`); every dish a diner takes drops a token there, which wakes
//! one waiting chef. Tokens are trimmed to [`MAX_TOKENS`], so stale ones cost a
//! few spurious wake-ups at most, and a chef blocked with no diner about costs
//! two commands per `ROOM_WAIT`. The wait and the next push share a round
//! trip, and a push that finds or leaves the list full clears the tokens
//! (see `room.rs` and [`PUT`]).
//!
//! **Nothing lost.** A diner moves dishes into its processing list (LMOVE in
//! a pipeline; a script for `--batch` > 1; BLMOVE when the queue is empty) and
//! drops them only when it asks for the next ones, after eating; so the ack
//! rides on the next take and costs no round trip. A heartbeat thread
//! refreshes `P:diner:<id>` and puts back the dishes of diners whose heartbeat
//! expired. On a reconnect a diner puts its
//! whole processing list back (at least once: a dish may be eaten twice, never
//! lost). Within a batch the ack waits for the next take, unless eating took
//! [`ACK_LAG`] or more: then the diner drops what it ate before handing out
//! the next dish, so `kitchen info` never shows eaten dishes as held for
//! long, and full-speed batches keep their one round trip per batch.
//!
//! **Retries.** A failed dish leaves the diner's processing list for
//! `Q:retry`, a sorted set scored by when it is due (Redis's clock), in one
//! script ([`RETRY`]); heartbeat threads, at least every [`PROMOTE_EVERY`],
//! and the diner that set it aside, once it falls due, move due dishes back
//! onto the queue's taking end ([`PROMOTE`]). They never count toward the
//! capacity: a full queue takes them anyway, so a chef never stands between
//! a due retry and the diners. A dish's attempt travels as the envelope's
//! last key, `"attempt":N`; [`RECOVER`] counts one for a dead diner's dishes.
//!
//! **Out of memory.** Redis over its `maxmemory` (policy `noeviction`)
//! refuses every command that may grow memory (LPUSH, LMOVE, SET, SADD…), yet
//! only eating frees memory. Chefs wait, with backoff (50 ms doubling to
//! 1 s, `room::OomBackoff`), and try again. Diners keep eating: Redis never refuses RPOP, LPOP,
//! LREM or PEXPIRE, and once a script has written it lets the script finish
//! (it cannot stop one half-way). So every script a diner runs writes first
//! with one of those: the take (RPOP), giving back and recovering (LPOP, then
//! RPUSH), registering (PEXPIRE, then SET and SADD), setting aside (LREM, then
//! LPUSH: `dead::BURY`). Their own growth is a dish's move, a heartbeat or a token: bounded.
//! The plain commands of the fast path (LMOVE, BLMOVE, wake-up tokens) fall
//! back to the take script when refused.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use redis::{RedisError, Script};

use super::cluster::Con;
use super::room::{self, MAX_TOKENS, ROOM_TTL_MS, Until, wake};
use super::tally::Tally;
use super::{Conn, unique_name};
use crate::dish::Dish;
use crate::dish::DishId;
use crate::shutdown::Shutdown;
use crate::vocab::{Capacity, Fault, Put, ReadyError, RedisOptions, Take, TakeError};

/// How long a diner blocks in BLMOVE on an empty queue before answering
/// [`Take::Idle`], so it notices a stop.
pub(crate) const TAKE_WAIT: Duration = Duration::from_millis(250);

const _: () = assert!(TAKE_WAIT.as_millis() <= super::MAX_BLOCK.as_millis());

/// KEYS: queue, room. ARGV: capacity, payloads…
/// Returns {pushed, length}; pushed 0 means full.
///
/// Full, or filled by this push, it also clears the wake-up tokens: each
/// one stood for room a take made, and the queue full now shows that room
/// is gone, so they could only wake this chef (and others) to find it full
/// again, a wasted round trip each. Any room made from here on comes with a token of its
/// own, pushed after this, so the chef's wait that follows misses none.
/// DEL is no write Redis refuses when out of memory.
const PUT: &str = r"
local len = redis.call('LLEN', KEYS[1])
local room = tonumber(ARGV[1]) - len
if room <= 0 then
  redis.call('DEL', KEYS[2])
  return {0, len}
end
local n = math.min(room, #ARGV - 1)
len = redis.call('LPUSH', KEYS[1], unpack(ARGV, 2, n + 1))
if n == room then redis.call('DEL', KEYS[2]) end
return {n, len}
";

/// A batched take. KEYS: queue, processing, room. ARGV: most to take, eaten
/// to drop, most tokens, token TTL in ms. A few list commands whatever the
/// batch, where a pipeline would send one LMOVE per dish; wakes as many chefs
/// as dishes were taken. Returns {length, payloads oldest first…}.
const TAKE_MANY: &str = r"
local eaten = tonumber(ARGV[2])
if eaten > 0 then redis.call('RPOP', KEYS[2], eaten) end
local got = redis.call('RPOP', KEYS[1], tonumber(ARGV[1]))
if got then
  redis.call('LPUSH', KEYS[2], unpack(got))
  for i = 1, math.min(#got, tonumber(ARGV[3])) do redis.call('LPUSH', KEYS[3], '1') end
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[3]) - 1)
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
else
  got = {}
end
table.insert(got, 1, redis.call('LLEN', KEYS[1]))
return got
";

/// KEYS: queue, processing, heartbeat, diners. ARGV: eaten to drop, leave?, id.
/// Drops the eaten dishes, puts the rest back on the queue's right end (next
/// to be taken, oldest rightmost), and on leave forgets the diner. LPOP then
/// RPUSH, not LMOVE: the first write must be one Redis allows when out of
/// memory (see the module docs).
const GIVE_BACK: &str = r"
local eaten = tonumber(ARGV[1])
if eaten > 0 then redis.call('RPOP', KEYS[2], eaten) end
local n = 0
while true do
  local d = redis.call('LPOP', KEYS[2])
  if not d then break end
  redis.call('RPUSH', KEYS[1], d)
  n = n + 1
end
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[3])
  redis.call('SREM', KEYS[4], ARGV[3])
end
return n
";

/// KEYS: queue, diners, the diner's processing list, its heartbeat. ARGV:
/// diner id. Puts back what one diner held if its heartbeat is gone (checked
/// again here: it may have come back since the client looked), each dish
/// with one more attempt, and forgets the diner; returns how many dishes.
/// A dish whose diner died holding it was tried, so a dish that kills its
/// diner every time ends dead (see `kitchen::diner`). Every key is
/// declared, as Redis Cluster requires: the client reads the diner set and
/// picks the dead (see [`recover_dead`]). LPOP then RPUSH, as in
/// [`GIVE_BACK`].
///
/// The attempt is counted on the text, not by decoding: cjson would
/// reorder an envelope's keys, and a payload of another producer (`7`)
/// has none, so it is wrapped in one (`raw`, read as it came; its id
/// `…0-0` gets a fresh one from the diner that takes it).
const RECOVER: &str = r#"
local function bump(d)
  if string.sub(d, 1, 6) == '{"id":' then
    local head, n = string.match(d, '^(.*),"attempt":(%d+)}%s*$')
    if head then return head .. ',"attempt":' .. (tonumber(n) + 1) .. '}' end
    local body = string.match(d, '^(.*)}%s*$')
    if body then return body .. ',"attempt":2}' end
    return d
  end
  return '{"id":"0000000000000000-0","dish":null,"raw":' .. cjson.encode(d) .. ',"made_at":0,"attempt":2}'
end
if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
local moved = 0
while true do
  local d = redis.call('LPOP', KEYS[3])
  if not d then break end
  redis.call('RPUSH', KEYS[1], bump(d))
  moved = moved + 1
end
redis.call('SREM', KEYS[2], ARGV[1])
return moved
"#;

/// KEYS: processing, retry. ARGV: the payload as taken, the delay in ms,
/// the dish with its next attempt.
/// Sets a failed dish aside for its next attempt, due after the delay by
/// Redis's clock (so diners' clocks need not agree). LREM first, as Redis
/// allows it when out of memory.
const RETRY: &str = r"
redis.call('LREM', KEYS[1], -1, ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
";

/// KEYS: retry, queue. ARGV: most to move.
/// Moves the waiting dishes that are due onto the queue's right end (next
/// to be taken: they are older than what waits there), atomically: a dish
/// is always in one place. ZREM first, as Redis allows it when out of
/// memory. Returns how many moved.
const PROMOTE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, d in ipairs(due) do
  redis.call('ZREM', KEYS[1], d)
  redis.call('RPUSH', KEYS[2], d)
end
return #due
";

/// The most waiting dishes one promotion moves (it goes on while it
/// finds this many due).
const PROMOTE_MAX: usize = 1_000;

/// How often a diner's heartbeat thread moves due retries onto the queue,
/// at most: a due retry waits about this long, whatever the heartbeat TTL.
const PROMOTE_EVERY: Duration = Duration::from_secs(1);

/// KEYS: heartbeat, diners. ARGV: heartbeat value, TTL in ms, diner id.
/// Registers the diner with a live heartbeat, atomically, so a recovering
/// diner never sees the member without its heartbeat. The refresh comes
/// first: Redis allows it when out of memory, and then the rest.
const REGISTER: &str = r"
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
";

/// Eating a dish from a batch for this long or more sends the ack before
/// the next dish is handed out, rather than with the next take: a diner
/// slow enough to be watched with `kitchen info` shows only what it holds,
/// and one fast enough to need batches still pays one round trip per batch.
const ACK_LAG: Duration = Duration::from_millis(100);

/// The key names of one queue: the only place they are made.
///
/// The rule (see `slot.rs`): the queue key is the user's, unchanged; every
/// helper key is `<prefix>:<suffix>`, where `prefix` hashes to the queue's
/// slot (`{Q}` for a queue without a hash tag, `Q` itself for one with), so
/// one queue's keys sit in one hash slot of a Redis Cluster and every script
/// may touch them together. A new helper key is one more
/// `format!("{}:<suffix>", prefix)` here.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub queue: String,
    /// What every helper key starts with: `{Q}` or, for a tagged `Q`, `Q`.
    pub prefix: String,
    pub room: String,
    pub capacity: String,
    pub diners: String,
    pub dead: String,
    /// How many dead letters were trimmed beyond `--dead-max`.
    pub dead_trimmed: String,
    /// Failed dishes waiting for their next attempt, scored by when (ms).
    pub retry: String,
}

impl Keys {
    pub fn new(queue: &str) -> Keys {
        let prefix = super::slot::prefix(queue);
        Keys {
            queue: queue.to_owned(),
            room: format!("{prefix}:room"),
            capacity: format!("{prefix}:capacity"),
            diners: format!("{prefix}:diners"),
            dead: format!("{prefix}:dead"),
            dead_trimmed: format!("{prefix}:dead:trimmed"),
            retry: format!("{prefix}:retry"),
            prefix,
        }
    }

    pub fn processing(&self, id: &str) -> String {
        format!("{}:processing:{id}", self.prefix)
    }

    pub fn heartbeat(&self, id: &str) -> String {
        format!("{}:diner:{id}", self.prefix)
    }

    /// What every result record's key starts with (`P:result:<id>`).
    pub fn result_prefix(&self) -> String {
        format!("{}:result:", self.prefix)
    }

    /// The index of result records (`P:results`).
    pub fn results(&self) -> String {
        format!("{}:results", self.prefix)
    }
}

/// One chef's connection to the list.
#[derive(Debug)]
pub struct Producer {
    conn: Conn,
    keys: Keys,
    capacity: Capacity,
    /// Dishes per round trip.
    pub(crate) batch: usize,
    put: Script,
    /// Whether this chef has written its capacity to `P:capacity`.
    announced: bool,
    /// `--durable`: a push counts once a replica has it.
    durable: bool,
    /// Whether its last push left the list full: the next waits first.
    left_full: room::LeftFull,
}

impl Producer {
    pub(crate) fn new(conn: Conn, opts: &RedisOptions, capacity: Capacity) -> Producer {
        Producer {
            conn,
            keys: Keys::new(&opts.queue),
            capacity,
            batch: opts.batch.max(1),
            put: Script::new(PUT),
            announced: false,
            durable: opts.durable,
            left_full: room::LeftFull::default(),
        }
    }

    /// Pushes one dish, waiting (without polling) while the list is full.
    pub fn put(&mut self, dish: &Dish, stop: &Shutdown) -> Result<Put, Fault> {
        let puts = self.put_all(std::slice::from_ref(dish), stop)?;
        Ok(puts.first().copied().unwrap_or(Put::Stopped))
    }

    /// Pushes dishes in order, as many per round trip as there is room for,
    /// waiting (without polling) while the list is full.
    pub fn put_all(&mut self, dishes: &[Dish], stop: &Shutdown) -> Result<Vec<Put>, Fault> {
        self.push(dishes, Until::Stopped(stop))
    }

    /// Pushes one dish if there is room within `wait`; `None` when still full.
    pub fn put_within(&mut self, dish: &Dish, wait: Duration) -> Result<Option<Put>, Fault> {
        let deadline = Instant::now() + wait;
        let puts = self.push(std::slice::from_ref(dish), Until::Deadline(deadline))?;
        Ok(match puts.first() {
            Some(Put::Stopped) | None => None,
            Some(put) => Some(*put),
        })
    }

    fn push(&mut self, dishes: &[Dish], until: Until<'_>) -> Result<Vec<Put>, Fault> {
        room::announce(
            &mut self.conn,
            &self.keys.capacity,
            self.capacity,
            &mut self.announced,
        )?;
        let payloads: Vec<String> = dishes.iter().map(Dish::encode).collect();
        let (keys, put, durable) = (&self.keys, &self.put, self.durable);
        let limit = self.capacity.limit();
        room::push_all(
            &mut self.conn,
            &mut self.left_full,
            &payloads,
            limit.unwrap_or(usize::MAX),
            until,
            |conn, rest, wait| match limit {
                Some(cap) => room::push_round_trip(
                    conn,
                    put,
                    &keys.queue,
                    &keys.room,
                    cap,
                    rest,
                    wait,
                    durable,
                ),
                // Unbounded: one LPUSH, never full.
                None => {
                    let tries = conn.durable_tries();
                    conn.run(|c| {
                        let depth: usize =
                            redis::cmd("LPUSH").arg(&keys.queue).arg(rest).query(c)?;
                        if durable {
                            super::cluster::wait_for_replica(c, &keys.queue, tries)?;
                        }
                        Ok((rest.len(), depth))
                    })
                }
            },
        )
    }
}

/// One diner's connection to the list.
#[derive(Debug)]
pub struct Consumer {
    conn: Conn,
    /// Its names in Redis, fixed for its life.
    names: Names,
    heart: Heart,
    /// What it took and has not yet told Redis about.
    batch: Batch,
}

/// One diner's key names and scripts: read on every take, never changed,
/// so borrowed beside the connection rather than cloned per take.
#[derive(Debug)]
struct Names {
    keys: Keys,
    id: String,
    processing: String,
    heartbeat: String,
    ttl: Duration,
    /// The largest payload taken as a dish; larger ones are set aside.
    max_payload: usize,
    give_back: Script,
    take_many: Script,
    register: Script,
    /// Moves a payload from this diner's hands to the dead letters.
    bury: Script,
    /// Moves a failed dish from this diner's hands to the waiting retries.
    retry: Script,
    /// Moves due retries onto the queue.
    promote: Script,
    /// The most dead letters kept (`--dead-max`).
    dead_max: usize,
    /// Its counts, written into its heartbeat for `kitchen info --watch`.
    tally: std::sync::Arc<Tally>,
}

/// The heartbeat thread, once the diner is ready.
#[derive(Debug)]
// One per diner, and the large variant is the first it has: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
enum Heart {
    /// Not started yet: the connection it will use.
    Waiting(Conn),
    /// Beating.
    Beating(Beat),
    /// Stopped (the diner is leaving).
    Stopped,
}

/// The dishes of the current take, from Redis's point of view: the rightmost
/// `handed + buffer.len()` entries of the processing list are this batch.
#[derive(Debug, Default)]
struct Batch {
    /// Most dishes per take (`--batch`).
    size: usize,
    /// Taken, not yet handed out (oldest first).
    buffer: VecDeque<Vec<u8>>,
    /// Queue depth seen by the last take.
    depth: usize,
    /// Handed out and eaten (or set aside): dropped from the processing
    /// list by the next take, which thus carries the acknowledgement.
    done: usize,
    /// The dish handed out and not yet acknowledged.
    in_hand: Option<DishId>,
    /// Its payload as taken, to take it out of the processing list by
    /// value when it fails (moved here, not copied).
    in_hand_raw: Vec<u8>,
    /// The last blocking wait found nothing: wait again straight away.
    idle: bool,
    /// When this diner last took from Redis (and so acknowledged).
    took_at: Option<Instant>,
    /// When the first retry this diner set aside falls due: it moves it
    /// onto the queue itself then, sooner than a heartbeat would.
    retry_due: Option<Instant>,
}

impl Batch {
    /// Everything this diner held is back on the queue (after a reconnect).
    fn forget(&mut self) {
        self.done = 0;
        self.buffer.clear();
        self.in_hand = None;
    }
}

impl Names {
    /// Runs `f` on `conn`; a fresh connection first gives back the
    /// processing list (a reply may have been lost with the old one) and
    /// registers the diner, and `batch` forgets what it held.
    fn run<T>(
        &self,
        conn: &mut Conn,
        batch: &mut Batch,
        mut f: impl FnMut(&mut Con) -> Result<T, RedisError>,
    ) -> Result<T, Fault> {
        let mut reset = false;
        let out = conn.run_fresh(|c, fresh| {
            if fresh {
                self.give_back(0, false).invoke::<u64>(c)?;
                register(
                    c,
                    &self.register,
                    &self.keys,
                    &self.id,
                    self.ttl,
                    &self.tally,
                )?;
                reset = true;
            }
            f(c)
        });
        if reset {
            batch.forget();
        }
        out
    }

    /// GIVE_BACK, ready to invoke: drops `eaten`, puts the rest back, and
    /// on `leave` forgets the diner.
    fn give_back(&self, eaten: usize, leave: bool) -> redis::ScriptInvocation<'_> {
        let mut inv = self.give_back.prepare_invoke();
        inv.key(&self.keys.queue)
            .key(&self.processing)
            .key(&self.heartbeat)
            .key(&self.keys.diners)
            .arg(eaten)
            .arg(u8::from(leave))
            .arg(&self.id);
        inv
    }
}

impl Consumer {
    pub(crate) fn new(conn: Conn, mut heart_conn: Conn, opts: &RedisOptions) -> Consumer {
        static DINERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = DINERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let keys = Keys::new(&opts.queue);
        let id = unique_name("diner", n);
        // A heartbeat that waits out a long outage would outlive its diner.
        heart_conn.reconnect_for = Duration::ZERO;
        Consumer {
            conn,
            names: Names {
                processing: keys.processing(&id),
                heartbeat: keys.heartbeat(&id),
                keys,
                id,
                ttl: opts.heartbeat_ttl,
                max_payload: opts.max_payload,
                give_back: Script::new(GIVE_BACK),
                take_many: Script::new(TAKE_MANY),
                register: Script::new(REGISTER),
                bury: Script::new(super::dead::BURY),
                retry: Script::new(RETRY),
                promote: Script::new(PROMOTE),
                dead_max: opts.dead_max.max(1),
                tally: std::sync::Arc::default(),
            },
            heart: Heart::Waiting(heart_conn),
            batch: Batch {
                size: opts.batch.max(1),
                ..Batch::default()
            },
        }
    }

    /// Counts into `tally`, shared with the diner's other consumers (one per
    /// shard), so each shard's heartbeat carries the diner's whole counts.
    pub(crate) fn counting_into(mut self, tally: std::sync::Arc<Tally>) -> Consumer {
        self.names.tally = tally;
        self
    }

    /// Connects, registers the diner with a live heartbeat and starts beating.
    pub fn ready(&mut self) -> Result<(), ReadyError> {
        self.run(|_| Ok(()))?;
        if let Heart::Waiting(_) = self.heart {
            let Heart::Waiting(conn) = std::mem::replace(&mut self.heart, Heart::Stopped) else {
                return Ok(());
            };
            let n = &self.names;
            let beat = Beat::start(
                conn,
                n.keys.clone(),
                n.id.clone(),
                n.ttl,
                n.register.clone(),
                n.tally.clone(),
            )
            .map_err(ReadyError::Spawn)?;
            self.heart = Heart::Beating(beat);
        }
        Ok(())
    }

    fn run<T>(&mut self, f: impl FnMut(&mut Con) -> Result<T, RedisError>) -> Result<T, Fault> {
        self.names.run(&mut self.conn, &mut self.batch, f)
    }

    /// Takes the next dish: from this batch, else up to `batch` more in one
    /// round trip, else blocks up to [`TAKE_WAIT`] for one.
    pub fn take(&mut self, finished: &Shutdown) -> Result<Take, TakeError> {
        if let Heart::Waiting(_) = self.heart {
            self.ready()?;
        }
        if let Some(p) = self.batch.buffer.pop_front() {
            self.ack_if_late()?;
            return Ok(self.hand_out(p)?);
        }
        // An idle diner goes straight back to its blocking wait: a few
        // commands a second, and no wake-up tokens for nobody.
        // Read before looking at the queue: a chef's last push may land
        // between an empty look and a later read of `finished`, and closing
        // then would leave that dish behind.
        let was_finished = finished.is_stopped();
        if self
            .batch
            .retry_due
            .is_some_and(|due| Instant::now() >= due)
        {
            self.batch.retry_due = None;
            self.promote()?;
        }
        if !(self.batch.idle && self.batch.done == 0 && !was_finished) {
            if let Some(take) = self.take_now()? {
                return Ok(take);
            }
            // Failed dishes waiting for a retry will be back: block for
            // them (a heartbeat moves them onto the queue when due).
            if was_finished && !self.retries_waiting()? {
                // A heartbeat may have moved the last waiting retry onto
                // the queue between that look and the count: one more
                // look, and only an empty one closes.
                return Ok(self.take_now()?.unwrap_or(Take::Closed));
            }
        }
        let Consumer {
            conn, names, batch, ..
        } = self;
        let (queue, processing) = (&names.keys.queue, &names.processing);
        let blocked = names.run(conn, batch, |c| {
            redis::cmd("BLMOVE")
                .arg(queue)
                .arg(processing)
                .arg("RIGHT")
                .arg("LEFT")
                .arg(TAKE_WAIT.as_secs_f64())
                .query::<Option<Vec<u8>>>(c)
        });
        let one = match blocked {
            Ok(one) => {
                conn.has_room();
                one
            }
            // Refused for want of memory (though it moves, never adds):
            // take as the script does, else wait as BLMOVE would have.
            Err(Fault::OutOfMemory { .. }) => {
                if let Some(take) = self.take_scripted()? {
                    return Ok(take);
                }
                std::thread::sleep(TAKE_WAIT);
                self.batch.idle = true;
                return Ok(Take::Idle);
            }
            Err(e) => return Err(e.into()),
        };
        batch.took_at = Some(Instant::now());
        batch.idle = one.is_none();
        let Some(p) = one else { return Ok(Take::Idle) };
        let mut pipe = redis::pipe();
        pipe.cmd("LLEN").arg(queue);
        wake(&mut pipe, &names.keys.room, 1);
        // Tokens are a courtesy to chefs: Redis refusing them for want of
        // memory must not cost the dish in hand.
        pipe.ignore_errors();
        let (depth,): (usize,) = names.run(conn, batch, |c| pipe.query(c))?;
        batch.depth = depth;
        Ok(self.hand_out(p)?)
    }

    /// Takes the next dish without blocking in Redis: from this batch, else
    /// up to `batch` more in one round trip; `None` when the queue is empty
    /// (a sharded diner sweeps its shards with this, see `shards.rs`).
    pub(crate) fn take_nowait(&mut self) -> Result<Option<Take>, TakeError> {
        if let Heart::Waiting(_) = self.heart {
            self.ready()?;
        }
        if let Some(p) = self.batch.buffer.pop_front() {
            self.ack_if_late()?;
            return Ok(Some(self.hand_out(p)?));
        }
        Ok(self.take_now()?)
    }

    /// Acknowledges the dishes eaten from this batch now, rather than with
    /// the next take, once eating took [`ACK_LAG`] or more since this diner
    /// last took from Redis (see the module docs).
    fn ack_if_late(&mut self) -> Result<(), Fault> {
        let late = self.batch.took_at.is_some_and(|t| t.elapsed() >= ACK_LAG);
        if self.batch.done == 0 || !late {
            return Ok(());
        }
        let Consumer {
            conn, names, batch, ..
        } = self;
        let (processing, done) = (&names.processing, batch.done);
        // RPOP: the eaten dishes are the rightmost of the processing list.
        names.run(conn, batch, |c| {
            redis::cmd("RPOP")
                .arg(processing)
                .arg(done)
                .query::<redis::Value>(c)
        })?;
        batch.done = 0;
        batch.took_at = Some(Instant::now());
        Ok(())
    }

    /// Without blocking: drops what was eaten and takes up to a batch of
    /// dishes, handing out the first; `None` when the queue is empty.
    fn take_now(&mut self) -> Result<Option<Take>, Fault> {
        if self.batch.size > 1 {
            return self.take_scripted();
        }
        match self.take_piped() {
            Ok(got) => {
                self.conn.has_room();
                self.hand_out_first(got)
            }
            // Redis ran the pipeline's RPOP of the eaten dishes (it never
            // refuses one) and refused its LMOVE: the script takes instead.
            Err(Fault::OutOfMemory { .. }) => {
                self.batch.done = 0;
                self.take_scripted()
            }
            Err(e) => Err(e),
        }
    }

    /// [`Consumer::take_now`] by the take script, which Redis runs also when
    /// out of memory (its first write is an RPOP).
    fn take_scripted(&mut self) -> Result<Option<Take>, Fault> {
        let got = self.take_round_trip(true)?;
        self.hand_out_first(got)
    }

    /// [`Consumer::take_now`] by plain commands: one dish, for `--batch 1`.
    fn take_piped(&mut self) -> Result<Vec<redis::Value>, Fault> {
        self.take_round_trip(false)
    }

    /// One round trip: drop what was eaten, move up to a batch of dishes
    /// into the processing list, read the length, wake as many chefs.
    /// Answers {length, payloads oldest first…}.
    fn take_round_trip(&mut self, scripted: bool) -> Result<Vec<redis::Value>, Fault> {
        let Consumer {
            conn, names, batch, ..
        } = self;
        let (max, done) = (batch.size, batch.done);
        let (keys, processing) = (&names.keys, &names.processing);
        let got: Vec<redis::Value> = if !scripted {
            let mut pipe = redis::pipe();
            if done > 0 {
                pipe.cmd("RPOP").arg(processing).arg(done).ignore();
            }
            pipe.cmd("LMOVE")
                .arg(&keys.queue)
                .arg(processing)
                .arg("RIGHT")
                .arg("LEFT");
            pipe.cmd("LLEN").arg(&keys.queue);
            wake(&mut pipe, &keys.room, max);
            let mut v: Vec<redis::Value> = names.run(conn, batch, |c| pipe.query(c))?;
            // {dish or nil, length} → {length, dish?}, as the script answers.
            v.rotate_right(1);
            v
        } else {
            names.run(conn, batch, |c| {
                names
                    .take_many
                    .key(&keys.queue)
                    .key(processing)
                    .key(&keys.room)
                    .arg(max)
                    .arg(done)
                    .arg(MAX_TOKENS)
                    .arg(ROOM_TTL_MS)
                    .invoke(c)
            })?
        };
        batch.done = 0;
        batch.took_at = Some(Instant::now());
        Ok(got)
    }

    /// Reads a take's answer: notes the depth, keeps the batch, hands out
    /// the first dish; `None` when the queue was empty.
    fn hand_out_first(&mut self, mut got: Vec<redis::Value>) -> Result<Option<Take>, Fault> {
        let batch = &mut self.batch;
        batch.depth = match got.first() {
            Some(redis::Value::Int(n)) => usize::try_from(*n).unwrap_or(0),
            _ => 0,
        };
        if !got.is_empty() {
            got.remove(0);
        }
        let mut got = got.into_iter().filter_map(|v| match v {
            redis::Value::BulkString(b) => Some(b),
            _ => None,
        });
        let Some(first) = got.next() else {
            return Ok(None);
        };
        batch.buffer.extend(got);
        self.hand_out(first).map(Some)
    }

    fn hand_out(&mut self, payload: Vec<u8>) -> Result<Take, Fault> {
        match Dish::decode_within(&payload, self.names.max_payload) {
            Ok(mut dish) => {
                if dish.id == DishId::NONE {
                    // Named, so it can be retried, dead-lettered and requeued.
                    dish.id = DishId::fresh();
                }
                self.batch.in_hand = Some(dish.id);
                self.names.tally.took();
                self.batch.in_hand_raw = payload;
                Ok(Take::Dish {
                    dish,
                    depth: self.batch.depth,
                })
            }
            Err(e) => {
                let names = &self.names;
                // Out of the processing list at once, so `done` counts only
                // eaten dishes, the rightmost.
                names.run(&mut self.conn, &mut self.batch, |c| {
                    names
                        .bury
                        .key(&names.processing)
                        .key(&names.keys.dead)
                        .key(&names.keys.dead_trimmed)
                        .arg(&payload)
                        .arg(dead_letter(&payload, &e.to_string()))
                        .arg(names.dead_max)
                        .invoke::<()>(c)
                })?;
                Ok(Take::Rejected {
                    reason: e.to_string(),
                })
            }
        }
    }

    /// Marks `dish`, the one in hand, as eaten; the next take tells Redis.
    /// Any other dish (one given back by a reconnect meanwhile) is not this
    /// diner's to acknowledge: it is back on the queue.
    pub fn ack(&mut self, dish: &Dish) -> Result<(), Fault> {
        if self.batch.in_hand == Some(dish.id) {
            self.batch.in_hand = None;
            self.batch.done += 1;
            self.names.tally.ate();
        }
        Ok(())
    }
}

impl Consumer {
    /// Sets `dish`, the one in hand (with its next attempt), aside until
    /// `delay` has passed: out of the processing list and into the waiting
    /// retries in one script. Any other dish is back on the queue already.
    pub fn retry(&mut self, dish: &Dish, delay: Duration) -> Result<(), Fault> {
        if self.batch.in_hand != Some(dish.id) {
            return Ok(());
        }
        let raw = std::mem::take(&mut self.batch.in_hand_raw);
        let wire = dish.encode();
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX / 2);
        let Consumer {
            conn, names, batch, ..
        } = self;
        names.run(conn, batch, |c| {
            names
                .retry
                .key(&names.processing)
                .key(&names.keys.retry)
                .arg(&raw)
                .arg(ms)
                .arg(&wire)
                .invoke::<()>(c)
        })?;
        self.batch.in_hand = None;
        // Not failed for good, and no longer in hand.
        self.names.tally.put_down();
        let due = Instant::now() + delay;
        self.batch.retry_due = Some(self.batch.retry_due.map_or(due, |d| d.min(due)));
        Ok(())
    }

    /// Moves the due retries onto the queue (as heartbeats do).
    fn promote(&mut self) -> Result<(), Fault> {
        let Consumer {
            conn, names, batch, ..
        } = self;
        names.run(conn, batch, |c| {
            names
                .promote
                .key(&names.keys.retry)
                .key(&names.keys.queue)
                .arg(PROMOTE_MAX)
                .invoke::<usize>(c)
        })?;
        Ok(())
    }

    /// Whether failed dishes wait for a retry: a closing diner stays for them.
    pub(crate) fn retries_waiting(&mut self) -> Result<bool, Fault> {
        let Consumer {
            conn, names, batch, ..
        } = self;
        let key = &names.keys.retry;
        let n: u64 = names.run(conn, batch, |c| redis::cmd("ZCARD").arg(key).query(c))?;
        Ok(n > 0)
    }

    /// Makes `dish`, the one in hand, a dead letter for `reason`: out of
    /// the processing list and into the dead letters in one script, with
    /// its whole wire (fresh attempts) for a requeue. Any other dish (one
    /// given back by a reconnect meanwhile) is back on the queue: not this
    /// diner's to bury.
    pub fn bury(&mut self, dish: &Dish, reason: &str) -> Result<(), Fault> {
        if self.batch.in_hand != Some(dish.id) {
            return Ok(());
        }
        let raw = std::mem::take(&mut self.batch.in_hand_raw);
        let letter = super::dead::failed_letter(dish, reason);
        let Consumer {
            conn, names, batch, ..
        } = self;
        names.run(conn, batch, |c| {
            names
                .bury
                .key(&names.processing)
                .key(&names.keys.dead)
                .key(&names.keys.dead_trimmed)
                .arg(&raw)
                .arg(&letter)
                .arg(names.dead_max)
                .invoke::<()>(c)
        })?;
        // Out of the processing list: not counted with the eaten ones.
        self.batch.in_hand = None;
        self.names.tally.failed();
        Ok(())
    }
}

impl Drop for Consumer {
    /// Leaves cleanly: drops what was eaten, puts back what was not (the
    /// batch not handed out, a dish not acknowledged), forgets the diner.
    fn drop(&mut self) {
        let Heart::Beating(beat) = std::mem::replace(&mut self.heart, Heart::Stopped) else {
            return;
        };
        beat.stop();
        // One attempt: a diner on its way out does not wait for Redis.
        self.conn.reconnect_for = Duration::ZERO;
        let leave = self.names.give_back(self.batch.done, true);
        let _ = self.conn.run(|c| leave.invoke::<u64>(c));
    }
}

/// The dead letter of a payload that is not a dish: a fresh id, the
/// payload (an excerpt), why, and no wire to requeue (see `dead.rs`).
pub(crate) fn dead_letter(payload: &[u8], reason: &str) -> String {
    super::dead::letter(&DishId::fresh().to_string(), payload, reason, 0, None)
}

/// Registers `id` with a live heartbeat by `script` ([`REGISTER`]), its
/// value `tally`'s counts.
fn register(
    c: &mut Con,
    script: &Script,
    keys: &Keys,
    id: &str,
    ttl: Duration,
    tally: &Tally,
) -> Result<(), RedisError> {
    script
        .key(keys.heartbeat(id))
        .key(&keys.diners)
        .arg(tally.beat_value())
        .arg(ttl_ms(ttl))
        .arg(id)
        .invoke(c)
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A diner's heartbeat thread: refreshes the heartbeat and recovers dead
/// diners' dishes, every fifth of the TTL; moves due retries onto the
/// queue every fifth of the TTL or every [`PROMOTE_EVERY`], whichever is
/// sooner.
#[derive(Debug)]
struct Beat {
    stop: Shutdown,
    done: Receiver<()>,
}

impl Beat {
    fn start(
        mut conn: Conn,
        keys: Keys,
        id: String,
        ttl: Duration,
        register_script: Script,
        tally: std::sync::Arc<Tally>,
    ) -> std::io::Result<Beat> {
        let stop = Shutdown::new();
        let (tx, done) = crossbeam_channel::bounded::<()>(1);
        let beat = (ttl / 5).max(Duration::from_millis(20));
        let tick = beat.min(PROMOTE_EVERY);
        let token = stop.clone();
        std::thread::Builder::new()
            .name(format!("heartbeat-{id}"))
            .spawn(move || {
                let recover = Script::new(RECOVER);
                let promote = Script::new(PROMOTE);
                let mut next_beat = Instant::now();
                loop {
                    let beating = Instant::now() >= next_beat;
                    // Errors here are the diner thread's to report; keep beating.
                    let _ = conn.run(|c| {
                        if beating {
                            register(c, &register_script, &keys, &id, ttl, &tally)?;
                            recover_dead(c, &recover, &keys)?;
                        }
                        // Due retries back onto the queue, about every second.
                        while promote
                            .key(&keys.retry)
                            .key(&keys.queue)
                            .arg(PROMOTE_MAX)
                            .invoke::<usize>(c)?
                            >= PROMOTE_MAX
                        {}
                        Ok(())
                    });
                    if beating {
                        next_beat = Instant::now() + beat;
                    }
                    if token.sleep(tick) {
                        break;
                    }
                }
                drop(tx);
            })?;
        Ok(Beat { stop, done })
    }

    /// Stops beating; waits briefly so a last beat cannot follow the goodbye.
    fn stop(self) {
        self.stop.stop();
        let _ = self.done.recv_timeout(Duration::from_secs(1));
    }
}

/// The diners registered on `keys`' queue, each with whether its heartbeat
/// is alive: one round trip for the set, one for the heartbeats.
fn diners_alive(c: &mut Con, keys: &Keys) -> Result<Vec<(String, bool)>, RedisError> {
    let ids: Vec<String> = redis::cmd("SMEMBERS").arg(&keys.diners).query(c)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for id in &ids {
        pipe.cmd("EXISTS").arg(keys.heartbeat(id));
    }
    let alive: Vec<bool> = pipe.query(c)?;
    Ok(ids.into_iter().zip(alive).collect())
}

/// Diners registered on `keys`' queue whose heartbeat is alive.
pub(crate) fn live_diners(c: &mut Con, keys: &Keys) -> Result<usize, RedisError> {
    Ok(diners_alive(c, keys)?.iter().filter(|(_, a)| *a).count())
}

/// Puts back the dishes of registered diners whose heartbeat expired, one
/// [`RECOVER`] per dead diner (its keys declared); returns how many dishes.
pub(crate) fn recover_dead(c: &mut Con, recover: &Script, keys: &Keys) -> Result<u64, RedisError> {
    let mut moved = 0;
    for (id, _) in diners_alive(c, keys)?.into_iter().filter(|(_, a)| !a) {
        moved += recover
            .key(&keys.queue)
            .key(&keys.diners)
            .key(keys.processing(&id))
            .key(keys.heartbeat(&id))
            .arg(&id)
            .invoke::<u64>(c)?;
    }
    Ok(moved)
}
