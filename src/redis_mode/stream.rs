//! Stream mode: chefs XADD to a Redis stream, consumer groups of diners read
//! it with XREADGROUP; every group gets every dish, each dish goes to one
//! diner of a group, at least once.
//!
//! Keys, all in the hash slot of the stream `S` (default
//! `task:prodcons:stream`); `P` is `{S}`, or `S` itself when it has a hash
//! tag (see [`Keys`]):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `S` | stream | entries `dish <payload>` (so `XADD S '*' dish 7` is a dish); its consumer groups, their consumers and pending entries live inside it |
//! | `P:room` | list | wake-up tokens for chefs waiting for room (at most [`MAX_TOKENS`], expire after 10 s) |
//! | `P:dead` | list | dead letters (see `dead.rs`) |
//! | `P:dead:trimmed` | string | how many dead letters were trimmed beyond `--dead-max` |
//! | `P:capacity` | string | the bound the last chef to start keeps, for `kitchen info` |
//! | `P:diner:<diner>` | string with TTL | a diner's counts as JSON, refreshed by its heartbeat, for `info --watch` (`tally.rs`) |
//!
//! **Groups.** A diner joins `--group` (XGROUP CREATE … `0` MKSTREAM, a
//! BUSYGROUP answer meaning another diner was first), so a new group starts
//! from the oldest entry the stream still holds. Each diner is a consumer
//! of its own name (`diner-<pid>-<origin>-<n>`).
//!
//! **Bounded.** The capacity bounds the entries the slowest group has not
//! acknowledged: for each group, its lag (not yet delivered) plus its
//! pending entries (delivered, not acknowledged); the largest counts. With
//! no group yet, every entry counts (the first group will read them all).
//! What diners hold counts, as in list mode it does not: `--capacity`
//! should exceed diners × `--batch` for diners to keep busy. A chef adds
//! through one script ([`ADD`]), so check-and-add is atomic across
//! processes; when full it blocks on `S:room` (BLPOP) until a diner's
//! acknowledgement drops a token there, as list mode does. A group nobody
//! reads holds the chefs back: remove it with `XGROUP DESTROY` (`kitchen
//! info` shows its lag).
//!
//! **Acknowledged entries do not stay.** Entries every group has
//! acknowledged are trimmed (`XTRIM MINID` to the oldest entry some group
//! still needs: its oldest pending entry, or the one after its
//! last-delivered id) by every diner's heartbeat, by a diner leaving, and by
//! a chef whose add would take the stream past twice the capacity (not on
//! every add of a full stream: that cost two more calls per dish, see
//! BENCHMARKS.md). So the stream holds the unacknowledged entries, those
//! acknowledged behind the oldest pending one, and at most about a capacity
//! more between trims: `XLEN` ≤ 2 × capacity + pending when diners
//! acknowledge in order, and a slow dish holds back the trim (memory), never
//! the chefs. With no group yet nothing is trimmed.
//!
//! **At least once.** A diner reads with `XREADGROUP … COUNT batch BLOCK
//! 250 ms … >`, and acknowledges what it ate (XACK) in the same pipeline as
//! its next read, so an acknowledgement costs no round trip. What it holds
//! stays in the group's pending entries until then. Its heartbeat thread
//! (every TTL/5) resets the idle time of its own pending entries (XCLAIM to
//! itself, JUSTID), trims, and forgets consumers that hold nothing and were
//! silent a TTL. A diner that dies stops resetting: its entries go idle,
//! and a live diner of the group claims them (`XAUTOCLAIM`, min-idle = the
//! heartbeat TTL, every TTL/5) and eats them, within about 1.2 TTL. A diner
//! that leaves acknowledges what it ate and hands back what it did not
//! (XCLAIM with a large IDLE, so the next XAUTOCLAIM takes it at once).
//! After a reconnect a diner first re-reads its own pending entries
//! (`XREADGROUP … 0`): a reply lost with the old connection is read again,
//! never lost, and XACK may be repeated safely.
//!
//! **Out of memory.** Redis over its `maxmemory` (policy `noeviction`)
//! refuses every command that may grow memory (XADD, XGROUP CREATE, SET,
//! LPUSH…), yet only eating frees memory; the spell is met as in list mode.
//! Chefs wait, with backoff (`room::OomBackoff`, shared with list mode),
//! and try again: [`ADD`] adds all or nothing (Redis refuses a script's
//! XADD only before the script's first write, never half-way), and an unbounded
//! chef's pipelined XADDs, which Redis judges one by one, send again only
//! those refused. Diners keep eating: Redis never refuses XREADGROUP, XACK,
//! XCLAIM, XAUTOCLAIM, XPENDING or XTRIM, so reads, acknowledgements,
//! claims, heartbeats ([`BEAT`]) and leaving ([`LEAVE`]) go on; the wake-up
//! tokens that ride with a diner's read are a courtesy to chefs, who cannot
//! add then anyway, and may be refused without failing the read. A diner
//! joins a group that exists although Redis refuses the XGROUP CREATE; one
//! whose group does not exist yet waits, as on an empty stream, for room to
//! create it, as it does after any refusal, then reads its own pending
//! entries again first: nothing lost, nothing handed out twice. A diner's
//! counts ([`NOTE`]) refresh their TTL before they are written, so they
//! stay through a spell.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use redis::{RedisError, Script, Value};

use super::cluster::Con;
use super::room::{self, MAX_TOKENS, ROOM_TTL_MS, Until, queued, wake};
use super::{Conn, unique_name};
use crate::dish::{Dish, DishId};
use crate::shutdown::Shutdown;
use crate::vocab::{Capacity, Fault, Put, ReadyError, RedisOptions, Take, TakeError, redact_url};

/// How long a diner's XREADGROUP blocks on an empty stream before answering
/// [`Take::Idle`], so it notices a stop.
const TAKE_WAIT: Duration = Duration::from_millis(250);

const _: () = assert!(TAKE_WAIT.as_millis() <= super::MAX_BLOCK.as_millis());

/// The consumer of each group that holds failed entries waiting for their
/// next attempt. Nobody refreshes its entries, so they go idle and any diner
/// of the group claims them (XAUTOCLAIM) once idle a heartbeat TTL; a retry
/// is set aside with the idle time that makes it claimable when due.
pub(crate) const RETRY_CONSUMER: &str = "kitchen-retry";

/// How often a diner reads its group's lag (XINFO GROUPS) with its read,
/// at most: the depth it reports with each dish is at most this old. Read
/// on every read, it cost a fifth of the commands of a dish.
const DEPTH_EVERY: Duration = Duration::from_millis(10);

/// See [`claim_period`].
const CLAIM_EVERY: Duration = Duration::from_secs(1);

/// The idle time a leaving diner gives what it hands back: far past any
/// heartbeat TTL, so the next XAUTOCLAIM of the group takes it at once.
const HANDED_BACK_IDLE_MS: u64 = 1_000_000_000;

