//! Pub/sub mode: chefs PUBLISH, every subscribed diner gets every dish.
//!
//! A publish that reached nobody (PUBLISH returns 0) is lost: Redis keeps
//! nothing. Each diner reads its subscription on a thread of its own (the
//! `redis` crate's `PubSub` borrows the connection for its lifetime) and
//! hands payloads over a channel.
//!
//! **Dropped subscriptions.** Redis closes a subscriber that falls behind
//! (`client-output-buffer-limit pubsub`), and a restart closes them all. The
//! reader notices (the read fails), says so on stderr and subscribes again;
//! whatever was published meanwhile is gone. The diner counts it: ids of one
//! block come from one chef thread in order (see [`DishId::block`]), so a gap
//! inside a block is dishes that never arrived, reported as `lost`. (A lower
//! bound: a gap at the very end of a chef's stream, or across two blocks, has
//! no later dish to reveal it.)
//!
//! **A diner that stops.** Redis has sent a subscriber every dish published
//! while it listened, counting it among the receivers (`served to 1
//! diners`); a diner stopped by Ctrl-C has eaten only some of them. When it
//! is done ([`Consumer::lost`]), its reader unsubscribes: Redis answers the
//! UNSUBSCRIBE after every message it sent before, so what the reader holds
//! up to that answer is exactly what was delivered and not eaten, and is
//! counted as `lost`. Delivered = eaten + lost.
//!
//! **End of a run.** When every chef of the run is done, each diner publishes
//! an end marker unique to it; Redis delivers a connection's messages in
//! order, and every chef's PUBLISH had returned before, so once a diner reads
//! its own marker it has read every dish of the run. Markers start with
//! [`END_MARKER`] and are skipped by every kitchen diner.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::cluster::Link;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::{CONNECT_TIMEOUT, Conn, Outage, READ_TIMEOUT, Reconnect, classify, unique_name};
use crate::dish::{Dish, DishId};
use crate::shutdown::Shutdown;
use crate::vocab::{Fault, POLL, Put, ReadyError, RedisOptions, Take, TakeError, redact_url};

/// What a payload starts with when it marks the end of a run, not a dish.
pub const END_MARKER: &str = "kitchen:end:";

/// How long a reader blocks for a message before checking whether to stop.
const LISTEN_WAIT: Duration = Duration::from_millis(250);

/// How long a diner waits for its own end marker before closing anyway
/// (it may have been lost with a dropped subscription).
const MARKER_WAIT: Duration = Duration::from_secs(5);

/// How long a stopping diner waits for its reader to hand over what it
/// still holds: the reader may be in the middle of a reconnect (a connection
/// attempt, then the subscription's confirmation).
const CLOSE_WAIT: Duration =
    Duration::from_secs(CONNECT_TIMEOUT.as_secs() + READ_TIMEOUT.as_secs());

/// One chef's connection to the channel.
#[derive(Debug)]
pub struct Producer {
    conn: Conn,
    channel: String,
    /// Dishes per round trip.
    pub(crate) batch: usize,
}

impl Producer {
    pub(crate) fn new(conn: Conn, opts: &RedisOptions) -> Producer {
        Producer {
            conn,
            channel: opts.channel.clone(),
            batch: opts.batch.max(1),
        }
    }

    /// Publishes several dishes in one pipelined round trip.
    pub fn put_all(&mut self, dishes: &[Dish]) -> Result<Vec<Put>, Fault> {
        let mut pipe = redis::pipe();
        for d in dishes {
            pipe.cmd("PUBLISH").arg(&self.channel).arg(d.encode());
        }
        let receivers: Vec<usize> = self.conn.run(|c| pipe.query(c))?;
        Ok(receivers
            .into_iter()
            .map(|receivers| Put::Published { receivers })
            .collect())
    }

    /// Publishes one dish; `receivers: 0` means nobody got it.
    pub fn put(&mut self, dish: &Dish) -> Result<Put, Fault> {
        let payload = dish.encode();
        let receivers: usize = self.conn.run(|c| {
            redis::cmd("PUBLISH")
                .arg(&self.channel)
                .arg(&payload)
                .query(c)
        })?;
        Ok(Put::Published { receivers })
    }
}

/// One diner's subscription.
#[derive(Debug)]
pub struct Consumer {
    client: Link,
    /// For publishing the end marker.
    side: Conn,
    channel: String,
    url: String,
    reconnect_for: Duration,
    marker: String,
    /// The largest payload taken as a dish.
    max_payload: usize,
    reader: Option<Reader>,
    /// When the end marker went out.
    marker_sent: Option<Instant>,
    /// Dishes that never arrived, found by their ids.
    gaps: Gaps,
    /// Dishes delivered and never taken, counted when the diner stopped.
    unread: u64,
}

