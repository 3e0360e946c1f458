//! Real work (`--exec CMD`): one dish's command, run through `sh -c` with the payload on stdin.
//!
//! [`Exec::run`] starts `sh -c CMD` in a process group of its own, with the
//! dish's payload on its stdin (never on its command line) and
//! `KITCHEN_DISH_ID`, `KITCHEN_ATTEMPT` and `KITCHEN_QUEUE` in its
//! environment, and says how it [`Ended`]:
//!
//! - exit 0: [`Ended::Ate`], with the first [`OUTPUT_CAP`] bytes of stdout;
//! - any other exit: [`Ended::Failed`], the reason being the exit status and
//!   the last [`ERROR_TAIL`] bytes of stderr (`exit status 3: no such user`);
//! - past [`Exec::timeout`]: the whole group is ended (SIGTERM, then SIGKILL
//!   after [`KILL_GRACE`]) and the dish failed (`timed out after 5 s`);
//! - the `abandon` token stopped (the shutdown deadline passed): the group is
//!   ended the same way and the dish is [`Ended::Abandoned`], for the caller
//!   to put back on the queue.
//!
//! ```
//! use kitchen::Shutdown;
//! use kitchen::exec::{Ended, Exec, Job};
//!
//! let exec = Exec { command: "tr a-z A-Z".into(), timeout: None };
//! let job = Job { payload: b"soup", dish_id: "7", attempt: 1, queue: "task:prodcons" };
//! assert_eq!(exec.run(&job, &Shutdown::new()), Ended::Ate { output: b"SOUP".to_vec() });
//! ```
//!
//! # How a run is carried out
//!
//! One helper thread per dish does all the command's I/O with `poll(2)`: it
//! writes the payload (non-blocking, so a command that writes a lot before it
//! reads never deadlocks against us; EPIPE is fine: `true` need not read), and
//! drains stdout and stderr to their ends, keeping only what the caps allow,
//! so the command never blocks on a full pipe. Then it waits for the shell to
//! exit *without reaping it* (`waitid` with `WNOWAIT`) and says so on a
//! channel. The calling thread `select!`s on that channel, the timeout and the
//! abandon token: nothing sleeps and nothing polls a clock.
//!
//! Only the calling thread reaps the shell, and only after its last signal:
//! until then the shell's pid, which is also its group's id, cannot be given
//! to another process, so a signal can never reach a stranger. The shell is
//! always reaped and the helper always joined before `run` returns.
//!
//! The command has ended when its shell has exited *and* its stdout and
//! stderr are closed (and its stdin written or closed): a background process
//! that keeps them open keeps the dish running (bounded by the timeout), as
//! with `$(…)` in a shell; one that redirects them (`cmd >/dev/null 2>&1 &`)
//! is left to run. A process that
//! leaves the group (`setsid`) is out of reach of the signals; if it holds the
//! pipes, the helper stops reading them when the group has been killed.
//!
//! On unix targets without `waitid` (macOS), the helper cannot wait without
//! reaping, so the caller's wait comes after the pipes close: a command that
//! closes its stdout and stderr and keeps running is not bounded there.

use std::io::{self, PipeReader, PipeWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::Duration;

use crossbeam_channel::{Receiver, select};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::shutdown::Shutdown;

/// How much of a command's stdout becomes the dish's result; the rest is read and dropped.
pub const OUTPUT_CAP: usize = 64 * 1024;

/// How much of the end of a failed command's stderr goes into its reason.
pub const ERROR_TAIL: usize = 2 * 1024;

/// How long an ended command's group has between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// How much the helper reads at once: a pipe's default capacity is 64 KiB, so
/// a chatty command is drained in a few reads without a big buffer per dish.
const CHUNK: usize = 16 * 1024;

/// The helper's stack: its biggest frame holds one [`CHUNK`]; far below the
/// 2 MiB default, which a thread per dish need not map.
const HELPER_STACK: usize = 256 * 1024;

const _: () = assert!(
    HELPER_STACK >= 8 * CHUNK,
    "the helper's stack holds its read buffer"
);

/// A command to run once per dish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    /// The shell command line, given to `sh -c` as it is; the payload never enters it.
    pub command: String,
    /// How long a dish's command may run before its group is ended and the dish failed.
    pub timeout: Option<Duration>,
}

