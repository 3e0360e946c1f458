//! Faults: SIGTERM and Ctrl-C (SIGINT) to a Redis chef, diner and `run`:
//! each drains or puts back what it holds, exits 0, and Redis shows nothing lost.
#![cfg(feature = "redis")]

mod support;

use support::ledger::Ledger;
use support::ledger::payload_ids;
use support::redis_kitchen::{QUEUE, holdings, run_json, spawn};
use support::redis_server::RedisServer;
use support::{LIMIT, last_json, num, wait_until};

/// A chef stopped while blocked on a full queue: what it reported made is
/// exactly what waits in Redis, and the dish it was waiting to push is not made.
fn chef_stops_on(sig: &str) {
    let server = RedisServer::start();
    let (chef, lines) = spawn(
        &server,
        "chef",
        &["--capacity", "10", "--max-sleep-ms", "5", "--ids", "--json"],
    );
    wait_until(LIMIT, "the queue to fill", || server.llen(QUEUE) == 10);
    let all = chef.stop(sig, lines);
    let s = last_json(&all);
    let mut ledger = Ledger::new();
    ledger.read(&all);
    let h = holdings(&server, QUEUE);
    assert_eq!((num(&s, "made"), ledger.made()), (10, 10), "{s}");
    assert_eq!(
        (num(&s, "left"), h.total(), h.diners),
        (10, 10, 0),
        "{s} {h:?}"
    );
    assert_eq!(payload_ids(&server.lrange(QUEUE)), ids(&all, " made dish "));
}

/// A diner stopped mid-batch: it finishes the dish in hand, puts back the
/// rest; eaten + queued = what was there, and it holds nothing afterwards.
fn diner_stops_on(sig: &str) {
    let server = RedisServer::start();
    let chef = run_json(
        &server,
        "chef",
        &[
            "--dishes",
            "60",
            "--unbounded",
            "--max-sleep-ms",
            "0",
            "--ids",
        ],
    );
    assert_eq!(num(&chef, "made"), 60);
    let made = payload_ids(&server.lrange(QUEUE));
    let (diner, mut lines) = spawn(
        &server,
        "diner",
        &["--batch", "4", "--max-sleep-ms", "100", "--ids", "--json"],
    );
    lines.wait_for_n(5, " ate dish ");
    let all = diner.stop(sig, lines);
    let s = last_json(&all);
    let eaten = ids(&all, " ate dish ");
    let h = holdings(&server, QUEUE);
    assert_eq!(num(&s, "eaten"), eaten.len() as u64, "{s}");
    assert_eq!((h.processing, h.dead, h.diners), (0, 0, 0), "{h:?}");
    assert_eq!(eaten.len() as u64 + h.queue, 60, "{s} {h:?}");
    let mut both = eaten;
    both.extend(payload_ids(&server.lrange(QUEUE)));
    both.sort();
    assert_eq!(both, made, "each dish eaten once or back in the queue");
}

/// `run` stopped mid-run: its chefs stop, its diners eat what is queued.
fn run_stops_on(sig: &str) {
    let server = RedisServer::start();
    let (run, mut lines) = spawn(&server, "run", &["--max-sleep-ms", "20", "--ids", "--json"]);
    lines.wait_for_n(10, " made dish ");
    let all = run.stop(sig, lines);
    let s = last_json(&all);
    let mut ledger = Ledger::new();
    ledger.read(&all);
    assert_eq!(ledger.uneaten(), Vec::<String>::new(), "{ledger}");
    assert_eq!(ledger.duplicates(), 0, "{ledger}");
    assert_eq!(num(&s, "made"), num(&s, "eaten"), "{s}");
    assert_eq!(num(&s, "left"), 0, "{s}");
    let h = holdings(&server, QUEUE);
    assert_eq!((h.total(), h.diners), (0, 0), "{h:?}");
}

/// The ids on lines containing `what`, sorted.
fn ids(lines: &[String], what: &str) -> Vec<String> {
    let mut v: Vec<String> = lines
        .iter()
        .filter(|l| l.contains(what))
        .filter_map(|l| support::ledger::id_of(l).map(str::to_owned))
        .collect();
    v.sort();
    v
}

#[test]
fn sigterm_to_a_chef() {
    chef_stops_on("TERM");
}

#[test]
fn ctrl_c_to_a_chef() {
    chef_stops_on("INT");
}

#[test]
fn sigterm_to_a_diner() {
    diner_stops_on("TERM");
}

#[test]
fn ctrl_c_to_a_diner() {
    diner_stops_on("INT");
}

#[test]
fn sigterm_to_run() {
    run_stops_on("TERM");
}

#[test]
fn ctrl_c_to_run() {
    run_stops_on("INT");
}
