//! `kitchen info`: what an operator asks first, as `rq info` answers it:
//! the list and its diners, the channel, and the stream's consumer groups.

use std::fmt::Write as _;

use serde::Serialize;

use redis::{RedisError, Script, Value};

use super::cluster::Con;
use super::list::Keys;
use super::stream::{self, fields, int, items, text};
use super::tally::Note;
use super::{Memory, connect_checked, link};
use crate::vocab::{Capacity, Fault, RedisOptions, redact_url};

/// A snapshot of one queue, channel and stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Info {
    /// The server, password redacted.
    pub url: String,
    /// The list key.
    pub queue: String,
    /// Dishes waiting in the list.
    pub length: u64,
    /// The bound chefs keep, as the last chef to start recorded it (else
    /// `--capacity`); `null` when unbounded.
    pub capacity: Option<usize>,
    /// Whether `capacity` was recorded by a chef (else it is the flag's).
    pub capacity_from_chefs: bool,
    /// More dishes wait than `capacity`: an earlier chef kept a larger bound
    /// (the last chef to start records its own), or dishes were pushed past
    /// it (`LPUSH` by hand, an `--unbounded` chef) or put back by diners.
    /// Chefs that keep `capacity` wait until fewer wait.
    pub over_capacity: bool,
    /// Payloads set aside in `<queue>:dead`.
    pub dead: u64,
    /// Dead letters trimmed (the oldest, past `--dead-max`) since counting began.
    pub dead_trimmed: u64,
    /// Failed dishes waiting out their delay before another attempt.
    pub waiting_retries: u64,
    /// Registered diners, live or presumed dead.
    pub diners: Vec<InfoDiner>,
    /// The pub/sub channel.
    pub channel: String,
    /// Clients subscribed to it now.
    pub subscribers: u64,
    /// Redis's memory and limit; `null` when it does not say (an ACL user
    /// without `INFO`).
    pub memory: Option<Memory>,
    /// Redis is over its `maxmemory` and refuses new dishes: chefs wait
    /// until diners free room.
    pub out_of_memory: bool,
    /// The stream (stream mode) and its consumer groups.
    pub stream: StreamInfo,
    /// Each shard of the list with `--shards` N > 1, shard 0 (the queue
    /// itself) first; `length`, `dead` and `capacity` above are their sums.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardInfo>,
}

/// One shard of a sharded list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardInfo {
    /// Its list key.
    pub queue: String,
    /// Dishes waiting in it.
    pub length: u64,
    /// Its share of the bound, as chefs recorded it (else the flag's share).
    pub capacity: Option<usize>,
    /// Payloads set aside beside it.
    pub dead: u64,
}

/// One registered diner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InfoDiner {
    /// Its unique id (`diner-<pid>-<origin>-<n>`).
    pub id: String,
    /// Whether its heartbeat is alive; a dead diner's dishes are put back by
    /// the next live diner's heartbeat.
    pub alive: bool,
    /// What it holds, not yet acknowledged (raw payloads).
    pub holding: Vec<String>,
    /// Dishes it ate since it started, as its last heartbeat said; `null`
    /// for a diner whose heartbeat carries no counts (dead, or older).
    pub eaten: Option<u64>,
    /// Dishes that failed in its hands since it started (as `eaten`).
    pub failed: Option<u64>,
    /// When it took the dish in hand (µs since the epoch), as its last
    /// heartbeat said; `null` when it holds nothing or does not say.
    pub held_since_us: Option<u64>,
}

