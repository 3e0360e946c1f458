//! The live status line that a long `--quiet` run shows on a terminal's stderr.

use std::io::{self, IsTerminal, Write};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::kitchen::stats::LiveCounters;
use crate::kitchen::summary::human_rate;
use crate::queue::Gauge;
use crate::shutdown::Shutdown;

/// How often the line is redrawn: often enough to look live, rarely enough
/// to cost nothing.
const REFRESH: Duration = Duration::from_millis(250);

/// Whether a status line should be drawn: quiet run, stderr a terminal.
pub fn wanted(quiet: bool) -> bool {
    quiet && io::stderr().is_terminal()
}

/// Starts redrawing `made · eaten · queued · rate` until `done` stops.
pub fn spawn(
    made: Arc<LiveCounters>,
    eaten: Arc<LiveCounters>,
    mut gauge: Gauge,
    done: Shutdown,
) -> io::Result<JoinHandle<()>> {
    thread::Builder::new().name("status".into()).spawn(move || {
        let started = Instant::now();
        let (mut last_n, mut last_t) = (0u64, started);
        while !done.sleep(REFRESH) {
            let (m, e) = (made.total(), eaten.total());
            let now = Instant::now();
            let moved = if e > 0 { e } else { m };
            let rate = (moved - last_n.min(moved)) as f64
                / now.duration_since(last_t).as_secs_f64().max(1e-9);
            (last_n, last_t) = (moved, now);
            let queued = gauge
                .depth()
                .map_or_else(|_| "?".to_owned(), |d| d.to_string());
            let line = format!(
                "\r\x1b[2Kmade {m} · eaten {e} · queued {queued} · {} dishes/s · {:.0} s",
                human_rate(rate),
                started.elapsed().as_secs_f64()
            );
            let _ = io::stderr().write_all(line.as_bytes());
        }
        // Leave a clean line for the summary.
        let _ = io::stderr().write_all(b"\r\x1b[2K");
    })
}
