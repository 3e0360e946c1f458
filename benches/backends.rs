//! Every in-process queue design on the same scenarios, beside its ceiling.
//!
//! Scenarios are named as crossbeam-channel names them: `spsc` (1 chef,
//! 1 diner), `mpsc` (3, 1), `mpmc` (3, 2: the kitchen), each at capacity 10
//! and 1024, no naps. Backends:
//!
//! - `kitchen`: `kitchen run --quiet --max-sleep-ms 0` itself (crossbeam inside);
//! - `crossbeam`, `std_sync_channel`, `mutex_condvar` (a `parking_lot` Mutex +
//!   Condvar around a `VecDeque`, which is how Python's `queue.Queue` works),
//!   all driven by one harness loop that does the kitchen's work per dish
//!   (timestamp, latency histogram, duplicate check);
//! - `ceiling`: a bare crossbeam loop moving integers, nothing else;
//! - with the `redis` feature, against a redis-server this bench starts (the
//!   test harness, reused): `redis_list` (reliable: processing lists and
//!   acknowledgements), `redis_list_batch` (`--batch 16`), `redis_stream`
//!   (one consumer group: XREADGROUP, XACK), `redis_stream_batch`
//!   (`--batch 16`), `redis_pubsub`; and beside them `redis-benchmark` on
//!   the same server (`lpush`, one client per chef, plain and pipelined
//!   `-P 16`) as their ceiling.
//!
//! With the `redis` feature, a `fanout` scenario too: 3 chefs and every
//! dish to two readers, two pub/sub subscribers beside two consumer groups
//! of one diner each (durable fan-out), one dish per round trip and
//! `--batch 16`; its figure is deliveries per second.
//!
//! Criterion measures throughput; then three accounting runs per scenario
//! and backend print dishes/s as the median with the spread (min–max), the
//! median run's p50/p99 latency, made/eaten, and the most lost/duplicated
//! any run saw, as Markdown tables (the `redis-benchmark` ceilings: three
//! runs each, the same way), and writes them with an SVG chart to
//! `target/kitchen-bench/`.
//!
//! Run: `cargo bench --bench backends` (`-- --quick` for a fast look;
//! `-- stream` measures and reports only the designs whose id contains
//! `stream`).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kitchen::kitchen::stats::LatencyHistogram;
use kitchen::queue::Capacity;
use kitchen::{KitchenConfig, Printer, Shutdown};
use parking_lot::{Condvar, Mutex};

/// Dishes per criterion iteration.
const DISHES: u64 = 100_000;
/// An accounting pass moves this many times an iteration's dishes.
const REPORT_FACTOR: u64 = 3;

const SCENARIOS: [(&str, usize, usize); 3] = [("spsc", 1, 1), ("mpsc", 3, 1), ("mpmc", 3, 2)];
const CAPACITIES: [usize; 2] = [10, 1024];

#[cfg(feature = "redis")]
#[path = "../tests/support/redis_server.rs"]
mod redis_server;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
enum Design {
    Ceiling,
    Kitchen,
    Crossbeam,
    StdSyncChannel,
    MutexCondvar,
    RedisList,
    RedisListBatch,
    RedisStream,
    RedisStreamBatch,
    RedisPubsub,
}

const LOCAL_DESIGNS: [Design; 5] = [
    Design::Ceiling,
    Design::Kitchen,
    Design::Crossbeam,
    Design::StdSyncChannel,
    Design::MutexCondvar,
];

#[cfg(feature = "redis")]
const REDIS_DESIGNS: [Design; 5] = [
    Design::RedisList,
    Design::RedisListBatch,
    Design::RedisStream,
    Design::RedisStreamBatch,
    Design::RedisPubsub,
];
#[cfg(not(feature = "redis"))]
const REDIS_DESIGNS: [Design; 0] = [];

/// Dishes per `--batch` round trip in the batched Redis design.
#[cfg(feature = "redis")]
const REDIS_BATCH: usize = 16;

