//! The page in a real browser: headless Chromium, driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`), clicks "producer-consumer mode".

mod support;

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};

use kitchen::queue::Capacity;
use kitchen::serve::ServeConfig;
use serde_json::{Value, json};
use support::web::{TestServer, base64, config, request};
use support::{KillOnDrop, LIMIT, wait_until};

/// A chromedriver on a free loopback port, with one headless Chromium session.
struct Browser {
    addr: SocketAddr,
    session: String,
    _driver: KillOnDrop,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        Browser::start_with(true)
    }

    /// A browser with JavaScript on or off (Chromium's content setting, as
    /// a user who turned it off has it).
    fn start_with(javascript: bool) -> Browser {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("local_addr").port()
        };
        let driver = Command::new("chromedriver")
            .args([
                format!("--port={port}"),
                "--allowed-ips=127.0.0.1".to_owned(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "run chromedriver (Debian package `chromium-driver`; scripts/test installs it)",
            );
        let driver = KillOnDrop::new(driver);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_until(LIMIT, "chromedriver to be ready", || {
            std::net::TcpStream::connect(addr).is_ok()
                && call(addr, "GET", "/status", None)["ready"] == true
        });
        let profile = tempfile::tempdir().expect("a fresh profile dir");
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            "--window-size=1000,800".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": args,
                "prefs": {"profile.managed_default_content_settings.javascript": if javascript { 1 } else { 2 }},
            },
        }}});
        let created = call(addr, "POST", "/session", Some(caps));
        let session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        Browser {
            addr,
            session,
            _driver: driver,
            _profile: profile,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        call(
            self.addr,
            method,
            &format!("/session/{}{path}", self.session),
            body,
        )
    }

    fn open(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    fn find(&self, using: &str, value: &str) -> String {
        let found = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": using, "value": value})),
        );
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {using} {value:?}: {found}"))
            .to_owned()
    }

    fn text(&self, css: &str) -> String {
        let id = self.find("css selector", css);
        self.cmd("GET", &format!("/element/{id}/text"), None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

impl Browser {
    /// The text of the element `css` names, or `None` while there is none
    /// (the page is loading after a form's redirect).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn try_text(&self, css: &str) -> Option<String> {
        let path = format!("/session/{}/element", self.session);
        let body = json!({"using": "css selector", "value": css}).to_string();
        let found = request(self.addr, "POST", &path, Some(body.as_bytes()));
        if found.status != 200 {
            return None;
        }
        let v = found.json();
        let id = v["value"]
            .as_object()?
            .values()
            .next()?
            .as_str()?
            .to_owned();
        let path = format!("/session/{}/element/{id}/text", self.session);
        let text = request(self.addr, "GET", &path, None);
        (text.status == 200).then(|| text.json()["value"].as_str().unwrap_or("").to_owned())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = request(
            self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
    }
}

/// One WebDriver command; returns its `value`.
fn call(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string());
    let r = request(addr, method, path, body.as_deref().map(str::as_bytes));
    let v = r.json();
    assert_eq!(r.status, 200, "WebDriver {method} {path}: {v}");
    v["value"].clone()
}

#[test]
fn clicking_producer_consumer_mode_queues_one_dish() {
    // No diners: the queued figure only moves when the browser queues a dish.
    let s = TestServer::start(ServeConfig {
        diners: 0,
        capacity: Capacity::Bounded(10),
        ..config()
    });
    assert_eq!(s.get("/prodcons").status, 302);
    let b = Browser::start();
    let home = s.url("/");
    b.open(&home);
    assert_eq!(b.text("h1"), "Redis Message Queue");
    assert_eq!(b.text("#queued"), "1");
    let link = b.find("link text", "producer-consumer mode");
    b.cmd("POST", &format!("/element/{link}/click"), Some(json!({})));
    wait_until(
        LIMIT,
        "the browser back on / with one more dish queued",
        || b.url() == home && b.text("#queued") == "2",
    );
    assert_eq!(s.get("/stats").json()["queued"], 2);
    assert!(b.text("#pubsub").contains("publish-subscribe mode"));

    // A screenshot to look at: target/tmp/serve-page.png.
    let png = base64(b.cmd("GET", "/screenshot", None).as_str().unwrap_or(""));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG screenshot");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-page.png");
    std::fs::write(&path, png).expect("save the screenshot");
}

