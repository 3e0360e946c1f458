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
