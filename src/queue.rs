//! The backend enum: the one place that sees both the kitchen and the queues.
//!
//! Like crossbeam-channel's `SenderFlavor`, each public method is one `match`
//! that delegates to a backend module; the kitchen knows nothing of crossbeam
//! or Redis, and the backends nothing of chefs and diners.

use std::time::Duration;

use crate::dish::Dish;
use crate::local;
#[cfg(feature = "redis")]
use crate::redis_mode;
use crate::shutdown::Shutdown;

/// How many dishes may wait at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// At most this many (at least 1).
    Bounded(usize),
    /// No limit, as the tutorial's Redis list had.
    Unbounded,
}

impl Capacity {
    /// The bound, if any.
    pub fn limit(self) -> Option<usize> {
        match self {
            Capacity::Bounded(n) => Some(n),
            Capacity::Unbounded => None,
        }
    }
}

/// Redis's two ways of carrying dishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A list: each dish to exactly one diner, oldest first, nothing lost.
    List,
    /// A channel: each dish to every subscribed diner, gone if nobody listens.
    Pubsub,
}

/// Where to find Redis and what to call things there.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// `redis://[user:password@]host:port/db`, or `rediss://` for TLS.
    pub url: String,
    /// List or pub/sub.
    pub mode: Mode,
    /// The list key (list mode).
    pub queue: String,
    /// The channel (pub/sub mode).
    pub channel: String,
    /// Dishes a diner takes per round trip (list mode).
    pub batch: usize,
    /// How long a diner's heartbeat lives: a diner silent this long is
    /// presumed dead and its dishes go back on the queue.
    pub heartbeat_ttl: Duration,
    /// How long to keep reconnecting to a Redis that went away before giving up.
    pub reconnect_for: Duration,
    /// How long diners keep the result of a tracked dish (`POST /dishes`).
    pub result_ttl: Duration,
}

impl RedisOptions {
    /// The tutorial's names on the given URL, with kitchen's default timings.
    pub fn new(url: impl Into<String>, mode: Mode) -> RedisOptions {
        RedisOptions {
            url: url.into(),
            mode,
            queue: DEFAULT_QUEUE.to_owned(),
            channel: DEFAULT_CHANNEL.to_owned(),
            batch: 1,
            heartbeat_ttl: DEFAULT_HEARTBEAT_TTL,
            reconnect_for: DEFAULT_RECONNECT_FOR,
            result_ttl: DEFAULT_RESULT_TTL,
        }
    }
}

/// The tutorial's list key.
pub const DEFAULT_QUEUE: &str = "task:prodcons:queue";
/// The tutorial's channel.
pub const DEFAULT_CHANNEL: &str = "task:pubsub:channel";
/// A diner's heartbeat lifetime: a SIGKILLed diner's dish is back on the
/// queue within this (plus one heartbeat) under default settings.
pub const DEFAULT_HEARTBEAT_TTL: Duration = Duration::from_secs(5);
/// How long a run rides out a Redis outage before failing.
pub const DEFAULT_RECONNECT_FOR: Duration = Duration::from_secs(30);
/// How long the result of a tracked dish can be looked up: a day.
pub const DEFAULT_RESULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password; Debug output ends up in logs.
        f.debug_struct("RedisOptions")
            .field("url", &redact_url(&self.url))
            .field("mode", &self.mode)
            .field("queue", &self.queue)
            .field("channel", &self.channel)
            .field("batch", &self.batch)
            .field("heartbeat_ttl", &self.heartbeat_ttl)
            .field("reconnect_for", &self.reconnect_for)
            .field("result_ttl", &self.result_ttl)
            .finish()
    }
}

/// A URL with any password replaced by `***`, safe to print.
pub fn redact_url(url: &str) -> String {
    crate::redis_url::redact(url)
}

/// Which backend to open, as the command line chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    /// The in-process crossbeam channel.
    Local,
    /// Redis, in list or pub/sub mode.
    Redis(RedisOptions),
}

