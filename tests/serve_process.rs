//! `kitchen serve` as a process: the address it prints, a clean stop on SIGTERM, its errors.

mod support;

use std::net::TcpListener;

use support::web::{request, spawn_serve};
use support::{LIMIT, error_line, run, signal};

#[test]
fn serves_on_the_printed_address_and_stops_on_sigterm() {
    let (child, addr, _lines) = spawn_serve(&["--diners", "1", "--workers", "2"]);
    assert_eq!(request(addr, "GET", "/healthz", None).status, 200);
    let r = request(addr, "POST", "/dishes", Some(br#"{"dish":2}"#));
    assert_eq!(r.status, 202);
    signal(child.id(), "TERM");
    let out = child.wait(LIMIT);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn an_address_in_use_is_one_clear_line_and_exit_1() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let err = error_line(&["serve", "--bind", &addr]);
    assert!(
        err.starts_with(&format!("kitchen: cannot listen on {addr}: ")),
        "{err}"
    );
    assert!(
        err.trim_end()
            .ends_with("choose another address with --bind"),
        "{err}"
    );
}

#[test]
fn bad_serve_options_are_usage_errors() {
    for args in [
        &["serve", "--workers", "0"][..],
        &["serve", "--full-wait-ms", "5000"],
        &["serve", "--client-timeout", "0"],
        &["serve", "--backend", "redis", "--mode", "pubsub"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
}
