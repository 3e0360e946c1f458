//! `kitchen info`: what an operator asks first, as `rq info` answers it.

use std::fmt::Write as _;

use serde::Serialize;

use super::list::Keys;
use super::{Memory, client, connect_checked};
use crate::vocab::{Capacity, Fault, RedisOptions, redact_url};

/// A snapshot of one queue and channel.
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
}

/// Reads the snapshot.
pub fn info(opts: &RedisOptions, capacity: Capacity) -> Result<Info, Fault> {
    let client = client(&opts.url)?;
    let fail = |e| super::classify(e, &opts.url, &opts.queue);
    let mut con = connect_checked(&client, &opts.url, &opts.queue)?;
    let keys = Keys::new(&opts.queue);
    type Snapshot = (u64, u64, Vec<String>, (String, u64), Option<String>);
    let (length, dead, ids, numsub, recorded): Snapshot = redis::pipe()
        .cmd("LLEN")
        .arg(&keys.queue)
        .cmd("LLEN")
        .arg(&keys.dead)
        .cmd("SMEMBERS")
        .arg(&keys.diners)
        .cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(&opts.channel)
        .cmd("GET")
        .arg(&keys.capacity)
        .query(&mut con)
        .map_err(fail)?;
    let mut diners = Vec::with_capacity(ids.len());
    let mut sorted = ids;
    sorted.sort();
    for id in sorted {
        let (alive, holding): (bool, Vec<String>) = redis::pipe()
            .cmd("EXISTS")
            .arg(keys.heartbeat(&id))
            .cmd("LRANGE")
            .arg(keys.processing(&id))
            .arg(0)
            .arg(-1)
            .query(&mut con)
            .map_err(fail)?;
        diners.push(InfoDiner { id, alive, holding });
    }
    // Best effort: an ACL user may not read INFO.
    let memory = super::memory(&mut con).ok();
    let capacity = match recorded.as_deref() {
        Some(super::list::UNBOUNDED) => None,
        Some(n) => n.parse().ok().or(capacity.limit()),
        None => capacity.limit(),
    };
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
        diners,
        channel: opts.channel.clone(),
        subscribers: numsub.1,
    })
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
        let _ = writeln!(out, "  dead-letter  {} ({}:dead)", self.dead, self.queue);
        let _ = writeln!(
            out,
            "  diners       {live} live, {} registered",
            self.diners.len()
        );
        for d in &self.diners {
            let state = if d.alive { "live" } else { "dead" };
            let _ = writeln!(
                out,
                "    {} {state}, holding {}{}",
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
        out
    }
}
