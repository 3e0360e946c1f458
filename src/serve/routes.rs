//! The routes: what each path and method does, for one web worker.

use std::fmt::Write as _;
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::dish::{Dish, DishId, MAX_DISH, Payload};
use crate::kitchen::IdBlock;
use crate::queue::{Backend, DeadError, Fault, Gauge, OpenError, Producer, Put, PutError, Results};
use crate::results::{RECORD_PAYLOAD_MAX, Status};
use crate::serve::Shared;
use crate::serve::dead::{self, Action};
use crate::serve::http::{Request, Response};
use crate::serve::metrics::{Metrics, Snapshot};
use crate::serve::server::Handler;
use crate::serve::{live, page};

/// What the page says under the pub/sub link when there is no pub/sub.
const LOCAL_PUBSUB_NOTE: &str = "needs --backend redis";

/// The `503` body while Redis is out of memory: a spell that diners end.
const OUT_OF_MEMORY: &str =
    "redis is out of memory: new dishes are refused until diners free room; retry later";

/// One web worker's state: its own producers, gauge, results store and
/// random numbers, so requests on different workers share nothing but
/// atomic counters.
#[derive(Debug)]
pub(crate) struct Web {
    shared: Arc<Shared>,
    /// Onto the queue (the local channel, or the Redis list).
    producer: Producer,
    /// Onto the channel, for `/pubsub`; `None` where there is none.
    publisher: Option<Producer>,
    gauge: Gauge,
    results: Results,
    rng: SmallRng,
    ids: IdBlock,
}

/// The answer to `POST /dishes`.
#[derive(Debug, Serialize)]
struct Accepted<'a> {
    id: String,
    dish: Option<serde_json::Value>,
    status: Status,
    location: &'a str,
}

impl Web {
    pub(crate) fn new(shared: Arc<Shared>, backend: &Backend) -> Result<Web, OpenError> {
        Ok(Web {
            shared,
            producer: backend.producer()?,
            publisher: backend.publisher(),
            gauge: backend.gauge(),
            results: backend.results(),
            rng: SmallRng::from_os_rng(),
            ids: IdBlock::default(),
        })
    }

    fn dish(&mut self, payload: Option<Payload>) -> Dish {
        let payload =
            payload.unwrap_or_else(|| Payload::Number(self.rng.random_range(0..=MAX_DISH)));
        Dish::carrying(self.ids.next(), payload, 0)
    }

    /// Queues `dish`, waiting at most `--full-wait-ms` for room: a queue
    /// still full, or a backend that fails, is a `503` with `Retry-After`.
    fn put(&mut self, dish: &Dish) -> Result<(), Response> {
        let wait = self.shared.config.full_wait;
        let put = self.producer.put_within(dish, wait);
        self.count(put).map(|_| ())
    }

    /// Counts the outcome of a put and turns a refusal into its response.
    fn count(&self, put: Result<Option<Put>, PutError>) -> Result<Put, Response> {
        let m = &self.shared.metrics;
        match put {
            Ok(Some(Put::Stopped)) => Err(unavailable("the server is shutting down")),
            Ok(Some(put)) => {
                Metrics::bump(&m.made);
                if put == (Put::Published { receivers: 0 }) {
                    Metrics::bump(&m.lost);
                }
                Ok(put)
            }
            Ok(None) => {
                Metrics::bump(&m.full);
                let cap = self.shared.config.capacity.limit().unwrap_or(0);
                Err(unavailable(&format!(
                    "the queue is full ({cap} dishes waiting); retry in a second"
                )))
            }
            Err(e) => Err(self.unavailable(&e.0)),
        }
    }

    /// The `503` for a backend that failed: the client learns only that the
    /// queue is unavailable, or out of memory; the operator's log gets the
    /// detail (redacted). An out-of-memory spell is announced there once,
    /// by the backend, not once per request.
    fn unavailable(&self, fault: &Fault) -> Response {
        Metrics::bump(&self.shared.metrics.unavailable);
        if let Fault::OutOfMemory { .. } = fault {
            return unavailable(OUT_OF_MEMORY);
        }
        crate::notice!("kitchen serve: {fault}");
        unavailable("the queue is unavailable; retry in a second")
    }

    fn prodcons(&mut self) -> Response {
        let dish = self.dish(None);
        match self.put(&dish) {
            Ok(()) => see_page(),
            Err(resp) => resp,
        }
    }

    fn pubsub(&mut self) -> Response {
        let dish = self.dish(None);
        let Some(publisher) = &mut self.publisher else {
            return Response::json_error(
                501,
                "publish/subscribe needs a channel: start `kitchen serve --backend redis`; the local backend is a queue (use /prodcons)",
            );
        };
        // Publishing never waits for room: a channel holds nothing.
        let put = publisher.put_within(&dish, std::time::Duration::ZERO);
        match self.count(put) {
            Ok(_) => see_page(),
            Err(resp) => resp,
        }
    }