/// Reads the snapshot.
pub fn info(opts: &RedisOptions, capacity: Capacity) -> Result<Info, Fault> {
    let client = link(opts)?;
    let fail = |e| super::classify(e, &opts.url, &opts.queue);
    let mut con = connect_checked(&client, &opts.url, &opts.queue)?;
    let keys = Keys::new(&opts.queue);
    type Snapshot = (u64, u64, Vec<String>, Option<String>, Option<u64>);
    // One slot's keys in one pipeline (one node on a cluster); the
    // channel's subscribers are counted where they subscribe.
    let (length, dead, ids, recorded, dead_trimmed): Snapshot = redis::pipe()
        .cmd("LLEN")
        .arg(&keys.queue)
        .cmd("LLEN")
        .arg(&keys.dead)
        .cmd("SMEMBERS")
        .arg(&keys.diners)
        .cmd("GET")
        .arg(&keys.capacity)
        .cmd("GET")
        .arg(&keys.dead_trimmed)
        .query(&mut con)
        .map_err(fail)?;
    let mut numsub = redis::cmd("PUBSUB");
    numsub.arg("NUMSUB").arg(&opts.channel);
    let numsub: (String, u64) =
        super::cluster::on_node_of(&mut con, &opts.channel, &numsub).map_err(fail)?;
    let mut diners = Vec::with_capacity(ids.len());
    let mut sorted = ids;
    sorted.sort();
    for id in sorted {
        let (beat, holding): (Option<String>, Vec<String>) = redis::pipe()
            .cmd("GET")
            .arg(keys.heartbeat(&id))
            .cmd("LRANGE")
            .arg(keys.processing(&id))
            .arg(0)
            .arg(-1)
            .query(&mut con)
            .map_err(fail)?;
        let note = beat.as_deref().and_then(Note::parse);
        diners.push(InfoDiner {
            id,
            alive: beat.is_some(),
            holding,
            eaten: note.map(|n| n.eaten),
            failed: note.map(|n| n.failed),
            held_since_us: note.and_then(|n| n.held_since_us),
        });
    }
    let shards = shard_infos(&mut con, opts, capacity).map_err(fail)?;
    let stream = stream_info(&mut con, opts, capacity)
        .map_err(|e| super::classify(e, &opts.url, &opts.stream))?;
    // Best effort: an ACL user may not read INFO.
    let memory = super::memory(&mut con).ok();
    // Read as every gauge reads it, so `info` and the page agree; best
    // effort, as memory is.
    let waiting_retries = super::RedisQueue::unchecked(opts.clone(), capacity, Default::default())
        .ok()
        .and_then(|q| q.gauge().waiting_retries().ok())
        .map_or(0, |n| n as u64);
    let mut capacity = match recorded.as_deref() {
        Some(super::room::UNBOUNDED) => None,
        Some(n) => n.parse().ok().or(capacity.limit()),
        None => capacity.limit(),
    };
    let (mut length, mut dead) = (length, dead);
    if !shards.is_empty() {
        length = shards.iter().map(|s| s.length).sum();
        dead = shards.iter().map(|s| s.dead).sum();
        capacity = shards.iter().map(|s| s.capacity).sum();
    }
    Ok(Info {
        url: redact_url(&opts.url),
        queue: opts.queue.clone(),
        length,
        over_capacity: capacity.is_some_and(|c| length > c as u64),
        capacity,
        capacity_from_chefs: recorded.is_some(),
        out_of_memory: memory.as_ref().is_some_and(Memory::full),
        memory,
        dead,
        dead_trimmed: dead_trimmed.unwrap_or(0),
        waiting_retries,
        diners,
        channel: opts.channel.clone(),
        subscribers: numsub.1,
        stream,
        shards,
    })
}

