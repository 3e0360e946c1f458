//! The words the kitchen and the backends share: capacity, options, outcomes and errors.
//!
//! A leaf: it imports no backend and nothing of the kitchen, so `local`,
//! `redis_mode`, `kitchen` and `serve` all build on it, and [`crate::queue`],
//! the enum that dispatches, sits above both sides without a cycle.

use std::path::PathBuf;
use std::time::Duration;

use crate::defaults;
use crate::dish::Dish;

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

impl Default for Capacity {
    fn default() -> Self {
        Capacity::Bounded(defaults::CAPACITY)
    }
}

/// Redis's ways of carrying dishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A list: each dish to exactly one diner, oldest first, nothing lost.
    List,
    /// A channel: each dish to every subscribed diner, gone if nobody listens.
    Pubsub,
    /// A stream read by consumer groups: every group gets every dish, each
    /// dish to one diner of a group, at least once.
    Stream,
}

impl Mode {
    /// The name `--mode` takes and the summary shows.
    pub fn name(self) -> &'static str {
        match self {
            Mode::List => "list",
            Mode::Pubsub => "pubsub",
            Mode::Stream => "stream",
        }
    }
}

/// Where to find Redis and what to call things there.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// `redis://[user:password@]host:port/db`.
    pub url: String,
    /// List, pub/sub or stream.
    pub mode: Mode,
    /// The list key (list mode).
    pub queue: String,
    /// The channel (pub/sub mode).
    pub channel: String,
    /// The stream key (stream mode).
    pub stream: String,
    /// The consumer group diners join (stream mode); chefs and the web
    /// entry report its backlog as their depth.
    pub group: String,
    /// Dishes a diner takes per round trip (list and stream modes).
    pub batch: usize,
    /// How long a diner's heartbeat lives: a diner silent this long is
    /// presumed dead and its dishes go back on the queue.
    pub heartbeat_ttl: Duration,
    /// How long to keep reconnecting to a Redis that went away before giving
    /// up; zero fails at once (the web entry, which answers `503` instead).
    pub reconnect_for: Duration,
    /// How long diners keep the result of a tracked dish (`POST /dishes`).
    pub result_ttl: Duration,
    /// The largest payload a diner accepts; larger ones are dead-lettered.
    pub max_payload: usize,
    /// The most dead letters kept; the oldest are trimmed (and counted).
    pub dead_max: usize,
    /// `url` names a node of a Redis Cluster (database 0).
    pub cluster: bool,
    /// Sub-queues one logical queue is spread over (list mode); 1 is the
    /// plain queue.
    pub shards: usize,
    /// Chefs count a dish made only once a replica has it (`WAIT 1`).
    pub durable: bool,
    /// Certificates for a `rediss://` URL (none: the system's CAs).
    pub tls: TlsFiles,
}

/// The PEM files a `rediss://` connection reads (`--tls-ca`, `--tls-cert`,
/// `--tls-key`); read when the backend opens, so a bad file is a runtime
/// error naming it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// A private CA to trust instead of the system's.
    pub ca: Option<PathBuf>,
    /// A client certificate and its private key, for mutual TLS: both or
    /// neither.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    /// Whether any file is named.
    pub fn any(&self) -> bool {
        self.ca.is_some() || self.client.is_some()
    }
}

