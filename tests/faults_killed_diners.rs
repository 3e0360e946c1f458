//! Faults: diners killed with SIGKILL mid-dish, 20 times in a run of 2 000
//! dishes; every dish made is eaten at least once, duplicates are counted.
#![cfg(feature = "redis")]

mod support;

use std::time::Instant;

use support::ledger::{Ledger, id_of};
use support::redis_kitchen::{QUEUE, held_by, holdings, spawn};
use support::redis_server::RedisServer;
use support::{LIMIT, last_json, num, signal, wait_until};

const DISHES: u64 = 2_000;
const KILLS: usize = 20;
/// Dishes each doomed diner process eats before it is killed.
const EATEN_BEFORE_KILL: usize = 40;

#[test]
fn twenty_diners_killed_mid_dish_lose_nothing() {
    let server = RedisServer::start();
    let started = Instant::now();
    // A short heartbeat, so a dead diner's dishes come back quickly.
    let diner_args = [
        "--diners",
        "2",
        "--max-sleep-ms",
        "20",
        "--heartbeat-ttl",
        "1",
        // Each kill counts an attempt on what the diner held (a dish that
        // kills its diner is poison): these kills are the test's, so no
        // dish may run out of attempts, however often it is caught.
        "--max-attempts",
        "1000",
        "--ids",
        "--json",
    ];
    let (chef, chef_lines) = spawn(
        &server,
        "chef",
        &[
            "--chefs",
            "2",
            "--dishes",
            &DISHES.to_string(),
            "--capacity",
            "50",
            "--max-sleep-ms",
            "0",
            "--ids",
            "--json",
        ],
    );
    let mut ledger = Ledger::new();
    let mut held_at_kill = Vec::new();
    let mut last_kill = Instant::now();
    let mut last_pid = 0;
    for kill in 0..KILLS {
        // Every other diner takes batches of 5, so it dies holding several.
        let batch = if kill % 2 == 0 { "1" } else { "5" };
        let mut args = diner_args.to_vec();
        args.extend(["--batch", batch]);
        let (diner, mut lines) = spawn(&server, "diner", &args);
        lines.wait_for_n(EATEN_BEFORE_KILL, " ate dish ");
        // Mid-dish: the last line is a dish taken and not yet acknowledged.
        last_pid = diner.id();
        signal(last_pid, "KILL");
        last_kill = Instant::now();
        diner.wait(LIMIT);
        // What it held is still in Redis, in its processing lists.
        held_at_kill.push(held_by(&server, QUEUE, last_pid));
        ledger.read(&lines.rest(LIMIT));
    }
    assert!(
        held_at_kill.iter().all(|&n| n >= 1),
        "every diner died holding a dish: {held_at_kill:?}"
    );
    // One last diner eats the rest, its heartbeat thread recovering what the
    // dead held.
    let (last, last_lines) = spawn(&server, "diner", &diner_args);
    wait_until(LIMIT, "the last killed diner's dishes to come back", || {
        held_by(&server, QUEUE, last_pid) == 0
    });
    let recovery = last_kill.elapsed();
    let chef_all = chef.finish(chef_lines);
    let chef_summary = last_json(&chef_all);
    assert_eq!(num(&chef_summary, "made"), DISHES, "{chef_summary}");
    wait_until(LIMIT, "every dish to be eaten", || {
        let h = holdings(&server, QUEUE);
        h.queue == 0 && h.processing == 0
    });
    let last_all = last.stop("INT", last_lines);
    let last_summary = last_json(&last_all);
    ledger.read(&chef_all);
    ledger.read(&last_all);

    // Conservation, from the processes' lines and summaries...
    ledger.assert_all_eaten(DISHES, "the chef and the diners");
    assert!(
        ledger.duplicates() >= KILLS as u64,
        "each killed diner's dish in hand is eaten again: {ledger}"
    );
    // ...and from Redis: nothing waiting, held, dead or registered.
    let h = holdings(&server, QUEUE);
    assert_eq!(h.total(), 0, "{h:?}");
    assert_eq!(h.diners, 0, "{h:?}");
    assert_eq!(num(&last_summary, "rejected"), 0, "{last_summary}");
    eprintln!(
        "faults: killed diners: {KILLS} SIGKILLs, {ledger}, lost 0, dead 0; \
         held at kill {held_at_kill:?}; last recovery {:.2} s (heartbeat TTL 1 s); \
         wall {:.1} s",
        recovery.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn the_ledger_reads_ids_from_the_end_of_a_line() {
    assert_eq!(
        id_of("diner-1 ate dish 7 --- 3 left to eat [id 00000000000000ab-5]"),
        Some("00000000000000ab-5")
    );
    assert_eq!(id_of("diner-1 ate dish 7 --- 3 left to eat"), None);
    let mut l = Ledger::new();
    l.read(&[
        "chef-1 made dish 1 --- 1 left unsold [id a-1]".into(),
        "chef-1 made dish 2 --- 2 left unsold [id a-2]".into(),
        "diner-1 ate dish 1 --- 1 left to eat [id a-1]".into(),
        "diner-2 ate dish 1 --- 1 left to eat [id a-1]".into(),
    ]);
    assert_eq!((l.made(), l.eaten(), l.duplicates()), (2, 1, 1));
    assert_eq!(l.uneaten(), ["a-2"]);
}

#[test]
fn ids_on_lines_match_across_a_chef_and_a_diner() {
    // The feature the ledger rests on: `--ids` prints the same id on both sides.
    let server = RedisServer::start();
    let (diner, mut dl) = spawn(
        &server,
        "diner",
        &["--diners", "1", "--max-sleep-ms", "0", "--ids", "--json"],
    );
    let (chef, cl) = spawn(
        &server,
        "chef",
        &["--dishes", "5", "--max-sleep-ms", "0", "--ids", "--json"],
    );
    let chef_lines = chef.finish(cl);
    dl.wait_for_n(5, " ate dish ");
    let mut ledger = Ledger::new();
    ledger.read(&chef_lines);
    ledger.read(&diner.stop("INT", dl));
    assert_eq!(
        (ledger.made(), ledger.eaten(), ledger.duplicates()),
        (5, 5, 0)
    );
}