/// Each shard's length, recorded bound and dead letters, with `--shards`
/// N > 1 (none otherwise). One pipeline per shard: on a cluster each may
/// live on another node.
fn shard_infos(
    con: &mut Con,
    opts: &RedisOptions,
    capacity: Capacity,
) -> Result<Vec<ShardInfo>, RedisError> {
    let n = opts.shards;
    if n <= 1 || opts.mode != crate::vocab::Mode::List {
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(n);
    for (i, queue) in super::shards::shard_queues(opts).into_iter().enumerate() {
        let keys = Keys::new(&queue);
        let (length, recorded, dead): (u64, Option<String>, u64) = redis::pipe()
            .cmd("LLEN")
            .arg(&keys.queue)
            .cmd("GET")
            .arg(&keys.capacity)
            .cmd("LLEN")
            .arg(&keys.dead)
            .query(con)?;
        let share = super::shards::shard_capacity(capacity, i, n).limit();
        let capacity = match recorded.as_deref() {
            Some(super::room::UNBOUNDED) => None,
            Some(c) => c.parse().ok().or(share),
            None => share,
        };
        out.push(ShardInfo {
            queue,
            length,
            capacity,
            dead,
        });
    }
    Ok(out)
}

impl Info {
    /// One JSON object on one line.
    pub fn to_json(&self) -> String {
        // Strings and numbers only: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The table for people.
    pub fn to_table(&self) -> String {
        let capacity = self
            .capacity
            .map_or_else(|| "unbounded".to_owned(), |c| c.to_string());
        let live = self.diners.iter().filter(|d| d.alive).count();
        let mut out = format!("kitchen info ({})\n", self.url);
        // Writing to a String cannot fail.
        let _ = writeln!(out, "  queue        {}", self.queue);
        let source = if self.capacity_from_chefs {
            "as chefs keep it"
        } else {
            "from --capacity: no chef has run"
        };
        if self.over_capacity {
            // Said plainly: "3 of 2" reads like a bug in the bound.
            let _ = writeln!(
                out,
                "  waiting      {}, over the bound of {capacity} ({source}): an earlier chef kept a larger bound, or dishes were pushed past it or put back; chefs wait until fewer than {capacity} wait",
                self.length
            );
        } else {
            let _ = writeln!(
                out,
                "  waiting      {} of {capacity} ({source})",
                self.length
            );
        }
        for (i, shard) in self.shards.iter().enumerate() {
            let cap = shard
                .capacity
                .map_or_else(|| "unbounded".to_owned(), |c| c.to_string());
            let _ = writeln!(
                out,
                "  shard {i:<6} {} of {cap}, {} dead ({})",
                shard.length, shard.dead, shard.queue
            );
        }
        let trimmed = if self.dead_trimmed > 0 {
            format!(", {} trimmed past --dead-max", self.dead_trimmed)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  dead-letter  {} ({}:dead){trimmed}",
            self.dead,
            super::slot::prefix(&self.queue)
        );
        let _ = writeln!(
            out,
            "  retrying     {} waiting out their delay",
            self.waiting_retries
        );
        let _ = writeln!(
            out,
            "  diners       {live} live, {} registered",
            self.diners.len()
        );
        for d in &self.diners {
            let state = if d.alive { "live" } else { "dead" };
            let counts = match (d.eaten, d.failed) {
                (Some(e), Some(f)) => format!(", eaten {e}, failed {f}"),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "    {} {state}, holding {}{}{counts}",
                d.id,
                d.holding.len(),
                if d.holding.is_empty() {
                    String::new()
                } else {
                    format!(": {}", d.holding.join(" "))
                }
            );
        }
        let _ = writeln!(
            out,
            "  channel      {} ({} {})",
            self.channel,
            self.subscribers,
            if self.subscribers == 1 {
                "subscriber"
            } else {
                "subscribers"
            }
        );
        if let Some(m) = &self.memory {
            let limit = if m.max == 0 {
                "no maxmemory".to_owned()
            } else {
                format!("maxmemory {} ({})", m.max_human, m.policy)
            };
            let state = if self.out_of_memory {
                ": OUT OF MEMORY, new dishes are refused; chefs wait until diners free room"
            } else {
                ""
            };
            let _ = writeln!(out, "  memory       {} used, {limit}{state}", m.used_human);
        }
        out.push_str(&self.stream.to_table());
        out
    }
}

/// The stream as `kitchen info` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamInfo {
    /// The stream key.
    pub key: String,
    /// Entries it holds: waiting, pending, or acknowledged and not yet trimmed.
    pub length: u64,
    /// What the slowest group has not acknowledged (its lag plus pending):
    /// what `capacity` bounds.
    pub unacknowledged: u64,
    /// The bound chefs keep, as the last stream chef to start recorded it
    /// (else `--capacity`); `null` when unbounded.
    pub capacity: Option<usize>,
    /// Whether `capacity` was recorded by a chef (else it is the flag's).
    pub capacity_from_chefs: bool,
    /// Payloads set aside in `<stream>:dead`.
    pub dead: u64,
    /// Its consumer groups.
    pub groups: Vec<GroupInfo>,
}

/// One consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupInfo {
    /// Its name (`--group`).
    pub name: String,
    /// Entries delivered to a diner and not yet acknowledged.
    pub pending: u64,
    /// Entries not yet delivered to the group; `null` when Redis cannot tell
    /// (after an XDEL in the middle of the stream).
    pub lag: Option<u64>,
    /// The last entry delivered to the group.
    pub last_delivered: String,
    /// How long ago the oldest pending entry was added, in ms.
    pub oldest_pending_age_ms: Option<u64>,
    /// How many times the oldest pending entry was delivered.
    pub oldest_pending_deliveries: Option<u64>,
    /// Its consumers (diners, live or gone).
    pub consumers: Vec<ConsumerInfo>,
}