impl RedisOptions {
    /// The tutorial's names on the given URL, with kitchen's default timings.
    pub fn new(url: impl Into<String>, mode: Mode) -> RedisOptions {
        RedisOptions {
            url: url.into(),
            mode,
            queue: defaults::QUEUE.to_owned(),
            channel: defaults::CHANNEL.to_owned(),
            stream: defaults::STREAM.to_owned(),
            group: defaults::GROUP.to_owned(),
            batch: defaults::BATCH,
            heartbeat_ttl: defaults::HEARTBEAT_TTL,
            reconnect_for: defaults::RECONNECT_FOR,
            result_ttl: defaults::RESULT_TTL,
            max_payload: defaults::MAX_PAYLOAD,
            tls: TlsFiles::default(),
            dead_max: defaults::DEAD_MAX,
            cluster: false,
            shards: 1,
            durable: false,
        }
    }
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password; Debug output ends up in logs.
        f.debug_struct("RedisOptions")
            .field("url", &redact_url(&self.url))
            .field("mode", &self.mode)
            .field("queue", &self.queue)
            .field("channel", &self.channel)
            .field("stream", &self.stream)
            .field("group", &self.group)
            .field("batch", &self.batch)
            .field("heartbeat_ttl", &self.heartbeat_ttl)
            .field("reconnect_for", &self.reconnect_for)
            .field("result_ttl", &self.result_ttl)
            .field("max_payload", &self.max_payload)
            .field("tls", &self.tls)
            .field("dead_max", &self.dead_max)
            .field("cluster", &self.cluster)
            .field("shards", &self.shards)
            .field("durable", &self.durable)
            .finish()
    }
}

/// A URL with every credential replaced by `***`, safe to print.
pub fn redact_url(url: &str) -> String {
    crate::redis_url::redact(url)
}

/// Which backend to open, as the command line chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
// One per run, read at start: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum BackendConfig {
    /// The in-process crossbeam channel.
    Local,
    /// Redis, in list, pub/sub or stream mode.
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

    /// The queue's name, as a command sees it in `KITCHEN_QUEUE`.
    pub fn queue_name(&self) -> &str {
        match self {
            BackendConfig::Local => "local",
            BackendConfig::Redis(o) if o.mode == Mode::Pubsub => &o.channel,
            BackendConfig::Redis(o) => &o.queue,
        }
    }

    /// The same backend, set to fail at once instead of riding out an
    /// outage: for callers that must answer soon (the web entry's `503`).
    pub fn fail_fast(&self) -> BackendConfig {
        match self {
            BackendConfig::Local => BackendConfig::Local,
            BackendConfig::Redis(o) => BackendConfig::Redis(RedisOptions {
                reconnect_for: Duration::ZERO,
                ..o.clone()
            }),
        }
    }
}

/// How long a result of a tracked dish is kept, and how many at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultLimits {
    /// Each record lives this long.
    pub ttl: Duration,
    /// The most records at once; the oldest go first.
    pub max: usize,
}

impl Default for ResultLimits {
    fn default() -> Self {
        ResultLimits {
            ttl: defaults::RESULT_TTL,
            max: defaults::MAX_RESULTS,
        }
    }
}

/// Which dishes carry the time they were made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamping {
    /// Every dish: its latency is measured.
    Every,
    /// One dish in [`Stamping::SAMPLE`]: reading the clock on every dish
    /// would cost the in-process queue more than moving the dish.
    Sampled,
}

impl Stamping {
    /// In sampled runs, one dish in this many carries its time made (a power
    /// of two, so choosing is a mask, not a division per dish).
    pub const SAMPLE: u64 = 16;

    /// Dishes whose sequence number has these low bits clear are stamped.
    pub fn mask(self) -> u64 {
        match self {
            Stamping::Every => 0,
            Stamping::Sampled => Stamping::SAMPLE - 1,
        }
    }
}

const _: () = assert!(Stamping::SAMPLE.is_power_of_two());

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

/// Where a dish a diner gave back unfinished (the shutdown deadline) went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    /// Back on the shared queue, for another diner.
    Queued,
    /// Held by this process, which is ending: counted as left.
    Held,
    /// Gone: a channel cannot take a delivery back.
    Lost,
}

/// How long a consumer waits before answering [`Take::Idle`].
pub const POLL: Duration = Duration::from_millis(100);

/// How often a failed dish is tried, and how long it waits between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, at least 1; after the last failed one the dish is dead.
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles on each after.
    pub delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: defaults::MAX_ATTEMPTS,
            delay: defaults::RETRY_DELAY,
        }
    }
}

/// The longest a failed dish waits for its next attempt, however the
/// delay doubles: a day, so a due time stays far from any clock's limit.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(86_400);

