//! What became of each dish queued through the web API (`POST /dishes`).
//!
//! Only dishes with [`Dish::track`] set are recorded, so the tutorial's
//! `/prodcons` dishes and the kitchen's own cost nothing here. Records live
//! for a TTL: in the web entry's memory on the local backend
//! ([`LocalResults`], also bounded in count), or in Redis beside the queue,
//! written by whichever diner process eats the dish (`RedisResults`, key
//! `<queue>:result:<id>`, a JSON [`DishResult`] with `PX <ttl>`).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::dish::{Dish, DishId, now_us};
use crate::queue::QueueError;

/// Where a dish is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting on the queue.
    Queued,
    /// A diner has it.
    Eating,
    /// Done.
    Eaten,
    /// A diner could not read it. (A payload no diner can read has no id to
    /// file it under, so in practice a tracked dish never ends here.)
    Rejected,
}

/// The record `GET /dishes/{id}` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DishResult {
    /// The dish id.
    pub id: String,
    /// The dish number.
    pub dish: u8,
    /// Where it is.
    pub status: Status,
    /// Which diner has or had it (`diner-1`), once one does.
    pub diner: Option<String>,
    /// When it was made, microseconds since the Unix epoch.
    pub made_at: u64,
    /// When it was eaten, microseconds since the Unix epoch.
    pub eaten_at: Option<u64>,
}

impl DishResult {
    /// A dish just queued.
    pub fn queued(dish: &Dish) -> DishResult {
        DishResult {
            id: dish.id.to_string(),
            dish: dish.number,
            status: Status::Queued,
            diner: None,
            made_at: dish.made_at_us,
            eaten_at: None,
        }
    }

    /// `dish` in a diner's hands.
    pub fn eating(dish: &Dish, diner: &str) -> DishResult {
        DishResult {
            status: Status::Eating,
            diner: Some(diner.to_owned()),
            ..DishResult::queued(dish)
        }
    }

    /// `dish` eaten just now.
    pub fn eaten(dish: &Dish, diner: &str) -> DishResult {
        DishResult {
            status: Status::Eaten,
            eaten_at: Some(now_us()),
            ..DishResult::eating(dish, diner)
        }
    }