impl Design {
    fn name(self) -> &'static str {
        match self {
            Design::Ceiling => "ceiling (bare crossbeam)",
            Design::Kitchen => "kitchen (local)",
            Design::Crossbeam => "crossbeam",
            Design::StdSyncChannel => "std sync_channel",
            Design::MutexCondvar => "Mutex+Condvar",
            Design::RedisList => "redis list",
            Design::RedisListBatch => "redis list --batch 16",
            Design::RedisStream => "redis stream",
            Design::RedisStreamBatch => "redis stream --batch 16",
            Design::RedisPubsub => "redis pubsub",
        }
    }

    /// Dishes per criterion iteration: Redis moves tens of thousands a
    /// second, not millions.
    fn dishes(self) -> u64 {
        match self {
            Design::RedisList | Design::RedisStream => 2_000,
            Design::RedisListBatch | Design::RedisStreamBatch | Design::RedisPubsub => 10_000,
            // A few hundred thousand a second at worst: keep an iteration short.
            Design::StdSyncChannel | Design::MutexCondvar => 20_000,
            _ => DISHES,
        }
    }

    fn id(self) -> &'static str {
        match self {
            Design::Ceiling => "ceiling",
            Design::Kitchen => "kitchen",
            Design::Crossbeam => "crossbeam",
            Design::StdSyncChannel => "std_sync_channel",
            Design::MutexCondvar => "mutex_condvar",
            Design::RedisList => "redis_list",
            Design::RedisListBatch => "redis_list_batch16",
            Design::RedisStream => "redis_stream",
            Design::RedisStreamBatch => "redis_stream_batch16",
            Design::RedisPubsub => "redis_pubsub",
        }
    }
}

/// What one run moved, and how.
#[derive(Debug, Default)]
struct Outcome {
    elapsed: Duration,
    made: u64,
    eaten: u64,
    lost: u64,
    duplicated: u64,
    p50_us: u64,
    p99_us: u64,
}

/// A dish as the harness moves it: its id and when it was made.
#[derive(Clone, Copy)]
struct Item {
    id: u64,
    made: Instant,
}

/// Python's `queue.Queue`: a lock, two condition variables, a deque.
struct CondvarQueue {
    state: Mutex<(VecDeque<Item>, usize)>, // items, producers still open
    not_empty: Condvar,
    not_full: Condvar,
    cap: usize,
}

impl CondvarQueue {
    fn send(&self, item: Item) {
        let mut s = self.state.lock();
        while s.0.len() >= self.cap {
            self.not_full.wait(&mut s);
        }
        s.0.push_back(item);
        self.not_empty.notify_one();
    }

    fn recv(&self) -> Option<Item> {
        let mut s = self.state.lock();
        loop {
            if let Some(item) = s.0.pop_front() {
                self.not_full.notify_one();
                return Some(item);
            }
            if s.1 == 0 {
                return None;
            }
            self.not_empty.wait(&mut s);
        }
    }

    fn close_one(&self) {
        let mut s = self.state.lock();
        s.1 -= 1;
        if s.1 == 0 {
            self.not_empty.notify_all();
        }
    }
}

/// One producer's and one consumer's ends, whatever the design.
enum Tx {
    Crossbeam(crossbeam_channel::Sender<Item>),
    Std(mpsc::SyncSender<Item>),
    Condvar(Arc<CondvarQueue>),
}

enum Rx {
    Crossbeam(crossbeam_channel::Receiver<Item>),
    // std's receiver is single-consumer: several diners share it behind a lock.
    Std(Arc<Mutex<mpsc::Receiver<Item>>>),
    Condvar(Arc<CondvarQueue>),
}

impl Tx {
    fn send(&self, item: Item) {
        match self {
            Tx::Crossbeam(t) => {
                let _ = t.send(item);
            }
            Tx::Std(t) => {
                let _ = t.send(item);
            }
            Tx::Condvar(q) => q.send(item),
        }
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if let Tx::Condvar(q) = self {
            q.close_one();
        }
    }
}

impl Rx {
    fn recv(&self) -> Option<Item> {
        match self {
            Rx::Crossbeam(r) => r.recv().ok(),
            Rx::Std(r) => r.lock().recv().ok(),
            Rx::Condvar(q) => q.recv(),
        }
    }
}

