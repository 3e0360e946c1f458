//! Pub/sub mode: chefs PUBLISH, every subscribed diner gets every dish.
//!
//! A publish that reached nobody (PUBLISH returns 0) is lost: Redis keeps
//! nothing. Each diner reads its subscription on a thread of its own (the
//! `redis` crate's `PubSub` borrows the connection for its lifetime) and
//! hands payloads over a channel.
//!
//! **End of a run.** When every chef of the run is done, each diner publishes
//! an end marker unique to it; Redis delivers a connection's messages in
//! order, and every chef's PUBLISH had returned before, so once a diner reads
//! its own marker it has read every dish of the run. Markers start with
//! [`END_MARKER`] and are skipped by every kitchen diner.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use redis::Client;

use super::{CONNECT_TIMEOUT, Conn, READ_TIMEOUT, classify, connect, unique_name};
use crate::dish::Dish;
use crate::queue::{POLL, Put, QueueError, RedisOptions, Take, redact_url};
use crate::shutdown::Shutdown;

/// What a payload starts with when it marks the end of a run, not a dish.
pub const END_MARKER: &str = "kitchen:end:";

/// How long a reader blocks for a message before checking whether to stop.
const LISTEN_WAIT: Duration = Duration::from_millis(250);

/// How long a diner waits for its own end marker before closing anyway
/// (it may have been lost with a dropped subscription).
const MARKER_WAIT: Duration = Duration::from_secs(5);

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
    pub fn put_all(&mut self, dishes: &[Dish]) -> Result<Vec<Put>, QueueError> {
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
    pub fn put(&mut self, dish: Dish) -> Result<Put, QueueError> {
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
    client: Client,
    /// For publishing the end marker.
    side: Conn,
    channel: String,
    url: String,
    reconnect_for: Duration,
    marker: String,
    reader: Option<Reader>,
    /// When the end marker went out.
    marker_sent: Option<Instant>,
}

#[derive(Debug)]
struct Reader {
    rx: Receiver<Result<Vec<u8>, QueueError>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Consumer {
    pub(crate) fn new(client: Client, side: Conn, opts: &RedisOptions) -> Consumer {
        static DINERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = DINERS.fetch_add(1, Ordering::Relaxed);
        Consumer {
            client,
            side,
            channel: opts.channel.clone(),
            url: opts.url.clone(),
            reconnect_for: opts.reconnect_for,
            marker: format!("{END_MARKER}{}", unique_name("diner", n)),
            reader: None,
            marker_sent: None,
        }
    }

    /// Subscribes; returns once Redis has confirmed the subscription.
    pub fn ready(&mut self) -> Result<(), QueueError> {
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
            .map_err(|e| QueueError::Redis {
                url: redact_url(&self.url),
                detail: format!("cannot start the subscriber thread: {e}"),
            })?;
        self.reader = Some(Reader { rx, stop });
        match ready_rx.recv_timeout(CONNECT_TIMEOUT + READ_TIMEOUT) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(QueueError::Unreachable {
                url: redact_url(&self.url),
                detail: "the subscription was not confirmed".into(),
            }),
        }
    }

    /// The next delivery; [`Take::Closed`] once `finished` and this diner's
    /// end marker came back.
    pub fn take(&mut self, finished: &Shutdown) -> Result<Take, QueueError> {
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
                Ok(Err(e)) => return Err(e),
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
            return Ok(match Dish::decode(&payload) {
                Ok(dish) => Take::Dish { dish, depth: 0 },
                Err(e) => Take::Rejected {
                    reason: e.to_string(),
                },
            });
        }
    }
}

/// The subscriber thread's state.
struct Listener {
    client: Client,
    channel: String,
    url: String,
    reconnect_for: Duration,
    stop: Arc<AtomicBool>,
    tx: Sender<Result<Vec<u8>, QueueError>>,
}

impl Listener {
    /// Subscribes and forwards payloads until stopped; resubscribes after a
    /// dropped connection (what was published meanwhile is gone, as pub/sub
    /// always is) and gives up after `reconnect_for`.
    fn listen(self, ready: &Sender<Result<(), QueueError>>) {
        let mut first = true;
        let mut failing_since: Option<Instant> = None;
        let mut backoff = Duration::from_millis(50);
        while !self.stop.load(Ordering::Relaxed) {
            let err = match self.session(ready, &mut first, &mut failing_since) {
                Ok(()) => return,
                Err(e) => e,
            };
            let transient = super::is_transient(&err);
            if first || !transient {
                let e = classify(err, &self.url, &self.channel);
                if first {
                    let _ = ready.send(Err(e));
                } else {
                    let _ = self.tx.send(Err(e));
                }
                return;
            }
            let since = *failing_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= self.reconnect_for {
                let _ = self.tx.send(Err(QueueError::Gone {
                    url: redact_url(&self.url),
                    secs: self.reconnect_for.as_secs(),
                    detail: err.to_string(),
                }));
                return;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// One connection's life: subscribe, then forward until stopped or an error.
    fn session(
        &self,
        ready: &Sender<Result<(), QueueError>>,
        first: &mut bool,
        failing_since: &mut Option<Instant>,
    ) -> Result<(), redis::RedisError> {
        let mut con = connect(&self.client)?;
        let mut sub = con.as_pubsub();
        sub.subscribe(&self.channel)?;
        sub.set_read_timeout(Some(LISTEN_WAIT))?;
        if std::mem::take(first) {
            let _ = ready.send(Ok(()));
        }
        *failing_since = None;
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
        Ok(())
    }
}