    fn create(&mut self, body: &[u8]) -> Response {
        let payload = match parse_payload(body, self.shared.config.max_payload) {
            Ok(p) => p,
            Err(resp) => return resp,
        };
        let mut dish = self.dish(payload);
        dish.track = true;
        // Recorded before it is queued, so a quick diner finds the record.
        if let Err(e) = self.results.queued(&dish) {
            return self.unavailable(&e.0);
        }
        if let Err(resp) = self.put(&dish) {
            self.results.forget(dish.id);
            return resp;
        }
        let location = format!("/dishes/{}", dish.id);
        let body = Accepted {
            id: dish.id.to_string(),
            dish: (dish.payload.len() <= RECORD_PAYLOAD_MAX).then(|| dish.payload.to_json()),
            status: Status::Queued,
            location: &location,
        };
        // Strings and numbers only: serializing cannot fail.
        let body = serde_json::to_string(&body).unwrap_or_default();
        Response::json(202, body).with("Location", location)
    }

    fn lookup(&mut self, id: &str) -> Response {
        let found = match id.parse::<DishId>() {
            Err(_) => Ok(None),
            Ok(id) => self.results.get(id),
        };
        match found {
            Ok(Some(r)) => Response::json(200, r.to_json()),
            Ok(None) => Response::json_error(
                404,
                &format!("no dish {id}: never queued here, or its result has expired"),
            ),
            Err(e) => self.unavailable(&e.0),
        }
    }

    fn snapshot(&mut self) -> Snapshot {
        let subscribers = self.gauge.subscribers();
        let shards = self.gauge.shard_depths();
        let queued = match &shards {
            Some(each) => Some(each.iter().sum()),
            None => self.gauge.depth().ok(),
        };
        let m = &self.shared.metrics;
        let c = &self.shared.config;
        // Diners of a shared queue are other processes: their counts are theirs.
        let here = !self.shared.shared_queue;
        let mine = |n: u64| here.then_some(n);
        Snapshot {
            backend: c.backend.name(),
            capacity: c.capacity.limit(),
            queued,
            shards,
            made: Metrics::get(&m.made),
            eaten: mine(Metrics::get(&m.eaten)),
            rejected: mine(Metrics::get(&m.rejected)),
            failed: mine(Metrics::get(&m.failed)),
            retried: mine(Metrics::get(&m.retried)),
            dead_letters: self.gauge.dead_letters(0).ok().map(|d| d.total as u64),
            waiting_retries: self.gauge.waiting_retries().ok().map(|n| n as u64),
            lost: Metrics::get(&m.lost),
            refused_full: Metrics::get(&m.full),
            refused_unavailable: Metrics::get(&m.unavailable),
            subscribers,
            diners: if here {
                Some(c.diners)
            } else {
                self.gauge.diners()
            },
            workers: c.workers,
            uptime_s: self.shared.started.elapsed().as_secs_f64(),
            latency_us: here.then(|| m.latency()),
        }
    }

    fn healthz(&mut self) -> Response {
        match self.gauge.health() {
            Ok(()) => Response::json(200, r#"{"status":"ok"}"#.to_owned()),
            Err(e) => self.unavailable(&e.0),
        }
    }

    /// `/metrics`: the server's figures, and whether Redis is out of memory.
    fn metrics(&mut self) -> Response {
        let snap = self.snapshot();
        let mut text = self.shared.metrics.prometheus(&snap);
        if let Some(oom) = self.gauge.out_of_memory() {
            text.push_str(
                "# HELP kitchen_redis_oom Whether redis is out of memory and refuses new dishes (1) or not (0).\n",
            );
            text.push_str("# TYPE kitchen_redis_oom gauge\n");
            // Writing to a String cannot fail.
            let _ = writeln!(text, "kitchen_redis_oom {}", u8::from(oom));
        }
        Response::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            text.into_bytes(),
        )
    }

    fn page(&mut self) -> Response {
        let snap = self.snapshot();
        let note = self.publisher.is_none().then_some(LOCAL_PUBSUB_NOTE);
        let dead = self.dead_section();
        let html = page::render(&snap, note, &self.live_section(), &dead);
        // Its buttons change state: no other site may frame it under a
        // decoy (clickjacking).
        Response::new(200, "text/html; charset=utf-8", html.into_bytes())
            .with("X-Frame-Options", "DENY")
    }

    /// The dead letters' section and its key (a hash of it): the page's
    /// script swaps it in only when the key changed, so a button is not
    /// replaced under a pointer every second.
    fn dead_section(&mut self) -> (String, String) {
        let html = match self.gauge.dead_letters(dead::SHOWN) {
            Ok(d) => dead::section(&d),
            // The page names no server (as the `503`s do not): the
            // operator's log has the detail from the requests that fail.
            Err(_) => "<h2>Dead letters</h2>\n<p class=\"note\" id=\"dead\">The queue is unavailable; they show again once it answers.</p>\n".to_owned(),
        };
        let key = live::key(&html);
        (html, key)
    }

    /// `GET /live/dead`: the dead letters' section alone, its key in `X-Content-Key`.
    fn live_dead(&mut self) -> Response {
        let (html, key) = self.dead_section();
        Response::new(200, "text/html; charset=utf-8", html.into_bytes())
            .with("Cache-Control", "no-store")
            .with("X-Content-Key", key)
    }