fn ends(design: Design, p: usize, c: usize, cap: usize) -> (Vec<Tx>, Vec<Rx>) {
    match design {
        Design::StdSyncChannel => {
            let (tx, rx) = mpsc::sync_channel(cap);
            let rx = Arc::new(Mutex::new(rx));
            (
                (0..p).map(|_| Tx::Std(tx.clone())).collect(),
                (0..c).map(|_| Rx::Std(rx.clone())).collect(),
            )
        }
        Design::MutexCondvar => {
            let q = Arc::new(CondvarQueue {
                state: Mutex::new((VecDeque::with_capacity(cap), p)),
                not_empty: Condvar::new(),
                not_full: Condvar::new(),
                cap,
            });
            (
                (0..p).map(|_| Tx::Condvar(q.clone())).collect(),
                (0..c).map(|_| Rx::Condvar(q.clone())).collect(),
            )
        }
        _ => {
            let (tx, rx) = crossbeam_channel::bounded(cap);
            (
                (0..p).map(|_| Tx::Crossbeam(tx.clone())).collect(),
                (0..c).map(|_| Rx::Crossbeam(rx.clone())).collect(),
            )
        }
    }
}

/// Where the Redis designs run: one server for the whole bench.
struct Env {
    #[cfg(feature = "redis")]
    redis: redis_server::RedisServer,
}

impl Env {
    fn start() -> Env {
        Env {
            #[cfg(feature = "redis")]
            redis: redis_server::RedisServer::start(),
        }
    }
}

/// Moves `n` dishes through `design` with `p` chefs and `c` diners.
fn run(env: &Env, design: Design, p: usize, c: usize, cap: usize, n: u64) -> Outcome {
    let _ = env;
    match design {
        Design::Ceiling => ceiling(p, c, cap, n),
        Design::Kitchen => kitchen_run(KitchenConfig::default(), p, c, cap, n),
        #[cfg(feature = "redis")]
        Design::RedisList
        | Design::RedisListBatch
        | Design::RedisStream
        | Design::RedisStreamBatch
        | Design::RedisPubsub => {
            use kitchen::queue::{BackendConfig, Mode, RedisOptions};
            let mode = match design {
                Design::RedisPubsub => Mode::Pubsub,
                Design::RedisStream | Design::RedisStreamBatch => Mode::Stream,
                _ => Mode::List,
            };
            let batch = match design {
                Design::RedisListBatch | Design::RedisStreamBatch => REDIS_BATCH,
                _ => 1,
            };
            let base = KitchenConfig {
                backend: BackendConfig::Redis(RedisOptions {
                    batch,
                    ..RedisOptions::new(env.redis.url(), mode)
                }),
                ..KitchenConfig::default()
            };
            kitchen_run(base, p, c, cap, n)
        }
        _ => harness(design, p, c, cap, n),
    }
}

fn harness(design: Design, p: usize, c: usize, cap: usize, n: u64) -> Outcome {
    let (txs, rxs) = ends(design, p, c, cap);
    let start = Instant::now();
    let results = thread::scope(|s| {
        for (i, tx) in txs.into_iter().enumerate() {
            s.spawn(move || {
                let mut id = i as u64;
                while id < n {
                    tx.send(Item {
                        id,
                        made: Instant::now(),
                    });
                    id += p as u64;
                }
            });
        }
        let diners: Vec<_> = rxs
            .into_iter()
            .map(|rx| {
                s.spawn(move || {
                    let mut seen = vec![0u64; (n as usize).div_ceil(64)];
                    let mut hist = LatencyHistogram::new();
                    let mut dup = 0;
                    while let Some(item) = rx.recv() {
                        hist.record(item.made.elapsed().as_micros() as u64);
                        let (w, b) = ((item.id / 64) as usize, item.id % 64);
                        if seen[w] & (1 << b) != 0 {
                            dup += 1;
                        }
                        seen[w] |= 1 << b;
                    }
                    (seen, hist, dup)
                })
            })
            .collect();
        diners
            .into_iter()
            .map(|h| h.join().expect("diner"))
            .collect::<Vec<_>>()
    });
    let elapsed = start.elapsed();
    let mut seen = vec![0u64; (n as usize).div_ceil(64)];
    let mut hist = LatencyHistogram::new();
    let mut out = Outcome {
        elapsed,
        made: n,
        ..Outcome::default()
    };
    for (s, h, dup) in results {
        out.duplicated += dup;
        for (w, x) in seen.iter_mut().zip(&s) {
            // A dish two diners both ate is a duplicate too.
            out.duplicated += u64::from((*w & x).count_ones());
            *w |= x;
        }
        hist.merge(&h);
    }
    out.eaten = hist.len();
    out.lost = n - seen.iter().map(|w| u64::from(w.count_ones())).sum::<u64>();
    let l = hist.latency();
    (out.p50_us, out.p99_us) = (l.p50, l.p99);
    out
}

