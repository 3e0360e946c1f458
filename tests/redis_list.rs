//! Redis list mode against a real redis-server: accounting, capacity across
//! processes, order, payloads, recovery of a killed diner, idle diners, Ctrl-C.
#![cfg(feature = "redis")]

mod support;

use support::redis_kitchen::{QUEUE, run, run_json, spawn, spawn_napping_diner};
use support::redis_server::RedisServer;
use support::{LIMIT, last_json, num, signal, stderr, summary, wait_until};

/// Every key kitchen may leave behind besides the queue, dead letters, the
/// recorded capacity and wake-up tokens (which expire on their own).
fn leftovers(server: &RedisServer) -> Vec<String> {
    let mut keys: Vec<String> = server.query(&["KEYS", "*"]);
    keys.retain(|k| {
        k != QUEUE && !k.ends_with(":dead") && !k.ends_with(":room") && !k.ends_with(":capacity")
    });
    keys.sort();
    keys
}

#[test]
fn one_process_eats_every_dish_and_leaves_nothing() {
    let server = RedisServer::start();
    let s = run_json(
        &server,
        "run",
        &["--dishes", "300", "--max-sleep-ms", "0", "--quiet"],
    );
    assert_eq!(s["backend"], "redis");
    assert_eq!(s["mode"], "list");
    assert_eq!((num(&s, "made"), num(&s, "eaten")), (300, 300), "{s}");
    assert_eq!(
        (num(&s, "left"), num(&s, "lost"), num(&s, "rejected")),
        (0, 0, 0)
    );
    assert!(num(&s, "max_depth") <= 10, "{s}");
    assert_eq!(server.llen(QUEUE), 0);
    assert!(leftovers(&server).is_empty(), "{:?}", leftovers(&server));
}

#[test]
fn batched_diners_account_for_every_dish() {
    let server = RedisServer::start();
    let s = run_json(
        &server,
        "run",
        &[
            "--dishes",
            "500",
            "--max-sleep-ms",
            "0",
            "--quiet",
            "--batch",
            "8",
            "--capacity",
            "20",
        ],
    );
    assert_eq!(
        (num(&s, "made"), num(&s, "eaten"), num(&s, "left")),
        (500, 500, 0)
    );
    assert!(num(&s, "max_depth") <= 20, "{s}");
    assert!(leftovers(&server).is_empty(), "{:?}", leftovers(&server));
}

#[test]
fn one_chef_process_feeds_two_diner_processes() {
    let server = RedisServer::start();
    let diner = |seed: &str| {
        spawn(
            &server,
            "diner",
            &["--max-sleep-ms", "2", "--seed", seed, "--json"],
        )
    };
    let (d1, l1) = diner("1");
    let (d2, l2) = diner("2");
    let chef = run_json(
        &server,
        "chef",
        &["--dishes", "200", "--max-sleep-ms", "1", "--quiet"],
    );
    assert_eq!(num(&chef, "made"), 200);
    assert!(
        chef["eaten"].is_null(),
        "a chef cannot know what was eaten: {chef}"
    );
    assert!(num(&chef, "max_depth") <= 10, "{chef}");
    wait_until(LIMIT, "the queue to empty", || server.llen(QUEUE) == 0);
    let s1 = last_json(&d1.stop("INT", l1));
    let s2 = last_json(&d2.stop("INT", l2));
    for s in [&s1, &s2] {
        assert!(
            s["made"].is_null(),
            "a diner cannot know what was made: {s}"
        );
        assert_eq!(num(s, "left"), 0, "{s}");
    }
    assert_eq!(num(&s1, "eaten") + num(&s2, "eaten"), 200, "{s1} {s2}");
    assert!(leftovers(&server).is_empty(), "{:?}", leftovers(&server));
}

