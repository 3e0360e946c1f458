//! A build without the `redis` feature runs the local kitchen and refuses Redis clearly.
#![cfg(not(feature = "redis"))]

mod support;

#[test]
fn redis_is_refused_naming_the_feature() {
    for args in [
        &["run", "--backend", "redis", "--dishes", "3"][..],
        &["chef", "--backend", "redis"],
        &["diner", "--backend", "redis"],
        &["info", "--backend", "redis"],
    ] {
        let err = support::error_line(args);
        assert!(err.contains("--features redis"), "{err}");
    }
    let out = support::run(&["run", "--dishes", "10", "--max-sleep-ms", "0", "--json"]);
    assert!(out.status.success());
}
