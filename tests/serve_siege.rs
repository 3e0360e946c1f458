//! The tutorial's load test, as it ran it: `siege -c10 -r 5` against /prodcons, diners eating.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::wait_output;
use support::web::{TestServer, config};

#[test]
fn siege_gets_full_availability_on_prodcons() {
    let s = TestServer::start(config());
    let child = Command::new("siege")
        .args(["-c10", "-r5", "--no-parser", &s.url("/prodcons")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run siege (Debian package `siege`; scripts/test installs it)");
    let out = wait_output(child, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "siege failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // siege 4 prints its summary as JSON on stdout.
    let report: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("siege report {stdout:?}: {e}"));
    assert_eq!(report["availability"].as_f64(), Some(100.0), "{report}");
    assert_eq!(report["failed_transactions"].as_u64(), Some(0), "{report}");
    // 50 requests to /prodcons, each followed to / (siege follows redirects).
    assert!(
        report["successful_transactions"].as_u64() >= Some(50),
        "{report}"
    );
    assert_eq!(s.get("/stats").json()["made"], 50);
}