/// The most of its own pending entries a heartbeat refreshes, or a leaving
/// diner hands back, per call: more than one diner holds (`--batch` is at
/// most 5 000), and fewer than the ~8 000 values Redis's Lua can `unpack`.
const MAX_HELD: usize = 6_000;

/// Lua shared by the scripts: a group's fields, and the trim to the oldest
/// entry some group still needs.
macro_rules! floor_lua {
    () => {
        r"
local function fields(flat)
  local f = {}
  for i = 1, #flat, 2 do f[flat[i]] = flat[i + 1] end
  return f
end
local function group_of(key, name)
  if redis.call('EXISTS', key) == 0 then return nil end
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
    local f = fields(g)
    if f['name'] == name then return f end
  end
  return nil
end
-- The oldest id some group still needs: its oldest pending entry, or the
-- one after its last-delivered id. nil without groups: a group created
-- later starts from the oldest entry, so nothing may go.
local function floor_in(key, groups)
  local best, best_ms, best_seq
  for _, g in ipairs(groups) do
    local f = fields(g)
    local id, next_one = f['last-delivered-id'], true
    if tonumber(f['pending']) > 0 then
      id, next_one = redis.call('XPENDING', key, f['name'])[2], false
    end
    local dash = string.find(id, '-', 1, true)
    local ms, seq_s = string.sub(id, 1, dash - 1), string.sub(id, dash + 1)
    local seq = tonumber(seq_s)
    -- Lua counts in doubles: past 2^53 keep the id itself (one acknowledged
    -- entry stays), never a rounded one.
    if next_one and seq < 9007199254740992 then
      seq = seq + 1
      seq_s = string.format('%.0f', seq)
    end
    local msn = tonumber(ms)
    if best == nil or msn < best_ms or (msn == best_ms and seq < best_seq) then
      best, best_ms, best_seq = ms .. '-' .. seq_s, msn, seq
    end
  end
  return best
end
local function floor_of(key)
  return floor_in(key, redis.call('XINFO', 'GROUPS', key))
end
-- What the slowest group has not acknowledged: max over groups of lag +
-- pending. The stream's length when there is no group (the first one will
-- read it all) or Redis cannot tell a lag (after an XDEL mid-stream).
local function unacked(key)
  if redis.call('EXISTS', key) == 0 then return 0 end
  local groups = redis.call('XINFO', 'GROUPS', key)
  if #groups == 0 then return redis.call('XLEN', key) end
  local most, len = 0, redis.call('XLEN', key)
  for _, g in ipairs(groups) do
    local f = fields(g)
    if not f['lag'] then return len end
    -- Entries not yet delivered are in the stream: a lag above its length
    -- is Redis's count gone stale (a replica promoted by a failover keeps
    -- the group's read counter behind), not dishes.
    most = math.max(most, math.min(tonumber(f['lag']), len) + tonumber(f['pending']))
  end
  return most
end
-- unacked, from one XINFO GROUPS, trimming first when asked (a chef's add
-- needs the count, and now and then the trim).
-- len: the stream's length, above 0.
local function trim_unacked(key, len, trim_too)
  local groups = redis.call('XINFO', 'GROUPS', key)
  if #groups == 0 then return len end
  if trim_too then
    len = len - redis.call('XTRIM', key, 'MINID', floor_in(key, groups))
  end
  local most = 0
  for _, g in ipairs(groups) do
    local f = fields(g)
    if not f['lag'] then return len end
    most = math.max(most, math.min(tonumber(f['lag']), len) + tonumber(f['pending']))
  end
  return most
end
local function trim(key)
  if redis.call('EXISTS', key) == 0 then return 0 end
  local floor = floor_of(key)
  if floor == nil then return 0 end
  return redis.call('XTRIM', key, 'MINID', floor)
end
local function wake(room, n, most, ttl)
  if n <= 0 then return end
  for i = 1, math.min(n, most) do redis.call('LPUSH', room, '1') end
  redis.call('LTRIM', room, 0, most - 1)
  redis.call('PEXPIRE', room, ttl)
end
"
    };
}

/// KEYS: stream, room. ARGV: capacity, payloads…
/// Adds as many payloads as there is room for: room is the capacity less
/// what the slowest group has not acknowledged. The stream's length bounds
/// that from above, so a short stream needs no more; a long one is counted
/// from one XINFO GROUPS, and trimmed on the way only past twice the
/// capacity: a trim costs two more calls (XPENDING, XTRIM), which every add
/// of a full stream paid, and heartbeats trim too, so the stream still
/// empties at rest. Full, or filled by this add, it clears the wake-up tokens,
/// as list mode's push does (see `list::PUT`). Returns {added,
/// unacknowledged after}; added 0 means full.
const ADD: &str = concat!(
    floor_lua!(),
    r"
local key, cap, n = KEYS[1], tonumber(ARGV[1]), #ARGV - 1
local used = redis.call('XLEN', key)
if used + n > cap and used > 0 then
  used = trim_unacked(key, used, used + n > 2 * cap)
end
n = math.min(n, cap - used)
if n <= 0 then
  redis.call('DEL', KEYS[2])
  return {0, used}
end
for i = 2, n + 1 do redis.call('XADD', key, '*', 'dish', ARGV[i]) end
if used + n >= cap then redis.call('DEL', KEYS[2]) end
return {n, used + n}
"
);