#[test]
fn capacity_holds_across_chef_processes_and_blocked_chefs_stay_quiet() {
    let server = RedisServer::start();
    let chef = || {
        spawn(
            &server,
            "chef",
            &[
                "--chefs",
                "1",
                "--dishes",
                "20",
                "--capacity",
                "5",
                "--max-sleep-ms",
                "0",
                "--quiet",
                "--json",
            ],
        )
    };
    let (c1, l1) = chef();
    let (c2, l2) = chef();
    wait_until(LIMIT, "the queue to fill", || server.llen(QUEUE) == 5);
    // Both chefs are blocked now: a window of their traffic, bounded by a
    // condition (several BLPOP rounds), not by a sleep.
    let sent = |s: &RedisServer| {
        let c = s.command_calls();
        // What the clients send (commands run inside scripts count apart).
        ["evalsha", "eval", "blpop"]
            .iter()
            .map(|k| c.get(*k).copied().unwrap_or(0))
            .sum::<u64>()
    };
    let blpops = |s: &RedisServer| s.command_calls().get("blpop").copied().unwrap_or(0);
    let (sent0, blpop0) = (sent(&server), blpops(&server));
    wait_until(LIMIT, "six BLPOP rounds", || blpops(&server) >= blpop0 + 6);
    let (sent1, blpop1) = (sent(&server), blpops(&server));
    // No polling: a blocked chef sends one script and then one BLPOP (which
    // itself waits half a second in Redis) per round, so at most two
    // commands per round, plus a round each chef may be half-way through.
    let (commands, rounds) = (sent1 - sent0, blpop1 - blpop0);
    assert!(
        commands <= 2 * rounds + 4,
        "blocked chefs sent {commands} commands in {rounds} blocking rounds"
    );
    assert_eq!(server.llen(QUEUE), 5, "never more than the capacity");
    // `kitchen info` reports the bound the chefs keep, whatever its own flag.
    let info = run(&server, "info", &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).expect("info JSON");
    assert_eq!(
        (v["length"].as_u64(), v["capacity"].as_u64()),
        (Some(5), Some(5)),
        "{v}"
    );
    assert_eq!(v["capacity_from_chefs"], true, "{v}");
    let (diner, dl) = spawn(&server, "diner", &["--max-sleep-ms", "0", "--json"]);
    let (s1, s2) = (last_json(&c1.finish(l1)), last_json(&c2.finish(l2)));
    assert_eq!(num(&s1, "made") + num(&s2, "made"), 40);
    assert!(
        num(&s1, "max_depth") <= 5 && num(&s2, "max_depth") <= 5,
        "{s1} {s2}"
    );
    wait_until(LIMIT, "the queue to empty", || server.llen(QUEUE) == 0);
    let d = last_json(&diner.stop("INT", dl));
    assert_eq!(num(&d, "eaten"), 40);
    assert!(num(&d, "max_depth") <= 5, "{d}");
}

