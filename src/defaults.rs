//! Every default kitchen has, defined once: clap, the `Default` impls and the backends read these.
//!
//! A leaf module: it imports nothing of kitchen's, so any module may use it.

use std::time::Duration;

/// Dishes waiting at once, the tutorial's `Queue(10)`.
pub const CAPACITY: usize = 10;
/// Chef threads, the tutorial's three.
pub const CHEFS: usize = 3;
/// Diner threads, the tutorial's two.
pub const DINERS: usize = 2;
/// The longest nap after each dish, in milliseconds (the tutorial's `random()` seconds).
pub const MAX_SLEEP_MS: u64 = 1_000;
/// The tutorial's Redis: localhost, database 5.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/5";
/// The tutorial's list key.
pub const QUEUE: &str = "task:prodcons:queue";
/// The tutorial's channel.
pub const CHANNEL: &str = "task:pubsub:channel";
/// The stream key of stream mode.
pub const STREAM: &str = "task:prodcons:stream";
/// The consumer group stream-mode diners join.
pub const GROUP: &str = "kitchen";
/// Dishes per Redis round trip.
pub const BATCH: usize = 1;
/// Sub-queues of one logical queue (`--shards`).
pub const SHARDS: usize = 1;
/// The most `--shards` allowed: each is a key, and a diner sweeps them all.
pub const MAX_SHARDS: usize = 64;
/// A diner's heartbeat lifetime, in seconds: a SIGKILLed diner's dish is back
/// on the queue within this (plus one heartbeat).
pub const HEARTBEAT_TTL_SECS: u64 = 5;
/// How long a run rides out a Redis outage before failing, in seconds.
pub const RECONNECT_SECS: u64 = 30;
/// How long the result of a tracked dish can be looked up, in seconds: a day,
/// as Celery keeps results (RQ keeps 500 s, too short for a person who comes
/// back after lunch to ask what became of a dish).
pub const RESULT_TTL_SECS: u64 = 24 * 60 * 60;
/// The most results kept at once, on every backend; the oldest go first.
pub const MAX_RESULTS: usize = 100_000;

/// A diner's heartbeat lifetime.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(HEARTBEAT_TTL_SECS);
/// How long a run rides out a Redis outage.
pub const RECONNECT_FOR: Duration = Duration::from_secs(RECONNECT_SECS);
/// How long results are kept.
pub const RESULT_TTL: Duration = Duration::from_secs(RESULT_TTL_SECS);
/// After the first Ctrl-C or SIGTERM, how long work in hand may run, in
/// seconds: below the 30 s most deploy tools wait before SIGKILL.
pub const SHUTDOWN_TIMEOUT_SECS: u64 = 25;
/// After the first Ctrl-C or SIGTERM, how long work in hand may run.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(SHUTDOWN_TIMEOUT_SECS);
/// The largest payload a dish may carry, in bytes: 1 MiB.
pub const MAX_PAYLOAD: usize = 1024 * 1024;
/// The most dead letters kept; the oldest are trimmed beyond it.
pub const DEAD_MAX: usize = 10_000;
/// How many times a dish is tried before it is dead-lettered.
pub const MAX_ATTEMPTS: u32 = 3;
/// The wait before a failed dish's second attempt, in seconds; it doubles
/// on each attempt after (with jitter).
pub const RETRY_DELAY_SECS: u64 = 1;
/// The wait before a failed dish's second attempt.
pub const RETRY_DELAY: Duration = Duration::from_secs(RETRY_DELAY_SECS);
/// The longest nap after each dish.
pub const MAX_SLEEP: Duration = Duration::from_millis(MAX_SLEEP_MS);

/// Where `kitchen serve` listens.
pub const BIND: &str = "127.0.0.1:5000";
/// Web worker threads.
pub const WORKERS: usize = 16;
/// `kitchen serve`'s in-process diners (local backend).
pub const SERVE_DINERS: usize = 2;
/// `kitchen serve`'s in-process diners eat without napping.
pub const SERVE_MAX_SLEEP_MS: u64 = 0;
/// Seconds a web client gets to send one request, or to idle between two.
pub const CLIENT_TIMEOUT_SECS: u64 = 5;
/// How long a web request waits for room in a full queue before its `503`, in ms.
pub const FULL_WAIT_MS: u64 = 250;
/// A web client's time to send one request.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(CLIENT_TIMEOUT_SECS);
/// A web request's wait for room.
pub const FULL_WAIT: Duration = Duration::from_millis(FULL_WAIT_MS);