/// KEYS: stream. ARGV: group, consumer, idle ms after which a consumer that
/// holds nothing is forgotten, most entries to refresh.
/// A diner's heartbeat: resets the idle time of its own pending entries (so
/// nobody claims them while it lives), forgets silent consumers that hold
/// nothing, trims. Returns how many entries were trimmed.
const BEAT: &str = concat!(
    floor_lua!(),
    r"
local key, group, me = KEYS[1], ARGV[1], ARGV[2]
if group_of(key, group) == nil then return 0 end
local claim = {'XCLAIM', key, group, me, 0}
for _, e in ipairs(redis.call('XPENDING', key, group, '-', '+', tonumber(ARGV[4]), me)) do
  claim[#claim + 1] = e[1]
end
if #claim > 5 then
  claim[#claim + 1] = 'JUSTID'
  redis.call(unpack(claim))
end
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', key, group)) do
  local f = fields(c)
  if f['name'] ~= me and tonumber(f['pending']) == 0 and tonumber(f['idle']) > tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', key, group, f['name'])
  end
end
return trim(key)
"
);

/// KEYS: stream, room. ARGV: group, consumer, hand-back idle ms, most
/// tokens, token TTL ms, ids eaten…
/// A diner leaving: acknowledges what it ate (waking as many chefs), hands
/// back what it holds uneaten with a large idle time (so the next XAUTOCLAIM
/// takes it; its delivery count one less, so that claim is not counted as
/// an attempt), or, holding nothing, leaves the group; trims. Returns how
/// many entries it handed back.
const LEAVE: &str = concat!(
    floor_lua!(),
    r"
local key, group, me = KEYS[1], ARGV[1], ARGV[2]
if group_of(key, group) == nil then return 0 end
local acked = 0
if #ARGV > 5 then acked = redis.call('XACK', key, group, unpack(ARGV, 6)) end
local held = 0
-- One at a time, each with its delivery count less one: the claim that
-- takes it back counts one more, and giving back is not an attempt.
for _, e in ipairs(redis.call('XPENDING', key, group, '-', '+', 100000, me)) do
  redis.call('XCLAIM', key, group, me, 0, e[1], 'IDLE', ARGV[3], 'RETRYCOUNT', math.max(tonumber(e[4]) - 1, 0), 'JUSTID')
  held = held + 1
end
if held == 0 then
  redis.call('XGROUP', 'DELCONSUMER', key, group, me)
end
wake(KEYS[2], acked, tonumber(ARGV[4]), ARGV[5])
trim(key)
return held
"
);

/// KEYS: a diner's counts key. ARGV: its value, TTL ms.
/// Writes a diner's counts (see `tally.rs`). The refresh comes first: Redis
/// allows it when out of memory, and then the rest (as list mode's
/// `REGISTER`), so the counts stay through a spell.
const NOTE: &str = r"
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
";

/// KEYS: stream. ARGV: group.
/// What the group has not yet been delivered: its lag, or the stream's
/// length when the group does not exist yet (it will start from the
/// oldest entry) or Redis cannot tell the lag (after an XDEL in the middle).
const DEPTH: &str = concat!(
    floor_lua!(),
    r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local g = group_of(KEYS[1], ARGV[1])
local len = redis.call('XLEN', KEYS[1])
-- A lag above the length is a stale count (see unacked).
if g ~= nil and g['lag'] then return math.min(tonumber(g['lag']), len) end
return len
"
);

/// KEYS: stream. ARGV: group, TTL ms.
/// Consumers of the group heard from within the TTL: live diners.
const LIVE: &str = concat!(
    floor_lua!(),
    r"
if group_of(KEYS[1], ARGV[1]) == nil then return 0 end
local n = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = fields(c)
  if f['name'] ~= 'kitchen-retry' and tonumber(f['idle']) < tonumber(ARGV[2]) then n = n + 1 end
end
return n
"
);

/// KEYS: stream. What the slowest group has not acknowledged (see [`ADD`]).
pub(super) const UNACKED: &str = concat!(floor_lua!(), "return unacked(KEYS[1])");

/// The key names of one stream: the only place they are made, by the rule
/// of list mode's `Keys` (the stream key unchanged, every helper key
/// `<prefix>:<suffix>` with a prefix in the stream's hash slot).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub stream: String,
    /// What every helper key starts with: `{S}` or, for a tagged `S`, `S`
    /// (for the keys named per diner, as list mode's are).
    pub prefix: String,
    pub room: String,
    pub capacity: String,
    pub dead: String,
    /// How many dead letters were trimmed beyond `--dead-max`.
    pub dead_trimmed: String,
}

impl Keys {
    pub fn new(stream: &str) -> Keys {
        let prefix = super::slot::prefix(stream);
        Keys {
            stream: stream.to_owned(),
            room: format!("{prefix}:room"),
            capacity: format!("{prefix}:capacity"),
            dead: format!("{prefix}:dead"),
            dead_trimmed: format!("{prefix}:dead:trimmed"),
            prefix,
        }
    }

    /// Where diner `me` keeps its counts (see `tally.rs`).
    pub fn diner(&self, me: &str) -> String {
        format!("{}:diner:{me}", self.prefix)
    }
}

/// A connection whose errors name the stream, not the list.
fn stream_conn(mut conn: Conn, opts: &RedisOptions) -> Conn {
    conn.key = opts.stream.clone();
    conn
}

/// Fails unless the stream is a stream (or absent) and its dead-letter key a
/// list (or absent), so a wrong `--stream` fails before any thread starts.
pub(crate) fn check(con: &mut Con, opts: &RedisOptions) -> Result<(), Fault> {
    let keys = Keys::new(&opts.stream);
    for (key, want) in [(&keys.stream, "stream"), (&keys.dead, "list")] {
        let found: String = redis::cmd("TYPE")
            .arg(key)
            .query(con)
            .map_err(|e| super::classify(e, &opts.url, key))?;
        if found != want && found != "none" {
            return Err(Fault::Redis {
                url: redact_url(&opts.url),
                detail: format!(
                    "key `{key}` holds a {found}, not a {want}: choose another --stream, or delete the key (`redis-cli -n {} DEL {key}`)",
                    super::db_of(&opts.url)
                ),
            });
        }
    }
    Ok(())
}

/// One chef's connection to the stream.
#[derive(Debug)]
pub struct Producer {
    conn: Conn,
    keys: Keys,
    capacity: Capacity,
    /// Dishes per round trip.
    pub(crate) batch: usize,
    add: Script,
    /// Whether this chef has written its capacity to `P:capacity`.
    announced: bool,
    /// Whether its last add left the stream full: the next waits first.
    left_full: room::LeftFull,
    /// `--durable`: an add counts once a replica has it.
    durable: bool,
}

impl Producer {
    pub(crate) fn new(conn: Conn, opts: &RedisOptions, capacity: Capacity) -> Producer {
        Producer {
            conn: stream_conn(conn, opts),
            keys: Keys::new(&opts.stream),
            capacity,
            batch: opts.batch.max(1),
            add: Script::new(ADD),
            announced: false,
            left_full: room::LeftFull::default(),
            durable: opts.durable,
        }
    }

    /// Adds one dish, waiting (without polling) while the stream is full.
    pub fn put(&mut self, dish: &Dish, stop: &Shutdown) -> Result<Put, Fault> {
        let puts = self.put_all(std::slice::from_ref(dish), stop)?;
        Ok(puts.first().copied().unwrap_or(Put::Stopped))
    }

    /// Adds dishes in order, as many per round trip as there is room for,
    /// waiting (without polling) while the stream is full.
    pub fn put_all(&mut self, dishes: &[Dish], stop: &Shutdown) -> Result<Vec<Put>, Fault> {
        self.add(dishes, Until::Stopped(stop))
    }

    /// Adds one dish if there is room within `wait`; `None` when still full.
    pub fn put_within(&mut self, dish: &Dish, wait: Duration) -> Result<Option<Put>, Fault> {
        let deadline = Instant::now() + wait;
        let puts = self.add(std::slice::from_ref(dish), Until::Deadline(deadline))?;
        Ok(match puts.first() {
            Some(Put::Stopped) | None => None,
            Some(put) => Some(*put),
        })
    }

    fn add(&mut self, dishes: &[Dish], until: Until<'_>) -> Result<Vec<Put>, Fault> {
        room::announce(
            &mut self.conn,
            &self.keys.capacity,
            self.capacity,
            &mut self.announced,
        )?;
        let payloads: Vec<String> = dishes.iter().map(Dish::encode).collect();
        let Some(cap) = self.capacity.limit() else {
            return self.add_unbounded(&payloads, until);
        };
        let (keys, add, durable) = (&self.keys, &self.add, self.durable);
        room::push_all(
            &mut self.conn,
            &mut self.left_full,
            &payloads,
            cap,
            until,
            |conn, rest, wait| {
                room::push_round_trip(
                    conn,
                    add,
                    &keys.stream,
                    &keys.room,
                    cap,
                    rest,
                    wait,
                    durable,
                )
            },
        )
    }

    /// Unbounded: plain pipelined XADDs; heartbeats trim. Redis out of
    /// memory judges each XADD on its own, so it may take some of a batch
    /// and refuse the rest: only those refused are tried again (after a
    /// wait, while it refuses them all), so none is added twice.
    fn add_unbounded(&mut self, payloads: &[String], until: Until<'_>) -> Result<Vec<Put>, Fault> {
        let stream = &self.keys.stream;
        let (durable, tries) = (self.durable, self.conn.durable_tries());
        let mut out = Vec::with_capacity(payloads.len());
        let mut rest: Vec<&String> = payloads.iter().collect();
        let mut oom = room::OomBackoff::default();
        while !rest.is_empty() {
            let mut pipe = redis::pipe();
            for p in &rest {
                pipe.cmd("XADD").arg(stream).arg("*").arg("dish").arg(p);
            }
            pipe.cmd("XLEN").arg(stream).ignore_errors();
            let tried = self.conn.run(|c| {
                let mut replies: Vec<Result<Value, RedisError>> = pipe.query(c)?;
                let depth = replies.pop().unwrap_or(Ok(Value::Int(0)))?;
                let mut refused = Vec::new();
                let mut oom_error = None;
                for (i, reply) in replies.into_iter().enumerate() {
                    match reply {
                        Ok(_) => {}
                        Err(e) if super::is_oom(&e) => {
                            refused.push(i);
                            oom_error.get_or_insert(e);
                        }
                        Err(e) => return Err(e),
                    }
                }
                match oom_error {
                    // Nothing added: the spell, as for one command.
                    Some(e) if refused.len() == rest.len() => return Err(e),
                    _ => {}
                }
                if durable {
                    super::cluster::wait_for_replica(c, stream, tries)?;
                }
                let depth = int(&depth).map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
                Ok((refused, depth))
            });
            let (refused, depth) = match tried {
                Ok(got) => got,
                Err(fault @ Fault::OutOfMemory { .. }) => {
                    if oom.refused(until, fault)? {
                        continue;
                    }
                    out.push(Put::Stopped);
                    break;
                }
                Err(e) => return Err(e),
            };
            oom.took(&self.conn);
            out.extend(queued(depth, rest.len() - refused.len()));
            rest = refused
                .into_iter()
                .filter_map(|i| rest.get(i).copied())
                .collect();
        }
        Ok(out)
    }
}

/// One diner: a consumer of its group.
#[derive(Debug)]
pub struct Consumer {
    conn: Conn,
    /// Its names in Redis, fixed for its life.
    names: Names,
    heart: Heart,
    /// What it read and has not yet told Redis about.
    batch: Batch,
}

/// One diner's names and scripts: read on every take, never changed.
#[derive(Debug)]
struct Names {
    keys: Keys,
    group: String,
    /// Its consumer name in the group.
    me: String,
    ttl: Duration,
    /// The largest payload taken as a dish; larger ones are set aside.
    max_payload: usize,
    leave: Script,
    /// Moves a payload to the dead letters.
    bury: Script,
    /// The most dead letters kept (`--dead-max`).
    dead_max: usize,
    /// Its counts, written beside the stream by its heartbeat.
    tally: std::sync::Arc<super::tally::Tally>,
}

/// The heartbeat thread, once the diner is ready.
#[derive(Debug)]
enum Heart {
    /// Not started yet: the connection it will use.
    Waiting(Box<Conn>),
    /// Beating.
    Beating(Beat),
    /// Stopped (the diner is leaving).
    Stopped,
}

/// One stream entry as a diner reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    id: String,
    body: Body,
    /// Which attempt this delivery is: 1 for a new entry, the group's
    /// delivery count for one claimed or read again.
    attempt: u32,
}