impl BackendConfig {
    /// `"local"` or `"redis"`, as the summary names it.
    pub fn name(&self) -> &'static str {
        match self {
            BackendConfig::Local => "local",
            BackendConfig::Redis(_) => "redis",
        }
    }

    /// The Redis mode, `None` for local.
    pub fn mode(&self) -> Option<Mode> {
        match self {
            BackendConfig::Local => None,
            BackendConfig::Redis(o) => Some(o.mode),
        }
    }
}

/// What can go wrong with a queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// `--backend redis` on a build without the `redis` feature.
    #[error(
        "the redis backend is not in this build: rebuild with `cargo build --features redis` (on by default)"
    )]
    RedisNotCompiled,
    /// The in-process queue no longer takes new producers.
    #[error("the local queue is closed to new chefs")]
    Sealed,
    /// Redis did not answer at all.
    #[error(
        "cannot reach redis at {url} ({detail}): start it with `redis-server` (Debian: `sudo apt-get install redis-server`) or point --redis-url at a running server"
    )]
    Unreachable {
        /// The server, password redacted.
        url: String,
        /// What the connection attempt said.
        detail: String,
    },
    /// Redis went away during the run and did not come back in time.
    #[error(
        "lost redis at {url} and could not reconnect within {secs} s ({detail}): check that redis-server is running"
    )]
    Gone {
        /// The server, password redacted.
        url: String,
        /// How long kitchen kept trying.
        secs: u64,
        /// The last error seen.
        detail: String,
    },
    /// Redis refused the user or password.
    #[error(
        "redis at {url} refused the credentials ({detail}): check the user and password in --redis-url or REDIS_URL"
    )]
    Auth {
        /// The server, password redacted.
        url: String,
        /// Redis's own words (never the password).
        detail: String,
    },
    /// A key kitchen uses holds another type.
    #[error(
        "redis key `{key}` holds a {found}, not a {want}: choose another --queue, or delete the key (`redis-cli -n {db} DEL {key}`)"
    )]
    WrongType {
        /// The key.
        key: String,
        /// The type it holds (or "value of another type").
        found: String,
        /// The type kitchen needs.
        want: &'static str,
        /// The database number, for the hint.
        db: i64,
    },
    /// Any other answer from Redis that kitchen cannot work with.
    #[error("redis at {url} failed: {detail}")]
    Redis {
        /// The server, password redacted.
        url: String,
        /// Redis's message.
        detail: String,
    },
}

/// The outcome of putting a dish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// On the queue; `depth` dishes wait now, this one included.
    Queued {
        /// Queue depth just after the put.
        depth: usize,
    },
    /// Published to `receivers` subscribers; 0 means the dish is lost.
    Published {
        /// How many subscribers got it.
        receivers: usize,
    },
    /// Shut down while waiting for room: the dish was never made.
    Stopped,
}

/// The outcome of taking a dish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Take {
    /// A dish to eat; `depth` dishes are left behind it.
    Dish {
        /// The dish.
        dish: Dish,
        /// Queue depth just after the take.
        depth: usize,
    },
    /// A payload that is not a dish; the backend has set it aside.
    Rejected {
        /// Why it was refused.
        reason: String,
    },
    /// Nothing arrived within the backend's poll interval; ask again.
    Idle,
    /// Nothing more will ever arrive.
    Closed,
}

/// An open backend: hands out producers, consumers and gauges.
#[derive(Debug)]
pub enum Backend {
    /// The in-process channel.
    Local(local::LocalQueue),
    /// A Redis list or channel.
    #[cfg(feature = "redis")]
    Redis(Box<redis_mode::RedisQueue>),
}

impl Backend {
    /// Opens the backend that `config` names with room for `capacity`.
    pub fn open(config: &BackendConfig, capacity: Capacity) -> Result<Backend, QueueError> {
        match config {
            BackendConfig::Local => Ok(Backend::Local(local::LocalQueue::new(capacity))),
            #[cfg(feature = "redis")]
            BackendConfig::Redis(o) => Ok(Backend::Redis(Box::new(redis_mode::RedisQueue::open(
                o.clone(),
                capacity,
            )?))),
            #[cfg(not(feature = "redis"))]
            BackendConfig::Redis(_) => Err(QueueError::RedisNotCompiled),
        }
    }

