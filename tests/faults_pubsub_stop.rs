//! Faults: Ctrl-C to a pub/sub diner that has been delivered more dishes
//! than it has eaten. Redis counted it among every dish's receivers; it eats
//! the dish in hand, and what was delivered and not eaten is counted as
//! `lost`: delivered = eaten + lost, nothing vanishes.
#![cfg(feature = "redis")]

mod support;

use support::redis_kitchen::{run_json, spawn, subscribers};
use support::redis_server::RedisServer;
use support::{LIMIT, Lines, last_json, num, wait_until};

#[test]
fn ctrl_c_to_a_slow_subscriber_counts_the_undelivered_as_lost() {
    let server = RedisServer::start();
    // Two diner threads, each slower than the chef: most dishes wait in
    // their subscriptions when the Ctrl-C comes.
    let (mut diner, mut lines) = spawn(
        &server,
        "diner",
        &[
            "--mode",
            "pubsub",
            "--diners",
            "2",
            "--max-sleep-ms",
            "500",
            "--json",
        ],
    );
    let mut err = Lines::new(diner.child().stderr.take().expect("stderr"));
    wait_until(LIMIT, "the diners to subscribe", || {
        subscribers(&server) == 2
    });
    let chef = run_json(
        &server,
        "chef",
        &[
            "--mode",
            "pubsub",
            "--dishes",
            "20",
            "--max-sleep-ms",
            "0",
            "--quiet",
        ],
    );
    // Every dish reached both diners.
    assert_eq!((num(&chef, "made"), num(&chef, "lost")), (20, 0), "{chef}");
    let delivered = 2 * 20;
    lines.wait_for(LIMIT, |l| l.contains(" ate dish "));
    let all = diner.stop("INT", lines);
    let s = last_json(&all);
    let (eaten, lost) = (num(&s, "eaten"), num(&s, "lost"));
    let ate_lines = all.iter().filter(|l| l.contains(" ate dish ")).count() as u64;
    assert_eq!(eaten, ate_lines, "{s}");
    assert_eq!(
        eaten + lost,
        delivered,
        "delivered = eaten + lost: {s}; stderr {:?}",
        err.rest(LIMIT)
    );
    assert_eq!(subscribers(&server), 0, "the diners unsubscribed");
    eprintln!(
        "faults: ctrl-c to a slow pub/sub diner: delivered {delivered}, eaten {eaten}, lost {lost}"
    );
}