/// What one dish's command needs.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    /// The dish's payload, written to the command's stdin as it is.
    pub payload: &'a [u8],
    /// `KITCHEN_DISH_ID`.
    pub dish_id: &'a str,
    /// `KITCHEN_ATTEMPT`: 1 for the first try.
    pub attempt: u32,
    /// `KITCHEN_QUEUE`.
    pub queue: &'a str,
}

/// How a dish's command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Exit 0: the dish is eaten, and this is its result.
    Ate {
        /// The first [`OUTPUT_CAP`] bytes of the command's stdout.
        output: Vec<u8>,
    },
    /// The command failed, timed out or could not run.
    Failed {
        /// One line for people: `exit status 3: <stderr tail>`,
        /// `killed by signal 9`, `timed out after 5 s`, `cannot start sh: …`.
        reason: String,
    },
    /// The shutdown deadline ended the command: not the dish's fault, so not a
    /// failure; the caller puts the dish back on the queue.
    Abandoned,
}

impl Ended {
    fn failed(reason: impl Into<String>) -> Self {
        Ended::Failed {
            reason: reason.into(),
        }
    }
}

impl Exec {
    /// Runs the command for one dish and waits until it has ended (see the module docs).
    ///
    /// `abandon` is the shutdown deadline: once it is stopped the command is
    /// ended and the dish is [`Ended::Abandoned`]; if it is stopped already,
    /// nothing is started. Never panics: a command that cannot even start is
    /// an [`Ended::Failed`] that says why.
    pub fn run(&self, job: &Job<'_>, abandon: &Shutdown) -> Ended {
        if abandon.is_stopped() {
            return Ended::Abandoned;
        }
        // Made first, so that a failure here starts nothing.
        let (woken, wake) = match io::pipe() {
            Ok(pair) => pair,
            Err(e) => return Ended::failed(format!("cannot start sh: {e}")),
        };
        let mut child = match self.command(job).spawn() {
            Ok(child) => child,
            Err(e) => return Ended::failed(format!("cannot start sh: {e}")),
        };
        // The shell leads its own group, so its pid is the group's id. Pids fit in pid_t.
        let group = Group(Pid::from_raw(child.id() as i32));
        let pipes = Pipes {
            stdin: child.stdin.take(),
            payload: job.payload,
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            woken,
        };
        let (done_tx, done) = crossbeam_channel::bounded(1);
        // Scoped, so the helper borrows the payload instead of copying it.
        let outcome = std::thread::scope(|scope| -> Result<(Stop, Seen), String> {
            let helper = std::thread::Builder::new()
                .name("kitchen-exec".into())
                .stack_size(HELPER_STACK)
                .spawn_scoped(scope, move || {
                    let seen = pipes.pump();
                    group.await_exit();
                    // Fails only if the caller is gone, and it joins us before it goes.
                    let _ = done_tx.send(seen);
                })
                .map_err(|e| {
                    // The pipes went with the closure: stop the command at once.
                    group.signal(Signal::SIGKILL);
                    format!("cannot start a thread for sh: {e}")
                })?;
            let deadline = self
                .timeout
                .map_or_else(crossbeam_channel::never, crossbeam_channel::after);
            let (stop, seen) = select! {
                recv(done) -> seen => (Stop::Exited, seen.ok()),
                recv(deadline) -> _ => (Stop::TimedOut, None),
                recv(abandon.receiver()) -> _ => (Stop::Abandoned, None),
            };
            let (stop, seen) = match seen {
                Some(seen) => (stop, Some(seen)),
                // A command that finished as the clock ran out has finished: its outcome stands.
                None => match done.try_recv() {
                    Ok(seen) => (Stop::Exited, Some(seen)),
                    Err(_) => (stop, group.end(&done, wake)),
                },
            };
            match (helper.join(), seen) {
                (Ok(()), Some(seen)) => Ok((stop, seen)),
                _ => Err("the helper thread for sh died".to_owned()),
            }
        });
        // Every signal has been sent: now, and only now, the shell may be reaped.
        let status = child.wait();
        match outcome {
            Err(reason) => Ended::failed(reason),
            Ok((Stop::Abandoned, _)) => Ended::Abandoned,
            Ok((Stop::TimedOut, seen)) => {
                let after = seconds(self.timeout.unwrap_or_default());
                Ended::failed(with_tail(format!("timed out after {after}"), &seen.errors))
            }
            Ok((Stop::Exited, seen)) => match status {
                Err(e) => Ended::failed(format!("cannot wait for sh: {e}")),
                Ok(status) if !status.success() => {
                    Ended::failed(with_tail(describe(status), &seen.errors))
                }
                Ok(_) => match seen.broken {
                    Some(reason) => Ended::failed(reason),
                    None => Ended::Ate {
                        output: seen.output,
                    },
                },
            },
        }
    }

