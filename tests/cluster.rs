//! Redis Cluster: every mode on a real 3-master cluster on loopback, one
//! hash slot per queue, a killed diner's dishes recovered, the URL rules.
#![cfg(feature = "redis")]

mod support;

use support::redis_cluster::RedisCluster;
use support::redis_kitchen::QUEUE;
use support::redis_stream::STREAM;
use support::{LIMIT, kitchen, last_json, num, run, run_json, spawn_lines, stderr, wait_until};

/// Every key the run left is in `key`'s hash slot.
fn all_in_slot_of(cluster: &RedisCluster, key: &str) {
    let want = cluster.keyslot(key);
    let keys = cluster.keys();
    for k in &keys {
        assert_eq!(
            cluster.keyslot(k),
            want,
            "{k} is not in {key}'s slot: {keys:?}"
        );
    }
}

#[test]
fn list_mode_on_a_cluster_eats_every_dish_in_one_slot() {
    let cluster = RedisCluster::start();
    let s = run_json(&cluster.args(
        "run",
        &[
            "--dishes",
            "300",
            "--max-sleep-ms",
            "0",
            "--quiet",
            "--batch",
            "4",
        ],
    ));
    let got = (num(&s, "made"), num(&s, "eaten"), num(&s, "left"));
    assert_eq!(got, (300, 300, 0), "{s}");
    assert_eq!(cluster.llen(QUEUE), 0);
    // What stays (the capacity, perhaps tokens) sits beside the queue.
    assert!(!cluster.keys().is_empty(), "the capacity is recorded");
    all_in_slot_of(&cluster, QUEUE);
    assert!(
        cluster
            .keys()
            .iter()
            .all(|k| k.starts_with("{task:prodcons:queue}:")),
        "{:?}",
        cluster.keys()
    );
}

#[test]
fn stream_mode_on_a_cluster_eats_every_dish_in_one_slot() {
    let cluster = RedisCluster::start();
    let s = run_json(&cluster.args(
        "run",
        &[
            "--mode",
            "stream",
            "--dishes",
            "300",
            "--max-sleep-ms",
            "0",
            "--quiet",
        ],
    ));
    let got = (num(&s, "made"), num(&s, "eaten"), num(&s, "left"));
    assert_eq!(got, (300, 300, 0), "{s}");
    all_in_slot_of(&cluster, STREAM);
}

#[test]
fn pubsub_on_a_cluster_reaches_every_subscriber() {
    let cluster = RedisCluster::start();
    let s = run_json(&cluster.args(
        "run",
        &[
            "--mode",
            "pubsub",
            "--dishes",
            "100",
            "--diners",
            "2",
            "--max-sleep-ms",
            "0",
            "--quiet",
        ],
    ));
    let got = (num(&s, "made"), num(&s, "eaten"), num(&s, "lost"));
    assert_eq!(got, (100, 200, 0), "{s}");
}

#[test]
fn chefs_and_diners_apart_share_one_queue_and_info_sees_it() {
    let cluster = RedisCluster::start();
    let chef = run_json(&cluster.args(
        "chef",
        &[
            "--dishes",
            "40",
            "--capacity",
            "100",
            "--max-sleep-ms",
            "0",
            "--quiet",
        ],
    ));
    assert_eq!(num(&chef, "made"), 40, "{chef}");
    assert_eq!(cluster.llen(QUEUE), 40);
    let info = run(&cluster.args("info", &["--json"]));
    assert!(info.status.success(), "{}", stderr(&info));
    let info = last_json(
        &String::from_utf8_lossy(&info.stdout)
            .lines()
            .collect::<Vec<_>>(),
    );
    assert_eq!(num(&info, "length"), 40, "{info}");
    let diner = run_json(&cluster.args("diner", &["--burst", "--max-sleep-ms", "0", "--quiet"]));
    assert_eq!(num(&diner, "eaten"), 40, "{diner}");
    assert_eq!(cluster.llen(QUEUE), 0);
    // The tutorial's producer still reaches the queue on a cluster.
    let _: u64 = cluster.query(QUEUE, &["LPUSH", QUEUE, "7"]);
    let diner = run_json(&cluster.args("diner", &["--burst", "--max-sleep-ms", "0", "--quiet"]));
    assert_eq!(num(&diner, "eaten"), 1, "{diner}");
    all_in_slot_of(&cluster, QUEUE);
}

