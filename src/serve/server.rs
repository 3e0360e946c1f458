//! The event loop that owns every connection, and the fixed pool of workers that answer requests.
//!
//! One thread (the caller's) owns the listener and every connection: it waits
//! for readiness with `mio` (epoll, kqueue), reads and parses requests, and
//! writes responses, all without blocking. A connection reaches a worker only
//! as one complete request, and comes back as one serialized response, so:
//!
//! - an idle keep-alive connection, a client that sends half a head and then
//!   nothing (slowloris), or one that reads its responses slowly costs a file
//!   descriptor and a few bytes, never a worker;
//! - every connection gets its turn: a connection has at most one request at
//!   the workers, and requests queue for the workers in the order they became
//!   complete, so a client that pipelines or sends back-to-back goes behind
//!   everyone whose request was already waiting;
//! - deadlines are absolute per request (the head from its first byte, the
//!   body from the end of the head, each response from when it is ready),
//!   checked by the loop's clock, not restarted by a trickle of bytes.
//!
//! Workers are plain threads with blocking handlers (the Redis calls); the
//! loop hears from them on a channel and a `mio::Waker`. Past the connection
//! limit, a new connection gets `503` and is closed at once.
//!
//! Memory is bounded the same way: a head is refused (`431`) past
//! [`http::MAX_HEAD`], so a connection reading one holds at most that and
//! one read more; a body is admitted from its `Content-Length`, before a
//! byte of it is read, only while every admitted request together stays
//! within the request budget ([`request_budget`]); past it, `503`. A
//! request's bytes count from its admission until its worker has dropped
//! them (its response is back) or its connection closes.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use mio::net::{TcpListener as Listener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};

use crate::serve::ServeError;
use crate::serve::http::{self, Head, Request, Response};
use crate::shutdown::Shutdown;

/// The listener's token; connections count up from [`FIRST_CONN`].
const LISTENER: Token = Token(0);
/// The token a worker (or the stop) wakes the loop with.
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;
/// The most connections held at once, when the descriptor limit allows it.
/// Each costs a descriptor and a read buffer only while a request is in it.
const MAX_CONNECTIONS: usize = 10_000;
/// Descriptors kept for everything but client connections (standard streams,
/// the poller), on top of [`FDS_PER_WORKER`] per worker.
const RESERVED_FDS: u64 = 64;
/// A worker's own connections at most: the queue, the pub/sub channel and the
/// results store with Redis.
const FDS_PER_WORKER: u64 = 4;
/// The request budget in bodies of the largest payload: 64 MiB at the
/// default `--max-payload` of 1 MiB. That is four full-size bodies for each
/// of the default 16 workers, so a burst of the largest dishes keeps every
/// worker busy while the next ones arrive; past it a body would only wait
/// in memory. 10 000 connections each sending a 1 MiB body would otherwise
/// hold 10 GiB. It follows `--max-payload`, not `--workers`: the payload
/// size is what the operator chose memory by.
const BUDGET_BODIES: usize = 64;
/// How long a closing connection is drained after an error response.
const LINGER: Duration = Duration::from_millis(200);
/// How much of an unread request a closing connection drains, so the client
/// gets the error response instead of a reset.
const LINGER_BYTES: usize = 256 * 1024;
/// Size of one socket read.
const CHUNK: usize = 4096;
/// The finest grain of the deadline clock: the loop scans for expired
/// deadlines at most this often, whatever the number of connections.
const TICK: Duration = Duration::from_millis(10);
/// How long accepting pauses when the system refuses a descriptor.
const ACCEPT_PAUSE: Duration = Duration::from_millis(10);
/// Connections accepted in one go before the loop turns to the others: a
/// flood of connects must not starve the connections already held.
const ACCEPTS_PER_ROUND: usize = 256;
/// Connections the kernel holds until the loop accepts them (capped by the
/// system's `somaxconn`, 4 096 on Linux since 5.4; Go listens with that
/// too). The standard library listens with 128: 2 000 connects in a burst
/// overflowed it, and each dropped SYN cost its client a one-second
/// retransmit; 1 024 still overflowed now and then on a loaded machine.
const BACKLOG: i32 = 4096;

