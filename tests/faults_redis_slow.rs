//! Faults: a slow Redis (`DEBUG SLEEP`) is busy, not gone. The web entry
//! answers `503` while Redis still sleeps, and says in its log that Redis
//! did not answer in time, not that it could not reconnect; `202` once
//! Redis wakes. A `kitchen run` waits it out and eats every dish.
#![cfg(feature = "redis")]

mod support;

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::ledger::Ledger;
use support::redis_kitchen::{QUEUE, holdings, spawn};
use support::redis_server::RedisServer;
use support::web::{request, spawn_serve};
use support::{LIMIT, Lines, finished_within, join_within, last_json, num, signal, wait_until};

/// A redis-server that takes `DEBUG SLEEP` (off by default since Redis 7).
fn server() -> RedisServer {
    RedisServer::start_with(&["--enable-debug-command", "yes"])
}

/// Puts Redis to sleep for `secs` on a thread of its own; returns once
/// Redis has stopped answering (a probe with a short timeout fails), with
/// the thread, which ends when Redis wakes.
fn put_to_sleep(server: &RedisServer, secs: u64) -> JoinHandle<()> {
    let mut con = server.connection();
    con.set_read_timeout(Some(Duration::from_secs(secs + 30)))
        .expect("read timeout");
    let sleeper = std::thread::spawn(move || {
        let _: () = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(secs)
            .query(&mut con)
            .expect("DEBUG SLEEP");
    });
    let client = redis::Client::open(server.url()).expect("url");
    wait_until(LIMIT, "redis to fall asleep", || {
        let probe = client.get_connection_with_timeout(Duration::from_millis(200));
        let Ok(mut c) = probe else { return true };
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        redis::cmd("PING").query::<String>(&mut c).is_err()
    });
    sleeper
}

#[test]
fn serve_answers_a_sleeping_redis_with_503_before_it_wakes() {
    let server = server();
    let url = server.url();
    let (serve, addr, mut err) =
        spawn_serve(&["--backend", "redis", "--redis-url", &url, "--workers", "2"]);
    assert_eq!(request(addr, "POST", "/dishes", Some(b"{}")).status, 202);

    let sleeper = put_to_sleep(&server, 10);
    let mut timings = Vec::new();
    for (method, path) in [
        ("POST", "/dishes"),
        ("GET", "/healthz"),
        ("POST", "/dishes"),
    ] {
        let asked = Instant::now();
        let r = request(addr, method, path, (method == "POST").then_some(&b"{}"[..]));
        timings.push(asked.elapsed());
        assert_eq!(r.status, 503, "{path}: {}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(
            !sleeper.is_finished(),
            "{path} was answered only once redis woke"
        );
    }
    let said = err.wait_for(LIMIT, |l| l.contains("did not answer within"));
    assert!(said.contains("busy or overloaded"), "{said}");
    join_within(sleeper, LIMIT, "DEBUG SLEEP");
    wait_until(LIMIT, "serve to accept again", || {
        request(addr, "POST", "/dishes", Some(b"{}")).status == 202
    });
    signal(serve.id(), "INT");
    let out = serve.wait(LIMIT);
    assert!(out.status.success(), "{:?}", err.seen);
    let log = err.rest(LIMIT).join("\n");
    assert!(!log.contains("could not reconnect"), "{log}");
    assert!(!log.contains("check that redis-server is running"), "{log}");
    eprintln!(
        "faults: DEBUG SLEEP 10 under serve: 503 after {}",
        timings
            .iter()
            .map(|t| format!("{:.2} s", t.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[test]
fn a_run_waits_out_a_sleeping_redis_and_eats_every_dish() {
    let server = server();
    let (mut run, mut out) = spawn(&server, "run", &["--max-sleep-ms", "20", "--ids", "--json"]);
    let mut err = Lines::new(run.child().stderr.take().expect("stderr"));
    out.wait_for_n(5, " ate dish ");
    // Longer than a reply may take (5 s): every connection times out.
    let sleeper = put_to_sleep(&server, 7);
    let said = err.wait_for(LIMIT, |l| l.contains("did not answer in time"));
    assert!(said.contains("busy or overloaded"), "{said}");
    assert!(finished_within(&sleeper, LIMIT), "DEBUG SLEEP did not end");
    err.wait_for(LIMIT, |l| l.contains("reconnected to redis"));
    out.wait_for_n(5, " ate dish ");
    let all = run.stop("INT", out);
    let s = last_json(&all);
    let mut ledger = Ledger::new();
    ledger.read(&all);
    assert_eq!(ledger.uneaten(), Vec::<String>::new(), "{ledger}");
    assert_eq!(num(&s, "left"), 0, "{s}");
    assert_eq!(holdings(&server, QUEUE).total(), 0);
    assert!(
        !err.seen.iter().any(|l| l.contains("lost redis")),
        "{:?}",
        err.seen
    );
}