#[test]
fn a_diner_killed_on_a_cluster_loses_nothing() {
    let cluster = RedisCluster::start();
    let chef = run_json(&cluster.args(
        "chef",
        &[
            "--dishes",
            "20",
            "--capacity",
            "100",
            "--max-sleep-ms",
            "0",
            "--quiet",
        ],
    ));
    assert_eq!(num(&chef, "made"), 20);
    // One diner thread that takes a batch of 5 and naps on the first dish.
    let (napper, mut lines) = spawn_lines(&cluster.args(
        "diner",
        &[
            "--diners",
            "1",
            "--batch",
            "5",
            "--max-sleep-ms",
            "600000",
            "--seed",
            "3",
            "--heartbeat-ttl",
            "1",
        ],
    ));
    lines.wait_for(LIMIT, |l| l.contains(" ate dish "));
    let processing = "{task:prodcons:queue}:processing:*";
    wait_until(LIMIT, "the napping diner holds dishes", || {
        cluster
            .query::<Vec<String>>(QUEUE, &["KEYS", processing])
            .len()
            == 1
    });
    let dead = format!("{{task:prodcons:queue}}:processing:diner-{}-*", napper.id());
    let held: Vec<String> = cluster.query(QUEUE, &["KEYS", &dead]);
    let held = cluster.llen(&held[0]);
    drop(napper); // SIGKILL
    let killed = std::time::Instant::now();
    // A live diner's heartbeat finds the dead one and puts its dishes back.
    let (diner, mut lines) =
        spawn_lines(&cluster.args("diner", &["--max-sleep-ms", "0", "--heartbeat-ttl", "1"]));
    wait_until(LIMIT, "the dead diner's dishes to come back", || {
        cluster
            .query::<Vec<String>>(QUEUE, &["KEYS", &dead])
            .is_empty()
    });
    eprintln!(
        "cluster: a diner killed holding {held} dishes; back on the queue {:.2} s after the kill (heartbeat TTL 1 s)",
        killed.elapsed().as_secs_f64()
    );
    lines.wait_for_n(19, " ate dish ");
    wait_until(
        LIMIT,
        "the queue and every processing list are empty",
        || {
            cluster.llen(QUEUE) == 0
                && cluster
                    .query::<Vec<String>>(QUEUE, &["KEYS", processing])
                    .is_empty()
        },
    );
    drop(diner);
}

#[test]
fn a_database_in_the_url_is_a_usage_error_with_cluster() {
    let out = kitchen()
        .args([
            "run",
            "--backend",
            "redis",
            "--cluster",
            "--redis-url",
            "redis://127.0.0.1:1/5",
        ])
        .output()
        .expect("run kitchen");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("database 5") && err.contains("only database 0"),
        "{err}"
    );
    let out = kitchen()
        .args([
            "run",
            "--backend",
            "redis",
            "--cluster",
            "--redis-url",
            "redis+unix:///tmp/r.sock",
        ])
        .output()
        .expect("run kitchen");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // A queue name whose helper keys cannot share its slot.
    let out = kitchen()
        .args(["diner", "--cluster", "--queue", "a}b"])
        .output()
        .expect("run kitchen");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("hash tag"), "{}", stderr(&out));
}

#[test]
fn subscribers_on_a_cluster_are_counted_and_hear_chefs_apart() {
    let cluster = RedisCluster::start();
    let (diners, mut lines) = spawn_lines(&cluster.args(
        "diner",
        &[
            "--mode",
            "pubsub",
            "--diners",
            "2",
            "--max-sleep-ms",
            "0",
            "--json",
        ],
    ));
    let subscribers = || {
        let out = run(&cluster.args("info", &["--json"]));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        last_json(&text.lines().collect::<Vec<_>>())["subscribers"].as_u64()
    };
    wait_until(LIMIT, "two subscribers counted", || {
        subscribers() == Some(2)
    });
    let chef = run_json(&cluster.args(
        "chef",
        &[
            "--mode",
            "pubsub",
            "--dishes",
            "20",
            "--max-sleep-ms",
            "0",
            "--quiet",
        ],
    ));
    assert_eq!((num(&chef, "made"), num(&chef, "lost")), (20, 0), "{chef}");
    // Every delivery eaten before the stop, which would count the rest lost.
    lines.wait_for_n(40, " ate dish ");
    let all = diners.stop("INT", lines);
    assert_eq!(num(&last_json(&all), "eaten"), 40);
}

#[test]
fn the_readme_s_acl_user_runs_on_a_cluster() {
    const PASSWORD: &str = "pw-Cluster-7";
    let cluster = RedisCluster::start();
    for start in ["ACL SETUSER kitchen on ", "ACL SETUSER kitchen '+cluster"] {
        let rule = support::roles::readme_acl(start, PASSWORD);
        let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
        let ok: Vec<String> = cluster.on_every_node(&rule);
        assert!(ok.iter().all(|r| r == "OK"), "{ok:?}");
    }
    let url = format!(
        "redis://kitchen:{PASSWORD}@127.0.0.1:{}",
        cluster.live_ports()[0]
    );
    for mode in ["list", "stream"] {
        let s = run_json(&[
            "run",
            "--backend",
            "redis",
            "--cluster",
            "--redis-url",
            &url,
            "--mode",
            mode,
            "--dishes",
            "60",
            "--max-sleep-ms",
            "0",
            "--quiet",
        ]);
        assert_eq!((num(&s, "made"), num(&s, "eaten")), (60, 60), "{mode}: {s}");
    }
    let logs: Vec<Vec<redis::Value>> = cluster.on_every_node(&["ACL", "LOG"]);
    assert!(logs.iter().all(Vec::is_empty), "denied: {logs:?}");
}
