//! `kitchen run` on the local backend, through the real binary: accounting, lines, seeds, JSON.

mod support;

use std::collections::BTreeMap;

use support::{num, run, run_json, summary};

/// `kitchen run ARGS --json`, which must succeed: its summary.
fn json_run(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    run_json(&all)
}

#[test]
fn exact_accounting_across_chef_diner_capacity_mixes() {
    for (chefs, diners, cap) in [(1, 1, 1), (3, 2, 10), (2, 5, 1), (4, 4, 100)] {
        let (c, d, k) = (chefs.to_string(), diners.to_string(), cap.to_string());
        let s = json_run(&[
            "--chefs",
            &c,
            "--diners",
            &d,
            "--capacity",
            &k,
            "--dishes",
            "20000",
            "--max-sleep-ms",
            "0",
            "--quiet",
        ]);
        let mix = format!("{chefs} chefs / {diners} diners / capacity {cap}");
        assert_eq!(num(&s, "made"), 20_000, "{mix}: made");
        assert_eq!(num(&s, "eaten"), 20_000, "{mix}: eaten");
        assert_eq!(num(&s, "left"), 0, "{mix}: left");
        assert_eq!(num(&s, "lost"), 0, "{mix}: lost");
        assert_eq!(num(&s, "rejected"), 0, "{mix}: rejected");
        assert!(
            num(&s, "max_depth") <= cap,
            "{mix}: max_depth {}",
            s["max_depth"]
        );
        assert_eq!(
            (num(&s, "chefs"), num(&s, "diners")),
            (chefs, diners),
            "{mix}"
        );
    }
}

