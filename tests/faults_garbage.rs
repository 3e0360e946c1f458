//! Faults: garbage in the queue (random bytes, huge payloads, JSON of the
//! wrong shape, numbers out of range) is dead-lettered byte for byte, and
//! the diners go on eating the real dishes around it.
#![cfg(feature = "redis")]

mod support;

use rand::{Rng, SeedableRng};
use redis::Commands;
use support::redis_kitchen::{CHANNEL, QUEUE, holdings, spawn, spawn_subscribers};
use support::redis_server::RedisServer;
use support::{LIMIT, last_json, num, wait_until};

/// Payloads that are not dishes.
fn garbage() -> Vec<Vec<u8>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(6);
    let mut v: Vec<Vec<u8>> = (0..40)
        .map(|i| (0..1 + i * 7).map(|_| rng.random::<u8>()).collect())
        .filter(|b: &Vec<u8>| kitchen::dish::Dish::decode(b).is_err())
        .collect();
    // Huge: 8 MiB of noise, and 4 MiB of a JSON dish's look-alike.
    v.push((0..8 << 20).map(|_| rng.random::<u8>()).collect());
    let mut big = br#"{"id":"00000000000000ab-1","dish":1,"made_at":1,"pad":""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 4 << 20));
    big.extend(b"\"");
    v.push(big);
    for s in [
        "",
        " ",
        "soup",
        "null",
        "[]",
        "[7]",
        "\"7\"",
        "{}",
        r#"{"dish":3}"#,
        r#"{"id":"00000000000000ab-1","dish":"3","made_at":1}"#,
        r#"{"id":"00000000000000ab-1","dish":3.5,"made_at":1}"#,
        r#"{"id":"00000000000000ab-1","dish":3,"made_at":-1}"#,
        r#"{"id":"nope","dish":3,"made_at":1}"#,
        r#"{"id":"00000000000000ab-1","dish":10,"made_at":1}"#,
        r#"{"id":"00000000000000ab-1","dish":-1,"made_at":1}"#,
        "10",
        "-1",
        "255",
        "256",
        "9223372036854775807",
        "99999999999999999999999",
        "7 7",
        "0x7",
    ] {
        v.push(s.as_bytes().to_vec());
    }
    v
}

#[test]
fn garbage_is_dead_lettered_and_diners_live_on() {
    let server = RedisServer::start();
    let junk = garbage();
    let mut con = server.connection();
    // Garbage and real dishes (bare integers) interleaved, oldest on the right.
    for (i, g) in junk.iter().enumerate() {
        let _: u64 = con.lpush(QUEUE, g.as_slice()).unwrap();
        let _: u64 = con.lpush(QUEUE, (i % 10).to_string()).unwrap();
    }
    let (mut diner, mut lines) = spawn(
        &server,
        "diner",
        &[
            "--diners",
            "2",
            "--batch",
            "3",
            "--max-sleep-ms",
            "0",
            "--json",
        ],
    );
    wait_until(LIMIT, "the queue to be read", || {
        let h = holdings(&server, QUEUE);
        h.queue == 0 && h.processing == 0
    });
    // Still alive and eating after all that.
    let _: u64 = con.lpush(QUEUE, "7").unwrap();
    lines.wait_for(LIMIT, |l| l.contains("ate dish 7 "));
    assert!(
        diner.child().try_wait().unwrap().is_none(),
        "the diner died"
    );
    wait_until(LIMIT, "the last dish acknowledged", || {
        holdings(&server, QUEUE).total() == junk.len() as u64
    });
    let s = last_json(&diner.stop("INT", lines));
    let n = junk.len() as u64;
    assert_eq!((num(&s, "eaten"), num(&s, "rejected")), (n + 1, n), "{s}");
    let mut dead: Vec<Vec<u8>> = con.lrange(format!("{QUEUE}:dead"), 0, -1).unwrap();
    let mut want = junk.clone();
    dead.sort();
    want.sort();
    assert!(
        dead == want,
        "the dead letters are the garbage, byte for byte"
    );
    let h = holdings(&server, QUEUE);
    assert_eq!((h.queue, h.processing, h.dead, h.diners), (0, 0, n, 0));
    eprintln!(
        "faults: garbage: {n} payloads (largest {} bytes) dead-lettered byte for byte, {} dishes eaten, 0 lost",
        junk.iter().map(Vec::len).max().unwrap_or(0),
        n + 1
    );
}

#[test]
fn garbage_on_the_channel_is_counted_and_subscribers_live_on() {
    let server = RedisServer::start();
    let (diner, mut lines, _err) = spawn_subscribers(&server, 1, &[]);
    let junk = garbage();
    let mut con = server.connection();
    for g in &junk {
        let _: u64 = con.publish(CHANNEL, g.as_slice()).unwrap();
    }
    let _: u64 = con.publish(CHANNEL, "7").unwrap();
    lines.wait_for(LIMIT, |l| l.contains("ate dish 7 "));
    let s = last_json(&diner.stop("INT", lines));
    assert_eq!(
        (num(&s, "eaten"), num(&s, "rejected")),
        (1, junk.len() as u64),
        "{s}"
    );
}
