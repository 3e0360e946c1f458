//! The routes: what each path and method does, for one web worker.

use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::dish::{Dish, DishId, MAX_DISH};
use crate::kitchen::IdBlock;
use crate::queue::{Gauge, Producer, Put};
use crate::results::Status;
use crate::serve::Shared;
use crate::serve::http::{Request, Response};
use crate::serve::metrics::{Metrics, Snapshot};
use crate::serve::page;
use crate::serve::server::Handler;

/// What the page says under the pub/sub link when there is no pub/sub.
const LOCAL_PUBSUB_NOTE: &str = "needs --backend redis";

/// One web worker's state: its own producer, gauge and random numbers, so
/// requests on different workers share nothing but atomic counters.
#[derive(Debug)]
pub(crate) struct Web {
    shared: Arc<Shared>,
    producer: Producer,
    gauge: Gauge,
    rng: SmallRng,
    ids: IdBlock,
}

/// The answer to `POST /dishes`.
#[derive(Debug, Serialize)]
struct Accepted<'a> {
    id: String,
    dish: u8,
    status: Status,
    location: &'a str,
}

/// The body of `POST /dishes`; `{}` or no body picks a random dish.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDish {
    dish: Option<i64>,
}

impl Web {
    pub(crate) fn new(shared: Arc<Shared>, producer: Producer, gauge: Gauge) -> Web {
        Web {
            shared,
            producer,
            gauge,
            rng: SmallRng::from_os_rng(),
            ids: IdBlock::default(),
        }
    }

    fn random_dish(&mut self) -> u8 {
        self.rng.random_range(0..=MAX_DISH)
    }

    /// Queues dish `number` without waiting: a full queue or a failing
    /// backend is an immediate `503` with `Retry-After`.
    fn put(&mut self, number: u8) -> Result<Dish, Response> {
        let dish = Dish::new(self.ids.next(), number, 0);
        let m = &self.shared.metrics;
        match self.producer.try_put(dish, self.shared.config.full_wait) {
            Ok(Some(Put::Queued { .. } | Put::Published { .. })) => {
                Metrics::bump(&m.made);
                Ok(dish)
            }
            Ok(None) => {
                Metrics::bump(&m.full);
                let cap = self.shared.config.capacity.limit().unwrap_or(0);
                Err(unavailable(&format!(
                    "the queue is full ({cap} dishes waiting); retry in a second"
                )))
            }
            Ok(Some(Put::Stopped)) => Err(unavailable("the server is shutting down")),
            Err(e) => {
                Metrics::bump(&m.unavailable);
                Err(unavailable(&format!("the queue is unavailable: {e}")))
            }
        }
    }

    fn prodcons(&mut self) -> Response {
        let number = self.random_dish();
        match self.put(number) {
            Ok(_) => see_page(),
            Err(resp) => resp,
        }
    }

    fn pubsub(&mut self) -> Response {
        Response::json_error(
            501,
            "publish/subscribe needs a channel: start `kitchen serve --backend redis`; the local backend is a queue (use /prodcons)",
        )
    }

