//! `kitchen info --watch`: the info view, refreshed every second until
//! stopped, with the rates of the last few seconds.
//!
//! Each frame reads one [`Info`] snapshot. Per-diner counts come from the
//! diners' heartbeats (see `tally.rs`), so they are Redis's view, whichever
//! process or machine the diners run on. Rates are differences between
//! frames: eaten/s from the diners' counts (a diner that leaves takes its
//! count with it, so each diner's own increase is summed, never the total's),
//! made/s from the change in every place a dish can be (waiting, held,
//! waiting to be retried, dead) plus what was eaten: an estimate, as Redis
//! keeps no producer counter.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::Write;
use std::time::{Duration, Instant};

use super::info::{Info, info};
use crate::shutdown::Shutdown;
use crate::vocab::{Capacity, Fault, RedisOptions};

/// How often a frame is drawn.
pub const PERIOD: Duration = Duration::from_secs(1);

/// Rates are averaged over this many seconds (frames).
const WINDOW: usize = 5;

/// Clears a terminal and moves to its top left: each frame redraws in place.
const CLEAR: &str = "\x1b[H\x1b[2J";

/// Ends each frame when stdout is not a terminal, so a reader (a test, a
/// log) can split the stream into frames.
pub const SEPARATOR: &str = "----";

/// Draws frames on `out` every [`PERIOD`] until `shutdown`. `tty`: redraw
/// in place; else each frame is followed by a [`SEPARATOR`] line.
///
/// The first snapshot's failure is the command's (a wrong address should not
/// draw an empty screen); later failures are shown in the frame and retried
/// at the next tick, as a watch outlives a Redis restart.
pub fn watch(
    opts: &RedisOptions,
    capacity: Capacity,
    shutdown: &Shutdown,
    out: &mut dyn Write,
    tty: bool,
) -> Result<(), Fault> {
    let mut rates = Rates::default();
    let mut first = true;
    while !shutdown.is_stopped() {
        let tick = Instant::now();
        let frame = match info(opts, capacity) {
            Ok(i) => {
                rates.add(tick, &i);
                render(&i, &rates, crate::dish::now_us())
            }
            Err(e) if first => return Err(e),
            Err(e) => format!("kitchen info --watch: {e}\n  (trying again every second)\n"),
        };
        first = false;
        let drawn = if tty {
            write!(out, "{CLEAR}{frame}")
        } else {
            writeln!(out, "{frame}{SEPARATOR}")
        };
        // A reader that went away (`| head`) ends the watch, as it would `tail -f`.
        if drawn.and_then(|()| out.flush()).is_err() {
            return Ok(());
        }
        if shutdown.sleep(PERIOD.saturating_sub(tick.elapsed())) {
            break;
        }
    }
    Ok(())
}

/// The counts rates are made from, accumulated frame by frame.
#[derive(Debug, Default)]
struct Rates {
    /// Each diner's last eaten count, by id.
    last: HashMap<String, u64>,
    /// Dishes anywhere in the queue's keys at the last frame: waiting,
    /// held, waiting to be retried, dead.
    last_present: Option<u64>,
    /// Running totals since the watch started: (eaten, made).
    totals: (u64, u64),
    /// (when, eaten total, made total) of the last [`WINDOW`] + 1 frames.
    samples: VecDeque<(Instant, u64, u64)>,
}

impl Rates {
    fn add(&mut self, at: Instant, i: &Info) {
        let mut eaten = 0;
        let mut seen = HashMap::with_capacity(i.diners.len());
        // The list's diners, then the stream's consumers, by a name unique across both.
        let list = i.diners.iter().map(|d| (d.id.clone(), d.eaten));
        let stream = i.stream.groups.iter().flat_map(|g| {
            g.consumers
                .iter()
                .map(move |c| (format!("{}/{}", g.name, c.name), c.eaten))
        });
        for (id, now) in list.chain(stream) {
            let Some(now) = now else { continue };
            // A diner first seen after the first frame counts from 0: it
            // started since (a restart resets its count, hence saturating).
            let before = match self.last.get(&id) {
                Some(&n) => n,
                None if self.last_present.is_some() => 0,
                None => now,
            };
            eaten += now.saturating_sub(before);
            seen.insert(id, now);
        }
        self.last = seen;
        let held: u64 = i.diners.iter().map(|d| d.holding.len() as u64).sum();
        // Every place a dish can be until it is eaten: a failed dish moves
        // to the waiting retries or the dead letters, and stays counted.
        let present =
            i.length + held + i.waiting_retries + i.dead + i.stream.unacknowledged + i.stream.dead;
        // Made: what is new in those places, plus what left them by being eaten.
        let made = self
            .last_present
            .map_or(0, |p| (present + eaten).saturating_sub(p));
        self.last_present = Some(present);
        self.totals.0 += eaten;
        self.totals.1 += made;
        self.samples.push_back((at, self.totals.0, self.totals.1));
        while self.samples.len() > WINDOW + 1 {
            self.samples.pop_front();
        }
    }

