//! `--shards`: one logical queue over several hash slots, on a real cluster
//! (one shard per master) and on one Redis; every dish eaten, dishes spread,
//! the bound kept for the whole queue, `kitchen info` and `/stats` per shard.
#![cfg(feature = "redis")]

mod support;

use kitchen::queue::{BackendConfig, Capacity, Mode, RedisOptions};
use kitchen::serve::ServeConfig;
use support::redis_cluster::RedisCluster;
use support::redis_kitchen::{self, QUEUE};
use support::redis_server::RedisServer;
use support::web::{TestServer, config};
use support::{num, run, run_json, stderr};

#[test]
fn three_shards_on_three_masters_eat_every_dish() {
    let cluster = RedisCluster::start();
    let s = run_json(&cluster.args(
        "run",
        &[
            "--shards",
            "3",
            "--dishes",
            "600",
            "--capacity",
            "30",
            "--max-sleep-ms",
            "0",
            "--quiet",
        ],
    ));
    let got = (num(&s, "made"), num(&s, "eaten"), num(&s, "left"));
    assert_eq!(got, (600, 600, 0), "{s}");
    assert!(
        num(&s, "max_depth") <= 30,
        "the bound holds for the whole queue: {s}"
    );
    // Each shard's keys sit in its own slot, and the shards on three masters.
    let keys = cluster.keys();
    let mut masters: Vec<u16> = keys.iter().map(|k| cluster.master_of(k)).collect();
    masters.sort_unstable();
    masters.dedup();
    assert_eq!(masters.len(), 3, "one shard per master: {keys:?}");
    for k in &keys {
        let tag = k.split_once('}').map_or(k.as_str(), |(t, _)| t);
        let owner = format!("{}}}", tag);
        assert_eq!(cluster.keyslot(k), cluster.keyslot(&owner), "{k}");
    }
}

#[test]
fn chefs_spread_dishes_and_info_shows_each_shard() {
    let cluster = RedisCluster::start();
    let chef = run_json(&cluster.args(
        "chef",
        &[
            "--shards",
            "3",
            "--dishes",
            "30",
            "--capacity",
            "60",
            "--chefs",
            "1",
            "--max-sleep-ms",
            "0",
            "--quiet",
        ],
    ));
    assert_eq!(num(&chef, "made"), 30, "{chef}");
    let info = run_json(&cluster.args("info", &["--shards", "3"]));
    let shards = info["shards"].as_array().expect("shards in info").clone();
    assert_eq!(shards.len(), 3, "{info}");
    assert_eq!(shards[0]["queue"], QUEUE);
    let lengths: Vec<u64> = shards.iter().map(|s| num(s, "length")).collect();
    assert_eq!(lengths, [10, 10, 10], "round-robin: {info}");
    assert_eq!(num(&info, "length"), 30);
    assert_eq!(
        num(&info, "capacity"),
        60,
        "the shards' bounds add up: {info}"
    );
    let table = run(&cluster.args("info", &["--shards", "3"]));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("shard 2"), "{text}");
    let diner = run_json(&cluster.args(
        "diner",
        &["--shards", "3", "--burst", "--max-sleep-ms", "0", "--quiet"],
    ));
    assert_eq!(num(&diner, "eaten"), 30, "{diner}");
    for s in &shards {
        assert_eq!(cluster.llen(s["queue"].as_str().unwrap_or_default()), 0);
    }
}

#[test]
fn shards_work_on_one_redis_too_and_the_bound_needs_one_per_shard() {
    let server = RedisServer::start();
    let s = redis_kitchen::run_json(
        &server,
        "run",
        &[
            "--shards",
            "4",
            "--dishes",
            "200",
            "--capacity",
            "8",
            "--max-sleep-ms",
            "0",
            "--quiet",
            "--batch",
            "3",
        ],
    );
    assert_eq!((num(&s, "made"), num(&s, "eaten")), (200, 200), "{s}");
    let out = redis_kitchen::run(&server, "run", &["--shards", "4", "--capacity", "3"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--capacity 3 is below --shards 4"),
        "{}",
        stderr(&out)
    );
    let out = redis_kitchen::run(&server, "run", &["--shards", "2", "--mode", "stream"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn stats_show_each_shard_on_a_cluster() {
    let cluster = RedisCluster::start();
    let mut opts = RedisOptions::new(cluster.url(), Mode::List);
    opts.cluster = true;
    opts.shards = 3;
    let s = TestServer::start(ServeConfig {
        backend: BackendConfig::Redis(opts),
        capacity: Capacity::Bounded(30),
        diners: 0,
        ..config()
    });
    for _ in 0..6 {
        assert_eq!(s.get("/prodcons").status, 302);
    }
    let stats = s.get("/stats").json();
    let shards: Vec<u64> = stats["shards"]
        .as_array()
        .expect("shards in /stats")
        .iter()
        .map(|v| v.as_u64().unwrap_or(99))
        .collect();
    assert_eq!(shards.iter().sum::<u64>(), 6, "{stats}");
    assert_eq!(shards.len(), 3, "{stats}");
    assert!(
        shards.iter().all(|&n| n >= 1),
        "spread over every shard: {stats}"
    );
    assert_eq!(stats["queued"].as_u64(), Some(6), "{stats}");
    let health = s.get("/healthz");
    assert_eq!(health.status, 200, "{}", health.text());
}

#[test]
fn a_diner_s_counts_cover_every_shard() {
    let server = RedisServer::start();
    let (_diner, _lines) = redis_kitchen::spawn(
        &server,
        "diner",
        &[
            "--shards",
            "3",
            "--diners",
            "1",
            "--max-sleep-ms",
            "0",
            "--heartbeat-ttl",
            "1",
        ],
    );
    let out = redis_kitchen::run(
        &server,
        "chef",
        &[
            "--shards",
            "3",
            "--dishes",
            "6",
            "--max-sleep-ms",
            "0",
            "--quiet",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Six dishes dealt over three shards, all eaten by one diner: its
    // heartbeat (refreshed every fifth of the TTL) says 6, not shard 0's 2.
    support::wait_until(support::LIMIT, "the diner's heartbeat to count 6", || {
        let v = redis_kitchen::run_json(&server, "info", &["--shards", "3"]);
        v["diners"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["eaten"].as_u64() == Some(6)))
    });
}
