//! The page's live parts over real HTTP: the sparklines as inline SVG, the
//! recent failures with their reasons (escaped), the `/live` fragment the
//! page's script swaps in, the reload without script, and the new `/metrics` series.

mod support;

use std::time::Duration;

use kitchen::exec::Exec;
use kitchen::kitchen::work::Work;
use kitchen::queue::Retry;
use kitchen::serve::ServeConfig;
use support::web::{TestServer, config};
use support::{LIMIT, wait_until};

/// A local server whose diners run `sh -c`: a payload with `fail` in it
/// fails with an angle-bracketed reason, twice (then it is dead); any other
/// is eaten.
fn failing_server() -> TestServer {
    TestServer::start(ServeConfig {
        max_sleep: Duration::ZERO,
        retry: Retry {
            max_attempts: 2,
            delay: Duration::from_millis(50),
        },
        work: Work::Exec(Exec {
            command: r#"p=$(cat); case "$p" in *fail*) echo "no <way> & $p" >&2; exit 3;; esac"#
                .to_owned(),
            timeout: None,
        }),
        ..config()
    })
}

#[test]
fn the_page_draws_sparklines_and_the_failures_with_their_reasons() {
    let s = failing_server();
    assert_eq!(s.post("/dishes", r#"{"dish":3}"#).status, 202);
    assert_eq!(
        s.post("/dishes", r#"{"task":"please fail <b>now</b>"}"#)
            .status,
        202
    );
    wait_until(LIMIT, "one dish eaten and one failed", || {
        let st = s.get("/stats").json();
        st["eaten"] == 1 && st["failed"] == 1
    });
    // The sampler draws a line once it has a sample with the eaten total.
    wait_until(LIMIT, "both sparklines to have a line", || {
        s.get("/").text().matches("<polyline").count() >= 2
    });
    let page = s.get("/").text();
    for want in [
        r#"<svg id="depth-spark" class="spark""#,
        r#"<svg id="rate-spark" class="spark""#,
        r#"<ol class="failures" id="failures">"#,
        "exit status 3",
        "attempt 1 failed; tried again in ",
        "dead after 2 attempts",
        "no &lt;way&gt; &amp; ",
        "please fail &lt;b&gt;now&lt;/b&gt;",
        r#"<noscript><meta http-equiv="refresh""#,
        r#"fetch("/live""#,
    ] {
        assert!(
            page.contains(want),
            "{want:?} missing from the page:\n{page}"
        );
    }
    assert!(!page.contains("<way>"), "a reason is escaped");
    assert!(!page.contains("<b>now"), "a payload is escaped");

    let live = s.get("/live");
    assert_eq!(live.status, 200);
    assert!(
        live.header("content-type")
            .unwrap_or("")
            .starts_with("text/html")
    );
    let fragment = live.text();
    assert!(fragment.contains(r#"<svg id="depth-spark""#), "{fragment}");
    assert!(fragment.contains("no &lt;way&gt;"), "{fragment}");
    assert!(!fragment.contains("<html"), "a fragment, not a page");
}

#[test]
fn metrics_have_failed_retried_and_waiting_series() {
    let s = failing_server();
    assert_eq!(s.post("/dishes", r#""fail""#).status, 202);
    wait_until(LIMIT, "the dish to fail", || {
        s.get("/stats").json()["failed"] == 1
    });
    let text = s.get("/metrics").text();
    for want in [
        "# TYPE kitchen_failed_total counter\nkitchen_failed_total 1\n",
        "# TYPE kitchen_retried_total counter\nkitchen_retried_total 1\n",
        "# TYPE kitchen_waiting_retries gauge\nkitchen_waiting_retries 0\n",
    ] {
        assert!(text.contains(want), "{want:?} missing from\n{text}");
    }
}

#[test]
fn with_no_failures_the_page_says_none_yet() {
    let s = failing_server();
    let page = s.get("/").text();
    assert!(
        page.contains(r#"<p class="note" id="failures">None yet.</p>"#),
        "{page}"
    );
}

/// On Redis the diners are other processes: the eaten-per-second line
/// comes from their heartbeats' counts, in `mode`.
#[cfg(feature = "redis")]
fn rate_from_diner_processes(mode: &str) {
    use kitchen::queue::Mode;
    use support::redis_kitchen::spawn;
    use support::redis_server::RedisServer;
    use support::web::redis_config;

    let redis = RedisServer::start();
    let m = if mode == "stream" {
        Mode::Stream
    } else {
        Mode::List
    };
    let s = TestServer::start(redis_config(&redis, m));
    let (_diner, _lines) = spawn(
        &redis,
        "diner",
        &[
            "--mode",
            mode,
            "--diners",
            "1",
            "--max-sleep-ms",
            "0",
            "--exec",
            "true",
        ],
    );
    for _ in 0..3 {
        assert_eq!(s.post("/dishes", r#"{"dish":1}"#).status, 202);
    }
    // The last sample's rate shows for a second: polled far more often.
    wait_until(LIMIT, "a non-zero eaten-per-second sample", || {
        let live = s.get("/live").text();
        live.split(r#"<strong id="rate-now">"#)
            .nth(1)
            .and_then(|rest| rest.split('<').next())
            .and_then(|n| n.parse::<f64>().ok())
            .is_some_and(|r| r > 0.0)
    });
    assert!(
        s.get("/live")
            .text()
            .contains("<code>kitchen diner</code> processes"),
        "failures are the diner processes' to report"
    );
}

#[cfg(feature = "redis")]
#[test]
fn on_a_redis_list_the_rate_comes_from_the_diner_processes_heartbeats() {
    rate_from_diner_processes("list");
}

#[cfg(feature = "redis")]
#[test]
fn on_a_redis_stream_the_rate_comes_from_the_consumers_notes() {
    rate_from_diner_processes("stream");
}

/// The local backend keeps its dead letters in the server: the page lists
/// them, and a requeue puts the dish back before the server's own diners.
#[test]
fn on_the_local_backend_a_failed_dish_is_a_dead_letter_the_page_requeues() {
    let s = failing_server();
    assert_eq!(s.post("/dishes", r#""fail me""#).status, 202);
    wait_until(LIMIT, "the dish to be a dead letter on the page", || {
        s.get("/")
            .text()
            .contains(r#"<span id="dead-total">1</span>"#)
    });
    let metrics = s.get("/metrics").text();
    assert!(metrics.contains("kitchen_dead_letters 1\n"), "{metrics}");
    let r = s.post("/dead/requeue", "all=1");
    assert_eq!((r.status, r.header("location")), (303, Some("/")));
    // It fails again (the command has not changed), and is dead again.
    wait_until(LIMIT, "the requeued dish to fail a second time", || {
        s.get("/stats").json()["failed"] == 2
    });
    wait_until(LIMIT, "it to be the one dead letter again", || {
        s.get("/live/dead")
            .text()
            .contains(r#"<span id="dead-total">1</span>"#)
    });
}
