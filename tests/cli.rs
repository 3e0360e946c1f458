//! Usage errors, help, and the build without Redis: what the command line refuses and says.

mod support;

use support::run;

fn refused(args: &[&str], hint: &str) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(
        stderr.contains(hint),
        "{args:?}: expected {hint:?} in {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
}

#[test]
fn zero_counts_are_refused_with_the_allowed_range() {
    refused(&["run", "--capacity", "0"], "0 is not in 1..");
    refused(&["run", "--chefs", "0"], "0 is not in 1..");
    refused(&["run", "--diners", "0"], "0 is not in 1..");
    refused(&["--dishes", "0"], "use a whole number from 1 up");
}

#[test]
fn negative_and_non_numeric_values_are_refused() {
    refused(&["--chefs", "-2"], "-2 is not in 1..=4096");
    refused(&["--diners", "5000"], "5000 is not in 1..=4096");
    refused(&["--capacity", "-3"], "-3 is not in 1..");
    refused(
        &["--capacity", "2000000"],
        "at most 1000000, or --unbounded",
    );
    refused(&["--capacity", "ten"], "invalid digit");
    refused(&["--max-sleep-ms", "-1"], "use a whole number from 0 up");
    refused(&["--dishes", "-1"], "use a whole number from 1 up");
    refused(&["--seed", "x"], "--seed");
    refused(&["--duration", "-1"], "--duration");
    refused(&["--duration", "soon"], "not a number of seconds");
    refused(&["--duration", "0"], "more than 0 seconds");
}

#[test]
fn unknown_flags_values_and_conflicts_are_refused() {
    refused(&["--frobnicate"], "unexpected argument");
    refused(&["--backend", "kafka"], "possible values: local, redis");
    refused(&["--capacity", "3", "--unbounded"], "cannot be used with");
    refused(&["--mode", "pubsub"], "--mode applies to --backend redis");
    refused(&["chef"], "needs --backend redis");
    refused(&["diner"], "needs --backend redis");
    refused(
        &["--backend", "redis", "--redis-url", "http://x"],
        "redis://",
    );
}

#[test]
fn help_names_every_role_and_option() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for want in [
        "run",
        "chef",
        "diner",
        "--backend",
        "--capacity",
        "--dishes",
        "--json",
        "--seed",
    ] {
        assert!(help.contains(want), "--help lacks {want}:\n{help}");
    }
}

#[cfg(not(feature = "redis"))]
#[test]
fn a_build_without_redis_names_the_feature() {
    let out = run(&["run", "--backend", "redis", "--dishes", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("kitchen: "), "{stderr}");
    assert!(stderr.contains("--features redis"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}
