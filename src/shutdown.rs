//! The shutdown token: one `stop()` that every thread of a run can see and wait on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;

/// A cloneable stop signal.
///
/// The caller owns it: `main` stops it from the Ctrl-C handler, tests stop it
/// directly, `--duration` and `--dishes` stop it from inside the run. Stopping
/// means "make no more dishes": chefs quit, diners finish what is queued.
///
/// Waiting is done on a channel that is disconnected by `stop()`, so a thread
/// asleep in [`Shutdown::sleep`] or blocked in a crossbeam `select!` on
/// [`Shutdown::receiver`] wakes at once instead of at the end of its nap.
#[derive(Debug, Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
    rx: Receiver<()>,
}

#[derive(Debug)]
struct Inner {
    // The flag is the cheap check on hot paths; the sender is what wakes sleepers.
    stopped: AtomicBool,
    tx: Mutex<Option<Sender<()>>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A token that has not been stopped.
    pub fn new() -> Self {
        let (tx, rx) = crossbeam_channel::bounded(0);
        Shutdown {
            inner: Arc::new(Inner {
                stopped: AtomicBool::new(false),
                tx: Mutex::new(Some(tx)),
            }),
            rx,
        }
    }

    /// Asks every holder to stop. Idempotent; returns whether this call was the first.
    pub fn stop(&self) -> bool {
        let first = !self.inner.stopped.swap(true, Ordering::SeqCst);
        self.inner.tx.lock().take();
        first
    }

    /// Whether `stop()` has been called.
    #[inline]
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::Relaxed)
    }

    /// Sleeps for `d` unless stopped first. Returns `true` if stopped.
    pub fn sleep(&self, d: Duration) -> bool {
        if d.is_zero() {
            return self.is_stopped();
        }
        match self.rx.recv_timeout(d) {
            Err(RecvTimeoutError::Timeout) => self.is_stopped(),
            // Nobody ever sends; disconnection is the stop signal.
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
        }
    }

    /// Blocks until stopped.
    pub fn wait(&self) {
        while self.rx.recv().is_ok() {}
    }

    /// A receiver that becomes ready (disconnected) when stopped, for `select!`.
    pub fn receiver(&self) -> &Receiver<()> {
        &self.rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn stop_wakes_a_sleeper_early() {
        let s = Shutdown::new();
        let t = {
            let s = s.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                (s.sleep(Duration::from_secs(60)), start.elapsed())
            })
        };
        assert!(s.stop());
        assert!(!s.stop(), "second stop is not the first");
        let (stopped, slept) = t.join().expect("sleeper thread");
        assert!(stopped);
        assert!(slept < Duration::from_secs(60));
    }

    #[test]
    fn sleep_without_stop_reports_not_stopped() {
        let s = Shutdown::new();
        assert!(!s.sleep(Duration::from_millis(1)));
        assert!(!s.is_stopped());
    }
}
