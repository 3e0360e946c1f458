//! Kitchen processes against a test redis-server: arguments and spawned children.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;
use std::time::{Duration, Instant};

use super::redis_server::{OUTAGE, RedisServer};
use super::{KillOnDrop, LIMIT, Lines, last_json};

/// `ROLE --backend redis --redis-url URL ARGS…`.
pub fn args(server: &RedisServer, role: &str, rest: &[&str]) -> Vec<String> {
    super::roles::role_args(role, &server.url(), &[], rest)
}

/// Runs `kitchen ROLE --backend redis … ARGS` to completion.
pub fn run(server: &RedisServer, role: &str, rest: &[&str]) -> Output {
    super::run(&args(server, role, rest))
}

/// Runs it with `--json` and returns its summary (it must succeed).
pub fn run_json(server: &RedisServer, role: &str, rest: &[&str]) -> serde_json::Value {
    super::run_json(&args(server, role, rest))
}

/// Starts `kitchen ROLE --backend redis … ARGS` in the background, its
/// stdout as lines; killed when dropped.
pub fn spawn(server: &RedisServer, role: &str, rest: &[&str]) -> (KillOnDrop, Lines) {
    super::spawn_lines(&args(server, role, rest))
}

/// `kitchen diner --burst --max-sleep-ms 0 --json --exec CMD ARGS…` to
/// completion (list mode unless ARGS say otherwise): it eats what is queued
/// with no naps, then exits; its output.
pub fn burst(server: &RedisServer, cmd: &str, rest: &[&str]) -> Output {
    let mut a = vec!["--burst", "--max-sleep-ms", "0", "--json", "--exec", cmd];
    a.extend_from_slice(rest);
    run(server, "diner", &a)
}

/// As [`burst`], which must succeed: its summary.
pub fn burst_json(server: &RedisServer, cmd: &str, rest: &[&str]) -> serde_json::Value {
    let out = burst(server, cmd, rest);
    // Shown with a failing test's output, as `run_json` does.
    eprint!("{}", super::stderr(&out));
    assert!(
        out.status.success(),
        "diner --burst --exec {cmd:?} {rest:?} failed: {}",
        super::stderr(&out)
    );
    super::summary(&out)
}

/// A list-mode diner process with one diner thread that naps for minutes
/// on the first dish it takes (a seeded nap below ten minutes, the same on
/// every run), so it holds that dish until it is killed; `extra` as for [`spawn`].
pub fn spawn_napping_diner(server: &RedisServer, extra: &[&str]) -> (KillOnDrop, Lines) {
    let mut rest = vec!["--diners", "1", "--max-sleep-ms", "600000", "--seed", "3"];
    rest.extend_from_slice(extra);
    spawn(server, "diner", &rest)
}

/// The tutorial's list key, kitchen's default `--queue`.
pub const QUEUE: &str = "task:prodcons:queue";

/// What Redis holds of one list-mode queue, by where it sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holdings {
    /// Waiting in the queue.
    pub queue: u64,
    /// Held by diners, in their processing lists.
    pub processing: u64,
    /// Set aside as not dishes.
    pub dead: u64,
    /// Registered diners.
    pub diners: u64,
}

impl Holdings {
    /// Dishes (and payloads) still in Redis, wherever they sit.
    pub fn total(&self) -> u64 {
        self.queue + self.processing + self.dead
    }
}

/// Reads [`Holdings`] of `queue` from Redis itself.
pub fn holdings(server: &RedisServer, queue: &str) -> Holdings {
    let processing = server
        .keys(&format!("{{{queue}}}:processing:*"))
        .iter()
        .map(|k| server.llen(k))
        .sum();
    Holdings {
        queue: server.llen(queue),
        processing,
        dead: server.llen(&format!("{{{queue}}}:dead")),
        diners: server.query(&["SCARD", &format!("{{{queue}}}:diners")]),
    }
}

/// What the diners of process `pid` hold in their processing lists.
pub fn held_by(server: &RedisServer, queue: &str, pid: u32) -> u64 {
    server
        .keys(&format!("{{{queue}}}:processing:diner-{pid}-*"))
        .iter()
        .map(|k| server.llen(k))
        .sum()
}

