//! The kitchen: chefs and diners on threads around a queue, and the run's summary.
//!
//! [`run`] is the whole of `kitchen run`, `kitchen chef` and `kitchen diner`:
//! it opens the backend, starts the threads, watches for the stop, drains,
//! and returns a [`Summary`]. It never prints the summary itself; the caller
//! decides where it goes.

mod chef;
pub(crate) mod diner;
pub mod output;
pub mod stats;
mod status;
pub mod summary;
pub mod work;

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, never, select};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::defaults;
use crate::dish::{Dish, OneLine};
use crate::queue::{
    AckError, Backend, BackendConfig, Capacity, GaugeError, OpenError, PutError, ReadyError,
    ResultLimits, ResultsError, Retry, Returned, TakeError,
};
use crate::shutdown::Shutdown;
pub(crate) use chef::IdBlock;
use chef::{Chef, ChefReport};
use diner::{Diner, Sink};
pub use output::Printer;
use output::{IdTag, PrintOrder};
use stats::{LatencyHistogram, LiveCounters, Tickets};
pub use summary::Summary;
use work::Work;

/// The most of a failure's reason a per-dish line shows (the whole is
/// in the dead letter and the result).
const REASON_SHOWN: usize = 500;

/// Which threads this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Chefs and diners together; diners drain the queue after the chefs stop.
    Run,
    /// Chefs only; another process eats.
    Chef,
    /// Diners only, until stopped; another process cooks.
    Diner,
}

/// A validated description of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct KitchenConfig {
    /// Which threads to start.
    pub role: Role,
    /// Where the queue lives.
    pub backend: BackendConfig,
    /// The most dishes waiting at once.
    pub capacity: Capacity,
    /// Chef threads (ignored by [`Role::Diner`]).
    pub chefs: usize,
    /// Diner threads (ignored by [`Role::Chef`]).
    pub diners: usize,
    /// Stop after this many dishes made in total.
    pub dishes: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Chefs and diners nap a uniform random time below this after each dish.
    pub max_sleep: Duration,
    /// Seed for reproducible dish numbers and naps.
    pub seed: Option<u64>,
    /// Print per-dish lines (else a live status line on a terminal).
    pub quiet: bool,
    /// End each per-dish line with the dish's id (`--ids`).
    pub ids: bool,
    /// What diners do with each dish: nap (the tutorial), a command, a handler.
    pub work: Work,
    /// After the first Ctrl-C or SIGTERM, work in hand gets this long; then
    /// it is ended and its dish given back.
    pub shutdown_timeout: Duration,
    /// Diners stop once the queue is empty (`kitchen diner --burst`).
    pub burst: bool,
    /// How often a failed dish is tried, and the wait between.
    pub retry: Retry,
}

impl Default for KitchenConfig {
    /// The tutorial's kitchen: capacity 10, 3 chefs, 2 diners, naps below 1 s.
    fn default() -> Self {
        KitchenConfig {
            role: Role::Run,
            backend: BackendConfig::Local,
            capacity: Capacity::default(),
            chefs: defaults::CHEFS,
            diners: defaults::DINERS,
            dishes: None,
            duration: None,
            max_sleep: defaults::MAX_SLEEP,
            seed: None,
            quiet: false,
            ids: false,
            work: Work::Nap,
            shutdown_timeout: defaults::SHUTDOWN_TIMEOUT,
            burst: false,
            retry: Retry::default(),
        }
    }
}