/// What a worker does with a request: each worker owns one, so per-worker
/// state (a Redis connection, a random generator) needs no lock.
pub(crate) trait Handler: Send + 'static {
    /// The response to `req`. A panic here becomes a `500`, never a dead worker.
    fn handle(&mut self, req: &Request<'_>) -> Response;
}

/// The most request bytes (heads and bodies of admitted requests) the
/// server holds at once, for a server whose largest payload is
/// `max_payload`: [`BUDGET_BODIES`] of them, and never less than one
/// request of the largest size read, so that a lone request is never
/// refused for good with a "retry later" (a body over `--max-payload` but
/// within [`http::MAX_BODY`] is read and gets its `413` from the route).
pub(crate) fn request_budget(max_payload: usize) -> usize {
    BUDGET_BODIES
        .saturating_mul(max_payload.min(http::MAX_BODY))
        .max(http::MAX_HEAD + http::MAX_BODY)
}

/// Serves `listener` with one worker thread per handler until `shutdown`,
/// holding at most `budget` request bytes at once.
pub(crate) fn run<H: Handler>(
    listener: TcpListener,
    handlers: Vec<H>,
    timeout: Duration,
    budget: usize,
    shutdown: &Shutdown,
) -> Result<(), ServeError> {
    let reserve = RESERVED_FDS + FDS_PER_WORKER * handlers.len() as u64;
    serve(
        listener,
        handlers,
        timeout,
        connection_limit(reserve),
        budget,
        shutdown,
    )
}

/// [`run`] with the connection limit given.
fn serve<H: Handler>(
    listener: TcpListener,
    handlers: Vec<H>,
    timeout: Duration,
    limit: usize,
    budget: usize,
    shutdown: &Shutdown,
) -> Result<(), ServeError> {
    // A poller or waker that cannot be made is, like the listener, a
    // descriptor the system refused: the same error.
    listener
        .set_nonblocking(true)
        .map_err(ServeError::Listener)?;
    // Listening again on a listening socket only resizes its backlog; where
    // that fails, the first backlog stands.
    let _ = socket2::SockRef::from(&listener).listen(BACKLOG);
    let poll = Poll::new().map_err(ServeError::Listener)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(ServeError::Listener)?);
    let mut listener = Listener::from_std(listener);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(ServeError::Listener)?;
    let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded::<Job>();
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<Done>();
    let mut workers = Vec::with_capacity(handlers.len());
    for (i, handler) in handlers.into_iter().enumerate() {
        let w = Worker {
            handler,
            jobs: jobs_rx.clone(),
            done: done_tx.clone(),
            waker: waker.clone(),
            shutdown: shutdown.clone(),
        };
        workers.push(spawn(&format!("web-{}", i + 1), move || w.run())?);
    }
    drop((jobs_rx, done_tx));
    // The loop sleeps in the poller: the stop has to wake it. `quit` ends
    // this thread when the loop returns without a stop (an error).
    let (quit_tx, quit_rx) = crossbeam_channel::bounded::<()>(0);
    let watcher = spawn("web-stop", {
        let (shutdown, waker) = (shutdown.clone(), waker.clone());
        move || {
            select! {
                recv(shutdown.receiver()) -> _ => { let _ = waker.wake(); },
                recv(quit_rx) -> _ => {},
            }
        }
    })?;
    let registry = poll.registry().try_clone().map_err(ServeError::Listener)?;
    let mut event_loop = EventLoop {
        poll,
        listener: Some(listener),
        conns: HashMap::new(),
        next_token: FIRST_CONN,
        limit,
        ctx: Ctx {
            registry,
            timeout,
            jobs: jobs_tx,
            now: Instant::now(),
            stopping: false,
            budget: Budget {
                held: Cell::new(0),
                limit: budget,
            },
        },
        done: done_rx,
        shutdown: shutdown.clone(),
        next_due: None,
        accept_at: None,
    };
    let served = event_loop.run();
    // Workers finish the requests already queued, then see the end.
    drop(event_loop);
    drop(quit_tx);
    for w in workers {
        let _ = w.join();
    }
    let _ = watcher.join();
    served
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, ServeError> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map_err(ServeError::Spawn)
}

