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
    refused(&["chef", "--backend", "local"], "needs --backend redis");
    refused(&["diner", "--backend", "local"], "needs --backend redis");
    refused(&["info", "--backend", "local"], "needs --backend redis");
    refused(
        &["--backend", "redis", "--redis-url", "http://x"],
        "redis://",
    );
}

/// `refused`, and the error names the subcommand's usage, not the top level's.
fn refused_under(args: &[&str], hint: &str) {
    refused(args, hint);
    let stderr = String::from_utf8_lossy(&run(args).stderr).into_owned();
    let usage = format!("Usage: kitchen {} ", args[0]);
    assert!(
        stderr.contains(&usage),
        "{args:?}: expected {usage:?} in {stderr}"
    );
}

#[test]
fn flags_a_subcommand_would_ignore_are_refused() {
    refused_under(
        &["serve", "--backend", "redis", "--batch", "3"],
        "'--batch'",
    );
    refused_under(&["diner", "--capacity", "3"], "'--capacity'");
    refused_under(&["info", "--batch", "5"], "'--batch'");
    refused_under(
        &[
            "run",
            "--backend",
            "redis",
            "--mode",
            "pubsub",
            "--capacity",
            "5",
        ],
        "--capacity does not apply to --mode pubsub",
    );
    refused_under(
        &["chef", "--mode", "pubsub", "--unbounded"],
        "--unbounded does not apply to --mode pubsub",
    );
    refused_under(
        &["serve", "--backend", "redis", "--diners", "4"],
        "`kitchen diner` processes",
    );
    refused_under(&["run", "--queue", "q"], "add --backend redis");
    refused_under(&["info", "--mode", "pubsub"], "takes no --mode");
}

#[test]
fn usage_errors_show_the_subcommand_usage() {
    refused_under(&["chef", "--capacity", "0"], "0 is not in 1..");
    refused_under(&["diner", "--diners", "0"], "0 is not in 1..");
    refused_under(&["serve", "--workers", "0"], "0 is not in 1..");
    refused_under(&["info", "--capacity", "0"], "0 is not in 1..");
    refused_under(&["chef", "--backend", "local"], "use `kitchen run`");
    refused_under(&["run", "--backend", "kafka"], "possible values");
}

#[test]
fn a_bind_address_that_cannot_be_is_a_usage_error() {
    refused_under(&["serve", "--bind", "nonsense"], "use HOST:PORT");
    refused_under(&["serve", "--bind", ":99999"], "use HOST:PORT");
}

#[cfg(feature = "redis")]
#[test]
fn redis_only_roles_need_no_backend_flag() {
    // Parsed, then refused at run time: nothing listens on port 1.
    for role in ["chef", "diner", "info"] {
        let out = run(&[role, "--redis-url", "redis://127.0.0.1:1/5"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{role}: {stderr}");
        assert!(stderr.contains("cannot reach redis"), "{role}: {stderr}");
    }
}

#[test]
fn a_bad_redis_url_never_shows_its_secret() {
    for (url, secrets) in [
        ("redis://alice:pa/ss@127.0.0.1:x/5", &["pa/ss", "ss@"][..]),
        (
            "redis+unix:///tmp/kitchen.sock?db=x&pass=S3cr3t",
            &["S3cr3t"],
        ),
        ("redis+unix://?pass=S3cr3t", &["S3cr3t"]),
    ] {
        for role in ["run", "chef", "info"] {
            let out = run(&[role, "--backend", "redis", "--redis-url", url]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(2), "{role} {url}: {stderr}");
            assert!(stderr.contains("invalid --redis-url"), "{stderr}");
            for secret in secrets {
                assert!(!stderr.contains(secret), "{url}: {stderr}");
                assert!(!stdout.contains(secret), "{url}: {stdout}");
            }
        }
    }
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
    let line = support::error_line(&["run", "--backend", "redis", "--dishes", "1"]);
    assert!(line.contains("--features redis"), "{line}");
}
