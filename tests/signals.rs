//! Stopping a live kitchen: Ctrl-C and SIGTERM drain, a second Ctrl-C leaves, a closed pipe is quiet.

mod support;

use std::io::Read;
use std::process::Command;

use support::{
    KillOnDrop, LIMIT, Lines, last_json, num, signal, spawn_lines, start, wait_output, within,
};

/// Starts an endless kitchen and waits for its `n`th line matching `what`.
fn started(args: &[&str], what: &str, n: usize) -> (KillOnDrop, Lines) {
    let (child, mut lines) = spawn_lines(args);
    lines.wait_for_n(n, what);
    (child, lines)
}

fn drains_on(sig: &str) {
    let (child, lines) = started(&["run", "--max-sleep-ms", "20", "--json"], " made dish ", 5);
    let all = child.stop(sig, lines);
    let s = last_json(&all);
    assert!(num(&s, "made") >= 5);
    assert_eq!(
        num(&s, "made"),
        num(&s, "eaten"),
        "SIG{sig}: the diners finish what was queued"
    );
    assert_eq!(num(&s, "left"), 0);
    let made_lines = all.iter().filter(|l| l.contains(" made dish ")).count();
    assert_eq!(made_lines as u64, num(&s, "made"), "one line per dish made");
}

#[test]
fn ctrl_c_stops_the_chefs_and_the_diners_drain() {
    drains_on("INT");
}

#[test]
fn sigterm_behaves_like_the_first_ctrl_c() {
    drains_on("TERM");
}

#[test]
fn a_second_ctrl_c_exits_at_once_without_a_summary() {
    // Long naps: after the first Ctrl-C the single diner still has minutes of
    // eating ahead, so only the second Ctrl-C can end the process.
    let (mut child, _lines) = started(
        &[
            "run",
            "--diners",
            "1",
            "--max-sleep-ms",
            "600000",
            "--seed",
            "7",
            "--json",
        ],
        " ate dish ",
        1,
    );
    let mut stderr = Lines::new(child.child().stderr.take().expect("stderr"));
    signal(child.id(), "INT");
    // Signals do not queue: wait until the first is handled before the second.
    stderr.wait_for(LIMIT, |l| l.contains("Ctrl-C again"));
    signal(child.id(), "INT");
    let out = child.wait(LIMIT);
    assert_eq!(out.status.code(), Some(130), "{:?}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("\"made\""),
        "no summary after the second Ctrl-C: {stdout}"
    );
}

#[test]
fn a_closed_pipe_ends_the_run_quietly() {
    // `kitchen | head -3`: read three lines, then close our end of the pipe.
    let mut child = KillOnDrop::new(support::spawn(&["run", "--max-sleep-ms", "0"]));
    let mut stdout = child.child().stdout.take().expect("stdout");
    let (stdout, n) = within(LIMIT, "the first lines", move || {
        let mut first = [0u8; 64];
        let n = stdout.read(&mut first).expect("read the first lines");
        (stdout, n)
    });
    assert!(n > 0);
    drop(stdout);
    let out = child.wait(LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
}

#[test]
fn a_quiet_run_on_a_terminal_shows_a_live_status_line() {
    // `script` gives the child a pseudo-terminal, as a person's shell would.
    let Ok(script) = which("script") else {
        panic!("this test needs `script` from util-linux (Debian: bsdutils)");
    };
    let cmd = format!(
        "{} run --quiet --max-sleep-ms 1 --duration 1.2",
        env!("CARGO_BIN_EXE_kitchen")
    );
    let script = start(
        Command::new(script).args(["-qec", &cmd, "/dev/null"]),
        "script",
    );
    let out = wait_output(script, LIMIT);
    assert!(out.status.success());
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        screen.contains("queued"),
        "no status line on the terminal: {screen:?}"
    );
    assert!(screen.contains("dishes/s"), "{screen:?}");
}

#[test]
fn no_status_line_when_stderr_is_not_a_terminal() {
    let out = support::run(&["run", "--quiet", "--max-sleep-ms", "1", "--duration", "0.6"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains('\r'), "{stderr:?}");
    assert!(stderr.starts_with("kitchen summary"), "{stderr:?}");
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}
