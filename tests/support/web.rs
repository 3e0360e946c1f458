//! HTTP over loopback for the web entry's tests: an in-process server bound to
//! port 0, and a small blocking client that can also send broken requests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use kitchen::Shutdown;
use kitchen::queue::Capacity;
#[cfg(feature = "redis")]
use kitchen::queue::{BackendConfig, Mode, RedisOptions};
use kitchen::serve::{self, ServeConfig, ServeError};

#[cfg(feature = "redis")]
use super::redis_server::RedisServer;
use super::{KillOnDrop, LIMIT, Lines, finished_within, join_within, start, wait_output};

/// How long a test waits on any one socket read.
const IO_LIMIT: Duration = Duration::from_secs(20);

/// `kitchen serve` running in this process on `127.0.0.1:<free port>`;
/// stopped and joined on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Shutdown,
    handle: Option<JoinHandle<Result<(), ServeError>>>,
}

impl TestServer {
    pub fn start(config: ServeConfig) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let shutdown = Shutdown::new();
        let handle = std::thread::spawn({
            let shutdown = shutdown.clone();
            move || serve::run(listener, &config, &shutdown)
        });
        TestServer {
            addr,
            shutdown,
            handle: Some(handle),
        }
    }

    /// `http://127.0.0.1:port/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path, None)
    }

    pub fn post(&self, path: &str, body: &str) -> Reply {
        request(self.addr, "POST", path, Some(body.as_bytes()))
    }

    /// A figure of `GET /stats`, which must be a number.
    pub fn stat(&self, key: &str) -> u64 {
        self.get("/stats").json()[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} is not a number"))
    }

    /// Stops the server and returns what `serve::run` returned, which it
    /// must within [`LIMIT`].
    pub fn stop(mut self) -> Result<(), ServeError> {
        self.shutdown.stop();
        let h = self.handle.take().expect("running");
        join_within(h, LIMIT, "serve::run, once stopped,")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.stop();
        if let Some(h) = self.handle.take() {
            if finished_within(&h, LIMIT) {
                let _ = h.join();
            } else if !std::thread::panicking() {
                panic!("serve::run did not return within {LIMIT:?} of its stop");
            }
        }
    }
}

/// A response as the client saw it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// A header's value (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }
}