/// How many connections fit in the descriptor limit, `reserve` kept aside.
/// The soft limit is first raised toward the hard one (as Go's runtime does
/// at start): the default soft limit of 1 024 would cap the server far below
/// what the machine allows.
#[cfg(unix)]
fn connection_limit(reserve: u64) -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let want = MAX_CONNECTIONS as u64 + reserve;
    let soft = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < want => {
            let raised = want.min(hard);
            match setrlimit(Resource::RLIMIT_NOFILE, raised, hard) {
                Ok(()) => raised,
                Err(_) => soft,
            }
        }
        Ok((soft, _)) => soft,
        // Unknown: assume the common default.
        Err(_) => 1024,
    };
    let fit = usize::try_from(soft.saturating_sub(reserve)).unwrap_or(MAX_CONNECTIONS);
    fit.clamp(1, MAX_CONNECTIONS)
}

#[cfg(not(unix))]
fn connection_limit(_reserve: u64) -> usize {
    MAX_CONNECTIONS
}

/// One complete request for a worker: its bytes and where things are in them.
struct Job {
    token: Token,
    bytes: Vec<u8>,
    head: Head,
}

/// A worker's answer: the serialized response, and whether to close after it.
struct Done {
    token: Token,
    out: Vec<u8>,
    close: bool,
}

struct Worker<H> {
    handler: H,
    jobs: Receiver<Job>,
    done: Sender<Done>,
    waker: Arc<Waker>,
    shutdown: Shutdown,
}

impl<H: Handler> Worker<H> {
    /// Answers requests until the event loop is gone. The stop is not
    /// checked here: a request already queued is answered (with
    /// `Connection: close`), as its client is waiting for it.
    fn run(mut self) {
        while let Ok(job) = self.jobs.recv() {
            let keep_alive = job.head.keep_alive && !self.shutdown.is_stopped();
            let out = self.respond(&job, keep_alive);
            let done = Done {
                token: job.token,
                out,
                close: !keep_alive,
            };
            // The request's bytes go before the loop hears of the answer,
            // which gives them back to the budget.
            drop(job);
            if self.done.send(done).is_err() {
                return;
            }
            let _ = self.waker.wake();
        }
    }

    /// Calls the handler and serializes its response.
    fn respond(&mut self, job: &Job, keep_alive: bool) -> Vec<u8> {
        let (buf, head) = (&job.bytes, &job.head);
        let text = |(a, b): (usize, usize)| {
            buf.get(a..b)
                .and_then(|s| std::str::from_utf8(s).ok())
                .unwrap_or("")
        };
        let method = text(head.method);
        let req = Request {
            method,
            path: text(head.path),
            body: buf.get(head.len..head.len + head.body_len).unwrap_or(&[]),
            cross_site: head.cross_site,
        };
        let handler = &mut self.handler;
        let resp = catch_unwind(AssertUnwindSafe(|| handler.handle(&req))).unwrap_or_else(|_| {
            Response::json_error(500, "internal error (a bug in kitchen; please report it)")
        });
        let connection = match (keep_alive, head.http10) {
            (false, _) => Some("close"),
            (true, true) => Some("keep-alive"),
            (true, false) => None,
        };
        let mut out = Vec::with_capacity(resp.body.len() + 256);
        resp.write_to(&mut out, connection, method == "HEAD");
        out
    }
}