impl Retry {
    /// The wait after attempt `failed` failed: the delay doubled per
    /// attempt since the first, times `jitter` (drawn in 0.5..1.5, so
    /// diners that failed together do not all come back together).
    pub fn delay_after(&self, failed: u32, jitter: f64) -> Duration {
        // Past 2^20 the wait is years: stop doubling.
        let doubled =
            self.delay.as_secs_f64() * f64::from(1u32 << failed.saturating_sub(1).min(20));
        Duration::try_from_secs_f64(doubled * jitter.clamp(0.5, 1.5))
            .unwrap_or(MAX_RETRY_WAIT)
            .min(MAX_RETRY_WAIT)
    }
}

/// A dish that ended dead (its last attempt failed, its diners kept dying,
/// or it could not be read), kept for a person to look at, requeue or purge.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    /// The dish's id (a fresh one for a payload that came without).
    pub id: String,
    /// The payload as text (lossy, at most 4 KiB of it).
    pub payload: String,
    /// The payload's whole size in bytes.
    pub bytes: usize,
    /// Why it is dead: the exit status and the tail of stderr, a timeout,
    /// unreadable, its diner died…
    pub reason: String,
    /// How many times it was tried (0: never, it could not be read).
    pub attempts: u32,
    /// When it died, in µs since the Unix epoch.
    pub at_us: u64,
}

/// Some dead letters, newest first, and how many there are.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetters {
    /// Newest first, at most the limit asked for.
    pub entries: Vec<DeadLetter>,
    /// How many dead letters there are in all.
    pub total: usize,
    /// How many were trimmed, the oldest first, to keep at most `--dead-max`.
    pub trimmed: u64,
}

/// Which dead letters a command is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    /// Every one.
    All,
    /// These ids.
    Ids(Vec<String>),
}

/// The dead letters could not be read, requeued or purged.
#[derive(Debug, thiserror::Error)]
pub enum DeadError {
    /// The server refused, or is not there.
    #[error(transparent)]
    Fault(#[from] Fault),
    /// Some ids named are not dead letters: nothing was done.
    #[error(
        "not a dead letter: {}; nothing was changed (see `kitchen dead list` for the ids)",
        .0.join(", ")
    )]
    NotDead(Vec<String>),
    /// Some dead letters named cannot be requeued, their payload being
    /// unreadable or too large to have been kept whole: nothing was done.
    #[error(
        "cannot requeue {}: its payload was unreadable or over --max-payload, so only a 4 KiB excerpt was kept; nothing was changed (remove it with `kitchen dead purge ID`)",
        .0.join(", ")
    )]
    Unrequeueable(Vec<String>),
}

