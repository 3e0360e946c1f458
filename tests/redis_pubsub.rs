//! Redis pub/sub mode against a real redis-server: fan-out to every diner, loss counting.
#![cfg(feature = "redis")]

mod support;

use support::redis_kitchen::{CHANNEL, run_json, spawn_subscribers, subscribers};
use support::redis_server::RedisServer;
use support::{LIMIT, last_json, num};

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
    assert_eq!(subscribers(&server), 0, "diners unsubscribe when done");
}

#[test]
fn batched_publishing_still_reaches_every_diner() {
    let server = RedisServer::start();
    fan_out(&server, 500, 2, 32);
}

/// `kitchen chef --mode pubsub` publishing `dishes` at full speed.
fn publish(server: &RedisServer, dishes: &str) -> serde_json::Value {
    run_json(
        server,
        "chef",
        &[
            "--mode",
            "pubsub",
            "--dishes",
            dishes,
            "--max-sleep-ms",
            "0",
            "--quiet",
        ],
    )
}

#[test]
fn dishes_published_to_nobody_are_counted_lost() {
    let server = RedisServer::start();
    let s = publish(&server, "5");
    assert_eq!((num(&s, "made"), num(&s, "lost")), (5, 5), "{s}");
}

#[test]
fn a_diner_process_hears_a_chef_process() {
    let server = RedisServer::start();
    let (diner, mut lines, _err) = spawn_subscribers(&server, 2, &[]);
    let chef = publish(&server, "10");
    assert_eq!((num(&chef, "made"), num(&chef, "lost")), (10, 0), "{chef}");
    lines.wait_for_n(20, " ate dish ");
    let s = last_json(&diner.stop("INT", lines));
    assert_eq!(num(&s, "eaten"), 20, "{s}");
    // A payload that is not a dish is counted, not fatal.
    let (diner, mut lines, _err) = spawn_subscribers(&server, 1, &[]);
    let _: u64 = server.query(&["PUBLISH", CHANNEL, r#"{"id":"soup""#]);
    let _: u64 = server.query(&["PUBLISH", CHANNEL, "7"]);
    lines.wait_for(LIMIT, |l| l.contains("ate dish 7 "));
    let s = last_json(&diner.stop("INT", lines));
    assert_eq!((num(&s, "eaten"), num(&s, "rejected")), (1, 1), "{s}");
}
