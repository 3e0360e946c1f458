//! Faults, web entry: `kitchen serve` on Redis answers 503 during a Redis
//! restart and 2xx after it, and SIGTERM or Ctrl-C stops it with exit 0;
//! every dish it accepted (202) is eaten or still in Redis.
#![cfg(feature = "redis")]

mod support;

use std::net::SocketAddr;
use std::time::Instant;

use support::ledger::{Ledger, payload_ids};
use support::redis_kitchen::{QUEUE, holdings, spawn};
use support::redis_server::RedisServer;
use support::web::{spawn_serve, try_request};
use support::{KillOnDrop, LIMIT, join_within, signal, stderr, wait_until};

/// `kitchen serve` on `server`, with room for every dish the test queues.
fn serve_on(server: &RedisServer) -> (KillOnDrop, SocketAddr) {
    let url = server.url();
    let (child, addr, _) = spawn_serve(&[
        "--backend",
        "redis",
        "--redis-url",
        &url,
        "--capacity",
        "100000",
        "--workers",
        "4",
    ]);
    (child, addr)
}

/// `POST /dishes`: the status, and the id when accepted.
fn post(addr: SocketAddr) -> (u16, Option<String>) {
    match try_request(addr, "POST", "/dishes", b"") {
        Some(r) if r.status == 202 => (202, r.json()["id"].as_str().map(str::to_owned)),
        Some(r) => (r.status, None),
        None => (0, None),
    }
}

#[test]
fn serve_is_503_while_redis_restarts_2xx_after_and_loses_nothing() {
    let mut server = RedisServer::durable(&[]);
    let (serve, addr) = serve_on(&server);
    let (diner, lines) = spawn(
        &server,
        "diner",
        &["--max-sleep-ms", "0", "--ids", "--json"],
    );
    let mut accepted = Vec::new();
    let accept = |n: usize, accepted: &mut Vec<String>| {
        for _ in 0..n {
            let (status, id) = post(addr);
            assert_eq!(status, 202);
            accepted.extend(id);
        }
    };
    accept(100, &mut accepted);
    server.stop();
    let down = Instant::now();
    for path in ["/dishes", "/prodcons", "/pubsub", "/healthz"] {
        let method = if path == "/dishes" { "POST" } else { "GET" };
        let r = try_request(addr, method, path, b"").expect("an answer");
        assert_eq!(r.status, 503, "{path} during the gap: {}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"), "{path}");
    }
    let refused_in = down.elapsed();
    server.restart();
    let back = Instant::now();
    let mut refused_after_restart = 0;
    wait_until(LIMIT, "serve to accept again", || {
        let (status, id) = post(addr);
        accepted.extend(id);
        refused_after_restart += u32::from(status == 503);
        status == 202
    });
    let recovered = back.elapsed();
    accept(100, &mut accepted);
    wait_until(LIMIT, "the diner to eat everything", || {
        let h = holdings(&server, QUEUE);
        h.queue == 0 && h.processing == 0
    });
    let mut ledger = Ledger::new();
    ledger.read(&diner.stop("INT", lines));
    let uneaten: Vec<&String> = accepted
        .iter()
        .filter(|id| ledger.eaten_times(id) == 0)
        .collect();
    assert!(uneaten.is_empty(), "accepted, never eaten: {uneaten:?}");
    assert_eq!(accepted.len(), 201);
    // Dishes eaten that serve never said 202 to: queued by a request whose
    // answer was a 503 (its reply lost with the old connection).
    let unconfirmed = ledger.eaten() - accepted.len() as u64;
    signal(serve.id(), "TERM");
    let out = serve.wait(LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    eprintln!(
        "faults: serve across a redis restart: {} accepted, all eaten ({} duplicates, {unconfirmed} eaten without a 202); \
         503 within {:.3} s of the crash; {refused_after_restart} more 503 after the restart; 202 again {:.2} s after it",
        accepted.len(),
        ledger.duplicates(),
        refused_in.as_secs_f64(),
        recovered.as_secs_f64()
    );
}

/// SIGTERM or Ctrl-C while a client keeps queueing: serve exits 0 and every
/// dish it accepted is in Redis.
fn serve_stops_on(sig: &str) {
    let server = RedisServer::start();
    let (serve, addr) = serve_on(&server);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let client = std::thread::spawn(move || {
        let mut refused = 0;
        loop {
            match post(addr) {
                (202, Some(id)) => {
                    if tx.send(id).is_err() {
                        break;
                    }
                }
                (0, _) => break, // the server is gone
                _ => refused += 1,
            }
        }
        refused
    });
    let deadline = Instant::now() + LIMIT;
    let mut accepted: Vec<String> = (0..50)
        .map(|n| {
            let left = deadline.saturating_duration_since(Instant::now());
            rx.recv_timeout(left)
                .unwrap_or_else(|e| panic!("{n} of 50 dishes accepted within {LIMIT:?}: {e}"))
        })
        .collect();
    signal(serve.id(), sig);
    let out = serve.wait(LIMIT);
    assert!(out.status.success(), "SIG{sig}: {}", stderr(&out));
    let refused = join_within(client, LIMIT, "the client");
    accepted.extend(rx.try_iter());
    let queued = payload_ids(&server.lrange(QUEUE));
    let missing: Vec<&String> = accepted
        .iter()
        .filter(|id| queued.binary_search(id).is_err())
        .collect();
    assert!(missing.is_empty(), "accepted and gone: {missing:?}");
    assert!(
        refused == 0,
        "SIG{sig}: {refused} requests refused while stopping"
    );
}

#[test]
fn sigterm_to_serve_keeps_every_accepted_dish() {
    serve_stops_on("TERM");
}

#[test]
fn ctrl_c_to_serve_keeps_every_accepted_dish() {
    serve_stops_on("INT");
}
