//! Faults: a pub/sub diner that stalls (SIGSTOP) past Redis's output-buffer
//! limit is disconnected by Redis; it notices, resubscribes, and counts what
//! it missed as `lost`: made = eaten + lost, nothing hidden.
#![cfg(feature = "redis")]

mod support;

use std::time::Instant;

use support::redis_kitchen::{
    CHANNEL, finish_pubsub, spawn_publisher, spawn_subscribers, subscribers,
};
use support::redis_server::RedisServer;
use support::{LIMIT, last_json, num, signal, wait_until};

#[test]
fn a_stalled_subscriber_is_dropped_resubscribes_and_counts_its_loss() {
    // A small limit, so the stall overflows it quickly.
    let server = RedisServer::start_with(&["--client-output-buffer-limit", "pubsub 256kb 0 0"]);
    let (diner, mut lines, mut diner_err) = spawn_subscribers(&server, 1, &[]);
    // One chef thread, paced so a running diner keeps up: its ids form one
    // unbroken stream, so every gap the diner sees is a real loss.
    let chef = spawn_publisher(&server, &["--batch", "10", "--max-sleep-ms", "2"]);
    lines.wait_for_n(200, " ate dish ");
    signal(diner.id(), "STOP");
    let stalled = Instant::now();
    wait_until(LIMIT, "redis to drop the stalled subscriber", || {
        subscribers(&server) == 0
    });
    let dropped_after = stalled.elapsed();
    signal(diner.id(), "CONT");
    let resumed = Instant::now();
    diner_err.wait_for(LIMIT, |l| l.contains("resubscribed to"));
    let resubscribed_after = resumed.elapsed();
    assert!(
        diner_err.seen.iter().any(|l| l.contains("dropped")),
        "{:?}",
        diner_err.seen
    );
    // Dishes after the gap reveal it. What the diner eats first may be the
    // backlog its socket held through the stall (tens of thousands of
    // dishes, all before the gap): a marker published once it has
    // resubscribed comes after that backlog, and the chef's dishes after
    // the marker come after the gap. Stopping the chef before one of them
    // arrived would leave the gap at the very end of its stream, where
    // nothing reveals it.
    let _: u64 = server.query(&["PUBLISH", CHANNEL, "after-the-gap"]);
    lines.wait_for(LIMIT, |l| l.contains("ate dish after-the-gap"));
    lines.wait_for_n(200, " ate dish ");
    let (chef_summary, all) = finish_pubsub(&server, chef, (diner, lines));
    let s = last_json(&all);

    // The marker was eaten too: a dish of plain text.
    let (made, eaten, lost) = (
        num(&chef_summary, "made"),
        num(&s, "eaten") - 1,
        num(&s, "lost"),
    );
    assert!(lost > 0, "the dropped dishes are counted: {s}");
    assert!(
        made < kitchen::dish::ID_BLOCK,
        "one id block, one stream: {chef_summary}"
    );
    assert_eq!(
        made,
        eaten + lost,
        "made = eaten + lost: {chef_summary} {s}"
    );
    assert!(
        server.log().contains("output buffer limits"),
        "redis says why it closed the subscriber"
    );
    eprintln!(
        "faults: slow subscriber: made {made}, eaten {eaten}, lost {lost} (counted by the diner), \
         chef saw {} published to nobody; dropped {:.2} s into the stall, resubscribed {:.2} s after it ended",
        num(&chef_summary, "lost"),
        dropped_after.as_secs_f64(),
        resubscribed_after.as_secs_f64()
    );
}
