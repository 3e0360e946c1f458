//! Redis stream mode against a real redis-server: accounting in one process
//! and across processes, consumer groups that each get every dish, plain
//! XADD and garbage, capacity, trimming, a killed diner, Ctrl-C, the web entry.
#![cfg(feature = "redis")]

mod support;

use support::ledger::Ledger;
use support::redis_kitchen::{run, spawn_napping_diner};
use support::redis_server::RedisServer;
use support::redis_stream::{
    GROUP, STREAM, drained, group, pending_owners, run_json, spawn, xadd, xlen,
};
use support::web::{request, spawn_serve};
use support::{LIMIT, last_json, num, one_error_line, signal, stderr, summary, wait_until};

/// What a diner leaving last leaves behind: the stream trimmed to nothing,
/// the group with nothing pending or undelivered and no consumers.
fn assert_clean(server: &RedisServer, name: &str) {
    let g = group(server, STREAM, name).expect("the group exists");
    assert!(g.drained(), "{g:?}");
    assert_eq!(g.consumers, 0, "every diner left the group: {g:?}");
    assert_eq!(xlen(server, STREAM), 0, "acknowledged entries are trimmed");
}

#[test]
fn one_process_eats_every_dish_and_leaves_nothing() {
    let server = RedisServer::start();
    let s = run_json(
        &server,
        "run",
        &["--dishes", "500", "--max-sleep-ms", "0", "--quiet"],
    );
    assert_eq!(
        (s["backend"].as_str(), s["mode"].as_str()),
        (Some("redis"), Some("stream"))
    );
    assert_eq!((num(&s, "made"), num(&s, "eaten")), (500, 500), "{s}");
    assert_eq!(
        (num(&s, "left"), num(&s, "lost"), num(&s, "rejected")),
        (0, 0, 0),
        "{s}"
    );
    assert!(num(&s, "max_depth") <= 10, "{s}");
    assert_clean(&server, GROUP);
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
            "40",
        ],
    );
    assert_eq!(
        (num(&s, "made"), num(&s, "eaten"), num(&s, "left")),
        (500, 500, 0),
        "{s}"
    );
    assert!(num(&s, "max_depth") <= 40, "{s}");
    assert_clean(&server, GROUP);
}

#[test]
fn one_chef_process_feeds_two_diner_processes() {
    let server = RedisServer::start();
    let diner = |seed: &str| {
        spawn(
            &server,
            "diner",
            &["--max-sleep-ms", "2", "--seed", seed, "--ids", "--json"],
        )
    };
    let (d1, l1) = diner("1");
    let (d2, l2) = diner("2");
    let chef = run(
        &server,
        "chef",
        &[
            "--mode",
            "stream",
            "--dishes",
            "200",
            "--max-sleep-ms",
            "1",
            "--ids",
            "--json",
        ],
    );
    assert!(chef.status.success(), "{}", stderr(&chef));
    let chef_summary = summary(&chef);
    assert_eq!(num(&chef_summary, "made"), 200, "{chef_summary}");
    assert!(num(&chef_summary, "max_depth") <= 10, "{chef_summary}");
    wait_until(LIMIT, "the group to eat everything", || {
        drained(&server, STREAM, GROUP)
    });
    let (all1, all2) = (d1.stop("INT", l1), d2.stop("INT", l2));
    let (s1, s2) = (last_json(&all1), last_json(&all2));
    for s in [&s1, &s2] {
        assert!(
            s["made"].is_null(),
            "a diner cannot know what was made: {s}"
        );
        assert_eq!(num(s, "left"), 0, "{s}");
    }
    let mut ledger = Ledger::new();
    ledger.read(
        &String::from_utf8_lossy(&chef.stdout)
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>(),
    );
    ledger.read(&all1);
    ledger.read(&all2);
    assert_eq!(ledger.made(), 200, "{ledger}");
    assert!(ledger.uneaten().is_empty(), "{ledger}");
    assert_eq!(
        ledger.duplicates(),
        0,
        "no diner died: exactly once; {ledger}"
    );
    assert_eq!(num(&s1, "eaten") + num(&s2, "eaten"), 200, "{s1} {s2}");
    assert_clean(&server, GROUP);
}