    /// `POST /dead/requeue` and `/dead/purge`: a form naming dead letters;
    /// `303` back to the page once done.
    fn dead(&mut self, action: Action, body: &[u8]) -> Response {
        let which = match dead::parse_form(body) {
            Ok(w) => w,
            Err(line) => return Response::text(400, format!("{line}\n")),
        };
        let done = match action {
            Action::Requeue => self.gauge.dead_requeue(&which),
            Action::Purge => self.gauge.dead_purge(&which),
        };
        match done {
            Ok(_) => dead::see_page(),
            Err(e) => {
                if let DeadError::Fault(f) = &e {
                    crate::notice!("kitchen serve: {f}");
                }
                dead::refused(&e)
            }
        }
    }

    /// The page's live section alone, which its script swaps in every second.
    fn live(&mut self) -> Response {
        let html = self.live_section();
        Response::new(200, "text/html; charset=utf-8", html.into_bytes())
            .with("Cache-Control", "no-store")
    }

    fn live_section(&mut self) -> String {
        let s = &self.shared;
        // Diners of a shared queue are other processes: they report their own failures.
        let failures = (!s.shared_queue).then(|| s.live.failures());
        live::section(&s.live, s.config.capacity.limit(), failures.as_deref())
    }
}

/// The payload a `POST /dishes` body asks for (`None`: a random dish
/// number, for an empty body or `{}`), or its `4xx`. Any JSON value is a
/// payload; `{"dish": N}` with N from 0 to 9 is the tutorial's dish N.
fn parse_payload(body: &[u8], max: usize) -> Result<Option<Payload>, Response> {
    let body = body.trim_ascii();
    if body.len() > max {
        return Err(Response::json_error(
            413,
            &format!(
                "the payload is {} bytes, over the {max}-byte limit (--max-payload)",
                body.len()
            ),
        ));
    }
    if body.is_empty() {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        Response::json_error(400, &format!("the body is not JSON ({e}): send any JSON value, e.g. {{\"dish\": 3}} or {{\"task\": \"resize\"}}"))
    })?;
    if let serde_json::Value::Object(o) = &value {
        if o.is_empty() {
            return Ok(None);
        }
        if o.len() == 1
            && let Some(n) = o.get("dish").and_then(serde_json::Value::as_u64)
            && n <= u64::from(MAX_DISH)
        {
            return Ok(Some(Payload::Number(n as u8)));
        }
    }
    Ok(Some(Payload::from_json(&value)))
}

impl Handler for Web {
    fn handle(&mut self, req: &Request<'_>) -> Response {
        // HEAD is a GET without the body, so only where a GET changes
        // nothing: a HEAD that queued a dish would be a surprise.
        let get = matches!(req.method, "GET" | "HEAD");
        let only_get = req.method == "GET";
        let only = |allow: &'static str, ok: bool, f: &mut dyn FnMut() -> Response| {
            if ok { f() } else { not_allowed(allow) }
        };
        match req.path {
            "/" => only("GET, HEAD", get, &mut || self.page()),
            "/prodcons" => only("GET", only_get, &mut || self.prodcons()),
            "/pubsub" => only("GET", only_get, &mut || self.pubsub()),
            "/dishes" => only("POST", req.method == "POST", &mut || self.create(req.body)),
            "/stats" => only("GET, HEAD", get, &mut || {
                let snap = self.snapshot();
                Response::json(200, serde_json::to_string(&snap).unwrap_or_default())
            }),
            "/metrics" => only("GET, HEAD", get, &mut || self.metrics()),
            "/live" => only("GET, HEAD", get, &mut || self.live()),
            "/live/dead" => only("GET, HEAD", get, &mut || self.live_dead()),
            "/dead/requeue" | "/dead/purge" if req.cross_site && req.method == "POST" => {
                Response::text(
                    403,
                    "a page of another site may not change the dead letters; use this server's own page\n",
                )
            }
            "/dead/requeue" => only("POST", req.method == "POST", &mut || {
                self.dead(Action::Requeue, req.body)
            }),
            "/dead/purge" => only("POST", req.method == "POST", &mut || {
                self.dead(Action::Purge, req.body)
            }),
            "/healthz" => only("GET, HEAD", get, &mut || self.healthz()),
            path => match path.strip_prefix("/dishes/") {
                Some(id) => only("GET, HEAD", get, &mut || self.lookup(id)),
                None => Response::json_error(404, &format!("no route {path}; try /")),
            },
        }
    }
}

/// The tutorial's answer to `/prodcons` and `/pubsub`: back to the page.
fn see_page() -> Response {
    Response::new(302, "text/plain; charset=utf-8", &b"see /\n"[..]).with("Location", "/")
}

fn unavailable(why: &str) -> Response {
    Response::json_error(503, why).with("Retry-After", "1")
}

fn not_allowed(allow: &'static str) -> Response {
    Response::json_error(405, &format!("method not allowed here; use {allow}")).with("Allow", allow)
}
