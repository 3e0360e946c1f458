//! The local kitchen beside its ceiling: `kitchen run --quiet --max-sleep-ms 0`
//! (3 chefs, 2 diners, capacity 10) against a bare crossbeam `bounded(10)` loop
//! with 3 producers and 2 consumers, in one criterion run.
//!
//! Run: `cargo bench --bench kitchen`. Criterion measures each in turn; the
//! last line repeats the comparison interleaved (15 rounds, medians), which
//! is the figure to quote on a noisy machine.

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kitchen::{KitchenConfig, Printer, Shutdown, kitchen::run};

/// Dishes per iteration: large enough that thread start-up is noise.
const DISHES: u64 = 1_000_000;

/// The ceiling: a bare crossbeam bounded(cap) loop, `p` producers, `c` consumers.
fn bare_loop(p: usize, c: usize, cap: usize, n: u64) {
    let (tx, rx) = crossbeam_channel::bounded::<u64>(cap);
    thread::scope(|s| {
        for i in 0..p as u64 {
            let tx = tx.clone();
            let p = p as u64;
            s.spawn(move || {
                let mut k = i;
                while k < n {
                    let _ = tx.send(k);
                    k += p;
                }
            });
        }
        drop(tx);
        for _ in 0..c {
            let rx = rx.clone();
            s.spawn(move || {
                let mut sum = 0u64;
                for v in rx.iter() {
                    sum = sum.wrapping_add(v);
                }
                black_box(sum);
            });
        }
    });
}

fn kitchen_run(chefs: usize, diners: usize, cap: usize, n: u64) {
    let config = KitchenConfig {
        chefs,
        diners,
        capacity: kitchen::queue::Capacity::Bounded(cap),
        dishes: Some(n),
        max_sleep: Duration::ZERO,
        quiet: true,
        ..KitchenConfig::default()
    };
    match run(&config, &Shutdown::new(), Printer::quiet()) {
        Ok(s) => assert_eq!(s.eaten, n, "the kitchen lost dishes"),
        Err(e) => panic!("kitchen run failed: {e}"),
    }
}

fn mpmc(c: &mut Criterion) {
    let mut g = c.benchmark_group("mpmc_3x2_cap10");
    g.throughput(Throughput::Elements(DISHES));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("bare_crossbeam", |b| b.iter(|| bare_loop(3, 2, 10, DISHES)));
    g.bench_function("kitchen_run", |b| b.iter(|| kitchen_run(3, 2, 10, DISHES)));
    g.finish();
}

/// The same comparison, interleaved: bare, kitchen, bare, kitchen… so that
/// this shared machine's slow spells hit both alike; medians and their ratio.
fn interleaved(_: &mut Criterion) {
    let rate = |f: &dyn Fn()| {
        let t = Instant::now();
        f();
        DISHES as f64 / t.elapsed().as_secs_f64()
    };
    let (mut bare, mut kit) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        bare.push(rate(&|| bare_loop(3, 2, 10, DISHES)));
        kit.push(rate(&|| kitchen_run(3, 2, 10, DISHES)));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (b, k) = (median(&mut bare), median(&mut kit));
    println!(
        "mpmc_3x2_cap10 interleaved x15, medians: bare crossbeam {:.2} M/s, kitchen run {:.2} M/s, ratio {:.2}",
        b / 1e6,
        k / 1e6,
        k / b
    );
}

criterion_group!(benches, mpmc, interleaved);
criterion_main!(benches);
