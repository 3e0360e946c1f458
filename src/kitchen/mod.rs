//! The kitchen: chefs and diners on threads around a queue, and the run's summary.
//!
//! [`run`] is the whole of `kitchen run`, `kitchen chef` and `kitchen diner`:
//! it opens the backend, starts the threads, watches for the stop, drains,
//! and returns a [`Summary`]. It never prints the summary itself; the caller
//! decides where it goes.

mod chef;
mod diner;
pub mod output;
pub mod stats;
mod status;
pub mod summary;

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, never, select};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::queue::{Backend, BackendConfig, Capacity, QueueError};
use crate::results::Recorder;
#[cfg(feature = "redis")]
use crate::results::RedisResults;
use crate::shutdown::Shutdown;
use chef::{Chef, ChefReport};
pub(crate) use chef::{IdBlock, random_nap};
use diner::{Diner, DinerReport};
pub use output::Printer;
use stats::{LatencyHistogram, LiveCounters, Tickets};
pub use summary::Summary;

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
}

impl Default for KitchenConfig {
    /// The tutorial's kitchen: capacity 10, 3 chefs, 2 diners, naps below 1 s.
    fn default() -> Self {
        KitchenConfig {
            role: Role::Run,
            backend: BackendConfig::Local,
            capacity: Capacity::Bounded(10),
            chefs: 3,
            diners: 2,
            dishes: None,
            duration: None,
            max_sleep: Duration::from_secs(1),
            seed: None,
            quiet: false,
            ids: false,
        }
    }
}

/// What stops a run from finishing.
#[derive(Debug, thiserror::Error)]
pub enum KitchenError {
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The operating system refused a thread.
    #[error("cannot start a thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// A chef or diner thread panicked: a bug in kitchen.
    #[error("{0} stopped unexpectedly (a bug in kitchen; please report it)")]
    Panicked(String),
}

