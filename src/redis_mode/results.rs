//! What became of tracked dishes, in Redis beside the queue, bounded by time and by count.
//!
//! One string key per dish, `<queue>:result:<id>`, holding a JSON
//! [`DishResult`] that expires after the TTL; and an index, the sorted set
//! `<queue>:results` of ids by the time they were queued, trimmed to the most
//! records allowed. Without the count bound an unauthenticated client could
//! fill Redis with a day of `POST /dishes` records (89 k in 10 s took 30 MB)
//! until it answered `OOM` to the queue itself.

use redis::RedisError;

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
}

impl Results {
    pub(crate) fn new(conn: Conn, opts: &RedisOptions, max: usize) -> Results {
        Results {
            conn,
            prefix: format!("{}:result:", opts.queue),
            index: format!("{}:results", opts.queue),
            ttl_ms: u64::try_from(opts.result_ttl.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            max: max.max(1),
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
            return self.conn.run(|c| {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&value)
                    .arg("PX")
                    .arg(ttl)
                    .arg("XX")
                    .query::<()>(c)
            });
        }
        let (index, max) = (&self.index, self.max);
        let prefix = &self.prefix;
        self.conn.run(|c| {
            let (held,): (usize,) = redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(&key)
                .arg(&value)
                .arg("PX")
                .arg(ttl)
                .ignore()
                .cmd("ZADD")
                .arg(index)
                .arg(now_us())
                .arg(&r.id)
                .ignore()
                .cmd("PEXPIRE")
                .arg(index)
                .arg(ttl)
                .ignore()
                .cmd("ZCARD")
                .arg(index)
                .query(c)?;
            if held > max {
                trim(c, index, prefix, held - max)?;
            }
            Ok(())
        })
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

/// Drops the `n` oldest records of `index`.
fn trim(c: &mut redis::Connection, index: &str, prefix: &str, n: usize) -> Result<(), RedisError> {
    let popped: Vec<(String, f64)> = redis::cmd("ZPOPMIN").arg(index).arg(n).query(c)?;
    if popped.is_empty() {
        return Ok(());
    }
    let mut del = redis::cmd("DEL");
    for (id, _) in &popped {
        del.arg(format!("{prefix}{id}"));
    }
    del.query::<()>(c)
}
