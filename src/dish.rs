//! The dish and its wire format: a small JSON object, or the tutorial's bare integer.

use std::fmt;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The largest dish number; the tutorial draws from 0 to 9.
pub const MAX_DISH: u8 = 9;

/// A dish identifier, unique across processes.
///
/// `origin` is drawn at random once per process and `seq` counts up inside it,
/// so two chef processes on one Redis never mint the same id without a shared
/// counter (a round trip per dish) or clocks that agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DishId {
    /// Random per process; 0 for dishes that arrived without an id.
    pub origin: u64,
    /// Counts up within the process.
    pub seq: u64,
}

/// Sequence numbers are handed out in blocks of this many, one block to one
/// producer thread at a time (block `k` spans `1 + k·ID_BLOCK ..= (k+1)·ID_BLOCK`).
pub const ID_BLOCK: u64 = 1 << 16;

impl DishId {
    /// The id given to a dish that arrived as a bare integer.
    pub const NONE: DishId = DishId { origin: 0, seq: 0 };

    /// The block this id belongs to: ids of one block are made by one
    /// producer thread, one after another, so a gap inside a block seen on a
    /// pub/sub channel is dishes that never arrived.
    pub fn block(&self) -> (u64, u64) {
        (self.origin, self.seq.saturating_sub(1) / ID_BLOCK)
    }

    /// This process's random origin.
    pub fn process_origin() -> u64 {
        static ORIGIN: OnceLock<u64> = OnceLock::new();
        // Zero is reserved for "no id".
        *ORIGIN.get_or_init(|| rand::random::<u64>().max(1))
    }
}

impl fmt::Display for DishId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{}", self.origin, self.seq)
    }
}

impl std::str::FromStr for DishId {
    type Err = DecodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (origin, seq) = s.split_once('-').ok_or(DecodeError::BadId)?;
        if origin.len() != 16 {
            return Err(DecodeError::BadId);
        }
        Ok(DishId {
            origin: u64::from_str_radix(origin, 16).map_err(|_| DecodeError::BadId)?,
            seq: seq.parse().map_err(|_| DecodeError::BadId)?,
        })
    }
}

/// One dish: what a chef puts on the queue and a diner takes off it.
///
/// `Copy` and 32 bytes, so the in-process channel moves it without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dish {
    /// Unique id.
    pub id: DishId,
    /// The dish number, 0 to [`MAX_DISH`].
    pub number: u8,
    /// The chef that made it, counted from 1; 0 when unknown (a bare integer).
    pub chef: u32,
    /// When it was made, in microseconds since the Unix epoch; 0 when unknown.
    pub made_at_us: u64,
    /// Its maker will ask what became of it (the web entry's `POST /dishes`),
    /// so diners record its result; other dishes cost them nothing extra.
    pub track: bool,
}

/// Why a payload is not a dish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not UTF-8, not an integer, not a JSON dish.
    #[error("payload is neither a JSON dish nor an integer")]
    Garbage,
    /// A dish number outside 0–9.
    #[error("dish number {0} is out of range 0-{MAX_DISH}")]
    OutOfRange(i64),
    /// An id that is not `<16 hex digits>-<number>`.
    #[error("dish id is malformed")]
    BadId,
}

#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    id: &'a str,
    dish: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chef: Option<&'a str>,
    made_at: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    track: bool,
}

impl Dish {
    /// A new dish made now by `chef`, with the next id of this process.
    pub fn new(seq: u64, number: u8, chef: u32) -> Dish {
        Dish {
            made_at_us: now_us(),
            ..Dish::unstamped(seq, number, chef)
        }
    }

    /// Like [`Dish::new`] but without the time it was made (`made_at_us` 0),
    /// so its latency is not measured: reading the clock is a fifth of the
    /// cost of a dish on the in-process queue at full speed.
    pub fn unstamped(seq: u64, number: u8, chef: u32) -> Dish {
        Dish {
            id: DishId {
                origin: DishId::process_origin(),
                seq,
            },
            number,
            chef,
            made_at_us: 0,
            track: false,
        }
    }

    /// The wire form: `{"id":"…","dish":7,"chef":"chef-2","made_at":…}`,
    /// `made_at` in microseconds since the Unix epoch.
    pub fn encode(&self) -> String {
        let id = self.id.to_string();
        let chef = (self.chef != 0).then(|| format!("chef-{}", self.chef));
        let wire = Wire {
            id: &id,
            dish: i64::from(self.number),
            chef: chef.as_deref(),
            made_at: self.made_at_us,
            track: self.track,
        };
        // Serializing a struct of strings and integers cannot fail.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Reads a payload: a JSON dish, or a bare integer as `LPUSH queue 7` sends.
    pub fn decode(bytes: &[u8]) -> Result<Dish, DecodeError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| DecodeError::Garbage)?
            .trim();
        if let Ok(n) = text.parse::<i64>() {
            return Ok(Dish {
                id: DishId::NONE,
                number: checked_number(n)?,
                chef: 0,
                made_at_us: 0,
                track: false,
            });
        }
        let wire: Wire<'_> = serde_json::from_str(text).map_err(|_| DecodeError::Garbage)?;
        Ok(Dish {
            id: wire.id.parse()?,
            number: checked_number(wire.dish)?,
            chef: wire
                .chef
                .and_then(|c| c.strip_prefix("chef-"))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            made_at_us: wire.made_at,
            track: wire.track,
        })
    }
}

fn checked_number(n: i64) -> Result<u8, DecodeError> {
    u8::try_from(n)
        .ok()
        .filter(|&d| d <= MAX_DISH)
        .ok_or(DecodeError::OutOfRange(n))
}

