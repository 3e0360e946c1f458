//! Redis failures: each ends in one clear line (exit 1), a usage error (exit 2),
//! or a reconnect; never a panic, never a password on screen.
#![cfg(feature = "redis")]

mod support;

use std::time::{Duration, Instant};

use support::redis_kitchen::{QUEUE, run, spawn, spawn_napping_diner};
use support::redis_server::{RedisServer, free_port};
use support::{LIMIT, Lines, one_error_line, signal, stderr, wait_until};

#[test]
fn an_unreachable_redis_fails_fast_naming_the_address() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/5");
    for role in ["run", "chef", "diner"] {
        let started = Instant::now();
        let out = support::run(&[role, "--backend", "redis", "--redis-url", &url]);
        assert!(started.elapsed() < Duration::from_secs(10));
        let line = one_error_line(&out, &role);
        assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
        assert!(line.contains("redis-server"), "{line}");
    }
}

#[test]
fn a_wrong_password_is_refused_without_showing_it() {
    let server = RedisServer::with_password("right-horse");
    let url = format!("redis://:wrong-battery@127.0.0.1:{}/5", server.port());
    for role in ["run", "info"] {
        let out = support::run(&[role, "--backend", "redis", "--redis-url", &url]);
        let line = one_error_line(&out, &role);
        assert!(line.contains("password"), "{line}");
        assert!(!line.contains("wrong-battery"), "{line}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("wrong-battery"));
    }
    // The right password works, and is not printed either.
    let out = run(
        &server,
        "run",
        &["--dishes", "5", "--max-sleep-ms", "0", "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!all.contains("right-horse"), "{all}");
    let out = run(&server, "info", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(":***@127.0.0.1"), "{text}");
    assert!(!text.contains("right-horse"), "{text}");
}

#[test]
fn a_queue_key_of_another_type_is_named() {
    let server = RedisServer::start();
    let _: () = server.query(&["SET", QUEUE, "oops"]);
    let out = run(&server, "run", &["--dishes", "5"]);
    let line = one_error_line(&out, &"run");
    assert!(line.contains(QUEUE), "{line}");
    assert!(line.contains("holds a string, not a list"), "{line}");
    assert_eq!(server.query::<String>(&["GET", QUEUE]), "oops");
}

#[test]
fn a_malformed_url_is_a_usage_error() {
    for url in [
        "http://127.0.0.1/5",
        "redis://127.0.0.1:notaport/5",
        "redis://127.0.0.1:6379/notadb",
        "redis://:hunter2@127.0.0.1:x/5",
        "rediss://:hunter2@127.0.0.1:6379/5#insecure",
    ] {
        let out = support::run(&["run", "--backend", "redis", "--redis-url", url]);
        assert_eq!(out.status.code(), Some(2), "{url}: {}", stderr(&out));
        assert!(stderr(&out).contains("--redis-url"), "{}", stderr(&out));
        assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
    }
}

#[test]
fn a_run_rides_out_a_redis_restart_and_gives_up_on_a_lasting_outage() {
    let mut server = RedisServer::start();
    let (mut kitchen, mut lines) = spawn(
        &server,
        "run",
        &["--max-sleep-ms", "5", "--reconnect-timeout", "30", "--json"],
    );
    let mut err = Lines::new(kitchen.child().stderr.take().expect("stderr"));
    lines.wait_for(LIMIT, |l| l.contains(" ate dish "));
    server.stop();
    // Bring it back once the kitchen has noticed that it is gone.
    err.wait_for(LIMIT, |l| l.contains("lost redis"));
    server.restart();
    let before = lines.seen.len();
    lines.wait_for_n(20, " ate dish ");
    assert!(lines.seen.len() >= before + 20);
    signal(kitchen.id(), "INT");
    lines.rest(LIMIT);
    err.wait_for(LIMIT, |l| l.contains("reconnected to redis"));
    let out = kitchen.wait(LIMIT);
    assert!(out.status.success(), "{:?}", err.rest(LIMIT));

    // A lasting outage: a clear error after the reconnect timeout.
    let (kitchen, mut lines) = spawn(
        &server,
        "run",
        &["--max-sleep-ms", "5", "--reconnect-timeout", "2"],
    );
    lines.wait_for(LIMIT, |l| l.contains(" ate dish "));
    server.stop();
    let out = kitchen.wait(LIMIT);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains("could not reconnect within 2 s"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn info_shows_the_queue_its_diners_and_dead_letters() {
    let server = RedisServer::start();
    for p in ["1", "junk"] {
        let _: u64 = server.query(&["LPUSH", QUEUE, p]);
    }
    // A diner that holds dish 1 for a long nap; junk waits behind it.
    let (diner, mut lines) = spawn_napping_diner(&server, &["--heartbeat-ttl", "1"]);
    lines.wait_for(LIMIT, |l| l.contains("ate dish 1 "));
    let dead = format!("{{{QUEUE}}}:dead");
    let _: u64 = server.query(&["LPUSH", &dead, "older junk"]);
    let out = run(&server, "info", &["--json", "--capacity", "7"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("info JSON");
    assert_eq!(v["length"], 1, "{v}");
    assert_eq!(v["capacity"], 7, "no chef has run: the flag's {v}");
    assert_eq!(v["capacity_from_chefs"], false, "{v}");
    assert_eq!(v["dead"], 1, "{v}");
    let diners = v["diners"].as_array().expect("diners");
    assert_eq!(diners.len(), 1, "{v}");
    assert_eq!(diners[0]["alive"], true, "{v}");
    assert_eq!(diners[0]["holding"], serde_json::json!(["1"]), "{v}");
    assert_eq!(v["subscribers"], 0, "{v}");
    let table = run(&server, "info", &[]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("waiting      1 of 10"), "{text}");
    assert!(text.contains("1 live, 1 registered"), "{text}");
    // Killed, its heartbeat (1 s) runs out; with no live diner to put its
    // dish back, info shows it dead and still holding the dish.
    signal(diner.id(), "KILL");
    wait_until(LIMIT, "the diner to show dead", || {
        let out = run(&server, "info", &["--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("info JSON");
        v["diners"][0]["alive"] == false && v["diners"][0]["holding"] == serde_json::json!(["1"])
    });
}

/// A chef that gives up on a Redis that went away still tells what it made:
/// the summary comes before the error, and what it cannot know is null.
#[test]
fn a_chef_that_gives_up_on_redis_still_prints_its_summary() {
    let mut redis = support::redis_server::RedisServer::start();
    let url = redis.url();
    let (chef, mut lines) = support::spawn_lines(&[
        "chef",
        "--redis-url",
        &url,
        "--unbounded",
        "--max-sleep-ms",
        "20",
        "--reconnect-timeout",
        "1",
        "--json",
    ]);
    lines.wait_for_n(3, " made dish ");
    redis.stop();
    let out = chef.wait(support::LIMIT);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = support::stderr(&out);
    assert!(err.contains("could not reconnect"), "{err}");
    let s = support::last_json(&lines.rest(support::LIMIT));
    assert!(support::num(&s, "made") >= 3, "{s}");
    assert!(s["eaten"].is_null() && s["diners"].is_null(), "{s}");
    assert!(s["latency_us"].is_null(), "{s}");
}