/// Why a shared backend (Redis) could not serve a request: one line that
/// says what went wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
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
    /// Redis wants a password and the URL has none.
    #[error(
        "redis at {url} needs a password: put it in the URL (redis://:PASSWORD@host:port/db, or redis://USER:PASSWORD@… for an ACL user) via --redis-url or REDIS_URL"
    )]
    NoPassword {
        /// The server.
        url: String,
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
    /// Redis is over its `maxmemory` and refuses writes that would grow it:
    /// a spell that passes once diners free room, not a reason to stop.
    #[error(
        "redis at {url} is out of memory ({detail}): chefs wait until diners free room; to end it, run more diners, delete what fills it, or raise maxmemory"
    )]
    OutOfMemory {
        /// The server, password redacted.
        url: String,
        /// Its limit and policy, as far as it says (`maxmemory 2.00M, noeviction`).
        detail: String,
    },
    /// Redis is up but did not answer in time: busy, not gone.
    #[error(
        "redis at {url} did not answer within {secs} s: it is busy or overloaded (a slow command, a large save); retry later, or watch it with `redis-cli --latency`"
    )]
    Slow {
        /// The server, password redacted.
        url: String,
        /// How long kitchen waited, in seconds (`1.5`).
        secs: String,
    },
    /// A TLS connection failed, or a server expected one that was not
    /// made: `problem` says which, `fix` what to do.
    #[error("cannot connect to redis at {url}: {problem}: {fix}")]
    Tls {
        /// The server, password redacted.
        url: String,
        /// What went wrong (`the server's certificate has expired`).
        problem: String,
        /// What to do about it.
        fix: String,
    },
    /// A `--tls-*` file could not be read, or holds no usable PEM.
    #[error("cannot use {flag} {path}: {detail}")]
    TlsFile {
        /// The flag that named it (`--tls-ca`).
        flag: &'static str,
        /// The file, as given.
        path: String,
        /// What is wrong with it and what to do.
        detail: String,
    },
    /// Redis's ACL denied this user a command, key or channel (`NOPERM`).
    #[error("redis at {url} denied user {user} {what} (NOPERM): grant it with `{fix}`")]
    NoPermission {
        /// The server, password redacted.
        url: String,
        /// The ACL user (`default` when the URL names none).
        user: String,
        /// What was denied (`the command 'xadd'`, `a key`, `the channel`).
        what: String,
        /// The `ACL SETUSER` command that grants it.
        fix: String,
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

/// A backend, or one end of it, could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// `--backend redis` on a build without the `redis` feature.
    #[error(
        "the redis backend is not in this build: rebuild with `cargo build --features redis` (on by default)"
    )]
    NotCompiled,
    /// The in-process queue no longer takes new producers.
    #[error("the local queue is closed to new chefs")]
    Sealed,
    /// The server refused, or is not there.
    #[error(transparent)]
    Fault(#[from] Fault),
}

/// A consumer could not get ready to receive.
#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    /// The thread that reads a subscription could not start.
    #[error("cannot start the subscriber thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// The server refused, or is not there.
    #[error(transparent)]
    Fault(#[from] Fault),
}

/// A dish could not be taken off the queue.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    /// The consumer was not ready, and could not get ready on the way.
    #[error(transparent)]
    NotReady(#[from] ReadyError),
    /// The server refused, or is not there.
    #[error(transparent)]
    Fault(#[from] Fault),
}

macro_rules! operation_error {
    ($(#[$doc:meta] $name:ident,)*) => {$(
        #[$doc]
        #[derive(Debug, thiserror::Error)]
        #[error(transparent)]
        pub struct $name(#[from] pub Fault);
    )*};
}

operation_error! {
    /// A dish could not be put on the queue.
    PutError,
    /// An eaten dish could not be acknowledged (it will be eaten again).
    AckError,
    /// The queue's gauges (depth, health, subscribers) could not be read.
    GaugeError,
    /// A result of a tracked dish could not be recorded or read.
    ResultsError,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_and_stop_at_a_day() {
        let r = Retry {
            max_attempts: 40,
            delay: Duration::from_secs(2),
        };
        assert_eq!(r.delay_after(1, 1.0), Duration::from_secs(2));
        assert_eq!(r.delay_after(3, 1.0), Duration::from_secs(8));
        assert_eq!(r.delay_after(35, 1.5), MAX_RETRY_WAIT);
        let longest = Retry {
            delay: MAX_RETRY_WAIT,
            ..r
        };
        assert_eq!(longest.delay_after(u32::MAX, 1.5), MAX_RETRY_WAIT);
    }

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(redact_url("redis://u:secret@h:1/5"), "redis://u:***@h:1/5");
        assert_eq!(redact_url("redis://:secret@h/5"), "redis://:***@h/5");
        assert_eq!(redact_url("redis://h:6379/5"), "redis://h:6379/5");
        assert_eq!(redact_url("rediss://tok@h/0"), "rediss://***@h/0");
    }

    #[test]
    fn only_sampled_runs_skip_stamps() {
        assert_eq!(Stamping::Every.mask(), 0);
        assert_eq!(Stamping::Sampled.mask() & 16, 0);
        assert_eq!(Stamping::Sampled.mask(), 15);
    }
}
