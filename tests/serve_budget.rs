//! The web entry's budget of request bytes, over real HTTP on loopback: a
//! body that would take the bytes held past it gets `503` at its head, and
//! the bytes come back when a request is answered, times out or its
//! connection closes.
//!
//! With `--max-payload` at 1 KiB the budget is its floor, one request of the
//! largest size the server reads (`MAX_HEAD + MAX_BODY`), so a few
//! connections with a quarter of that declared fill it. A client knows its
//! request was admitted when it gets `100 Continue`: the server sends it
//! only after the body's bytes were taken from the budget.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use kitchen::serve::ServeConfig;
use kitchen::serve::http::{MAX_BODY, MAX_HEAD};
use support::wait_until;
use support::web::{Reply, TestServer, config, connect, parse_all, read_one, read_to_close};

/// The most any wait in these tests takes.
const LIMIT: Duration = Duration::from_secs(20);
/// The body each held request declares.
const BODY: usize = MAX_BODY / 4;

/// A server whose budget is its floor; held connections outlive the test
/// unless `client_timeout` says otherwise.
fn small(client_timeout: Duration) -> TestServer {
    TestServer::start(ServeConfig {
        max_payload: 1024,
        client_timeout,
        ..config()
    })
}

/// The head of a `POST /dishes` declaring `len` bytes of body.
fn head(len: usize, expect: bool) -> String {
    let expect = if expect {
        "Expect: 100-continue\r\n"
    } else {
        ""
    };
    format!("POST /dishes HTTP/1.1\r\nHost: x\r\n{expect}Content-Length: {len}\r\n\r\n")
}

/// Sends a head declaring `len` bytes and the first two of them: the
/// connection once admitted (`100 Continue`), or the refusal.
fn try_hold(addr: SocketAddr, len: usize) -> Result<TcpStream, Reply> {
    let mut s = connect(addr);
    s.write_all(head(len, true).as_bytes()).expect("send head");
    let reply = read_one(&mut s, false);
    if reply.status != 100 {
        return Err(reply);
    }
    // A body of JSON `{}` padded with spaces: a random dish, whatever
    // --max-payload says (the route trims the padding).
    s.write_all(b"{}").expect("send the start of the body");
    Ok(s)
}

fn hold(addr: SocketAddr, len: usize) -> TcpStream {
    try_hold(addr, len).unwrap_or_else(|r| panic!("not admitted: {} {}", r.status, r.text()))
}

/// Sends the rest of a held request's body and reads its answer; the
/// connection stays open (keep-alive).
fn finish(s: &mut TcpStream, len: usize) -> Reply {
    s.write_all(&vec![b' '; len - 2])
        .expect("send the rest of the body");
    read_one(s, false)
}

/// A head declaring `len` bytes, refused before a byte of the body is sent.
fn refused(addr: SocketAddr, len: usize) -> Reply {
    let mut s = connect(addr);
    s.write_all(head(len, false).as_bytes()).expect("send head");
    let mut replies = parse_all(&read_to_close(&mut s));
    assert_eq!(replies.len(), 1, "{replies:?}");
    replies.remove(0)
}

fn assert_busy(r: &Reply) {
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("connection"), Some("close"));
    let error = r.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("too many request bytes"), "{error}");
}

/// How many held requests of [`BODY`] bytes fill the budget.
fn fill() -> usize {
    let budget = MAX_HEAD + MAX_BODY;
    let n = budget / (head(BODY, true).len() + BODY);
    assert!(
        n >= 2,
        "the test needs a few connections to fill the budget"
    );
    n
}

#[test]
fn a_body_over_the_budget_is_503_and_answered_bytes_come_back() {
    let s = small(Duration::from_secs(60));
    let n = fill();
    let mut held: Vec<TcpStream> = (0..n).map(|_| hold(s.addr, BODY)).collect();
    // Full: the next body is refused from its head.
    assert_busy(&refused(s.addr, BODY));
    // A request without a body is in memory already: it is served.
    assert_eq!(s.get("/healthz").status, 200);
    // One held request finishes, its connection kept open: its answer
    // means its bytes are back, so exactly one more fits, and no more.
    let mut answered = held.pop().expect("held");
    let done = finish(&mut answered, BODY);
    assert_eq!(done.status, 202, "{}", done.text());
    held.push(hold(s.addr, BODY));
    assert_busy(&refused(s.addr, BODY));
    // Every held connection closes: their bytes come back once the server
    // has seen the closes, and as many requests fit as before.
    drop((held, answered));
    let mut again = Vec::new();
    for _ in 0..n {
        let mut admitted = None;
        wait_until(LIMIT, "the closed connections' bytes to come back", || {
            match try_hold(s.addr, BODY) {
                Ok(c) => admitted = Some(c),
                Err(r) => assert_busy(&r),
            }
            admitted.is_some()
        });
        again.extend(admitted);
    }
    assert_busy(&refused(s.addr, BODY));
    for mut c in again {
        let r = finish(&mut c, BODY);
        assert_eq!(r.status, 202, "{}", r.text());
    }
    s.stop().expect("a clean stop");
}

#[test]
fn a_body_that_times_out_gives_its_bytes_back() {
    let s = small(Duration::from_millis(500));
    // One request of the largest size fills the budget alone.
    let mut first = hold(s.addr, MAX_BODY);
    let timed_out = read_one(&mut first, false);
    assert_eq!(timed_out.status, 408, "{}", timed_out.text());
    // Its `408` is written after its bytes came back.
    drop(hold(s.addr, MAX_BODY));
    s.stop().expect("a clean stop");
}