/// One consumer of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerInfo {
    /// Its name (`diner-<pid>-<origin>-<n>`).
    pub name: String,
    /// Entries it holds, not yet acknowledged.
    pub pending: u64,
    /// Since it was last heard from, in ms.
    pub idle_ms: u64,
    /// Whether it was heard from within the heartbeat TTL.
    pub alive: bool,
    /// Dishes it ate since it started, as its heartbeat last wrote
    /// (`<stream>:diner:<name>`); `null` when it wrote none (gone, or older).
    pub eaten: Option<u64>,
    /// Dishes that failed for good in its hands (as `eaten`).
    pub failed: Option<u64>,
    /// When it took the dish in hand (µs since the epoch); `null` when it
    /// holds nothing or does not say.
    pub held_since_us: Option<u64>,
}

/// Reads the stream section of `kitchen info`.
fn stream_info(
    con: &mut Con,
    opts: &RedisOptions,
    capacity: Capacity,
) -> Result<StreamInfo, RedisError> {
    let keys = stream::Keys::new(&opts.stream);
    let (kind, dead, recorded, (secs, micros)): (String, u64, Option<String>, (u64, u64)) =
        redis::pipe()
            .cmd("TYPE")
            .arg(&keys.stream)
            .cmd("LLEN")
            .arg(&keys.dead)
            .cmd("GET")
            .arg(&keys.capacity)
            .cmd("TIME")
            .query(con)?;
    let now_ms = secs * 1_000 + micros / 1_000;
    // Another type under the name shows as an empty stream here; the roles
    // refuse it when they open (`check`).
    let (length, unacknowledged): (u64, u64) = if kind == "stream" {
        (
            redis::cmd("XLEN").arg(&keys.stream).query(con)?,
            Script::new(stream::UNACKED).key(&keys.stream).invoke(con)?,
        )
    } else {
        (0, 0)
    };
    let mut groups = Vec::new();
    let listed = if kind == "stream" {
        items(
            redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(&keys.stream)
                .query(con)?,
        )
    } else {
        Vec::new()
    };
    let ttl = stream::ttl_ms(opts.heartbeat_ttl);
    for g in listed {
        let f = fields(g);
        let name = f.text("name");
        let (consumers, oldest): (Value, Value) = redis::pipe()
            .cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&keys.stream)
            .arg(&name)
            .cmd("XPENDING")
            .arg(&keys.stream)
            .arg(&name)
            .arg("-")
            .arg("+")
            .arg(1)
            .query(con)?;
        let mut consumers: Vec<ConsumerInfo> = items(consumers)
            .into_iter()
            .map(|c| {
                let f = fields(c);
                let idle_ms = f.int("idle").unwrap_or(0);
                ConsumerInfo {
                    name: f.text("name"),
                    pending: f.int("pending").unwrap_or(0),
                    idle_ms,
                    alive: idle_ms < ttl,
                    eaten: None,
                    failed: None,
                    held_since_us: None,
                }
            })
            .collect();
        if !consumers.is_empty() {
            let mut get = redis::cmd("MGET");
            for c in &consumers {
                get.arg(keys.diner(&c.name));
            }
            let notes: Vec<Option<String>> = get.query(con)?;
            for (c, note) in consumers.iter_mut().zip(notes) {
                if let Some(n) = note.as_deref().and_then(Note::parse) {
                    (c.eaten, c.failed) = (Some(n.eaten), Some(n.failed));
                    c.held_since_us = n.held_since_us;
                }
            }
        }
        consumers.sort_by(|a, b| a.name.cmp(&b.name));
        // [[id, consumer, idle ms, deliveries]] for the oldest pending entry.
        let oldest: Vec<Value> = items(oldest)
            .into_iter()
            .next()
            .map(items)
            .unwrap_or_default();
        let oldest_id = oldest.first().and_then(text);
        groups.push(GroupInfo {
            pending: f.int("pending").unwrap_or(0),
            lag: f.int("lag"),
            last_delivered: f.text("last-delivered-id"),
            oldest_pending_age_ms: oldest_id
                .as_deref()
                .and_then(|id| id.split('-').next()?.parse::<u64>().ok())
                .map(|added| now_ms.saturating_sub(added)),
            oldest_pending_deliveries: oldest.get(3).and_then(int),
            consumers,
            name,
        });
    }
    Ok(StreamInfo {
        key: opts.stream.clone(),
        length,
        unacknowledged,
        capacity: match recorded.as_deref() {
            Some(super::room::UNBOUNDED) => None,
            Some(n) => n.parse().ok().or(capacity.limit()),
            None => capacity.limit(),
        },
        capacity_from_chefs: recorded.is_some(),
        dead,
        groups,
    })
}