/// What an entry carries.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    /// The `dish` field.
    Dish(Vec<u8>),
    /// No `dish` field: the fields it has, as a JSON object, for the dead letters.
    Other(String),
    /// Pending, but no longer in the stream (deleted or trimmed by someone else).
    Gone,
}

/// What the diner read and owes Redis.
#[derive(Debug)]
struct Batch {
    /// Most entries per read (`--batch`, XREADGROUP's COUNT).
    size: usize,
    /// Read, not yet handed out (oldest first).
    buffer: VecDeque<Entry>,
    /// The group's lag seen lately (see [`DEPTH_EVERY`]).
    depth: usize,
    /// When the lag was last read.
    depth_at: Option<Instant>,
    /// Entry ids eaten (or set aside), to acknowledge with the next read.
    done: Vec<String>,
    /// The dish handed out and not yet acknowledged, and its entry id.
    in_hand: Option<(DishId, String)>,
    /// Read this consumer's own pending entries (`… 0`) before new ones: set
    /// on every new connection, since a reply may have been lost with the old.
    history: bool,
    /// When to look for entries of dead diners next (XAUTOCLAIM).
    next_claim: Instant,
    /// Where the last XAUTOCLAIM scan stopped (`0-0`: start over).
    cursor: String,
    /// Entries found pending but gone from the stream.
    lost: u64,
}

impl Batch {
    /// Forgets what was read on a connection that is gone: it is still in
    /// this consumer's pending entries, and the history read brings it back.
    fn reconnected(&mut self) {
        self.buffer.clear();
        self.history = true;
    }

    /// Adds the acknowledgement of what was eaten, and as many wake-up
    /// tokens, to `pipe`; whether it did (the XACK's reply comes first,
    /// see [`query_tokens_aside`]).
    fn ack_into(&self, pipe: &mut redis::Pipeline, names: &Names) -> bool {
        if self.done.is_empty() {
            return false;
        }
        pipe.cmd("XACK")
            .arg(&names.keys.stream)
            .arg(&names.group)
            .arg(&self.done);
        wake(pipe, &names.keys.room, self.done.len());
        true
    }
}

impl Names {
    /// Runs `f` on `conn`. A fresh connection first makes sure the group
    /// exists (Redis may have restarted empty) and has `batch` forget what
    /// it read on the old one; a group that vanished meanwhile (NOGROUP) is
    /// created again and `f` retried once.
    fn run<T>(
        &self,
        conn: &mut Conn,
        batch: &mut Batch,
        mut f: impl FnMut(&mut Con, &mut Batch) -> Result<T, RedisError>,
    ) -> Result<T, Fault> {
        conn.run_fresh(|c, fresh| {
            if fresh {
                // First: a join refused (out of memory) still leaves a
                // connection that is no longer fresh.
                batch.reconnected();
                self.join(c)?;
            }
            match f(c, batch) {
                Err(e) if is_nogroup(&e) => {
                    self.join(c)?;
                    f(c, batch)
                }
                other => other,
            }
        })
    }