    /// `sh -c CMD`, in a new process group, with the dish's environment and piped stdio.
    fn command(&self, job: &Job<'_>) -> Command {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(&self.command)
            .env("KITCHEN_DISH_ID", job.dish_id)
            .env("KITCHEN_ATTEMPT", job.attempt.to_string())
            .env("KITCHEN_QUEUE", job.queue)
            // No empty pipe to write and close: /dev/null reads as the same empty stdin.
            .stdin(if job.payload.is_empty() {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so a timeout can end the grandchildren too.
            .process_group(0);
        command
    }
}

/// Why the calling thread stopped waiting.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// The shell exited and its pipes closed.
    Exited,
    /// The timeout passed first.
    TimedOut,
    /// The abandon token was stopped first.
    Abandoned,
}

/// The command's process group, named by its leader, the shell.
#[derive(Debug, Clone, Copy)]
struct Group(Pid);

impl Group {
    /// Signals every process still in the group, and the shell itself in case
    /// it has left it. Only called before the shell is reaped (see the module docs).
    fn signal(self, signal: Signal) {
        // ESRCH only means that nobody is left to signal.
        let _ = killpg(self.0, signal);
        let _ = kill(self.0, signal);
    }

    /// Ends the command: SIGTERM to the group; once its shell has exited and
    /// its pipes are closed, or the grace is over, SIGKILL to whatever is left
    /// (a grandchild that ignores SIGTERM, or outlived the shell); then the
    /// helper stops reading pipes that only a process outside the group still holds.
    /// Returns what the helper saw, unless it died.
    fn end(self, done: &Receiver<Seen>, wake: PipeWriter) -> Option<Seen> {
        self.signal(Signal::SIGTERM);
        let seen = done.recv_timeout(KILL_GRACE).ok();
        self.signal(Signal::SIGKILL);
        drop(wake);
        seen.or_else(|| done.recv().ok())
    }

