//! Faults: what cannot be a dish (bytes that are not text, payloads over
//! the limit, corrupt envelopes of ours) is dead-lettered with its reason,
//! any other producer's text or JSON is eaten, and the diners go on.
#![cfg(feature = "redis")]

mod support;

use rand::{Rng, SeedableRng};
use redis::Commands;
use support::redis_kitchen::{CHANNEL, QUEUE, holdings, spawn, spawn_subscribers};
use support::redis_server::RedisServer;
use support::{LIMIT, last_json, num, wait_until};

/// Payloads that cannot be dishes.
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
        r#"{"id":"00000000000000ab-1","dish":3,"made_at":-1}"#,
        r#"{"id":"nope","dish":3,"made_at":1}"#,
        r#"{"id":"00000000000000ab-1","made_at":1}"#,
        r#"{"id":"00000000000000ab-1","dish":3,"#,
        r#"{"made_at":1,"id":7,"dish":3}"#,
    ] {
        v.push(s.as_bytes().to_vec());
    }
    v
}

/// Another producer's payloads: none of them kitchen's, every one a dish.
/// The dish sent after all the others, whose line says every one before it
/// was read: printed like no foreign payload (`"7"` and `7 7` print as
/// `ate dish 7 …`, so 7 cannot be it).
const LAST: &str = "the-last-dish";

const FOREIGN: [&str; 20] = [
    " ",
    "soup",
    "null",
    "[]",
    "[7]",
    "\"7\"",
    "{}",
    r#"{"dish":3}"#,
    r#"{"dish":"3"}"#,
    r#"{"task":"resize","w":64}"#,
    "10",
    "-1",
    "255",
    "9223372036854775807",
    "99999999999999999999999",
    "7 7",
    "0x7",
    "ünïcødé ✓",
    "line one\nline two",
    "3.5",
];

#[test]
fn garbage_is_dead_lettered_and_diners_live_on() {
    let server = RedisServer::start();
    let junk = garbage();
    let mut con = server.connection();
    // Garbage and dishes (bare integers, other producers' text and JSON)
    // interleaved, oldest on the right.
    for (i, g) in junk.iter().enumerate() {
        let _: u64 = con.lpush(QUEUE, g.as_slice()).unwrap();
        let _: u64 = con.lpush(QUEUE, (i % 10).to_string()).unwrap();
    }
    for f in FOREIGN {
        let _: u64 = con.lpush(QUEUE, f).unwrap();
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
    let _: u64 = con.lpush(QUEUE, LAST).unwrap();
    lines.wait_for(LIMIT, |l| l.contains(&format!("ate dish {LAST} ")));
    assert!(
        diner.child().try_wait().unwrap().is_none(),
        "the diner died"
    );
    wait_until(LIMIT, "the last dish acknowledged", || {
        holdings(&server, QUEUE).total() == junk.len() as u64
    });
    let s = last_json(&diner.stop("INT", lines));
    let n = junk.len() as u64;
    let dishes = n + FOREIGN.len() as u64 + 1;
    assert_eq!((num(&s, "eaten"), num(&s, "rejected")), (dishes, n), "{s}");
    let dead: Vec<String> = con.lrange(format!("{{{QUEUE}}}:dead"), 0, -1).unwrap();
    let mut sizes: Vec<u64> = dead
        .iter()
        .map(|d| {
            let letter: serde_json::Value = serde_json::from_str(d).expect("a dead letter is JSON");
            assert!(
                letter["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{letter}"
            );
            assert!(
                letter["payload"]
                    .as_str()
                    .is_some_and(|p| p.len() <= 4 * 1024 * 3),
                "{d:.200}"
            );
            letter["bytes"].as_u64().expect("its size")
        })
        .collect();
    let mut want: Vec<u64> = junk.iter().map(|j| j.len() as u64).collect();
    sizes.sort_unstable();
    want.sort_unstable();
    assert_eq!(
        sizes, want,
        "one dead letter per garbage payload, with its size"
    );
    let h = holdings(&server, QUEUE);
    assert_eq!((h.queue, h.processing, h.dead, h.diners), (0, 0, n, 0));
    eprintln!(
        "faults: garbage: {n} payloads (largest {} bytes) dead-lettered with their reasons, {dishes} dishes eaten (of them {} other producers' text and JSON), 0 lost",
        junk.iter().map(Vec::len).max().unwrap_or(0),
        FOREIGN.len()
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
    for f in FOREIGN {
        let _: u64 = con.publish(CHANNEL, f).unwrap();
    }
    let _: u64 = con.publish(CHANNEL, LAST).unwrap();
    lines.wait_for(LIMIT, |l| l.contains(&format!("ate dish {LAST} ")));
    let s = last_json(&diner.stop("INT", lines));
    assert_eq!(
        (num(&s, "eaten"), num(&s, "rejected")),
        (FOREIGN.len() as u64 + 1, junk.len() as u64),
        "{s}"
    );
}