    /// Creates the group from the oldest entry the stream holds, unless it
    /// exists (BUSYGROUP: another diner was first). Redis out of memory
    /// refuses XGROUP CREATE before it looks for the group: a group that
    /// exists is joined all the same, one that does not waits for room.
    fn join(&self, c: &mut Con) -> Result<(), RedisError> {
        let created: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.keys.stream)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query(c);
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) if super::is_oom(&e) && self.group_exists(c)? => Ok(()),
            other => other,
        }
    }

    /// Whether the group exists (XINFO GROUPS; false without the stream).
    fn group_exists(&self, c: &mut Con) -> Result<bool, RedisError> {
        let groups: Result<Value, RedisError> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.keys.stream)
            .query(c);
        let groups = match groups {
            Ok(v) => v,
            Err(e) if e.to_string().contains("no such key") => return Ok(false),
            Err(e) => return Err(e),
        };
        Ok(items(groups)
            .into_iter()
            .map(fields)
            .any(|f| f.text("name") == self.group))
    }

    fn ttl_ms(&self) -> u64 {
        ttl_ms(self.ttl)
    }
}

/// Sends `pipe`, whose wake-up tokens (`.ignore()`d: LPUSH, which Redis
/// refuses when out of memory) may fail without failing the rest: a diner
/// must go on reading and acknowledging through a spell (tokens are a
/// courtesy to chefs, who cannot add then anyway). The replies of the other
/// commands, in order, or the first error among them.
fn query_tokens_aside(pipe: &mut redis::Pipeline, c: &mut Con) -> Result<Vec<Value>, RedisError> {
    let replies: Vec<Result<Value, RedisError>> = pipe.ignore_errors().query(c)?;
    replies.into_iter().collect()
}

/// Whether Redis said the group (or the stream) is not there.
fn is_nogroup(e: &RedisError) -> bool {
    // A pipeline's error carries no single code: read its text.
    e.code() == Some("NOGROUP") || e.to_string().contains("NOGROUP")
}

impl Consumer {
    pub(crate) fn new(conn: Conn, mut heart_conn: Conn, opts: &RedisOptions) -> Consumer {
        static DINERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = DINERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A heartbeat that waits out a long outage would outlive its diner.
        heart_conn.reconnect_for = Duration::ZERO;
        Consumer {
            conn: stream_conn(conn, opts),
            names: Names {
                keys: Keys::new(&opts.stream),
                group: opts.group.clone(),
                me: unique_name("diner", n),
                ttl: opts.heartbeat_ttl,
                max_payload: opts.max_payload,
                leave: Script::new(LEAVE),
                bury: Script::new(super::dead::BURY),
                dead_max: opts.dead_max.max(1),
                tally: std::sync::Arc::default(),
            },
            heart: Heart::Waiting(Box::new(stream_conn(heart_conn, opts))),
            batch: Batch {
                size: opts.batch.max(1),
                buffer: VecDeque::new(),
                depth: 0,
                depth_at: None,
                done: Vec::new(),
                in_hand: None,
                history: true,
                next_claim: Instant::now(),
                cursor: "0-0".to_owned(),
                lost: 0,
            },
        }
    }

