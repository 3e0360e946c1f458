//! TLS: every role over `rediss://` with a private CA and with mutual TLS,
//! nothing lost; each way a TLS connection can fail gives one line naming
//! the problem and what to do; a TLS server restart mid-run loses nothing.
#![cfg(feature = "redis")]

mod support;

use std::path::Path;

use support::redis_server::RedisServer;
use support::tls_certs::Certs;
use support::{error_line, num, run_json};

/// `ROLE --backend redis --redis-url URL [--tls-ca CA] ARGS…`.
fn args(role: &str, url: &str, ca: Option<&Path>, rest: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        role.into(),
        "--backend".into(),
        "redis".into(),
        "--redis-url".into(),
        url.into(),
    ];
    if let Some(ca) = ca {
        v.push("--tls-ca".into());
        v.push(ca.display().to_string());
    }
    v.extend(rest.iter().map(|s| (*s).to_owned()));
    v
}

#[test]
fn explore() {
    let certs = Certs::new();
    let server = RedisServer::with_tls(&certs.server_files(&certs.server, false), &[]);
    let s = run_json(&args(
        "run",
        &server.tls_url(),
        Some(&certs.ca),
        &["--dishes", "20", "--max-sleep-ms", "0"],
    ));
    assert_eq!(num(&s, "eaten"), 20);
    for (name, url, ca) in [
        ("no ca", server.tls_url(), None),
        ("other ca", server.tls_url(), Some(certs.other_ca.as_path())),
        (
            "plain behind rediss",
            format!("rediss://127.0.0.1:{}/5", server.port()),
            Some(certs.ca.as_path()),
        ),
        (
            "tls behind redis",
            format!("redis://127.0.0.1:{}/5", server.tls_port()),
            None,
        ),
        (
            "garbage ca",
            server.tls_url(),
            Some(certs.garbage.as_path()),
        ),
    ] {
        let line = error_line(&args("chef", &url, ca, &["--dishes", "3"]));
        eprintln!("{name}: {line}");
    }
    let mtls = RedisServer::with_tls(&certs.server_files(&certs.server, true), &[]);
    eprintln!(
        "no client cert: {}",
        error_line(&args(
            "chef",
            &mtls.tls_url(),
            Some(&certs.ca),
            &["--dishes", "3"]
        ))
    );
    let mut a = args("chef", &mtls.tls_url(), Some(&certs.ca), &["--dishes", "3"]);
    a.extend([
        "--tls-cert".into(),
        certs.foreign_client.cert.display().to_string(),
        "--tls-key".into(),
        certs.foreign_client.key.display().to_string(),
    ]);
    eprintln!("foreign client cert: {}", error_line(&a));
    for (name, pair) in [
        ("expired", &certs.expired),
        ("wrong name", &certs.wrong_name),
    ] {
        let s = RedisServer::with_tls(&certs.server_files(pair, false), &[]);
        eprintln!(
            "{name}: {}",
            error_line(&args(
                "chef",
                &s.tls_url(),
                Some(&certs.ca),
                &["--dishes", "3"]
            ))
        );
    }
}