/// The ceiling: integers through a bare crossbeam channel, nothing else.
fn ceiling(p: usize, c: usize, cap: usize, n: u64) -> Outcome {
    let (tx, rx) = crossbeam_channel::bounded::<u64>(cap);
    let start = Instant::now();
    let eaten: u64 = thread::scope(|s| {
        for i in 0..p as u64 {
            let tx = tx.clone();
            s.spawn(move || {
                let mut k = i;
                while k < n {
                    let _ = tx.send(k);
                    k += p as u64;
                }
            });
        }
        drop(tx);
        let hs: Vec<_> = (0..c)
            .map(|_| {
                let rx = rx.clone();
                s.spawn(move || {
                    rx.iter()
                        .map(|v| {
                            black_box(v);
                            1
                        })
                        .sum::<u64>()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("consumer")).sum()
    });
    Outcome {
        elapsed: start.elapsed(),
        made: n,
        eaten,
        lost: n.saturating_sub(eaten),
        ..Outcome::default()
    }
}

fn kitchen_run(base: KitchenConfig, p: usize, c: usize, cap: usize, n: u64) -> Outcome {
    let config = KitchenConfig {
        chefs: p,
        diners: c,
        capacity: Capacity::Bounded(cap),
        dishes: Some(n),
        max_sleep: Duration::ZERO,
        quiet: true,
        ..base
    };
    let pubsub = config.backend.mode() == Some(kitchen::queue::Mode::Pubsub);
    let start = Instant::now();
    let s = kitchen::kitchen::run(&config, &Shutdown::new(), Printer::quiet())
        .unwrap_or_else(|e| panic!("kitchen run failed: {e}"));
    // A queue hands each dish to one diner; pub/sub to every diner.
    let owed = if pubsub {
        (s.made - s.lost) * c as u64
    } else {
        s.made
    };
    Outcome {
        elapsed: start.elapsed(),
        made: s.made,
        eaten: s.eaten,
        lost: owed.saturating_sub(s.eaten + s.left.unwrap_or(0)) + s.lost,
        duplicated: s.eaten.saturating_sub(owed),
        p50_us: s.latency_us.p50,
        p99_us: s.latency_us.p99,
    }
}

fn designs() -> impl Iterator<Item = Design> {
    LOCAL_DESIGNS
        .into_iter()
        .chain(REDIS_DESIGNS)
        .filter(|d| wanted(d.id()))
}

/// The filter given on the command line (`cargo bench --bench backends --
/// stream`): criterion applies it to what it measures, and the report
/// passes apply it to what they run, so a filtered run stays short.
fn filter() -> Option<String> {
    std::env::args().skip(1).find(|a| !a.starts_with('-'))
}

fn wanted(id: &str) -> bool {
    filter().is_none_or(|f| id.contains(&f))
}

fn throughput(c: &mut Criterion) {
    let env = Env::start();
    for (scenario, p, d) in SCENARIOS {
        for cap in CAPACITIES {
            let mut g = c.benchmark_group(format!("{scenario}_cap{cap}"));
            g.sample_size(10);
            g.warm_up_time(Duration::from_millis(300));
            g.measurement_time(Duration::from_secs(1));
            for design in designs() {
                let n = design.dishes();
                g.throughput(Throughput::Elements(n));
                g.bench_function(BenchmarkId::from_parameter(design.id()), |b| {
                    b.iter(|| run(&env, design, p, d, cap, n))
                });
            }
            g.finish();
        }
    }
}

/// One pass per scenario and backend for what criterion does not show.
fn report(_: &mut Criterion) {
    let env = Env::start();
    let mut md = String::new();
    let mut bars = Vec::new();
    for (scenario, p, d) in SCENARIOS {
        for cap in CAPACITIES {
            let _ = writeln!(
                md,
                "\n### `{scenario}` ({p} chef{}, {d} diner{}), capacity {cap}\n",
                if p == 1 { "" } else { "s" },
                if d == 1 { "" } else { "s" }
            );
            md.push_str(
                "| backend | dishes/s | p50 µs | p99 µs | made | eaten | lost | duplicated |\n",
            );
            md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
            for design in designs() {
                let n = design.dishes() * REPORT_FACTOR;
                let (o, rate, spread) = median_of_three(|| run(&env, design, p, d, cap, n));
                let latency = if design == Design::Ceiling {
                    ("–".to_owned(), "–".to_owned())
                } else {
                    (o.p50_us.to_string(), o.p99_us.to_string())
                };
                let flag = if o.lost > 0 || o.duplicated > 0 {
                    " ⚠"
                } else {
                    ""
                };
                let _ = writeln!(
                    md,
                    "| {}{flag} | {spread} | {} | {} | {} | {} | {} | {} |",
                    design.name(),
                    latency.0,
                    latency.1,
                    o.made,
                    o.eaten,
                    o.lost,
                    o.duplicated
                );
                bars.push((format!("{scenario} cap {cap}"), design.name(), rate));
            }
            #[cfg(feature = "redis")]
            for (name, rate, spread) in redis_ceilings(&env, p)
                .into_iter()
                .filter(|_| wanted("redis"))
            {
                let _ = writeln!(md, "| {name} | {spread} | – | – | – | – | – | – |");
                bars.push((format!("{scenario} cap {cap}"), name, rate));
            }
        }
    }
    #[cfg(feature = "redis")]
    fanout_report(&env, &mut md, &mut bars);
    println!("{md}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/kitchen-bench");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("backends.md"), &md);
    let _ = std::fs::write(dir.join("backends.svg"), chart(&bars));
    println!("wrote {}", dir.join("backends.{md,svg}").display());
}

/// `redis-benchmark -t lpush` on the bench's server, one client per chef,
/// without and with pipelining: what Redis itself allows on this machine.
#[cfg(feature = "redis")]
fn redis_ceilings(env: &Env, chefs: usize) -> Vec<(&'static str, f64, String)> {
    let port = env.redis.port().to_string();
    let clients = chefs.to_string();
    let mut out = Vec::new();
    for (name, pipeline) in [
        ("ceiling: redis-benchmark lpush", "1"),
        ("ceiling: redis-benchmark lpush -P 16", "16"),
    ] {
        let rates: Option<Vec<f64>> = (0..3)
            .map(|_| lpush_rate(&port, &clients, pipeline))
            .collect();
        match rates {
            Some(mut r) => {
                r.sort_by(f64::total_cmp);
                out.push((name, r[1], spread_of(r[1], r[0], r[2])));
            }
            None => {
                eprintln!("redis-benchmark did not run; install redis-tools for the Redis ceilings")
            }
        }
    }
    out
}

/// One `redis-benchmark -t lpush` run: its requests per second.
#[cfg(feature = "redis")]
fn lpush_rate(port: &str, clients: &str, pipeline: &str) -> Option<f64> {
    let o = std::process::Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", port, "-t", "lpush", "-n", "100000"])
        .args(["-c", clients, "-P", pipeline, "-q", "--csv"])
        .output()
        .ok()?;
    // "test","rps",…  then  "LPUSH","123456.78",…
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.to_ascii_uppercase().contains("LPUSH"))?
        .to_owned();
    line.split(',')
        .nth(1)?
        .trim_matches('"')
        .parse::<f64>()
        .ok()
}

/// Three runs of one row: the median run by rate (its latencies go in the
/// table), its rate, and "median (min–max)". Lost and duplicated are the
/// most any run saw, so a loss in one run is never hidden by the others.
fn median_of_three(mut run: impl FnMut() -> Outcome) -> (Outcome, f64, String) {
    let rate = |o: &Outcome| o.eaten as f64 / o.elapsed.as_secs_f64().max(1e-9);
    let mut runs: Vec<Outcome> = (0..3).map(|_| run()).collect();
    runs.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
    let (lost, duplicated) = runs
        .iter()
        .fold((0, 0), |(l, d), o| (l.max(o.lost), d.max(o.duplicated)));
    let (lo, hi) = (rate(&runs[0]), rate(&runs[2]));
    let mut mid = runs.swap_remove(1);
    let r = rate(&mid);
    mid.lost = lost;
    mid.duplicated = duplicated;
    (mid, r, spread_of(r, lo, hi))
}

/// "median (min–max)", each as `human_rate` writes it.
fn spread_of(median: f64, lo: f64, hi: f64) -> String {
    use kitchen::kitchen::summary::human_rate;
    format!(
        "{} ({}–{})",
        human_rate(median),
        human_rate(lo),
        human_rate(hi)
    )
}

/// A grouped horizontal bar chart of throughput on a log scale (Redis and
/// in-process rates differ a thousandfold), one colour per backend.
fn chart(bars: &[(String, &str, f64)]) -> String {
    let (row, label_w, plot_w) = (16.0, 250.0, 560.0);
    let (lo, hi) = (3.0_f64, 8.0_f64); // 1 k to 100 M dishes/s
    let x = |rate: f64| label_w + (rate.max(1.0).log10().clamp(lo, hi) - lo) / (hi - lo) * plot_w;
    let mut groups: Vec<&str> = Vec::new();
    for b in bars {
        if !groups.contains(&b.0.as_str()) {
            groups.push(&b.0);
        }
    }
    let per_group = bars.len() / groups.len().max(1);
    let height = 70.0 + groups.len() as f64 * ((per_group as f64 + 1.5) * row);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="14" font-weight="bold">Dishes per second by backend (log scale; longer is faster)</text>
"#,
        w = label_w + plot_w + 80.0
    );
    for (i, tick) in ["1 k", "10 k", "100 k", "1 M", "10 M", "100 M"]
        .iter()
        .enumerate()
    {
        let gx = x(10f64.powi(i as i32 + 3));
        let _ = writeln!(
            svg,
            r##"<line x1="{gx:.1}" y1="40" x2="{gx:.1}" y2="{y2}" stroke="#ddd"/><text x="{gx:.1}" y="36" text-anchor="middle" fill="#555">{tick}/s</text>"##,
            y2 = height - 10.0
        );
    }
    let mut y = 50.0;
    for g in &groups {
        let _ = writeln!(
            svg,
            r#"<text x="10" y="{}" font-weight="bold">{g}</text>"#,
            y + 11.0
        );
        y += row;
        for b in bars.iter().filter(|b| &b.0 == g) {
            let w = (x(b.2) - label_w).max(1.0);
            let _ = writeln!(
                svg,
                r#"<text x="20" y="{ty}">{name}</text><rect x="{label_w}" y="{y}" width="{w:.1}" height="{h}" fill="{c}"/><text x="{tx:.1}" y="{ty}">{rate}/s</text>"#,
                ty = y + 11.0,
                name = b.1,
                h = row - 3.0,
                c = colour(b.1),
                tx = label_w + w + 4.0,
                rate = kitchen::kitchen::summary::human_rate(b.2),
            );
            y += row;
        }
        y += row / 2.0;
    }
    svg.push_str("</svg>\n");
    svg
}

