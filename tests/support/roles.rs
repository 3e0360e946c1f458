//! Every role that talks to Redis, each in a short run against one URL
//! with extra flags (`--tls-ca …`), checked to work: for the tests that
//! change how kitchen reaches Redis (TLS, an ACL user) rather than what it
//! does there.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::web::{request, spawn_serve};
use super::{last_json, num, run, run_json, stderr};

/// The README's `redis-cli ACL SETUSER kitchen …` line that starts with
/// `start` (after `redis-cli`), as `ACL SETUSER` arguments with `password`
/// filled in: the rule is tested as a user would paste it.
pub fn readme_acl(start: &str, password: &str) -> Vec<String> {
    let readme = include_str!("../../README.md");
    let line = readme
        .lines()
        .find(|l| l.starts_with(&format!("redis-cli {start}")))
        .unwrap_or_else(|| panic!("the README has a line `redis-cli {start}…`"));
    line.split_whitespace()
        .skip(1)
        .map(|w| w.trim_matches('\'').replace("PASSWORD", password))
        .collect()
}

/// `ROLE --backend redis --redis-url URL EXTRA… REST…`.
pub fn role_args(role: &str, url: &str, extra: &[String], rest: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["--backend", "redis", "--redis-url", url]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    v.insert(0, role.to_owned());
    v.extend(extra.iter().cloned());
    v.extend(rest.iter().map(|s| (*s).to_owned()));
    v
}

/// Runs it to completion: it must succeed; its stdout lines.
fn ok(role: &str, url: &str, extra: &[String], rest: &[&str]) -> Vec<String> {
    let a = role_args(role, url, extra, rest);
    let out = run(&a);
    assert!(out.status.success(), "kitchen {a:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// run, chef, diner, enqueue, info and serve, in list, stream and pub/sub
/// modes, each must work and lose nothing.
pub fn every_role_works(url: &str, extra: &[String]) {
    let fast = ["--max-sleep-ms", "0"];
    // One process, each mode.
    for mode in ["list", "stream"] {
        let s = run_json(&role_args(
            "run",
            url,
            extra,
            &["--mode", mode, "--dishes", "40", fast[0], fast[1]],
        ));
        assert_eq!((num(&s, "made"), num(&s, "eaten")), (40, 40), "{mode}: {s}");
        assert_eq!((num(&s, "left"), num(&s, "lost")), (0, 0), "{mode}: {s}");
    }
    let s = run_json(&role_args(
        "run",
        url,
        extra,
        &[
            "--mode", "pubsub", "--dishes", "20", "--diners", "1", fast[0], fast[1],
        ],
    ));
    assert_eq!(num(&s, "made"), 20, "pubsub: {s}");
    assert_eq!(num(&s, "eaten") + num(&s, "lost"), 20, "pubsub: {s}");
    // Chefs, then diners that eat what is queued and leave, each mode that holds dishes.
    for mode in ["list", "stream"] {
        let s = last_json(&ok(
            "chef",
            url,
            extra,
            &["--mode", mode, "--dishes", "10", fast[0], fast[1], "--json"],
        ));
        assert_eq!(num(&s, "made"), 10, "{mode}: {s}");
        let s = last_json(&ok(
            "diner",
            url,
            extra,
            &["--mode", mode, "--burst", fast[0], fast[1], "--json"],
        ));
        assert_eq!(num(&s, "eaten"), 10, "{mode}: {s}");
    }
    // Operator commands.
    let ids = ok("enqueue", url, extra, &["one", "two", "3"]);
    assert_eq!(ids.len(), 3, "one id per dish: {ids:?}");
    let s = last_json(&ok(
        "diner",
        url,
        extra,
        &["--burst", fast[0], fast[1], "--json"],
    ));
    assert_eq!(num(&s, "eaten"), 3, "{s}");
    let info = ok("info", url, extra, &["--json"]);
    assert!(!info.is_empty(), "info printed nothing");
    // The web entry: a dish through /prodcons and one through the API.
    let a = role_args("serve", url, extra, &[]);
    let a: Vec<&str> = a.iter().skip(1).map(String::as_str).collect();
    let (serve, addr, _err) = spawn_serve(&a);
    assert_eq!(request(addr, "GET", "/prodcons", None).status, 302);
    assert_eq!(
        request(addr, "POST", "/dishes", Some(b"{\"w\":64}")).status,
        202
    );
    assert_eq!(request(addr, "GET", "/pubsub", None).status, 302);
    assert_eq!(request(addr, "GET", "/healthz", None).status, 200);
    drop(serve);
    let s = last_json(&ok(
        "diner",
        url,
        extra,
        &["--burst", fast[0], fast[1], "--json"],
    ));
    assert_eq!(num(&s, "eaten"), 2, "{s}");
}