/// What every connection's step needs from the loop.
struct Ctx {
    /// To ask for writable events once a write blocks.
    registry: Registry,
    /// The most a client gets for one head, one body, one response, or to
    /// stay idle between two requests.
    timeout: Duration,
    jobs: Sender<Job>,
    /// The loop's clock, read once per round of events.
    now: Instant,
    /// Stopping: finish what the workers have, read no more requests.
    stopping: bool,
    /// The request bytes held, against their limit.
    budget: Budget,
}

/// The request bytes held across every connection, and the most allowed.
///
/// A plain counter: only the loop's thread takes and gives (a worker's
/// bytes are given back when its answer reaches the loop), so no atomics.
/// A `Cell` because every connection's step sees the loop's [`Ctx`] shared.
struct Budget {
    held: Cell<usize>,
    limit: usize,
}

impl Budget {
    /// Takes `n` bytes if they fit under the limit; `false` takes nothing.
    fn try_take(&self, n: usize) -> bool {
        let held = self.held.get().saturating_add(n);
        if held > self.limit {
            return false;
        }
        self.held.set(held);
        true
    }

    /// Takes `n` bytes already in memory, whatever the limit.
    fn take(&self, n: usize) {
        self.held.set(self.held.get().saturating_add(n));
    }

    fn give(&self, n: usize) {
        self.held.set(self.held.get().saturating_sub(n));
    }
}

struct EventLoop {
    poll: Poll,
    /// `None` once stopping: new connections are refused by the system.
    listener: Option<Listener>,
    conns: HashMap<Token, Conn>,
    next_token: usize,
    /// Connections held at once; past it, `503` and close.
    limit: usize,
    ctx: Ctx,
    done: Receiver<Done>,
    shutdown: Shutdown,
    /// When the deadlines must next be scanned (`None`: no deadline is set).
    next_due: Option<Instant>,
    /// When to accept again without waiting for readiness: after a pause
    /// when the system refused a descriptor, or at once when a round's share
    /// of accepts was used up.
    accept_at: Option<Instant>,
}

impl EventLoop {
    fn run(&mut self) -> Result<(), ServeError> {
        let mut events = Events::with_capacity(1024);
        loop {
            let wait = [self.next_due, self.accept_at]
                .into_iter()
                .flatten()
                .min()
                .map(|at| at.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, wait)
                && e.kind() != io::ErrorKind::Interrupted
            {
                return Err(ServeError::Listener(e));
            }
            self.ctx.now = Instant::now();
            if self.shutdown.is_stopped() && !self.ctx.stopping {
                self.begin_stop();
            }
            let mut accepted = false;
            for event in events.iter() {
                match event.token() {
                    LISTENER => {
                        accepted = true;
                        self.accept();
                    }
                    // The answers are read below, whatever woke the loop.
                    WAKER => {}
                    token => self.drive(token, |c, ctx| c.drive(ctx)),
                }
            }
            while let Ok(done) = self.done.try_recv() {
                self.drive(done.token, |c, ctx| c.answer(done.out, done.close, ctx));
            }
            // Only accepts left over from an earlier round: this round's
            // listener event has had its share.
            if !accepted && self.accept_at.is_some_and(|at| self.ctx.now >= at) {
                self.accept_at = None;
                self.accept();
            }
            if self.next_due.is_some_and(|at| self.ctx.now >= at) {
                self.expire();
            }
            if self.ctx.stopping && self.conns.is_empty() {
                return Ok(());
            }
        }
    }