/// Finds dishes missing from each chef thread's stream of ids.
#[derive(Debug, Default)]
struct Gaps {
    /// The last sequence number seen in each id block.
    last: HashMap<(u64, u64), u64>,
    missed: u64,
}

impl Gaps {
    /// Notes a dish received; counts the ids skipped since the last one of its block.
    fn saw(&mut self, id: DishId) {
        if id == DishId::NONE {
            return; // a bare integer: no stream to follow
        }
        match self.last.get_mut(&id.block()) {
            Some(last) if id.seq > *last => {
                self.missed += id.seq - *last - 1;
                *last = id.seq;
            }
            Some(_) => {} // a repeat (a chef's retry after a reconnect)
            None => {
                self.last.insert(id.block(), id.seq);
            }
        }
    }
}

#[derive(Debug)]
struct Reader {
    rx: Receiver<Result<Vec<u8>, Fault>>,
    stop: Arc<AtomicBool>,
}

impl Reader {
    /// Stops the reader and takes what it still holds, once it has flushed
    /// its subscription (or after [`CLOSE_WAIT`]); returns those payloads.
    fn close(self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + CLOSE_WAIT;
        let mut held = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Ok(p)) => held.push(p),
                // The reader failed on its way out: nothing more comes.
                Ok(Err(_)) => {}
                // Disconnected: the reader is done; Timeout: bounded.
                Err(_) => return held,
            }
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Consumer {
    pub(crate) fn new(client: Link, side: Conn, opts: &RedisOptions) -> Consumer {
        static DINERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = DINERS.fetch_add(1, Ordering::Relaxed);
        Consumer {
            client,
            side,
            channel: opts.channel.clone(),
            url: opts.url.clone(),
            reconnect_for: opts.reconnect_for,
            marker: format!("{END_MARKER}{}", unique_name("diner", n)),
            max_payload: opts.max_payload,
            reader: None,
            marker_sent: None,
            gaps: Gaps::default(),
            unread: 0,
        }
    }

    /// Subscribes; returns once Redis has confirmed the subscription.
    pub fn ready(&mut self) -> Result<(), ReadyError> {
        if self.reader.is_some() {
            return Ok(());
        }
        let (tx, rx) = crossbeam_channel::bounded(4096);
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let stop = Arc::new(AtomicBool::new(false));
        let listener = Listener {
            client: self.client.clone(),
            channel: self.channel.clone(),
            url: self.url.clone(),
            reconnect_for: self.reconnect_for,
            stop: stop.clone(),
            tx,
        };
        std::thread::Builder::new()
            .name("subscriber".into())
            .spawn(move || listener.listen(&ready_tx))
            .map_err(ReadyError::Spawn)?;
        self.reader = Some(Reader { rx, stop });
        match ready_rx.recv_timeout(CONNECT_TIMEOUT + READ_TIMEOUT) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(ReadyError::Fault(Fault::Unreachable {
                url: redact_url(&self.url),
                detail: "the subscription was not confirmed".into(),
            })),
        }
    }

    /// Dishes this diner can show it never ate: those that never arrived,
    /// and, once it stops listening here, those delivered and never taken
    /// (see the module docs). For when the diner is done: after this, the
    /// consumer hears nothing more.
    pub fn lost(&mut self) -> u64 {
        if let Some(reader) = self.reader.take() {
            for payload in reader.close() {
                // Only dishes: an end marker or a payload that is not a dish
                // was never one of the dishes counted as made.
                if payload.starts_with(END_MARKER.as_bytes()) {
                    continue;
                }
                if let Ok(dish) = Dish::decode_within(&payload, self.max_payload) {
                    // Its id may reveal dishes missed before it, too.
                    self.gaps.saw(dish.id);
                    self.unread += 1;
                }
            }
        }
        self.gaps.missed + self.unread
    }

    /// The next delivery; [`Take::Closed`] once `finished` and this diner's
    /// end marker came back.
    pub fn take(&mut self, finished: &Shutdown) -> Result<Take, TakeError> {
        self.ready()?;
        if finished.is_stopped() && self.marker_sent.is_none() {
            let (channel, marker) = (&self.channel, &self.marker);
            let _: u64 = self
                .side
                .run(|c| redis::cmd("PUBLISH").arg(channel).arg(marker).query(c))?;
            self.marker_sent = Some(Instant::now());
        }
        let Some(reader) = &self.reader else {
            return Ok(Take::Idle);
        };
        loop {
            let payload = match reader.rx.recv_timeout(POLL) {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => return Err(e.into()),
                Err(RecvTimeoutError::Timeout) => {
                    if self.marker_sent.is_some_and(|t| t.elapsed() > MARKER_WAIT) {
                        return Ok(Take::Closed);
                    }
                    return Ok(Take::Idle);
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(Take::Closed),
            };
            if payload.starts_with(END_MARKER.as_bytes()) {
                if payload == self.marker.as_bytes() {
                    return Ok(Take::Closed);
                }
                continue; // another diner's end of run
            }
            return Ok(match Dish::decode_within(&payload, self.max_payload) {
                Ok(dish) => {
                    self.gaps.saw(dish.id);
                    Take::Dish { dish, depth: 0 }
                }
                Err(e) => Take::Rejected {
                    reason: e.to_string(),
                },
            });
        }
    }
}