#[test]
fn every_group_gets_every_dish_and_a_group_that_was_away_holds_the_chefs_back() {
    let server = RedisServer::start();
    // Group b's first diner creates it, then goes away.
    let (b, bl) = spawn(&server, "diner", &["--group", "b", "--json"]);
    wait_until(LIMIT, "group b to exist", || {
        group(&server, STREAM, "b").is_some()
    });
    b.stop("INT", bl);
    let diner_a = spawn(
        &server,
        "diner",
        &["--group", "a", "--max-sleep-ms", "0", "--ids", "--json"],
    );
    wait_until(LIMIT, "group a to exist", || {
        group(&server, STREAM, "a").is_some()
    });
    let (chef, chef_lines) = spawn(
        &server,
        "chef",
        &[
            "--dishes",
            "60",
            "--capacity",
            "30",
            "--max-sleep-ms",
            "0",
            "--ids",
            "--json",
        ],
    );
    // Group a eats as they come; group b's 30 unread dishes fill the capacity.
    wait_until(LIMIT, "group b to fall 30 behind", || {
        group(&server, STREAM, "b").and_then(|g| g.lag) == Some(30)
    });
    wait_until(LIMIT, "group a to eat the first 30", || {
        drained(&server, STREAM, "a")
    });
    // The chef is blocked now: several of its BLPOP rounds go by and nothing
    // more is made (a condition, not a sleep, bounds the window).
    let blpops = || server.command_calls().get("blpop").copied().unwrap_or(0);
    let before = blpops();
    wait_until(LIMIT, "three BLPOP rounds", || blpops() >= before + 3);
    assert_eq!(group(&server, STREAM, "b").and_then(|g| g.lag), Some(30));
    assert_eq!(xlen(&server, STREAM), 30, "what group b still needs stays");
    // Group b comes back, reads what it missed, and lets the chef finish.
    let diner_b = spawn(
        &server,
        "diner",
        &["--group", "b", "--max-sleep-ms", "0", "--ids", "--json"],
    );
    let chef_all = chef.finish(chef_lines);
    assert_eq!(num(&last_json(&chef_all), "made"), 60);
    wait_until(LIMIT, "both groups to eat everything", || {
        drained(&server, STREAM, "a") && drained(&server, STREAM, "b")
    });
    for (name, (d, l)) in [("a", diner_a), ("b", diner_b)] {
        let lines = d.stop("INT", l);
        let mut ledger = Ledger::new();
        ledger.read(&chef_all);
        ledger.read(&lines);
        assert_eq!(ledger.made(), 60, "group {name}: {ledger}");
        assert!(ledger.uneaten().is_empty(), "group {name}: {ledger}");
        assert_eq!(ledger.duplicates(), 0, "group {name}: {ledger}");
        assert_eq!(num(&last_json(&lines), "left"), 0, "group {name}");
    }
    assert_eq!(
        xlen(&server, STREAM),
        0,
        "acknowledged by every group: trimmed"
    );
}

