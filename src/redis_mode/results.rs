//! What became of tracked dishes, in Redis beside the queue, bounded by time and by count.
//!
//! One string key per dish, `P:result:<id>`, holding a JSON
//! [`DishResult`] that expires after the TTL; and an index, the sorted set
//! `P:results` of ids by the time they were queued, trimmed to the most
//! records allowed. Without the count bound an unauthenticated client could
//! fill Redis with a day of `POST /dishes` records (89 k in 10 s took 30 MB)
//! until it answered `OOM` to the queue itself. `P` is the queue's helper
//! prefix (see `list::Keys`), so a record and its index share a hash slot.
//!
//! When Redis is out of memory anyway, a new record (`POST /dishes`) is
//! refused, and the web entry answers `503`; a diner's later states still
//! go through (see [`UPDATE`]), so recording a result never stops a diner.

/// KEYS: the record, the index. ARGV: its JSON, TTL in ms, id, time queued
/// (µs), most records kept.
/// Records a new dish and drops the oldest ids beyond the bound from the
/// index: one reply, where a pipeline would make a caller wait once per
/// command if Redis hangs. Returns the ids dropped, whose records the
/// caller deletes (a script names every key it touches, as Redis Cluster
/// requires, and these are known only here).
const QUEUED: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
if over <= 0 then return {} end
local dropped = {}
local oldest = redis.call('ZPOPMIN', KEYS[2], over)
for i = 1, #oldest, 2 do table.insert(dropped, oldest[i]) end
return dropped
";

/// KEYS: the record. ARGV: its new JSON, TTL in ms.
/// Overwrites a record that still exists, with a fresh TTL. The refresh
/// comes first: Redis allows PEXPIRE when out of memory, and once a script
/// has written it lets the script finish, so a diner's `eating` and `eaten`
/// are recorded even then (each replaces a record of about its size).
const UPDATE: &str = r"
if redis.call('PEXPIRE', KEYS[1], ARGV[2]) == 1 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
";

use redis::Script;

use super::Conn;
use crate::dish::{DishId, now_us};
use crate::results::{DishResult, Status};
use crate::vocab::{Fault, RedisOptions};

/// One thread's handle on the results store.
///
/// One connection, opened on first use and reopened after Redis returns
/// (within `reconnect_for` of the options it was made from).
#[derive(Debug)]
pub struct Results {
    conn: Conn,
    prefix: String,
    index: String,
    ttl_ms: u64,
    max: usize,
    queued: Script,
    update: Script,
}

impl Results {
    pub(crate) fn new(conn: Conn, opts: &RedisOptions, max: usize) -> Results {
        let keys = super::list::Keys::new(&opts.queue);
        Results {
            conn,
            prefix: keys.result_prefix(),
            index: keys.results(),
            ttl_ms: u64::try_from(opts.result_ttl.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            max: max.max(1),
            queued: Script::new(QUEUED),
            update: Script::new(UPDATE),
        }
    }

    fn key(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    /// Writes a record with a fresh TTL. A new (queued) record joins the
    /// index and pushes out the oldest beyond the bound; a later state only
    /// overwrites a record that still exists, so a trimmed or expired one
    /// does not come back.
    pub fn put(&mut self, r: &DishResult) -> Result<(), Fault> {
        let (key, value, ttl) = (self.key(&r.id), r.to_json(), self.ttl_ms);
        if r.status != Status::Queued {
            let update = &self.update;
            return self
                .conn
                .run(|c| update.key(&key).arg(&value).arg(ttl).invoke::<()>(c));
        }
        let (index, script) = (&self.index, &self.queued);
        let max = self.max;
        let queued = self.conn.run(|c| {
            script
                .key(&key)
                .key(index)
                .arg(&value)
                .arg(ttl)
                .arg(&r.id)
                .arg(now_us())
                .arg(max)
                .invoke::<Vec<String>>(c)
        });
        let dropped = queued?;
        self.conn.has_room();
        if dropped.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = dropped.iter().map(|id| self.key(id)).collect();
        // The records would expire anyway: a failure here costs memory for
        // a TTL, never the new record.
        let _ = self
            .conn
            .run(|c| redis::cmd("DEL").arg(&keys).query::<u64>(c));
        Ok(())
    }

    /// Forgets a record (its dish never made it onto the queue).
    pub fn remove(&mut self, id: DishId) -> Result<(), Fault> {
        let id = id.to_string();
        let (key, index) = (self.key(&id), &self.index);
        self.conn.run(|c| {
            redis::pipe()
                .cmd("DEL")
                .arg(&key)
                .ignore()
                .cmd("ZREM")
                .arg(index)
                .arg(&id)
                .ignore()
                .exec(c)
        })
    }

    /// The record of `id`, unless unknown or expired. A record that is
    /// not ours to read counts as unknown.
    pub fn get(&mut self, id: DishId) -> Result<Option<DishResult>, Fault> {
        let key = self.key(&id.to_string());
        let raw: Option<String> = self.conn.run(|c| redis::cmd("GET").arg(&key).query(c))?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }
}