/// The subscriber thread's state.
struct Listener {
    client: Link,
    channel: String,
    url: String,
    reconnect_for: Duration,
    stop: Arc<AtomicBool>,
    tx: Sender<Result<Vec<u8>, Fault>>,
}

impl Listener {
    /// Subscribes and forwards payloads until stopped; resubscribes after a
    /// dropped connection (what was published meanwhile is gone, as pub/sub
    /// always is) and gives up after `reconnect_for`.
    fn listen(self, ready: &Sender<Result<(), Fault>>) {
        let mut first = true;
        let mut retry = Reconnect::new(self.reconnect_for, Outage::Subscription(&self.channel));
        while !self.stop.load(Ordering::Relaxed) {
            let err = match self.session(ready, &mut first, &mut retry) {
                Ok(()) => return,
                Err(e) => e,
            };
            if first || !super::is_transient(&err) {
                let e = classify(err, &self.url, &self.channel);
                if first {
                    let _ = ready.send(Err(e));
                } else {
                    let _ = self.tx.send(Err(e));
                }
                return;
            }
            if let Err(gone) = retry.failed(&self.url, &err) {
                let _ = self.tx.send(Err(gone));
                return;
            }
        }
    }

    /// One connection's life: subscribe, then forward until stopped or an error.
    fn session(
        &self,
        ready: &Sender<Result<(), Fault>>,
        first: &mut bool,
        retry: &mut Reconnect<'_>,
    ) -> Result<(), redis::RedisError> {
        let mut con = self
            .client
            .plain(&self.channel, CONNECT_TIMEOUT, READ_TIMEOUT)?;
        super::acl::subscribe(&mut con, &self.channel)?;
        let mut sub = con.as_pubsub();
        sub.set_read_timeout(Some(LISTEN_WAIT))?;
        if std::mem::take(first) {
            let _ = ready.send(Ok(()));
        }
        retry.recovered(&self.url);
        while !self.stop.load(Ordering::Relaxed) {
            match sub.get_message() {
                Ok(msg) => {
                    if self.tx.send(Ok(msg.get_payload_bytes().to_vec())).is_err() {
                        return Ok(()); // the diner is gone
                    }
                }
                Err(e) if e.is_timeout() => {}
                Err(e) => return Err(e),
            }
        }
        // Stopped: hand over what Redis already sent. It answers the
        // UNSUBSCRIBE after every message it delivered before, and the crate
        // keeps the messages read on the way; those are read back without
        // touching the socket, so a short timeout ends the reading once
        // they are out. If Redis does not answer, what came is what counts.
        if sub.unsubscribe(&self.channel).is_ok() {
            sub.set_read_timeout(Some(Duration::from_millis(1)))?;
            while let Ok(msg) = sub.get_message() {
                if self.tx.send(Ok(msg.get_payload_bytes().to_vec())).is_err() {
                    break;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(origin: u64, seq: u64) -> DishId {
        DishId { origin, seq }
    }

    #[test]
    fn gaps_inside_a_chefs_stream_are_counted() {
        let mut g = Gaps::default();
        for seq in [5, 6, 7, 11, 12, 12, 20] {
            g.saw(id(1, seq));
        }
        // 8-10 and 13-19 never came; the repeated 12 is not a gap.
        assert_eq!(g.missed, 3 + 7);
        // Another chef's stream, and bare integers, start their own count.
        g.saw(id(2, 100));
        g.saw(id(2, 101));
        g.saw(DishId::NONE);
        g.saw(id(1, crate::dish::ID_BLOCK + 9));
        assert_eq!(g.missed, 10);
    }
}
