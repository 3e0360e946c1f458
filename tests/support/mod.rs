//! Shared test harness: the real `kitchen` binary, and waiting on conditions with a deadline.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

pub mod http_client;
pub mod ledger;
#[cfg(feature = "redis")]
pub mod redis_kitchen;
#[cfg(feature = "redis")]
pub mod redis_server;
pub mod slow_proxy;

pub mod web;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn kitchen() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kitchen"));
    c.env_remove("REDIS_URL");
    c
}

/// Starts `kitchen ARGS` with no stdin and piped stdout and stderr.
pub fn spawn(args: &[&str]) -> Child {
    kitchen()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kitchen")
}

/// Runs `kitchen ARGS` to completion with a deadline, capturing output.
pub fn run(args: &[&str]) -> Output {
    wait_output(spawn(args), Duration::from_secs(60))
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
            let _ = child.kill();
            let _ = child.wait();
            panic!("kitchen did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out
            .map(|h| h.join().expect("stdout reader"))
            .unwrap_or_default(),
        stderr: err
            .map(|h| h.join().expect("stderr reader"))
            .unwrap_or_default(),
    }
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// The JSON summary: the last line of stdout.
pub fn summary(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "no stdout; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
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

/// A child's output as lines arriving on a channel, so a test can wait for
/// a line with a deadline instead of blocking on a read.
pub struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
    /// Every line seen so far.
    pub seen: Vec<String>,
}

impl Lines {
    /// Starts forwarding the lines of `r`.
    pub fn new(r: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = std::sync::mpsc::channel();
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

    /// Collects the rest of the lines until the stream ends (bounded by `limit`).
    pub fn rest(&mut self, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return self.seen.clone(),
                Err(e) => panic!("stream did not end within {limit:?} ({e})"),
            }
        }
    }
}

/// Sends `signal` (e.g. "INT", "TERM", "KILL") to a process.
pub fn signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -{signal} {pid} failed");
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

    /// The child itself (to take its pipes).
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child already waited for")
    }

    /// Waits for it to exit within `limit` (killing it and failing otherwise).
    pub fn wait(mut self, limit: Duration) -> Output {
        wait_output(self.0.take().expect("child already waited for"), limit)
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
