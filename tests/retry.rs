//! Retries with real processes: a dish that fails twice is eaten on its
//! third attempt, one that always fails ends dead and comes back with a
//! requeue; a burst diner stays for waiting retries, sharded too; a waiting
//! retry survives a killed diner and a restarted Redis;
//! a poison dish that kills its diner every time ends dead; the local
//! backend retries too; bad flags are usage errors.

mod support;

use std::path::Path;

use support::{num, stderr};

/// A command that fails (exit 1, `not yet` on stderr) until attempt
/// `ok_at`, writing each attempt it sees to `dir/<dish id>`.
fn fails_until(dir: &Path, ok_at: u32) -> String {
    format!(
        "echo \"$KITCHEN_ATTEMPT\" >> \"{}/$KITCHEN_DISH_ID\"; \
         [ \"$KITCHEN_ATTEMPT\" -ge {ok_at} ] || {{ echo not yet >&2; exit 1; }}; cat",
        dir.display()
    )
}

/// The attempts each dish saw, by dish id.
fn attempts_seen(dir: &Path) -> Vec<Vec<u32>> {
    let mut all: Vec<Vec<u32>> = std::fs::read_dir(dir)
        .expect("the attempts dir")
        .map(|e| {
            std::fs::read_to_string(e.expect("an entry").path())
                .expect("attempts")
                .lines()
                .map(|l| l.trim().parse().expect("an attempt number"))
                .collect()
        })
        .collect();
    all.sort();
    all
}

#[test]
fn the_local_backend_retries_and_keeps_the_books() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cmd = fails_until(dir.path(), 3);
    let v = support::run_json(&[
        "run",
        "--dishes",
        "4",
        "--max-sleep-ms",
        "0",
        "--retry-delay",
        "0.05",
        "--exec",
        &cmd,
    ]);
    assert_eq!(
        (num(&v, "made"), num(&v, "eaten"), num(&v, "failed")),
        (4, 4, 0),
        "{v}"
    );
    assert_eq!((num(&v, "retried"), num(&v, "waiting")), (8, 0), "{v}");
    assert_eq!(attempts_seen(dir.path()), vec![vec![1, 2, 3]; 4]);

    // Always failing: dead after --max-attempts, and the books balance.
    let v = support::run_json(&[
        "run",
        "--dishes",
        "3",
        "--max-sleep-ms",
        "0",
        "--max-attempts",
        "2",
        "--retry-delay",
        "0",
        "--exec",
        "exit 4",
    ]);
    let (made, eaten, failed) = (num(&v, "made"), num(&v, "eaten"), num(&v, "failed"));
    let (left, waiting, lost) = (num(&v, "left"), num(&v, "waiting"), num(&v, "lost"));
    assert_eq!((eaten, failed, num(&v, "retried")), (0, 3, 3), "{v}");
    assert_eq!(made, eaten + failed + left + waiting + lost, "{v}");
}