/// The dead letters' buttons in a real browser: requeue one (a `POST` form,
/// `303` back to the page), see a diner eat it, then purge the rest.
#[cfg(feature = "redis")]
#[test]
fn requeue_then_purge_dead_letters_from_the_page() {
    use support::redis_kitchen::{QUEUE, burst_json, bury_by_hand};
    use support::redis_server::RedisServer;
    use support::web::serve_on;

    let redis = RedisServer::start();
    bury_by_hand(&redis, "d-1", "7", "exit status 1: <boom>");
    bury_by_hand(&redis, "d-2", "8", "timed out after 5 s");
    let s = serve_on(&redis, Capacity::default());
    let b = Browser::start();
    let home = s.url("/");
    b.open(&home);
    assert_eq!(b.text("#dead-total"), "2");
    assert!(
        b.text("#dead").contains("exit status 1: <boom>"),
        "shown as text"
    );
    // A screenshot to look at: target/tmp/serve-dead-letters.png.
    let png = base64(b.cmd("GET", "/screenshot", None).as_str().unwrap_or(""));
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-dead-letters.png");
    std::fs::write(&path, png).expect("save the screenshot");
    let button = b.find("css selector", r#"li[data-id="d-1"] button.requeue"#);
    b.cmd("POST", &format!("/element/{button}/click"), Some(json!({})));
    wait_until(
        LIMIT,
        "the browser back on / with one dead letter left",
        || b.url() == home && b.try_text("#dead-total").as_deref() == Some("1"),
    );
    assert_eq!(redis.llen(QUEUE), 1, "d-1 is back on the queue");
    let eaten = burst_json(&redis, "true", &[]);
    assert_eq!(eaten["eaten"], 1, "the requeued dish is eaten: {eaten}");

    let all = b.find("css selector", "#purge-all");
    b.cmd("POST", &format!("/element/{all}/click"), Some(json!({})));
    wait_until(LIMIT, "the page to show no dead letters", || {
        b.url() == home && b.try_text("#dead-total").as_deref() == Some("0")
    });
    assert_eq!(b.text("#dead"), "None.");
    assert_eq!(redis.llen(&format!("{{{QUEUE}}}:dead")), 0);
}

/// With JavaScript off, the forms still work: purge one, then requeue all,
/// each a `POST` answered `303` back to the page.
#[cfg(feature = "redis")]
#[test]
fn dead_letter_buttons_work_with_javascript_off() {
    use support::redis_kitchen::{QUEUE, bury_by_hand};
    use support::redis_server::RedisServer;
    use support::web::serve_on;

    let redis = RedisServer::start();
    bury_by_hand(&redis, "d-1", "7", "exit status 1");
    bury_by_hand(&redis, "d-2", "8", "exit status 1");
    let s = serve_on(&redis, Capacity::default());
    let b = Browser::start_with(false);
    let home = s.url("/");
    b.open(&home);
    assert_eq!(b.text("#dead-total"), "2");
    // Scripting is off: the <noscript> reload is a real element, not text.
    let refresh = b.cmd(
        "POST",
        "/execute/sync",
        Some(json!({"script": "return document.querySelectorAll('meta[http-equiv=refresh]').length", "args": []})),
    );
    assert_eq!(refresh, 1, "the page is parsed with scripting off");
    let purge = b.find("css selector", r#"li[data-id="d-2"] button.purge"#);
    b.cmd("POST", &format!("/element/{purge}/click"), Some(json!({})));
    wait_until(LIMIT, "the page again, with d-2 gone", || {
        b.url() == home && b.try_text("#dead-total").as_deref() == Some("1")
    });
    let all = b.find("css selector", "#requeue-all");
    b.cmd("POST", &format!("/element/{all}/click"), Some(json!({})));
    wait_until(LIMIT, "the page again, with none left", || {
        b.url() == home && b.try_text("#dead-total").as_deref() == Some("0")
    });
    assert_eq!(
        redis.lrange(QUEUE),
        vec!["7".to_owned()],
        "d-1 requeued as it was"
    );
}
