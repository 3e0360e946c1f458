//! The web entry, `kitchen serve`: the tutorial's Flask app as a threaded, blocking HTTP server.
//!
//! [`run`] takes a listener the caller has bound and the caller's stop token,
//! as mini-redis's `server::run` does, so tests bind `127.0.0.1:0` and stop
//! the server when they are done.
//!
//! | module | job |
//! |---|---|
//! | `server` | the listener loop and the fixed pool of workers; timeouts |
//! | [`http`] | parsing a request head, writing a response; size limits |
//! | `routes` | what each route does |
//! | `page` | the "Redis Message Queue" page |
//! | [`metrics`] | counters, `/stats` JSON and `/metrics` Prometheus text |
//! | `diners` | the in-process diners of the local backend |

mod diners;
pub mod http;
pub mod metrics;
mod page;
mod routes;
mod server;

use std::net::TcpListener;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::queue::{Backend, BackendConfig, Capacity, Mode, QueueError, RedisOptions};
use crate::results::{LocalResults, Recorder};
use crate::shutdown::Shutdown;
use diners::WebDiner;
use metrics::Metrics;
use routes::{Web, WebRedis};

/// A validated description of one web server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// Where the queue lives.
    pub backend: BackendConfig,
    /// The most dishes waiting at once; a put beyond it is a `503`.
    pub capacity: Capacity,
    /// In-process diner threads (local backend; 0 = none, dishes wait).
    pub diners: usize,
    /// Web worker threads: how many connections are served at once.
    pub workers: usize,
    /// In-process diners nap a uniform random time below this per dish.
    pub max_sleep: Duration,
    /// How long the result of a dish can be looked up (local backend; with
    /// Redis, diners keep results for their `--result-ttl`).
    pub result_ttl: Duration,
    /// The most results kept in memory (local backend); the oldest go first.
    pub max_results: usize,
    /// The most a client gets to send one request, or to idle between two.
    pub client_timeout: Duration,
    /// How long a request waits for room in a full queue before its `503`:
    /// enough to ride out a burst, far below the second a client may wait.
    pub full_wait: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            backend: BackendConfig::Local,
            capacity: Capacity::Bounded(10),
            diners: 2,
            workers: 16,
            max_sleep: Duration::ZERO,
            result_ttl: Duration::from_secs(24 * 60 * 60),
            max_results: 100_000,
            client_timeout: Duration::from_secs(5),
            full_wait: Duration::from_millis(250),
        }
    }
}

/// What stops the web entry.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    // The cause is part of the message (not a `source`), as `main` prints
    // the whole chain and would say it twice.
    #[error("cannot listen on {addr}: {error}; choose another address with --bind")]
    Bind {
        /// What `--bind` said.
        addr: String,
        /// Why.
        error: std::io::Error,
    },
    /// The bound listener cannot be used.
    #[error("the listening socket failed: {0}")]
    Listener(std::io::Error),
    /// The queue cannot be opened.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The operating system refused a thread.
    #[error("cannot start a thread: {0}")]
    Spawn(std::io::Error),
}

/// State every worker and diner of one server shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: ServeConfig,
    pub metrics: Metrics,
    /// Results of the local backend (unused with Redis, where diners write them).
    pub results: Arc<LocalResults>,
    pub started: Instant,
}

/// Serves HTTP on `listener` until `shutdown`; then finishes the requests in
/// flight, lets the in-process diners eat what is queued, and returns.
///
/// With Redis, every request fails fast (no reconnect loop) so that a Redis
/// outage is a `503` at once; the next request connects again, so the
/// server recovers by itself when Redis returns.
pub fn run(
    listener: TcpListener,
    config: &ServeConfig,
    shutdown: &Shutdown,
) -> Result<(), ServeError> {
    let (queue, channel) = match &config.backend {
        BackendConfig::Local => (BackendConfig::Local, None),
        BackendConfig::Redis(o) => {
            let mut list = o.clone();
            list.reconnect_for = Duration::ZERO;
            list.mode = Mode::List;
            let pubsub = RedisOptions {
                mode: Mode::Pubsub,
                ..list.clone()
            };
            (BackendConfig::Redis(list), Some(pubsub))
        }
    };
    let backend = Backend::open(&queue, config.capacity)?;
    let publish = match &channel {
        Some(o) => Some(Backend::open(
            &BackendConfig::Redis(o.clone()),
            config.capacity,
        )?),
        None => None,
    };
    let shared = Arc::new(Shared {
        config: config.clone(),
        metrics: Metrics::default(),
        results: Arc::new(LocalResults::new(config.result_ttl, config.max_results)),
        started: Instant::now(),
    });
    let mut workers = Vec::with_capacity(config.workers.max(1));
    for _ in 0..config.workers.max(1) {
        let redis = match (&publish, &channel) {
            (Some(p), Some(o)) => Some(web_redis(p, o)?),
            _ => None,
        };
        workers.push(Web::new(
            shared.clone(),
            backend.producer()?,
            backend.gauge(),
            redis,
        ));
    }
    let diners = match config.backend {
        BackendConfig::Local => config.diners,
        // Diners of a shared queue are `kitchen diner` processes.
        BackendConfig::Redis(_) => 0,
    };
    let mut eaters = Vec::with_capacity(diners);
    for i in 0..diners {
        let diner = WebDiner {
            name: format!("diner-{}", i + 1),
            consumer: backend.consumer()?,
            shared: shared.clone(),
            results: Recorder::Local(shared.results.clone()),
            max_sleep: config.max_sleep,
            rng: StdRng::from_os_rng(),
        };
        let handle = thread::Builder::new()
            .name(diner.name.clone())
            .spawn(move || diner.eat())
            .map_err(ServeError::Spawn)?;
        eaters.push(handle);
    }
    // The queue closes once the workers (its producers) are gone.
    backend.seal();
    let served = server::run(listener, workers, config.client_timeout, shutdown);
    let mut first_error = None;
    for h in eaters {
        if let Ok(Err(e)) = h.join() {
            first_error.get_or_insert(e);
        }
    }
    served?;
    first_error.map_or(Ok(()), |e| Err(e.into()))
}

/// One worker's publisher and results connection.
#[cfg(feature = "redis")]
fn web_redis(publish: &Backend, opts: &RedisOptions) -> Result<WebRedis, QueueError> {
    Ok(WebRedis {
        publisher: publish.producer()?,
        results: crate::results::RedisResults::new(opts)?,
    })
}

#[cfg(not(feature = "redis"))]
fn web_redis(_: &Backend, _: &RedisOptions) -> Result<WebRedis, QueueError> {
    Err(QueueError::RedisNotCompiled)
}