/// The same colour for a backend in every group; ceilings in grey.
fn colour(name: &str) -> &'static str {
    match name {
        n if n.starts_with("ceiling") => "#9a9a9a",
        n if n.starts_with("kitchen") => "#d62728",
        "crossbeam" => "#1f77b4",
        "std sync_channel" => "#2ca02c",
        "Mutex+Condvar" => "#ff7f0e",
        "redis list" => "#9467bd",
        n if n.starts_with("redis list") => "#8c564b",
        n if n.starts_with("redis stream") => "#17becf",
        _ => "#e377c2",
    }
}

/// One way to give every dish to two readers.
#[cfg(feature = "redis")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fanout {
    /// Two subscribers of one channel: at most once, nothing kept.
    Pubsub { batch: usize },
    /// Two consumer groups of one diner each: at least once, kept until
    /// both have acknowledged.
    Stream { batch: usize },
}

#[cfg(feature = "redis")]
const FANOUTS: [Fanout; 4] = [
    Fanout::Pubsub { batch: 1 },
    Fanout::Stream { batch: 1 },
    Fanout::Pubsub { batch: REDIS_BATCH },
    Fanout::Stream { batch: REDIS_BATCH },
];

/// Chefs of the fan-out scenario.
#[cfg(feature = "redis")]
const FANOUT_CHEFS: usize = 3;
/// The stream's bound in the fan-out scenario: both groups keep up, so
/// this only caps a burst.
#[cfg(feature = "redis")]
const FANOUT_CAPACITY: usize = 1024;

