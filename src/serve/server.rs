//! The listener loop and the fixed pool of workers that serve connections.
//!
//! One thread accepts and hands each connection to a bounded hand-off
//! channel; `workers` threads take connections from it and serve their
//! requests one after another (keep-alive, pipelining). Every socket read has
//! a short timeout, so a worker notices a slow client, a half-open one, an
//! idle keep-alive connection that others are waiting behind, or the stop,
//! within a fraction of a second; none holds a worker longer than the client
//! timeout.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TrySendError, select};

use crate::serve::ServeError;
use crate::serve::http::{self, Head, MAX_BODY, MAX_HEAD, Request, Response};
use crate::shutdown::Shutdown;

/// Connections accepted but not yet taken by a worker; past this, new ones
/// get an immediate `503` rather than a wait of unknown length.
const PENDING: usize = 1024;
/// The longest single socket read wait: how quickly a worker looks up from a
/// quiet connection to check the clock, the waiting queue and the stop.
const SLICE: Duration = Duration::from_millis(200);
/// How much of an unread request a closing connection drains, so the client
/// gets the error response instead of a reset.
const LINGER_BYTES: usize = 256 * 1024;
/// Size of one socket read.
const CHUNK: usize = 4096;

/// What a worker does with a request: each worker owns one, so per-worker
/// state (a Redis connection, a random generator) needs no lock.
pub(crate) trait Handler: Send + 'static {
    /// The response to `req`. A panic here becomes a `500`, never a dead worker.
    fn handle(&mut self, req: &Request<'_>) -> Response;
}

/// Serves `listener` with one worker thread per handler until `shutdown`.
pub(crate) fn run<H: Handler>(
    listener: TcpListener,
    handlers: Vec<H>,
    timeout: Duration,
    shutdown: &Shutdown,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().map_err(ServeError::Listener)?;
    let (tx, rx) = crossbeam_channel::bounded::<TcpStream>(PENDING);
    let mut workers = Vec::with_capacity(handlers.len());
    for (i, handler) in handlers.into_iter().enumerate() {
        let w = Worker {
            handler,
            pending: rx.clone(),
            shutdown: shutdown.clone(),
            timeout,
            buf: Vec::with_capacity(CHUNK),
            out: Vec::with_capacity(CHUNK),
        };
        workers.push(spawn(&format!("web-{}", i + 1), move || w.run())?);
    }
    drop(rx);
    // The accept below blocks; a connection to ourselves wakes it on stop.
    let waker = spawn("web-waker", {
        let shutdown = shutdown.clone();
        move || {
            shutdown.wait();
            let _ = TcpStream::connect_timeout(&reachable(addr), Duration::from_secs(1));
        }
    })?;
    for conn in listener.incoming() {
        if shutdown.is_stopped() {
            break;
        }
        match conn {
            Ok(stream) => {
                if let Err(TrySendError::Full(stream)) = tx.try_send(stream) {
                    refuse_busy(stream);
                }
            }
            // Out of file descriptors or a connection reset before accept:
            // back off a moment rather than spin, then accept again.
            Err(_) => {
                if shutdown.sleep(Duration::from_millis(10)) {
                    break;
                }
            }
        }
    }
    drop(tx);
    for w in workers {
        let _ = w.join();
    }
    let _ = waker.join();
    Ok(())
}

/// The address a connect reaches: a wildcard bind is reached on loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, ServeError> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map_err(ServeError::Spawn)
}

/// Every worker is busy and the hand-off is full: say so without waiting.
fn refuse_busy(mut stream: TcpStream) {
    let mut out = Vec::new();
    Response::json_error(503, "the server is busy; retry in a second")
        .with("Retry-After", "1")
        .write_to(&mut out, Some("close"), false);
    let _ = stream.set_nonblocking(true);
    let _ = stream.write_all(&out);
}

/// How a read ended.
enum Got {
    Data,
    Eof,
    Quiet,
    Failed,
}

