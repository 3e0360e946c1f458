//! TLS: every role over `rediss://` with a private CA and with mutual TLS,
//! nothing lost; each way a TLS connection can fail gives one line naming
//! the problem and what to do (exit 1); bad `--tls-*` flags are usage
//! errors (exit 2) or name the file; a TLS server restart mid-run loses
//! nothing.
#![cfg(feature = "redis")]

mod support;

use std::path::Path;
use std::time::Instant;

use support::ledger::Ledger;
use support::redis_kitchen::{QUEUE, holdings, outage};
use support::redis_server::RedisServer;
use support::roles::{every_role_works, role_args};
use support::tls_certs::{Certs, Pair};
use support::{LIMIT, Lines, error_line, last_json, num, run, spawn_lines, stderr, wait_until};

/// `--tls-ca CA`.
fn ca(path: &Path) -> Vec<String> {
    vec!["--tls-ca".into(), path.display().to_string()]
}

/// `--tls-ca CA --tls-cert CERT --tls-key KEY`.
fn mutual(ca_path: &Path, client: &Pair) -> Vec<String> {
    let mut v = ca(ca_path);
    v.extend([
        "--tls-cert".into(),
        client.cert.display().to_string(),
        "--tls-key".into(),
        client.key.display().to_string(),
    ]);
    v
}

/// A chef's one-line failure against `url` with `extra`.
fn chef_error(url: &str, extra: &[String]) -> String {
    error_line(&role_args("chef", url, extra, &["--dishes", "3"]))
}

#[test]
fn every_role_works_over_tls_with_a_private_ca() {
    let certs = Certs::new();
    let server = RedisServer::with_tls(&certs.server_files(&certs.server, false), &[]);
    every_role_works(&server.tls_url(), &ca(&certs.ca));
    // By name too: the certificate lists localhost.
    every_role_works(&server.tls_url_as("localhost"), &ca(&certs.ca));
    assert_eq!(holdings(&server, QUEUE).total(), 0);
}

#[test]
fn every_role_works_over_mutual_tls() {
    let certs = Certs::new();
    let server = RedisServer::with_tls(&certs.server_files(&certs.server, true), &[]);
    every_role_works(&server.tls_url(), &mutual(&certs.ca, &certs.client));
}

#[test]
fn each_tls_failure_names_the_problem_and_what_to_do() {
    let certs = Certs::new();
    let server = RedisServer::with_tls(&certs.server_files(&certs.server, false), &[]);
    let url = server.tls_url();
    // No CA, or the wrong one: the issuer is unknown. Every role says so.
    for extra in [vec![], ca(&certs.other_ca)] {
        for role in [
            vec!["chef", "--dishes", "3"],
            vec!["diner"],
            vec!["run", "--dishes", "3"],
            vec!["info"],
            vec!["enqueue", "7"],
            vec!["serve", "--bind", "127.0.0.1:0"],
        ] {
            let line = error_line(&role_args(role[0], &url, &extra, &role[1..]));
            assert!(
                line.contains("signed by a CA kitchen does not trust")
                    && line.contains("--tls-ca FILE"),
                "{role:?}: {line}"
            );
        }
    }
    // A plain port behind rediss://, and the TLS port behind redis://.
    let plain = format!("rediss://127.0.0.1:{}/5", server.port());
    let line = chef_error(&plain, &ca(&certs.ca));
    assert!(
        line.contains("does not speak TLS") && line.contains("use redis://"),
        "{line}"
    );
    let tls_port = format!("redis://127.0.0.1:{}/5", server.tls_port());
    let line = chef_error(&tls_port, &[]);
    assert!(
        line.contains("speaks only TLS") && line.contains("use rediss://"),
        "{line}"
    );
    // An expired certificate; one for another host.
    let expired = RedisServer::with_tls(&certs.server_files(&certs.expired, false), &[]);
    let line = chef_error(&expired.tls_url(), &ca(&certs.ca));
    assert!(
        line.contains("certificate has expired") && line.contains("renew"),
        "{line}"
    );
    let elsewhere = RedisServer::with_tls(&certs.server_files(&certs.wrong_name, false), &[]);
    let line = chef_error(&elsewhere.tls_url(), &ca(&certs.ca));
    assert!(
        line.contains("not valid for 127.0.0.1 (host name mismatch)"),
        "{line}"
    );
    // A server that requires a client certificate: none, or a foreign one.
    let mtls = RedisServer::with_tls(&certs.server_files(&certs.server, true), &[]);
    let line = chef_error(&mtls.tls_url(), &ca(&certs.ca));
    assert!(
        line.contains("requires a client certificate")
            && line.contains("--tls-cert FILE --tls-key FILE"),
        "{line}"
    );
    let line = chef_error(&mtls.tls_url(), &mutual(&certs.ca, &certs.foreign_client));
    assert!(
        line.contains("refused kitchen's client certificate"),
        "{line}"
    );
    // None of them reconnected in a loop or crashed: each line is the only one.
}