/// What stops a run from finishing.
#[derive(Debug, thiserror::Error)]
pub enum KitchenError {
    /// The queue could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A diner could not get ready.
    #[error(transparent)]
    Ready(#[from] ReadyError),
    /// A chef could not put a dish.
    #[error(transparent)]
    Put(#[from] PutError),
    /// A diner could not take a dish.
    #[error(transparent)]
    Take(#[from] TakeError),
    /// A diner could not acknowledge a dish (it will be eaten again).
    #[error(transparent)]
    Ack(#[from] AckError),
    /// A diner could not record a tracked dish's result.
    #[error(transparent)]
    Results(#[from] ResultsError),
    /// The queue's depth could not be read for the summary.
    #[error(transparent)]
    Gauge(#[from] GaugeError),
    /// The operating system refused a thread.
    #[error("cannot start the {thread} thread: {error}")]
    Spawn {
        /// Which thread.
        thread: String,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// A thread panicked: a bug in kitchen.
    #[error("{0} stopped unexpectedly (a bug in kitchen; please report it)")]
    Panicked(String),
}

/// A run that failed, with the summary of what it did before it failed
/// (`None` when it failed before any thread started), so that a chef that
/// gives up on Redis still tells how many dishes it made.
#[derive(Debug, thiserror::Error)]
// The cause is the message (not a `source`): `main` prints the whole chain.
#[error("{error}")]
pub struct RunError {
    /// What went wrong.
    pub error: KitchenError,
    /// What the run did until then.
    pub summary: Option<Box<Summary>>,
}

impl<E: Into<KitchenError>> From<E> for RunError {
    fn from(e: E) -> Self {
        RunError {
            error: e.into(),
            summary: None,
        }
    }
}

/// Salts that keep chef and diner random streams apart under one seed.
const CHEF_SALT: u64 = 0x6368_6566;
const DINER_SALT: u64 = 0x0064_696e_6572;

fn rng_for(seed: Option<u64>, salt: u64, index: usize) -> StdRng {
    match seed {
        Some(s) => StdRng::seed_from_u64(
            s ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ (index as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9),
        ),
        None => StdRng::from_os_rng(),
    }
}

/// The run's stop tokens, each named for who stops whom. The caller's
/// `shutdown` is only ever read.
#[derive(Debug, Clone)]
struct Stops {
    /// Chefs stop making: Ctrl-C, `--duration`, a closed stdout, a failure.
    chefs: Shutdown,
    /// Every chef of this run has ended: diners close once the queue is empty.
    chefs_done: Shutdown,
    /// Diners stop taking: a failure; in a diner-only process, also the
    /// chefs' stop (there are no chefs, and what is queued is not ours).
    diners: Shutdown,
    /// The shutdown deadline passed: work in hand ends, its dish goes back.
    abandon: Shutdown,
    /// The run is over: the watcher and the status line end.
    run_over: Shutdown,
}

impl Stops {
    fn new(role: Role) -> Stops {
        let chefs = Shutdown::new();
        let diners = if role == Role::Diner {
            chefs.clone()
        } else {
            Shutdown::new()
        };
        Stops {
            chefs,
            chefs_done: Shutdown::new(),
            diners,
            abandon: Shutdown::new(),
            run_over: Shutdown::new(),
        }
    }

    /// Something failed: everybody stops, nobody waits for more dishes.
    fn fail(&self) {
        self.chefs.stop();
        self.diners.stop();
        self.chefs_done.stop();
    }
}

/// What a chef or diner thread sends when it ends.
enum Report {
    Chef(ChefReport, Option<PutError>),
    Diner(Box<Tally>, Option<KitchenError>),
    Panicked(String),
}

/// Sends a thread's report when it ends, or a panic notice if it unwinds first,
/// so the run never waits on a thread that is gone.
struct Reporter {
    name: String,
    tx: Option<Sender<Report>>,
}

impl Reporter {
    fn send(mut self, r: Report) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(r);
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Report::Panicked(std::mem::take(&mut self.name)));
        }
    }
}

/// What one of the kitchen's diners did, and where its lines go.
#[derive(Debug)]
struct Tally {
    number: u32,
    slot: usize,
    printer: Printer,
    ids: bool,
    /// Where a closed stdout sends its stop.
    print_stop: Shutdown,
    /// Keeps "ate" lines after their dish's "made" line.
    order: Arc<PrintOrder>,
    live: Arc<LiveCounters>,
    eaten: u64,
    failed: u64,
    /// Failed attempts that will be tried again.
    retried: u64,
    /// Dishes given back unfinished that this process held (counted as left).
    held: u64,
    /// Dishes shown never to have arrived (a dropped pub/sub subscription),
    /// or abandoned deliveries a channel cannot take back.
    lost: u64,
    rejected: u64,
    max_depth: u64,
    latency: LatencyHistogram,
}

impl Sink for Tally {
    #[inline]
    fn took(&mut self, dish: &Dish, depth: usize, latency_us: Option<u64>) {
        if let Some(us) = latency_us {
            self.latency.record(us);
        }
        self.eaten += 1;
        self.max_depth = self.max_depth.max(depth as u64);
        self.live.set(self.slot, self.eaten);
        if self.printer.enabled() {
            self.order.wait_for(dish);
            self.printer.line(
                format_args!(
                    "diner-{} ate dish {} --- {depth} left to eat{}",
                    self.number,
                    dish.payload,
                    IdTag(self.ids.then_some(dish.id))
                ),
                &self.print_stop,
            );
        }
    }

    #[inline]
    fn ate(&mut self, _: &Dish) {}

    fn failed(&mut self, dish: &Dish, reason: &str) {
        // Counted as eaten when taken; it was not: made = eaten + failed + left + lost.
        self.eaten = self.eaten.saturating_sub(1);
        self.live.set(self.slot, self.eaten);
        self.failed += 1;
        if self.printer.enabled() {
            self.printer.line(
                format_args!(
                    "diner-{} failed dish {} --- {}{}",
                    self.number,
                    dish.payload,
                    OneLine(reason, REASON_SHOWN),
                    IdTag(self.ids.then_some(dish.id))
                ),
                &self.print_stop,
            );
        }
    }

    fn retrying(&mut self, dish: &Dish, reason: &str, delay: Duration) {
        // Counted as eaten when taken; it was not, and it will be taken again.
        self.eaten = self.eaten.saturating_sub(1);
        self.live.set(self.slot, self.eaten);
        self.retried += 1;
        if self.printer.enabled() {
            self.printer.line(
                format_args!(
                    "diner-{} failed dish {} on attempt {}, retrying in {:.1} s --- {}{}",
                    self.number,
                    dish.payload,
                    dish.attempt,
                    delay.as_secs_f64(),
                    OneLine(reason, REASON_SHOWN),
                    IdTag(self.ids.then_some(dish.id))
                ),
                &self.print_stop,
            );
        }
    }

    fn abandoned(&mut self, _: &Dish, returned: Returned) {
        // Counted as eaten when taken; it was not.
        self.eaten = self.eaten.saturating_sub(1);
        match returned {
            Returned::Queued => {}
            Returned::Held => self.held += 1,
            Returned::Lost => self.lost += 1,
        }
    }

    fn rejected(&mut self, reason: &str) {
        self.rejected += 1;
        if self.printer.enabled() {
            self.printer.line(
                format_args!(
                    "diner-{} rejected a payload --- {}",
                    self.number,
                    OneLine(reason, REASON_SHOWN)
                ),
                &self.print_stop,
            );
        }
    }

    fn closed(&mut self, lost: u64) {
        self.lost = lost;
    }
}

/// Everything the threads of one run share.
struct Crew<'a> {
    config: &'a KitchenConfig,
    backend: Backend,
    stops: Stops,
    printer: Printer,
    made_live: Arc<LiveCounters>,
    eaten_live: Arc<LiveCounters>,
    order: Arc<PrintOrder>,
    reports: Sender<Report>,
}

/// Runs the kitchen until its dishes are made, its time is up or `shutdown`.
///
/// Stopping means the chefs stop; in [`Role::Run`] the diners then eat what
/// is queued, in [`Role::Diner`] they finish the dish in hand. Per-dish lines
/// go to `printer`.
pub fn run(
    config: &KitchenConfig,
    shutdown: &Shutdown,
    printer: Printer,
) -> Result<Summary, RunError> {
    let (chefs, diners) = match config.role {
        Role::Run => (config.chefs, config.diners),
        Role::Chef => (config.chefs, 0),
        Role::Diner => (0, config.diners),
    };
    let mut backend = Backend::open(&config.backend, config.capacity, ResultLimits::default())?;
    let stamping = backend.stamping(config.quiet && config.max_sleep.is_zero());
    let (reports, rx) = crossbeam_channel::unbounded();
    let crew = Crew {
        config,
        backend,
        stops: Stops::new(config.role),
        printer: if config.quiet {
            Printer::quiet()
        } else {
            printer
        },
        made_live: Arc::new(LiveCounters::new(chefs)),
        eaten_live: Arc::new(LiveCounters::new(diners)),
        order: Arc::new(PrintOrder::new(chefs)),
        reports,
    };

    let started = Instant::now();
    let watcher = watch(shutdown, config, &crew.stops)?;
    if config.burst {
        // No chef of ours will come: diners end once the queue is empty.
        crew.stops.chefs_done.stop();
    }
    let status = crew.status_line()?;
    // Diners first, and chefs only once every diner is ready (subscribed, in
    // pub/sub mode), so that no dish of this run is published to nobody.
    let started_threads = crew
        .spawn_diners(diners)
        .and_then(|(mut handles, all_ready)| {
            let chefs_started = if all_ready { chefs } else { 0 };
            handles.extend(crew.spawn_chefs(chefs_started, stamping.mask())?);
            Ok((handles, chefs_started))
        });
    let (handles, chefs_started) = match started_threads {
        Ok(started) => started,
        Err(e) => {
            // Threads already started must not run on without a run.
            crew.stops.fail();
            crew.stops.run_over.stop();
            return Err(e.into());
        }
    };
    // From here, the local queue closes once these chefs' producers are dropped.
    crew.backend.seal();
    let Crew {
        backend,
        stops,
        reports,
        ..
    } = crew;
    drop(reports);
    let (made, ate, failure) = collect(&rx, chefs_started, config.role, &stops);
    let elapsed = started.elapsed();
    stops.run_over.stop();
    join_all(handles, watcher, status);
    // Dishes given back unfinished that this process held are left too.
    let mut gauge = backend.gauge();
    let left = gauge.depth().map(|d| d as u64 + ate.held);
    let waiting = gauge.waiting_retries().ok().map(|n| n as u64);
    let summary = summarize(
        config,
        &backend,
        &made,
        &ate,
        elapsed,
        (left.as_ref().ok().copied(), waiting),
    );
    match (failure, left) {
        (None, Ok(_)) => Ok(summary),
        (Some(error), _) => Err(RunError {
            error,
            summary: Some(Box::new(summary)),
        }),
        (None, Err(e)) => Err(RunError {
            error: e.into(),
            summary: Some(Box::new(summary)),
        }),
    }
}

/// Stops the chefs on the caller's `shutdown` or when `duration` is up; after
/// a `shutdown`, gives the work in hand `shutdown_timeout`, then abandons it.
fn watch(
    shutdown: &Shutdown,
    config: &KitchenConfig,
    stops: &Stops,
) -> Result<JoinHandle<()>, KitchenError> {
    let (shutdown, stops) = (shutdown.clone(), stops.clone());
    let (duration, grace) = (config.duration, config.shutdown_timeout);
    spawn("watcher", move || {
        let timeout = duration.map_or_else(never, crossbeam_channel::after);
        select! {
            recv(shutdown.receiver()) -> _ => {
                stops.chefs.stop();
                // The deadline counts from the signal, whatever is queued.
                if !stops.run_over.sleep(grace) {
                    stops.abandon.stop();
                }
            }
            recv(timeout) -> _ => { stops.chefs.stop(); }
            recv(stops.run_over.receiver()) -> _ => {}
        }
    })
}

impl Crew<'_> {
    /// Starts the live status line, when the run is quiet on a terminal.
    fn status_line(&self) -> Result<Option<JoinHandle<()>>, KitchenError> {
        if !status::wanted(self.config.quiet) {
            return Ok(None);
        }
        let (made, eaten) = (self.made_live.clone(), self.eaten_live.clone());
        let done = self.stops.run_over.clone();
        status::spawn(made, eaten, self.backend.gauge(), done)
            .map(Some)
            .map_err(|error| KitchenError::Spawn {
                thread: "status".into(),
                error,
            })
    }

    /// Starts `n` diners; `true` once every one is ready.
    fn spawn_diners(&self, n: usize) -> Result<(Vec<JoinHandle<()>>, bool), KitchenError> {
        let (ready_tx, ready_rx) = crossbeam_channel::bounded::<()>(n);
        let shared = self.backend.is_shared();
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("diner-{}", i + 1);
            let diner = Diner {
                results_name: if shared {
                    format!("{name}@{}", std::process::id())
                } else {
                    name.clone()
                },
                consumer: self.backend.consumer(),
                stop: self.stops.diners.clone(),
                chefs_done: self.stops.chefs_done.clone(),
                abandon: self.stops.abandon.clone(),
                ready: Some(ready_tx.clone()),
                meal: self.config.work.for_diner(),
                max_sleep: self.config.max_sleep,
                rng: rng_for(self.config.seed, DINER_SALT, i),
                queue: self.config.backend.queue_name().to_owned(),
                retry: self.config.retry,
                results: self.backend.results(),
                sink: Tally {
                    number: i as u32 + 1,
                    slot: i,
                    printer: self.printer.clone(),
                    ids: self.config.ids,
                    print_stop: self.stops.chefs.clone(),
                    order: self.order.clone(),
                    live: self.eaten_live.clone(),
                    eaten: 0,
                    failed: 0,
                    retried: 0,
                    held: 0,
                    lost: 0,
                    rejected: 0,
                    max_depth: 0,
                    latency: LatencyHistogram::default(),
                },
            };
            let reporter = self.reporter(&name);
            handles.push(spawn(&name, move || {
                let (tally, failure) = diner.eat();
                reporter.send(Report::Diner(Box::new(tally), failure));
            })?);
        }
        drop(ready_tx);
        // A diner that fails before it is ready drops its sender without sending.
        let all_ready = (0..n).all(|_| ready_rx.recv().is_ok());
        Ok((handles, all_ready))
    }

    /// Starts `n` chefs, stamping the dishes whose sequence has `stamp_mask` clear.
    fn spawn_chefs(&self, n: usize, stamp_mask: u64) -> Result<Vec<JoinHandle<()>>, KitchenError> {
        let tickets = Arc::new(Tickets::new(self.config.dishes));
        // Claiming one ticket at a time lets napping chefs share the work evenly;
        // at full speed, batches keep them off one contended counter.
        let batch = if self.config.max_sleep.is_zero() {
            64
        } else {
            1
        };
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("chef-{}", i + 1);
            let chef = Chef {
                stamp_mask,
                slot: i,
                number: i as u32 + 1,
                producer: self.backend.producer()?,
                stop: self.stops.chefs.clone(),
                tickets: tickets.clone(),
                batch,
                max_sleep: self.config.max_sleep,
                rng: rng_for(self.config.seed, CHEF_SALT, i),
                printer: self.printer.clone(),
                ids: self.config.ids,
                live: self.made_live.clone(),
                order: self.order.clone(),
            };
            let reporter = self.reporter(&name);
            handles.push(spawn(&name, move || {
                let (report, failure) = chef.cook();
                reporter.send(Report::Chef(report, failure));
            })?);
        }
        Ok(handles)
    }

