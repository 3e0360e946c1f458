//! Redis out of memory made by hand, for the spell tests of every mode: a
//! redis-server that refuses writes at its limit, a spell begun and ended
//! when a test wants, and what the web entry says meanwhile.
//!
//! A spell is a 2 MiB filler key, then `maxmemory` set 512 KiB below what
//! Redis uses; deleting the filler ends it.
#![cfg(feature = "redis")]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::ledger::Ledger;
use super::redis_server::RedisServer;
use super::web::spawn_serve;
use super::web::{Reply, request};
use super::{KillOnDrop, LIMIT, Lines, last_json, num, signal, wait_until};

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

/// What a spell in the middle of a `kitchen run` showed: its summary, and
/// how long into the spell the queue was drained and the spell lasted.
pub struct RiddenOut {
    pub summary: serde_json::Value,
    pub drained_in: Duration,
    pub lasted: Duration,
}

/// The spell scenario of every mode: `run` (a `kitchen run --ids --json`
/// whose stderr is `err`) has a full queue; a spell begins. The chefs say
/// once that they wait, the diners drain the queue (`drained`) and
/// `beat_key` (a heartbeat or a diner's counts) is refreshed, all during
/// the spell; after it the chefs say they have room and make dishes again.
/// Stopped with Ctrl-C, the run kept the books: made = eaten + left, left 0,
/// every dish made was eaten.
pub fn ride_out_a_spell(
    server: &RedisServer,
    run: KillOnDrop,
    mut out: Lines,
    mut err: Lines,
    drained: impl Fn() -> bool,
    beat_key: &str,
) -> RiddenOut {
    start_spell(server);
    let began = Instant::now();
    let notice = err.wait_for(LIMIT, |l| l.contains("is out of memory"));
    assert!(
        notice.contains("chefs wait until diners free room"),
        "{notice}"
    );
    assert!(notice.contains("maxmemory"), "{notice}");
    // Chefs cannot add a dish; diners still take and eat what waits.
    wait_until(
        LIMIT,
        "the diners to eat the queue during the spell",
        &drained,
    );
    let drained_in = began.elapsed();
    // Heartbeats go on too (a diner presumed dead would have its dishes
    // eaten twice): the TTL rises again.
    let first: i64 = server.query(&["PTTL", beat_key]);
    wait_until(LIMIT, "a heartbeat refreshed during the spell", || {
        server.query::<i64>(&["PTTL", beat_key]) > first
    });
    assert!(
        out_of_memory(server),
        "all of this happened during the spell"
    );

    end_spell(server);
    let lasted = began.elapsed();
    err.wait_for(LIMIT, |l| l.contains("has room again"));
    // The chefs are back at work.
    out.wait_for_n(10, " made dish ");
    let all = run.stop("INT", out);

    let summary = last_json(&all);
    let mut ledger = Ledger::new();
    ledger.read(&all);
    let s = &summary;
    let (made, eaten, left) = (num(s, "made"), num(s, "eaten"), num(s, "left"));
    assert_eq!(made, eaten + left, "made = eaten + left: {s}");
    assert_eq!(left, 0, "{s}");
    assert_eq!(num(s, "lost"), 0, "{s}");
    assert_eq!(ledger.uneaten(), Vec::<String>::new(), "{ledger}");
    RiddenOut {
        summary,
        drained_in,
        lasted,
    }
}

/// The web entry's spell scenario of every mode: `kitchen serve` on
/// `server` in `mode` (with `serve_args` more) takes a dish, then a spell
/// begins: every route that queues answers `503` (out of memory), and a
/// diner (`spawn_diner`) started during the spell eats the waiting dish and
/// records it `eaten` (`drained`: what Redis shows once it is done). After
/// the spell serve accepts again, says it has room, exits 0 on Ctrl-C, and
/// the diner eats both dishes. Answers how long after the spell serve
/// accepted again, and how many requests it refused meanwhile.
pub fn serve_through_a_spell(
    server: &RedisServer,
    mode: &str,
    before: impl FnOnce(),
    spawn_diner: impl FnOnce() -> (KillOnDrop, Lines),
    drained: impl Fn() -> bool,
) -> (Duration, u32) {
    let url = server.url();
    let (serve, addr, mut err) = spawn_serve(&[
        "--backend",
        "redis",
        "--redis-url",
        &url,
        "--mode",
        mode,
        "--capacity",
        "1000",
        "--workers",
        "2",
    ]);
    before();
    let first = post(addr);
    assert_eq!(first.status, 202);
    let location = first.header("location").expect("Location").to_owned();
    assert!(oom_gauge(addr, 0));
    assert_eq!(get(addr, "/healthz").status, 200);

    start_spell(server);
    refuses_for_want_of_memory(addr);
    err.wait_for(LIMIT, |l| l.contains("is out of memory"));
    // A diner started during the spell joins, takes the waiting dish, and
    // records that it ate it.
    let (diner, diner_out) = spawn_diner();
    wait_until(LIMIT, "the diner to eat the dish during the spell", || {
        get(addr, &location).json()["status"] == "eaten"
    });
    wait_until(LIMIT, "the diner to be done with it", &drained);
    assert!(out_of_memory(server), "still in the spell");

    end_spell(server);
    let freed = Instant::now();
    let mut refused_after = 0;
    wait_until(LIMIT, "serve to accept again", || {
        let ok = post(addr).status == 202;
        refused_after += u32::from(!ok);
        ok
    });
    let recovered = freed.elapsed();
    assert_eq!(get(addr, "/healthz").status, 200);
    assert!(oom_gauge(addr, 0));
    err.wait_for(LIMIT, |l| l.contains("has room again"));
    signal(serve.id(), "INT");
    let out = serve.wait(LIMIT);
    assert!(out.status.success(), "{:?}: {:?}", out.status, err.seen);
    wait_until(LIMIT, "the diner to eat the second dish", &drained);
    let s = last_json(&diner.stop("INT", diner_out));
    assert_eq!(num(&s, "eaten"), 2, "both accepted dishes: {s}");
    (recovered, refused_after)
}
