//! The dish and its wire format: a small JSON object, or the tutorial's bare integer.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

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

    /// A new id for a dish that came without one (another producer's
    /// payload, which a diner must name to retry or dead-letter it):
    /// unique across processes, and apart from every id a chef mints.
    pub fn fresh() -> DishId {
        // Chefs' blocks count up from 1: they would need 2^32 blocks to get here.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1 << 48);
        DishId {
            origin: DishId::process_origin(),
            seq: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
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

/// What a dish carries: the tutorial's number, any JSON value, or text.
///
/// Cheap to clone: the number needs no allocation (the kitchen's own dishes
/// and the tutorial's `LPUSH queue 7`), and other payloads share one buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A dish number, 0 to [`MAX_DISH`]: the tutorial's dishes.
    Number(u8),
    /// Any other JSON value (an object, an array, a number outside 0–9,
    /// `true`…), as its JSON text.
    Json(Arc<str>),
    /// Text that is not JSON, or a JSON string's text.
    Text(Arc<str>),
}

impl Payload {
    /// The bytes a command reads on its stdin: the number, the JSON text, or the text.
    pub fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            Payload::Number(n) => std::borrow::Cow::Owned(n.to_string().into_bytes()),
            Payload::Json(s) | Payload::Text(s) => std::borrow::Cow::Borrowed(s.as_bytes()),
        }
    }

    /// Its size in bytes, as the limit counts it.
    pub fn len(&self) -> usize {
        match self {
            Payload::Number(_) => 1,
            Payload::Json(s) | Payload::Text(s) => s.len(),
        }
    }

    /// Whether it is empty text.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// As a JSON value, for records and API answers.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Payload::Number(n) => serde_json::Value::from(*n),
            Payload::Json(s) => serde_json::from_str(s).unwrap_or(serde_json::Value::Null),
            Payload::Text(s) => serde_json::Value::from(&**s),
        }
    }

    /// A JSON value as a payload: a number 0–9 is a dish number, a string
    /// is its text, anything else its JSON text.
    pub fn from_json(v: &serde_json::Value) -> Payload {
        match v {
            serde_json::Value::Number(n) => {
                match n.as_u64().filter(|&n| n <= u64::from(MAX_DISH)) {
                    Some(d) => Payload::Number(d as u8),
                    None => Payload::Json(Arc::from(n.to_string())),
                }
            }
            serde_json::Value::String(s) => Payload::Text(Arc::from(s.as_str())),
            other => Payload::Json(Arc::from(other.to_string())),
        }
    }
}

impl Payload {
    /// A payload from JSON text known to parse (an envelope's `dish`), its
    /// spelling kept: a number 0–9 is a dish number, a string is its text.
    fn from_raw(raw: &str) -> Payload {
        match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(serde_json::Value::Number(n))
                if n.as_u64().is_some_and(|n| n <= u64::from(MAX_DISH)) =>
            {
                Payload::Number(n.as_u64().unwrap_or(0) as u8)
            }
            Ok(serde_json::Value::String(s)) => Payload::Text(Arc::from(s)),
            _ => Payload::Json(Arc::from(raw)),
        }
    }

    /// What a producer's text means as a payload: a dish number 0–9, any
    /// other JSON value, a JSON string's text, or else the text itself.
    pub fn read(text: &str) -> Payload {
        let trimmed = text.trim();
        if let Ok(n) = trimmed.parse::<u8>()
            && n <= MAX_DISH
        {
            return Payload::Number(n);
        }
        match serde_json::from_str::<serde_json::Value>(trimmed) {
            Ok(serde_json::Value::String(s)) => Payload::Text(Arc::from(s)),
            Ok(_) => Payload::Json(Arc::from(trimmed)),
            Err(_) => Payload::Text(Arc::from(text)),
        }
    }
}

