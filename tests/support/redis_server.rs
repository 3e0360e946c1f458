//! A real, disposable `redis-server` for tests and benches: a free loopback port, no
//! persistence, its log in a temp dir (printed if the test panicked), killed on Drop.
//!
//! Benches include this file directly (`#[path = "../tests/support/redis_server.rs"]`), so it
//! depends on nothing else in `tests/support`.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::FromRedisValue;

/// How long a restart test keeps Redis down ([`RedisServer::stop`] to
/// [`RedisServer::restart`]) once every process has noticed: the fault
/// itself (long enough for a few reconnect attempts with backoff), not a
/// wait for something to happen.
pub const OUTAGE: Duration = Duration::from_secs(1);

/// One redis-server process, owned by one test.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    password: Option<String>,
    extra: Vec<String>,
    /// TLS settings (`--tls-cert-file …`), when it also listens with TLS.
    tls: Option<Vec<String>>,
    /// Its TLS port; 0 without TLS.
    tls_port: u16,
    dir: tempfile::TempDir,
}

/// The files a TLS server reads: its certificate and key, and the CA that
/// its clients' certificates must come from.
pub struct TlsServerFiles<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub ca: &'a Path,
    /// `--tls-auth-clients yes`: mutual TLS, a client without a certificate
    /// from `ca` is refused.
    pub auth_clients: bool,
}

impl RedisServer {
    /// Starts a server with the default settings.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts a server that requires `password` from the default user.
    pub fn with_password(password: &str) -> RedisServer {
        RedisServer::start_with(&["--requirepass", password])
    }

    /// Starts a server that loses nothing it acknowledged, even to SIGKILL:
    /// every write is in the append-only file before Redis replies
    /// (`appendonly yes`, `appendfsync always`), and a restart on the same
    /// dir reads it back. Extra arguments as for [`RedisServer::start_with`].
    pub fn durable(extra: &[&str]) -> RedisServer {
        let mut args = vec!["--appendonly", "yes", "--appendfsync", "always"];
        args.extend_from_slice(extra);
        RedisServer::start_with(&args)
    }

    /// Starts a server with extra `redis-server` arguments (`["--maxclients", "5"]`).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        RedisServer::start_inner(extra, None)
    }

    /// Starts a server that listens with TLS on [`RedisServer::tls_port`]
    /// (see [`RedisServer::tls_url`]) as well as plainly on
    /// [`RedisServer::port`], where the test's own checks go. Extra
    /// arguments as for [`RedisServer::start_with`].
    pub fn with_tls(files: &TlsServerFiles<'_>, extra: &[&str]) -> RedisServer {
        let path = |p: &Path| p.to_str().expect("a UTF-8 path").to_owned();
        let tls = vec![
            "--tls-cert-file".to_owned(),
            path(files.cert),
            "--tls-key-file".to_owned(),
            path(files.key),
            "--tls-ca-cert-file".to_owned(),
            path(files.ca),
            "--tls-auth-clients".to_owned(),
            if files.auth_clients { "yes" } else { "no" }.to_owned(),
        ];
        RedisServer::start_inner(extra, Some(tls))
    }

    fn start_inner(extra: &[&str], tls: Option<Vec<String>>) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("kitchen-redis-")
            .tempdir()
            .expect("temp dir for redis-server");
        let password = extra
            .iter()
            .position(|a| *a == "--requirepass")
            .and_then(|i| extra.get(i + 1))
            .map(|p| (*p).to_owned());
        let mut server = RedisServer {
            child: None,
            port: 0,
            password,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            tls,
            tls_port: 0,
            dir,
        };
        // Another test may grab the free port between our probe and the server's bind:
        // try a few ports before giving up.
        for _ in 0..5 {
            server.port = free_port();
            if server.tls.is_some() {
                server.tls_port = free_port();
            }
            if server.spawn() {
                return server;
            }
        }
        panic!("redis-server did not start; log:\n{}", server.log());
    }

    /// Starts the server again on the same port (after [`RedisServer::stop`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart a stopped server only");
        let deadline = Instant::now() + Duration::from_secs(10);
        // The old socket may linger briefly; retry the same port until it binds.
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart on port {}; log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the server (SIGKILL), as a crash or a pulled cable would.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn spawn(&mut self) -> bool {
        let log = self.log_path();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra);
        if let Some(tls) = &self.tls {
            cmd.args(["--tls-port", &self.tls_port.to_string()])
                .args(tls);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!(
                "cannot run redis-server ({e}); install it (apt-get install redis-server) or run scripts/test"
            ),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return false; // exited: most likely the port was taken
            }
            if self.try_ping() {
                self.child = Some(child);
                return true;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn try_ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut con) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
            return false;
        };
        // A server that accepts but never answers must not hold the start up.
        if con
            .set_read_timeout(Some(Duration::from_millis(500)))
            .is_err()
        {
            return false;
        }
        redis::cmd("PING").query::<String>(&mut con).is_ok()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The port it listens on (loopback only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS port (0 for a server started without TLS).
    pub fn tls_port(&self) -> u16 {
        self.tls_port
    }

    /// The `rediss://` URL of its TLS port: database 5, by IP address.
    pub fn tls_url(&self) -> String {
        self.tls_url_as("127.0.0.1")
    }

    /// [`RedisServer::tls_url`] with another host name for loopback
    /// (`localhost`), for the host name checks.
    pub fn tls_url_as(&self, host: &str) -> String {
        assert!(self.tls_port != 0, "started without TLS");
        match &self.password {
            Some(p) => format!("rediss://:{p}@{host}:{}/5", self.tls_port),
            None => format!("rediss://{host}:{}/5", self.tls_port),
        }
    }

    /// The URL kitchen should use: database 5, as the tutorial's, with the password if any.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/5", self.port),
            None => format!("redis://127.0.0.1:{}/5", self.port),
        }
    }

    /// A fresh connection to database 5.
    pub fn connection(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).expect("redis url");
        let con = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect to the test redis-server");
        con.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        con
    }

    /// Runs one command (`["LPUSH", "q", "7"]`) on database 5 and converts the reply.
    pub fn query<T: FromRedisValue>(&self, args: &[&str]) -> T {
        let (name, rest) = args.split_first().expect("a command");
        let mut c = redis::cmd(name);
        for a in rest {
            c.arg(*a);
        }
        c.query(&mut self.connection())
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// `LLEN key`.
    pub fn llen(&self, key: &str) -> u64 {
        self.query(&["LLEN", key])
    }

    /// `KEYS pattern`, sorted.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = self.query(&["KEYS", pattern]);
        keys.sort();
        keys
    }

    /// `LRANGE key 0 -1`.
    pub fn lrange(&self, key: &str) -> Vec<String> {
        self.query(&["LRANGE", key, "0", "-1"])
    }

    /// How often each command has been called, from `INFO commandstats`
    /// (`"lpush" -> 12`), for tests that bound how chatty a client is.
    pub fn command_calls(&self) -> HashMap<String, u64> {
        let info: String = self.query(&["INFO", "commandstats"]);
        info.lines()
            .filter_map(|l| {
                let (name, stats) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = stats
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("calls="))?
                    .parse()
                    .ok()?;
                Some((name.to_owned(), calls))
            })
            .collect()
    }

    /// The sum of all command calls so far.
    pub fn total_calls(&self) -> u64 {
        self.command_calls().values().sum()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "--- redis-server log (port {}) ---\n{}--- end of log ---",
                self.port,
                self.log()
            );
        }
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}