#[test]
fn the_web_entry_says_retrying_while_a_dish_waits_then_eaten_with_its_attempts() {
    use kitchen::exec::Exec;
    use kitchen::kitchen::work::Work;
    use kitchen::queue::Retry;
    use support::web::{TestServer, config};

    let server = TestServer::start(kitchen::serve::ServeConfig {
        work: Work::Exec(Exec {
            command: r#"[ "$KITCHEN_ATTEMPT" -ge 2 ] || { echo first >&2; exit 1; }; echo done"#
                .to_owned(),
            timeout: None,
        }),
        retry: Retry {
            max_attempts: 2,
            // Long enough to be seen waiting; the test waits on conditions.
            delay: std::time::Duration::from_secs(2),
        },
        ..config()
    });
    let reply = server.post("/dishes", r#"{"task":"t"}"#);
    assert_eq!(reply.status, 202, "{}", reply.text());
    let id = reply.json()["id"].as_str().expect("an id").to_owned();
    let record = || server.get(&format!("/dishes/{id}")).json();
    support::wait_until(support::LIMIT, "the dish to wait for its retry", || {
        record()["status"] == "retrying"
    });
    let r = record();
    assert_eq!(r["attempts"], 1, "{r}");
    assert!(r["error"].as_str().expect("why").contains("first"), "{r}");
    assert!(r["retry_at"].as_u64().is_some(), "{r}");
    support::wait_until(support::LIMIT, "the dish to be eaten", || {
        record()["status"] == "eaten"
    });
    let r = record();
    assert_eq!(
        (r["attempts"].as_u64(), r["output"].as_str()),
        (Some(2), Some("done\n")),
        "{r}"
    );
    server.stop().expect("a clean stop");
}

#[test]
fn bad_retry_flags_are_usage_errors() {
    for (args, want) in [
        (
            &["run", "--max-attempts", "0"][..],
            "is not a number of attempts",
        ),
        (&["diner", "--max-attempts", "-2"][..], "number of attempts"),
        (
            &["serve", "--retry-delay", "-1"][..],
            "must be 0 seconds or more",
        ),
        (
            &["run", "--retry-delay", "soon"][..],
            "not a number of seconds",
        ),
    ] {
        let out = support::run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = stderr(&out);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(err.contains("Usage: kitchen"), "{args:?}: {err}");
    }
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use support::redis_kitchen::{QUEUE, burst_json, run, spawn};
    use support::redis_server::RedisServer;
    use support::{KillOnDrop, LIMIT, wait_until};

    const RETRY: &str = "{task:prodcons:queue}:retry";

    fn zcard(server: &RedisServer) -> u64 {
        server.query(&["ZCARD", RETRY])
    }

    fn dead_list(server: &RedisServer, mode: &str) -> serde_json::Value {
        let url = server.url();
        let out = support::run(&[
            "dead",
            "list",
            "--json",
            "--redis-url",
            &url,
            "--mode",
            mode,
        ]);
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).expect("dead list --json")
    }

    #[test]
    fn a_dish_that_fails_twice_is_eaten_on_its_third_attempt() {
        let server = RedisServer::start();
        let dir = tempfile::tempdir().expect("temp dir");
        let cmd = fails_until(dir.path(), 3);
        // A diner in the background; `enqueue --wait` waits through the
        // retries (the record says `retrying`, not done) for the result.
        let (diner, _lines) = spawn(
            &server,
            "diner",
            &[
                "--max-sleep-ms",
                "0",
                "--retry-delay",
                "0.1",
                "--exec",
                &cmd,
            ],
        );
        let started = std::time::Instant::now();
        let out = run(&server, "enqueue", &["--wait", "soup"]);
        assert!(out.status.success(), "{}", stderr(&out));
        println!(
            "faults: retries, list: eaten on attempt 3 of 3 after two failures (--retry-delay 0.1), result back {:.2} s after enqueue",
            started.elapsed().as_secs_f64()
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("soup"),
            "{out:?}"
        );
        assert_eq!(attempts_seen(dir.path()), [vec![1, 2, 3]]);
        drop(diner);
        assert_eq!(zcard(&server), 0);

        // Stream mode: the same, the attempts counted by the group.
        let dir = tempfile::tempdir().expect("temp dir");
        let cmd = fails_until(dir.path(), 3);
        support::redis_stream::xadd(&server, "task:prodcons:stream", &["dish", "7"]);
        let v = burst_json(
            &server,
            &cmd,
            &[
                "--diners",
                "1",
                "--mode",
                "stream",
                "--heartbeat-ttl",
                "1",
                "--retry-delay",
                "0.1",
            ],
        );
        assert_eq!(
            (num(&v, "eaten"), num(&v, "retried"), num(&v, "failed")),
            (1, 2, 0),
            "{v}"
        );
        assert_eq!(attempts_seen(dir.path()), [vec![1, 2, 3]]);
    }

    #[test]
    fn a_sharded_burst_diner_stays_for_its_waiting_retries() {
        let server = RedisServer::start();
        // Three dishes dealt over three shards, each failing once.
        let out = run(&server, "enqueue", &["--shards", "3", "a", "b", "c"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let dir = tempfile::tempdir().expect("temp dir");
        let v = burst_json(
            &server,
            &fails_until(dir.path(), 2),
            &["--diners", "1", "--shards", "3", "--retry-delay", "0.2"],
        );
        // Before, the burst ended with the queues empty and the retries
        // still waiting: `waiting` 3, nothing eaten.
        assert_eq!(
            (num(&v, "eaten"), num(&v, "retried"), num(&v, "waiting")),
            (3, 3, 0),
            "{v}"
        );
        assert_eq!(attempts_seen(dir.path()), vec![vec![1, 2]; 3]);
    }

    #[test]
    fn a_dish_that_always_fails_ends_dead_and_a_requeue_gets_it_eaten() {
        let server = RedisServer::start();
        let out = run(&server, "enqueue", &["soup"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v = burst_json(
            &server,
            "echo sour >&2; exit 5",
            &["--diners", "1", "--retry-delay", "0.05"],
        );
        assert_eq!(
            (num(&v, "eaten"), num(&v, "retried"), num(&v, "failed")),
            (0, 2, 1),
            "{v}"
        );
        assert_eq!(num(&v, "waiting"), 0, "{v}");
        let d = dead_list(&server, "list");
        assert_eq!(num(&d, "total"), 1, "{d}");
        let letter = &d["entries"][0];
        assert_eq!(letter["attempts"], 3, "{d}");
        assert!(
            letter["reason"]
                .as_str()
                .expect("reason")
                .contains("exit status 5: sour"),
            "{d}"
        );
        let id = letter["id"].as_str().expect("id").to_owned();
        let out = support::run(&["dead", "requeue", &id, "--redis-url", &server.url()]);
        assert!(out.status.success(), "{out:?}");
        // Fresh attempts: the first try of the requeued dish is attempt 1.
        let v = burst_json(
            &server,
            "[ \"$KITCHEN_ATTEMPT\" = 1 ] && cat",
            &["--diners", "1"],
        );
        assert_eq!(
            (num(&v, "eaten"), num(&v, "failed"), num(&v, "retried")),
            (1, 0, 0),
            "{v}"
        );
        assert_eq!(num(&dead_list(&server, "list"), "total"), 0);
    }

    #[test]
    fn a_waiting_retry_survives_its_diner_killed_and_redis_restarted() {
        let mut server = RedisServer::durable(&[]);
        let out = run(&server, "enqueue", &["soup"]);
        assert!(out.status.success(), "{}", stderr(&out));
        // Fails once, then waits 3 s for its retry: killed meanwhile.
        let (mut diner, _lines) = spawn(
            &server,
            "diner",
            &[
                "--max-sleep-ms",
                "0",
                "--retry-delay",
                "3",
                "--exec",
                "exit 1",
            ],
        );
        wait_until(LIMIT, "the failed dish to wait for its retry", || {
            zcard(&server) == 1
        });
        support::signal(diner.id(), "KILL");
        let _ = diner.child().wait();
        assert_eq!(
            (zcard(&server), server.llen(QUEUE)),
            (1, 0),
            "still waiting"
        );
        server.stop();
        server.restart();
        assert_eq!(zcard(&server), 1, "the retry survived the restart (AOF)");
        // Another diner eats it, on its second attempt, once it is due.
        let dir = tempfile::tempdir().expect("temp dir");
        let started = std::time::Instant::now();
        let v = burst_json(&server, &fails_until(dir.path(), 2), &["--diners", "1"]);
        assert_eq!((num(&v, "eaten"), num(&v, "failed")), (1, 0), "{v}");
        println!(
            "faults: retries: a waiting retry (--retry-delay 3) survived its diner's SIGKILL and a Redis SIGKILL + restart (AOF): 1 waiting, 0 lost, eaten on attempt 2 by a new diner {:.2} s after it started",
            started.elapsed().as_secs_f64()
        );
        assert_eq!(attempts_seen(dir.path()), [vec![2]]);
        assert_eq!(zcard(&server), 0);
    }

    #[test]
    fn a_waiting_retry_in_stream_mode_survives_its_diner_killed_and_redis_restarted() {
        let mut server = RedisServer::durable(&[]);
        let stream = "task:prodcons:stream";
        support::redis_stream::xadd(&server, stream, &["dish", "soup"]);
        let waiting = |server: &RedisServer| {
            if support::redis_stream::group(server, stream, "kitchen").is_none() {
                return 0;
            }
            support::redis_stream::pending_owners(server, stream, "kitchen")
                .into_iter()
                .filter(|(_, owner)| owner == "kitchen-retry")
                .count()
        };
        let (mut diner, _lines) = spawn(
            &server,
            "diner",
            &[
                "--mode",
                "stream",
                "--max-sleep-ms",
                "0",
                "--retry-delay",
                "3",
                "--exec",
                "exit 1",
            ],
        );
        wait_until(LIMIT, "the failed entry to wait for its retry", || {
            waiting(&server) == 1
        });
        support::signal(diner.id(), "KILL");
        let _ = diner.child().wait();
        server.stop();
        server.restart();
        assert_eq!(waiting(&server), 1, "the retry survived the restart (AOF)");
        let dir = tempfile::tempdir().expect("temp dir");
        let v = burst_json(
            &server,
            &fails_until(dir.path(), 2),
            &["--diners", "1", "--mode", "stream", "--heartbeat-ttl", "5"],
        );
        assert_eq!((num(&v, "eaten"), num(&v, "failed")), (1, 0), "{v}");
        assert_eq!(attempts_seen(dir.path()), [vec![2]]);
        assert_eq!(waiting(&server), 0);
        assert!(support::redis_stream::pending_owners(&server, stream, "kitchen").is_empty());
    }

    #[test]
    fn a_poison_dish_that_kills_its_diner_ends_dead_after_max_attempts() {
        poison("list");
    }

    #[test]
    fn a_poison_entry_that_kills_its_diner_ends_dead_after_max_attempts() {
        poison("stream");
    }

    /// A bare payload `7` (another producer's) whose command kills its
    /// diner (`kill -9 $PPID`), in `mode`: diners are started one after
    /// another until it is dead.
    fn poison(mode: &str) {
        let server = RedisServer::start();
        // List mode wraps the bare payload to carry its attempts; stream
        // mode counts deliveries.
        if mode == "list" {
            let _: u64 = server.query(&["LPUSH", QUEUE, "7"]);
        } else {
            support::redis_stream::xadd(&server, "task:prodcons:stream", &["dish", "7"]);
        }
        let dir = tempfile::tempdir().expect("temp dir");
        // Each attempt is written down, then the command kills its diner.
        let cmd = format!(
            "echo \"$KITCHEN_ATTEMPT\" >> \"{}/poison\"; kill -9 $PPID",
            dir.path().display()
        );
        let args = [
            "--mode",
            mode,
            "--diners",
            "1",
            "--max-sleep-ms",
            "0",
            "--heartbeat-ttl",
            "1",
            "--max-attempts",
            "2",
            "--exec",
            &cmd,
        ];
        let mut kills = 0;
        let started = std::time::Instant::now();
        let mut survivor: Option<KillOnDrop> = None;
        for _ in 0..5 {
            let (mut diner, _lines) = spawn(&server, "diner", &args);
            // Killed by its dish, or alive with the dish dead.
            wait_until(LIMIT, "the diner to die or the dish to be dead", || {
                matches!(diner.child().try_wait(), Ok(Some(_)))
                    || num(&dead_list(&server, mode), "total") == 1
            });
            if num(&dead_list(&server, mode), "total") == 1 {
                survivor = Some(diner);
                break;
            }
            kills += 1;
        }
        assert!(survivor.is_some(), "the poison dish never ended dead");
        assert_eq!(kills, 2, "one death per attempt, no more");
        let seen = std::fs::read_to_string(dir.path().join("poison")).expect("attempts");
        assert_eq!(seen.lines().collect::<Vec<_>>(), ["1", "2"]);
        let d = dead_list(&server, mode);
        let letter = &d["entries"][0];
        assert_eq!(
            (letter["attempts"].as_u64(), letter["payload"].as_str()),
            (Some(2), Some("7"))
        );
        assert!(
            letter["reason"]
                .as_str()
                .expect("reason")
                .contains("poison"),
            "{d}"
        );
        assert_eq!(server.llen(QUEUE), 0);
        println!(
            "faults: poison dish, {mode} mode: --max-attempts 2, --heartbeat-ttl 1: {kills} diners killed by it, then dead ({}) {:.2} s after the first diner started; 0 left in the queue",
            letter["reason"].as_str().unwrap_or_default(),
            started.elapsed().as_secs_f64()
        );
    }
}
