//! Real work: payloads on a command's stdin, exit codes as failures, timeouts, the
//! shutdown deadline, `kitchen enqueue --wait` and `diner --burst`, on a real Redis.
#![cfg(feature = "redis")]

mod support;

use std::io::Write;
use std::process::Stdio;
use std::time::Instant;

use support::redis_kitchen::{QUEUE, args, burst, run, spawn};
use support::redis_server::RedisServer;
use support::{
    LIMIT, kitchen, last_json, num, one_error_line, signal, stderr, summary, wait_output,
    wait_until,
};

#[test]
fn payloads_reach_the_command_on_stdin_untouched_and_are_never_run() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let trap = dir.path().join("pwned");
    let injection = format!("$(touch {})", trap.display());
    let payloads = [
        r#"he said "hi" and 'bye'"#,
        "ünïcødé ✓ 日本",
        "a;b && c | d > e",
        injection.as_str(),
    ];
    let mut a: Vec<&str> = payloads.to_vec();
    a.push("-");
    // One payload of exactly 1 MiB (the default --max-payload), through stdin.
    let big = "x".repeat(1 << 20);
    let mut child = kitchen()
        .args(args(&server, "enqueue", &a))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn enqueue");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{big}\nline two of stdin").expect("write stdin");
    drop(stdin);
    let out = wait_output(child, LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.len(), 6, "one id per dish: {ids:?}");
    let cmd = format!("cat > {}/$KITCHEN_DISH_ID", dir.path().display());
    let s = summary(&burst(&server, &cmd, &[]));
    assert_eq!((num(&s, "eaten"), num(&s, "failed")), (6, 0), "{s}");
    let mut want: Vec<String> = payloads.iter().map(|p| (*p).to_owned()).collect();
    want.push(big);
    want.push("line two of stdin".to_owned());
    for (id, want) in ids.iter().zip(&want) {
        let got = std::fs::read_to_string(dir.path().join(id)).expect("the command wrote it");
        assert!(
            got == *want,
            "{id}: {} bytes, want {}",
            got.len(),
            want.len()
        );
    }
    assert!(!trap.exists(), "a payload was executed");
}