    /// As JSON.
    pub fn to_json(&self) -> String {
        // Strings and numbers only: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Results of the local backend, in memory: each kept for `ttl`, and at most
/// `max` at once (the oldest go first), so memory stays bounded whatever the
/// request rate.
///
/// Only dishes queued through `POST /dishes` are tracked; the tutorial's
/// `/prodcons` dishes have no id anybody could ask about, so they cost nothing.
#[derive(Debug)]
pub struct LocalResults {
    ttl: Duration,
    max: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<DishId, (DishResult, Instant)>,
    // Insertion order, for expiry and eviction without scanning the map.
    order: VecDeque<(DishId, Instant)>,
}

impl LocalResults {
    /// An empty store.
    pub fn new(ttl: Duration, max: usize) -> LocalResults {
        LocalResults {
            ttl,
            max: max.max(1),
            inner: Mutex::default(),
        }
    }

    /// Starts tracking `dish` as queued.
    pub fn insert(&self, dish: &Dish) {
        let now = Instant::now();
        let mut g = self.inner.lock();
        let Inner { map, order } = &mut *g;
        while let Some(&(id, at)) = order.front() {
            if now.duration_since(at) < self.ttl && map.len() < self.max {
                break;
            }
            order.pop_front();
            // Only forget the entry this order slot was made for.
            if map.get(&id).is_some_and(|(_, t)| *t == at) {
                map.remove(&id);
            }
        }
        map.insert(dish.id, (DishResult::queued(dish), now));
        order.push_back((dish.id, now));
    }

    /// Forgets `id` (its dish never made it onto the queue).
    pub fn remove(&self, id: DishId) {
        self.inner.lock().map.remove(&id);
    }

    /// Updates a tracked dish; untracked ones are ignored.
    pub fn update(&self, id: DishId, f: impl FnOnce(&mut DishResult)) {
        if let Some((r, _)) = self.inner.lock().map.get_mut(&id) {
            f(r);
        }
    }

    /// The record of `id`, unless unknown or expired.
    pub fn get(&self, id: DishId) -> Option<DishResult> {
        let g = self.inner.lock();
        let (r, at) = g.map.get(&id)?;
        (at.elapsed() < self.ttl).then(|| r.clone())
    }

    /// How many records are held.
    pub fn len(&self) -> usize {
        self.inner.lock().map.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a diner records what became of tracked dishes.
#[derive(Debug)]
pub enum Recorder {
    /// In the web entry's memory (its own diners, local backend).
    Local(std::sync::Arc<LocalResults>),
    /// In Redis, for the web entry of any process to read.
    #[cfg(feature = "redis")]
    Redis(Box<RedisResults>),
}

impl Recorder {
    /// `dish` is in `diner`'s hands.
    pub fn eating(&mut self, dish: &Dish, diner: &str) -> Result<(), QueueError> {
        match self {
            Recorder::Local(r) => {
                r.update(dish.id, |x| {
                    x.status = Status::Eating;
                    x.diner = Some(diner.to_owned());
                });
                Ok(())
            }
            #[cfg(feature = "redis")]
            Recorder::Redis(r) => r.put(&DishResult::eating(dish, diner)),
        }
    }

    /// `diner` has eaten `dish`.
    pub fn eaten(&mut self, dish: &Dish, diner: &str) -> Result<(), QueueError> {
        match self {
            Recorder::Local(r) => {
                let eaten_at = now_us();
                r.update(dish.id, |x| {
                    x.status = Status::Eaten;
                    x.diner = Some(diner.to_owned());
                    x.eaten_at = Some(eaten_at);
                });
                Ok(())
            }
            #[cfg(feature = "redis")]
            Recorder::Redis(r) => r.put(&DishResult::eaten(dish, diner)),
        }
    }
}

#[cfg(feature = "redis")]
pub use redis_results::RedisResults;

#[cfg(feature = "redis")]
mod redis_results {
    use std::time::Duration;

    use super::DishResult;
    use crate::dish::DishId;
    use crate::queue::{QueueError, RedisOptions};
    use crate::redis_mode::{Conn, client};

    /// Results in Redis: one string key per dish, `<queue>:result:<id>`,
    /// expiring after the TTL, so Redis memory does not grow without bound.
    ///
    /// One connection, opened on first use and reopened after Redis returns
    /// (within `reconnect_for` of the options it was made from). The web
    /// entry also asks its health check and subscriber count over it.
    #[derive(Debug)]
    pub struct RedisResults {
        conn: Conn,
        prefix: String,
        ttl_ms: u64,
        channel: String,
    }

    impl RedisResults {
        /// Results beside `opts.queue`, kept for `opts.result_ttl`.
        pub fn new(opts: &RedisOptions) -> Result<RedisResults, QueueError> {
            Ok(RedisResults {
                conn: Conn::new(client(&opts.url)?, opts),
                prefix: format!("{}:result:", opts.queue),
                ttl_ms: u64::try_from(opts.result_ttl.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
                channel: opts.channel.clone(),
            })
        }

        fn key(&self, id: &str) -> String {
            format!("{}{id}", self.prefix)
        }

        /// Writes (or overwrites) a record, with a fresh TTL.
        pub fn put(&mut self, r: &DishResult) -> Result<(), QueueError> {
            let (key, value, ttl) = (self.key(&r.id), r.to_json(), self.ttl_ms);
            self.conn.run(|c| {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&value)
                    .arg("PX")
                    .arg(ttl)
                    .query::<()>(c)
            })
        }

        /// Forgets a record (its dish never made it onto the queue).
        pub fn remove(&mut self, id: DishId) -> Result<(), QueueError> {
            let key = self.key(&id.to_string());
            self.conn
                .run(|c| redis::cmd("DEL").arg(&key).query::<()>(c))
        }

        /// The record of `id`, unless unknown or expired. A record that is
        /// not ours to read counts as unknown.
        pub fn get(&mut self, id: DishId) -> Result<Option<DishResult>, QueueError> {
            let key = self.key(&id.to_string());
            let raw: Option<String> = self.conn.run(|c| redis::cmd("GET").arg(&key).query(c))?;
            Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
        }

        /// Whether Redis answers.
        pub fn ping(&mut self) -> Result<(), QueueError> {
            self.conn
                .run(|c| redis::cmd("PING").query::<String>(c))
                .map(|_| ())
        }

        /// Clients subscribed to the channel now.
        pub fn subscribers(&mut self) -> Result<usize, QueueError> {
            let channel = &self.channel;
            let (_, n): (String, usize) = self
                .conn
                .run(|c| redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query(c))?;
            Ok(n)
        }

        /// How long records live.
        pub fn ttl(&self) -> Duration {
            Duration::from_millis(self.ttl_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_updates_and_ignores_strangers() {
        let r = LocalResults::new(Duration::from_secs(60), 10);
        let d = Dish::new(1, 4, 0);
        r.insert(&d);
        r.update(d.id, |x| x.status = Status::Eaten);
        assert_eq!(r.get(d.id).map(|x| x.status), Some(Status::Eaten));
        let stranger = Dish::new(2, 1, 0);
        r.update(stranger.id, |x| x.status = Status::Eaten);
        assert_eq!(r.get(stranger.id), None);
    }

    #[test]
    fn a_local_recorder_walks_a_dish_through_its_states() {
        let store = std::sync::Arc::new(LocalResults::new(Duration::from_secs(60), 10));
        let mut rec = Recorder::Local(store.clone());
        let d = Dish::new(7, 2, 0);
        store.insert(&d);
        rec.eating(&d, "diner-1")
            .expect("local records cannot fail");
        let r = store.get(d.id).expect("tracked");
        assert_eq!(
            (r.status, r.diner.as_deref(), r.eaten_at),
            (Status::Eating, Some("diner-1"), None)
        );
        rec.eaten(&d, "diner-1").expect("local records cannot fail");
        let r = store.get(d.id).expect("tracked");
        assert_eq!(r.status, Status::Eaten);
        assert!(r.eaten_at >= Some(r.made_at));
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).expect("JSON");
        assert_eq!(json["status"], "eaten");
        assert_eq!(DishResult::eaten(&d, "x").status, Status::Eaten);
    }

    #[test]
    fn memory_is_bounded_by_count_and_time() {
        let r = LocalResults::new(Duration::from_secs(60), 3);
        let dishes: Vec<Dish> = (0..10).map(|i| Dish::new(100 + i, 0, 0)).collect();
        for d in &dishes {
            r.insert(d);
        }
        assert_eq!(r.len(), 3);
        assert!(r.get(dishes[9].id).is_some());
        assert!(r.get(dishes[0].id).is_none());
        let short = LocalResults::new(Duration::ZERO, 100);
        short.insert(&dishes[0]);
        assert_eq!(short.get(dishes[0].id), None, "expired at once");
        short.insert(&dishes[1]);
        assert_eq!(short.len(), 1, "expired entries are dropped on insert");
    }
}
