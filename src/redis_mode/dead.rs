//! Dead letters in Redis: written by diners (a dish whose last attempt
//! failed, a dish whose diners kept dying, a payload that is not a dish),
//! read, requeued and purged by `kitchen dead` and the web page.
//!
//! They live in one list beside the queue (`Q:dead`, or `S:dead` beside a
//! stream), newest on the left, each a JSON object:
//!
//! ```json
//! {"id":"…","payload":"…","bytes":12,"reason":"exit status 1: …","attempts":3,"at":1700000000000000,"wire":"{\"id\":…}"}
//! ```
//!
//! `payload` is lossy text, at most [`KEEP`] bytes of it, so an oversized
//! payload does not fill Redis twice. `wire` is the whole dish as a diner
//! reads it, with fresh attempts, kept only for dishes that were read (so
//! within `--max-payload`): it is what a requeue puts back, byte for byte.
//! A payload that could not be read has no `wire`, and cannot be requeued.
//!
//! **Bounded.** Every write is a script that pushes, trims the list to
//! `--dead-max` and adds what it trimmed to `Q:dead:trimmed`, for `kitchen
//! info`. **Atomic.** Requeue and purge are one script per command: it finds
//! every id asked for, and either moves (or deletes) them all or, when one
//! is missing, changes nothing; so a dish is never both dead and queued, nor
//! neither, whatever happens to the command.

use redis::{RedisError, Script, Value};

use super::cluster::Con;

use crate::dish::Dish;
use crate::vocab::{DeadLetter, DeadLetters};

/// How much of a payload a dead letter keeps as text.
pub(crate) const KEEP: usize = 4 * 1024;

/// KEYS: processing list (or any key, unused when ARGV[1] is empty), dead,
/// trimmed counter. ARGV: the payload to take out of the processing list
/// (empty: none), the letter, the most letters kept.
/// Moves a payload from a diner's hands to the dead letters, trimming the
/// oldest beyond the bound. LREM first: Redis allows it when out of memory,
/// and then lets the script finish (see list.rs).
pub(crate) const BURY: &str = r"
if ARGV[1] ~= '' then redis.call('LREM', KEYS[1], -1, ARGV[1]) end
local n = redis.call('LPUSH', KEYS[2], ARGV[2])
local most = tonumber(ARGV[3])
if n > most then
  redis.call('LTRIM', KEYS[2], 0, most - 1)
  redis.call('INCRBY', KEYS[3], n - most)
end
return n
";

/// KEYS: dead, target (the list, or the stream). ARGV: what ('list',
/// 'stream': requeue onto that; 'purge'), all ('1') or the ids that follow.
/// Returns {'ok', how many} or, changing nothing, {'missing', ids…} or
/// {'unrequeueable', ids…}. Requeued dishes go where new ones go (the
/// list's left end, the stream's end), oldest first; `--all` leaves behind
/// the letters that cannot be requeued.
const MANAGE: &str = r"
local dead, target, what, all = KEYS[1], KEYS[2], ARGV[1], ARGV[2] == '1'
local want, found, picked, bare, keep = {}, {}, {}, {}, {}
for i = 3, #ARGV do want[ARGV[i]] = true end
for _, e in ipairs(redis.call('LRANGE', dead, 0, -1)) do
  local ok, v = pcall(cjson.decode, e)
  local id = ok and type(v) == 'table' and type(v['id']) == 'string' and v['id'] or nil
  local taken = false
  if all or (id and want[id]) then
    if id then found[id] = true end
    local wire = ok and type(v) == 'table' and type(v['wire']) == 'string' and v['wire'] or nil
    if what == 'purge' or wire then
      table.insert(picked, {e, wire})
      taken = true
    elseif not all then
      table.insert(bare, id)
    end
  end
  if not taken then table.insert(keep, e) end
end
if not all then
  local missing = {}
  for i = 3, #ARGV do
    if not found[ARGV[i]] then table.insert(missing, ARGV[i]) end
  end
  if #missing > 0 then return {'missing', unpack(missing)} end
  if #bare > 0 then return {'unrequeueable', unpack(bare)} end