    fn reporter(&self, name: &str) -> Reporter {
        Reporter {
            name: name.to_owned(),
            tx: Some(self.reports.clone()),
        }
    }
}

/// What the chefs and diners of a run did, merged.
#[derive(Debug, Default)]
struct DinersReport {
    eaten: u64,
    failed: u64,
    retried: u64,
    held: u64,
    lost: u64,
    rejected: u64,
    max_depth: u64,
    latency: LatencyHistogram,
}

/// Reads every thread's report as it ends; the first failure stops the rest.
fn collect(
    rx: &Receiver<Report>,
    chefs: usize,
    role: Role,
    stops: &Stops,
) -> (ChefReport, DinersReport, Option<KitchenError>) {
    let mut made = ChefReport::default();
    let mut ate = DinersReport::default();
    let mut first_error: Option<KitchenError> = None;
    let mut chefs_left = chefs;
    if chefs_left == 0 && role != Role::Diner {
        stops.chefs_done.stop();
    }
    let mut fail = |e: KitchenError| {
        stops.fail();
        first_error.get_or_insert(e);
    };
    for report in rx.iter() {
        match report {
            Report::Chef(r, failure) => {
                chefs_left -= 1;
                if chefs_left == 0 {
                    stops.chefs_done.stop();
                }
                made.made += r.made;
                made.lost += r.lost;
                made.max_depth = made.max_depth.max(r.max_depth);
                if let Some(e) = failure {
                    fail(e.into());
                }
            }
            Report::Diner(t, failure) => {
                ate.eaten += t.eaten;
                ate.failed += t.failed;
                ate.retried += t.retried;
                ate.held += t.held;
                ate.lost += t.lost;
                ate.rejected += t.rejected;
                ate.max_depth = ate.max_depth.max(t.max_depth);
                ate.latency.merge(&t.latency);
                if let Some(e) = failure {
                    fail(e);
                }
            }
            Report::Panicked(name) => fail(KitchenError::Panicked(name)),
        }
    }
    (made, ate, first_error)
}

