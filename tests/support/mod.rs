//! Shared test harness: the real `kitchen` binary, its summaries, and a
//! deadline on everything a test waits for (a child, a thread, a line), so a
//! regression fails the test instead of hanging it.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

pub mod http_client;
pub mod ledger;
pub mod oom;
#[cfg(feature = "redis")]
pub mod redis_cluster;
#[cfg(feature = "redis")]
pub mod redis_kitchen;
#[cfg(feature = "redis")]
pub mod redis_server;
#[cfg(feature = "redis")]
pub mod redis_stream;
#[cfg(feature = "redis")]
pub mod roles;
pub mod slow_proxy;
#[cfg(feature = "redis")]
pub mod tls_certs;

pub mod web;

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The deadline for anything one test waits on: a process to exit, a thread
/// to finish, a line or a condition to show up. Generous, because it only
/// bounds a failure; a passing test never waits this long.
pub const LIMIT: Duration = Duration::from_secs(60);

/// The binary under test.
pub fn kitchen() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kitchen"));
    c.env_remove("REDIS_URL");
    c
}

/// Starts `cmd` with no stdin and piped stdout and stderr; `what` names it
/// if it cannot start.
pub fn start(cmd: &mut Command, what: &str) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"))
}

/// Starts `kitchen ARGS` with no stdin and piped stdout and stderr.
pub fn spawn<S: AsRef<OsStr>>(args: &[S]) -> Child {
    start(kitchen().args(args), "kitchen")
}

/// Starts `kitchen ARGS` in the background, its stdout as lines; killed when dropped.
pub fn spawn_lines<S: AsRef<OsStr>>(args: &[S]) -> (KillOnDrop, Lines) {
    let mut child = KillOnDrop::new(spawn(args));
    let lines = Lines::new(child.child().stdout.take().expect("stdout"));
    (child, lines)
}

/// Runs `kitchen ARGS` to completion within [`LIMIT`], capturing output.
pub fn run<S: AsRef<OsStr>>(args: &[S]) -> Output {
    wait_output(spawn(args), LIMIT)
}

/// Runs `kitchen ARGS --json`, which must succeed, and returns its summary.
pub fn run_json<S: AsRef<OsStr>>(args: &[S]) -> serde_json::Value {
    let mut all: Vec<OsString> = args.iter().map(|a| a.as_ref().to_owned()).collect();
    all.push("--json".into());
    let out = run(&all);
    // Shown with a failing test's output: reconnect notices and the like.
    eprint!("{}", stderr(&out));
    assert!(
        out.status.success(),
        "kitchen {all:?} failed: {}",
        stderr(&out)
    );
    summary(&out)
}

/// Waits for a child to exit within `limit`, killing it (and failing) otherwise.
pub fn wait_output(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    // Drain pipes on threads so a chatty child never blocks on a full pipe.
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            kill(&mut child);
            panic!("child {} did not exit within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // A grandchild may still hold a pipe open: the readers get their own deadline.
    let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(5);
    Output {
        status,
        stdout: out
            .map(|h| join_within(h, left, "the stdout reader"))
            .unwrap_or_default(),
        stderr: err
            .map(|h| join_within(h, left, "the stderr reader"))
            .unwrap_or_default(),
    }
}

fn drain(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// Kills a child and reaps it. After SIGKILL the wait is bounded by the
/// kernel, not by the child, so it needs no deadline of its own.
fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The stderr of a finished child, for messages.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The JSON summary of a finished run: the last line of its stdout.
pub fn summary(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(!lines.is_empty(), "no stdout; stderr: {}", stderr(out));
    last_json(&lines)
}

/// The JSON summary among a process's stdout lines: the last one.
pub fn last_json<S: AsRef<str>>(lines: &[S]) -> serde_json::Value {
    let last = lines.last().expect("a summary line").as_ref();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("summary {last:?} is not JSON: {e}"))
}

/// A number field of the summary.
pub fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not an unsigned integer in {v}"))
}