/// Microseconds since the Unix epoch, the clock every process shares.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_wire() {
        let d = Dish::new(42, 7, 2);
        let text = d.encode();
        assert!(text.contains("\"dish\":7"), "{text}");
        assert!(text.contains("\"chef\":\"chef-2\""), "{text}");
        assert_eq!(Dish::decode(text.as_bytes()), Ok(d));
    }

    #[test]
    fn only_tracked_dishes_say_so_on_the_wire() {
        let mut d = Dish::new(43, 1, 0);
        assert!(!d.encode().contains("track"), "{}", d.encode());
        d.track = true;
        let text = d.encode();
        assert!(text.ends_with(r#","track":true}"#), "{text}");
        assert_eq!(Dish::decode(text.as_bytes()), Ok(d));
        assert_eq!(std::mem::size_of::<Dish>(), 32);
    }

    #[test]
    fn accepts_a_bare_integer() {
        let d = Dish::decode(b" 7\n").expect("bare integer");
        assert_eq!(
            (d.number, d.id, d.chef, d.made_at_us),
            (7, DishId::NONE, 0, 0)
        );
    }

    #[test]
    fn rejects_garbage_and_out_of_range() {
        assert_eq!(Dish::decode(b"\xff\xfe"), Err(DecodeError::Garbage));
        assert_eq!(Dish::decode(b"soup"), Err(DecodeError::Garbage));
        assert_eq!(Dish::decode(b"{\"dish\":3}"), Err(DecodeError::Garbage));
        assert_eq!(Dish::decode(b"10"), Err(DecodeError::OutOfRange(10)));
        assert_eq!(Dish::decode(b"-1"), Err(DecodeError::OutOfRange(-1)));
        let bad_id = br#"{"id":"x","dish":1,"made_at":0}"#;
        assert_eq!(Dish::decode(bad_id), Err(DecodeError::BadId));
    }

    #[test]
    fn blocks_start_at_one() {
        let id = |seq| DishId { origin: 1, seq };
        assert_eq!(id(1).block(), (1, 0));
        assert_eq!(id(ID_BLOCK).block(), (1, 0));
        assert_eq!(id(ID_BLOCK + 1).block(), (1, 1));
    }

    #[test]
    fn ids_minted_on_many_threads_are_distinct_and_each_block_is_one_threads_run() {
        // Each thread mints through its own `IdBlock`, as chefs and web
        // workers do, all starting at once, and each crosses into a second
        // block. Pub/sub diners count a gap inside a block as lost dishes,
        // which is only sound if a block is one thread's unbroken run.
        use crate::kitchen::IdBlock;
        use std::collections::{HashMap, HashSet};
        use std::sync::{Arc, Barrier, mpsc};
        use std::time::{Duration, Instant};

        const THREADS: usize = 8;
        let per_thread = ID_BLOCK + 10;
        let start = Arc::new(Barrier::new(THREADS));
        let (tx, rx) = mpsc::channel();
        for t in 0..THREADS {
            let (start, tx) = (Arc::clone(&start), tx.clone());
            std::thread::spawn(move || {
                let mut ids = IdBlock::default();
                start.wait();
                let minted: Vec<DishId> = (0..per_thread)
                    .map(|_| Dish::unstamped(ids.next(), 0, 1).id)
                    .collect();
                let _ = tx.send((t, minted));
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut all = HashSet::new();
        let mut owner = HashMap::new();
        for _ in 0..THREADS {
            let left = deadline.saturating_duration_since(Instant::now());
            let (t, minted) = rx.recv_timeout(left).expect("every thread reports its ids");
            for (i, id) in minted.iter().enumerate() {
                assert_eq!(id.origin, DishId::process_origin());
                assert_ne!(id.seq, 0, "0 is no id");
                assert!(all.insert(*id), "{id} minted twice");
                let first_of_block = (id.seq - 1) % ID_BLOCK == 0;
                match i.checked_sub(1).map(|p| minted[p]) {
                    Some(prev) if !first_of_block => {
                        assert_eq!(id.seq, prev.seq + 1, "thread {t}: {prev} then {id}");
                        assert_eq!(id.block(), prev.block(), "thread {t}: {prev} then {id}");
                    }
                    _ => {
                        assert!(first_of_block, "thread {t} starts mid-block at {id}");
                        let was = owner.insert(id.block(), t);
                        assert_eq!(was, None, "block {:?} handed out twice", id.block());
                    }
                }
            }
        }
        assert_eq!(all.len() as u64, THREADS as u64 * per_thread);
    }

    #[test]
    fn the_process_origin_is_nonzero_and_stable_and_ids_print_fixed_width() {
        let origin = DishId::process_origin();
        assert_ne!(origin, 0, "0 is reserved for dishes without an id");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(DishId::process_origin()));
        let elsewhere = rx.recv_timeout(std::time::Duration::from_secs(60));
        assert_eq!(elsewhere, Ok(origin), "one origin for every thread");
        assert_eq!(Dish::new(1, 0, 1).id.origin, origin);
        // A small origin keeps its leading zeros: the parser wants 16 digits.
        let small = DishId { origin: 1, seq: 5 };
        assert_eq!(small.to_string(), "0000000000000001-5");
        assert_eq!("1-5".parse::<DishId>(), Err(DecodeError::BadId));
        for id in [
            small,
            DishId { origin, seq: 1 },
            DishId {
                origin: u64::MAX,
                seq: u64::MAX,
            },
        ] {
            assert_eq!(id.to_string().parse::<DishId>(), Ok(id), "{id}");
        }
    }
}
