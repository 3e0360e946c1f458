//! `kitchen info --watch` against a real redis-server and a real diner
//! process: frames (separated by `----` when stdout is not a terminal) show
//! the queue against its bound, dead letters, and each live diner with what
//! it holds and its counts read from its heartbeat; SIGINT ends it with 0.
#![cfg(feature = "redis")]

mod support;

use support::redis_kitchen::{QUEUE, args, bury_by_hand, run, spawn};
use support::redis_server::RedisServer;
use support::{LIMIT, Lines, one_error_line, spawn_lines, stderr};

/// Reads the next whole frame: the lines up to the separator.
fn frame(lines: &mut Lines) -> String {
    let start = lines.seen.len();
    lines.wait_for(LIMIT, |l| l == "----");
    lines.seen[start..lines.seen.len() - 1].join("\n")
}

/// Reads frames until one satisfies `want` (the diner's heartbeat brings
/// its counts within a beat); returns it.
fn frame_where(lines: &mut Lines, what: &str, want: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let f = frame(lines);
        if want(&f) {
            return f;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no frame with {what}; last:\n{f}"
        );
    }
}

#[test]
fn watch_shows_depth_dead_letters_and_each_diners_hold_and_counts() {
    let server = RedisServer::start();
    // One dish eaten, one failed (dead-lettered), the third held for
    // minutes, the fourth waiting; one more dead letter, and four trimmed.
    let out = run(&server, "enqueue", &["one", "bad", "hold", "four"]);
    assert!(out.status.success(), "{}", stderr(&out));
    bury_by_hand(&server, "d-1", "7", "by hand");
    let _: String = server.query(&["SET", &format!("{{{QUEUE}}}:dead:trimmed"), "4"]);
    // A failed dish waiting out a long delay, as a diner sets it aside.
    let _: i64 = server.query(&["ZADD", &format!("{{{QUEUE}}}:retry"), "9999999999999", "8"]);
    let (diner, mut diner_lines) = spawn(
        &server,
        "diner",
        &[
            "--diners",
            "1",
            "--max-sleep-ms",
            "0",
            "--max-attempts",
            "1",
            "--exec",
            r#"p=$(cat); case "$p" in bad) exit 3;; hold) sleep 600;; esac"#,
        ],
    );
    let _ = &mut diner_lines;
    let (watch, mut lines) = spawn_lines(&args(&server, "info", &["--watch"]));
    let first = frame(&mut lines);
    assert!(first.contains("kitchen info --watch"), "{first}");
    assert!(first.contains("dead letters"), "{first}");
    let f = frame_where(&mut lines, "the diner's counts and hold", |f| {
        f.contains("eaten 1, failed 1") && f.contains("holding 1 for")
    });
    assert!(f.contains(&format!("{QUEUE}: 1 of 10 waiting")), "{f}");
    assert!(f.contains("2 dead letters, 4 trimmed"), "{f}");
    assert!(f.contains(": hold; eaten 1, failed 1"), "{f}");
    assert!(f.contains("1 waiting to be retried"), "{f}");
    assert!(f.contains("diners       1 live"), "{f}");
    // A second frame in a row, with rates once two frames are in.
    let next = frame(&mut lines);
    assert!(next.contains("eaten ") && next.contains("/s"), "{next}");
    watch.stop("INT", lines);
    // `info --json` carries the same, for scripts.
    let out = run(&server, "info", &["--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("info JSON");
    let d = &v["diners"][0];
    assert_eq!(
        (d["eaten"].as_u64(), d["failed"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    assert!(d["held_since_us"].as_u64().is_some(), "{v}");
    assert_eq!(
        (v["dead_trimmed"].as_u64(), v["waiting_retries"].as_u64()),
        (Some(4), Some(1)),
        "{v}"
    );
    drop(diner);
}

#[test]
fn watch_of_an_unreachable_redis_is_one_line_and_exit_1() {
    let server = RedisServer::start();
    let url = server.url();
    drop(server);
    let args = ["info", "--watch", "--redis-url", &url];
    let out = support::run(&args);
    one_error_line(&out, &args);
    assert!(out.stdout.is_empty(), "no frame drawn");
}

#[test]
fn watch_and_json_do_not_mix() {
    let out = support::run(&["info", "--watch", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn watch_shows_each_stream_consumer_with_its_hold_and_counts() {
    let server = RedisServer::start();
    // `XADD S * dish PAYLOAD` is a dish, as any producer may add it.
    for payload in ["one", "bad", "hold", "four"] {
        let _: String = server.query(&["XADD", "task:prodcons:stream", "*", "dish", payload]);
    }
    let (_diner, _diner_lines) = spawn(
        &server,
        "diner",
        &[
            "--mode",
            "stream",
            "--diners",
            "1",
            "--max-sleep-ms",
            "0",
            "--max-attempts",
            "1",
            "--exec",
            r#"p=$(cat); case "$p" in bad) exit 3;; hold) sleep 600;; esac"#,
        ],
    );
    let (watch, mut lines) = spawn_lines(&args(&server, "info", &["--watch"]));
    let f = frame_where(&mut lines, "the consumer's counts and hold", |f| {
        f.contains("eaten 1, failed 1") && f.contains("holding 1 for")
    });
    assert!(f.contains("group kitchen:"), "{f}");
    assert!(
        f.contains("1 dead letters"),
        "the stream's dead letter: {f}"
    );
    watch.stop("INT", lines);
}

#[test]
fn watch_shows_each_shard_and_the_whole_queue() {
    let server = RedisServer::start();
    let out = run(
        &server,
        "chef",
        &[
            "--shards",
            "3",
            "--capacity",
            "9",
            "--dishes",
            "6",
            "--max-sleep-ms",
            "0",
            "--quiet",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (watch, mut lines) = spawn_lines(&args(
        &server,
        "info",
        &["--watch", "--shards", "3", "--capacity", "9"],
    ));
    let f = frame(&mut lines);
    assert!(f.contains(&format!("{QUEUE}: 6 of 9 waiting")), "{f}");
    for n in 0..3 {
        assert!(f.contains(&format!("shard {n:<6} 2 of 3, 0 dead")), "{f}");
    }
    watch.stop("INT", lines);
}