/// Waits for every thread; each has already reported (or its reporter has
/// reported its panic), so these joins end at once.
fn join_all(handles: Vec<JoinHandle<()>>, watcher: JoinHandle<()>, status: Option<JoinHandle<()>>) {
    for h in handles.into_iter().chain([watcher]).chain(status) {
        let _ = h.join();
    }
}

fn summarize(
    config: &KitchenConfig,
    backend: &Backend,
    made: &ChefReport,
    ate: &DinersReport,
    elapsed: Duration,
    (left, waiting): (Option<u64>, Option<u64>),
) -> Summary {
    let (chefs, diners) = match config.role {
        Role::Run => (config.chefs, config.diners),
        Role::Chef => (config.chefs, 0),
        Role::Diner => (0, config.diners),
    };
    let secs = elapsed.as_secs_f64().max(1e-9);
    let moved = if config.role == Role::Chef {
        made.made
    } else {
        ate.eaten
    };
    Summary {
        role: config.role,
        backend: config.backend.name(),
        mode: config.backend.mode(),
        chefs,
        diners,
        capacity: backend.shown_capacity(config.capacity),
        made: made.made,
        eaten: ate.eaten,
        failed: ate.failed,
        retried: ate.retried,
        left,
        waiting,
        // Published to nobody (chefs), or shown missing by a diner.
        lost: made.lost + ate.lost,
        rejected: ate.rejected,
        max_depth: made.max_depth.max(ate.max_depth),
        elapsed_s: secs,
        dishes_per_s: moved as f64 / secs,
        latency_us: ate.latency.latency(),
    }
}

fn spawn<F: FnOnce() + Send + 'static>(name: &str, f: F) -> Result<JoinHandle<()>, KitchenError> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map_err(|error| KitchenError::Spawn {
            thread: name.to_owned(),
            error,
        })
}