/// The tutorial's channel, kitchen's default `--channel`.
pub const CHANNEL: &str = "task:pubsub:channel";

/// Subscribers of [`CHANNEL`] now.
pub fn subscribers(server: &RedisServer) -> u64 {
    server
        .query::<(String, u64)>(&["PUBSUB", "NUMSUB", CHANNEL])
        .1
}

/// A pub/sub diner process with `diners` diner threads (`--max-sleep-ms 0
/// --json` and `extra`), once every one has subscribed: the child, its
/// stdout and its stderr.
pub fn spawn_subscribers(
    server: &RedisServer,
    diners: u64,
    extra: &[&str],
) -> (KillOnDrop, Lines, Lines) {
    let diners_s = diners.to_string();
    let mut rest = vec![
        "--mode",
        "pubsub",
        "--diners",
        &diners_s,
        "--max-sleep-ms",
        "0",
        "--json",
    ];
    rest.extend_from_slice(extra);
    let before = subscribers(server);
    let (mut child, out) = spawn(server, "diner", &rest);
    let err = Lines::new(child.child().stderr.take().expect("stderr"));
    super::wait_until(LIMIT, "the diners to subscribe", || {
        subscribers(server) >= before + diners
    });
    (child, out, err)
}

/// A pub/sub chef process with one chef thread (one unbroken stream of ids),
/// `--quiet --json` and `extra`.
pub fn spawn_publisher(server: &RedisServer, extra: &[&str]) -> (KillOnDrop, Lines) {
    let mut rest = vec!["--mode", "pubsub", "--chefs", "1", "--quiet", "--json"];
    rest.extend_from_slice(extra);
    spawn(server, "chef", &rest)
}

/// Ends a pub/sub scenario: Ctrl-C to the chef, then a marker published
/// after all its dishes; once the diner has read the marker it has had every
/// dish it will ever get, and gets its Ctrl-C. Both must exit 0. Returns the
/// chef's summary and the diner's stdout.
pub fn finish_pubsub(
    server: &RedisServer,
    (chef, chef_out): (KillOnDrop, Lines),
    (diner, mut diner_out): (KillOnDrop, Lines),
) -> (serde_json::Value, Vec<String>) {
    let chef_summary = last_json(&chef.stop("INT", chef_out));
    // A corrupt envelope of ours: refused, so its line marks the end.
    let _: u64 = server.query(&["PUBLISH", CHANNEL, r#"{"id":"end of test"}"#]);
    diner_out.wait_for(LIMIT, |l| l.contains("rejected a payload"));
    (chef_summary, diner.stop("INT", diner_out))
}

/// Writes a dead letter onto `QUEUE`'s dead-letter list as a diner would
/// (newest first), `wire` being what a requeue puts back: for the page's and
/// `info --watch`'s tests, which need dead letters without waiting for a
/// dish to fail its attempts.
pub fn bury_by_hand(server: &RedisServer, id: &str, payload: &str, reason: &str) {
    let letter = serde_json::json!({
        "id": id,
        "payload": payload,
        "bytes": payload.len(),
        "reason": reason,
        "attempts": 3,
        "at": 1_764_379_200_000_000_u64,
        "wire": payload,
    });
    let _: i64 = server.query(&["LPUSH", &format!("{{{QUEUE}}}:dead"), &letter.to_string()]);
}

/// A Redis outage in the middle of a run: stops `server`, waits until every
/// process says it lost Redis (`errs`: their stderr), keeps Redis down for
/// the rest of [`OUTAGE`] (the outage itself, not a wait for an event),
/// restarts it, and waits until every process says it reconnected. Answers
/// how long Redis was down, and how long after the restart the slowest
/// process reconnected.
pub fn outage(server: &mut RedisServer, errs: &mut [Lines]) -> (Duration, Duration) {
    server.stop();
    let down = Instant::now();
    for e in errs.iter_mut() {
        e.wait_for(LIMIT, |l| l.contains("lost redis"));
    }
    std::thread::sleep(OUTAGE.saturating_sub(down.elapsed()));
    server.restart();
    let back = Instant::now();
    for e in errs.iter_mut() {
        e.wait_for(LIMIT, |l| l.contains("reconnected to redis"));
    }
    (back.duration_since(down), back.elapsed())
}
