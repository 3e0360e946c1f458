//! Dishes set aside from the in-process queue: failed ones waiting out
//! their retry delay (a delay queue), and dead ones (bounded).
//!
//! Waiting dishes never go back through the channel: a diner takes a due
//! one before the channel, so a retry never waits for room, and a chef
//! blocked on a full channel cannot hold back a kitchen whose other dishes
//! all wait (the in-process form of "retries do not count toward
//! `--capacity`").

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::dish::{Dish, now_us};
use crate::vocab::{DeadError, DeadLetter, DeadLetters, Which};

/// How much of a payload a dead letter shows.
const KEEP: usize = 4 * 1024;

/// The dishes set aside, shared by every consumer of one queue.
#[derive(Debug)]
pub(super) struct Aside {
    waiting: Mutex<BinaryHeap<Waiting>>,
    /// When the first waiting dish is due (µs since the epoch), `u64::MAX`
    /// when none waits: one relaxed load tells a diner there is nothing.
    next_due: AtomicU64,
    /// Orders dishes due at the same µs, first set aside first.
    order: AtomicU64,
    /// Newest first.
    dead: Mutex<VecDeque<Buried>>,
    trimmed: AtomicU64,
    dead_max: usize,
}

/// A failed dish and when it is due.
#[derive(Debug)]
struct Waiting {
    due_us: u64,
    order: u64,
    dish: Dish,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        (self.due_us, self.order) == (other.due_us, other.order)
    }
}

impl Eq for Waiting {}

impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Waiting {
    /// Reversed: the heap's top is the earliest due.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.due_us, other.order).cmp(&(self.due_us, self.order))
    }
}

/// A dead dish: its letter, and the dish itself for a requeue.
#[derive(Debug)]
struct Buried {
    letter: DeadLetter,
    dish: Dish,
}

impl Aside {
    pub(super) fn new(dead_max: usize) -> Aside {
        Aside {
            waiting: Mutex::new(BinaryHeap::new()),
            next_due: AtomicU64::new(u64::MAX),
            order: AtomicU64::new(0),
            dead: Mutex::new(VecDeque::new()),
            trimmed: AtomicU64::new(0),
            dead_max: dead_max.max(1),
        }
    }

    /// Whether any dish waits for a retry.
    #[inline(always)]
    pub(super) fn any_waiting(&self) -> bool {
        self.next_due.load(Ordering::Relaxed) != u64::MAX
    }

    /// How many dishes wait for a retry.
    pub(super) fn waiting(&self) -> usize {
        self.waiting.lock().len()
    }

    /// How long to block on the channel at most: `poll`, or less when a
    /// retry falls due sooner.
    pub(super) fn wait(&self, poll: Duration) -> Duration {
        let next = self.next_due.load(Ordering::Relaxed);
        if next == u64::MAX {
            return poll;
        }
        Duration::from_micros(next.saturating_sub(now_us())).clamp(Duration::from_millis(1), poll)
    }

    /// The earliest waiting dish, if it is due.
    pub(super) fn due(&self) -> Option<Dish> {
        let now = now_us();
        if now < self.next_due.load(Ordering::Relaxed) {
            return None;
        }
        let mut heap = self.waiting.lock();
        let dish = match heap.peek() {
            Some(w) if w.due_us <= now => heap.pop().map(|w| w.dish),
            _ => None,
        };
        self.next_due.store(
            heap.peek().map_or(u64::MAX, |w| w.due_us),
            Ordering::Relaxed,
        );
        dish
    }

    /// Sets `dish` aside until `delay` has passed.
    pub(super) fn retry(&self, dish: Dish, delay: Duration) {
        let due_us = now_us().saturating_add(u64::try_from(delay.as_micros()).unwrap_or(u64::MAX));
        let order = self.order.fetch_add(1, Ordering::Relaxed);
        let mut heap = self.waiting.lock();
        heap.push(Waiting {
            due_us,
            order,
            dish,
        });
        self.next_due.store(
            heap.peek().map_or(u64::MAX, |w| w.due_us),
            Ordering::Relaxed,
        );
    }

