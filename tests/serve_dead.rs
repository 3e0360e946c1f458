//! The page's dead letters over real HTTP, on a real Redis: listed with
//! their reasons (escaped), requeued and purged by `POST` forms that answer
//! `303` back to `/`; bad forms are `400`, unknown ids `404`, and nothing
//! changes when a request is refused.
#![cfg(feature = "redis")]

mod support;

use kitchen::queue::Capacity;
use support::redis_kitchen::{QUEUE, burst_json, bury_by_hand};
use support::redis_server::RedisServer;
use support::web::serve_on;
use support::{LIMIT, num, wait_until};

/// The dead-letter list beside the tutorial's queue.
fn dead_key() -> String {
    format!("{{{QUEUE}}}:dead")
}

#[test]
fn the_page_lists_dead_letters_escaped_with_their_buttons() {
    let redis = RedisServer::start();
    bury_by_hand(
        &redis,
        "d-1",
        "<script>alert(1)</script>",
        "exit status 1: <oops> & more",
    );
    bury_by_hand(&redis, "d-2", "7", "timed out after 5 s");
    redis.query::<String>(&["SET", &format!("{{{QUEUE}}}:dead:trimmed"), "4"]);
    let s = serve_on(&redis, Capacity::default());
    let page = s.get("/").text();
    for want in [
        r#"<span id="dead-total">2</span>"#,
        "4 trimmed",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "exit status 1: &lt;oops&gt; &amp; more",
        "timed out after 5 s",
        r#"<form class="inline" method="post" action="/dead/requeue"><input type="hidden" name="id" value="d-1">"#,
        r#"<form class="inline" method="post" action="/dead/purge"><input type="hidden" name="id" value="d-2">"#,
        r#"id="requeue-all""#,
        r#"id="purge-all""#,
    ] {
        assert!(
            page.contains(want),
            "{want:?} missing from the page:\n{page}"
        );
    }
    assert!(!page.contains("<script>alert"), "a payload is escaped");
    assert!(!page.contains("<oops>"), "a reason is escaped");
    // Newest first.
    assert!(page.find("d-2").unwrap() < page.find("d-1").unwrap());
    let fragment = s.get("/live/dead");
    assert_eq!(fragment.status, 200);
    assert!(fragment.header("x-content-key").is_some());
    assert!(fragment.text().contains(r#"value="d-1""#));

    let metrics = s.get("/metrics").text();
    assert!(
        metrics.contains("# TYPE kitchen_dead_letters gauge\nkitchen_dead_letters 2\n"),
        "{metrics}"
    );
    assert!(metrics.contains("kitchen_waiting_retries 0\n"), "{metrics}");
}

#[test]
fn requeue_and_purge_answer_303_to_the_page_and_do_it() {
    let redis = RedisServer::start();
    bury_by_hand(&redis, "d-1", "7", "exit status 1");
    bury_by_hand(&redis, "d-2", "8", "exit status 1");
    bury_by_hand(&redis, "d-3", "9", "exit status 1");
    let s = serve_on(&redis, Capacity::default());

    let r = s.post("/dead/requeue", "id=d-1");
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/"));
    assert_eq!(redis.llen(QUEUE), 1, "back on the queue");
    assert_eq!(redis.llen(&dead_key()), 2);
    // A diner eats it: requeued with fresh attempts, a dish like any other.
    let eaten = burst_json(&redis, "true", &[]);
    assert_eq!(num(&eaten, "eaten"), 1, "{eaten}");

    let r = s.post("/dead/purge", "id=d-2");
    assert_eq!((r.status, r.header("location")), (303, Some("/")));
    assert_eq!(redis.llen(&dead_key()), 1);
    let r = s.post("/dead/purge", "all=1");
    assert_eq!(r.status, 303);
    assert_eq!(redis.llen(&dead_key()), 0);
    assert_eq!(redis.llen(QUEUE), 0, "purged, not queued");
    wait_until(LIMIT, "the page to say there are none", || {
        s.get("/")
            .text()
            .contains(r#"<p class="note" id="dead">None.</p>"#)
    });
}

#[test]
fn bad_forms_are_400_unknown_ids_404_and_nothing_changes() {
    let redis = RedisServer::start();
    bury_by_hand(&redis, "d-1", "7", "exit status 1");
    let s = serve_on(&redis, Capacity::default());
    for (path, body, says) in [
        ("/dead/requeue", "", "no dead letter named"),
        ("/dead/purge", "all=yes", "all=yes"),
        ("/dead/requeue", "all=1&id=d-1", "both ids and all=1"),
        ("/dead/purge", "ids=d-1", "unknown field"),
        ("/dead/requeue", "id=", "an empty id"),
        ("/dead/requeue", r#"{"id":"d-1"}"#, "unknown field"),
    ] {
        let r = s.post(path, body);
        assert_eq!(r.status, 400, "{path} {body:?}: {}", r.text());
        let text = r.text();
        assert_eq!(text.lines().count(), 1, "one line: {text}");
        assert!(text.contains(says) && text.contains("send id=ID"), "{text}");
    }
    for path in ["/dead/requeue", "/dead/purge"] {
        let r = s.post(path, "id=d-1&id=nope");
        assert_eq!(r.status, 404, "{}", r.text());
        assert!(r.text().contains("not a dead letter: nope"), "{}", r.text());
        let r = s.get(path);
        assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    }
    assert_eq!(redis.llen(&dead_key()), 1, "nothing changed");
    assert_eq!(redis.llen(QUEUE), 0, "nothing queued");
}

#[test]
fn with_redis_away_the_forms_are_503_and_the_page_names_no_server() {
    let mut redis = RedisServer::start();
    bury_by_hand(&redis, "d-1", "7", "exit status 1");
    let s = serve_on(&redis, Capacity::default());
    redis.stop();
    let r = s.post("/dead/requeue", "id=d-1");
    assert_eq!((r.status, r.header("retry-after")), (503, Some("1")));
    assert_eq!(r.text(), "the queue is unavailable; retry in a second\n");
    let page = s.get("/");
    assert_eq!(page.status, 200);
    let page = page.text();
    assert!(page.contains("The queue is unavailable"), "{page}");
    assert!(!page.contains("127.0.0.1"), "{page}");
}

#[test]
fn another_site_s_form_changes_nothing_and_the_page_is_not_framed() {
    let redis = RedisServer::start();
    bury_by_hand(&redis, "d-1", "7", "exit status 1");
    let s = serve_on(&redis, Capacity::default());
    let post = |extra: &str| {
        let body = "all=1";
        let raw = format!(
            "POST /dead/purge HTTP/1.1\r\nHost: {}\r\n{extra}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            s.addr,
            body.len()
        );
        support::web::exchange(s.addr, raw.as_bytes())
            .pop()
            .expect("a reply")
    };
    for extra in [
        "Origin: http://evil.example\r\n",
        "Origin: null\r\n",
        "Sec-Fetch-Site: cross-site\r\n",
    ] {
        let r = post(extra);
        assert_eq!(r.status, 403, "{extra}: {}", r.text());
        assert!(r.text().contains("another site"), "{}", r.text());
        assert_eq!(redis.llen(&dead_key()), 1, "{extra}: nothing purged");
    }
    // The page's own form: its origin is the host asked.
    let r = post(&format!("Origin: http://{}\r\n", s.addr));
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(redis.llen(&dead_key()), 0);
    assert_eq!(s.get("/").header("x-frame-options"), Some("DENY"));
}
