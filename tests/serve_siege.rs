//! The tutorial's load test, as it ran it: `siege -c10 -r 5` against /prodcons, diners eating.

mod support;

use support::web::{TestServer, config, siege};

#[test]
fn siege_gets_full_availability_on_prodcons() {
    let s = TestServer::start(config());
    let report = siege(&s.url("/prodcons"));
    assert_eq!(report["availability"].as_f64(), Some(100.0), "{report}");
    assert_eq!(report["failed_transactions"].as_u64(), Some(0), "{report}");
    // 50 requests to /prodcons, each followed to / (siege follows redirects).
    assert!(
        report["successful_transactions"].as_u64() >= Some(50),
        "{report}"
    );
    assert_eq!(s.get("/stats").json()["made"], 50);
}
