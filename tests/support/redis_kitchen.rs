//! Kitchen processes against a test redis-server: arguments and spawned children.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Output, Stdio};
use std::time::Duration;

use super::redis_server::RedisServer;
use super::{KillOnDrop, Lines, kitchen, summary, wait_output};

/// The deadline for any one kitchen process in these tests.
pub const LIMIT: Duration = Duration::from_secs(60);

/// `ROLE --backend redis --redis-url URL ARGS…`.
pub fn args(server: &RedisServer, role: &str, rest: &[&str]) -> Vec<String> {
    let mut v = vec![
        role.to_owned(),
        "--backend".into(),
        "redis".into(),
        "--redis-url".into(),
        server.url(),
    ];
    v.extend(rest.iter().map(|s| (*s).to_owned()));
    v
}

/// Starts `kitchen ROLE --backend redis … ARGS` with its output piped.
fn start(server: &RedisServer, role: &str, rest: &[&str]) -> Child {
    kitchen()
        .args(args(server, role, rest))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kitchen")
}

/// Runs `kitchen ROLE --backend redis … ARGS` to completion.
pub fn run(server: &RedisServer, role: &str, rest: &[&str]) -> Output {
    wait_output(start(server, role, rest), LIMIT)
}

/// Runs it and returns its JSON summary (it must succeed).
pub fn run_json(server: &RedisServer, role: &str, rest: &[&str]) -> serde_json::Value {
    let mut rest = rest.to_vec();
    rest.push("--json");
    let out = run(server, role, &rest);
    // Shown with a failing test's output: reconnect notices and the like.
    eprint!("{}", stderr(&out));
    assert!(
        out.status.success(),
        "kitchen {role} {rest:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    summary(&out)
}

/// Starts `kitchen ROLE --backend redis … ARGS` in the background, its
/// stdout as lines; killed when dropped.
pub fn spawn(server: &RedisServer, role: &str, rest: &[&str]) -> (KillOnDrop, Lines) {
    let mut child = KillOnDrop::new(start(server, role, rest));
    let lines = Lines::new(child.child().stdout.take().expect("stdout"));
    (child, lines)
}

/// The stderr of a finished child, for messages.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The JSON summary among collected stdout lines (the last one).
pub fn last_json(lines: &[String]) -> serde_json::Value {
    let last = lines.last().expect("a summary line");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{last:?} is not JSON: {e}"))
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
        .keys(&format!("{queue}:processing:*"))
        .iter()
        .map(|k| server.llen(k))
        .sum();
    Holdings {
        queue: server.llen(queue),
        processing,
        dead: server.llen(&format!("{queue}:dead")),
        diners: server.query(&["SCARD", &format!("{queue}:diners")]),
    }
}

/// What the diners of process `pid` hold in their processing lists.
pub fn held_by(server: &RedisServer, queue: &str, pid: u32) -> u64 {
    server
        .keys(&format!("{queue}:processing:diner-{pid}-*"))
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

/// A pub/sub diner process with one diner thread (`--max-sleep-ms 0 --json`
/// and `extra`), once it has subscribed: the child, its stdout and its stderr.
pub fn spawn_subscriber(server: &RedisServer, extra: &[&str]) -> (KillOnDrop, Lines, Lines) {
    let mut rest = vec![
        "--mode",
        "pubsub",
        "--diners",
        "1",
        "--max-sleep-ms",
        "0",
        "--json",
    ];
    rest.extend_from_slice(extra);
    let before = subscribers(server);
    let (mut child, out) = spawn(server, "diner", &rest);
    let err = Lines::new(child.child().stderr.take().expect("stderr"));
    super::wait_until(LIMIT, "the diner to subscribe", || {
        subscribers(server) > before
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
    (chef, mut chef_out): (KillOnDrop, Lines),
    (diner, mut diner_out): (KillOnDrop, Lines),
) -> (serde_json::Value, Vec<String>) {
    super::signal(chef.id(), "INT");
    let chef_summary = last_json(&chef_out.rest(LIMIT));
    let out = chef.wait(LIMIT);
    assert!(out.status.success(), "chef: {}", stderr(&out));
    let _: u64 = server.query(&["PUBLISH", CHANNEL, "end of test"]);
    diner_out.wait_for(LIMIT, |l| l.contains("rejected a payload"));
    super::signal(diner.id(), "INT");
    let lines = diner_out.rest(LIMIT);
    let out = diner.wait(LIMIT);
    assert!(out.status.success(), "diner: {}", stderr(&out));
    (chef_summary, lines)
}