enum Report {
    Chef(Result<ChefReport, QueueError>),
    Diner(Result<DinerReport, QueueError>),
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

/// In quiet full-speed local runs, one dish in this many carries its time
/// made (a power of two, so choosing is a mask, not a division per dish).
pub const STAMP_EVERY: u64 = 16;
const _: () = assert!(STAMP_EVERY.is_power_of_two());

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

/// Runs the kitchen until its dishes are made, its time is up or `shutdown`.
///
/// Stopping means the chefs stop; in [`Role::Run`] the diners then eat what
/// is queued, in [`Role::Diner`] they finish the dish in hand. Per-dish lines
/// go to `printer`.
pub fn run(
    config: &KitchenConfig,
    shutdown: &Shutdown,
    printer: Printer,
) -> Result<Summary, KitchenError> {
    let chefs = if config.role == Role::Diner {
        0
    } else {
        config.chefs
    };
    let diners = if config.role == Role::Chef {
        0
    } else {
        config.diners
    };
    // A quiet full-speed run samples its figures (one dish in STAMP_EVERY
    // carries its time made; the local queue reads its depth as rarely):
    // reading the clock and crossbeam's length on every dish would cost the
    // local queue more than moving the dish, and a systematic sample of
    // millions tells the same percentiles. Runs that print or nap measure
    // every dish; so do Redis runs, whose round trips dwarf a clock read.
    let sampled = config.quiet && config.max_sleep.is_zero();
    let mut backend = Backend::open(&config.backend, config.capacity)?;
    if sampled {
        backend.relax_depth();
    }
    let producers = (0..chefs)
        .map(|_| backend.producer())
        .collect::<Result<Vec<_>, _>>()?;
    let consumers = (0..diners)
        .map(|_| backend.consumer())
        .collect::<Result<Vec<_>, _>>()?;
    // From here, the queue closes once these producers are dropped.
    backend.seal();
    let mut gauge = backend.gauge();

    // Internal tokens, so the caller's `shutdown` is only ever read.
    let stop_chefs = Shutdown::new();
    let finished = Shutdown::new();
    let abort = Shutdown::new();
    let run_done = Shutdown::new();
    let diner_quit = if config.role == Role::Diner {
        stop_chefs.clone()
    } else {
        abort.clone()
    };
    let made_live = Arc::new(LiveCounters::new(chefs));
    let eaten_live = Arc::new(LiveCounters::new(diners));
    let tickets = Arc::new(Tickets::new(config.dishes));
    // Claiming one ticket at a time lets napping chefs share the work evenly;
    // at full speed, batches keep them off one contended counter.
    let batch = if config.max_sleep.is_zero() { 64 } else { 1 };
    let stamp_mask = if sampled && config.backend == BackendConfig::Local {
        STAMP_EVERY - 1
    } else {
        0
    };

    let started = Instant::now();
    let watcher = spawn("watcher", {
        let (shutdown, stop_chefs, run_done) =
            (shutdown.clone(), stop_chefs.clone(), run_done.clone());
        let duration = config.duration;
        move || {
            let timeout = duration.map_or_else(never, crossbeam_channel::after);
            select! {
                recv(shutdown.receiver()) -> _ => { stop_chefs.stop(); }
                recv(timeout) -> _ => { stop_chefs.stop(); }
                recv(run_done.receiver()) -> _ => {}
            }
        }
    })?;
    let status = if status::wanted(config.quiet) {
        Some(
            status::spawn(
                made_live.clone(),
                eaten_live.clone(),
                backend.gauge(),
                run_done.clone(),
            )
            .map_err(KitchenError::Spawn)?,
        )
    } else {
        None
    };
    let printer = if config.quiet {
        Printer::quiet()
    } else {
        printer
    };

    let (tx, rx) = crossbeam_channel::unbounded();
    let mut handles = Vec::new();
    // Diners first, and chefs only once every diner is ready (subscribed, in
    // pub/sub mode), so that no dish of this run is published to nobody.
    let (ready_tx, ready_rx) = crossbeam_channel::bounded::<()>(diners);
    for (i, consumer) in consumers.into_iter().enumerate() {
        let reporter = Reporter {
            name: format!("diner-{}", i + 1),
            tx: Some(tx.clone()),
        };
        let diner = Diner {
            slot: i,
            number: i as u32 + 1,
            consumer,
            quit: diner_quit.clone(),
            finished: finished.clone(),
            ready: Some(ready_tx.clone()),
            max_sleep: config.max_sleep,
            rng: rng_for(config.seed, DINER_SALT, i),
            printer: printer.clone(),
            ids: config.ids,
            print_stop: stop_chefs.clone(),
            live: eaten_live.clone(),
            results: recorder(&config.backend, i)?,
        };
        let name = reporter.name.clone();
        handles.push(spawn(&name, move || {
            reporter.send(Report::Diner(diner.eat()))
        })?);
    }
    drop(ready_tx);
    // A diner that fails before it is ready drops its sender without sending.
    let all_ready = (0..diners).all(|_| ready_rx.recv().is_ok());
    let chefs_started = if all_ready { chefs } else { 0 };
    for (i, producer) in producers.into_iter().take(chefs_started).enumerate() {
        let reporter = Reporter {
            name: format!("chef-{}", i + 1),
            tx: Some(tx.clone()),
        };
        let chef = Chef {
            stamp_mask,
            slot: i,
            number: i as u32 + 1,
            producer,
            stop: stop_chefs.clone(),
            tickets: tickets.clone(),
            batch,
            max_sleep: config.max_sleep,
            rng: rng_for(config.seed, CHEF_SALT, i),
            printer: printer.clone(),
            ids: config.ids,
            live: made_live.clone(),
        };
        let name = reporter.name.clone();
        handles.push(spawn(&name, move || {
            reporter.send(Report::Chef(chef.cook()))
        })?);
    }
    drop(tx);

    let mut made = ChefReport::default();
    let mut ate = DinerReport::default();
    let mut first_error: Option<KitchenError> = None;
    let mut chefs_left = chefs_started;
    if chefs_left == 0 && config.role != Role::Diner {
        finished.stop();
    }
    let fail = |e: KitchenError, first_error: &mut Option<KitchenError>| {
        stop_chefs.stop();
        abort.stop();
        finished.stop();
        first_error.get_or_insert(e);
    };
    for report in rx.iter() {
        match report {
            Report::Chef(r) => {
                chefs_left -= 1;
                if chefs_left == 0 {
                    finished.stop();
                }
                match r {
                    Ok(r) => {
                        made.made += r.made;
                        made.lost += r.lost;
                        made.max_depth = made.max_depth.max(r.max_depth);
                    }
                    Err(e) => fail(e.into(), &mut first_error),
                }
            }
            Report::Diner(Ok(r)) => {
                ate.eaten += r.eaten;
                ate.lost += r.lost;
                ate.rejected += r.rejected;
                ate.max_depth = ate.max_depth.max(r.max_depth);
                ate.latency.merge(&r.latency);
            }
            Report::Diner(Err(e)) => fail(e.into(), &mut first_error),
            Report::Panicked(name) => fail(KitchenError::Panicked(name), &mut first_error),
        }
    }
    let elapsed = started.elapsed();
    run_done.stop();
    for h in handles {
        let _ = h.join();
    }
    let _ = watcher.join();
    if let Some(s) = status {
        let _ = s.join();
    }
    if let Some(e) = first_error {
        return Err(e);
    }

    let left = gauge.depth()? as u64;
    let secs = elapsed.as_secs_f64().max(1e-9);
    let moved = if config.role == Role::Chef {
        made.made
    } else {
        ate.eaten
    };
    Ok(Summary {
        backend: config.backend.name(),
        mode: config.backend.mode(),
        chefs,
        diners,
        // A channel holds nothing, so a bound means nothing there.
        capacity: if config.backend.mode() == Some(crate::queue::Mode::Pubsub) {
            None
        } else {
            config.capacity.limit()
        },
        made: made.made,
        eaten: ate.eaten,
        left,
        // Published to nobody (chefs), or shown missing by a diner.
        lost: made.lost + ate.lost,
        rejected: ate.rejected,
        max_depth: made.max_depth.max(ate.max_depth),
        elapsed_s: secs,
        dishes_per_s: moved as f64 / secs,
        latency_us: merged_latency(&ate.latency),
    })
}

fn merged_latency(h: &LatencyHistogram) -> stats::Latency {
    h.latency()
}

/// Where diner `i` records the results of tracked dishes: in Redis, where
/// any `kitchen serve` can read them, under a name unique to this process.
fn recorder(backend: &BackendConfig, i: usize) -> Result<Option<(Recorder, String)>, QueueError> {
    match backend {
        BackendConfig::Local => Ok(None),
        #[cfg(feature = "redis")]
        BackendConfig::Redis(o) => Ok(Some((
            Recorder::Redis(Box::new(RedisResults::new(o)?)),
            format!("diner-{}@{}", i + 1, std::process::id()),
        ))),
        #[cfg(not(feature = "redis"))]
        BackendConfig::Redis(_) => {
            let _ = i;
            Err(QueueError::RedisNotCompiled)
        }
    }
}

fn spawn<F: FnOnce() + Send + 'static>(name: &str, f: F) -> Result<JoinHandle<()>, KitchenError> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map_err(KitchenError::Spawn)
}
