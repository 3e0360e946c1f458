//! Redis out of memory made by hand, for the spell tests of every mode: a
//! redis-server that refuses writes at its limit, a spell begun and ended
//! when a test wants, and what the web entry says meanwhile.
//!
//! A spell is a 2 MiB filler key, then `maxmemory` set 512 KiB below what
//! Redis uses; deleting the filler ends it.
#![cfg(feature = "redis")]

use std::net::SocketAddr;

use super::redis_server::RedisServer;
use super::web::{Reply, request};

/// The key that fills Redis during a spell.
pub const FILLER: &str = "kitchen:test:filler";

/// A redis-server that refuses writes at its limit rather than evicting.
pub fn server() -> RedisServer {
    RedisServer::start_with(&["--maxmemory-policy", "noeviction"])
}

/// A field of `INFO memory`.
pub fn memory(server: &RedisServer, field: &str) -> u64 {
    let info: String = server.query(&["INFO", "memory"]);
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in INFO memory: {info}"))
}

/// Whether Redis is over its limit now.
pub fn out_of_memory(server: &RedisServer) -> bool {
    let max = memory(server, "maxmemory");
    max > 0 && memory(server, "used_memory") > max
}

/// Starts a spell: Redis over its limit by 512 KiB, far more than the
/// dishes, heartbeats and connections of a test come and go by.
pub fn start_spell(server: &RedisServer) {
    let big = "x".repeat(2 << 20);
    let _: () = server.query(&["SET", FILLER, &big]);
    let limit = memory(server, "used_memory") - (512 << 10);
    let _: () = server.query(&["CONFIG", "SET", "maxmemory", &limit.to_string()]);
    assert!(out_of_memory(server), "the spell has begun");
}

/// Ends it: the filler goes, and Redis is 1.5 MiB under its limit.
pub fn end_spell(server: &RedisServer) {
    let _: u64 = server.query(&["DEL", FILLER]);
    assert!(!out_of_memory(server), "the spell is over");
}

/// `POST /dishes` with an empty object.
pub fn post(addr: SocketAddr) -> Reply {
    request(addr, "POST", "/dishes", Some(b"{}"))
}

pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, None)
}

/// Whether `/metrics` shows the gauge at `value`.
pub fn oom_gauge(addr: SocketAddr, value: u8) -> bool {
    get(addr, "/metrics")
        .text()
        .lines()
        .any(|l| l == format!("kitchen_redis_oom {value}"))
}

/// Asserts that `/dishes`, `/prodcons` and `/healthz` answer `503`, retry
/// after 1 s, Redis out of memory, and that `/metrics` shows the gauge up.
pub fn refuses_for_want_of_memory(addr: SocketAddr) {
    for r in [post(addr), get(addr, "/prodcons"), get(addr, "/healthz")] {
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"));
        let why = r.json()["error"].as_str().unwrap_or_default().to_owned();
        assert!(why.contains("redis is out of memory"), "{why}");
    }
    assert!(oom_gauge(addr, 1));
}
