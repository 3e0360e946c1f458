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
    use std::sync::mpsc;
    use std::time::Instant;

    /// How long a blocked thread is watched staying blocked before the stop.
    const STILL: Duration = Duration::from_millis(200);
    /// How long a stopped thread may take to wake: far below its nap, and
    /// generous for a loaded machine.
    const WAKE: Duration = Duration::from_secs(10);

    /// Runs `block` on a thread with a token, and returns the token, a
    /// channel that says the thread is about to block, and one for its result.
    fn blocked<T: Send + 'static>(
        block: impl FnOnce(&Shutdown) -> T + Send + 'static,
    ) -> (Shutdown, mpsc::Receiver<()>, mpsc::Receiver<T>) {
        let s = Shutdown::new();
        let (ready_tx, ready) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let theirs = s.clone();
        std::thread::spawn(move || {
            let _ = ready_tx.send(());
            let _ = done_tx.send(block(&theirs));
        });
        (s, ready, done)
    }

    /// The thread is observably blocked (it said it is about to block, and
    /// has not returned for a while), then `stop` wakes it within [`WAKE`].
    fn stop_wakes<T: Send + 'static>(
        what: &str,
        block: impl FnOnce(&Shutdown) -> T + Send + 'static,
    ) -> T {
        let (s, ready, done) = blocked(block);
        ready.recv_timeout(WAKE).expect("the thread starts");
        assert!(
            matches!(
                done.recv_timeout(STILL),
                Err(mpsc::RecvTimeoutError::Timeout)
            ),
            "{what} returned before any stop"
        );
        assert!(s.stop(), "the first stop");
        done.recv_timeout(WAKE)
            .unwrap_or_else(|e| panic!("{what} did not wake within {WAKE:?} of the stop: {e}"))
    }

    #[test]
    fn stop_wakes_a_sleeper_in_the_middle_of_its_nap() {
        let stopped = stop_wakes("a 10-minute sleep", |s| s.sleep(Duration::from_secs(600)));
        assert!(stopped, "sleep reports that it was stopped");
    }

    #[test]
    fn stop_wakes_a_waiter() {
        stop_wakes("wait", Shutdown::wait);
    }

    #[test]
    fn stop_wakes_a_select_on_the_receiver() {
        let woke_by = stop_wakes("a select on the receiver", |s| {
            let never = crossbeam_channel::never::<()>();
            crossbeam_channel::select! {
                recv(s.receiver()) -> _ => "shutdown",
                recv(never) -> _ => "the other channel",
            }
        });
        assert_eq!(woke_by, "shutdown");
    }

    #[test]
    fn a_stop_before_the_sleep_is_not_missed_and_only_the_first_counts() {
        let s = Shutdown::new();
        assert!(s.stop());
        assert!(!s.stop(), "the second stop is not the first");
        let later = s.clone();
        let (tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            let stopped = later.sleep(Duration::from_secs(600));
            later.wait();
            let _ = tx.send(stopped);
        });
        assert_eq!(done.recv_timeout(WAKE), Ok(true), "no nap after the stop");
    }

    #[test]
    fn sleep_without_stop_sleeps_its_time_and_reports_not_stopped() {
        let s = Shutdown::new();
        let started = Instant::now();
        assert!(!s.sleep(Duration::from_millis(30)));
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(!s.is_stopped());
    }
}
