//! The redis-server test harness itself: starts, answers, counts commands, restarts, stops.
#![cfg(feature = "redis")]

mod support;

use support::redis_server::RedisServer;

#[test]
fn a_server_starts_answers_and_restarts_on_its_port() {
    let mut server = RedisServer::start();
    assert_eq!(server.query::<u64>(&["LPUSH", "q", "7"]), 1);
    assert_eq!(server.lrange("q"), ["7"]);
    assert!(server.command_calls()["lpush"] >= 1);
    let port = server.port();
    server.stop();
    server.restart();
    assert_eq!(server.port(), port);
    // --save '': nothing survives a restart.
    assert_eq!(server.llen("q"), 0);
}

#[test]
fn a_password_server_takes_the_password_from_the_url() {
    let server = RedisServer::with_password("s3cret");
    assert!(server.url().contains("s3cret"));
    assert_eq!(server.query::<String>(&["PING"]), "PONG");
}
