//! Faults: Redis out of memory (`maxmemory`, policy `noeviction`) is a
//! spell, not an end. Chefs wait, diners keep eating, every process lives,
//! and once memory is freed the kitchen goes on: made = eaten + left, every
//! dish eaten. The web entry answers `503` (out of memory) meanwhile, says so
//! on `/healthz` and `/metrics`, and `202` after. Results stay bounded by count.
//!
//! A spell is made by hand (`support::oom`), so that it lasts exactly as
//! long as the test wants.
#![cfg(feature = "redis")]

mod support;

use kitchen::queue::{BackendConfig, Capacity, Mode, RedisOptions};
use kitchen::serve::ServeConfig;
use support::oom::{ride_out_a_spell, serve_through_a_spell, server};
use support::redis_kitchen::{QUEUE, holdings, spawn};
use support::redis_server::RedisServer;
use support::web::{TestServer, config};
use support::{LIMIT, Lines, num, wait_until};

#[test]
fn a_run_rides_out_an_out_of_memory_spell_and_eats_every_dish() {
    let server = server();
    // Three chefs outpace two diners: the queue is full when the spell
    // begins, so the diners have something to eat during it.
    let (mut run, out) = spawn(
        &server,
        "run",
        &["--max-sleep-ms", "100", "--ids", "--json"],
    );
    let err = Lines::new(run.child().stderr.take().expect("stderr"));
    wait_until(LIMIT, "the queue to fill", || server.llen(QUEUE) == 10);

    let heartbeat = server.keys(&format!("{{{QUEUE}}}:diner:*"))[0].clone();
    let spell = ride_out_a_spell(
        &server,
        run,
        out,
        err,
        || server.llen(QUEUE) == 0,
        &heartbeat,
    );
    let s = &spell.summary;
    let (made, eaten, left) = (num(s, "made"), num(s, "eaten"), num(s, "left"));
    let h = holdings(&server, QUEUE);
    assert_eq!((h.total(), h.diners), (0, 0), "{h:?}");
    eprintln!(
        "faults: out of memory, run 3x2: made {made}, eaten {eaten}, left {left}; \
         the queue of 10 drained {:.2} s into the spell, which lasted {:.2} s",
        spell.drained_in.as_secs_f64(),
        spell.lasted.as_secs_f64()
    );
}

#[test]
fn serve_answers_503_out_of_memory_during_a_spell_and_202_after() {
    let server = server();
    let (recovered, refused_after) = serve_through_a_spell(
        &server,
        "list",
        || {},
        || spawn(&server, "diner", &["--max-sleep-ms", "0", "--json"]),
        || server.llen(QUEUE) == 0,
    );
    eprintln!(
        "faults: out of memory, serve: 503 during the spell, 202 again {:.3} s after the filler went \
         ({refused_after} refused after it)",
        recovered.as_secs_f64()
    );
}

#[test]
fn results_in_redis_keep_at_most_max_results_records() {
    let server = RedisServer::start();
    // `--max-results` is a flag of `serve --backend local`; the library
    // bounds Redis's records with the same setting.
    let s = TestServer::start(ServeConfig {
        backend: BackendConfig::Redis(RedisOptions::new(server.url(), Mode::List)),
        capacity: Capacity::Bounded(100),
        max_results: 5,
        ..config()
    });
    let ids: Vec<String> = (0..12)
        .map(|_| {
            let r = s.post("/dishes", "{}");
            assert_eq!(r.status, 202, "{}", r.text());
            r.json()["id"].as_str().expect("an id").to_owned()
        })
        .collect();
    let records = server.keys(&format!("{{{QUEUE}}}:result:*"));
    assert_eq!(records.len(), 5, "{records:?}");
    let indexed: u64 = server.query(&["ZCARD", &format!("{{{QUEUE}}}:results")]);
    assert_eq!(indexed, 5);
    // The oldest went first.
    for (i, id) in ids.iter().enumerate() {
        let want = if i < 7 { 404 } else { 200 };
        assert_eq!(s.get(&format!("/dishes/{id}")).status, want, "dish {i}");
    }
    assert_eq!(server.llen(QUEUE), 12, "the dishes themselves all wait");
}
