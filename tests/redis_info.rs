//! `kitchen info` tells it as it is: a queue over a bound a later chef
//! lowered, one subscriber (not "1 subscribers"), only the dishes a diner
//! still holds (not those eaten and waiting for the next take to be
//! acknowledged), and Redis's memory.
#![cfg(feature = "redis")]

mod support;

use support::redis_kitchen::{QUEUE, run, run_json, spawn, spawn_subscribers};
use support::redis_server::RedisServer;
use support::{LIMIT, num, stderr, wait_until};

/// `kitchen info --json`.
fn info_json(server: &RedisServer) -> serde_json::Value {
    let out = run(server, "info", &["--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("info JSON")
}

/// `kitchen info`, the table.
fn info_table(server: &RedisServer) -> String {
    let out = run(server, "info", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_queue_over_a_lowered_bound_is_said_so() {
    let server = RedisServer::start();
    let first = run_json(
        &server,
        "chef",
        &["--capacity", "5", "--dishes", "5", "--max-sleep-ms", "0"],
    );
    assert_eq!(num(&first, "made"), 5);
    // A later chef keeps a bound of 2: it records it, then waits for room.
    let (chef, lines) = spawn(&server, "chef", &["--capacity", "2", "--json"]);
    let recorded = format!("{{{QUEUE}}}:capacity");
    wait_until(LIMIT, "the second chef to record its bound", || {
        server
            .query::<Option<String>>(&["GET", &recorded])
            .as_deref()
            == Some("2")
    });
    let v = info_json(&server);
    assert_eq!(
        (v["length"].as_u64(), v["capacity"].as_u64()),
        (Some(5), Some(2))
    );
    assert_eq!(v["over_capacity"], true, "{v}");
    let table = info_table(&server);
    assert!(
        table.contains("waiting      5, over the bound of 2"),
        "{table}"
    );
    assert!(!table.contains("5 of 2"), "{table}");
    let s = support::last_json(&chef.stop("INT", lines));
    assert_eq!(num(&s, "made"), 0, "it never had room: {s}");
}

#[test]
fn one_subscriber_is_one_subscriber() {
    let server = RedisServer::start();
    let (_diner, _lines, _err) = spawn_subscribers(&server, 1, &[]);
    let table = info_table(&server);
    assert!(
        table.contains("task:pubsub:channel (1 subscriber)"),
        "{table}"
    );
    let (_more, _lines2, _err2) = spawn_subscribers(&server, 1, &[]);
    assert!(info_table(&server).contains("(2 subscribers)"));
}

#[test]
fn a_dish_eaten_from_a_batch_is_not_shown_as_held() {
    let server = RedisServer::start();
    // Two dishes waiting, taken in one batch by a diner whose first nap is
    // 0.7 s and whose second lasts minutes (seed 381).
    let _: u64 = server.query(&["LPUSH", QUEUE, "1", "2"]);
    let (diner, mut lines) = spawn(
        &server,
        "diner",
        &[
            "--diners",
            "1",
            "--batch",
            "2",
            "--max-sleep-ms",
            "600000",
            "--seed",
            "381",
        ],
    );
    lines.wait_for(LIMIT, |l| l.contains("ate dish 1 "));
    lines.wait_for(LIMIT, |l| l.contains("ate dish 2 "));
    // Dish 1 is eaten; dish 2 is in the diner's hands for minutes.
    let held = |v: &serde_json::Value| v["diners"][0]["holding"].clone();
    wait_until(LIMIT, "info to show only the dish in hand", || {
        held(&info_json(&server)) == serde_json::json!(["2"])
    });
    let table = info_table(&server);
    assert!(table.contains("live, holding 1: 2"), "{table}");
    drop(diner);
}

#[test]
fn info_shows_redis_memory() {
    let server = RedisServer::start_with(&["--maxmemory", "64mb"]);
    let v = info_json(&server);
    assert_eq!(v["out_of_memory"], false, "{v}");
    assert_eq!(v["memory"]["max"].as_u64(), Some(64 << 20), "{v}");
    assert!(v["memory"]["used"].as_u64() > Some(0), "{v}");
    let table = info_table(&server);
    assert!(table.contains("  memory       "), "{table}");
    assert!(table.contains("maxmemory 64.00M (noeviction)"), "{table}");
}