#[test]
fn exit_status_and_stderr_are_the_failure_and_enqueue_wait_reports_them() {
    let server = RedisServer::start();
    let (diner, lines) = spawn(
        &server,
        "diner",
        &[
            "--max-sleep-ms",
            "0",
            "--json",
            "--exec",
            r#"read -r p; if [ "$p" = bad ]; then echo "no good: $p" >&2; exit 3; fi; printf '%s!' "$p" | tr a-z A-Z"#,
        ],
    );
    let out = run(&server, "enqueue", &["--wait", "hello", "bad", "world"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO!\nWORLD!\n");
    let err = stderr(&out);
    assert!(
        err.contains("exit status 3") && err.contains("no good: bad"),
        "{err}"
    );
    assert!(err.contains("1 of 3 dishes failed"), "{err}");
    let s = last_json(&diner.stop("INT", lines));
    assert_eq!((num(&s, "eaten"), num(&s, "failed")), (2, 1), "{s}");
}

#[test]
fn a_timeout_ends_the_command_and_its_grandchildren() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let pidfile = dir.path().join("pid");
    let cmd = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
    run(&server, "enqueue", &["slow"]);
    let started = Instant::now();
    let out = burst(&server, &cmd, &["--timeout", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let s = last_json(&lines);
    assert_eq!((num(&s, "eaten"), num(&s, "failed")), (0, 1), "{s}");
    assert!(lines.iter().any(|l| l.contains("timed out")), "{lines:?}");
    let pid = std::fs::read_to_string(&pidfile).expect("the grandchild's pid");
    // SIGTERM, then SIGKILL after the grace: it may take a moment to go.
    support::wait_until(support::LIMIT, "the grandchild sleep to end", || {
        support::has_ended(&pid)
    });
    eprintln!(
        "work: timeout 1 s ended the group after {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn the_shutdown_deadline_gives_the_dish_back_and_another_diner_eats_it() {
    let server = RedisServer::start();
    run(&server, "enqueue", &["long meal"]);
    let (diner, mut lines) = spawn(
        &server,
        "diner",
        &["--exec", "sleep 600", "--shutdown-timeout", "2", "--json"],
    );
    lines.wait_for(LIMIT, |l| l.contains("ate dish long meal"));
    let stopped = Instant::now();
    signal(diner.id(), "TERM");
    // The command would run 600 s: an exit within LIMIT means the deadline
    // ended it. The time it took goes to stderr, not into an assertion.
    let out = diner.wait(LIMIT);
    let took = stopped.elapsed();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(server.llen(QUEUE), 1, "the dish is back on the queue");
    let s = summary(&burst(&server, "cat", &[]));
    assert_eq!(num(&s, "eaten"), 1, "another diner ate it: {s}");
    eprintln!(
        "work: sleep 600 abandoned, diner exited {:.1} s after SIGTERM (deadline 2 s)",
        took.as_secs_f64()
    );
}

#[test]
fn burst_exits_0_once_the_queue_is_empty() {
    let server = RedisServer::start();
    let out = run(&server, "enqueue", &["1", "2", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = burst(&server, "true", &["--diners", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.llen(QUEUE), 0);
    // An empty queue: nothing to do, and done at once.
    let out = burst(&server, "true", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn serve_runs_the_command_for_a_posted_json_body_and_get_returns_its_output() {
    let (_serve, addr, _) = support::web::spawn_serve(&["--exec", "wc -c"]);
    let r = support::web::request(addr, "POST", "/dishes", Some(br#"{"task":"count me"}"#));
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["id"].as_str().expect("an id").to_owned();
    let mut last = serde_json::Value::Null;
    wait_until(LIMIT, "the dish to be eaten", || {
        last = support::web::request(addr, "GET", &format!("/dishes/{id}"), None).json();
        last["status"] == "eaten"
    });
    assert_eq!(last["output"].as_str().map(str::trim), Some("19"), "{last}");
    assert_eq!(last["attempts"], 1);
    assert!(
        last["started_at"].as_u64() <= last["finished_at"].as_u64(),
        "{last}"
    );
}

#[test]
fn a_local_run_can_exec_too_and_counts_failures() {
    let out = support::run(&[
        "run",
        "--dishes",
        "20",
        "--max-sleep-ms",
        "0",
        "--json",
        "--quiet",
        "--exec",
        r#"read -r n; [ "$n" -lt 5 ]"#,
        "--retry-delay",
        "0.01",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = support::summary(&out);
    let ended = ["eaten", "failed", "left", "waiting", "lost"].map(|k| num(&s, k));
    assert_eq!(
        ended.iter().sum::<u64>(),
        num(&s, "made"),
        "made = eaten + failed + left + waiting + lost: {s}"
    );
    // Dishes 5–9 always fail: tried 3 times each, then dead.
    assert_eq!(num(&s, "retried"), 2 * num(&s, "failed"), "{s}");
}

#[test]
fn on_the_local_backend_dishes_ended_by_the_deadline_count_as_left() {
    let (run, mut lines) = support::spawn_lines(&[
        "run",
        "--dishes",
        "2",
        "--max-sleep-ms",
        "0",
        "--exec",
        "sleep 600",
        "--shutdown-timeout",
        "1",
        "--json",
    ]);
    lines.wait_for_n(2, " ate dish ");
    let stopped = Instant::now();
    signal(run.id(), "TERM");
    // `finish` waits at most LIMIT, far below the commands' 600 s: an exit
    // at all means the deadline ended them.
    let out = run.finish(lines);
    eprintln!(
        "work: local run exited {:.1} s after SIGTERM (deadline 1 s)",
        stopped.elapsed().as_secs_f64()
    );
    let s = last_json(&out);
    assert_eq!(
        (
            num(&s, "made"),
            num(&s, "eaten"),
            num(&s, "failed"),
            num(&s, "left")
        ),
        (2, 0, 0, 2),
        "made = eaten + failed + left: {s}"
    );
}

#[test]
fn bad_input_to_enqueue_and_exec_is_one_clear_line() {
    // Usage errors: exit 2 with clap's message.
    for (args, hint) in [
        (&["enqueue"][..], "PAYLOAD"),
        (
            &["enqueue", "--backend", "local", "7"][..],
            "needs --backend redis",
        ),
        (
            &["diner", "--timeout", "0", "--exec", "true"][..],
            "must be more than 0 seconds",
        ),
        (&["diner", "--timeout", "5"][..], "--exec"),
        (
            &["run", "--max-payload", "10"][..],
            "--max-payload applies to --backend redis",
        ),
    ] {
        let out = support::run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(hint), "{args:?}: {hint:?} in {err}");
    }
    // Runtime errors: exit 1, one line, nothing queued.
    let server = RedisServer::start();
    let big = "x".repeat(20);
    let out = run(&server, "enqueue", &["--max-payload", "10", "ok", &big]);
    let err = one_error_line(&out, &"enqueue --max-payload 10");
    assert!(
        err.contains("payload 2 is 20 bytes, over the 10-byte limit"),
        "{err}"
    );
    assert_eq!(
        server.llen(QUEUE),
        0,
        "nothing queued when one payload is refused"
    );
    let gone = format!("redis://127.0.0.1:{}/5", support::redis_server::free_port());
    let out = support::run(&["enqueue", "--redis-url", &gone, "7"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot reach redis") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn a_command_s_stderr_shows_on_one_line_without_escape_sequences() {
    let out = support::run(&[
        "run",
        "--dishes",
        "1",
        "--chefs",
        "1",
        "--max-sleep-ms",
        "0",
        "--max-attempts",
        "1",
        "--exec",
        r#"printf 'red \033[31malert\nsecond line' >&2; exit 3"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("failed dish"))
        .unwrap_or_else(|| panic!("no failure line: {text}"));
    assert!(line.contains("red ?[31malert\\nsecond line"), "{line}");
    assert!(
        !text.contains('\u{1b}'),
        "an escape reached the terminal: {text:?}"
    );
}