#[cfg(feature = "redis")]
impl Fanout {
    fn name(self) -> String {
        match self {
            Fanout::Pubsub { batch: 1 } => "redis pubsub, 2 subscribers".into(),
            Fanout::Stream { batch: 1 } => "redis stream, 2 groups".into(),
            Fanout::Pubsub { batch } => format!("redis pubsub, 2 subscribers, --batch {batch}"),
            Fanout::Stream { batch } => format!("redis stream, 2 groups, --batch {batch}"),
        }
    }

    fn id(self) -> String {
        match self {
            Fanout::Pubsub { batch } => format!("redis_pubsub_2subs_batch{batch}"),
            Fanout::Stream { batch } => format!("redis_stream_2groups_batch{batch}"),
        }
    }

    /// Dishes per criterion iteration (each delivered twice).
    fn dishes(self) -> u64 {
        match self {
            Fanout::Pubsub { batch: 1 } | Fanout::Stream { batch: 1 } => 2_000,
            _ => 10_000,
        }
    }
}

/// Moves `n` dishes from [`FANOUT_CHEFS`] chefs to two readers through the
/// library's queue API (the kitchen runs one group per process); each
/// reader takes until the chefs are done and it has read everything.
#[cfg(feature = "redis")]
fn fanout(env: &Env, how: Fanout, n: u64) -> Outcome {
    use std::sync::atomic::{AtomicU64, Ordering};

    use kitchen::dish::{Dish, now_us};
    use kitchen::queue::{Backend, BackendConfig, Mode, RedisOptions, ResultLimits, Take};

    // A stream of its own per run, so no run reads another's groups.
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let (mode, batch) = match how {
        Fanout::Pubsub { batch } => (Mode::Pubsub, batch),
        Fanout::Stream { batch } => (Mode::Stream, batch),
    };
    let opts = |group: &str| RedisOptions {
        batch,
        stream: format!("bench:fanout:{run}"),
        group: group.to_owned(),
        ..RedisOptions::new(env.redis.url(), mode)
    };
    let open = |o: RedisOptions| {
        Backend::open(
            &BackendConfig::Redis(o),
            Capacity::Bounded(FANOUT_CAPACITY),
            ResultLimits::default(),
        )
        .unwrap_or_else(|e| panic!("open: {e}"))
    };
    let readers = [open(opts("g1")), open(opts("g2"))];
    let finished = Shutdown::new();
    let start = Instant::now();
    let (made, results) = thread::scope(|s| {
        let mut consumers: Vec<_> = readers.iter().map(Backend::consumer).collect();
        for c in &mut consumers {
            c.ready().unwrap_or_else(|e| panic!("ready: {e}"));
        }
        let diners: Vec<_> = consumers
            .into_iter()
            .map(|mut c| {
                let finished = finished.clone();
                s.spawn(move || {
                    let mut seen = vec![0u64; (n as usize).div_ceil(64)];
                    let (mut hist, mut dup) = (LatencyHistogram::new(), 0);
                    loop {
                        match c.take(&finished).unwrap_or_else(|e| panic!("take: {e}")) {
                            Take::Dish { dish, .. } => {
                                hist.record(now_us().saturating_sub(dish.made_at_us));
                                let id = dish.id.seq;
                                let (w, b) = ((id / 64) as usize, id % 64);
                                dup += u64::from(seen[w] & (1 << b) != 0);
                                seen[w] |= 1 << b;
                                c.ack(&dish).unwrap_or_else(|e| panic!("ack: {e}"));
                            }
                            Take::Closed => break,
                            Take::Rejected { .. } | Take::Idle => {}
                        }
                    }
                    (seen, hist, dup)
                })
            })
            .collect();
        let chefs: Vec<_> = (0..FANOUT_CHEFS as u64)
            .map(|k| {
                let mut p = readers[0]
                    .producer()
                    .unwrap_or_else(|e| panic!("producer: {e}"));
                let stop = Shutdown::new();
                s.spawn(move || {
                    let mine: Vec<Dish> = (k..n)
                        .step_by(FANOUT_CHEFS)
                        .map(|seq| Dish::new(seq, (seq % 10) as u8, k as u32 + 1))
                        .collect();
                    let mut made = 0;
                    for chunk in mine.chunks(batch) {
                        let puts = p
                            .put_all(chunk, &stop)
                            .unwrap_or_else(|e| panic!("put: {e}"));
                        made += puts.len() as u64;
                    }
                    made
                })
            })
            .collect();
        let made: u64 = chefs.into_iter().map(|h| h.join().expect("chef")).sum();
        finished.stop();
        let results: Vec<_> = diners
            .into_iter()
            .map(|h| h.join().expect("diner"))
            .collect();
        (made, results)
    });
    let elapsed = start.elapsed();
    let mut out = Outcome {
        elapsed,
        made,
        ..Outcome::default()
    };
    let mut hist = LatencyHistogram::new();
    for (seen, h, dup) in results {
        let got = seen.iter().map(|w| u64::from(w.count_ones())).sum::<u64>();
        out.lost += made - got;
        out.duplicated += dup;
        hist.merge(&h);
    }
    out.eaten = hist.len();
    let l = hist.latency();
    (out.p50_us, out.p99_us) = (l.p50, l.p99);
    if mode == Mode::Stream {
        let _: Result<(), _> = redis::cmd("DEL")
            .arg(format!("bench:fanout:{run}"))
            .query(&mut env.redis.connection());
    }
    out
}