/// Whether JSON text is an object with the keys of kitchen's envelope.
fn is_envelope(json: &str) -> bool {
    json.starts_with('{')
        && matches!(
            serde_json::from_str::<serde_json::Value>(json),
            Ok(serde_json::Value::Object(o)) if o.contains_key("id") && o.contains_key("made_at")
        )
}

/// How per-dish lines show a payload: the number itself, or a short excerpt
/// on one line.
impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const EXCERPT: usize = 40;
        let text = match self {
            Payload::Number(n) => return write!(f, "{n}"),
            Payload::Json(s) | Payload::Text(s) => s,
        };
        one_line(f, text, EXCERPT)
    }
}

/// Text from outside (a command's stderr, a payload) shown on one line of
/// a terminal: newlines and tabs escaped, other control characters (an
/// escape sequence's ESC) as `?`, at most `max` characters then `…`.
#[derive(Debug, Clone, Copy)]
pub struct OneLine<'a>(pub &'a str, pub usize);

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        one_line(f, self.0, self.1)
    }
}

fn one_line(f: &mut fmt::Formatter<'_>, text: &str, max: usize) -> fmt::Result {
    for (shown, c) in text.chars().enumerate() {
        if shown == max {
            return f.write_str("…");
        }
        match c {
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => f.write_str("?")?,
            c => write!(f, "{c}")?,
        }
    }
    Ok(())
}

/// One dish: what a chef puts on the queue and a diner takes off it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dish {
    /// Unique id.
    pub id: DishId,
    /// What it carries.
    pub payload: Payload,
    /// The chef that made it, counted from 1; 0 when unknown (another producer's).
    pub chef: u32,
    /// When it was made, in microseconds since the Unix epoch; 0 when unknown.
    pub made_at_us: u64,
    /// Its maker will ask what became of it (`POST /dishes`, `kitchen
    /// enqueue`), so diners record its result; other dishes cost them nothing extra.
    pub track: bool,
    /// Which attempt at eating it this is, from 1: a failed dish comes back
    /// with one more, and so does a dish whose diner died holding it.
    pub attempt: u32,
}

/// Why a payload is not a dish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Bytes that are not UTF-8 text.
    #[error("payload is not UTF-8 text")]
    Garbage,
    /// Over the payload size limit.
    #[error("payload of {size} bytes is over the {limit}-byte limit (--max-payload)")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Looks like kitchen's own envelope (`{"id":…`) but does not read as one.
    #[error("corrupt kitchen envelope: {0}")]
    Corrupt(String),
    /// An id that is not `<16 hex digits>-<number>`.
    #[error("dish id is malformed")]
    BadId,
}

#[derive(Deserialize)]
struct Wire<'a> {
    id: &'a str,
    #[serde(borrow)]
    dish: &'a serde_json::value::RawValue,
    #[serde(default)]
    chef: Option<&'a str>,
    made_at: u64,
    #[serde(default)]
    track: bool,
    #[serde(default)]
    attempt: u32,
    /// Another producer's payload, wrapped by a script that had to count
    /// an attempt on it (a diner died holding it): read as it came.
    #[serde(default)]
    raw: Option<String>,
}

/// What kitchen's own envelope starts with: a payload that begins so and
/// does not read as one is corrupt, not another producer's text.
const ENVELOPE: &str = "{\"id\":";

/// Room for the envelope's keys (id, chef, time made) around a payload.
const ENVELOPE_KEYS: usize = 256;