#[test]
fn each_chef_is_served_oldest_first() {
    let server = RedisServer::start();
    // A client that pushes as the tutorial does: LPUSH, oldest on the right.
    for n in ["1", "2", "3", "4", "5"] {
        let _: u64 = server.query(&["LPUSH", QUEUE, n]);
    }
    let (diner, mut lines) = spawn(&server, "diner", &["--diners", "1", "--max-sleep-ms", "0"]);
    for want in ["1", "2", "3", "4", "5"] {
        let line = lines.wait_for(LIMIT, |l| l.contains(" ate dish "));
        assert!(line.contains(&format!("ate dish {want} ")), "{line}");
    }
    diner.stop("INT", lines);
    // One chef's JSON dishes: ids count up from the right end.
    let s = run_json(
        &server,
        "chef",
        &[
            "--chefs",
            "1",
            "--dishes",
            "30",
            "--unbounded",
            "--max-sleep-ms",
            "0",
            "--quiet",
        ],
    );
    assert_eq!(num(&s, "made"), 30);
    let mut list = server.lrange(QUEUE);
    list.reverse();
    let seqs: Vec<u64> = list
        .iter()
        .map(|p| {
            let v: serde_json::Value = serde_json::from_str(p).expect("a JSON dish");
            let id = v["id"].as_str().expect("an id");
            id.rsplit('-').next().unwrap().parse().unwrap()
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

#[test]
fn any_payload_is_eaten_and_only_what_cannot_be_a_dish_is_set_aside() {
    let server = RedisServer::start();
    let big = "x".repeat(200);
    let corrupt = r#"{"id":"00000000000000ab-1","dish":"#;
    let foreign = [
        "7",
        "soup",
        "12",
        r#"{"dish":3}"#,
        r#"{"task":"resize","w":64}"#,
        corrupt,
        &big,
        "4",
    ];
    for p in foreign {
        let _: u64 = server.query(&["LPUSH", QUEUE, p]);
    }
    let (diner, mut lines) = spawn(
        &server,
        "diner",
        &[
            "--diners",
            "1",
            "--max-sleep-ms",
            "0",
            "--max-payload",
            "100",
            "--json",
        ],
    );
    lines.wait_for(LIMIT, |l| l.contains("ate dish 4 "));
    let out = diner.stop("INT", lines);
    let s = last_json(&out);
    assert_eq!((num(&s, "eaten"), num(&s, "rejected")), (6, 2), "{s}");
    for shown in [
        "ate dish soup ",
        r#"ate dish {"task":"resize","w":64} "#,
        "ate dish 12 ",
    ] {
        assert!(
            out.iter().any(|l| l.contains(shown)),
            "{shown:?} in {out:?}"
        );
    }
    let mut dead = server.lrange(&format!("{{{QUEUE}}}:dead"));
    dead.reverse();
    let letters: Vec<serde_json::Value> = dead
        .iter()
        .map(|d| serde_json::from_str(d).expect("a dead letter is JSON"))
        .collect();
    assert_eq!(letters.len(), 2, "{dead:?}");
    assert_eq!(letters[0]["payload"], corrupt);
    assert!(
        letters[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("corrupt kitchen envelope")),
        "{}",
        letters[0]
    );
    assert_eq!(letters[1]["bytes"], 200);
    assert!(
        letters[1]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("over the 100-byte limit")),
        "{}",
        letters[1]
    );
    assert!(leftovers(&server).is_empty(), "{:?}", leftovers(&server));
}

#[test]
fn a_killed_diners_dish_is_eaten_by_another() {
    let server = RedisServer::start();
    let _: u64 = server.query(&["LPUSH", QUEUE, "7"]);
    // Default heartbeat settings; the nap (below 10 minutes, seeded) keeps
    // the first diner holding its dish until it is killed.
    let (a, mut la) = spawn_napping_diner(&server, &[]);
    la.wait_for(LIMIT, |l| l.contains("ate dish 7 "));
    signal(a.id(), "KILL");
    a.wait(LIMIT);
    assert_eq!(server.llen(QUEUE), 0, "the dish is held, not queued");
    let (b, mut lb) = spawn(
        &server,
        "diner",
        &["--diners", "1", "--max-sleep-ms", "0", "--json"],
    );
    // Issue 14 asks for this within 15 s under defaults: a figure, printed,
    // not a timing assertion (the wait is bounded by LIMIT).
    let started = std::time::Instant::now();
    lb.wait_for(LIMIT, |l| l.contains("ate dish 7 "));
    eprintln!(
        "list: the killed diner's dish eaten by another {:.1} s after it started",
        started.elapsed().as_secs_f64()
    );
    let s = last_json(&b.stop("INT", lb));
    assert_eq!(num(&s, "eaten"), 1, "{s}");
    assert!(leftovers(&server).is_empty(), "{:?}", leftovers(&server));
}

#[test]
fn a_diner_idle_past_the_blocking_timeout_loses_nothing() {
    let server = RedisServer::start();
    let (diner, mut lines) = spawn(
        &server,
        "diner",
        &["--diners", "1", "--max-sleep-ms", "0", "--json"],
    );
    // Several BLMOVE timeouts go by with nothing to take.
    wait_until(LIMIT, "idle BLMOVE rounds", || {
        server.command_calls().get("blmove").copied().unwrap_or(0) >= 6
    });
    let _: u64 = server.query(&["LPUSH", QUEUE, "3"]);
    lines.wait_for(LIMIT, |l| l.contains("ate dish 3 "));
    let s = last_json(&diner.stop("INT", lines));
    assert_eq!(num(&s, "eaten"), 1);
    assert_eq!(server.llen(QUEUE), 0);
    assert!(leftovers(&server).is_empty(), "{:?}", leftovers(&server));
}

#[test]
fn ctrl_c_on_a_diner_finishes_its_dish_and_puts_back_the_rest() {
    let server = RedisServer::start();
    for n in ["1", "2", "3", "4"] {
        let _: u64 = server.query(&["LPUSH", QUEUE, n]);
    }
    // A batch of 4 in hand, naps up to 2 s each.
    let (diner, mut lines) = spawn(
        &server,
        "diner",
        &[
            "--diners",
            "1",
            "--batch",
            "4",
            "--max-sleep-ms",
            "2000",
            "--seed",
            "5",
            "--json",
        ],
    );
    lines.wait_for(LIMIT, |l| l.contains("ate dish 1 "));
    assert_eq!(
        server.llen(QUEUE),
        0,
        "the whole batch is in the diner's hands"
    );
    let s = last_json(&diner.stop("INT", lines));
    let eaten = num(&s, "eaten");
    assert!(eaten >= 1, "{s}");
    assert_eq!(eaten + server.llen(QUEUE), 4, "{s}");
    // What went back is still oldest-first.
    let mut back = server.lrange(QUEUE);
    back.reverse();
    let want: Vec<String> = (eaten + 1..=4).map(|n| n.to_string()).collect();
    assert_eq!(back, want);
    assert!(leftovers(&server).is_empty(), "{:?}", leftovers(&server));
}

#[test]
fn a_run_stops_at_duration_and_reports_what_is_left() {
    let server = RedisServer::start();
    let out = run(
        &server,
        "chef",
        &[
            "--duration",
            "0.3",
            "--capacity",
            "4",
            "--max-sleep-ms",
            "0",
            "--quiet",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!(num(&s, "left"), 4);
    assert_eq!(num(&s, "made"), 4);
}