#[cfg(feature = "redis")]
fn fanouts() -> impl Iterator<Item = Fanout> {
    FANOUTS.into_iter().filter(|f| wanted(&f.id()))
}

#[cfg(feature = "redis")]
fn fanout_throughput(c: &mut Criterion) {
    let env = Env::start();
    let mut g = c.benchmark_group("fanout");
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(300));
    g.measurement_time(Duration::from_secs(1));
    for how in FANOUTS {
        let n = how.dishes();
        g.throughput(Throughput::Elements(2 * n));
        g.bench_function(BenchmarkId::from_parameter(how.id()), |b| {
            b.iter(|| fanout(&env, how, n))
        });
    }
    g.finish();
}

/// The fan-out table: deliveries per second, every dish to two readers.
#[cfg(feature = "redis")]
fn fanout_report(env: &Env, md: &mut String, bars: &mut Vec<(String, &'static str, f64)>) {
    let rows: Vec<_> = fanouts().collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n### `fanout` ({FANOUT_CHEFS} chefs, every dish to 2 readers), capacity {FANOUT_CAPACITY}\n"
    );
    md.push_str(
        "| backend | deliveries/s | p50 µs | p99 µs | made | delivered | lost | duplicated |\n",
    );
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for how in rows {
        let n = how.dishes() * REPORT_FACTOR;
        let (o, rate, spread) = median_of_three(|| fanout(env, how, n));
        let flag = if o.lost > 0 || o.duplicated > 0 {
            " ⚠"
        } else {
            ""
        };
        let _ = writeln!(
            md,
            "| {}{flag} | {spread} | {} | {} | {} | {} | {} | {} |",
            how.name(),
            o.p50_us,
            o.p99_us,
            o.made,
            o.eaten,
            o.lost,
            o.duplicated
        );
        // The chart's labels live as long as the program.
        bars.push(("fanout".into(), how.name().leak(), rate));
    }
}

#[cfg(feature = "redis")]
criterion_group!(benches, throughput, fanout_throughput, report);
#[cfg(not(feature = "redis"))]
criterion_group!(benches, throughput, report);
criterion_main!(benches);