    /// Runs `step` on a connection, then closes it or notes its deadline.
    fn drive(&mut self, token: Token, step: impl FnOnce(&mut Conn, &Ctx) -> Fate) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return; // closed already; a late event or answer
        };
        match step(conn, &self.ctx) {
            Fate::Close => self.close(token),
            Fate::Keep => {
                if let Some(at) = conn.deadline {
                    self.next_due = Some(self.next_due.map_or(at, |d| d.min(at)));
                }
            }
        }
    }

    fn close(&mut self, token: Token) {
        if let Some(mut conn) = self.conns.remove(&token) {
            conn.release(&self.ctx);
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
    }

    /// Accepts until the backlog is empty (readiness comes on edges only),
    /// or a round's share is used up.
    fn accept(&mut self) {
        for _ in 0..ACCEPTS_PER_ROUND {
            let Some(listener) = &self.listener else {
                return;
            };
            let mut stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    continue;
                }
                // Out of descriptors or memory: what waits in the backlog
                // waits a moment, rather than the loop spinning on it.
                Err(_) => {
                    self.accept_at = Some(self.ctx.now + ACCEPT_PAUSE);
                    return;
                }
            };
            if self.conns.len() >= self.limit {
                refuse_busy(&mut stream);
                continue;
            }
            // Small responses go out in one write; Nagle would only delay them.
            let _ = stream.set_nodelay(true);
            let token = Token(self.next_token);
            self.next_token += 1;
            // Writable readiness is asked for only once a write blocks:
            // most responses go out whole, and an event for every fresh
            // socket would halve the rate of a burst of accepts.
            if self
                .poll
                .registry()
                .register(&mut stream, token, Interest::READABLE)
                .is_err()
            {
                continue;
            }
            // Registering reports what is already readable: no read here.
            let idle_until = self.ctx.now + self.ctx.timeout;
            self.conns
                .insert(token, Conn::new(stream, token, idle_until));
            self.next_due = Some(self.next_due.map_or(idle_until, |d| d.min(idle_until)));
        }
        // More may wait: the next round takes them, after the others' events.
        self.accept_at = Some(self.ctx.now);
    }

    /// Closes or answers `408` to every connection past its deadline.
    fn expire(&mut self) {
        let now = self.ctx.now;
        let expired: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|at| at <= now))
            .map(|(&t, _)| t)
            .collect();
        for token in expired {
            self.drive(token, |c, ctx| c.expire(ctx));
        }
        // Scanning every connection costs little, but not on every event:
        // at most once a tick.
        self.next_due = self
            .conns
            .values()
            .filter_map(|c| c.deadline)
            .min()
            .map(|at| at.max(now + TICK));
    }

    /// No new connections, no new requests; what the workers hold is
    /// answered and written, then the loop ends.
    fn begin_stop(&mut self) {
        self.ctx.stopping = true;
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.accept_at = None;
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for token in tokens {
            self.drive(token, Conn::stop);
        }
    }
}

/// Every worker is busy and every connection slot taken: say so, and close.
fn refuse_busy(stream: &mut TcpStream) {
    let mut out = Vec::new();
    Response::json_error(503, "the server is busy; retry in a second")
        .with("Retry-After", "1")
        .write_to(&mut out, Some("close"), false);
    // A fresh socket's send buffer is empty: the write cannot block.
    let _ = stream.write_all(&out);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Admitting a body would take the request bytes held over the budget.
fn too_many_bytes() -> Response {
    Response::json_error(
        503,
        "the server is busy: too many request bytes in flight; retry in a second",
    )
    .with("Retry-After", "1")
}

/// Whether a connection stays open after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    Close,
}

/// Where a connection is in its request–response cycle.
#[derive(Debug)]
enum Phase {
    /// Reading a request.
    Reading(Stage),
    /// A complete request is with the workers.
    Busy,
    /// Writing a response; then `After`.
    Writing(After),
    /// After an error response: reading what the client still sends, so it
    /// is not reset before it has read the response.
    Lingering { drained: usize },
}

/// How far the request being read has come.
#[derive(Debug)]
enum Stage {
    /// Nothing yet: the deadline is the keep-alive idle limit.
    Idle,
    /// Some of the head: the deadline is the head's.
    Head,
    /// The head is parsed, the body is coming: the deadline is the body's.
    Body(Head),
}

