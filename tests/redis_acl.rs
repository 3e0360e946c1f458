//! ACL: every role runs as the README's `ACL SETUSER` user, limited to
//! kitchen's keys and channel, in every mode; a user missing one permission
//! gets one line naming it and the rule that grants it. Over TLS too.
#![cfg(feature = "redis")]

mod support;

use support::redis_server::RedisServer;
use support::roles::{every_role_works, readme_acl, role_args};
use support::tls_certs::Certs;
use support::{error_line, stderr};

const USER: &str = "kitchen";
const PASSWORD: &str = "pw-Acl-9";

/// The README's rule, as `ACL SETUSER` arguments (after `ACL`), with
/// `PASSWORD` filled in.
fn readme_rule() -> Vec<String> {
    // After `ACL`: the caller sends it.
    readme_acl("ACL SETUSER kitchen on ", PASSWORD).split_off(1)
}

/// Creates the README's user, with `more` rules after it.
fn create_user(server: &RedisServer, more: &[&str]) -> String {
    let mut args: Vec<String> = vec!["ACL".into()];
    args.extend(readme_rule());
    args.extend(more.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ok: String = server.query(&args);
    assert_eq!(ok, "OK");
    format!("redis://{USER}:{PASSWORD}@127.0.0.1:{}/5", server.port())
}

#[test]
fn every_role_works_as_the_readme_s_acl_user() {
    let server = RedisServer::start();
    let url = create_user(&server, &[]);
    every_role_works(&url, &[]);
    // Database 0 too.
    every_role_works(
        &format!("redis://{USER}:{PASSWORD}@127.0.0.1:{}/0", server.port()),
        &[],
    );
    // Everything it did, it did as that user: no command was refused.
    let log: Vec<redis::Value> = server.query(&["ACL", "LOG"]);
    assert!(log.is_empty(), "denied: {log:?}");
}

#[test]
fn the_acl_user_works_over_tls_too() {
    let certs = Certs::new();
    let server = RedisServer::with_tls(&certs.server_files(&certs.server, false), &[]);
    create_user(&server, &[]);
    let url = format!(
        "rediss://{USER}:{PASSWORD}@localhost:{}/5",
        server.tls_port()
    );
    every_role_works(&url, &["--tls-ca".into(), certs.ca.display().to_string()]);
    let log: Vec<redis::Value> = server.query(&["ACL", "LOG"]);
    assert!(log.is_empty(), "denied: {log:?}");
}

/// Runs `kitchen ARGS`, which must fail with exit 1 and one error line
/// (after the summary of what it did before, for a denial mid-run); that line.
fn denial(args: &[String]) -> String {
    let out = support::run(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("kitchen: ")).collect();
    assert_eq!(errors.len(), 1, "{args:?}: one error line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        errors[0].contains("(NOPERM)") && !errors[0].contains(PASSWORD),
        "{err}"
    );
    eprintln!("{}", errors[0]);
    errors[0].to_owned()
}

#[test]
fn a_denied_command_key_or_channel_is_named_with_its_grant() {
    let server = RedisServer::start();
    // Commands run by scripts, which Redis does not name: a chef's, and a
    // diner's registration.
    for (role, missing) in [
        (vec!["chef", "--mode", "stream", "--dishes", "3"], "xadd"),
        (vec!["run", "--mode", "stream", "--dishes", "3"], "xadd"),
        (vec!["chef", "--dishes", "3"], "lpush"),
        (vec!["run", "--dishes", "3"], "lpush"),
        (vec!["diner", "--burst"], "sadd"),
    ] {
        let url = create_user(&server, &[&format!("-{missing}")]);
        {
            let line = denial(&role_args(role[0], &url, &[], &role[1..]));
            assert!(
                line.contains(&format!("denied user {USER} the command '{missing}'"))
                    && line.contains(&format!("grant it with `ACL SETUSER {USER} +{missing}`")),
                "{role:?}: {line}"
            );
        }
    }
    // A command sent alone, which Redis names.
    let url = create_user(&server, &["-llen"]);
    let line = denial(&role_args("info", &url, &[], &[]));
    assert!(
        line.contains("the command 'llen'") && line.contains("+llen`"),
        "{line}"
    );
    // A key outside the rule's patterns, and a channel.
    let url = create_user(&server, &[]);
    let line = error_line(&role_args(
        "chef",
        &url,
        &[],
        &["--queue", "other:queue", "--dishes", "3"],
    ));
    assert!(
        line.contains("denied user kitchen a key") && line.contains("'~other:queue*'"),
        "{line}"
    );
    let line = denial(&role_args(
        "chef",
        &url,
        &[],
        &["--mode", "pubsub", "--channel", "other", "--dishes", "3"],
    ));
    assert!(
        line.contains("a channel") && line.contains("'&CHANNEL'"),
        "{line}"
    );
}