    /// A producer for one chef thread. Cheap; any connection opens on first use,
    /// inside the thread that uses it.
    pub fn producer(&self) -> Result<Producer, QueueError> {
        match self {
            Backend::Local(q) => Ok(Producer::Local(q.producer()?)),
            #[cfg(feature = "redis")]
            Backend::Redis(q) => Ok(Producer::Redis(Box::new(q.producer()))),
        }
    }

    /// A consumer for one diner thread; like [`Backend::producer`], lazy.
    pub fn consumer(&self) -> Result<Consumer, QueueError> {
        match self {
            Backend::Local(q) => Ok(Consumer::Local(q.consumer())),
            #[cfg(feature = "redis")]
            Backend::Redis(q) => Ok(Consumer::Redis(Box::new(q.consumer()))),
        }
    }

    /// A gauge that reads the queue's depth, for status lines and figures.
    pub fn gauge(&self) -> Gauge {
        match self {
            Backend::Local(q) => Gauge::Local(q.consumer()),
            #[cfg(feature = "redis")]
            Backend::Redis(q) => Gauge::Redis(Box::new(q.gauge())),
        }
    }

    /// Lets producers and consumers made from now on report a sampled depth
    /// instead of reading it on every operation, where that reading is costly
    /// (the local channel). For quiet runs at full speed.
    pub fn relax_depth(&mut self) {
        match self {
            Backend::Local(q) => q.relax_depth(),
            // Redis answers the depth with the same round trip that moves the dish.
            #[cfg(feature = "redis")]
            Backend::Redis(_) => {}
        }
    }

    /// Takes no more producers: once those handed out are dropped, consumers
    /// drain what is left and then see [`Take::Closed`].
    pub fn seal(&self) {
        match self {
            Backend::Local(q) => q.seal(),
            // Redis is shared with other processes: it never closes.
            #[cfg(feature = "redis")]
            Backend::Redis(_) => {}
        }
    }
}

/// One chef's end of the queue.
#[derive(Debug)]
pub enum Producer {
    /// The in-process channel.
    Local(local::Producer),
    /// A Redis list or channel.
    #[cfg(feature = "redis")]
    Redis(Box<redis_mode::Producer>),
}

impl Producer {
    /// Puts `dish`, waiting for room while the queue is full, until `shutdown`.
    #[inline]
    pub fn put(&mut self, dish: Dish, shutdown: &Shutdown) -> Result<Put, QueueError> {
        match self {
            Producer::Local(p) => Ok(p.put(dish, shutdown)),
            #[cfg(feature = "redis")]
            Producer::Redis(p) => p.put(dish, shutdown),
        }
    }

    /// How many dishes one round trip should carry (`--batch`); 1 for local.
    pub fn batch(&self) -> usize {
        match self {
            Producer::Local(_) => 1,
            #[cfg(feature = "redis")]
            Producer::Redis(p) => p.batch(),
        }
    }

    /// Puts `dishes` in order, as few round trips as the backend allows, still
    /// waiting for room while full. One outcome per dish put; fewer than
    /// `dishes` (the last being [`Put::Stopped`]) when `shutdown` came first.
    pub fn put_all(
        &mut self,
        dishes: &[Dish],
        shutdown: &Shutdown,
    ) -> Result<Vec<Put>, QueueError> {
        match self {
            #[cfg(feature = "redis")]
            Producer::Redis(p) => p.put_all(dishes, shutdown),
            _ => {
                let mut out = Vec::with_capacity(dishes.len());
                for d in dishes {
                    let put = self.put(*d, shutdown)?;
                    out.push(put);
                    if put == Put::Stopped {
                        break;
                    }
                }
                Ok(out)
            }
        }
    }