#[test]
fn seven_chefs_one_diner_fill_a_queue_of_three_but_never_overflow_it() {
    let out = run(&[
        "run",
        "--chefs",
        "7",
        "--diners",
        "1",
        "--capacity",
        "3",
        "--dishes",
        "200",
        "--max-sleep-ms",
        "2",
        "--json",
    ]);
    assert!(out.status.success());
    let s = summary(&out);
    assert_eq!((num(&s, "made"), num(&s, "eaten")), (200, 200));
    assert_eq!(
        num(&s, "max_depth"),
        3,
        "the queue should fill to exactly its capacity"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let depths: Vec<u64> = stdout
        .lines()
        .filter_map(|l| l.strip_suffix(" left unsold"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    assert_eq!(depths.len(), 200, "one line per dish made");
    // The depth is read just after the put, so a diner may already have
    // taken the dish (0); it is never above the capacity.
    assert!(depths.iter().all(|&d| d <= 3), "{depths:?}");
}

#[test]
fn dishes_is_a_total_not_per_chef_and_every_dish_gets_its_lines() {
    let out = run(&["run", "--dishes", "25", "--max-sleep-ms", "1", "--json"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let made = stdout.lines().filter(|l| l.contains(" made dish ")).count();
    let ate = stdout.lines().filter(|l| l.contains(" ate dish ")).count();
    assert_eq!((made, ate), (25, 25), "{stdout}");
    for line in stdout.lines().filter(|l| !l.starts_with('{')) {
        let ok = is_chef_line(line) || is_diner_line(line);
        assert!(ok, "unexpected line format: {line:?}");
    }
}

/// `chef-2 made dish 7 --- 4 left unsold`
fn is_chef_line(l: &str) -> bool {
    is_dish_line(l, "chef-", "made", &["left", "unsold"])
}

/// `diner-1 ate dish 7 --- 3 left to eat`
fn is_diner_line(l: &str) -> bool {
    is_dish_line(l, "diner-", "ate", &["left", "to", "eat"])
}

/// `<who>N <verb> dish D --- K <tail…>`, with D in 0–9.
fn is_dish_line(l: &str, who: &str, verb: &str, tail: &[&str]) -> bool {
    let w: Vec<&str> = l.split(' ').collect();
    w.len() == 6 + tail.len()
        && w[0]
            .strip_prefix(who)
            .is_some_and(|n| n.parse::<u32>().is_ok())
        && w[1..3] == [verb, "dish"]
        && w[3].parse::<u8>().is_ok_and(|d| d <= 9)
        && w[4] == "---"
        && w[5].parse::<u64>().is_ok()
        && w[6..] == *tail
}

/// Each chef's dish numbers, in the order it made them.
fn dishes_by_chef(stdout: &str) -> BTreeMap<String, Vec<u8>> {
    let mut m: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for l in stdout.lines().filter(|l| is_chef_line(l)) {
        let w: Vec<&str> = l.split(' ').collect();
        m.entry(w[0].to_owned())
            .or_default()
            .push(w[3].parse().unwrap_or(99));
    }
    m
}

fn seeded(seed: &str) -> BTreeMap<String, Vec<u8>> {
    let out = run(&[
        "run",
        "--seed",
        seed,
        "--dishes",
        "60",
        "--max-sleep-ms",
        "3",
    ]);
    assert!(out.status.success());
    dishes_by_chef(&String::from_utf8_lossy(&out.stdout))
}

#[test]
fn a_seed_reproduces_each_chefs_dishes() {
    let (a, b) = (seeded("42"), seeded("42"));
    assert_eq!(a.keys().count(), 3, "all three chefs cooked: {a:?}");
    // How many dishes each chef gets to make depends on the scheduler; what
    // it draws does not, so one run's sequence is a prefix of the other's.
    for (chef, xs) in &a {
        let ys = &b[chef];
        let n = xs.len().min(ys.len());
        assert!(
            n >= 5,
            "{chef} made too few dishes to compare: {xs:?} / {ys:?}"
        );
        assert_eq!(
            xs[..n],
            ys[..n],
            "{chef} drew differently under the same seed"
        );
    }
    let c = seeded("43");
    assert_ne!(
        a["chef-1"][..5],
        c["chef-1"][..5],
        "another seed, other dishes"
    );
}

#[test]
fn json_summary_has_every_field_with_its_type() {
    let s = json_run(&["--dishes", "500", "--max-sleep-ms", "0", "--quiet"]);
    let obj = s.as_object().expect("an object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let ints = [
        "chefs",
        "diners",
        "capacity",
        "made",
        "eaten",
        "failed",
        "retried",
        "left",
        "waiting",
        "lost",
        "rejected",
        "max_depth",
    ];
    let others = ["backend", "mode", "elapsed_s", "dishes_per_s", "latency_us"];
    let mut want: Vec<&str> = ints.iter().chain(&others).copied().collect();
    want.sort_unstable();
    assert_eq!(keys, want);
    assert_eq!(s["backend"], "local");
    assert!(s["mode"].is_null());
    for k in ints {
        assert!(s[k].is_u64(), "{k} should be an integer: {s}");
    }
    assert!(s["elapsed_s"].as_f64().is_some_and(|x| x > 0.0), "{s}");
    assert!(s["dishes_per_s"].as_f64().is_some_and(|x| x > 0.0), "{s}");
    let lat = &s["latency_us"];
    for k in ["p50", "p90", "p99", "max"] {
        assert!(lat[k].is_u64(), "latency_us.{k}: {s}");
    }
    assert!(num(lat, "p50") <= num(lat, "p90") && num(lat, "p90") <= num(lat, "p99"));
    assert!(num(lat, "p99") <= num(lat, "max"));
}

#[test]
fn without_json_the_summary_table_goes_to_stderr_and_stdout_has_only_dish_lines() {
    let out = run(&["--dishes", "10", "--max-sleep-ms", "0"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("kitchen summary"), "{stderr}");
    assert!(stderr.contains("made         10"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 20, "{stdout}");
}

#[test]
fn duration_stops_an_endless_run_and_drains() {
    let s = json_run(&["--duration", "0.3", "--max-sleep-ms", "5", "--quiet"]);
    assert!(num(&s, "made") > 0);
    assert_eq!(num(&s, "made"), num(&s, "eaten"));
    assert_eq!(num(&s, "left"), 0);
}

#[test]
fn unbounded_runs_report_a_null_capacity() {
    let s = json_run(&[
        "--unbounded",
        "--dishes",
        "1000",
        "--max-sleep-ms",
        "0",
        "--quiet",
    ]);
    assert!(s["capacity"].is_null(), "{s}");
    assert_eq!(num(&s, "eaten"), 1000);
}

/// The ids of dishes whose "ate" line came before their "made" line.
fn eaten_before_made(stdout: &str) -> Vec<String> {
    let mut made = std::collections::HashSet::new();
    let mut early = Vec::new();
    for l in stdout.lines() {
        let Some(id) = l.split("[id ").nth(1).and_then(|r| r.strip_suffix(']')) else {
            continue;
        };
        if l.contains(" made dish ") {
            made.insert(id.to_owned());
        } else if l.contains(" ate dish ") && !made.contains(id) {
            early.push(id.to_owned());
        }
    }
    early
}

/// `--ids` follows a dish from its chef to its diner: at full speed, with
/// diners taking a dish the moment it lands, every "made" line still comes
/// before the "ate" line of its dish (it once failed for 1 dish in 10).
#[test]
fn every_dish_is_made_on_screen_before_it_is_eaten() {
    for args in [
        &["run", "--dishes", "2000", "--max-sleep-ms", "0", "--ids"][..],
        &[
            "run",
            "--dishes",
            "300",
            "--max-sleep-ms",
            "2",
            "--ids",
            "--diners",
            "5",
        ][..],
    ] {
        let out = run(args);
        assert!(out.status.success(), "{args:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let early = eaten_before_made(&stdout);
        assert!(early.is_empty(), "{args:?}: eaten before made: {early:?}");
        assert_eq!(
            stdout.lines().filter(|l| l.contains(" made dish ")).count(),
            stdout.lines().filter(|l| l.contains(" ate dish ")).count(),
            "{args:?}"
        );
    }
}