impl Dish {
    /// A new dish number `number` made now by `chef`, with sequence `seq` of this process.
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
        Dish::with_payload(seq, Payload::Number(number), chef)
    }

    /// A dish carrying `payload`, made now by `chef` (0: not a chef).
    pub fn carrying(seq: u64, payload: Payload, chef: u32) -> Dish {
        Dish {
            made_at_us: now_us(),
            ..Dish::with_payload(seq, payload, chef)
        }
    }

    fn with_payload(seq: u64, payload: Payload, chef: u32) -> Dish {
        Dish {
            id: DishId {
                origin: DishId::process_origin(),
                seq,
            },
            payload,
            chef,
            made_at_us: 0,
            track: false,
            attempt: 1,
        }
    }

    /// The tutorial's dish number, if that is what it carries.
    pub fn number(&self) -> Option<u8> {
        match self.payload {
            Payload::Number(n) => Some(n),
            _ => None,
        }
    }

    /// The wire form: `{"id":"…","dish":7,"chef":"chef-2","made_at":…}`,
    /// `made_at` in microseconds since the Unix epoch; `dish` is the payload
    /// as JSON (text as a JSON string).
    pub fn encode(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(96 + self.payload.len());
        // Writing to a String cannot fail; ids and chef names need no escaping.
        let _ = write!(out, r#"{{"id":"{}","dish":"#, self.id);
        match &self.payload {
            Payload::Number(n) => {
                let _ = write!(out, "{n}");
            }
            // Read (or written) by serde_json: valid JSON already.
            Payload::Json(s) => out.push_str(s),
            Payload::Text(s) => out.push_str(&serde_json::Value::from(&**s).to_string()),
        }
        if self.chef != 0 {
            let _ = write!(out, r#","chef":"chef-{}""#, self.chef);
        }
        let _ = write!(out, r#","made_at":{}"#, self.made_at_us);
        if self.track {
            out.push_str(r#","track":true"#);
        }
        // Last, so a script can count an attempt on the text (see list.rs).
        if self.attempt > 1 {
            let _ = write!(out, r#","attempt":{}"#, self.attempt);
        }
        out.push('}');
        out
    }

    /// Reads a payload with no size limit (see [`Dish::decode_within`]).
    pub fn decode(bytes: &[u8]) -> Result<Dish, DecodeError> {
        Dish::decode_within(bytes, usize::MAX)
    }

    /// Reads a payload of at most `limit` bytes: kitchen's own envelope, or
    /// what another producer sent (a bare integer as `LPUSH queue 7`, any
    /// other JSON value, or text), which becomes a dish with a fresh id
    /// ([`DishId::NONE`]; the backend gives it a place).
    pub fn decode_within(bytes: &[u8], limit: usize) -> Result<Dish, DecodeError> {
        let too_large = |size| DecodeError::TooLarge { size, limit };
        // The limit is the payload's: an envelope may add its keys, and a
        // text payload its JSON escapes, but not without bound.
        let envelope_room = limit
            .saturating_add(limit / 8)
            .saturating_add(ENVELOPE_KEYS);
        let ours = bytes.trim_ascii_start().starts_with(ENVELOPE.as_bytes());
        if bytes.len() > if ours { envelope_room } else { limit } {
            return Err(too_large(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::Garbage)?;
        let trimmed = text.trim();
        if ours {
            let dish = Dish::decode_envelope(trimmed)?;
            if dish.payload.len() > limit {
                return Err(too_large(dish.payload.len()));
            }
            return Ok(dish);
        }
        let payload = match Payload::read(text) {
            // A JSON object that is ours with its keys in another order.
            Payload::Json(j) if is_envelope(&j) => return Dish::decode_envelope(trimmed),
            p => p,
        };
        Ok(Dish {
            id: DishId::NONE,
            payload,
            chef: 0,
            made_at_us: 0,
            track: false,
            attempt: 1,
        })
    }

    fn decode_envelope(text: &str) -> Result<Dish, DecodeError> {
        let wire: Wire<'_> =
            serde_json::from_str(text).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
        Ok(Dish {
            id: wire.id.parse()?,
            payload: match &wire.raw {
                Some(raw) => Payload::read(raw),
                None => Payload::from_raw(wire.dish.get()),
            },
            chef: wire
                .chef
                .and_then(|c| c.strip_prefix("chef-"))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            made_at_us: wire.made_at,
            track: wire.track,
            attempt: wire.attempt.max(1),
        })
    }
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
    }

    #[test]
    fn attempts_after_the_first_travel_last_on_the_wire() {
        let mut d = Dish::new(44, 3, 1);
        assert!(!d.encode().contains("attempt"), "{}", d.encode());
        d.attempt = 3;
        let text = d.encode();
        assert!(text.ends_with(r#","attempt":3}"#), "{text}");
        assert_eq!(Dish::decode(text.as_bytes()), Ok(d));
        // Another producer's payload, wrapped by a script that counted an attempt.
        let wrapped = br#"{"id":"0000000000000000-5","dish":null,"raw":"{\"task\":1}","made_at":0,"attempt":2}"#;
        let w = Dish::decode(wrapped).expect("a wrapped payload");
        assert_eq!(w.payload, Payload::Json(Arc::from(r#"{"task":1}"#)));
        assert_eq!((w.attempt, w.id.seq), (2, 5));
    }

    #[test]
    fn fresh_ids_are_distinct_and_apart_from_chefs() {
        let (a, b) = (DishId::fresh(), DishId::fresh());
        assert_ne!(a, b);
        assert_eq!(a.origin, DishId::process_origin());
        assert!(a.seq >= 1 << 48);
    }

    #[test]
    fn accepts_a_bare_integer() {
        let d = Dish::decode(b" 7\n").expect("bare integer");
        assert_eq!(
            (d.number(), d.id, d.chef, d.made_at_us),
            (Some(7), DishId::NONE, 0, 0)
        );
    }

    #[test]
    fn another_producers_json_and_text_are_dishes() {
        let p = |b: &[u8]| Dish::decode(b).map(|d| (d.payload, d.id));
        let json = |s: &str| Payload::Json(Arc::from(s));
        let text = |s: &str| Payload::Text(Arc::from(s));
        assert_eq!(
            p(br#"{"dish":3}"#),
            Ok((json(r#"{"dish":3}"#), DishId::NONE))
        );
        assert_eq!(p(b"10"), Ok((json("10"), DishId::NONE)));
        assert_eq!(p(b"-1"), Ok((json("-1"), DishId::NONE)));
        assert_eq!(p(b"soup"), Ok((text("soup"), DishId::NONE)));
        assert_eq!(p(b"\"soup\""), Ok((text("soup"), DishId::NONE)));
        assert_eq!(p(b" two words\n"), Ok((text(" two words\n"), DishId::NONE)));
    }

    #[test]
    fn only_what_cannot_be_a_dish_is_refused() {
        assert_eq!(Dish::decode(b"\xff\xfe"), Err(DecodeError::Garbage));
        let bad_id = br#"{"id":"x","dish":1,"made_at":0}"#;
        assert_eq!(Dish::decode(bad_id), Err(DecodeError::BadId));
        let cut = br#"{"id":"00000000000000ab-1","dish":1,"ma"#;
        assert!(matches!(Dish::decode(cut), Err(DecodeError::Corrupt(_))));
        assert_eq!(
            Dish::decode_within(b"12345", 4),
            Err(DecodeError::TooLarge { size: 5, limit: 4 })
        );
    }

    #[test]
    fn any_payload_round_trips_and_shows_an_excerpt() {
        for payload in [
            Payload::Json(Arc::from(r#"{"task":"resize","w":64}"#)),
            Payload::Json(Arc::from("[1,2,3]")),
            Payload::Text(Arc::from("line one\nline \"two\" ünïcode")),
        ] {
            let d = Dish::carrying(9, payload.clone(), 0);
            assert_eq!(
                Dish::decode(d.encode().as_bytes()),
                Ok(d.clone()),
                "{}",
                d.encode()
            );
        }
        let long = Payload::Text(Arc::from("x".repeat(100).as_str()));
        assert_eq!(long.to_string(), format!("{}…", "x".repeat(40)));
        assert_eq!(Payload::Text(Arc::from("a\nb")).to_string(), "a\\nb");
        assert_eq!(Payload::Number(7).to_string(), "7");
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