end
-- The letters left are written back whole (DEL first: Redis allows it when
-- out of memory), one pass over the list where an LREM per letter would
-- scan it once each; in chunks, as Lua unpacks no more than ~8 000 values.
if #picked > 0 then
  redis.call('DEL', dead)
  for i = 1, #keep, 1000 do
    redis.call('RPUSH', dead, unpack(keep, i, math.min(i + 999, #keep)))
  end
end
for i = #picked, 1, -1 do
  if what == 'list' then
    redis.call('LPUSH', target, picked[i][2])
  elseif what == 'stream' then
    redis.call('XADD', target, '*', 'dish', picked[i][2])
  end
end
return {'ok', #picked}
";

/// The dead letter of a dish whose last attempt failed: its wire kept
/// with fresh attempts, so a requeue starts it over whole.
pub(crate) fn failed_letter(dish: &Dish, reason: &str) -> String {
    let wire = Dish {
        attempt: 1,
        ..dish.clone()
    }
    .encode();
    letter(
        &dish.id.to_string(),
        &dish.payload.bytes(),
        reason,
        dish.attempt,
        Some(&wire),
    )
}

/// A dead letter as stored (see the module docs); `wire` is the dish to
/// requeue, when it could be read.
pub(crate) fn letter(
    id: &str,
    payload: &[u8],
    reason: &str,
    attempts: u32,
    wire: Option<&str>,
) -> String {
    let kept = &payload[..payload.len().min(KEEP)];
    let mut v = serde_json::json!({
        "id": id,
        "payload": String::from_utf8_lossy(kept),
        "bytes": payload.len(),
        "reason": reason,
        "attempts": attempts,
        "at": crate::dish::now_us(),
    });
    if let (Some(wire), Some(o)) = (wire, v.as_object_mut()) {
        o.insert("wire".into(), wire.into());
    }
    v.to_string()
}

/// Where the requeued go.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// LPUSH onto this list.
    List(String),
    /// XADD onto this stream.
    Stream(String),
}

/// The dead letters of one queue or stream.
#[derive(Debug)]
pub(crate) struct Morgue {
    dead: String,
    trimmed: String,
    target: Target,
    manage: Script,
}

/// What a requeue or purge script said.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Managed {
    /// Done, to this many.
    Done(usize),
    /// Nothing done: these ids are not dead letters.
    Missing(Vec<String>),
    /// Nothing done: these cannot be requeued.
    Unrequeueable(Vec<String>),
}

impl Morgue {
    pub(crate) fn new(dead: String, trimmed: String, target: Target) -> Morgue {
        Morgue {
            dead,
            trimmed,
            target,
            manage: Script::new(MANAGE),
        }
    }

    /// The newest `limit` letters, how many there are, how many were trimmed.
    pub(crate) fn read(&self, c: &mut Con, limit: usize) -> Result<DeadLetters, RedisError> {
        if limit == 0 {
            // The counts only: `/stats` asks every second, and the letters
            // (each with its whole dish) may be many.
            let (total, trimmed): (usize, Option<u64>) = redis::pipe()
                .cmd("LLEN")
                .arg(&self.dead)
                .cmd("GET")
                .arg(&self.trimmed)
                .query(c)?;
            return Ok(DeadLetters {
                entries: Vec::new(),
                total,
                trimmed: trimmed.unwrap_or(0),
            });
        }
        let mut pipe = redis::pipe();
        pipe.cmd("LRANGE")
            .arg(&self.dead)
            .arg(0)
            // LRANGE 0 -1 is everything: a limit of 0 asks for none.
            .arg(i64::try_from(limit).unwrap_or(i64::MAX) - 1)
            .cmd("LLEN")
            .arg(&self.dead)
            .cmd("GET")
            .arg(&self.trimmed);
        let (raw, total, trimmed): (Vec<Vec<u8>>, usize, Option<u64>) = pipe.query(c)?;
        let entries = if limit == 0 {
            Vec::new()
        } else {
            raw.iter().map(|r| parse(r)).collect()
        };
        Ok(DeadLetters {
            entries,
            total,
            trimmed: trimmed.unwrap_or(0),
        })
    }

    /// The ids of every letter held here.
    pub(crate) fn ids(&self, c: &mut Con) -> Result<Vec<String>, RedisError> {
        let raw: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(&self.dead)
            .arg(0)
            .arg(-1)
            .query(c)?;
        Ok(raw.iter().map(|r| parse(r).id).collect())
    }

    /// Requeues (`requeue`) or purges the letters `ids` names (`None`: all).
    pub(crate) fn manage(
        &self,
        c: &mut Con,
        requeue: bool,
        ids: Option<&[String]>,
    ) -> Result<Managed, RedisError> {
        let (what, target) = match (&self.target, requeue) {
            (_, false) => ("purge", &self.dead),
            (Target::List(q), true) => ("list", q),
            (Target::Stream(s), true) => ("stream", s),
        };
        let mut inv = self.manage.prepare_invoke();
        inv.key(&self.dead)
            .key(target)
            .arg(what)
            .arg(if ids.is_none() { "1" } else { "0" });
        for id in ids.unwrap_or_default() {
            inv.arg(id);
        }
        let reply: Vec<Value> = inv.invoke(c)?;
        let mut it = reply.into_iter();
        let status = it.next().and_then(|v| super::stream::text(&v));
        Ok(match status.as_deref() {
            Some("missing") => {
                Managed::Missing(it.filter_map(|v| super::stream::text(&v)).collect())
            }
            Some("unrequeueable") => {
                Managed::Unrequeueable(it.filter_map(|v| super::stream::text(&v)).collect())
            }
            _ => Managed::Done(
                it.next()
                    .and_then(|v| super::stream::int(&v))
                    .and_then(|n| usize::try_from(n).ok())
                    .unwrap_or(0),
            ),
        })
    }
}

/// One stored letter; what it lacks (letters from before ids) reads as
/// empty, and a letter that is not JSON shows as its own payload.
fn parse(raw: &[u8]) -> DeadLetter {
    let text = String::from_utf8_lossy(raw);
    let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(&text) else {
        return DeadLetter {
            id: String::new(),
            payload: text.chars().take(KEEP).collect(),
            bytes: raw.len(),
            reason: "not a dead letter kitchen wrote".to_owned(),
            attempts: 0,
            at_us: 0,
        };
    };
    let s = |k: &str| o.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    let n = |k: &str| o.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    // A letter written by a script (a poison dish) keeps its wire as the
    // payload: show what the dish carries, as the others do.
    let from_wire = o
        .get("wire")
        .and_then(|w| w.as_str())
        .and_then(|w| Dish::decode(w.as_bytes()).ok())
        .map(|d| {
            let b = d.payload.bytes();
            (
                String::from_utf8_lossy(&b[..b.len().min(KEEP)]).into_owned(),
                b.len(),
            )
        });
    let (payload, bytes) =
        from_wire.unwrap_or_else(|| (s("payload").to_owned(), n("bytes") as usize));
    DeadLetter {
        id: s("id").to_owned(),
        payload,
        bytes,
        reason: s("reason").to_owned(),
        attempts: u32::try_from(n("attempts")).unwrap_or(u32::MAX),
        at_us: n("at"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_round_trip_and_old_ones_still_read() {
        let wire = Dish::new(5, 7, 1).encode();
        let l = parse(letter("abc", b"7", "exit status 1", 3, Some(&wire)).as_bytes());
        assert_eq!(
            (l.id.as_str(), l.payload.as_str(), l.bytes, l.attempts),
            ("abc", "7", 1, 3)
        );
        assert_eq!(l.reason, "exit status 1");
        assert!(l.at_us > 0);
        let old = parse(br#"{"payload":"x","bytes":1,"reason":"r","at":5}"#);
        assert_eq!((old.id.as_str(), old.attempts, old.at_us), ("", 0, 5));
        let big = vec![b'y'; KEEP * 2];
        let l = parse(letter("i", &big, "too large", 0, None).as_bytes());
        assert_eq!((l.payload.len(), l.bytes), (KEEP, KEEP * 2));
        assert_eq!(parse(b"junk").payload, "junk");
    }
}
