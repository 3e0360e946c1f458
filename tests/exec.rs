//! `kitchen::exec`: real commands through a real `sh`, the payload on stdin, timeouts and shutdown ending whole process groups.
#![cfg(unix)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kitchen::Shutdown;
use kitchen::exec::{ERROR_TAIL, Ended, Exec, Job, KILL_GRACE, OUTPUT_CAP};
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::unistd::{Pid, mkfifo};
use support::{LIMIT, join_within, wait_until, within};

/// The bound on a command that must be ended early: far below the `sleep 60`
/// it ends, generous for a loaded machine, and above the SIGTERM-to-SIGKILL grace.
const PROMPT: Duration = Duration::from_secs(15);

const _: () = assert!(PROMPT.as_secs() >= KILL_GRACE.as_secs() + 10);

/// One mebibyte, the payload size that must never deadlock.
const MIB: usize = 1024 * 1024;

fn exec(command: &str) -> Exec {
    Exec {
        command: command.to_owned(),
        timeout: None,
    }
}

fn job(payload: &[u8]) -> Job<'_> {
    Job {
        payload,
        dish_id: "d-1",
        attempt: 1,
        queue: "task:prodcons",
    }
}

/// Runs `command` on `payload`, failing (not hanging) the test if it never returns.
fn run(command: &str, payload: &[u8]) -> Ended {
    run_exec(exec(command), payload, LIMIT)
}

/// [`run`] for an [`Exec`] with a timeout, failing the test unless it
/// returns within `limit` (below the commands' own `sleep 60`, where a run
/// must not wait for them).
fn run_exec(exec: Exec, payload: &[u8], limit: Duration) -> Ended {
    let payload = payload.to_vec();
    let what = exec.command.clone();
    within(limit, &what, move || {
        exec.run(&job(&payload), &Shutdown::new())
    })
}

fn ate(ended: Ended) -> Vec<u8> {
    match ended {
        Ended::Ate { output } => output,
        other => panic!("expected the dish eaten, got {other:?}"),
    }
}

fn failed(ended: Ended) -> String {
    match ended {
        Ended::Failed { reason } => reason,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// A path as one shell word (temporary directories hold no single quotes).
fn sh_word(path: &Path) -> String {
    let path = path.to_str().expect("a UTF-8 temporary path");
    assert!(!path.contains('\''), "{path}");
    format!("'{path}'")
}

/// A named pipe: the command writes to it when it is running, the test reads
/// it, so the test waits on the command itself, not on a guess of how long it takes.
fn fifo(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    mkfifo(&path, Mode::S_IRWXU).expect("mkfifo");
    path
}

/// Reads `shell_pid other_pid` from a file or a named pipe the command wrote.
fn pids(path: PathBuf) -> (i32, i32) {
    let text = within(PROMPT, "the command to write its pids", move || {
        std::fs::read_to_string(path).expect("read the pids")
    });
    let mut words = text.split_whitespace().map(|w| w.parse().expect("a pid"));
    let shell = words.next().expect("the shell's pid");
    let other = words.next().expect("the background pid");
    (shell, other)
}

/// Whether `pid` is gone or a zombie (see [`support::has_ended`]).
fn has_ended(pid: i32) -> bool {
    support::has_ended(&pid.to_string())
}

/// The shell was reaped: its pid names nobody (a zombie would still answer).
fn assert_reaped(shell: i32) {
    assert!(
        kill(Pid::from_raw(shell), None).is_err(),
        "the shell {shell} is still there after run returned"
    );
}

/// Kills a process the test left running, even when an assertion fails first.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0), Signal::SIGKILL);
    }
}

/// Bytes of every value, NUL included, in no simple pattern.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

#[test]
fn payloads_reach_stdin_byte_for_byte_and_are_never_run() {
    let dir = tempfile::tempdir().unwrap();
    let touched = dir.path().join("touched");
    let t = sh_word(&touched);
    let payloads = [
        "it's \"quoted\", isn't it".to_owned(),
        "two\nlines\n".to_owned(),
        "no newline at the end".to_owned(),
        "crème brûlée — 煮物 🍲".to_owned(),
        format!("$(touch {t})"),
        format!("`touch {t}`; touch {t} && touch {t} | touch {t}"),
        format!("'; touch {t}; '\"; touch {t}; \""),
        "\\ \t * ? [a] ~ $HOME ${PATH} %s %n".to_owned(),
    ];
    for payload in &payloads {
        let output = ate(run("cat", payload.as_bytes()));
        assert_eq!(String::from_utf8_lossy(&output), *payload);
        // A command that hands the payload on to the shell's own variables is safe too.
        let output = ate(run(
            r#"IFS= read -r line; printf '%s' "$line""#,
            payload.as_bytes(),
        ));
        let first_line = payload.lines().next().unwrap_or_default();
        assert_eq!(String::from_utf8_lossy(&output), first_line);
    }
    assert!(!touched.exists(), "a payload was run as a command");
    assert_eq!(
        ate(run("cat", b"")),
        b"",
        "an empty payload is an empty stdin"
    );
}