    /// Puts `dish` if there is room within `wait`; `None` when the queue is
    /// still full then.
    ///
    /// For callers that must answer soon (the web entry's `503`) rather than
    /// wait as long as a chef does.
    #[inline]
    pub fn try_put(&mut self, dish: Dish, wait: Duration) -> Result<Option<Put>, QueueError> {
        match self {
            Producer::Local(p) => Ok(p.try_put(dish, wait)),
            // A bounded Redis put waits for room in 500 ms naps, too coarse
            // for `wait`: with a token already stopped it tries once, and
            // the tries are repeated here every few milliseconds until `wait`.
            #[cfg(feature = "redis")]
            Producer::Redis(p) => {
                let deadline = std::time::Instant::now() + wait;
                loop {
                    match p.put(dish, stopped())? {
                        Put::Stopped => {}
                        put => return Ok(Some(put)),
                    }
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    std::thread::sleep(left.min(Duration::from_millis(10)));
                }
            }
        }
    }
}

/// One diner's end of the queue.
#[derive(Debug)]
pub enum Consumer {
    /// The in-process channel.
    Local(local::Consumer),
    /// A Redis list or channel.
    #[cfg(feature = "redis")]
    Redis(Box<redis_mode::Consumer>),
}

impl Consumer {
    /// Gets ready to receive: connects and, in pub/sub mode, subscribes, so
    /// that a dish published after this returns reaches this consumer.
    pub fn ready(&mut self) -> Result<(), QueueError> {
        match self {
            Consumer::Local(_) => Ok(()),
            #[cfg(feature = "redis")]
            Consumer::Redis(c) => c.ready(),
        }
    }

    /// Takes the oldest dish, waiting up to the backend's poll interval.
    ///
    /// `finished` is stopped once every producer of this run is done: a
    /// backend that cannot see disconnection (Redis) then answers
    /// [`Take::Closed`] as soon as the queue is empty.
    #[inline]
    pub fn take(&mut self, finished: &Shutdown) -> Result<Take, QueueError> {
        match self {
            Consumer::Local(c) => Ok(c.take(finished)),
            #[cfg(feature = "redis")]
            Consumer::Redis(c) => c.take(finished),
        }
    }

    /// Confirms that `dish` was eaten, so the backend may forget it.
    #[inline]
    pub fn ack(&mut self, dish: &Dish) -> Result<(), QueueError> {
        match self {
            Consumer::Local(_) => {
                let _ = dish;
                Ok(())
            }
            #[cfg(feature = "redis")]
            Consumer::Redis(c) => c.ack(dish),
        }
    }

    /// Dishes this consumer can show were sent to it and never arrived (a
    /// dropped pub/sub subscription); 0 for queues, which lose nothing.
    pub fn lost(&self) -> u64 {
        match self {
            Consumer::Local(_) => 0,
            #[cfg(feature = "redis")]
            Consumer::Redis(c) => c.lost(),
        }
    }
}

/// Reads the queue's depth.
#[derive(Debug)]
pub enum Gauge {
    /// The in-process channel.
    Local(local::Consumer),
    /// A Redis list (always 0 for a channel, which holds nothing).
    #[cfg(feature = "redis")]
    Redis(Box<redis_mode::Gauge>),
}

impl Gauge {
    /// Dishes waiting now.
    pub fn depth(&mut self) -> Result<usize, QueueError> {
        match self {
            Gauge::Local(c) => Ok(c.depth()),
            #[cfg(feature = "redis")]
            Gauge::Redis(g) => g.depth(),
        }
    }
}

/// A token stopped from the start: "do not wait".
#[cfg(feature = "redis")]
fn stopped() -> &'static Shutdown {
    static STOPPED: std::sync::OnceLock<Shutdown> = std::sync::OnceLock::new();
    STOPPED.get_or_init(|| {
        let s = Shutdown::new();
        s.stop();
        s
    })
}

/// How long a consumer waits before answering [`Take::Idle`].
pub const POLL: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(redact_url("redis://u:secret@h:1/5"), "redis://u:***@h:1/5");
        assert_eq!(redact_url("redis://:secret@h/5"), "redis://:***@h/5");
        assert_eq!(redact_url("redis://h:6379/5"), "redis://h:6379/5");
        assert_eq!(redact_url("rediss://tok@h/0"), "rediss://***@h/0");
    }
}
