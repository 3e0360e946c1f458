//! Credentials: a URL without the password Redis wants says so in one line;
//! a password, in any form a Redis URL carries one, never shows on stdout,
//! stderr, in an HTTP body or in `/metrics`; and no HTTP body names where
//! Redis is (host, port, user, database, socket).
#![cfg(feature = "redis")]

mod support;

use std::net::SocketAddr;

use support::redis_server::{RedisServer, free_port};
use support::roles::role_args;
use support::web::{request, spawn_serve};
use support::{KillOnDrop, LIMIT, Lines, one_error_line, signal, spawn_lines, stderr};

/// The password every URL below carries.
const SECRET: &str = "S3cr3t";

/// The command lines that fail at once against a server that refuses:
/// every role that talks to Redis.
fn refused_roles(url: &str) -> Vec<Vec<String>> {
    vec![
        role_args("chef", url, &[], &["--dishes", "3"]),
        role_args("diner", url, &[], &[]),
        role_args("run", url, &[], &["--dishes", "3"]),
        role_args("info", url, &[], &[]),
        role_args("info", url, &[], &["--json"]),
        role_args("serve", url, &[], &["--bind", "127.0.0.1:0"]),
    ]
}

/// Runs `cmd`, which must fail as [`one_error_line`] says, showing the
/// password nowhere; returns that line.
fn refused_line(cmd: &[String]) -> String {
    let out = support::run(cmd);
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!all.contains(SECRET), "{cmd:?} shows the password: {all}");
    one_error_line(&out, &cmd)
}

#[test]
fn a_missing_password_is_asked_for_in_one_line() {
    let server = RedisServer::with_password("right-horse");
    // With a database, Redis refuses the handshake's SELECT; without, the
    // first command.
    for url in [
        format!("redis://127.0.0.1:{}/5", server.port()),
        format!("redis://127.0.0.1:{}", server.port()),
    ] {
        for cmd in refused_roles(&url) {
            let line = refused_line(&cmd);
            assert!(
                line.contains("needs a password: put it in the URL"),
                "{cmd:?}: {line}"
            );
            for crash in ["ResponseError", "Authentication required", "NOAUTH"] {
                assert!(!line.contains(crash), "{cmd:?}: {line}");
            }
        }
    }
}

#[test]
fn a_wrong_password_in_any_form_never_shows() {
    let server = RedisServer::with_password("not-the-one");
    let port = server.port();
    for url in [
        format!("redis://alice:{SECRET}@127.0.0.1:{port}/5"),
        format!("redis://:{SECRET}%2Fx@127.0.0.1:{port}/5"),
    ] {
        for cmd in refused_roles(&url) {
            let line = refused_line(&cmd);
            assert!(line.contains("refused the credentials"), "{cmd:?}: {line}");
        }
    }
}

/// What no HTTP body may name: where Redis is, and the password.
struct Hidden<'a> {
    words: Vec<&'a str>,
}

impl Hidden<'_> {
    fn check(&self, what: &str, text: &str) {
        assert!(!text.contains(SECRET), "{what} shows the password: {text}");
        for w in &self.words {
            assert!(!text.contains(w), "{what} names {w:?}: {text}");
        }
    }
}

/// `METHOD PATH` on the web entry; every body checked against `hidden`.
fn ask(addr: SocketAddr, hidden: &Hidden<'_>, method: &str, path: &str) -> u16 {
    let body = (method == "POST").then_some(&b"{}"[..]);
    let r = request(addr, method, path, body);
    hidden.check(&format!("{method} {path} ({})", r.status), &r.text());
    r.status
}