#[test]
fn a_mebibyte_payload_arrives_whole() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy");
    let payload = noise(MIB);
    let output = ate(run(&format!("tee {} | wc -c", sh_word(&copy)), &payload));
    assert_eq!(String::from_utf8_lossy(&output).trim(), MIB.to_string());
    assert!(std::fs::read(&copy).unwrap() == payload, "the copy differs");
}

#[test]
fn a_mebibyte_payload_does_not_deadlock_against_a_command_that_writes_first() {
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("count");
    let payload = noise(MIB);
    // Two megabytes on stdout before reading a byte of stdin.
    let output = ate(run(
        &format!("head -c 2000000 /dev/zero; wc -c > {}", sh_word(&count)),
        &payload,
    ));
    assert_eq!(output.len(), OUTPUT_CAP);
    let counted = std::fs::read_to_string(&count).unwrap();
    assert_eq!(counted.trim(), MIB.to_string());
    // And two megabytes on stderr, which nobody keeps but the tail.
    let output = ate(run("head -c 2000000 /dev/zero >&2; wc -c", &payload));
    assert_eq!(String::from_utf8_lossy(&output).trim(), MIB.to_string());
}

#[test]
fn a_command_that_does_not_read_its_stdin_is_fine() {
    let payload = noise(MIB);
    assert_eq!(ate(run("true", &payload)), b"");
    assert_eq!(ate(run("head -c 10", &payload)), payload[..10]);
    assert_eq!(ate(run("exec <&-; echo closed", &payload)), b"closed\n");
}

#[test]
fn output_over_the_cap_is_cut_and_the_command_still_runs_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("mark");
    let output = ate(run(
        &format!("yes | head -c 1000000; touch {}", sh_word(&mark)),
        b"",
    ));
    assert_eq!(output.len(), OUTPUT_CAP, "the first 64 KiB");
    assert!(output.chunks(2).all(|pair| pair == b"y\n"));
    assert!(mark.exists(), "the command ran past its output");
}

#[test]
fn the_exit_status_and_the_end_of_stderr_are_the_reason() {
    assert_eq!(
        failed(run("echo 'no such user' >&2; exit 3", b"")),
        "exit status 3: no such user"
    );
    assert_eq!(failed(run("exit 1", b"")), "exit status 1");
    assert_eq!(failed(run("kill -9 $$", b"")), "killed by signal 9");

    let missing = failed(run("no-such-command-in-kitchen", b""));
    assert!(missing.starts_with("exit status 127: "), "{missing}");
    assert!(missing.contains("not found"), "{missing}");

    let long = failed(run(
        "head -c 100000 /dev/zero | tr '\\0' e >&2; echo >&2; echo 'last words' >&2; exit 2",
        b"",
    ));
    assert!(long.starts_with("exit status 2: eee"), "{long}");
    assert!(long.ends_with("eee\nlast words"), "{long}");
    assert!(
        long.len() <= "exit status 2: ".len() + ERROR_TAIL,
        "{}",
        long.len()
    );
}

#[test]
fn a_command_that_cannot_start_is_a_failure_that_says_why() {
    let reason = failed(run("echo \0", b"x"));
    assert!(reason.starts_with("cannot start sh: "), "{reason}");
}

