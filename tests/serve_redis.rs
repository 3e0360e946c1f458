//! The web entry on Redis: produce only, results written by `kitchen diner`
//! processes, pub/sub, refusals, and riding out a Redis restart.
#![cfg(feature = "redis")]

mod support;

use kitchen::queue::Capacity;
use support::redis_kitchen::{QUEUE, spawn, spawn_napping_diner, spawn_subscribers};
use support::redis_server::RedisServer;
use support::web::{serve_on, siege, spawn_serve, try_request};
use support::{LIMIT, run, wait_until};

#[test]
fn prodcons_pushes_onto_the_list_and_full_is_503_at_once() {
    let redis = RedisServer::start();
    let s = serve_on(&redis, Capacity::Bounded(2));
    assert_eq!(s.get("/prodcons").status, 302);
    assert_eq!(redis.llen(QUEUE), 1);
    assert_eq!(s.post("/dishes", r#"{"dish":4}"#).status, 202);
    for r in [s.get("/prodcons"), s.post("/dishes", "")] {
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    assert_eq!(redis.llen(QUEUE), 2, "nothing past the capacity");
    let stats = s.get("/stats").json();
    assert_eq!(stats["backend"], "redis");
    assert_eq!(
        (stats["queued"].as_u64(), stats["made"].as_u64()),
        (Some(2), Some(2))
    );
    assert!(
        stats["eaten"].is_null(),
        "diners are other processes: {stats}"
    );
    let page = s.get("/").text();
    assert!(page.contains(r#"<dd id="queued">2</dd>"#), "{page}");
    assert!(!page.contains("needs --backend redis"));
    assert!(
        page.contains("<code>kitchen diner</code> processes"),
        "{page}"
    );
}

#[test]
fn pubsub_publishes_and_counts_subscribers() {
    let redis = RedisServer::start();
    let s = serve_on(&redis, Capacity::Bounded(10));
    // Nobody listens: published, and counted as lost.
    assert_eq!(s.get("/pubsub").status, 302);
    let stats = s.get("/stats").json();
    assert_eq!(
        (stats["lost"].as_u64(), stats["subscribers"].as_u64()),
        (Some(1), Some(0))
    );
    let (_diner, mut lines, _err) = spawn_subscribers(&redis, 1, &[]);
    wait_until(LIMIT, "a subscriber", || {
        s.get("/stats").json()["subscribers"] == 1
    });
    assert_eq!(s.get("/pubsub").status, 302);
    lines.wait_for(LIMIT, |l| l.contains("ate dish"));
    let stats = s.get("/stats").json();
    assert_eq!(
        (stats["made"].as_u64(), stats["lost"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(
        s.get("/metrics")
            .text()
            .contains("kitchen_dishes_lost_total 1\n")
    );
}

#[test]
fn a_diner_process_records_the_result_with_a_ttl() {
    let redis = RedisServer::start();
    let s = serve_on(&redis, Capacity::Bounded(10));
    let r = s.post("/dishes", r#"{"dish": 5}"#);
    assert_eq!(r.status, 202, "{}", r.text());
    let location = r.header("location").expect("Location").to_owned();
    let id = r.json()["id"].as_str().expect("id").to_owned();
    assert_eq!(s.get(&location).json()["status"], "queued");
    // An untracked dish beside it: eaten, but never recorded.
    assert_eq!(s.get("/prodcons").status, 302);

    let (_diner, _lines) = spawn(
        &redis,
        "diner",
        &[
            "--diners",
            "1",
            "--max-sleep-ms",
            "0",
            "--result-ttl",
            "600",
        ],
    );
    let mut got = serde_json::Value::Null;
    wait_until(LIMIT, "the diner process to eat the dish", || {
        got = s.get(&location).json();
        got["status"] == "eaten"
    });
    assert_eq!(
        (got["id"].as_str(), got["dish"].as_u64()),
        (Some(id.as_str()), Some(5))
    );
    let diner = got["diner"].as_str().unwrap_or_default();
    assert!(diner.starts_with("diner-1@"), "{got}");
    assert!(got["eaten_at"].as_u64() >= got["made_at"].as_u64(), "{got}");
    wait_until(LIMIT, "the queue to empty", || redis.llen(QUEUE) == 0);

    let key = format!("{{{QUEUE}}}:result:{id}");
    let ttl: i64 = redis.query(&["PTTL", &key]);
    assert!(
        ttl > 0 && ttl <= 600_000,
        "the diner's --result-ttl applies: {ttl}"
    );
    let results: Vec<String> = redis.query(&["KEYS", &format!("{{{QUEUE}}}:result:*")]);
    assert_eq!(results, [key], "only the tracked dish has a result");
    assert_eq!(s.get("/dishes/00000000000000ff-1").status, 404);
}

#[test]
fn redis_down_is_503_and_the_server_recovers_by_itself() {
    let mut redis = RedisServer::start();
    let s = serve_on(&redis, Capacity::Bounded(10));
    assert_eq!(s.get("/healthz").status, 200);
    assert_eq!(s.get("/prodcons").status, 302);

    redis.stop();
    for r in [
        s.get("/healthz"),
        s.get("/prodcons"),
        s.get("/pubsub"),
        s.post("/dishes", ""),
        s.get("/dishes/00000000000000ff-1"),
    ] {
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(r.json()["error"].is_string());
    }
    let stats = s.get("/stats");
    assert_eq!(stats.status, 200, "figures still answer");
    assert!(stats.json()["queued"].is_null());
    let metrics = s.get("/metrics").text();
    assert!(
        !metrics.contains("NaN")
            && !metrics
                .lines()
                .any(|l| l.starts_with("kitchen_queue_depth")),
        "an unreadable depth is left out, not NaN: {metrics}"
    );
    assert_eq!(s.get("/").status, 200, "so does the page");

    redis.restart();
    wait_until(LIMIT, "health to come back", || {
        s.get("/healthz").status == 200
    });
    assert_eq!(s.get("/prodcons").status, 302);
    assert_eq!(s.post("/dishes", "").status, 202);
    assert_eq!(
        s.get("/stats").json()["queued"],
        2,
        "a fresh server after the restart"
    );
}

/// A server that says it is listening is listening: with Redis not up yet
/// it starts, says so, answers 503 with Retry-After, and serves once Redis is up.
#[test]
fn serve_started_before_redis_answers_503_until_redis_is_up() {
    let mut redis = RedisServer::start();
    redis.stop();
    let url = redis.url();
    let (_serve, addr, mut lines) = spawn_serve(&["--backend", "redis", "--redis-url", &url]);
    lines.wait_for(LIMIT, |l| l.contains("the queue does not answer yet"));
    for path in ["/healthz", "/prodcons"] {
        let r = try_request(addr, "GET", path, b"").expect("an answer while redis is down");
        assert_eq!(r.status, 503, "{path}: {}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"), "{path}");
    }
    redis.restart();
    wait_until(LIMIT, "serve to reach redis once it is up", || {
        try_request(addr, "GET", "/healthz", b"").is_some_and(|r| r.status == 200)
    });
    let r = try_request(addr, "GET", "/prodcons", b"").expect("an answer");
    assert_eq!(r.status, 302, "{}", r.text());
    assert_eq!(redis.llen(QUEUE), 1, "the dish is in Redis");
}

/// A Redis that answers and refuses (a key of the wrong type) will not fix
/// itself: serve fails before it says it is listening.
#[test]
fn serve_refuses_a_queue_of_the_wrong_type_before_listening() {
    let redis = RedisServer::start();
    let _: () = redis.query(&["SET", QUEUE, "not a list"]);
    let out = run(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--backend",
        "redis",
        "--redis-url",
        &redis.url(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds a string, not a list"), "{err}");
    assert!(!err.contains("listening on"), "{err}");
}

#[test]
fn siege_with_a_diner_process_gets_full_availability() {
    let redis = RedisServer::start();
    let s = serve_on(&redis, Capacity::Bounded(10));
    let (_diner, _lines) = spawn(
        &redis,
        "diner",
        &["--diners", "1", "--max-sleep-ms", "0", "--quiet"],
    );
    wait_until(LIMIT, "the diner to register", || {
        redis.query::<u64>(&["SCARD", &format!("{{{QUEUE}}}:diners")]) == 1
    });
    let report = siege(&s.url("/prodcons"));
    assert_eq!(report["availability"].as_f64(), Some(100.0), "{report}");
    assert_eq!(report["failed_transactions"].as_u64(), Some(0), "{report}");
    assert_eq!(s.get("/stats").json()["made"], 50);
}

#[test]
fn a_dish_in_a_diners_hands_is_eating() {
    let redis = RedisServer::start();
    let s = serve_on(&redis, Capacity::Bounded(10));
    let (diner, _lines) = spawn_napping_diner(&redis, &[]);
    let r = s.post("/dishes", r#"{"dish": 1}"#);
    let location = r.header("location").expect("Location").to_owned();
    let mut got = serde_json::Value::Null;
    wait_until(LIMIT, "the diner to start eating", || {
        got = s.get(&location).json();
        got["status"] != "queued"
    });
    assert_eq!(got["status"], "eating", "{got}");
    assert!(
        got["diner"]
            .as_str()
            .is_some_and(|d| d.starts_with("diner-1@")),
        "{got}"
    );
    assert!(got["eaten_at"].is_null(), "{got}");
    drop(diner);
}

/// On Redis the diners are other processes: `/stats` counts their live
/// threads instead of saying 0, and leaves what only they know as null.
#[test]
fn stats_on_redis_count_live_diner_processes_and_leave_their_figures_null() {
    let redis = RedisServer::start();
    let s = serve_on(&redis, Capacity::Bounded(10));
    let (diner, lines) = spawn(&redis, "diner", &["--diners", "2", "--max-sleep-ms", "0"]);
    wait_until(LIMIT, "two live diner threads in /stats", || {
        s.get("/stats").json()["diners"] == 2
    });
    let stats = s.get("/stats").json();
    for unknown in ["eaten", "rejected", "latency_us"] {
        assert!(stats[unknown].is_null(), "{unknown}: {stats}");
    }
    diner.stop("INT", lines);
    wait_until(LIMIT, "no live diner once it left", || {
        s.get("/stats").json()["diners"] == 0
    });
}