    /// Blocks until the shell has exited, leaving it unreaped (`WNOWAIT`) for the caller.
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    fn await_exit(self) {
        use nix::sys::wait::{Id, WaitPidFlag, waitid};
        // Any answer but EINTR means the shell has exited (or cannot be waited
        // for); the caller's `Child::wait` reaps it and says which.
        while let Err(Errno::EINTR) =
            waitid(Id::Pid(self.0), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
        {}
    }

    /// No `waitid` here: the caller's `Child::wait` does the waiting (see the module docs).
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    fn await_exit(self) {}
}

/// The command's end of its stdio, as the helper drives it.
#[derive(Debug)]
struct Pipes<'a> {
    /// Open until the whole payload is written (or the command stops reading).
    stdin: Option<ChildStdin>,
    payload: &'a [u8],
    /// Open until the command (and whoever inherited it) closes it.
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    /// Readable (at its end) once the caller has killed the group: stop reading.
    woken: PipeReader,
}

/// What the helper saw of the command.
#[derive(Debug, Default)]
struct Seen {
    /// The first [`OUTPUT_CAP`] bytes of stdout.
    output: Vec<u8>,
    /// The end of stderr.
    errors: Tail,
    /// Why the output or the payload cannot be trusted, if something broke.
    broken: Option<String>,
}

/// Which pipes `poll` found ready.
#[derive(Debug, Clone, Copy)]
struct Ready {
    woken: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
}

impl Pipes<'_> {
    /// Writes the payload and drains stdout and stderr until all three are closed.
    fn pump(mut self) -> Seen {
        let mut seen = Seen::default();
        let mut written = 0;
        if let Some(stdin) = &self.stdin {
            // Never block on a full stdin: the command's output must keep flowing.
            if let Err(e) = fcntl(stdin.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)) {
                seen.broken = Some(format!("cannot write the payload to sh: {e}"));
                self.stdin = None;
            }
        }
        let mut chunk = [0u8; CHUNK];
        while self.stdin.is_some() || self.stdout.is_some() || self.stderr.is_some() {
            let ready = match self.ready() {
                Ok(ready) => ready,
                Err(e) => {
                    seen.broken
                        .get_or_insert_with(|| format!("cannot watch sh's pipes: {e}"));
                    break;
                }
            };
            if ready.woken {
                break;
            }
            if ready.stdin
                && let Err(e) = self.write_some(&mut written)
            {
                seen.broken
                    .get_or_insert_with(|| format!("cannot write the payload to sh: {e}"));
            }
            if ready.stdout {
                match read_some(&mut self.stdout, &mut chunk) {
                    Ok(bytes) => {
                        let room = OUTPUT_CAP.saturating_sub(seen.output.len());
                        seen.output
                            .extend_from_slice(bytes.get(..room).unwrap_or(bytes));
                    }
                    Err(e) => {
                        seen.broken
                            .get_or_insert_with(|| format!("cannot read sh's output: {e}"));
                    }
                }
            }
            if ready.stderr {
                // The tail is a courtesy to the reader: a broken stderr is not the dish's failure.
                if let Ok(bytes) = read_some(&mut self.stderr, &mut chunk) {
                    seen.errors.push(bytes);
                }
            }
        }
        seen
    }

    /// Waits until a pipe is ready or the caller wakes us.
    fn ready(&self) -> nix::Result<Ready> {
        fn watch<'f>(
            fds: &mut Vec<PollFd<'f>>,
            fd: Option<BorrowedFd<'f>>,
            events: PollFlags,
        ) -> Option<usize> {
            let fd = fd?;
            fds.push(PollFd::new(fd, events));
            Some(fds.len() - 1)
        }
        let mut fds = Vec::with_capacity(4);
        let woken = watch(&mut fds, Some(self.woken.as_fd()), PollFlags::POLLIN);
        let stdin = watch(
            &mut fds,
            self.stdin.as_ref().map(AsFd::as_fd),
            PollFlags::POLLOUT,
        );
        let stdout = watch(
            &mut fds,
            self.stdout.as_ref().map(AsFd::as_fd),
            PollFlags::POLLIN,
        );
        let stderr = watch(
            &mut fds,
            self.stderr.as_ref().map(AsFd::as_fd),
            PollFlags::POLLIN,
        );
        loop {
            match poll(&mut fds, PollTimeout::NONE) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
                Ok(_) => break,
            }
        }
        // Any event counts, POLLHUP and POLLERR included: the read or write that follows says which.
        let is_ready = |at: Option<usize>| {
            at.and_then(|i| fds.get(i))
                .and_then(PollFd::revents)
                .is_some_and(|events| !events.is_empty())
        };
        Ok(Ready {
            woken: is_ready(woken),
            stdin: is_ready(stdin),
            stdout: is_ready(stdout),
            stderr: is_ready(stderr),
        })
    }

    /// Writes what the pipe takes, and closes it (the command's end of input) when all is written.
    fn write_some(&mut self, written: &mut usize) -> io::Result<()> {
        let Some(stdin) = &mut self.stdin else {
            return Ok(());
        };
        let rest = self.payload.get(*written..).unwrap_or_default();
        let result = match stdin.write(rest) {
            Ok(0) if !rest.is_empty() => Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                *written += n;
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return Ok(());
            }
            // The command has stopped reading (or never read: `true`): its business.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                *written = self.payload.len();
                Ok(())
            }
            Err(e) => Err(e),
        };
        if result.is_err() || *written >= self.payload.len() {
            self.stdin = None;
        }
        result
    }
}