impl StreamInfo {
    /// The stream's lines of the info table.
    pub fn to_table(&self) -> String {
        let capacity = self
            .capacity
            .map_or_else(|| "unbounded".to_owned(), |c| c.to_string());
        let source = if self.capacity_from_chefs {
            "as chefs keep it"
        } else {
            "from --capacity: no stream chef has run"
        };
        // Writing to a String cannot fail.
        let mut out = String::new();
        let _ = writeln!(
            out,
            "  stream       {}: {} unacknowledged of {capacity} ({source}), {} entries",
            self.key, self.unacknowledged, self.length
        );
        let _ = writeln!(
            out,
            "  dead-letter  {} ({}:dead)",
            self.dead,
            super::slot::prefix(&self.key)
        );
        if self.groups.is_empty() {
            let _ = writeln!(
                out,
                "  groups       none yet (the first diner creates its group)"
            );
        }
        for g in &self.groups {
            let live = g.consumers.iter().filter(|c| c.alive).count();
            let lag = g
                .lag
                .map_or_else(|| "unknown".to_owned(), |l| l.to_string());
            let oldest = match (g.oldest_pending_age_ms, g.oldest_pending_deliveries) {
                (Some(age), Some(n)) => {
                    format!(
                        ", oldest {:.1} s old, delivered {n} time{}",
                        age as f64 / 1e3,
                        if n == 1 { "" } else { "s" }
                    )
                }
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "  group        {}: lag {lag}, {} pending{oldest}; {live} live of {} consumers",
                g.name,
                g.pending,
                g.consumers.len()
            );
            for c in &g.consumers {
                let state = if c.alive { "live" } else { "silent" };
                let _ = writeln!(
                    out,
                    "    {} {state}, holding {}, idle {:.1} s",
                    c.name,
                    c.pending,
                    c.idle_ms as f64 / 1e3
                );
            }
        }
        out
    }
}

/// Dishes the consumers of `group` on `stream` ate and failed, summed from
/// the notes their heartbeats write (see `tally.rs`); nothing while the
/// stream or the group does not exist yet.
pub(crate) fn consumers_counts(
    con: &mut Con,
    stream: &str,
    group: &str,
) -> Result<(u64, u64), RedisError> {
    let listed: Result<Value, RedisError> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(stream)
        .arg(group)
        .query(con);
    let names: Vec<String> = match listed {
        Ok(v) => items(v)
            .into_iter()
            .map(|c| fields(c).text("name"))
            .collect(),
        // No stream, or no group yet: no consumer has eaten anything.
        Err(e)
            if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError)
                || e.code().is_some() =>
        {
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    if names.is_empty() {
        return Ok((0, 0));
    }
    let keys = stream::Keys::new(stream);
    let mut get = redis::cmd("MGET");
    for n in &names {
        get.arg(keys.diner(n));
    }
    let notes: Vec<Option<String>> = get.query(con)?;
    Ok(notes
        .iter()
        .filter_map(|n| Note::parse(n.as_deref()?))
        .fold((0, 0), |(e, f), n| (e + n.eaten, f + n.failed)))
}
