//! The web entry over real HTTP on loopback: the tutorial's routes, the JSON API, every status.

mod support;

use std::io::Write;
use std::time::Duration;

use kitchen::queue::Capacity;
use kitchen::serve::ServeConfig;
use support::web::{
    TestServer, config, connect, exchange, no_diners, parse_all, read_to_close, request,
};
use support::{LIMIT, wait_until};

#[test]
fn the_page_has_the_tutorials_title_links_and_figures() {
    let s = no_diners(Capacity::Bounded(10));
    let r = s.get("/");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/html")
    );
    let page = r.text();
    for want in [
        "<title>Redis Message Queue</title>",
        r#"href="/prodcons">producer-consumer mode</a>"#,
        r#"href="/pubsub">publish-subscribe mode"#,
        r#"<dd id="queued">0</dd>"#,
        r#"<dd id="made">0</dd>"#,
        r#"<dd id="eaten">0</dd>"#,
        r#"id="subscribers""#,
    ] {
        assert!(page.contains(want), "{want:?} missing from the page");
    }
    let head = request(s.addr, "HEAD", "/", None);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD has no body");
}

#[test]
fn prodcons_queues_a_dish_and_redirects_to_the_page() {
    let s = no_diners(Capacity::Bounded(10));
    let r = s.get("/prodcons");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("/"));
    assert_eq!(s.stat("queued"), 1);
    assert_eq!(s.get("/stats").json()["made"], 1);
    // A query string does not change the route.
    assert_eq!(s.get("/prodcons?from=test").status, 302);
    assert_eq!(s.stat("queued"), 2);
}

#[test]
fn a_full_queue_is_503_with_retry_after_at_once() {
    let s = no_diners(Capacity::Bounded(2));
    assert_eq!(s.get("/prodcons").status, 302);
    assert_eq!(s.post("/dishes", "").status, 202);
    for r in [s.get("/prodcons"), s.post("/dishes", r#"{"dish":1}"#)] {
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(r.json()["error"].as_str().unwrap_or("").contains("full"));
    }
    let stats = s.get("/stats").json();
    assert_eq!(
        (stats["queued"].as_u64(), stats["refused_full"].as_u64()),
        (Some(2), Some(2))
    );
}

#[test]
fn pubsub_on_the_local_backend_says_it_needs_redis() {
    let s = no_diners(Capacity::Bounded(10));
    let r = s.get("/pubsub");
    assert_eq!(r.status, 501);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap_or("")
            .contains("--backend redis")
    );
    assert_eq!(s.stat("queued"), 0, "nothing was queued");
}