/// One request on a fresh connection (`Connection: close`).
pub fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&[u8]>) -> Reply {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(b) = body {
        raw.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    raw.push_str("\r\n");
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    let mut s = connect(addr);
    s.write_all(&bytes).expect("send request");
    read_one(&mut s, method == "HEAD")
}

/// Reads one whole response, framed by `Content-Length` (some servers keep
/// the connection open whatever `Connection: close` asked).
pub fn read_one(s: &mut TcpStream, head_only: bool) -> Reply {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let mut reply = parse_all(&got[..end + 4]).remove(0);
            let len: usize = if head_only {
                0
            } else {
                reply
                    .header("content-length")
                    .map_or(0, |v| v.parse().expect("length"))
            };
            if got.len() >= end + 4 + len {
                reply.body = got[end + 4..end + 4 + len].to_vec();
                return reply;
            }
        }
        match s.read(&mut buf) {
            Ok(0) => panic!(
                "connection closed mid-response: {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "reading the response: {e}; got so far {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

/// Connects with read and write limits.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the server");
    s.set_read_timeout(Some(IO_LIMIT)).expect("read timeout");
    s.set_write_timeout(Some(IO_LIMIT)).expect("write timeout");
    s
}

/// Writes `bytes` as they are, reads until the server closes, parses every
/// response in what came back.
pub fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<Reply> {
    let mut s = connect(addr);
    s.write_all(bytes).expect("send request");
    parse_all(&read_to_close(&mut s))
}

/// Everything the server sends until it closes the connection.
pub fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // A reset after the response still leaves the response readable.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!(
                "reading the response: {e}; got so far {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

/// Parses consecutive responses framed by `Content-Length`.
pub fn parse_all(mut bytes: &[u8]) -> Vec<Reply> {
    let mut replies = Vec::new();
    while !bytes.is_empty() {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(bytes)));
        let head = std::str::from_utf8(&bytes[..end]).expect("ASCII head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().expect("numeric Content-Length"));
        let rest = &bytes[end + 4..];
        // 1xx responses and HEAD answers carry no body whatever their length says.
        let body_len = if status < 200 { 0 } else { len.min(rest.len()) };
        replies.push(Reply {
            status,
            headers,
            body: rest[..body_len].to_vec(),
        });
        bytes = &rest[body_len..];
    }
    replies
}

/// A config for tests: no naps, a quick client timeout.
pub fn config() -> ServeConfig {
    ServeConfig {
        client_timeout: Duration::from_millis(500),
        ..ServeConfig::default()
    }
}

/// A server whose queue only fills: no diners, so what is made stays put
/// and countable.
pub fn no_diners(capacity: Capacity) -> TestServer {
    TestServer::start(ServeConfig {
        diners: 0,
        capacity,
        ..config()
    })
}

/// [`config`] on the queue of a test redis-server, in `mode`.
#[cfg(feature = "redis")]
pub fn redis_config(server: &RedisServer, mode: Mode) -> ServeConfig {
    ServeConfig {
        backend: BackendConfig::Redis(RedisOptions::new(server.url(), mode)),
        ..config()
    }
}

/// A server on the list of a test redis-server, bounded by `capacity`.
#[cfg(feature = "redis")]
pub fn serve_on(server: &RedisServer, capacity: Capacity) -> TestServer {
    TestServer::start(ServeConfig {
        capacity,
        ..redis_config(server, Mode::List)
    })
}

/// Runs the tutorial's load test, `siege -c10 -r5 URL`, and returns siege's
/// JSON report (siege 4 prints it on stdout).
///
/// siege reads nothing of the user's: its settings are a siegerc written for
/// the run (`-R`), and its `HOME` an empty temp dir. On a fresh `HOME` siege
/// first writes a config template there and says so on stdout, before the
/// report: the report is picked out of whatever surrounds it.
pub fn siege(url: &str) -> serde_json::Value {
    let dir = tempfile::Builder::new()
        .prefix("kitchen-siege-")
        .tempdir()
        .expect("temp dir for siege");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).expect("an empty HOME for siege");
    let rc = dir.path().join("siegerc");
    std::fs::write(&rc, siegerc(&dir.path().join("siege.log"))).expect("write the siegerc");
    let mut siege = std::process::Command::new("siege");
    siege
        .arg("-R")
        .arg(&rc)
        .args(["-c10", "-r5", "--no-parser", url])
        .env("HOME", &home)
        .env_remove("SIEGERC");
    let child = start(
        &mut siege,
        "siege (Debian package `siege`; scripts/test installs it)",
    );
    let out = wait_output(child, LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "siege failed: {stdout}\n{stderr}");
    json_object_with(&stdout, "availability")
        .unwrap_or_else(|| panic!("no JSON report in siege's output: {stdout:?}\n{stderr}"))
}

/// siege's settings for the tutorial's run, in place of `~/.siege/siege.conf`:
/// those of the template siege 4 installs that bear on the run, with the
/// report as JSON and no log.
fn siegerc(log: &std::path::Path) -> String {
    format!(
        "# kitchen's tests: siege reads these settings and none of the user's.\n\
         json_output = true\n\
         verbose = false\n\
         quiet = true\n\
         color = off\n\
         logging = false\n\
         show-logfile = false\n\
         logfile = {}\n\
         protocol = HTTP/1.1\n\
         connection = close\n\
         chunked = true\n\
         accept-encoding = gzip, deflate\n\
         follow-location = true\n",
        log.display()
    )
}

/// The first JSON object in `text` that has `key`, whatever is printed
/// before or after it.
pub fn json_object_with(text: &str, key: &str) -> Option<serde_json::Value> {
    text.match_indices('{').find_map(|(at, _)| {
        let v: serde_json::Value = serde_json::Deserializer::from_str(&text[at..])
            .into_iter()
            .next()?
            .ok()?;
        v.get(key).is_some().then_some(v)
    })
}

/// Decodes standard base64 (a WebDriver screenshot).
pub fn base64(text: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Starts the `kitchen serve ARGS --bind 127.0.0.1:0` process; returns it,
/// the address it printed, and its stderr. (Its stdout stays piped and
/// unread until it exits: serve prints nothing there.)
pub fn spawn_serve(args: &[&str]) -> (KillOnDrop, SocketAddr, Lines) {
    let mut all = vec!["serve", "--bind", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut child = KillOnDrop::new(super::spawn(&all));
    let mut lines = Lines::new(child.child().stderr.take().expect("stderr"));
    let line = lines.wait_for(LIMIT, |l| l.contains("listening on http://"));
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, addr, lines)
}

/// Like [`request`], but `None` when the server is not there to answer
/// (connection refused, or closed before a response): for clients that
/// keep going while a server stops.
pub fn try_request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Option<Reply> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(IO_LIMIT)).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let got = read_to_close(&mut s);
    (!got.is_empty()).then(|| parse_all(&got).remove(0))
}