/// What follows a written response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    KeepAlive,
    Close,
    Linger,
}

/// How a write or read ended.
enum Io {
    /// Everything was written, or some bytes were read.
    Done,
    /// The socket would block: wait for the next readiness event.
    Blocked,
    Eof,
    Failed,
}

/// One client connection, owned by the loop.
struct Conn {
    stream: TcpStream,
    token: Token,
    /// Bytes read and not yet handed to a worker.
    buf: Vec<u8>,
    /// What this connection's request holds of the budget, from its
    /// admission until its answer is back.
    charged: usize,
    /// Bytes to send, from `written` on.
    out: Vec<u8>,
    written: usize,
    phase: Phase,
    /// When the current phase runs out (`None` while the workers have it).
    deadline: Option<Instant>,
    /// Whether the poller reports this socket writable (once a write blocked).
    write_events: bool,
}

impl Conn {
    fn new(stream: TcpStream, token: Token, idle_until: Instant) -> Conn {
        Conn {
            stream,
            token,
            buf: Vec::new(),
            charged: 0,
            out: Vec::new(),
            written: 0,
            phase: Phase::Reading(Stage::Idle),
            deadline: Some(idle_until),
            write_events: false,
        }
    }

    /// Goes as far as the socket allows without blocking: reads and parses,
    /// hands a complete request to the workers, writes what is pending.
    fn drive(&mut self, ctx: &Ctx) -> Fate {
        loop {
            // Pending bytes first: a response, or a `100 Continue`.
            let flushed = match self.flush(ctx) {
                Io::Failed | Io::Eof => return Fate::Close,
                io => io,
            };
            match &mut self.phase {
                Phase::Busy => return Fate::Keep,
                Phase::Writing(_) if matches!(flushed, Io::Blocked) => return Fate::Keep,
                Phase::Writing(After::Close) => return Fate::Close,
                Phase::Writing(After::Linger) => {
                    // Closing with unread bytes makes the kernel send a
                    // reset, which can destroy the response in flight:
                    // stop writing, drain a little, then close.
                    let _ = self.stream.shutdown(std::net::Shutdown::Write);
                    self.phase = Phase::Lingering { drained: 0 };
                    self.deadline = Some(ctx.now + LINGER);
                }
                Phase::Writing(After::KeepAlive) => {
                    self.out = Vec::new();
                    self.written = 0;
                    self.phase = Phase::Reading(Stage::Idle);
                    self.deadline = Some(ctx.now + ctx.timeout);
                }
                Phase::Lingering { drained } => {
                    let mut sink = [0u8; CHUNK];
                    loop {
                        match self.stream.read(&mut sink) {
                            Ok(0) => return Fate::Close,
                            Ok(n) => {
                                *drained += n;
                                if *drained >= LINGER_BYTES {
                                    return Fate::Close;
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                return Fate::Keep;
                            }
                            Err(_) => return Fate::Close,
                        }
                    }
                }
                Phase::Reading(_) => {
                    if ctx.stopping {
                        return Fate::Close;
                    }
                    if let Some(fate) = self.parse(ctx) {
                        return fate;
                    }
                    if matches!(self.phase, Phase::Reading(_)) {
                        // A `100 Continue` just queued goes out before the
                        // client, which waits for it, can send more.
                        if let Io::Failed | Io::Eof = self.flush(ctx) {
                            return Fate::Close;
                        }
                        match self.read_some() {
                            Io::Done => {}
                            Io::Blocked => return Fate::Keep,
                            Io::Eof | Io::Failed => return Fate::Close,
                        }
                    }
                }
            }
        }
    }

    /// Takes the request in `buf` as far as it goes: `Some` when the step
    /// is over (the request went to a worker), `None` to go on (read more,
    /// or write an error response).
    fn parse(&mut self, ctx: &Ctx) -> Option<Fate> {
        let Phase::Reading(stage) = &mut self.phase else {
            return None;
        };
        if matches!(stage, Stage::Idle) {
            if self.buf.is_empty() {
                return None;
            }
            // The head's deadline runs from its first byte.
            *stage = Stage::Head;
            self.deadline = Some(ctx.now + ctx.timeout);
        }
        if matches!(stage, Stage::Head) {
            match http::parse_head(&self.buf) {
                Ok(None) => return None,
                Err(e) => {
                    self.fail(e.response(), ctx);
                    return None;
                }
                Ok(Some(head)) => {
                    let end = head.len + head.body_len;
                    // A body is admitted before a byte of it is read; a
                    // request without one is already in memory, and taken
                    // whatever the budget says.
                    if head.body_len == 0 {
                        ctx.budget.take(end);
                    } else if !ctx.budget.try_take(end) {
                        self.fail(too_many_bytes(), ctx);
                        return None;
                    }
                    self.charged = end;
                    // Room for the whole request and one read past it, so
                    // the buffer does not double as the body arrives.
                    self.buf
                        .reserve_exact((end + CHUNK).saturating_sub(self.buf.len()));
                    if head.expect_continue && self.buf.len() < end {
                        self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                        self.written = 0;
                    }
                    // The body's deadline runs from the end of the head.
                    self.deadline = Some(ctx.now + ctx.timeout);
                    *stage = Stage::Body(head);
                }
            }
        }
        let Stage::Body(head) = stage else {
            return None;
        };
        let end = head.len + head.body_len;
        if self.buf.len() < end {
            return None;
        }
        let head = head.clone();
        // The request goes to the worker; what follows it (pipelined
        // requests) stays, and is read after the response is written.
        let rest = self.buf.split_off(end);
        let bytes = std::mem::replace(&mut self.buf, rest);
        self.out = Vec::new();
        self.written = 0;
        self.phase = Phase::Busy;
        self.deadline = None;
        let job = Job {
            token: self.token,
            bytes,
            head,
        };
        Some(match ctx.jobs.send(job) {
            Ok(()) => Fate::Keep,
            Err(_) => Fate::Close, // no worker left
        })
    }

    /// A worker's response arrived: write it.
    fn answer(&mut self, out: Vec<u8>, close: bool, ctx: &Ctx) -> Fate {
        if !matches!(self.phase, Phase::Busy) {
            return Fate::Keep;
        }
        // The worker has dropped the request's bytes.
        self.release(ctx);
        self.out = out;
        self.written = 0;
        let after = if close || ctx.stopping {
            After::Close
        } else {
            After::KeepAlive
        };
        self.phase = Phase::Writing(after);
        // The response's deadline runs from now, however it trickles out.
        self.deadline = Some(ctx.now + ctx.timeout);
        self.drive(ctx)
    }

    /// An error response, then a lingering close.
    fn fail(&mut self, resp: Response, ctx: &Ctx) {
        self.out.clear();
        self.written = 0;
        resp.write_to(&mut self.out, Some("close"), false);
        self.buf = Vec::new();
        self.release(ctx);
        self.phase = Phase::Writing(After::Linger);
        self.deadline = Some(ctx.now + ctx.timeout);
    }

    /// Gives what the request held back to the budget.
    fn release(&mut self, ctx: &Ctx) {
        ctx.budget.give(std::mem::take(&mut self.charged));
    }

    /// The deadline passed: an idle connection closes without a word, a
    /// request that did not arrive in time gets `408`, the rest close.
    fn expire(&mut self, ctx: &Ctx) -> Fate {
        match self.phase {
            Phase::Reading(Stage::Head | Stage::Body(_)) if !ctx.stopping => {
                let resp = Response::json_error(408, "the request did not arrive in time");
                self.fail(resp, ctx);
                self.drive(ctx)
            }
            Phase::Busy => Fate::Keep,
            _ => Fate::Close,
        }
    }

    /// The server stops: a connection between requests closes now; one whose
    /// request is with the workers or being answered closes after it.
    fn stop(&mut self, _ctx: &Ctx) -> Fate {
        match self.phase {
            Phase::Reading(_) => Fate::Close,
            Phase::Writing(After::KeepAlive) => {
                self.phase = Phase::Writing(After::Close);
                Fate::Keep
            }
            _ => Fate::Keep,
        }
    }

    /// Writes what is pending in `out`.
    fn flush(&mut self, ctx: &Ctx) -> Io {
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return Io::Failed,
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self.write_events {
                        // Kept from now on: a stray event costs less than a
                        // system call to take the interest back.
                        let both = Interest::READABLE | Interest::WRITABLE;
                        if ctx
                            .registry
                            .reregister(&mut self.stream, self.token, both)
                            .is_err()
                        {
                            return Io::Failed;
                        }
                        self.write_events = true;
                    }
                    return Io::Blocked;
                }
                Err(_) => return Io::Failed,
            }
        }
        Io::Done
    }

    /// One read of up to [`CHUNK`] bytes appended to `buf`.
    fn read_some(&mut self) -> Io {
        let old = self.buf.len();
        self.buf.resize(old + CHUNK, 0);
        let (io, n) = loop {
            match self.stream.read(&mut self.buf[old..]) {
                Ok(0) => break (Io::Eof, 0),
                Ok(n) => break (Io::Done, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break (Io::Blocked, 0),
                Err(_) => break (Io::Failed, 0),
            }
        };
        self.buf.truncate(old + n);
        if self.buf.is_empty() {
            // An idle connection keeps no buffer.
            self.buf = Vec::new();
        }
        io
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpStream as StdStream};

    /// Answers `200 ok` to everything.
    struct Ok200;

    impl Handler for Ok200 {
        fn handle(&mut self, _: &Request<'_>) -> Response {
            Response::text(200, "ok")
        }
    }

    type Running = (SocketAddr, Shutdown, JoinHandle<Result<(), ServeError>>);

    fn start(limit: usize) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let handle = thread::spawn(move || {
            let budget = request_budget(crate::defaults::MAX_PAYLOAD);
            serve(
                listener,
                vec![Ok200],
                Duration::from_secs(5),
                limit,
                budget,
                &stop,
            )
        });
        (addr, shutdown, handle)
    }

    fn connect(addr: SocketAddr) -> StdStream {
        let s = StdStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        s
    }

    /// Sends a keep-alive GET and reads the whole (small) response.
    fn get(s: &mut StdStream) -> String {
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"ok\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    #[test]
    fn past_the_connection_limit_a_client_gets_503_at_once() {
        let (addr, shutdown, handle) = start(2);
        // Answered, so the loop holds both.
        let mut held: Vec<StdStream> = (0..2).map(|_| connect(addr)).collect();
        for s in &mut held {
            assert!(get(s).starts_with("HTTP/1.1 200 OK\r\n"));
        }
        let mut third = connect(addr);
        let mut refused = String::new();
        let _ = third.read_to_string(&mut refused);
        assert!(refused.starts_with("HTTP/1.1 503 "), "{refused:?}");
        assert!(refused.contains("Retry-After: 1\r\n"), "{refused:?}");
        // A slot freed is a slot for the next client, once the loop has
        // seen the close.
        drop(held.pop());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = get(&mut connect(addr));
            if answer.starts_with("HTTP/1.1 200 OK\r\n") {
                break;
            }
            assert!(answer.starts_with("HTTP/1.1 503 "), "{answer:?}");
            assert!(Instant::now() < deadline, "the freed slot never came back");
            thread::sleep(Duration::from_millis(10));
        }
        shutdown.stop();
        handle.join().expect("serve").expect("a clean stop");
    }

    #[test]
    fn the_limit_fits_the_descriptors() {
        let limit = connection_limit(RESERVED_FDS);
        assert!((1..=MAX_CONNECTIONS).contains(&limit), "{limit}");
    }
}