/// Reads what is ready from a pipe, closing it at its end or on an error.
fn read_some<'b, R: Read>(pipe: &mut Option<R>, chunk: &'b mut [u8]) -> io::Result<&'b [u8]> {
    let Some(reader) = pipe else {
        return Ok(&[]);
    };
    match reader.read(chunk) {
        Ok(0) => {
            *pipe = None;
            Ok(&[])
        }
        Ok(n) => Ok(chunk.get(..n).unwrap_or_default()),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(&[])
        }
        Err(e) => {
            *pipe = None;
            Err(e)
        }
    }
}

/// The end of a stream, of which only the last [`ERROR_TAIL`] bytes are kept.
#[derive(Debug, Default)]
struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
        // Cut now and then, not on every read: at most twice the tail and a chunk are held.
        if self.0.len() > 2 * ERROR_TAIL {
            let cut = self.0.len() - ERROR_TAIL;
            self.0.drain(..cut);
        }
    }

    /// The tail as text: lossy UTF-8, trimmed.
    fn text(&self) -> String {
        let start = self.0.len().saturating_sub(ERROR_TAIL);
        let mut tail = self.0.get(start..).unwrap_or_default();
        if start > 0 {
            // The cut may fall inside a character: begin at the next one, not at a U+FFFD.
            let inside = tail
                .iter()
                .take(3)
                .take_while(|&&b| b & 0b1100_0000 == 0b1000_0000)
                .count();
            tail = tail.get(inside..).unwrap_or_default();
        }
        String::from_utf8_lossy(tail).trim().to_owned()
    }
}

/// `exit status 3`, `killed by signal 9`.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// `head: tail`, or `head` alone when stderr said nothing.
fn with_tail(head: String, tail: &Tail) -> String {
    let tail = tail.text();
    if tail.is_empty() {
        head
    } else {
        format!("{head}: {tail}")
    }
}

/// `5 s`, `0.25 s`: as typed on the command line.
fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_end_and_starts_on_a_character() {
        let mut tail = Tail::default();
        // 'é' is two bytes; an odd number of bytes before it puts the cut inside one.
        tail.push(b"x");
        for _ in 0..3_000 {
            tail.push("é".as_bytes());
        }
        tail.push(b"  the end\n");
        let text = tail.text();
        assert!(text.ends_with("the end"), "{text:?}");
        assert!(!text.contains('\u{FFFD}'), "{text:?}");
        assert!(text.starts_with('é'));
        assert!(text.len() <= ERROR_TAIL);
        assert!(tail.0.len() <= 2 * ERROR_TAIL);
    }

    #[test]
    fn a_short_tail_is_trimmed_and_an_empty_one_adds_nothing() {
        let mut tail = Tail::default();
        assert_eq!(with_tail("exit status 1".into(), &tail), "exit status 1");
        tail.push(b"\n  no such user  \n\n");
        assert_eq!(
            with_tail("exit status 1".into(), &tail),
            "exit status 1: no such user"
        );
    }

    #[test]
    fn seconds_read_as_typed() {
        assert_eq!(seconds(Duration::from_secs(5)), "5 s");
        assert_eq!(seconds(Duration::from_millis(250)), "0.25 s");
        assert_eq!(seconds(Duration::from_millis(1_500)), "1.5 s");
    }

    #[test]
    fn statuses_read_like_a_shell_says_them() {
        assert_eq!(describe(ExitStatus::from_raw(3 << 8)), "exit status 3");
        assert_eq!(describe(ExitStatus::from_raw(9)), "killed by signal 9");
    }
}
