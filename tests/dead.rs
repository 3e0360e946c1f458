//! Dead letters on a real Redis: failed dishes kept with their id, reason
//! and attempts; `kitchen dead list`, `requeue` and `purge`, all or nothing;
//! the bound `--dead-max`; list and stream modes.
#![cfg(feature = "redis")]

mod support;

use std::process::Output;

use support::redis_kitchen::{QUEUE, burst_json, run};
use support::redis_server::RedisServer;
use support::redis_stream::xadd;
use support::{last_json, num, one_error_line, stderr};

/// `kitchen dead ACTION --redis-url URL ARGS…`.
fn dead(server: &RedisServer, action: &str, rest: &[&str]) -> Output {
    let url = server.url();
    let mut a = vec!["dead", action, "--redis-url", &url];
    a.extend_from_slice(rest);
    support::run(&a)
}

/// `kitchen dead list --json`: the letters, which must be readable.
fn letters(server: &RedisServer, rest: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(rest);
    let out = dead(server, "list", &a);
    assert!(out.status.success(), "dead list: {}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    last_json(&lines)
}

/// The ids of the letters, newest first.
fn ids(v: &serde_json::Value) -> Vec<String> {
    v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["id"].as_str().expect("an id").to_owned())
        .collect()
}

/// A one-diner burst in which a dish is dead at its first failure (one
/// attempt): its summary (it must succeed).
fn burst_one_attempt(server: &RedisServer, cmd: &str, rest: &[&str]) -> serde_json::Value {
    let mut a = vec!["--diners", "1", "--max-attempts", "1"];
    a.extend_from_slice(rest);
    burst_json(server, cmd, &a)
}

fn enqueue(server: &RedisServer, payloads: &[&str]) {
    let out = run(server, "enqueue", payloads);
    assert!(out.status.success(), "enqueue: {}", stderr(&out));
}

#[test]
fn failed_dishes_are_listed_requeued_whole_and_eaten_by_a_fixed_command() {
    let server = RedisServer::start();
    // Larger than the excerpt a dead letter shows: the requeue must put back
    // the whole payload, not the excerpt.
    let big = "x".repeat(10 * 1024);
    enqueue(&server, &["soup", &big, "7"]);
    let failed = burst_one_attempt(&server, "echo boom >&2; exit 3", &[]);
    assert_eq!(num(&failed, "failed"), 3, "{failed}");

    let v = letters(&server, &[]);
    assert_eq!((num(&v, "total"), num(&v, "trimmed")), (3, 0), "{v}");
    for e in v["entries"].as_array().expect("entries") {
        let reason = e["reason"].as_str().expect("a reason");
        assert!(reason.contains("exit status 3"), "{e}");
        assert!(reason.contains("boom"), "{e}");
        assert_eq!(e["attempts"], 1, "{e}");
        assert!(num(e, "at_us") > 0, "{e}");
        assert!(!e["id"].as_str().expect("id").is_empty(), "{e}");
    }
    // Newest first: the bare 7, the big one (its excerpt), soup.
    let entries = v["entries"].as_array().expect("entries");
    assert_eq!(entries[0]["payload"], "7");
    assert_eq!(num(&entries[1], "bytes"), big.len() as u64);
    assert!(entries[1]["payload"].as_str().expect("payload").len() < big.len());
    assert_eq!(entries[2]["payload"], "soup");

    // The table shows the same, for people.
    let table = dead(&server, "list", &[]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("exit status 3: boom"), "{text}");
    assert!(text.contains("3 dead letters on the queue"), "{text}");

    // Requeue the big one and soup; a fixed command eats them whole.
    let all = ids(&v);
    let out = dead(&server, "requeue", &[&all[1], &all[2]]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("requeued 2 dead letters"),
        "{out:?}"
    );
    assert_eq!(server.llen(QUEUE), 2);
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = dir.path().join("eaten");
    let cmd = format!("cat > \"{}.$KITCHEN_DISH_ID\"", sink.display());
    let ate = burst_one_attempt(&server, &cmd, &[]);
    assert_eq!((num(&ate, "eaten"), num(&ate, "failed")), (2, 0), "{ate}");
    let read = |id: &str| std::fs::read_to_string(format!("{}.{id}", sink.display())).ok();
    assert_eq!(
        read(&all[1]).as_deref(),
        Some(big.as_str()),
        "the whole payload, same id"
    );
    assert_eq!(read(&all[2]).as_deref(), Some("soup"));
    assert_eq!(ids(&letters(&server, &[])), [all[0].clone()]);
}