    /// Connects, joins the group (creating it if this diner is its first)
    /// and starts the heartbeat. Redis out of memory cannot stop a diner
    /// here: a group it cannot create yet, its reads create once Redis has
    /// room (they find NOGROUP and join again).
    pub fn ready(&mut self) -> Result<(), ReadyError> {
        let Consumer {
            conn, names, batch, ..
        } = self;
        match names.run(conn, batch, |_, _| Ok(())) {
            Ok(()) | Err(Fault::OutOfMemory { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if let Heart::Waiting(_) = self.heart {
            let Heart::Waiting(conn) = std::mem::replace(&mut self.heart, Heart::Stopped) else {
                return Ok(());
            };
            let n = &self.names;
            let beat = Beat::start(
                *conn,
                n.keys.stream.clone(),
                n.group.clone(),
                n.me.clone(),
                n.ttl,
                n.tally.clone(),
            )
            .map_err(ReadyError::Spawn)?;
            self.heart = Heart::Beating(beat);
        }
        Ok(())
    }

    /// Dishes found pending but gone from the stream (deleted or trimmed by
    /// another client): shown never to be eaten.
    pub fn lost(&self) -> u64 {
        self.batch.lost
    }

    /// Takes the next dish: from what the last read brought, else this
    /// consumer's own pending entries after a reconnect, else a dead diner's
    /// (when a claim is due), else new ones, blocking up to [`TAKE_WAIT`].
    pub fn take(&mut self, finished: &Shutdown) -> Result<Take, TakeError> {
        match self.take_or_refused(finished) {
            // Redis out of memory refused one of this diner's commands
            // (its reads and acknowledgements it never refuses; creating
            // the group it does): a spell, not an end. Wait as an empty
            // read would, then read again, this consumer's own pending
            // entries first, so whatever a refused round trip delivered is
            // neither lost nor handed out twice.
            Err(TakeError::Fault(Fault::OutOfMemory { .. })) => {
                self.batch.reconnected();
                std::thread::sleep(TAKE_WAIT);
                Ok(Take::Idle)
            }
            other => other,
        }
    }

    fn take_or_refused(&mut self, finished: &Shutdown) -> Result<Take, TakeError> {
        if let Heart::Waiting(_) = self.heart {
            self.ready()?;
        }
        loop {
            if let Some(entry) = self.batch.buffer.pop_front() {
                match self.hand_out(entry)? {
                    Some(take) => return Ok(take),
                    None => continue,
                }
            }
            if self.batch.history {
                if self.read(Read::History)? == 0 {
                    self.batch.history = false;
                }
                continue;
            }
            if Instant::now() >= self.batch.next_claim && self.claim()? > 0 {
                continue;
            }
            // Read before looking at the stream: a chef's last add may land
            // between an empty look and a later read of `finished`, and
            // closing then would leave that dish behind.
            let was_finished = finished.is_stopped();
            let read = if was_finished {
                Read::New(None)
            } else {
                Read::New(Some(TAKE_WAIT))
            };
            if self.read(read)? == 0 && self.batch.buffer.is_empty() && !self.batch.history {
                // Retries waiting will be back: wait for them (a claim
                // brings them once due).
                if was_finished && self.retries_waiting()? {
                    std::thread::sleep(TAKE_WAIT);
                    return Ok(Take::Idle);
                }
                return Ok(if was_finished {
                    Take::Closed
                } else {
                    Take::Idle
                });
            }
        }
    }

    /// One XREADGROUP, with the acknowledgements owed and (at most every
    /// [`DEPTH_EVERY`]) the group's lag in the same round trip; what it
    /// brings goes to the buffer. Returns
    /// how many entries it brought.
    fn read(&mut self, how: Read) -> Result<usize, Fault> {
        let Consumer {
            conn, names, batch, ..
        } = self;
        let mut again = false;
        // The group's lag costs an XINFO GROUPS: read it with at most one
        // read per DEPTH_EVERY (a diner at full speed reads thousands of
        // times a second; one eating slowly reads it every time).
        let look = batch.depth_at.is_none_or(|at| at.elapsed() >= DEPTH_EVERY);
        let result = names.run(conn, batch, |c, b| {
            let mut pipe = redis::pipe();
            let acked = b.ack_into(&mut pipe, names);
            // A new connection reads this consumer's own pending entries first.
            let (id, block) = match how {
                _ if b.history => ("0", None),
                Read::History => ("0", None),
                Read::New(block) => (">", block),
            };
            again = id == "0";
            let read = pipe
                .cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&names.group)
                .arg(&names.me)
                .arg("COUNT")
                .arg(b.size);
            if let Some(block) = block {
                read.arg("BLOCK").arg(ms(block).max(1));
            }
            read.arg("STREAMS").arg(&names.keys.stream).arg(id);
            if look {
                pipe.cmd("XINFO").arg("GROUPS").arg(&names.keys.stream);
            }
            let mut replies = query_tokens_aside(&mut pipe, c)?;
            if acked {
                replies.remove(0);
            }
            Ok(replies)
        });
        let mut replies = match result {
            Ok(reply) => reply.into_iter(),
            Err(e) => {
                // Whatever that read delivered is pending for this consumer
                // only: read it back first if this diner goes on.
                batch.history = true;
                return Err(e);
            }
        };
        let (got, groups) = (replies.next().unwrap_or(Value::Nil), replies.next());
        batch.done.clear();
        if let Some(lag) = groups.and_then(|g| lag_of(g, &names.group)) {
            batch.depth = lag;
            batch.depth_at = Some(Instant::now());
        }
        let entries = read_reply(got);
        let n = entries.len();
        if n == 0 && !again {
            // Nothing new for this group: nothing left to deliver.
            batch.depth = 0;
        }
        // Read again: each may be a later attempt than the first.
        let entries = if again {
            self.with_attempts(entries)?
        } else {
            entries
        };
        self.batch.buffer.extend(entries);
        Ok(n)
    }

    /// Claims entries dead diners of the group held past the heartbeat TTL
    /// (XAUTOCLAIM), into the buffer. Returns how many.
    ///
    /// XAUTOCLAIM adds one to each claimed entry's delivery count (the
    /// fourth field of `XPENDING key group - + n`): that count is where a
    /// future `--max-attempts` reads a dish's attempts, dead-lettering it
    /// past the limit. (A leaving diner's hand-back counts too.)
    fn claim(&mut self) -> Result<usize, Fault> {
        let Consumer {
            conn, names, batch, ..
        } = self;
        let min_idle = names.ttl_ms();
        let reply = names.run(conn, batch, |c, b| {
            if b.history {
                // A new connection: this consumer's own entries come first.
                return Ok(None);
            }
            let mut pipe = redis::pipe();
            let acked = b.ack_into(&mut pipe, names);
            pipe.cmd("XAUTOCLAIM")
                .arg(&names.keys.stream)
                .arg(&names.group)
                .arg(&names.me)
                .arg(min_idle)
                .arg(&b.cursor)
                .arg("COUNT")
                .arg(b.size);
            let replies = query_tokens_aside(&mut pipe, c)?;
            Ok(replies.into_iter().nth(usize::from(acked)))
        });
        let reply = match reply {
            Ok(Some(v)) => v,
            Ok(None) => return Ok(0),
            Err(e) => {
                batch.history = true;
                return Err(e);
            }
        };
        batch.done.clear();
        let mut parts = items(reply).into_iter();
        let cursor = parts.next().and_then(|v| text(&v)).unwrap_or_default();
        let claimed = parts.next().map(entries).unwrap_or_default();
        // Redis 7 also lists the pending entries it found deleted (and
        // dropped from the group): dishes nobody will eat.
        batch.lost += parts.next().map_or(0, |v| items(v).len() as u64);
        // Scan on at once while the pending list has more; else wait a beat.
        let scanned_all = cursor.is_empty() || cursor == "0-0";
        batch.next_claim = if scanned_all {
            Instant::now() + claim_period(names.ttl)
        } else {
            Instant::now()
        };
        batch.cursor = if scanned_all {
            "0-0".to_owned()
        } else {
            cursor
        };
        let n = claimed.len();
        let claimed = self.with_attempts(claimed)?;
        self.batch.buffer.extend(claimed);
        Ok(n)
    }

    /// Reads each entry's delivery count (XPENDING), its attempt: a claim
    /// (of a dead diner's entry, or of a due retry) counts one more, so
    /// does a history read; a leaving diner's hand-back does not (see [`LEAVE`]).
    fn with_attempts(&mut self, mut entries: Vec<Entry>) -> Result<Vec<Entry>, Fault> {
        if entries.is_empty() {
            return Ok(entries);
        }
        let Consumer {
            conn, names, batch, ..
        } = self;
        let counts: Vec<Value> = names.run(conn, batch, |c, _| {
            let mut pipe = redis::pipe();
            for e in &entries {
                pipe.cmd("XPENDING")
                    .arg(&names.keys.stream)
                    .arg(&names.group)
                    .arg(&e.id)
                    .arg(&e.id)
                    .arg(1);
            }
            pipe.query(c)
        })?;
        for (e, reply) in entries.iter_mut().zip(counts) {
            let count = items(reply)
                .into_iter()
                .next()
                .and_then(|p| items(p).into_iter().nth(3))
                .and_then(|v| int(&v));
            if let Some(n) = count {
                e.attempt = u32::try_from(n).unwrap_or(u32::MAX).max(1);
            }
        }
        Ok(entries)
    }

    /// Hands out one entry: a dish, or a rejection (set aside in `S:dead`);
    /// `None` for an entry gone from the stream, which is skipped.
    fn hand_out(&mut self, entry: Entry) -> Result<Option<Take>, Fault> {
        let (payload, reason) = match entry.body {
            Body::Gone => {
                self.batch.lost += 1;
                self.batch.done.push(entry.id);
                return Ok(None);
            }
            Body::Dish(payload) => match Dish::decode_within(&payload, self.names.max_payload) {
                Ok(mut dish) => {
                    if dish.id == DishId::NONE {
                        // Named, so it can be retried, dead-lettered and
                        // requeued: by its entry, so each attempt at one
                        // entry bears the same name.
                        dish.id = entry_dish_id(&entry.id).unwrap_or_else(DishId::fresh);
                    }
                    dish.attempt = entry.attempt;
                    self.batch.in_hand = Some((dish.id, entry.id));
                    self.names.tally.took();
                    return Ok(Some(Take::Dish {
                        dish,
                        depth: self.batch.depth,
                    }));
                }
                Err(e) => (payload, e.to_string()),
            },
            Body::Other(fields) => (
                fields.into_bytes(),
                format!("stream entry {} has no `dish` field", entry.id),
            ),
        };
        self.dead_letter(&super::list::dead_letter(&payload, &reason))?;
        // Set aside: acknowledged with the next read.
        self.batch.done.push(entry.id);
        Ok(Some(Take::Rejected { reason }))
    }

    /// Sets `dish`, the one in hand, aside for its next attempt after
    /// `delay`: its entry goes to the group's [`RETRY_CONSUMER`] with the
    /// idle time that makes it claimable when due (one XCLAIM: never
    /// acknowledged, never lost). The wait is at most the heartbeat TTL,
    /// the idle time after which entries are claimed.
    pub fn retry(&mut self, dish: &Dish, delay: Duration) -> Result<(), Fault> {
        let entry = match &self.batch.in_hand {
            Some((id, entry)) if *id == dish.id => entry.clone(),
            _ => return Ok(()),
        };
        let idle = self.names.ttl_ms().saturating_sub(ms(delay));
        let Consumer {
            conn, names, batch, ..
        } = self;
        names.run(conn, batch, |c, _| {
            redis::cmd("XCLAIM")
                .arg(&names.keys.stream)
                .arg(&names.group)
                .arg(RETRY_CONSUMER)
                .arg(0)
                .arg(&entry)
                .arg("IDLE")
                .arg(idle)
                .arg("JUSTID")
                .query::<Value>(c)
        })?;
        self.batch.in_hand = None;
        self.names.tally.put_down();
        Ok(())
    }

    /// Whether entries of the group wait for a retry: a closing diner stays for them.
    fn retries_waiting(&mut self) -> Result<bool, Fault> {
        let Consumer {
            conn, names, batch, ..
        } = self;
        let n = names.run(conn, batch, |c, _| {
            waiting_retries(c, &names.keys.stream, &names.group)
        })?;
        Ok(n > 0)
    }

    /// Makes `dish`, the one in hand, a dead letter for `reason` (with its
    /// whole wire, fresh attempts, for a requeue); its entry is
    /// acknowledged with the next read.
    pub fn bury(&mut self, dish: &Dish, reason: &str) -> Result<(), Fault> {
        let mine = self
            .batch
            .in_hand
            .as_ref()
            .is_some_and(|(id, _)| *id == dish.id);
        if !mine {
            return Ok(());
        }
        self.dead_letter(&super::dead::failed_letter(dish, reason))?;
        self.settle(dish);
        self.names.tally.failed();
        Ok(())
    }

    /// Adds `letter` to the dead letters, bounded by `--dead-max` (the
    /// entry itself is acknowledged by the caller's next read).
    fn dead_letter(&mut self, letter: &str) -> Result<(), Fault> {
        let Consumer {
            conn, names, batch, ..
        } = self;
        let keys = &names.keys;
        names.run(conn, batch, |c, _| {
            names
                .bury
                .key(&keys.dead)
                .key(&keys.dead)
                .key(&keys.dead_trimmed)
                .arg("")
                .arg(letter)
                .arg(names.dead_max)
                .invoke::<u64>(c)
        })?;
        Ok(())
    }

    /// Marks `dish`, the one in hand, as eaten; the next read acknowledges it.
    pub fn ack(&mut self, dish: &Dish) -> Result<(), Fault> {
        if self.settle(dish) {
            self.names.tally.ate();
        }
        Ok(())
    }

    /// Done with `dish`, the one in hand: the next read acknowledges its
    /// entry. Whether it was in hand: any other dish is not this diner's to
    /// acknowledge.
    fn settle(&mut self, dish: &Dish) -> bool {
        let mine = self
            .batch
            .in_hand
            .as_ref()
            .is_some_and(|(id, _)| *id == dish.id);
        if let Some((_, entry)) = self.batch.in_hand.take_if(|_| mine) {
            self.batch.done.push(entry);
        }
        mine
    }
}

/// The id of a dish that came without one, from its entry's id
/// (`<ms>-<seq>`): the same on every delivery of that entry.
fn entry_dish_id(entry: &str) -> Option<DishId> {
    let (ms, seq) = entry.split_once('-')?;
    Some(DishId {
        origin: ms.parse().ok()?,
        seq: seq.parse().ok()?,
    })
}

/// Which entries a read asks for.
#[derive(Debug, Clone, Copy)]
enum Read {
    /// This consumer's own pending entries (`0`).
    History,
    /// New entries (`>`), blocking up to this long.
    New(Option<Duration>),
}

impl Drop for Consumer {
    /// Leaves cleanly: acknowledges what was eaten, hands back what was not
    /// (the batch not handed out, a dish not acknowledged), leaves the group
    /// if it holds nothing, trims.
    fn drop(&mut self) {
        let Heart::Beating(beat) = std::mem::replace(&mut self.heart, Heart::Stopped) else {
            return;
        };
        beat.stop();
        // One attempt: a diner on its way out does not wait for Redis.
        self.conn.reconnect_for = Duration::ZERO;
        let n = &self.names;
        let mut leave = n.leave.prepare_invoke();
        leave
            .key(&n.keys.stream)
            .key(&n.keys.room)
            .arg(&n.group)
            .arg(&n.me)
            .arg(HANDED_BACK_IDLE_MS)
            .arg(MAX_TOKENS)
            .arg(ROOM_TTL_MS)
            .arg(&self.batch.done);
        let _ = self.conn.run(|c| leave.invoke::<u64>(c));
    }
}

pub(super) fn ttl_ms(ttl: Duration) -> u64 {
    ms(ttl).max(1)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How often a heartbeat beats.
fn beat_period(ttl: Duration) -> Duration {
    (ttl / 5).max(Duration::from_millis(20))
}

/// How often a diner looks for dead diners' entries and due retries: with
/// each beat, and at least every [`CLAIM_EVERY`], so a due retry waits about
/// a second at most whatever the TTL.
fn claim_period(ttl: Duration) -> Duration {
    beat_period(ttl).min(CLAIM_EVERY)
}

/// A diner's heartbeat thread: every TTL/5, resets the idle time of what
/// the diner holds, forgets consumers long gone, trims (see [`BEAT`]).
#[derive(Debug)]
struct Beat {
    stop: Shutdown,
    done: Receiver<()>,
}

impl Beat {
    fn start(
        mut conn: Conn,
        stream: String,
        group: String,
        me: String,
        ttl: Duration,
        tally: std::sync::Arc<super::tally::Tally>,
    ) -> std::io::Result<Beat> {
        let stop = Shutdown::new();
        let (tx, done) = crossbeam_channel::bounded::<()>(1);
        let period = beat_period(ttl);
        let token = stop.clone();
        std::thread::Builder::new()
            .name(format!("heartbeat-{me}"))
            .spawn(move || {
                let (beat, write_note) = (Script::new(BEAT), Script::new(NOTE));
                let note = Keys::new(&stream).diner(&me);
                loop {
                    // Errors here are the diner thread's to report; keep beating.
                    let _ = conn.run(|c| {
                        beat.key(&stream)
                            .arg(&group)
                            .arg(&me)
                            .arg(ttl_ms(ttl))
                            .arg(MAX_HELD)
                            .invoke::<u64>(c)
                    });
                    // Apart: an error here must not cost the beat.
                    let _ = conn.run(|c| {
                        write_note
                            .key(&note)
                            .arg(tally.beat_value())
                            .arg(ttl_ms(ttl))
                            .invoke::<()>(c)
                    });
                    if token.sleep(period) {
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

/// Entries of `group` waiting for a retry: those its [`RETRY_CONSUMER`]
/// holds (0 when the stream or the group is not there).
pub(crate) fn waiting_retries(c: &mut Con, stream: &str, group: &str) -> Result<usize, RedisError> {
    let consumers: Result<Value, RedisError> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(stream)
        .arg(group)
        .query(c);
    let consumers = match consumers {
        Ok(v) => v,
        Err(e) if is_nogroup(&e) || e.to_string().contains("no such key") => return Ok(0),
        Err(e) => return Err(e),
    };
    Ok(items(consumers)
        .into_iter()
        .map(fields)
        .find(|f| f.text("name") == RETRY_CONSUMER)
        .and_then(|f| f.int("pending"))
        .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX)))
}

/// Reads the depth (the group's lag) and live diners of one group.
#[derive(Debug)]
pub struct Gauge {
    stream: String,
    group: String,
    ttl: Duration,
    depth: Script,
    live: Script,
}

impl Gauge {
    pub(crate) fn new(opts: &RedisOptions) -> Gauge {
        Gauge {
            stream: opts.stream.clone(),
            group: opts.group.clone(),
            ttl: opts.heartbeat_ttl,
            depth: Script::new(DEPTH),
            live: Script::new(LIVE),
        }
    }

    /// What the group has not yet been delivered (see [`DEPTH`]).
    pub(crate) fn depth(&self, c: &mut Con) -> Result<usize, RedisError> {
        self.depth.key(&self.stream).arg(&self.group).invoke(c)
    }

    /// Entries of the group waiting for a retry.
    pub(crate) fn waiting_retries(&self, c: &mut Con) -> Result<usize, RedisError> {
        waiting_retries(c, &self.stream, &self.group)
    }

    /// Consumers of the group heard from within the heartbeat TTL.
    pub(crate) fn diners(&self, c: &mut Con) -> Result<usize, RedisError> {
        self.live
            .key(&self.stream)
            .arg(&self.group)
            .arg(ttl_ms(self.ttl))
            .invoke(c)
    }
}

/// The elements of an array (or a RESP3 map, flattened); nothing for nil.
pub(super) fn items(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => Vec::new(),
    }
}

fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::Int(n) => Some(n.to_string().into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        _ => None,
    }
}

pub(super) fn text(v: &Value) -> Option<String> {
    bytes(v.clone()).map(|b| String::from_utf8_lossy(&b).into_owned())
}

pub(super) fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text(other)?.parse().ok(),
    }
}

/// A reply of name/value pairs (XINFO), by name.
pub(super) struct Fields(Vec<(String, Value)>);

pub(super) fn fields(v: Value) -> Fields {
    let mut out = Vec::new();
    let mut it = items(v).into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((text(&k).unwrap_or_default(), v));
    }
    Fields(out)
}

impl Fields {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    pub(super) fn text(&self, name: &str) -> String {
        self.get(name).and_then(text).unwrap_or_default()
    }

    pub(super) fn int(&self, name: &str) -> Option<u64> {
        self.get(name).and_then(int)
    }
}

/// The lag of `group` in an XINFO GROUPS reply.
fn lag_of(groups: Value, group: &str) -> Option<usize> {
    items(groups)
        .into_iter()
        .map(fields)
        .find(|f| f.text("name") == group)
        .and_then(|f| f.int("lag"))
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// The entries of an XREADGROUP reply, `[[key, [entry…]]…]` (a map in RESP3).
fn read_reply(v: Value) -> Vec<Entry> {
    match v {
        Value::Map(m) => m.into_iter().flat_map(|(_, es)| entries(es)).collect(),
        other => items(other)
            .into_iter()
            .flat_map(|s| items(s).into_iter().nth(1).map(entries).unwrap_or_default())
            .collect(),
    }
}

/// `[[id, [field, value…]]…]`; an entry whose fields are nil is gone.
fn entries(v: Value) -> Vec<Entry> {
    items(v).into_iter().filter_map(entry).collect()
}

fn entry(v: Value) -> Option<Entry> {
    let mut parts = items(v).into_iter();
    let id = text(&parts.next()?)?;
    let body = match parts.next() {
        None | Some(Value::Nil) => Body::Gone,
        Some(fs) => {
            let mut pairs = Vec::new();
            let mut it = items(fs).into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((text(&k).unwrap_or_default(), v));
            }
            match pairs.iter().position(|(k, _)| k == "dish") {
                Some(i) => Body::Dish(bytes(pairs.swap_remove(i).1).unwrap_or_default()),
                None => Body::Other(
                    serde_json::Value::Object(
                        pairs
                            .into_iter()
                            .map(|(k, v)| {
                                (k, serde_json::Value::String(text(&v).unwrap_or_default()))
                            })
                            .collect(),
                    )
                    .to_string(),
                ),
            }
        }
    };
    Some(Entry {
        id,
        body,
        attempt: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_entries_of_every_shape() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-1"),
                    Value::Array(vec![bulk("dish"), bulk("7")]),
                ]),
                Value::Array(vec![
                    bulk("1-2"),
                    Value::Array(vec![bulk("task"), bulk("resize")]),
                ]),
                Value::Array(vec![bulk("1-3"), Value::Nil]),
            ]),
        ])]);
        let got = read_reply(reply);
        assert_eq!(
            got,
            [
                Entry {
                    id: "1-1".into(),
                    body: Body::Dish(b"7".to_vec()),
                    attempt: 1,
                },
                Entry {
                    id: "1-2".into(),
                    body: Body::Other(r#"{"task":"resize"}"#.into()),
                    attempt: 1,
                },
                Entry {
                    id: "1-3".into(),
                    body: Body::Gone,
                    attempt: 1,
                },
            ]
        );
        assert!(read_reply(Value::Nil).is_empty());
        // RESP3 answers with a map of streams.
        let map = Value::Map(vec![(
            bulk("s"),
            Value::Array(vec![Value::Array(vec![
                bulk("2-0"),
                Value::Array(vec![bulk("dish"), bulk("1")]),
            ])]),
        )]);
        assert_eq!(read_reply(map).len(), 1);
    }

    #[test]
    fn bare_payloads_are_named_by_their_entry() {
        assert_eq!(
            entry_dish_id("1700000000000-3"),
            Some(DishId {
                origin: 1_700_000_000_000,
                seq: 3
            })
        );
        assert_eq!(entry_dish_id("junk"), None);
    }

    #[test]
    fn finds_the_lag_of_one_group() {
        let group =
            |name: &str, lag: Value| Value::Array(vec![bulk("name"), bulk(name), bulk("lag"), lag]);
        let reply = Value::Array(vec![group("a", Value::Int(4)), group("b", Value::Nil)]);
        assert_eq!(lag_of(reply.clone(), "a"), Some(4));
        assert_eq!(lag_of(reply.clone(), "b"), None);
        assert_eq!(lag_of(reply, "c"), None);
    }
}