/// Every route a client or a scraper reads.
const ROUTES: [(&str, &str); 7] = [
    ("POST", "/dishes"),
    ("GET", "/prodcons"),
    ("GET", "/pubsub"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/stats"),
    ("GET", "/"),
];

/// `kitchen serve` on `url`; its stderr checked when it is stopped.
fn serve(url: &str) -> (KillOnDrop, SocketAddr, Lines) {
    spawn_serve(&["--backend", "redis", "--redis-url", url, "--workers", "2"])
}

/// Stops `serve` (exit 0) and checks all it said on stderr.
fn stop_serve(serve: KillOnDrop, mut err: Lines) {
    signal(serve.id(), "INT");
    let out = serve.wait(LIMIT);
    let said = err.rest(LIMIT).join("\n");
    assert!(out.status.success(), "{said}");
    assert!(
        !said.contains(SECRET),
        "serve's stderr shows the password: {said}"
    );
}

#[test]
fn serve_on_an_absent_redis_answers_503_naming_nothing() {
    let port = free_port();
    let url = format!("redis://alice:{SECRET}@127.0.0.1:{port}/5");
    let (serve, addr, err) = serve(&url);
    // The port with its colon: a bare number could be any figure's digits.
    let port = format!(":{port}");
    let hidden = Hidden {
        words: vec!["127.0.0.1", "alice", "redis://", port.as_str()],
    };
    for (method, path) in ROUTES {
        ask(addr, &hidden, method, path);
    }
    assert_eq!(ask(addr, &hidden, "POST", "/dishes"), 503);
    assert_eq!(ask(addr, &hidden, "GET", "/healthz"), 503);
    stop_serve(serve, err);
}

/// Runs every role against a working `url`, then stops Redis under a
/// running `kitchen serve`: nothing shows the password, and no HTTP body
/// names any of `hidden`.
fn every_role_keeps_the_secret(server: &mut RedisServer, url: &str, hidden: &Hidden<'_>) {
    let out = support::run(&role_args(
        "chef",
        url,
        &[],
        &["--dishes", "3", "--max-sleep-ms", "0", "--json"],
    ));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(out.status.success(), "{all}");
    assert!(!all.contains(SECRET), "chef: {all}");

    let (mut diner, mut lines) = spawn_lines(&role_args(
        "diner",
        url,
        &[],
        &["--max-sleep-ms", "0", "--json"],
    ));
    let mut diner_err = Lines::new(diner.child().stderr.take().expect("stderr"));
    lines.wait_for_n(3, " ate dish ");
    let stdout = diner.stop("INT", lines).join("\n");
    let said = diner_err.rest(LIMIT).join("\n");
    assert!(
        !stdout.contains(SECRET) && !said.contains(SECRET),
        "diner: {stdout}\n{said}"
    );

    for json in [false, true] {
        let rest: &[&str] = if json { &["--json"] } else { &[] };
        let out = support::run(&role_args("info", url, &[], rest));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            text.contains("***"),
            "the password is masked, not dropped: {text}"
        );
        assert!(
            !text.contains(SECRET) && !stderr(&out).contains(SECRET),
            "info: {text}"
        );
    }

    let (serve, addr, err) = serve(url);
    for (method, path) in ROUTES {
        ask(addr, hidden, method, path);
    }
    assert_eq!(ask(addr, hidden, "POST", "/dishes"), 202);
    server.stop();
    for (method, path) in ROUTES {
        ask(addr, hidden, method, path);
    }
    assert_eq!(ask(addr, hidden, "POST", "/dishes"), 503);
    assert_eq!(ask(addr, hidden, "GET", "/healthz"), 503);
    stop_serve(serve, err);
}

#[test]
fn a_password_in_a_unix_socket_url_never_shows() {
    let dir = tempfile::Builder::new()
        .prefix("kitchen-sock-")
        .tempdir()
        .expect("temp dir for the socket");
    let sock = dir.path().join("r.sock");
    let sock = sock.to_str().expect("a UTF-8 path");
    let mut server = RedisServer::start_with(&[
        "--unixsocket",
        sock,
        "--unixsocketperm",
        "700",
        "--requirepass",
        SECRET,
    ]);
    let url = format!("redis+unix://{sock}?db=5&pass={SECRET}");
    let hidden = Hidden {
        words: vec![sock, "redis+unix", "db=5", "pass="],
    };
    every_role_keeps_the_secret(&mut server, &url, &hidden);
}

#[test]
fn a_percent_encoded_password_never_shows() {
    // Set after the start: the harness's own URL would carry the `/` unescaped.
    let mut server = RedisServer::start();
    let _: () = server.query(&["CONFIG", "SET", "requirepass", &format!("{SECRET}/x")]);
    let port = server.port();
    let url = format!("redis://:{SECRET}%2Fx@127.0.0.1:{port}/5");
    let port = format!(":{port}");
    let hidden = Hidden {
        words: vec!["127.0.0.1", "redis://", port.as_str(), "%2F"],
    };
    every_role_keeps_the_secret(&mut server, &url, &hidden);
}