    /// Makes `dish` a dead letter, trimming the oldest beyond the bound.
    pub(super) fn bury(&self, dish: &Dish, reason: &str) {
        let bytes = dish.payload.bytes();
        let letter = DeadLetter {
            id: dish.id.to_string(),
            payload: String::from_utf8_lossy(&bytes[..bytes.len().min(KEEP)]).into_owned(),
            bytes: bytes.len(),
            reason: reason.to_owned(),
            attempts: dish.attempt,
            at_us: now_us(),
        };
        let mut dead = self.dead.lock();
        dead.push_front(Buried {
            letter,
            dish: dish.clone(),
        });
        while dead.len() > self.dead_max {
            dead.pop_back();
            self.trimmed.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn dead_letters(&self, limit: usize) -> DeadLetters {
        let dead = self.dead.lock();
        DeadLetters {
            entries: dead.iter().take(limit).map(|b| b.letter.clone()).collect(),
            total: dead.len(),
            trimmed: self.trimmed.load(Ordering::Relaxed),
        }
    }

    /// Takes the letters `which` names out of the dead, all or none.
    fn take_dead(&self, which: &Which) -> Result<Vec<Buried>, DeadError> {
        let mut dead = self.dead.lock();
        let ids = match which {
            Which::All => return Ok(dead.drain(..).collect()),
            Which::Ids(ids) => ids,
        };
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| !dead.iter().any(|b| &b.letter.id == *id))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(DeadError::NotDead(missing));
        }
        let (taken, kept): (Vec<Buried>, Vec<Buried>) =
            dead.drain(..).partition(|b| ids.contains(&b.letter.id));
        dead.extend(kept);
        Ok(taken)
    }

    /// Puts dead letters back, due at once, with fresh attempts.
    pub(super) fn requeue(&self, which: &Which) -> Result<usize, DeadError> {
        let taken = self.take_dead(which)?;
        let n = taken.len();
        // Oldest first, as they died.
        for b in taken.into_iter().rev() {
            self.retry(
                Dish {
                    attempt: 1,
                    ..b.dish
                },
                Duration::ZERO,
            );
        }
        Ok(n)
    }

    pub(super) fn purge(&self, which: &Which) -> Result<usize, DeadError> {
        self.take_dead(which).map(|t| t.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_come_due_in_order_and_the_dead_are_bounded() {
        let a = Aside::new(2);
        assert!(!a.any_waiting());
        a.retry(Dish::new(1, 1, 1), Duration::from_secs(3600));
        a.retry(Dish::new(2, 2, 1), Duration::ZERO);
        assert!(a.any_waiting());
        assert_eq!(a.due().map(|d| d.id.seq), Some(2));
        assert_eq!(a.due(), None, "the other is not due for an hour");
        assert_eq!(a.waiting(), 1);
        assert!(a.wait(Duration::from_millis(100)) <= Duration::from_millis(100));
        for seq in 10..13 {
            a.bury(
                &Dish {
                    attempt: 3,
                    ..Dish::new(seq, 0, 1)
                },
                "exit status 1",
            );
        }
        let d = a.dead_letters(10);
        assert_eq!((d.entries.len(), d.total, d.trimmed), (2, 2, 1));
        assert_eq!(d.entries[0].attempts, 3);
        let newest = d.entries[0].id.clone();
        assert!(matches!(
            a.requeue(&Which::Ids(vec![newest.clone(), "nope".into()])),
            Err(DeadError::NotDead(m)) if m == ["nope"]
        ));
        assert_eq!(a.dead_letters(10).total, 2, "all or nothing");
        assert_eq!(a.requeue(&Which::Ids(vec![newest])).ok(), Some(1));
        let back = a.due().expect("requeued dishes are due at once");
        assert_eq!((back.id.seq, back.attempt), (12, 1));
        assert_eq!(a.purge(&Which::All).ok(), Some(1));
        assert_eq!(a.dead_letters(10).total, 0);
    }
}