/// Polls `cond` until it holds or `limit` passes; panics naming `what` on timeout.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the thread of `handle` finishes within `limit`.
pub fn finished_within<T>(handle: &JoinHandle<T>, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while !handle.is_finished() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// Joins a thread that must finish within `limit`; panics naming `what` if
/// it does not, and passes its panic on if it panicked.
pub fn join_within<T>(handle: JoinHandle<T>, limit: Duration, what: &str) -> T {
    assert!(
        finished_within(&handle, limit),
        "{what} did not finish within {limit:?}"
    );
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Runs `f` on its own thread and waits at most `limit` for it, for a call
/// that blocks (a read from a child's pipe, a blocking take) and has no
/// deadline of its own. On timeout the thread is left behind, and the test fails.
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    join_within(std::thread::spawn(f), limit, what)
}

/// A child's output as lines arriving on a channel, so a test can wait for
/// a line with a deadline instead of blocking on a read.
pub struct Lines {
    rx: mpsc::Receiver<String>,
    /// Every line seen so far.
    pub seen: Vec<String>,
}

impl Lines {
    /// Starts forwarding the lines of `r`.
    pub fn new(r: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits up to `limit` for a line satisfying `pred`; returns it.
    pub fn wait_for(&mut self, limit: Duration, mut pred: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no matching line within {limit:?} ({e}); saw {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Waits for `n` lines containing `what`.
    pub fn wait_for_n(&mut self, n: usize, what: &str) {
        for _ in 0..n {
            self.wait_for(LIMIT, |l| l.contains(what));
        }
    }

    /// Collects the rest of the lines until the stream ends (bounded by `limit`).
    pub fn rest(&mut self, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => return self.seen.clone(),
                Err(e) => panic!("stream did not end within {limit:?} ({e})"),
            }
        }
    }
}

/// Sends `signal` (e.g. "INT", "TERM", "KILL") to a process.
pub fn signal(pid: u32, signal: &str) {
    let kill = start(
        Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]),
        "kill",
    );
    let out = wait_output(kill, LIMIT);
    assert!(
        out.status.success(),
        "kill -{signal} {pid} failed: {}",
        stderr(&out)
    );
}

/// A child that is killed when the test ends, pass or fail.
pub struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    /// Takes charge of `child`.
    pub fn new(child: Child) -> Self {
        KillOnDrop(Some(child))
    }

    /// The child's pid.
    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// The child itself (to take its pipes, or `try_wait`).
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child already waited for")
    }

    /// Waits for it to exit within `limit` (killing it and failing otherwise).
    pub fn wait(mut self, limit: Duration) -> Output {
        wait_output(self.0.take().expect("child already waited for"), limit)
    }

    /// Waits within [`LIMIT`] for a clean exit (status 0), and returns every
    /// line of `stdout`, the child's, to the end.
    pub fn finish(self, mut stdout: Lines) -> Vec<String> {
        let out = self.wait(LIMIT);
        assert!(out.status.success(), "{:?}: {}", out.status, stderr(&out));
        stdout.rest(LIMIT)
    }

    /// Sends `sig`, then as [`KillOnDrop::finish`].
    pub fn stop(self, sig: &str, stdout: Lines) -> Vec<String> {
        signal(self.id(), sig);
        self.finish(stdout)
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            kill(&mut c);
        }
    }
}

/// Whether process `pid` has ended: gone, or a zombie its new parent has
/// yet to reap (in a container, nobody may reap it for a while).
pub fn has_ended(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// The one line on stderr of a finished `kitchen` that failed at run time:
/// exit 1, one line, `kitchen: …`, and no panic; `what` names the command in
/// a failure.
pub fn one_error_line(out: &Output, what: &dyn std::fmt::Debug) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{what:?}: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{what:?}: one line, got {err:?}");
    assert!(lines[0].starts_with("kitchen: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    lines[0].to_owned()
}

/// Runs `kitchen ARGS`, which must fail as [`one_error_line`] says; returns that line.
pub fn error_line<S: AsRef<OsStr> + std::fmt::Debug>(args: &[S]) -> String {
    one_error_line(&run(args), &args)
}
