//! The in-process backend: a crossbeam bounded channel shared by threads.

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;

use crate::dish::Dish;
use crate::queue::{Capacity, POLL, Put, QueueError, Take};
use crate::shutdown::Shutdown;

/// The channel, and the right to hand out new producers until sealed.
#[derive(Debug)]
pub struct LocalQueue {
    // Dropping this sender (on `seal`) lets disconnection tell diners that
    // no more dishes can come, crossbeam's own shutdown protocol.
    tx: Mutex<Option<Sender<Dish>>>,
    rx: Receiver<Dish>,
}

impl LocalQueue {
    /// A queue holding at most `capacity` dishes.
    pub fn new(capacity: Capacity) -> LocalQueue {
        let (tx, rx) = match capacity {
            Capacity::Bounded(n) => crossbeam_channel::bounded(n.max(1)),
            Capacity::Unbounded => crossbeam_channel::unbounded(),
        };
        LocalQueue {
            tx: Mutex::new(Some(tx)),
            rx,
        }
    }

    /// A new producer, unless sealed.
    pub fn producer(&self) -> Result<Producer, QueueError> {
        let tx = self.tx.lock().clone().ok_or(QueueError::Sealed)?;
        Ok(Producer { tx })
    }

    /// A new consumer.
    pub fn consumer(&self) -> Consumer {
        Consumer {
            rx: self.rx.clone(),
        }
    }

    /// Hands out no more producers.
    pub fn seal(&self) {
        self.tx.lock().take();
    }
}

/// A chef's sender.
#[derive(Debug)]
pub struct Producer {
    tx: Sender<Dish>,
}

impl Producer {
    /// Puts `dish`, blocking while full until there is room or `shutdown`.
    #[inline]
    pub fn put(&mut self, mut dish: Dish, shutdown: &Shutdown) -> Put {
        // crossbeam's own blocking send (spin, then park) is far cheaper than a
        // `select!` over the queue and the shutdown channel; waking every POLL
        // to look at the shutdown flag costs nothing while the queue moves.
        loop {
            match self.tx.send_timeout(dish, POLL) {
                Ok(()) => {
                    return Put::Queued {
                        depth: self.tx.len(),
                    };
                }
                Err(SendTimeoutError::Disconnected(_)) => return Put::Stopped,
                Err(SendTimeoutError::Timeout(d)) => {
                    if shutdown.is_stopped() {
                        return Put::Stopped;
                    }
                    dish = d;
                }
            }
        }
    }

    /// Puts `dish` if there is room now; `None` when full.
    #[inline]
    pub fn try_put(&mut self, dish: Dish) -> Option<Put> {
        match self.tx.try_send(dish) {
            Ok(()) => Some(Put::Queued {
                depth: self.tx.len(),
            }),
            Err(TrySendError::Disconnected(_)) => Some(Put::Stopped),
            Err(TrySendError::Full(_)) => None,
        }
    }
}

/// A diner's receiver (also used as a depth gauge).
#[derive(Debug)]
pub struct Consumer {
    rx: Receiver<Dish>,
}

impl Consumer {
    /// Takes the oldest dish; [`Take::Closed`] once every producer is gone and
    /// the channel is empty.
    #[inline]
    pub fn take(&mut self, _finished: &Shutdown) -> Take {
        match self.rx.recv_timeout(POLL) {
            Ok(dish) => Take::Dish {
                dish,
                depth: self.rx.len(),
            },
            Err(RecvTimeoutError::Timeout) => Take::Idle,
            Err(RecvTimeoutError::Disconnected) => Take::Closed,
        }
    }

    /// Dishes waiting now.
    pub fn depth(&self) -> usize {
        self.rx.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_then_closes_after_seal() {
        let q = LocalQueue::new(Capacity::Bounded(2));
        let stop = Shutdown::new();
        let mut p = q.producer().expect("producer before seal");
        let mut c = q.consumer();
        assert_eq!(p.put(Dish::new(1, 3, 1), &stop), Put::Queued { depth: 1 });
        q.seal();
        assert!(matches!(q.producer(), Err(QueueError::Sealed)));
        drop(p);
        assert!(matches!(c.take(&stop), Take::Dish { depth: 0, .. }));
        assert_eq!(c.take(&stop), Take::Closed);
    }

    #[test]
    fn a_full_queue_blocks_until_shutdown() {
        let q = LocalQueue::new(Capacity::Bounded(1));
        let stop = Shutdown::new();
        let mut p = q.producer().expect("producer");
        assert_eq!(p.put(Dish::new(1, 0, 1), &stop), Put::Queued { depth: 1 });
        let t = {
            let stop = stop.clone();
            std::thread::spawn(move || p.put(Dish::new(2, 0, 1), &stop))
        };
        stop.stop();
        assert_eq!(t.join().expect("chef thread"), Put::Stopped);
        assert_eq!(q.consumer().depth(), 1, "the refused dish never entered");
    }

    #[test]
    fn try_put_answers_full_at_once() {
        let q = LocalQueue::new(Capacity::Bounded(1));
        let mut p = q.producer().expect("producer");
        assert_eq!(
            p.try_put(Dish::new(1, 0, 1)),
            Some(Put::Queued { depth: 1 })
        );
        assert_eq!(p.try_put(Dish::new(2, 0, 1)), None);
        assert_eq!(q.consumer().depth(), 1);
    }
}
