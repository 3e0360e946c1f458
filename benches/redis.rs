//! The Redis kitchen against a redis-server this bench starts (the test
//! harness, reused): list mode one dish per round trip and batched, pub/sub
//! one publish per round trip and batched, all 3 chefs / 2 diners, no naps.
//!
//! Run: `cargo bench --bench redis` (needs `redis-server` on the PATH). For
//! the batched list beside `redis-benchmark -P 16 -t lpush` on one server,
//! run `scripts/redis-bench`.

#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kitchen::queue::{BackendConfig, Capacity, Mode, RedisOptions};
use kitchen::{KitchenConfig, Printer, Shutdown, kitchen::run};
use redis_server::RedisServer;

/// Runs the kitchen once; returns deliveries (dishes eaten).
fn kitchen_run(url: &str, mode: Mode, batch: usize, capacity: usize, dishes: u64) -> u64 {
    let config = KitchenConfig {
        backend: BackendConfig::Redis(RedisOptions {
            batch,
            ..RedisOptions::new(url, mode)
        }),
        capacity: Capacity::Bounded(capacity),
        dishes: Some(dishes),
        max_sleep: Duration::ZERO,
        quiet: true,
        ..KitchenConfig::default()
    };
    match run(&config, &Shutdown::new(), Printer::quiet()) {
        Ok(s) => {
            assert_eq!(s.made, dishes, "the kitchen made too few dishes");
            assert_eq!(s.lost, 0, "dishes were lost");
            s.eaten
        }
        Err(e) => panic!("kitchen run failed: {e}"),
    }
}

fn list(c: &mut Criterion) {
    let server = RedisServer::start();
    let url = server.url();
    let mut g = c.benchmark_group("redis_list_3x2");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(4));
    let n = 20_000;
    g.throughput(Throughput::Elements(n));
    g.bench_function("cap10_batch1", |b| {
        b.iter(|| kitchen_run(&url, Mode::List, 1, 10, n))
    });
    g.bench_function("cap10_batch10", |b| {
        b.iter(|| kitchen_run(&url, Mode::List, 10, 10, n))
    });
    let n = 200_000;
    g.throughput(Throughput::Elements(n));
    g.bench_function("cap1000_batch100", |b| {
        b.iter(|| kitchen_run(&url, Mode::List, 100, 1000, n))
    });
    g.finish();
}

fn pubsub(c: &mut Criterion) {
    let server = RedisServer::start();
    let url = server.url();
    let mut g = c.benchmark_group("redis_pubsub_3x2");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(4));
    // Two diners: every dish is two deliveries.
    let n = 20_000;
    g.throughput(Throughput::Elements(2 * n));
    g.bench_function("batch1", |b| {
        b.iter(|| assert_eq!(kitchen_run(&url, Mode::Pubsub, 1, 10, n), 2 * n))
    });
    let n = 200_000;
    g.throughput(Throughput::Elements(2 * n));
    g.bench_function("batch64", |b| {
        b.iter(|| assert_eq!(kitchen_run(&url, Mode::Pubsub, 64, 10, n), 2 * n))
    });
    g.finish();
}

criterion_group!(benches, list, pubsub);
criterion_main!(benches);
