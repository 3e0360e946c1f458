//! What became of each dish queued through the web API (`POST /dishes`).
//!
//! Only dishes with [`Dish::track`] set are recorded, so the tutorial's
//! `/prodcons` dishes and the kitchen's own cost nothing here. Records live
//! for a TTL: in the web entry's memory on the local backend
//! ([`LocalResults`], also bounded in count), or in Redis beside the queue,
//! written by whichever diner process eats the dish (the Redis backend's own
//! store). [`crate::queue::Results`] picks between them.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::dish::{Dish, DishId, now_us};

/// Where a dish is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting on the queue.
    Queued,
    /// A diner has it.
    Eating,
    /// Done: its command exited 0 (or its handler returned `Ok`).
    Eaten,
    /// Its last attempt failed, and it is dead (`kitchen dead list`);
    /// `error` says why.
    Failed,
    /// An attempt failed; it waits until `retry_at` to be tried again.
    Retrying,
    /// A diner could not read it. (A payload no diner can read has no id to
    /// file it under, so in practice a tracked dish never ends here.)
    Rejected,
}

/// The longest payload a record repeats (`dish`); a larger one is `null`
/// there, so a record stays small whatever was queued.
pub const RECORD_PAYLOAD_MAX: usize = 4 * 1024;

/// The record `GET /dishes/{id}` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DishResult {
    /// The dish id.
    pub id: String,
    /// The payload (up to [`RECORD_PAYLOAD_MAX`] bytes; else `null`).
    pub dish: Option<serde_json::Value>,
    /// Where it is.
    pub status: Status,
    /// Attempts so far (1 while the first runs).
    #[serde(default)]
    pub attempts: u32,
    /// Which diner has or had it (`diner-1`), once one does.
    pub diner: Option<String>,
    /// What its command printed (capped), once eaten.
    #[serde(default)]
    pub output: Option<String>,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
    /// When it was made, microseconds since the Unix epoch.
    pub made_at: u64,
    /// When a diner started on it.
    #[serde(default)]
    pub started_at: Option<u64>,
    /// When it was eaten, microseconds since the Unix epoch.
    pub eaten_at: Option<u64>,
    /// When it ended, eaten or failed.
    #[serde(default)]
    pub finished_at: Option<u64>,
    /// While it is retrying: when its next attempt is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<u64>,
}

impl DishResult {
    /// A dish just queued.
    pub fn queued(dish: &Dish) -> DishResult {
        DishResult {
            id: dish.id.to_string(),
            dish: (dish.payload.len() <= RECORD_PAYLOAD_MAX).then(|| dish.payload.to_json()),
            status: Status::Queued,
            attempts: 0,
            diner: None,
            output: None,
            error: None,
            made_at: dish.made_at_us,
            started_at: None,
            eaten_at: None,
            finished_at: None,
            retry_at: None,
        }
    }

    /// `dish` in a diner's hands, on its `attempt`th try.
    pub fn eating(dish: &Dish, diner: &str, attempt: u32, started_at: u64) -> DishResult {
        DishResult {
            status: Status::Eating,
            attempts: attempt,
            diner: Some(diner.to_owned()),
            started_at: Some(started_at),
            ..DishResult::queued(dish)
        }
    }

    /// `dish` eaten just now, its command having printed `output`.
    pub fn eaten(
        dish: &Dish,
        diner: &str,
        attempt: u32,
        started_at: u64,
        output: Option<String>,
    ) -> DishResult {
        let now = now_us();
        DishResult {
            status: Status::Eaten,
            output,
            eaten_at: Some(now),
            finished_at: Some(now),
            ..DishResult::eating(dish, diner, attempt, started_at)
        }
    }

    /// `dish` failed just now, for `reason`.
    pub fn failed(
        dish: &Dish,
        diner: &str,
        attempt: u32,
        started_at: u64,
        reason: &str,
    ) -> DishResult {
        DishResult {
            status: Status::Failed,
            error: Some(reason.to_owned()),
            finished_at: Some(now_us()),
            ..DishResult::eating(dish, diner, attempt, started_at)
        }
    }

    /// `dish` failed attempt `attempt` just now, for `reason`, and waits
    /// until `retry_at` (µs) for the next.
    pub fn retrying(
        dish: &Dish,
        diner: &str,
        attempt: u32,
        started_at: u64,
        reason: &str,
        retry_at: u64,
    ) -> DishResult {
        DishResult {
            status: Status::Retrying,
            error: Some(reason.to_owned()),
            retry_at: Some(retry_at),
            ..DishResult::eating(dish, diner, attempt, started_at)
        }
    }

    /// As JSON.
    pub fn to_json(&self) -> String {
        // Strings, numbers and JSON values only: serializing cannot fail.
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
        let mut g = self.inner.lock();
        let Inner { map, order } = &mut *g;
        map.remove(&id);
        // The order slot stays behind, to be skipped when it reaches the
        // front; but a record kept for its whole TTL at the front would let
        // millions of refused dishes pile up behind it. Compacting once the
        // slots outnumber the records twice over keeps memory flat at
        // amortised O(1) per removal.
        if order.len() > 2 * map.len() + 64 {
            order.retain(|(id, at)| map.get(id).is_some_and(|(_, t)| t == at));
        }
    }

    /// Replaces the record of a tracked dish; untracked ones are ignored.
    pub fn set(&self, id: DishId, record: DishResult) {
        self.update(id, |r| *r = record);
    }

    /// Updates a tracked dish; untracked ones are ignored.
    pub fn update(&self, id: DishId, f: impl FnOnce(&mut DishResult)) {
        if let Some((r, _)) = self.inner.lock().map.get_mut(&id) {
            f(r);
        }
    }

    /// Order slots held, live or stale (for tests of the bound).
    pub fn slots(&self) -> usize {
        self.inner.lock().order.len()
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
    fn refused_dishes_leave_no_slots_behind() {
        let r = LocalResults::new(Duration::from_secs(60), 10);
        let kept = Dish::new(1, 4, 0);
        r.insert(&kept);
        for i in 0..100_000 {
            let d = Dish::new(10 + i, 1, 0);
            r.insert(&d);
            r.remove(d.id);
        }
        assert_eq!(r.len(), 1);
        assert!(r.slots() <= 2 * r.len() + 65, "{} slots", r.slots());
        assert!(r.get(kept.id).is_some(), "compaction keeps live records");
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
