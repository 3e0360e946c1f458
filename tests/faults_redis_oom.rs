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

use std::time::Instant;

use kitchen::queue::{BackendConfig, Capacity, Mode, RedisOptions};
use kitchen::serve::ServeConfig;
use support::oom::{
    end_spell, get, oom_gauge, out_of_memory, post, refuses_for_want_of_memory, ride_out_a_spell,
    server, start_spell,
};
use support::redis_kitchen::{QUEUE, holdings, spawn};
use support::redis_server::RedisServer;
use support::web::{TestServer, config, spawn_serve};
use support::{LIMIT, Lines, last_json, num, signal, wait_until};

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
    let url = server.url();
    let (serve, addr, mut err) = spawn_serve(&[
        "--backend",
        "redis",
        "--redis-url",
        &url,
        "--capacity",
        "1000",
        "--workers",
        "2",
    ]);
    let first = post(addr);
    assert_eq!(first.status, 202);
    let location = first.header("location").expect("Location").to_owned();
    assert!(oom_gauge(addr, 0));
    assert_eq!(get(addr, "/healthz").status, 200);

    start_spell(&server);
    refuses_for_want_of_memory(addr);
    err.wait_for(LIMIT, |l| l.contains("is out of memory"));
    // A diner started during the spell registers, takes the waiting dish,
    // and records that it ate it.
    let (diner, diner_out) = spawn(&server, "diner", &["--max-sleep-ms", "0", "--json"]);
    wait_until(LIMIT, "the diner to eat the dish during the spell", || {
        get(addr, &location).json()["status"] == "eaten"
    });
    assert!(out_of_memory(&server), "still in the spell");

    end_spell(&server);
    let freed = Instant::now();
    let mut refused_after = 0;
    wait_until(LIMIT, "serve to accept again", || {
        let ok = post(addr).status == 202;
        refused_after += u32::from(!ok);
        ok
    });
    let recovered = freed.elapsed();
    assert_eq!(get(addr, "/healthz").status, 200);
    assert!(oom_gauge(addr, 0));
    err.wait_for(LIMIT, |l| l.contains("has room again"));
    signal(serve.id(), "INT");
    let out = serve.wait(LIMIT);
    assert!(out.status.success(), "{:?}: {:?}", out.status, err.seen);
    wait_until(LIMIT, "the diner to eat the second dish", || {
        server.llen(QUEUE) == 0
    });
    let s = last_json(&diner.stop("INT", diner_out));
    assert_eq!(num(&s, "eaten"), 2, "both accepted dishes: {s}");
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
