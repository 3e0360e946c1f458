//! `kitchen info`: what an operator asks first, as `rq info` answers it.

use std::fmt::Write as _;

use serde::Serialize;

use super::list::Keys;
use super::{client, connect};
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
    /// Payloads set aside in `<queue>:dead`.
    pub dead: u64,
    /// Registered diners, live or presumed dead.
    pub diners: Vec<InfoDiner>,
    /// The pub/sub channel.
    pub channel: String,
    /// Clients subscribed to it now.
    pub subscribers: u64,
    /// The stream (stream mode) and its consumer groups.
    pub stream: super::StreamInfo,
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
    let mut con = connect(&client).map_err(fail)?;
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
    let stream = super::stream::info(&mut con, opts, capacity)
        .map_err(|e| super::classify(e, &opts.url, &opts.stream))?;
    Ok(Info {
        url: redact_url(&opts.url),
        queue: opts.queue.clone(),
        length,
        capacity: match recorded.as_deref() {
            Some(super::list::UNBOUNDED) => None,
            Some(n) => n.parse().ok().or(capacity.limit()),
            None => capacity.limit(),
        },
        capacity_from_chefs: recorded.is_some(),
        dead,
        diners,
        channel: opts.channel.clone(),
        subscribers: numsub.1,
        stream,
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
        let _ = writeln!(
            out,
            "  waiting      {} of {capacity} ({source})",
            self.length
        );
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
            "  channel      {} ({} subscribers)",
            self.channel, self.subscribers
        );
        out.push_str(&self.stream.to_table());
        out
    }
}
