//! Faults in stream mode: diners killed with SIGKILL mid-dish during 2 000
//! dishes, redis-server killed and restarted (append-only file) mid-run, a
//! diner stopped (SIGSTOP) past its heartbeat and resumed, the web entry
//! during an outage. Every dish made is eaten at least once; duplicates
//! are counted.
#![cfg(feature = "redis")]

mod support;

use std::time::{Duration, Instant};

use support::ledger::Ledger;
use support::redis_server::RedisServer;
use support::redis_stream::{GROUP, STREAM, drained, group, pending_owners, spawn, xadd, xlen};
use support::web::{spawn_serve, try_request};
use support::{LIMIT, Lines, last_json, num, signal, wait_until};

const DISHES: u64 = 2_000;
const KILLS: usize = 12;
/// Dishes each doomed diner process eats before it is killed.
const EATEN_BEFORE_KILL: usize = 40;

/// Entries of the group held by the diners of process `pid`.
fn held_by(server: &RedisServer, pid: u32) -> usize {
    let prefix = format!("diner-{pid}-");
    pending_owners(server, STREAM, GROUP)
        .iter()
        .filter(|(_, owner)| owner.starts_with(&prefix))
        .count()
}

#[test]
fn diners_killed_mid_dish_lose_nothing() {
    let server = RedisServer::start();
    let started = Instant::now();
    // A short heartbeat, so a dead diner's entries are claimed quickly.
    let diner_args = [
        "--diners",
        "2",
        "--max-sleep-ms",
        "20",
        "--heartbeat-ttl",
        "1",
        // Each kill counts an attempt on what the diner held (see
        // faults_killed_diners.rs): no dish may run out of attempts here.
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
        // Every other diner reads batches of 5, so it dies holding several.
        let batch = if kill % 2 == 0 { "1" } else { "5" };
        let mut args = diner_args.to_vec();
        args.extend(["--batch", batch]);
        let (diner, mut lines) = spawn(&server, "diner", &args);
        lines.wait_for_n(EATEN_BEFORE_KILL, " ate dish ");
        last_pid = diner.id();
        signal(last_pid, "KILL");
        last_kill = Instant::now();
        diner.wait(LIMIT);
        // What it held is still pending in its group, under its name.
        held_at_kill.push(held_by(&server, last_pid));
        ledger.read(&lines.rest(LIMIT));
    }
    assert!(
        held_at_kill.iter().all(|&n| n >= 1),
        "every diner died holding a dish: {held_at_kill:?}"
    );
    // One last diner eats the rest, claiming what the dead held.
    let (last, last_lines) = spawn(&server, "diner", &diner_args);
    wait_until(
        LIMIT,
        "the last killed diner's entries to be claimed",
        || held_by(&server, last_pid) == 0,
    );
    let recovery = last_kill.elapsed();
    let chef_all = chef.finish(chef_lines);
    assert_eq!(num(&last_json(&chef_all), "made"), DISHES);
    wait_until(LIMIT, "every dish to be eaten", || {
        drained(&server, STREAM, GROUP)
    });
    // The dead consumers, holding nothing and silent past the TTL, are
    // forgotten by the live diners' heartbeats: the last process's two
    // diner threads are all the group has left.
    wait_until(LIMIT, "dead consumers to be forgotten", || {
        group(&server, STREAM, GROUP).is_some_and(|g| g.consumers == 2)
    });
    let last_all = last.stop("INT", last_lines);
    ledger.read(&chef_all);
    ledger.read(&last_all);

    // Conservation, from the processes' lines...
    ledger.assert_all_eaten(DISHES, "the chef and the diners");
    assert!(
        ledger.duplicates() >= KILLS as u64,
        "each killed diner's dish in hand is eaten again: {ledger}"
    );
    // ...and from Redis: nothing pending or undelivered, nobody left in the
    // group, the stream trimmed, nothing dead.
    let g = group(&server, STREAM, GROUP).expect("group");
    assert!(g.drained() && g.consumers == 0, "{g:?}");
    assert_eq!(xlen(&server, STREAM), 0);
    assert_eq!(server.llen(&format!("{{{STREAM}}}:dead")), 0);
    eprintln!(
        "faults: stream, killed diners: {KILLS} SIGKILLs, {ledger}, lost 0; \
         held at kill {held_at_kill:?}; last recovery {:.2} s (heartbeat TTL 1 s); \
         wall {:.1} s",
        recovery.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn two_redis_restarts_lose_nothing() {
    const N: u64 = 1_000;
    const RUN_STREAM: &str = "faults:run:stream";
    let mut server = RedisServer::durable(&[]);
    let started = Instant::now();
    let n = N.to_string();
    let (mut chef, chef_out) = spawn(
        &server,
        "chef",
        &[
            "--chefs",
            "2",
            "--dishes",
            &n,
            "--capacity",
            "50",
            "--max-sleep-ms",
            "4",
            "--ids",
            "--json",
        ],
    );
    let (mut diner, mut diner_out) = spawn(
        &server,
        "diner",
        &["--diners", "2", "--max-sleep-ms", "2", "--ids", "--json"],
    );
    // Chefs and diners in one process too, on a stream of their own.
    let (mut run, mut run_out) = spawn(
        &server,
        "run",
        &[
            "--stream",
            RUN_STREAM,
            "--dishes",
            &n,
            "--max-sleep-ms",
            "4",
            "--ids",
            "--json",
        ],
    );
    let mut errs: Vec<Lines> = [&mut chef, &mut diner, &mut run]
        .into_iter()
        .map(|c| Lines::new(c.child().stderr.take().expect("stderr")))
        .collect();
    let mut recoveries = Vec::new();
    for _ in 0..2 {
        diner_out.wait_for_n(100, " ate dish ");
        run_out.wait_for_n(100, " ate dish ");
        server.stop();
        let down = Instant::now();
        for e in &mut errs {
            e.wait_for(LIMIT, |l| l.contains("lost redis"));
        }
        // The fault itself: down long enough for a few reconnect attempts.
        std::thread::sleep(Duration::from_secs(1).saturating_sub(down.elapsed()));
        server.restart();
        let back = Instant::now();
        for e in &mut errs {
            e.wait_for(LIMIT, |l| l.contains("reconnected to redis"));
        }
        recoveries.push(back.elapsed().as_secs_f64());
    }
    let chef_lines = chef.finish(chef_out);
    assert_eq!(num(&last_json(&chef_lines), "made"), N);
    let run_lines = run.finish(run_out);
    wait_until(LIMIT, "the diners to eat everything", || {
        drained(&server, STREAM, GROUP)
    });
    let diner_lines = diner.stop("TERM", diner_out);
    let mut apart = Ledger::new();
    apart.read(&chef_lines);
    apart.read(&diner_lines);
    let mut together = Ledger::new();
    together.read(&run_lines);
    for (name, ledger) in [("chef+diner", &apart), ("run", &together)] {
        ledger.assert_all_eaten(N, name);
    }
    let run_summary = last_json(&run_lines);
    assert_eq!(num(&run_summary, "left"), 0, "{run_summary}");
    assert!(drained(&server, RUN_STREAM, GROUP));
    eprintln!(
        "faults: stream, two redis restarts (appendfsync always): chef+diner {apart}; \
         run {together}; every process reconnected within {:.2?} s of each restart; \
         wall {:.1} s",
        recoveries,
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_diner_stopped_past_its_heartbeat_loses_its_dish_to_another_and_finishes_when_resumed() {
    let server = RedisServer::start();
    xadd(&server, STREAM, &["dish", "7"]);
    // Seed 3 naps about 3.7 s on the first dish: long enough to be caught
    // holding it.
    let (a, mut la) = spawn(
        &server,
        "diner",
        &[
            "--diners",
            "1",
            "--heartbeat-ttl",
            "1",
            "--max-sleep-ms",
            "4000",
            "--seed",
            "3",
            "--json",
        ],
    );
    la.wait_for(LIMIT, |l| l.contains("ate dish 7 "));
    signal(a.id(), "STOP");
    assert_eq!(held_by(&server, a.id()), 1, "stopped holding its dish");
    let (b, mut lb) = spawn(
        &server,
        "diner",
        &[
            "--diners",
            "1",
            "--heartbeat-ttl",
            "1",
            "--max-sleep-ms",
            "0",
            "--json",
        ],
    );
    // Silent past its heartbeat TTL: its dish goes to the live diner.
    lb.wait_for(LIMIT, |l| l.contains("ate dish 7 "));
    assert_eq!(
        held_by(&server, a.id()),
        0,
        "claimed away from the stopped diner"
    );
    signal(a.id(), "CONT");
    // Resumed, it finishes its dish and acknowledges it; it never takes the
    // entry back (its heartbeat refreshes only what is still its own).
    let sa = last_json(&a.stop("INT", la));
    let sb = last_json(&b.stop("INT", lb));
    assert_eq!((num(&sa, "eaten"), num(&sb, "eaten")), (1, 1), "{sa} {sb}");
    let g = group(&server, STREAM, GROUP).expect("group");
    assert!(g.drained(), "{g:?}");
    assert_eq!(xlen(&server, STREAM), 0);
}

#[test]
fn the_web_entry_answers_503_while_redis_is_down_and_202_after() {
    let mut server = RedisServer::durable(&[]);
    let url = server.url();
    let (_serve, addr, _) = spawn_serve(&[
        "--backend",
        "redis",
        "--redis-url",
        &url,
        "--mode",
        "stream",
        "--workers",
        "2",
    ]);
    let post = || try_request(addr, "POST", "/dishes", b"").map(|r| r.status);
    assert_eq!(post(), Some(202));
    server.stop();
    let r = try_request(addr, "POST", "/dishes", b"").expect("an answer");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    server.restart();
    wait_until(LIMIT, "202 once redis is back", || post() == Some(202));
    assert_eq!(
        xlen(&server, STREAM),
        2,
        "both accepted dishes are in the stream"
    );
}
