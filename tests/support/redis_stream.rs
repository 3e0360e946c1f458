//! Stream-mode kitchens against a test redis-server: their arguments, and
//! what Redis holds of a stream and its consumer groups.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use redis::Value;

use super::redis_kitchen;
use super::redis_server::RedisServer;
use super::{KillOnDrop, Lines};

/// Kitchen's default `--stream`.
pub const STREAM: &str = "task:prodcons:stream";
/// Kitchen's default `--group`.
pub const GROUP: &str = "kitchen";

/// `ROLE --backend redis --redis-url URL --mode stream ARGS…`.
fn with_mode<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--mode", "stream"];
    v.extend_from_slice(rest);
    v
}

/// Runs a stream-mode `kitchen ROLE … --json`, which must succeed; its summary.
pub fn run_json(server: &RedisServer, role: &str, rest: &[&str]) -> serde_json::Value {
    redis_kitchen::run_json(server, role, &with_mode(rest))
}

/// Starts a stream-mode `kitchen ROLE …` in the background, its stdout as lines.
pub fn spawn(server: &RedisServer, role: &str, rest: &[&str]) -> (KillOnDrop, Lines) {
    redis_kitchen::spawn(server, role, &with_mode(rest))
}

/// `XADD stream * FIELD VALUE…`; the new entry's id.
pub fn xadd(server: &RedisServer, stream: &str, fields: &[&str]) -> String {
    let mut args = vec!["XADD", stream, "*"];
    args.extend_from_slice(fields);
    server.query(&args)
}

/// `XLEN stream`.
pub fn xlen(server: &RedisServer, stream: &str) -> u64 {
    server.query(&["XLEN", stream])
}

/// One consumer group, as XINFO GROUPS shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub consumers: u64,
    /// Delivered, not acknowledged.
    pub pending: u64,
    /// Not yet delivered (`None`: Redis cannot tell).
    pub lag: Option<u64>,
}

impl Group {
    /// Everything delivered and acknowledged.
    pub fn drained(&self) -> bool {
        self.pending == 0 && self.lag == Some(0)
    }
}

/// The groups of `stream` (none when it does not exist).
pub fn groups(server: &RedisServer, stream: &str) -> Vec<Group> {
    let kind: String = server.query(&["TYPE", stream]);
    if kind != "stream" {
        return Vec::new();
    }
    let raw: Vec<Vec<Value>> = server.query(&["XINFO", "GROUPS", stream]);
    raw.into_iter()
        .map(|flat| {
            let field = |name: &str| {
                flat.chunks(2)
                    .find(|kv| matches!(&kv[0], Value::BulkString(k) if k == name.as_bytes()))
                    .map(|kv| kv[1].clone())
            };
            let int = |name: &str| match field(name) {
                Some(Value::Int(n)) => u64::try_from(n).ok(),
                _ => None,
            };
            let name = match field("name") {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
                other => panic!("a group without a name: {other:?}"),
            };
            Group {
                name,
                consumers: int("consumers").unwrap_or(0),
                pending: int("pending").unwrap_or(0),
                lag: int("lag"),
            }
        })
        .collect()
}

/// The group `name` of `stream`, if it exists.
pub fn group(server: &RedisServer, stream: &str, name: &str) -> Option<Group> {
    groups(server, stream).into_iter().find(|g| g.name == name)
}

/// Whether the group exists and has everything delivered and acknowledged.
pub fn drained(server: &RedisServer, stream: &str, name: &str) -> bool {
    group(server, stream, name).is_some_and(|g| g.drained())
}

/// The owner of each pending entry of a group: `(entry id, consumer)`.
pub fn pending_owners(server: &RedisServer, stream: &str, group: &str) -> Vec<(String, String)> {
    let rows: Vec<(String, String, u64, u64)> =
        server.query(&["XPENDING", stream, group, "-", "+", "1000"]);
    rows.into_iter()
        .map(|(id, owner, _, _)| (id, owner))
        .collect()
}