#[test]
fn purge_deletes_by_id_or_all_and_the_bound_trims_the_oldest() {
    let server = RedisServer::start();
    enqueue(&server, &["1", "2", "3", "4"]);
    let failed = burst_one_attempt(&server, "exit 1", &["--dead-max", "3"]);
    assert_eq!(num(&failed, "failed"), 4, "{failed}");
    let v = letters(&server, &[]);
    assert_eq!((num(&v, "total"), num(&v, "trimmed")), (3, 1), "{v}");
    assert_eq!(
        v["entries"][2]["payload"], "2",
        "the oldest, 1, was trimmed"
    );
    assert_eq!(
        letters(&server, &["--limit", "1"])["entries"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    let all = ids(&v);
    let out = dead(&server, "purge", &[&all[0]]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ids(&letters(&server, &[])), all[1..]);
    let out = dead(&server, "purge", &["--all"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("purged 2 dead letters"),
        "{out:?}"
    );
    let v = letters(&server, &[]);
    assert_eq!((num(&v, "total"), num(&v, "trimmed")), (0, 1), "{v}");
    assert_eq!(server.llen(QUEUE), 0, "purged, not requeued");
}

#[test]
fn bad_requests_change_nothing() {
    let server = RedisServer::start();
    enqueue(&server, &["a", "b"]);
    burst_one_attempt(&server, "exit 1", &[]);
    let before = ids(&letters(&server, &[]));
    assert_eq!(before.len(), 2);

    // An id that is not dead: one line, exit 1, and the good id stays dead too.
    for action in ["requeue", "purge"] {
        let out = dead(&server, action, &[&before[0], "0000000000000001-1"]);
        let err = one_error_line(&out, &action);
        assert!(
            err.contains("not a dead letter: 0000000000000001-1"),
            "{err}"
        );
        assert!(err.contains("nothing was changed"), "{err}");
        assert_eq!(ids(&letters(&server, &[])), before);
        assert_eq!(server.llen(QUEUE), 0);
    }
    // Neither ids nor --all, or both: usage errors.
    for (action, rest) in [
        ("requeue", &[][..]),
        ("purge", &[][..]),
        ("purge", &["--all", "x"][..]),
    ] {
        let out = dead(&server, action, rest);
        assert_eq!(out.status.code(), Some(2), "{action} {rest:?}: {out:?}");
        assert!(
            stderr(&out).contains(&format!("Usage: kitchen dead {action}")),
            "{out:?}"
        );
    }
    let out = support::run(&["dead", "list", "--backend", "local"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = support::run(&["dead", "list", "--mode", "pubsub"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // A payload that could not be read keeps only an excerpt: it cannot be
    // requeued, by id (refused, nothing changed) or with --all (left).
    let _: u64 = server.query(&["LPUSH", QUEUE, "{\"id\":\"broken"]);
    burst_one_attempt(&server, "cat", &[]);
    let v = letters(&server, &[]);
    let unreadable = v["entries"][0]["id"]
        .as_str()
        .expect("a fresh id")
        .to_owned();
    assert_eq!(v["entries"][0]["attempts"], 0, "{v}");
    let out = dead(&server, "requeue", &[&unreadable, &before[0]]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("cannot requeue"), "{out:?}");
    assert_eq!(num(&letters(&server, &[]), "total"), 3);
    let out = dead(&server, "requeue", &["--all"]);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("requeued 2 dead letters"), "{said}");
    assert!(said.contains("1 dead letter left"), "{said}");
    assert_eq!(ids(&letters(&server, &[])), [unreadable]);
    assert_eq!(server.llen(QUEUE), 2);
}

#[test]
fn stream_mode_keeps_its_dead_letters_beside_the_stream() {
    let server = RedisServer::start();
    let stream = "task:prodcons:stream";
    xadd(&server, stream, &["dish", "soup"]);
    let failed = burst_one_attempt(&server, "echo sour >&2; exit 2", &["--mode", "stream"]);
    assert_eq!(num(&failed, "failed"), 1, "{failed}");
    let v = letters(&server, &["--mode", "stream"]);
    assert_eq!(num(&v, "total"), 1, "{v}");
    assert!(
        v["entries"][0]["reason"]
            .as_str()
            .expect("reason")
            .contains("sour")
    );
    assert_eq!(
        num(&letters(&server, &[]), "total"),
        0,
        "the list's are apart"
    );
    let id = ids(&v).remove(0);
    let out = dead(&server, "requeue", &["--mode", "stream", &id]);
    assert!(out.status.success(), "{out:?}");
    let ate = burst_one_attempt(&server, "cat", &["--mode", "stream"]);
    assert_eq!((num(&ate, "eaten"), num(&ate, "failed")), (1, 0), "{ate}");
    assert_eq!(num(&letters(&server, &["--mode", "stream"]), "total"), 0);
}

#[test]
fn every_shard_s_letters_are_listed_requeued_and_purged_together() {
    let server = RedisServer::start();
    let shards = ["--shards", "3"];
    let s = support::redis_kitchen::run_json(
        &server,
        "run",
        &[
            "--shards",
            "3",
            "--capacity",
            "9",
            "--dishes",
            "6",
            "--max-sleep-ms",
            "0",
            "--quiet",
            "--exec",
            "false",
            "--max-attempts",
            "1",
        ],
    );
    assert_eq!(num(&s, "failed"), 6, "{s}");
    let per_shard: Vec<u64> = server
        .keys("*:dead")
        .iter()
        .map(|k| server.llen(k))
        .collect();
    assert_eq!(per_shard, [2, 2, 2], "round-robin over three dead lists");
    let all = ids(&letters(&server, &shards));
    assert_eq!(all.len(), 6, "every shard's letters in one list");

    let out = dead(&server, "requeue", &["--shards", "3", &all[0], "nope"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
    assert_eq!(ids(&letters(&server, &shards)).len(), 6, "nothing changed");

    let out = dead(&server, "purge", &["--shards", "3", &all[0]]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = dead(&server, "requeue", &["--shards", "3", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(ids(&letters(&server, &shards)).is_empty());
    let s = burst_one_attempt(&server, "true", &shards);
    assert_eq!(num(&s, "eaten"), 5, "{s}");
}