    fn create(&mut self, body: &[u8]) -> Response {
        let body = body.trim_ascii();
        let number = if body.is_empty() {
            None
        } else {
            // serde would read a struct from an array too; the API takes objects.
            let parsed = if body.starts_with(b"{") {
                serde_json::from_slice::<NewDish>(body).map_err(|e| e.to_string())
            } else {
                Err("not a JSON object".to_owned())
            };
            match parsed {
                Ok(d) => d.dish,
                Err(e) => {
                    return Response::json_error(
                        400,
                        &format!("body is not {{\"dish\": 0-{MAX_DISH}}}: {e}"),
                    );
                }
            }
        };
        let number = match number {
            None => self.random_dish(),
            Some(n) => match u8::try_from(n).ok().filter(|&d| d <= MAX_DISH) {
                Some(d) => d,
                None => {
                    return Response::json_error(
                        400,
                        &format!("dish {n} is out of range 0-{MAX_DISH}"),
                    );
                }
            },
        };
        // Tracked before it is queued, so a quick diner finds the record.
        let mut dish = Dish::new(self.ids.next(), number, 0);
        dish.track = true;
        let results = &self.shared.results;
        results.insert(&dish);
        let m = &self.shared.metrics;
        let refused = match self.producer.try_put(dish, self.shared.config.full_wait) {
            Ok(Some(Put::Queued { .. } | Put::Published { .. })) => None,
            Ok(None) => {
                Metrics::bump(&m.full);
                Some("the queue is full; retry in a second".to_owned())
            }
            Ok(Some(Put::Stopped)) => Some("the server is shutting down".to_owned()),
            Err(e) => {
                Metrics::bump(&m.unavailable);
                Some(format!("the queue is unavailable: {e}"))
            }
        };
        if let Some(why) = refused {
            results.remove(dish.id);
            return unavailable(&why);
        }
        Metrics::bump(&m.made);
        let location = format!("/dishes/{}", dish.id);
        let body = Accepted {
            id: dish.id.to_string(),
            dish: dish.number,
            status: Status::Queued,
            location: &location,
        };
        // Strings and numbers only: serializing cannot fail.
        let body = serde_json::to_string(&body).unwrap_or_default();
        Response::json(202, body).with("Location", location)
    }

    fn lookup(&self, id: &str) -> Response {
        let found = id
            .parse::<DishId>()
            .ok()
            .and_then(|id| self.shared.results.get(id));
        match found {
            Some(r) => Response::json(200, r.to_json()),
            None => Response::json_error(
                404,
                &format!("no dish {id}: never queued here, or its result has expired"),
            ),
        }
    }

    fn snapshot(&mut self) -> Snapshot {
        let m = &self.shared.metrics;
        let c = &self.shared.config;
        Snapshot {
            backend: c.backend.name(),
            capacity: c.capacity.limit(),
            queued: self.gauge.depth().ok(),
            made: Metrics::get(&m.made),
            eaten: Metrics::get(&m.eaten),
            rejected: Metrics::get(&m.rejected),
            lost: Metrics::get(&m.lost),
            refused_full: Metrics::get(&m.full),
            refused_unavailable: Metrics::get(&m.unavailable),
            subscribers: None,
            diners: c.diners,
            workers: c.workers,
            uptime_s: self.shared.started.elapsed().as_secs_f64(),
            latency_us: m.latency(),
        }
    }

    fn healthz(&mut self) -> Response {
        match self.gauge.depth() {
            Ok(_) => Response::json(200, r#"{"status":"ok"}"#.to_owned()),
            Err(e) => unavailable(&format!("the queue is unavailable: {e}")),
        }
    }
}

impl Handler for Web {
    fn handle(&mut self, req: &Request<'_>) -> Response {
        let get = matches!(req.method, "GET" | "HEAD");
        let only = |allow: &'static str, ok: bool, f: &mut dyn FnMut() -> Response| {
            if ok { f() } else { not_allowed(allow) }
        };
        match req.path {
            "/" => only("GET, HEAD", get, &mut || {
                let snap = self.snapshot();
                let html = page::render(&snap, Some(LOCAL_PUBSUB_NOTE));
                Response::new(200, "text/html; charset=utf-8", html.into_bytes())
            }),
            "/prodcons" => only("GET, HEAD", get, &mut || self.prodcons()),
            "/pubsub" => only("GET, HEAD", get, &mut || self.pubsub()),
            "/dishes" => only("POST", req.method == "POST", &mut || self.create(req.body)),
            "/stats" => only("GET, HEAD", get, &mut || {
                let snap = self.snapshot();
                Response::json(200, serde_json::to_string(&snap).unwrap_or_default())
            }),
            "/metrics" => only("GET, HEAD", get, &mut || {
                let snap = self.snapshot();
                let text = self.shared.metrics.prometheus(&snap);
                Response::new(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    text.into_bytes(),
                )
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