#[test]
fn a_posted_dish_can_be_followed_until_eaten() {
    let s = TestServer::start(config());
    let r = s.post("/dishes", r#"{"dish": 7}"#);
    assert_eq!(r.status, 202, "{}", r.text());
    let body = r.json();
    let id = body["id"].as_str().expect("id").to_owned();
    assert_eq!(body["status"], "queued");
    let location = r.header("location").expect("Location").to_owned();
    assert_eq!(location, format!("/dishes/{id}"));
    let mut last = serde_json::Value::Null;
    wait_until(LIMIT, "the dish to be eaten", || {
        last = s.get(&location).json();
        last["status"] == "eaten"
    });
    assert_eq!(last["id"], id.as_str());
    assert_eq!(last["dish"], 7);
    assert!(
        last["diner"]
            .as_str()
            .is_some_and(|d| d.starts_with("diner-")),
        "{last}"
    );
    let (made, eaten) = (last["made_at"].as_u64(), last["eaten_at"].as_u64());
    assert!(made.is_some() && eaten >= made, "{last}");
}

#[test]
fn a_dish_nobody_eats_stays_queued_and_no_body_means_random() {
    let s = no_diners(Capacity::Bounded(10));
    let r = s.post("/dishes", "");
    assert_eq!(r.status, 202);
    let location = r.header("location").expect("Location").to_owned();
    let got = s.get(&location).json();
    assert_eq!(got["status"], "queued");
    assert!(got["dish"].as_u64().is_some_and(|d| d <= 9));
    assert_eq!(
        (got["diner"].is_null(), got["eaten_at"].is_null()),
        (true, true)
    );
    assert_eq!(s.post("/dishes", "{}").status, 202);
}

#[test]
fn bodies_that_are_not_json_are_400_with_a_json_error() {
    let s = no_diners(Capacity::Bounded(10));
    for body in ["{", "not json", "[1", r#"{"dish": }"#, "\u{0}\u{1}"] {
        let r = s.post("/dishes", body);
        assert_eq!(r.status, 400, "{body:?} gave {}", r.text());
        assert!(r.json()["error"].is_string(), "{body:?}");
    }
    assert_eq!(s.stat("queued"), 0);
}

/// Any JSON body is a payload; `{"dish": N}` with N from 0 to 9 is still
/// the tutorial's dish N.
#[test]
fn any_json_body_is_a_payload_and_its_result_can_be_read() {
    let s = no_diners(Capacity::Bounded(10));
    for (body, want) in [
        (r#"{"dish": 4}"#, serde_json::json!(4)),
        (r#"{"dish": 10}"#, serde_json::json!({"dish": 10})),
        (
            r#"{"task":"resize","w":64}"#,
            serde_json::json!({"task":"resize","w":64}),
        ),
        ("[1, 2]", serde_json::json!([1, 2])),
        (r#""hello""#, serde_json::json!("hello")),
    ] {
        let r = s.post("/dishes", body);
        assert_eq!(r.status, 202, "{body}: {}", r.text());
        assert_eq!(r.json()["dish"], want, "{body}");
        let id = r.json()["id"].as_str().expect("an id").to_owned();
        let got = s.get(&format!("/dishes/{id}"));
        assert_eq!(got.json()["dish"], want, "{body}");
        assert_eq!(got.json()["status"], "queued", "{body}");
    }
    assert_eq!(s.stat("queued"), 5);
}

#[test]
fn unknown_routes_and_dishes_are_404() {
    let s = no_diners(Capacity::Bounded(10));
    for path in [
        "/nope",
        "/dishes/",
        "/dishes/not-an-id",
        "/dishes/00000000000000ff-9",
        "/prodcons/x",
    ] {
        let r = s.get(path);
        assert_eq!(r.status, 404, "{path}");
        assert!(r.json()["error"].is_string(), "{path}");
    }
}

#[test]
fn wrong_methods_are_405_with_allow() {
    let s = no_diners(Capacity::Bounded(10));
    for (method, path, allow) in [
        ("POST", "/", "GET, HEAD"),
        ("POST", "/prodcons", "GET"),
        ("DELETE", "/stats", "GET, HEAD"),
        ("GET", "/dishes", "POST"),
        ("PUT", "/dishes/00000000000000ff-9", "GET, HEAD"),
    ] {
        let r = request(s.addr, method, path, Some(b""));
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
    }
}

#[test]
fn a_payload_over_the_limit_is_413() {
    let s = no_diners(Capacity::Bounded(10));
    // Over --max-payload (1 MiB by default): refused by the route.
    let big = format!(r#"{{"dish":1,"pad":"{}"}}"#, "x".repeat(1 << 20));
    let r = s.post("/dishes", &big);
    assert_eq!(r.status, 413, "{}", r.text());
    // Refused from the header alone, before any body is sent.
    let head_only = "POST /dishes HTTP/1.1\r\nContent-Length: 1000000000\r\n\r\n";
    assert_eq!(exchange(s.addr, head_only.as_bytes())[0].status, 413);
    assert_eq!(s.stat("queued"), 0);
}

#[test]
fn broken_requests_get_a_status_not_a_hang() {
    let s = no_diners(Capacity::Bounded(10));
    let huge_header = format!("GET / HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "a".repeat(10_000));
    for (raw, want) in [
        (&b"HELLO\r\n\r\n"[..], 400),
        (b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
        (
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/7.1\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
        (huge_header.as_bytes(), 431),
        (
            b"POST /dishes HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n7\r\n0\r\n\r\n",
            501,
        ),
    ] {
        let replies = exchange(s.addr, raw);
        assert_eq!(replies.len(), 1, "{:?}", String::from_utf8_lossy(raw));
        assert_eq!(
            replies[0].status,
            want,
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
    assert_eq!(s.get("/healthz").status, 200, "still serving");
}

#[test]
fn slow_and_half_open_clients_time_out() {
    let s = TestServer::start(ServeConfig {
        workers: 1,
        ..config()
    });
    // Half a head, then silence: 408 once the client timeout passes.
    let mut slow = connect(s.addr);
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .expect("send half a head");
    let got = parse_all(&read_to_close(&mut slow));
    assert_eq!(got.iter().map(|r| r.status).collect::<Vec<_>>(), [408]);
    // A body that never comes: 408 too.
    let mut short = connect(s.addr);
    short
        .write_all(b"POST /dishes HTTP/1.1\r\nContent-Length: 10\r\n\r\n{\"di")
        .expect("send part of a body");
    assert_eq!(parse_all(&read_to_close(&mut short))[0].status, 408);
    // Connected, silent: closed without a word.
    let mut silent = connect(s.addr);
    assert!(read_to_close(&mut silent).is_empty());
    // The only worker holds an idle connection; a new client still gets served.
    let _idle = connect(s.addr);
    assert_eq!(s.get("/healthz").status, 200);
}

#[test]
fn keep_alive_and_pipelined_requests_are_served_in_order() {
    let s = no_diners(Capacity::Bounded(10));
    let raw = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\
               POST /dishes HTTP/1.1\r\nContent-Length: 10\r\n\r\n{\"dish\":3}\
               GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n";
    let replies = exchange(s.addr, raw.as_bytes());
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 202, 404]);
    assert_eq!(replies[1].json()["dish"], 3);
    // An HTTP/1.0 client that asks for keep-alive is told it got it.
    let raw = "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
               GET /healthz HTTP/1.0\r\n\r\n";
    let replies = exchange(s.addr, raw.as_bytes());
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[0].header("connection"), Some("keep-alive"));
    assert_eq!(replies[1].header("connection"), Some("close"));
    // Expect: 100-continue gets its interim answer, then the real one.
    let raw = "POST /dishes HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 10\r\nConnection: close\r\n\r\n";
    let mut c = connect(s.addr);
    c.write_all(raw.as_bytes()).expect("send head");
    let mut first = [0u8; 25];
    std::io::Read::read_exact(&mut c, &mut first).expect("interim response");
    assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write_all(b"{\"dish\":4}").expect("send body");
    assert_eq!(parse_all(&read_to_close(&mut c))[0].status, 202);
}

#[test]
fn stats_metrics_and_health() {
    let s = TestServer::start(config());
    for _ in 0..3 {
        assert_eq!(s.get("/prodcons").status, 302);
    }
    wait_until(LIMIT, "three dishes eaten", || {
        s.get("/stats").json()["eaten"] == 3
    });
    let stats = s.get("/stats").json();
    for key in [
        "backend",
        "capacity",
        "queued",
        "made",
        "eaten",
        "rejected",
        "lost",
        "subscribers",
        "latency_us",
    ] {
        assert!(stats.get(key).is_some(), "{key} missing from {stats}");
    }
    assert_eq!(
        (stats["backend"].as_str(), stats["made"].as_u64()),
        (Some("local"), Some(3))
    );
    let m = s.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .unwrap_or("")
            .starts_with("text/plain; version=0.0.4")
    );
    let text = m.text();
    for want in [
        "# TYPE kitchen_dishes_made_total counter\nkitchen_dishes_made_total 3\n",
        "kitchen_dishes_eaten_total 3\n",
        "kitchen_dishes_rejected_total 0\n",
        "kitchen_dishes_lost_total 0\n",
        "# TYPE kitchen_queue_depth gauge\nkitchen_queue_depth 0\n",
        "# TYPE kitchen_dish_latency_seconds histogram\n",
        "kitchen_dish_latency_seconds_bucket{le=\"+Inf\"} 3\n",
        "kitchen_dish_latency_seconds_count 3\n",
    ] {
        assert!(text.contains(want), "{want:?} missing from\n{text}");
    }
    let h = s.get("/healthz");
    assert_eq!((h.status, h.json()["status"].as_str()), (200, Some("ok")));
}

#[test]
fn results_expire_after_their_ttl() {
    let s = TestServer::start(ServeConfig {
        result_ttl: Duration::from_millis(1),
        diners: 0,
        ..config()
    });
    let r = s.post("/dishes", "");
    let location = r.header("location").expect("Location").to_owned();
    wait_until(LIMIT, "the result to expire", || {
        s.get(&location).status == 404
    });
}

#[test]
fn garbage_never_stops_the_server() {
    let s = no_diners(Capacity::Bounded(10));
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in 0..200 {
        // xorshift: reproducible noise with HTTP-ish prefixes mixed in.
        let mut bytes = match i % 4 {
            0 => b"GET /".to_vec(),
            1 => b"POST /dishes HTTP/1.1\r\nContent-Length: 3\r\n\r\n".to_vec(),
            _ => Vec::new(),
        };
        for _ in 0..(seed % 300) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            bytes.push(seed as u8);
        }
        bytes.extend_from_slice(b"\r\n\r\n");
        let mut c = connect(s.addr);
        let _ = c.write_all(&bytes);
        let _ = c.shutdown(std::net::Shutdown::Write);
        let _ = read_to_close(&mut c);
    }
    assert_eq!(s.get("/healthz").status, 200);
}

#[test]
fn run_returns_when_stopped() {
    let s = no_diners(Capacity::Bounded(10));
    let _keep_alive = {
        let mut c = connect(s.addr);
        c.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").expect("send");
        c
    };
    s.stop().expect("a clean stop");
}