struct Worker<H> {
    handler: H,
    pending: Receiver<TcpStream>,
    shutdown: Shutdown,
    /// The most a client gets to send one request, and to stay idle.
    timeout: Duration,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl<H: Handler> Worker<H> {
    fn run(mut self) {
        loop {
            select! {
                recv(self.pending) -> conn => match conn {
                    Ok(stream) => self.serve(stream),
                    Err(_) => return,
                },
                recv(self.shutdown.receiver()) -> _ => return,
            }
        }
    }

    /// Serves one connection's requests until it closes, errs, idles or we stop.
    fn serve(&mut self, mut stream: TcpStream) {
        let slice = SLICE.min(self.timeout).max(Duration::from_millis(1));
        // Small responses go out in one write; Nagle would only delay them.
        let ok = stream.set_nodelay(true).is_ok()
            && stream.set_read_timeout(Some(slice)).is_ok()
            && stream.set_write_timeout(Some(self.timeout)).is_ok();
        if !ok {
            return;
        }
        self.buf.clear();
        loop {
            if self.buf.is_empty() && !self.wait_for_request(&mut stream) {
                return;
            }
            let deadline = Instant::now() + self.timeout;
            let head = loop {
                match http::parse_head(&self.buf) {
                    Ok(Some(head)) => break head,
                    Ok(None) => {}
                    Err(e) => return self.fail(stream, e.response()),
                }
                match self.read_until(&mut stream, deadline) {
                    Got::Data => {}
                    Got::Quiet => return self.fail(stream, timed_out()),
                    Got::Eof | Got::Failed => return,
                }
            };
            let end = head.len + head.body_len;
            if head.expect_continue
                && self.buf.len() < end
                && stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
            {
                return;
            }
            while self.buf.len() < end {
                match self.read_until(&mut stream, deadline) {
                    Got::Data => {}
                    Got::Quiet => return self.fail(stream, timed_out()),
                    Got::Eof | Got::Failed => return,
                }
            }
            let keep_alive = head.keep_alive && !self.shutdown.is_stopped();
            self.respond(&head, keep_alive);
            if stream.write_all(&self.out).is_err() || !keep_alive {
                return;
            }
            self.buf.drain(..end);
            if self.buf.capacity() > 2 * (MAX_HEAD + MAX_BODY) {
                self.buf.shrink_to(CHUNK);
            }
        }
    }

    /// Calls the handler and leaves the serialized response in `self.out`.
    fn respond(&mut self, head: &Head, keep_alive: bool) {
        let text = |(a, b): (usize, usize)| {
            self.buf
                .get(a..b)
                .and_then(|s| std::str::from_utf8(s).ok())
                .unwrap_or("")
        };
        let method = text(head.method);
        let req = Request {
            method,
            path: text(head.path),
            body: self
                .buf
                .get(head.len..head.len + head.body_len)
                .unwrap_or(&[]),
        };
        let head_only = method == "HEAD";
        let handler = &mut self.handler;
        let resp = catch_unwind(AssertUnwindSafe(|| handler.handle(&req))).unwrap_or_else(|_| {
            Response::json_error(500, "internal error (a bug in kitchen; please report it)")
        });
        self.out.clear();
        let connection = match (keep_alive, head.http10) {
            (false, _) => Some("close"),
            (true, true) => Some("keep-alive"),
            (true, false) => None,
        };
        resp.write_to(&mut self.out, connection, head_only);
    }

    /// Waits for the first bytes of a request on an idle connection. Gives
    /// up (closing it) after the timeout, at the stop, or at once when other
    /// connections wait for a worker.
    fn wait_for_request(&mut self, stream: &mut TcpStream) -> bool {
        let since = Instant::now();
        loop {
            match read_some(stream, &mut self.buf) {
                Got::Data => return true,
                Got::Eof | Got::Failed => return false,
                Got::Quiet => {
                    if self.shutdown.is_stopped()
                        || !self.pending.is_empty()
                        || since.elapsed() >= self.timeout
                    {
                        return false;
                    }
                }
            }
        }
    }

    /// Reads more of a request, answering `Quiet` only once `deadline` passed.
    fn read_until(&mut self, stream: &mut TcpStream, deadline: Instant) -> Got {
        loop {
            match read_some(stream, &mut self.buf) {
                Got::Quiet if Instant::now() < deadline && !self.shutdown.is_stopped() => {}
                // A trickle of bytes must not stretch the deadline either.
                Got::Data if Instant::now() >= deadline => return Got::Quiet,
                got => return got,
            }
        }
    }

    /// Sends an error response, then closes without resetting the client.
    fn fail(&mut self, mut stream: TcpStream, resp: Response) {
        self.out.clear();
        resp.write_to(&mut self.out, Some("close"), false);
        if stream.write_all(&self.out).is_err() {
            return;
        }
        // Closing with unread bytes makes the kernel send a reset, which can
        // destroy the response in flight: stop writing, drain a little, close.
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let deadline = Instant::now() + SLICE;
        let mut drained = 0;
        let mut sink = [0u8; CHUNK];
        while drained < LINGER_BYTES && Instant::now() < deadline {
            match stream.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
}

fn timed_out() -> Response {
    Response::json_error(408, "the request did not arrive in time")
}

/// One read of up to [`CHUNK`] bytes appended to `buf`.
fn read_some(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Got {
    let old = buf.len();
    buf.resize(old + CHUNK, 0);
    let got = loop {
        match stream.read(&mut buf[old..]) {
            Ok(0) => break (Got::Eof, 0),
            Ok(n) => break (Got::Data, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break (Got::Quiet, 0);
            }
            Err(_) => break (Got::Failed, 0),
        }
    };
    buf.truncate(old + got.1);
    got.0
}