    /// (eaten/s, made/s, over how many seconds); `None` before two frames.
    fn per_second(&self) -> Option<(f64, f64, f64)> {
        let (&(t0, e0, m0), &(t1, e1, m1)) = (self.samples.front()?, self.samples.back()?);
        let secs = t1.duration_since(t0).as_secs_f64();
        (secs > 0.0).then(|| ((e1 - e0) as f64 / secs, (m1 - m0) as f64 / secs, secs))
    }
}

/// One frame: the queue, retries, dead letters, rates, then each diner.
fn render(i: &Info, rates: &Rates, now_us: u64) -> String {
    let mut out = String::with_capacity(1024);
    let capacity = i
        .capacity
        .map_or_else(|| "unbounded".to_owned(), |c| c.to_string());
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "kitchen info --watch ({}), every second; Ctrl-C to stop",
        i.url
    );
    let over = if i.over_capacity {
        " (over the bound)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "  queue        {}: {} of {capacity} waiting{over}",
        i.queue, i.length
    );
    for (n, shard) in i.shards.iter().enumerate() {
        let cap = shard
            .capacity
            .map_or_else(|| "unbounded".to_owned(), |c| c.to_string());
        let _ = writeln!(
            out,
            "  shard {n:<6} {} of {cap}, {} dead ({})",
            shard.length, shard.dead, shard.queue
        );
    }
    let _ = writeln!(
        out,
        "  retrying     {} waiting to be retried",
        i.waiting_retries
    );
    let _ = writeln!(
        out,
        "  dead         {} dead letters, {} trimmed",
        i.dead, i.dead_trimmed
    );
    match rates.per_second() {
        Some((eaten, made, secs)) => {
            let _ = writeln!(
                out,
                "  rates        eaten {eaten:.1}/s, made {made:.1}/s (over the last {secs:.0} s)"
            );
        }
        None => {
            let _ = writeln!(out, "  rates        (from the next frame)");
        }
    }
    let live: Vec<_> = i.diners.iter().filter(|d| d.alive).collect();
    let _ = writeln!(out, "  diners       {} live", live.len());
    for d in live {
        let counts = match (d.eaten, d.failed) {
            (Some(e), Some(f)) => format!("eaten {e}, failed {f}"),
            _ => "no counts (an older diner)".to_owned(),
        };
        let held = match (d.holding.as_slice(), d.held_since_us) {
            ([], _) => "holding nothing".to_owned(),
            (h, since) => {
                let shown: Vec<String> = h.iter().take(3).map(|p| shown_payload(p)).collect();
                let more = if h.len() > 3 { " …" } else { "" };
                let for_ = since.map_or_else(String::new, |s| {
                    format!(" for {:.1} s", now_us.saturating_sub(s) as f64 / 1e6)
                });
                format!("holding {}{for_}: {}{more}", h.len(), shown.join(" "))
            }
        };
        let _ = writeln!(out, "    {}  {held}; {counts}", d.id);
    }
    // The stream's groups, once there is a stream: pending and idle per consumer.
    let s = &i.stream;
    if s.length > 0 || !s.groups.is_empty() {
        let _ = writeln!(
            out,
            "  stream       {}: {} unacknowledged, {} dead letters",
            s.key, s.unacknowledged, s.dead
        );
        for g in &s.groups {
            let _ = writeln!(out, "    group {}: {} pending", g.name, g.pending);
            for c in g.consumers.iter().filter(|c| c.alive) {
                let held = match (c.pending, c.held_since_us) {
                    (0, _) => "holding nothing".to_owned(),
                    (n, Some(s)) => format!(
                        "holding {n} for {:.1} s",
                        now_us.saturating_sub(s) as f64 / 1e6
                    ),
                    (n, None) => format!("holding {n}"),
                };
                let counts = match (c.eaten, c.failed) {
                    (Some(e), Some(f)) => format!("; eaten {e}, failed {f}"),
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "      {}  {held}, idle {:.1} s{counts}",
                    c.name,
                    c.idle_ms as f64 / 1e3
                );
            }
        }
    }
    out
}

/// A held dish as a person reads it: its payload (not our wire envelope),
/// cut short.
fn shown_payload(raw: &str) -> String {
    match crate::dish::Dish::decode(raw.as_bytes()) {
        Ok(d) => excerpt(&String::from_utf8_lossy(&d.payload.bytes())).to_owned(),
        Err(_) => excerpt(raw).to_owned(),
    }
}

/// The first 40 characters of a payload, on one line.
fn excerpt(p: &str) -> &str {
    let end = p
        .char_indices()
        .take_while(|&(n, c)| n < 40 && c != '\n')
        .last()
        .map_or(0, |(n, c)| n + c.len_utf8());
    &p[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excerpt_stops_at_forty_bytes_or_a_newline_on_a_char_boundary() {
        assert_eq!(excerpt("7"), "7");
        assert_eq!(excerpt("a\nb"), "a");
        let long = "é".repeat(30);
        assert!(excerpt(&long).len() <= 41);
        assert!(long.starts_with(excerpt(&long)));
    }
}
