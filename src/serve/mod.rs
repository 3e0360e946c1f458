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
//! | `dead` | the dead letters on the page: their list and the requeue and purge forms |
//! | `live` | the page's live parts: samples each second, recent failures, sparklines |

mod dead;
mod diners;
pub mod http;
mod live;
pub mod metrics;
mod page;
mod routes;
mod server;

use std::net::TcpListener;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::select;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::defaults;
use crate::kitchen::KitchenError;
use crate::kitchen::diner::Diner;
use crate::kitchen::work::Work;
use crate::queue::{Backend, BackendConfig, Capacity, Fault, Gauge, OpenError, ResultLimits};
use crate::shutdown::Shutdown;
use diners::WebSink;
use metrics::Metrics;
use routes::Web;

/// A validated description of one web server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// Where the queue lives.
    pub backend: BackendConfig,
    /// The most dishes waiting at once; a put beyond it is a `503`.
    pub capacity: Capacity,
    /// In-process diner threads (local backend; 0 = none, dishes wait).
    pub diners: usize,
    /// Web worker threads: how many requests are answered at once.
    pub workers: usize,
    /// In-process diners nap a uniform random time below this per dish.
    pub max_sleep: Duration,
    /// How long the result of a dish can be looked up (local backend; with
    /// Redis, diners keep results for their `--result-ttl`).
    pub result_ttl: Duration,
    /// The most results kept at once; the oldest go first.
    pub max_results: usize,
    /// The most a client gets to send one request, or to idle between two.
    pub client_timeout: Duration,
    /// How long a request waits for room in a full queue before its `503`:
    /// enough to ride out a burst, far below the second a client may wait.
    pub full_wait: Duration,
    /// The largest payload `POST /dishes` takes (bytes); more is a `413`.
    pub max_payload: usize,
    /// What the in-process diners do with each dish (`--exec`).
    pub work: Work,
    /// After the stop, how long the in-process diners' work in hand may run.
    pub shutdown_timeout: Duration,
    /// How often the in-process diners try a failed dish, and the wait between.
    pub retry: crate::queue::Retry,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            backend: BackendConfig::Local,
            capacity: Capacity::default(),
            diners: defaults::SERVE_DINERS,
            workers: defaults::WORKERS,
            max_sleep: Duration::from_millis(defaults::SERVE_MAX_SLEEP_MS),
            result_ttl: defaults::RESULT_TTL,
            max_results: defaults::MAX_RESULTS,
            client_timeout: defaults::CLIENT_TIMEOUT,
            full_wait: defaults::FULL_WAIT,
            max_payload: defaults::MAX_PAYLOAD,
            work: Work::Nap,
            shutdown_timeout: defaults::SHUTDOWN_TIMEOUT,
            retry: crate::queue::Retry::default(),
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
    Open(#[from] OpenError),
    /// An in-process diner failed.
    #[error(transparent)]
    Diner(#[from] KitchenError),
    /// The operating system refused a web thread.
    #[error("cannot start a web thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// State every worker and diner of one server shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: ServeConfig,
    pub metrics: Metrics,
    pub started: Instant,
    /// Whether other processes share the queue (and eat from it).
    pub shared_queue: bool,
    /// The samples and failures the page draws.
    pub live: live::Live,
}

/// Serves HTTP on `listener` until `shutdown`; then finishes the requests in
/// flight, lets the in-process diners eat what is queued, and returns.
///
/// [`Server::open`] then [`Server::run`], for callers with nothing to say in between.
pub fn run(
    listener: TcpListener,
    config: &ServeConfig,
    shutdown: &Shutdown,
) -> Result<(), ServeError> {
    Server::open(listener, config)?.run(shutdown)
}

/// A web entry whose queue is open and whose threads are ready to serve.
#[derive(Debug)]
pub struct Server {
    /// What the sampler thread reads every second, and where it writes.
    sampler: (Arc<Shared>, Gauge),
    listener: TcpListener,
    workers: Vec<Web>,
    eaters: Vec<DinerThread>,
    client_timeout: Duration,
    /// The most request bytes held at once (from `--max-payload`).
    request_budget: usize,
    /// Stopped at the shutdown deadline: the diners' work in hand ends.
    abandon: Shutdown,
    shutdown_timeout: Duration,
    /// Whether the queue could not be reached at start (it is served with
    /// `503`s until it can).
    pub waiting_for_queue: bool,
}

impl Server {
    /// Opens the queue and starts the in-process diners, so that a server
    /// that announces itself is ready to answer.
    ///
    /// A shared backend (Redis) that does not answer yet is no reason to
    /// refuse to start: requests get `503` with `Retry-After` until it
    /// answers, as during any outage ([`Server::waiting_for_queue`] says
    /// so). A backend that answers and refuses (wrong password, a key of the
    /// wrong type) will not fix itself: that fails here.
    ///
    /// Requests fail fast (no reconnect loop), so an outage is a `503` at
    /// once; the next request connects again, so the server recovers by
    /// itself when the backend returns.
    pub fn open(listener: TcpListener, config: &ServeConfig) -> Result<Server, ServeError> {
        let limits = ResultLimits {
            ttl: config.result_ttl,
            max: config.max_results,
        };
        let backend_config = config.backend.fail_fast();
        let (backend, waiting_for_queue) =
            match Backend::open(&backend_config, config.capacity, limits) {
                Ok(b) => (b, false),
                Err(OpenError::Fault(Fault::Unreachable { .. } | Fault::Slow { .. })) => (
                    Backend::open_unchecked(&backend_config, config.capacity, limits)?,
                    true,
                ),
                Err(e) => return Err(e.into()),
            };
        let shared = Arc::new(Shared {
            config: config.clone(),
            metrics: Metrics::default(),
            started: Instant::now(),
            shared_queue: backend.is_shared(),
            live: live::Live::default(),
        });
        let mut workers = Vec::with_capacity(config.workers.max(1));
        for _ in 0..config.workers.max(1) {
            workers.push(Web::new(shared.clone(), &backend)?);
        }
        // Diners of a shared queue are `kitchen diner` processes.
        let diners = if backend.is_shared() {
            0
        } else {
            config.diners
        };
        let abandon = Shutdown::new();
        let eaters = (0..diners)
            .map(|i| spawn_diner(&backend, &shared, &abandon, i))
            .collect::<Result<Vec<_>, _>>()?;
        let sampler = (shared.clone(), backend.gauge());
        // The queue closes once the workers (its producers) are gone.
        backend.seal();
        Ok(Server {
            sampler,
            listener,
            workers,
            eaters,
            client_timeout: config.client_timeout,
            request_budget: server::request_budget(config.max_payload),
            abandon,
            shutdown_timeout: config.shutdown_timeout,
            waiting_for_queue,
        })
    }

    /// Serves until `shutdown`; then finishes the requests in flight, lets
    /// the in-process diners eat what is queued, and returns.
    pub fn run(self, shutdown: &Shutdown) -> Result<(), ServeError> {
        // The diners' work in hand gets `shutdown_timeout` from the stop.
        let done = Shutdown::new();
        let deadline = {
            let (shutdown, done, abandon) = (shutdown.clone(), done.clone(), self.abandon.clone());
            let grace = self.shutdown_timeout;
            thread::Builder::new()
                .name("shutdown-deadline".into())
                .spawn(move || {
                    select! {
                        recv(shutdown.receiver()) -> _ => {
                            if !done.sleep(grace) {
                                abandon.stop();
                            }
                        }
                        recv(done.receiver()) -> _ => {}
                    }
                })
                .map_err(ServeError::Spawn)?
        };
        let (shared, gauge) = self.sampler;
        let sampler = spawn_sampler(shared, gauge, done.clone()).inspect_err(|_| {
            // The deadline thread ends with `done`.
            done.stop();
        })?;
        let served = server::run(
            self.listener,
            self.workers,
            self.client_timeout,
            self.request_budget,
            shutdown,
        );
        let mut first_error = None;
        for (name, h) in self.eaters {
            let err = match h.join() {
                Ok((_, None)) => continue,
                Ok((_, Some(e))) => e,
                Err(_) => KitchenError::Panicked(name),
            };
            first_error.get_or_insert(err);
        }
        done.stop();
        let _ = deadline.join();
        let _ = sampler.join();
        served?;
        first_error.map_or(Ok(()), |e| Err(e.into()))
    }
}

/// Samples the queue every second for the page's sparklines until `done`:
/// its depth, and the eaten total (this server's diners', or on a shared
/// queue the live diner processes' as their heartbeats say).
fn spawn_sampler(
    shared: Arc<Shared>,
    mut gauge: Gauge,
    done: Shutdown,
) -> Result<JoinHandle<()>, ServeError> {
    thread::Builder::new()
        .name("sampler".into())
        .spawn(move || {
            loop {
                let at = Instant::now();
                let depth = gauge.depth().ok();
                let eaten = if shared.shared_queue {
                    gauge.diners_counts().map(|(eaten, _)| eaten)
                } else {
                    Some(Metrics::get(&shared.metrics.eaten))
                };
                shared.live.sample(at, depth, eaten);
                if done.sleep(live::PERIOD.saturating_sub(at.elapsed())) {
                    break;
                }
            }
        })
        .map_err(ServeError::Spawn)
}

type DinerThread = (String, JoinHandle<(WebSink, Option<KitchenError>)>);

/// Starts in-process diner `i`: the kitchen's diner, reporting to the server's figures.
fn spawn_diner(
    backend: &Backend,
    shared: &Arc<Shared>,
    abandon: &Shutdown,
    i: usize,
) -> Result<DinerThread, ServeError> {
    let name = format!("diner-{}", i + 1);
    let diner = Diner {
        results_name: name.clone(),
        consumer: backend.consumer(),
        // The local queue closes by disconnection once the workers are
        // gone: these diners then eat what is left and end by themselves.
        stop: Shutdown::new(),
        chefs_done: Shutdown::new(),
        abandon: abandon.clone(),
        ready: None,
        meal: shared.config.work.for_diner(),
        max_sleep: shared.config.max_sleep,
        rng: StdRng::from_os_rng(),
        queue: shared.config.backend.queue_name().to_owned(),
        retry: shared.config.retry,
        results: backend.results(),
        sink: WebSink {
            shared: shared.clone(),
        },
    };
    let handle = thread::Builder::new()
        .name(name.clone())
        .spawn(move || diner.eat())
        .map_err(|error| KitchenError::Spawn {
            thread: name.clone(),
            error,
        })?;
    Ok((name, handle))
}