#[test]
fn the_password_of_a_tls_url_never_shows() {
    let certs = Certs::new();
    let server = RedisServer::with_tls(&certs.server_files(&certs.server, false), &[]);
    let url = format!("rediss://kitchen:S3cr3t@127.0.0.1:{}/5", server.tls_port());
    let line = chef_error(&url, &[]);
    assert!(line.contains("rediss://kitchen:***@"), "{line}");
    assert!(!line.contains("S3cr3t"), "{line}");
}

#[test]
fn bad_tls_files_are_named() {
    let certs = Certs::new();
    let server = RedisServer::with_tls(&certs.server_files(&certs.server, false), &[]);
    let url = server.tls_url();
    let missing = certs.missing();
    let line = chef_error(&url, &ca(&missing));
    assert!(
        line.contains(&format!("--tls-ca {}", missing.display())),
        "{line}"
    );
    let line = chef_error(&url, &ca(&certs.garbage));
    assert!(
        line.contains("--tls-ca") && line.contains("garbage.pem") && line.contains("PEM"),
        "{line}"
    );
    let garbage_key = Pair {
        cert: certs.client.cert.clone(),
        key: certs.garbage.clone(),
    };
    let line = chef_error(&url, &mutual(&certs.ca, &garbage_key));
    assert!(
        line.contains("--tls-key") && line.contains("no private key"),
        "{line}"
    );
    let mismatched = Pair {
        cert: certs.client.cert.clone(),
        key: certs.foreign_client.key.clone(),
    };
    let line = chef_error(&url, &mutual(&certs.ca, &mismatched));
    assert!(line.contains("does not go with --tls-cert"), "{line}");
}

#[test]
fn tls_flags_out_of_place_are_usage_errors() {
    let certs = Certs::new();
    let ca_path = certs.ca.display().to_string();
    let cert = certs.client.cert.display().to_string();
    for (args, want) in [
        // Half of a client identity.
        (
            vec![
                "chef",
                "--backend",
                "redis",
                "--redis-url",
                "rediss://h/0",
                "--tls-cert",
                cert.as_str(),
            ],
            "--tls-key",
        ),
        (
            vec![
                "info",
                "--redis-url",
                "rediss://h/0",
                "--tls-key",
                cert.as_str(),
            ],
            "--tls-cert",
        ),
        // TLS files with a plain URL, or with the local queue.
        (
            vec![
                "diner",
                "--redis-url",
                "redis://h/0",
                "--tls-ca",
                ca_path.as_str(),
            ],
            "applies to a rediss:// URL",
        ),
        (
            vec!["run", "--tls-ca", ca_path.as_str()],
            "--tls-ca applies to --backend redis",
        ),
        // Certificate checks off.
        (
            vec!["chef", "--redis-url", "rediss://h/0#insecure"],
            "--tls-ca",
        ),
    ] {
        let out = run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn a_tls_server_restart_mid_run_loses_nothing() {
    const DISHES: u64 = 1_000;
    let certs = Certs::new();
    let mut server = RedisServer::with_tls(
        &certs.server_files(&certs.server, false),
        &["--appendonly", "yes", "--appendfsync", "always"],
    );
    let url = server.tls_url();
    let extra = ca(&certs.ca);
    let dishes = DISHES.to_string();
    let started = Instant::now();
    let (mut chef, chef_out) = spawn_lines(&role_args(
        "chef",
        &url,
        &extra,
        &[
            "--chefs",
            "2",
            "--dishes",
            &dishes,
            "--capacity",
            "50",
            "--max-sleep-ms",
            "4",
            "--ids",
            "--json",
        ],
    ));
    let (mut diner, mut diner_out) = spawn_lines(&role_args(
        "diner",
        &url,
        &extra,
        &["--diners", "2", "--max-sleep-ms", "2", "--ids", "--json"],
    ));
    let mut errs: Vec<Lines> = [&mut chef, &mut diner]
        .into_iter()
        .map(|c| Lines::new(c.child().stderr.take().expect("stderr")))
        .collect();
    diner_out.wait_for_n(100, " ate dish ");
    let (down_for, recovered) = outage(&mut server, &mut errs);
    let (outage, recovered) = (down_for.as_secs_f64(), recovered.as_secs_f64());
    let chef_lines = chef.finish(chef_out);
    assert_eq!(num(&last_json(&chef_lines), "made"), DISHES);
    wait_until(LIMIT, "the diners to empty the queue", || {
        let h = holdings(&server, QUEUE);
        h.queue == 0 && h.processing == 0
    });
    let diner_lines = diner.stop("TERM", diner_out);
    let mut ledger = Ledger::new();
    ledger.read(&chef_lines);
    ledger.read(&diner_lines);
    ledger.assert_all_eaten(DISHES, "the chef and the diner");
    eprintln!(
        "faults: tls restart: 1 SIGKILL+restart of a TLS redis-server (appendfsync always); {ledger}; lost 0; \
         down {outage:.2} s; both processes reconnected over TLS within {recovered:.2} s; wall {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
