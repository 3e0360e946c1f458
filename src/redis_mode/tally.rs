//! What one diner has done, for the operator's view: counts its connection
//! bumps and its heartbeat writes into Redis as the heartbeat's value.
//!
//! The heartbeat key (`Q:diner:<id>`) has always held a short note (once
//! `pid N`); it now holds one JSON object, refreshed at every beat:
//! `{"pid":N,"eaten":E,"failed":F,"held_since_us":T}`, `held_since_us` being
//! when the dish in hand was taken (µs since the epoch; `null` when the diner
//! holds nothing). `kitchen info` and `info --watch` read it; nothing else
//! depends on it, so an older diner's `pid N` reads as "no counts".

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// One diner's counters, shared by its connection (which bumps them) and
/// its heartbeat thread (which writes them to Redis).
#[derive(Debug, Default)]
pub(crate) struct Tally {
    eaten: AtomicU64,
    failed: AtomicU64,
    /// µs since the epoch; 0 when nothing is in hand.
    held_since_us: AtomicU64,
}

impl Tally {
    /// A dish was handed out to be eaten, now.
    pub fn took(&self) {
        self.held_since_us
            .store(crate::dish::now_us().max(1), Ordering::Relaxed);
    }

    /// The dish in hand was eaten (acknowledged).
    pub fn ate(&self) {
        self.eaten.fetch_add(1, Ordering::Relaxed);
        self.put_down();
    }

    /// The dish in hand failed for good (it went to the dead letters).
    pub fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.put_down();
    }

    /// Nothing is in hand any more (eaten, failed or given back).
    pub fn put_down(&self) {
        self.held_since_us.store(0, Ordering::Relaxed);
    }

    /// The heartbeat's value now.
    pub fn beat_value(&self) -> String {
        let since = self.held_since_us.load(Ordering::Relaxed);
        let note = Note {
            pid: Some(std::process::id()),
            eaten: self.eaten.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            held_since_us: (since != 0).then_some(since),
        };
        // Numbers only: serializing cannot fail.
        serde_json::to_string(&note).unwrap_or_default()
    }
}

/// A heartbeat's value, as written by [`Tally::beat_value`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// The diner's process id.
    pub pid: Option<u32>,
    /// Dishes it ate (acknowledged) since it started.
    pub eaten: u64,
    /// Dishes that failed in its hands since it started.
    pub failed: u64,
    /// When it took the dish it holds (µs since the epoch); `None` when it
    /// holds nothing.
    pub held_since_us: Option<u64>,
}

impl Note {
    /// Reads a heartbeat's value; `None` for one without counts (an older
    /// diner's `pid N`).
    pub fn parse(value: &str) -> Option<Note> {
        serde_json::from_str(value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_round_trips_and_tracks_what_is_in_hand() {
        let t = Tally::default();
        let idle = Note::parse(&t.beat_value()).unwrap();
        assert_eq!((idle.eaten, idle.failed, idle.held_since_us), (0, 0, None));
        t.took();
        assert!(
            Note::parse(&t.beat_value())
                .unwrap()
                .held_since_us
                .is_some()
        );
        t.ate();
        t.took();
        t.failed();
        let n = Note::parse(&t.beat_value()).unwrap();
        assert_eq!((n.eaten, n.failed, n.held_since_us), (1, 1, None));
        assert_eq!(n.pid, Some(std::process::id()));
    }

    #[test]
    fn an_older_diners_note_has_no_counts() {
        assert_eq!(Note::parse("pid 42"), None);
    }
}
