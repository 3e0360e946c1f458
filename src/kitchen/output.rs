//! Per-dish lines on stdout: whole lines only, and a closed pipe is a stop, not a panic.

use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use crate::dish::{Dish, DishId};
use crate::shutdown::Shutdown;

/// A dish's id as the end of a per-dish line (` [id 0123456789abcdef-5]`),
/// or nothing: `--ids` lets a test or an operator follow one dish from the
/// chef that made it to every diner that ate it.
#[derive(Debug, Clone, Copy)]
pub struct IdTag(pub Option<DishId>);

impl fmt::Display for IdTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(id) => write!(f, " [id {id}]"),
            None => Ok(()),
        }
    }
}

/// Where per-dish lines go.
///
/// Each line is formatted, then written whole under one lock, so lines from
/// different threads never interleave mid-line. When the reader goes away
/// (`kitchen | head`), the first failed write stops the run, as Ctrl-C would,
/// and later lines are dropped silently.
#[derive(Clone)]
pub struct Printer {
    sink: Option<Arc<Mutex<Box<dyn Write + Send>>>>,
    broken: Arc<AtomicBool>,
}

impl fmt::Debug for Printer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Printer")
            .field("quiet", &self.sink.is_none())
            .field("broken", &self.broken.load(Ordering::Relaxed))
            .finish()
    }
}

impl Printer {
    /// Lines to this process's stdout.
    pub fn stdout() -> Printer {
        Printer::to(io::stdout())
    }

    /// Lines to any writer (tests capture them this way).
    pub fn to(w: impl Write + Send + 'static) -> Printer {
        Printer {
            sink: Some(Arc::new(Mutex::new(Box::new(w)))),
            broken: Arc::default(),
        }
    }

    /// No lines at all (`--quiet`).
    pub fn quiet() -> Printer {
        Printer {
            sink: None,
            broken: Arc::default(),
        }
    }

    /// Whether lines are wanted; check before formatting on hot paths.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.sink.is_some() && !self.broken.load(Ordering::Relaxed)
    }

    /// Whether the reader went away.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }

    /// Writes one line; on a write error, stops `stop` and goes silent.
    pub fn line(&self, args: fmt::Arguments<'_>, stop: &Shutdown) {
        let Some(sink) = &self.sink else { return };
        if self.broken.load(Ordering::Relaxed) {
            return;
        }
        let mut buf = Vec::with_capacity(64);
        // Formatting into a Vec cannot fail.
        let _ = buf.write_fmt(args);
        buf.push(b'\n');
        let mut w = sink.lock();
        if w.write_all(&buf).and_then(|()| w.flush()).is_err() {
            self.broken.store(true, Ordering::Relaxed);
            stop.stop();
        }
    }
}

/// Keeps each dish's "made" line before its "ate" lines.
///
/// A chef prints its line after the put returns, and a diner may take the
/// dish (and print) in between. Holding the output across the put would
/// deadlock: a chef waiting for room would keep the diners that make room
/// from printing, hence from taking. So each chef publishes the sequence
/// number of the last dish whose line is out, and a diner about to print a
/// dish of this process waits (briefly: the chef prints right after its put)
/// until that dish's line is. Only printing runs pay; `--quiet` skips it.
#[derive(Debug)]
pub struct PrintOrder {
    /// Per chef slot: the sequence number of its last dish printed.
    printed: Box<[AtomicU64]>,
}

/// The longest a diner waits for a chef's line: a chef stuck writing to a
/// stalled stdout must not stall its diners for longer.
const ORDER_WAIT: Duration = Duration::from_secs(1);

impl PrintOrder {
    /// For `chefs` chef threads.
    pub fn new(chefs: usize) -> PrintOrder {
        PrintOrder {
            printed: (0..chefs).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Chef `slot` has printed the line of its dish `seq`.
    #[inline]
    pub fn printed(&self, slot: usize, seq: u64) {
        if let Some(p) = self.printed.get(slot) {
            p.store(seq, Ordering::Release);
        }
    }

    /// Waits until `dish`'s chef has printed its line, if a chef of this
    /// process made it.
    pub fn wait_for(&self, dish: &Dish) {
        if dish.id.origin != DishId::process_origin() || dish.chef == 0 {
            return;
        }
        let Some(p) = self.printed.get(dish.chef as usize - 1) else {
            return;
        };
        if p.load(Ordering::Acquire) >= dish.id.seq {
            return;
        }
        let deadline = Instant::now() + ORDER_WAIT;
        while p.load(Ordering::Acquire) < dish.id.seq && Instant::now() < deadline {
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_stops_the_run_quietly() {
        let p = Printer::to(Closed);
        let stop = Shutdown::new();
        p.line(format_args!("chef-1 made dish 1"), &stop);
        assert!(stop.is_stopped());
        assert!(p.is_broken());
        assert!(!p.enabled());
        p.line(format_args!("ignored"), &stop);
    }

    #[test]
    fn id_tags_end_the_line_or_are_empty() {
        let id = DishId {
            origin: 0xab,
            seq: 5,
        };
        assert_eq!(IdTag(Some(id)).to_string(), " [id 00000000000000ab-5]");
        assert_eq!(IdTag(None).to_string(), "");
    }

    #[test]
    fn quiet_prints_nothing() {
        assert!(!Printer::quiet().enabled());
    }
}