#[test]
fn the_dish_is_in_the_environment() {
    let exec = exec(r#"printf '%s|%s|%s' "$KITCHEN_DISH_ID" "$KITCHEN_ATTEMPT" "$KITCHEN_QUEUE""#);
    let job = Job {
        payload: b"",
        dish_id: "d-7 $(no)",
        attempt: 2,
        queue: "task:prodcons",
    };
    let output = ate(within(LIMIT, "the command", move || {
        exec.run(&job, &Shutdown::new())
    }));
    assert_eq!(
        String::from_utf8_lossy(&output),
        "d-7 $(no)|2|task:prodcons"
    );
}

#[test]
fn the_shell_is_reaped_before_run_returns() {
    let output = ate(run("echo $$", b""));
    let shell = String::from_utf8_lossy(&output).trim().parse().unwrap();
    assert_reaped(shell);
}

#[test]
fn a_timeout_that_does_not_come_changes_nothing() {
    let exec = Exec {
        command: "cat".into(),
        timeout: Some(Duration::from_secs(600)),
    };
    assert_eq!(ate(run_exec(exec, b"soup", LIMIT)), b"soup");
}

/// Runs `command` with a one-second timeout; it writes `$$ $!` to the file
/// `pids`, and must be ended within [`PROMPT`] as a failure that says so.
fn times_out(command: &str, pids_file: &Path) -> (i32, i32) {
    let exec = Exec {
        command: command.to_owned(),
        timeout: Some(Duration::from_secs(1)),
    };
    // Within PROMPT, well before the commands' `sleep 60` would end them.
    let reason = failed(run_exec(exec, b"x", PROMPT));
    assert!(reason.starts_with("timed out after 1 s"), "{reason}");
    pids(pids_file.to_owned())
}

#[test]
fn a_timeout_ends_the_shell_and_its_grandchild() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pids");
    let (shell, sleeper) = times_out(
        &format!("sleep 60 & echo $$ $! > {}; wait", sh_word(&file)),
        &file,
    );
    let _cleanup = KillOnDrop(sleeper);
    assert_reaped(shell);
    wait_until(PROMPT, "the grandchild to end", || has_ended(sleeper));
}

#[test]
fn a_grandchild_that_ignores_sigterm_is_killed_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pids");
    let (shell, stubborn) = times_out(
        &format!(
            "(trap '' TERM; exec sleep 60) & echo $$ $! > {}; wait",
            sh_word(&file)
        ),
        &file,
    );
    let _cleanup = KillOnDrop(stubborn);
    assert_reaped(shell);
    wait_until(PROMPT, "the grandchild to end", || has_ended(stubborn));
}

#[test]
fn a_process_that_leaves_the_group_does_not_hold_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pids");
    // `setsid` puts the sleep out of reach of the group's signals, with our stdout in hand.
    let (shell, escaped) = times_out(
        &format!("setsid sleep 60 & echo $$ $! > {}; wait", sh_word(&file)),
        &file,
    );
    let _cleanup = KillOnDrop(escaped);
    assert_reaped(shell);
}

#[test]
fn a_background_process_that_lets_go_of_the_pipes_does_not_hold_the_dish() {
    let output = ate(run_exec(
        exec("sleep 60 >/dev/null 2>&1 & echo $!"),
        b"",
        PROMPT,
    ));
    let left = String::from_utf8_lossy(&output).trim().parse().unwrap();
    let _cleanup = KillOnDrop(left);
    assert!(!has_ended(left), "left to run, as a shell would");
}

#[test]
fn abandon_ends_the_whole_group_promptly_and_is_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let running = fifo(dir.path(), "running");
    let command = format!("sleep 60 & echo $$ $! > {}; wait", sh_word(&running));
    let abandon = Shutdown::new();
    let token = abandon.clone();
    let runner = std::thread::spawn(move || exec(&command).run(&job(b"x"), &token));
    let (shell, sleeper) = pids(running);
    let _cleanup = KillOnDrop(sleeper);
    assert!(!runner.is_finished(), "the command runs until abandoned");
    abandon.stop();
    let ended = join_within(runner, PROMPT, "the run after abandon");
    assert_eq!(ended, Ended::Abandoned);
    assert_reaped(shell);
    wait_until(PROMPT, "the grandchild to end", || has_ended(sleeper));
}

#[test]
fn an_abandon_before_the_start_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("mark");
    let abandon = Shutdown::new();
    abandon.stop();
    let ended = exec(&format!("touch {}", sh_word(&mark))).run(&job(b""), &abandon);
    assert_eq!(ended, Ended::Abandoned);
    assert!(!mark.exists());
}

#[test]
fn concurrent_runs_keep_their_own_pipes() {
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..50 {
                    let payload = format!("thread {t} dish {i}");
                    let output = ate(run("cat; echo \" $KITCHEN_DISH_ID\"", payload.as_bytes()));
                    assert_eq!(String::from_utf8_lossy(&output), format!("{payload} d-1\n"));
                }
            })
        })
        .collect();
    for thread in threads {
        join_within(thread, Duration::from_secs(120), "a thread of runs");
    }
}
