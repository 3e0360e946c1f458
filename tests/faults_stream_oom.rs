//! Faults: Redis out of memory in stream mode is a spell, not an end, as in
//! list mode (faults_redis_oom.rs). Chefs wait and say so once, diners keep
//! eating and acknowledging, heartbeats go on, every process lives, and
//! once memory is freed the kitchen goes on: made = eaten + left, every
//! dish eaten once. The web entry answers `503` (out of memory) meanwhile.
//!
//! Spells are made by hand (`support::oom`).
#![cfg(feature = "redis")]

mod support;

use support::ledger::Ledger;
use support::oom::{
    end_spell, out_of_memory, ride_out_a_spell, serve_through_a_spell, server, start_spell,
};
use support::redis_server::RedisServer;
use support::redis_stream::{GROUP, STREAM, drained, group, spawn, xlen};
use support::{LIMIT, Lines, last_json, num, wait_until};

/// What the slowest group has not acknowledged: what `--capacity` bounds.
fn unacked(server: &RedisServer) -> u64 {
    group(server, STREAM, GROUP).map_or(0, |g| g.lag.unwrap_or(0) + g.pending)
}

#[test]
fn a_stream_run_rides_out_an_out_of_memory_spell_and_eats_every_dish() {
    let server = server();
    // Three chefs outpace two diners: the stream is full when the spell
    // begins, so the diners have something to eat during it.
    let (mut run, out) = spawn(
        &server,
        "run",
        &["--max-sleep-ms", "100", "--ids", "--json"],
    );
    let err = Lines::new(run.child().stderr.take().expect("stderr"));
    wait_until(LIMIT, "the stream to fill", || unacked(&server) == 10);

    let note = server.keys(&format!("{{{STREAM}}}:diner:*"))[0].clone();
    let spell = ride_out_a_spell(
        &server,
        run,
        out,
        err,
        || drained(&server, STREAM, GROUP),
        &note,
    );
    let s = &spell.summary;
    let (made, eaten, left) = (num(s, "made"), num(s, "eaten"), num(s, "left"));
    assert!(
        drained(&server, STREAM, GROUP),
        "{:?}",
        group(&server, STREAM, GROUP)
    );
    eprintln!(
        "faults: out of memory, stream run 3x2: made {made}, eaten {eaten}, left {left}; \
         the stream of 10 drained {:.2} s into the spell, which lasted {:.2} s (XLEN {} after)",
        spell.drained_in.as_secs_f64(),
        spell.lasted.as_secs_f64(),
        xlen(&server, STREAM)
    );
}

#[test]
fn stream_serve_answers_503_out_of_memory_during_a_spell_and_202_after() {
    let server = server();
    let (recovered, refused_after) = serve_through_a_spell(
        &server,
        "stream",
        // The group exists, as after any diner's first start: a group
        // cannot be created while Redis is out of memory (XGROUP CREATE
        // may grow it).
        || {
            let _: () = server.query(&["XGROUP", "CREATE", STREAM, GROUP, "0", "MKSTREAM"]);
        },
        || spawn(&server, "diner", &["--max-sleep-ms", "0", "--json"]),
        || drained(&server, STREAM, GROUP),
    );
    eprintln!(
        "faults: out of memory, stream serve: 503 during the spell, 202 again {:.3} s after the filler went \
         ({refused_after} refused after it)",
        recovered.as_secs_f64()
    );
}

#[test]
fn unbounded_batched_chefs_and_a_diner_in_their_own_processes_ride_out_a_spell() {
    let server = server();
    let (diner, mut diner_out) = spawn(
        &server,
        "diner",
        &["--batch", "5", "--max-sleep-ms", "20", "--ids", "--json"],
    );
    wait_until(LIMIT, "the diner to create its group", || {
        group(&server, STREAM, GROUP).is_some()
    });
    let (mut chef, mut chef_out) = spawn(
        &server,
        "chef",
        &[
            "--chefs",
            "2",
            "--unbounded",
            "--batch",
            "5",
            "--max-sleep-ms",
            "20",
            "--ids",
            "--json",
        ],
    );
    let mut err = Lines::new(chef.child().stderr.take().expect("stderr"));
    diner_out.wait_for_n(10, " ate dish ");

    start_spell(&server);
    let notice = err.wait_for(LIMIT, |l| l.contains("is out of memory"));
    assert!(
        notice.contains("chefs wait until diners free room"),
        "{notice}"
    );
    wait_until(
        LIMIT,
        "the diner to eat the stream during the spell",
        || drained(&server, STREAM, GROUP),
    );
    assert!(out_of_memory(&server), "the diner ate during the spell");

    end_spell(&server);
    err.wait_for(LIMIT, |l| l.contains("has room again"));
    chef_out.wait_for_n(10, " made dish ");
    let made_lines = chef.stop("INT", chef_out);
    wait_until(LIMIT, "the diner to eat the rest", || {
        drained(&server, STREAM, GROUP)
    });
    let ate_lines = diner.stop("INT", diner_out);

    let (c, d) = (last_json(&made_lines), last_json(&ate_lines));
    let mut ledger = Ledger::new();
    ledger.read(&made_lines);
    ledger.read(&ate_lines);
    assert_eq!(num(&c, "made"), num(&d, "eaten"), "made = eaten: {c} {d}");
    assert_eq!(ledger.uneaten(), Vec::<String>::new(), "{ledger}");
    assert_eq!(ledger.duplicates(), 0, "{ledger}");
    eprintln!(
        "faults: out of memory, stream chef process (2 chefs, unbounded, batch 5) and diner process (batch 5): \
         made {}, eaten {}",
        num(&c, "made"),
        num(&d, "eaten")
    );
}