#[test]
fn plain_xadd_is_a_dish_and_only_an_entry_without_one_is_set_aside() {
    let server = RedisServer::start();
    // What another producer sends: the tutorial's bare integer, text, an
    // entry without a `dish` field (the one thing set aside), a number
    // outside 0–9, and kitchen's own envelope.
    xadd(&server, STREAM, &["dish", "7"]);
    xadd(&server, STREAM, &["dish", "soup"]);
    xadd(&server, STREAM, &["task", "resize", "w", "64"]);
    xadd(&server, STREAM, &["dish", "12"]);
    xadd(
        &server,
        STREAM,
        &[
            "dish",
            r#"{"id":"00000000000000ab-1","dish":4,"made_at":0}"#,
        ],
    );
    let (diner, mut lines) = spawn(
        &server,
        "diner",
        &["--diners", "1", "--max-sleep-ms", "0", "--json"],
    );
    lines.wait_for(LIMIT, |l| l.contains("ate dish 4 "));
    let all = diner.stop("INT", lines);
    assert!(all.iter().any(|l| l.contains("ate dish 7 ")), "{all:?}");
    assert!(all.iter().any(|l| l.contains("ate dish soup ")), "{all:?}");
    let s = last_json(&all);
    assert_eq!((num(&s, "eaten"), num(&s, "rejected")), (4, 1), "{s}");
    let dead = server.lrange(&format!("{{{STREAM}}}:dead"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    let letter: serde_json::Value = serde_json::from_str(&dead[0]).expect("a dead letter is JSON");
    assert_eq!(letter["payload"], r#"{"task":"resize","w":"64"}"#);
    assert!(
        letter["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no `dish` field")),
        "{letter}"
    );
    assert_clean(&server, GROUP);
}

#[test]
fn a_killed_diners_dish_is_eaten_by_another() {
    let server = RedisServer::start();
    xadd(&server, STREAM, &["dish", "7"]);
    // Default heartbeat settings; the seeded nap (minutes) keeps the first
    // diner holding its dish until it is killed.
    let (a, mut la) = spawn_napping_diner(&server, &["--mode", "stream"]);
    la.wait_for(LIMIT, |l| l.contains("ate dish 7 "));
    signal(a.id(), "KILL");
    a.wait(LIMIT);
    let owners = pending_owners(&server, STREAM, GROUP);
    assert_eq!(
        owners.len(),
        1,
        "the dish is held by the dead diner: {owners:?}"
    );
    // `kitchen info` shows who holds what.
    let info = run(&server, "info", &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).expect("info JSON");
    let g = &v["stream"]["groups"][0];
    assert_eq!(
        (g["name"].as_str(), g["pending"].as_u64()),
        (Some(GROUP), Some(1)),
        "{v}"
    );
    assert_eq!(g["oldest_pending_deliveries"].as_u64(), Some(1), "{v}");
    assert_eq!(
        g["consumers"][0]["name"].as_str(),
        Some(owners[0].1.as_str()),
        "{v}"
    );
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
        "stream: the killed diner's dish eaten by another {:.1} s after it started",
        started.elapsed().as_secs_f64()
    );
    let s = last_json(&b.stop("INT", lb));
    assert_eq!(num(&s, "eaten"), 1, "{s}");
    let g = group(&server, STREAM, GROUP).expect("group");
    assert!(g.drained(), "{g:?}");
    // The dead consumer, holding nothing, was forgotten by the live one's
    // heartbeat or is the only one left; the live one left on Ctrl-C.
    assert!(g.consumers <= 1, "{g:?}");
    assert_eq!(xlen(&server, STREAM), 0);
}

#[test]
fn ctrl_c_on_a_diner_finishes_its_dish_and_hands_back_the_rest() {
    let server = RedisServer::start();
    for n in ["1", "2", "3", "4"] {
        xadd(&server, STREAM, &["dish", n]);
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
        pending_owners(&server, STREAM, GROUP).len(),
        4,
        "the whole batch is in the diner's hands"
    );
    let first = diner.stop("INT", lines);
    let eaten = num(&last_json(&first), "eaten");
    assert!(eaten >= 1, "{first:?}");
    let g = group(&server, STREAM, GROUP).expect("group");
    assert_eq!((g.pending, g.lag), (4 - eaten, Some(0)), "{g:?}");
    // What it handed back is claimable at once, not after the 5 s heartbeat
    // TTL: it carries an idle time far past any TTL.
    let rows: Vec<(String, String, u64, u64)> =
        server.query(&["XPENDING", STREAM, GROUP, "-", "+", "10"]);
    assert!(rows.iter().all(|r| r.2 > 60_000), "{rows:?}");
    let (next, mut nl) = spawn(
        &server,
        "diner",
        &["--diners", "1", "--max-sleep-ms", "0", "--json"],
    );
    if eaten < 4 {
        nl.wait_for(LIMIT, |l| l.contains("ate dish 4 "));
    }
    let second = next.stop("INT", nl);
    let numbers: Vec<String> = first
        .iter()
        .chain(&second)
        .filter_map(|l| {
            l.split(" ate dish ")
                .nth(1)?
                .split(' ')
                .next()
                .map(str::to_owned)
        })
        .collect();
    let mut sorted = numbers.clone();
    sorted.sort();
    assert_eq!(sorted, ["1", "2", "3", "4"], "each eaten once: {numbers:?}");
    let g = group(&server, STREAM, GROUP).expect("group");
    assert!(g.drained(), "{g:?}");
    // The first diner stays a consumer (the owner of what it handed back)
    // until a live diner's heartbeat finds it silent for a TTL.
    assert!(g.consumers <= 1, "{g:?}");
    assert_eq!(xlen(&server, STREAM), 0);
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
    wait_until(LIMIT, "the stream to fill", || xlen(&server, STREAM) == 5);
    let sent = |s: &RedisServer| {
        let c = s.command_calls();
        ["evalsha", "eval", "blpop"]
            .iter()
            .map(|k| c.get(*k).copied().unwrap_or(0))
            .sum::<u64>()
    };
    let blpops = |s: &RedisServer| s.command_calls().get("blpop").copied().unwrap_or(0);
    let (sent0, blpop0) = (sent(&server), blpops(&server));
    wait_until(LIMIT, "six BLPOP rounds", || blpops(&server) >= blpop0 + 6);
    let (sent1, blpop1) = (sent(&server), blpops(&server));
    // No polling: one script and one BLPOP per round, plus a round each chef
    // may be half-way through.
    let (commands, rounds) = (sent1 - sent0, blpop1 - blpop0);
    assert!(
        commands <= 2 * rounds + 4,
        "blocked chefs sent {commands} commands in {rounds} blocking rounds"
    );
    assert_eq!(xlen(&server, STREAM), 5, "never more than the capacity");
    let info = run(&server, "info", &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).expect("info JSON");
    let s = &v["stream"];
    assert_eq!(
        (
            s["length"].as_u64(),
            s["unacknowledged"].as_u64(),
            s["capacity"].as_u64()
        ),
        (Some(5), Some(5), Some(5)),
        "{v}"
    );
    assert_eq!(s["capacity_from_chefs"], true, "{v}");
    let (diner, dl) = spawn(&server, "diner", &["--max-sleep-ms", "0", "--json"]);
    let (s1, s2) = (last_json(&c1.finish(l1)), last_json(&c2.finish(l2)));
    assert_eq!(num(&s1, "made") + num(&s2, "made"), 40);
    assert!(
        num(&s1, "max_depth") <= 5 && num(&s2, "max_depth") <= 5,
        "{s1} {s2}"
    );
    wait_until(LIMIT, "the group to eat everything", || {
        drained(&server, STREAM, GROUP)
    });
    let d = last_json(&diner.stop("INT", dl));
    assert_eq!(num(&d, "eaten"), 40);
    assert!(num(&d, "max_depth") <= 5, "{d}");
}

#[test]
fn acknowledged_entries_do_not_pile_up_bounded_or_not() {
    let server = RedisServer::start();
    let (diner, dl) = spawn(
        &server,
        "diner",
        &[
            "--diners",
            "2",
            "--batch",
            "4",
            "--max-sleep-ms",
            "0",
            "--quiet",
            "--json",
        ],
    );
    wait_until(LIMIT, "the group to exist", || {
        group(&server, STREAM, GROUP).is_some()
    });
    for capacity in [&["--capacity", "20"][..], &["--unbounded"]] {
        let mut args = vec![
            "--dishes",
            "2000",
            "--batch",
            "8",
            "--max-sleep-ms",
            "0",
            "--quiet",
            "--json",
        ];
        args.extend_from_slice(capacity);
        let (mut chef, cl) = spawn(&server, "chef", &args);
        // While dishes flow: what the group has not acknowledged stays
        // within the capacity (one XINFO reply: lag and pending together).
        let mut most = 0;
        while chef.child().try_wait().expect("try_wait").is_none() {
            if let Some(g) = group(&server, STREAM, GROUP) {
                most = most.max(g.pending + g.lag.unwrap_or(0));
            }
        }
        if capacity[0] == "--capacity" {
            assert!(most <= 20, "{most} unacknowledged with capacity 20");
        }
        assert_eq!(num(&last_json(&chef.finish(cl)), "made"), 2000);
        wait_until(LIMIT, "the group to eat everything", || {
            drained(&server, STREAM, GROUP)
        });
        // The diners' heartbeats trim what every group acknowledged, with no
        // chef about to do it.
        wait_until(LIMIT, "the stream to be trimmed", || {
            xlen(&server, STREAM) == 0
        });
    }
    let s = last_json(&diner.stop("INT", dl));
    assert_eq!(num(&s, "eaten"), 4000, "{s}");
}

#[test]
fn a_run_stops_at_duration_and_reports_what_is_left() {
    let server = RedisServer::start();
    let out = run(
        &server,
        "chef",
        &[
            "--mode",
            "stream",
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
    // No group yet: all four are left for the first one.
    assert_eq!((num(&s, "made"), num(&s, "left")), (4, 4), "{s}");
}

#[test]
fn the_web_entry_adds_to_the_stream_and_tracks_results() {
    let server = RedisServer::start();
    let url = server.url();
    let (serve, addr, _) = spawn_serve(&[
        "--backend",
        "redis",
        "--redis-url",
        &url,
        "--mode",
        "stream",
        "--workers",
        "2",
    ]);
    let r = request(addr, "GET", "/prodcons", None);
    assert_eq!(r.status, 302, "{}", r.text());
    let r = request(addr, "POST", "/dishes", Some(b""));
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["id"].as_str().expect("an id").to_owned();
    assert_eq!(xlen(&server, STREAM), 2, "both went to the stream");
    assert_eq!(server.llen("task:prodcons:queue"), 0, "none to the list");
    let (diner, dl) = spawn(&server, "diner", &["--max-sleep-ms", "0", "--json"]);
    wait_until(LIMIT, "the tracked dish to be eaten", || {
        request(addr, "GET", &format!("/dishes/{id}"), None).json()["status"] == "eaten"
    });
    let s = last_json(&diner.stop("INT", dl));
    assert_eq!(num(&s, "eaten"), 2, "{s}");
    drop(serve);
}

#[test]
fn a_stream_key_of_another_type_is_refused_with_one_line() {
    let server = RedisServer::start();
    let _: () = server.query(&["SET", STREAM, "x"]);
    for role in ["chef", "diner"] {
        let line = one_error_line(&run(&server, role, &["--mode", "stream"]), &role);
        assert!(
            line.contains(&format!("key `{STREAM}` holds a string, not a stream"))
                && line.contains("choose another --stream"),
            "{role}: {line}"
        );
    }
}
