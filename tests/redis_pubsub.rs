//! Redis pub/sub mode against a real redis-server: fan-out to every diner, loss counting.
#![cfg(feature = "redis")]

mod support;

use support::num;
use support::redis_kitchen::{LIMIT, last_json, run_json, spawn};
use support::redis_server::RedisServer;
use support::{signal, wait_until};

const CHANNEL: &str = "task:pubsub:channel";

/// `kitchen run --mode pubsub` at full speed: `dishes` made, `diners` subscribed.
fn fan_out(server: &RedisServer, dishes: u64, diners: u64, batch: u64) -> serde_json::Value {
    let (dishes_s, diners_s, batch_s) = (dishes.to_string(), diners.to_string(), batch.to_string());
    let s = run_json(
        server,
        "run",
        &[
            "--mode",
            "pubsub",
            "--dishes",
            &dishes_s,
            "--diners",
            &diners_s,
            "--batch",
            &batch_s,
            "--max-sleep-ms",
            "0",
            "--quiet",
        ],
    );
    assert_eq!(s["mode"], "pubsub");
    let got = (num(&s, "made"), num(&s, "eaten"), num(&s, "lost"));
    assert_eq!(got, (dishes, dishes * diners, 0), "{s}");
    s
}

#[test]
fn every_diner_gets_every_dish_and_none_is_lost() {
    let server = RedisServer::start();
    let s = fan_out(&server, 200, 3, 1);
    assert!(s["capacity"].is_null(), "capacity does not apply: {s}");
    let subscribers: (String, u64) = server.query(&["PUBSUB", "NUMSUB", CHANNEL]);
    assert_eq!(subscribers.1, 0, "diners unsubscribe when done");
}

#[test]
fn batched_publishing_still_reaches_every_diner() {
    let server = RedisServer::start();
    fan_out(&server, 500, 2, 32);
}

#[test]
fn dishes_published_to_nobody_are_counted_lost() {
    let server = RedisServer::start();
    let s = run_json(
        &server,
        "chef",
        &[
            "--mode",
            "pubsub",
            "--dishes",
            "5",
            "--max-sleep-ms",
            "0",
            "--quiet",
        ],
    );
    assert_eq!((num(&s, "made"), num(&s, "lost")), (5, 5), "{s}");
}

#[test]
fn a_diner_process_hears_a_chef_process() {
    let server = RedisServer::start();
    let (diner, mut lines) = spawn(
        &server,
        "diner",
        &[
            "--mode",
            "pubsub",
            "--diners",
            "2",
            "--max-sleep-ms",
            "0",
            "--json",
        ],
    );
    wait_until(LIMIT, "two subscribers", || {
        server
            .query::<(String, u64)>(&["PUBSUB", "NUMSUB", CHANNEL])
            .1
            == 2
    });
    let chef = run_json(
        &server,
        "chef",
        &[
            "--mode",
            "pubsub",
            "--dishes",
            "10",
            "--max-sleep-ms",
            "0",
            "--quiet",
        ],
    );
    assert_eq!((num(&chef, "made"), num(&chef, "lost")), (10, 0), "{chef}");
    for _ in 0..20 {
        lines.wait_for(LIMIT, |l| l.contains(" ate dish "));
    }
    signal(diner.id(), "INT");
    let s = last_json(&lines.rest(LIMIT));
    assert_eq!(num(&s, "eaten"), 20, "{s}");
    // A payload that is not a dish is counted, not fatal.
    let (diner, mut lines) = spawn(
        &server,
        "diner",
        &["--mode", "pubsub", "--diners", "1", "--json"],
    );
    wait_until(LIMIT, "a subscriber", || {
        server
            .query::<(String, u64)>(&["PUBSUB", "NUMSUB", CHANNEL])
            .1
            == 1
    });
    let _: u64 = server.query(&["PUBLISH", CHANNEL, "soup"]);
    let _: u64 = server.query(&["PUBLISH", CHANNEL, "7"]);
    lines.wait_for(LIMIT, |l| l.contains("ate dish 7 "));
    signal(diner.id(), "INT");
    let s = last_json(&lines.rest(LIMIT));
    assert_eq!((num(&s, "eaten"), num(&s, "rejected")), (1, 1), "{s}");
}
