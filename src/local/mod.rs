//! The in-process backend: a crossbeam bounded channel shared by threads,
//! and beside it the dishes set aside: failed ones waiting out their retry
//! delay, and dead ones.

mod aside;

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{
    Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError, TrySendError,
};
use parking_lot::Mutex;

use crate::dish::{Dish, DishId, Payload};
use crate::results::LocalResults;
use crate::shutdown::Shutdown;
use crate::vocab::{
    Capacity, DeadError, DeadLetters, OpenError, POLL, Put, ResultLimits, Take, Which,
};
use aside::Aside;

/// The channel, and the right to hand out new producers until sealed.
#[derive(Debug)]
pub struct LocalQueue {
    // Dropping this sender (on `seal`) lets disconnection tell diners that
    // no more dishes can come, crossbeam's own shutdown protocol.
    tx: Mutex<Option<Sender<Packed>>>,
    rx: Receiver<Packed>,
    capacity: Option<usize>,
    /// Read the depth on every `SAMPLE`th operation only (see [`LocalQueue::relax_depth`]).
    sampled: bool,
    /// What became of tracked dishes: the web entry and its diners share it.
    results: Arc<LocalResults>,
    /// Payloads that do not fit a packed dish.
    pantry: Arc<Pantry>,
    /// Failed dishes waiting for their next attempt, and dead ones.
    aside: Arc<Aside>,
}

/// Payloads other than a dish number, beside the channel: the channel
/// carries 16 bytes per dish, and a dish that carries JSON or text leaves its
/// payload here under its id, for the diner that takes it. The kitchen's own
/// dishes (numbers) never come here, so they pay nothing for it.
#[derive(Debug, Default)]
struct Pantry {
    shelf: Mutex<std::collections::HashMap<u64, Payload>>,
}

impl Pantry {
    fn key(id: DishId) -> u64 {
        // Dishes without an origin (another producer's) have their own keys.
        (id.seq & SEQ_MASK) | if id.origin == 0 { NO_ORIGIN } else { 0 }
    }

    fn store(&self, id: DishId, payload: Payload) {
        self.shelf.lock().insert(Pantry::key(id), payload);
    }

    fn take(&self, id: DishId) -> Payload {
        // A payload is stored before its dish is sent, so it is there.
        self.shelf
            .lock()
            .remove(&Pantry::key(id))
            .unwrap_or(Payload::Number(0))
    }
}

/// A dish as the channel carries it: 16 bytes where [`Dish`] takes 56.
///
/// Every slot a chef writes is a cache line a diner on the other core must
/// fetch; halving the message lets a full-speed kitchen move about a third
/// more dishes. All dishes on this queue were made in this process, so the
/// id's origin is implied; the rest fits one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Packed {
    /// seq (44 bits) | in the pantry (1) | number (4) | chef (13) | no-origin (1) | track (1)
    word: u64,
    made_at_us: u64,
}

const SEQ_BITS: u32 = 44;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
const IN_PANTRY: u64 = 1 << SEQ_BITS;
const NUMBER_SHIFT: u32 = SEQ_BITS + 1;
const CHEF_SHIFT: u32 = NUMBER_SHIFT + 4;
const CHEF_MAX: u32 = (1 << 13) - 1;
const NO_ORIGIN: u64 = 1 << 62;
const TRACK: u64 = 1 << 63;

impl Packed {
    #[inline]
    fn pack(d: &Dish, pantry: &Pantry) -> Packed {
        // A chef number beyond 13 bits is recorded as unknown (0) rather than
        // wrapped onto another chef; kitchen starts at most 4096.
        let chef = if d.chef > CHEF_MAX {
            0
        } else {
            u64::from(d.chef)
        };
        let number = match &d.payload {
            Payload::Number(n) => u64::from(n & 0xf),
            other => {
                pantry.store(d.id, other.clone());
                0
            }
        };
        let mut word = (d.id.seq & SEQ_MASK) | (number << NUMBER_SHIFT) | (chef << CHEF_SHIFT);
        if !matches!(d.payload, Payload::Number(_)) {
            word |= IN_PANTRY;
        }
        if d.id.origin == 0 {
            word |= NO_ORIGIN;
        }
        if d.track {
            word |= TRACK;
        }
        Packed {
            word,
            made_at_us: d.made_at_us,
        }
    }

    fn id(self) -> DishId {
        let w = self.word;
        DishId {
            origin: if w & NO_ORIGIN != 0 {
                0
            } else {
                DishId::process_origin()
            },
            seq: w & SEQ_MASK,
        }
    }

    #[inline]
    fn unpack(self, pantry: &Pantry) -> Dish {
        let w = self.word;
        let id = self.id();
        Dish {
            id,
            payload: if w & IN_PANTRY != 0 {
                pantry.take(id)
            } else {
                Payload::Number(((w >> NUMBER_SHIFT) & 0xf) as u8)
            },
            chef: ((w >> CHEF_SHIFT) as u32) & CHEF_MAX,
            made_at_us: self.made_at_us,
            track: w & TRACK != 0,
            // Retries never pass through the channel (see `aside`).
            attempt: 1,
        }
    }
}

/// With relaxed depth, one operation in this many reads the channel's length.
const SAMPLE: u32 = 16;

impl LocalQueue {
    /// A queue holding at most `capacity` dishes, keeping results within the defaults.
    pub fn new(capacity: Capacity) -> LocalQueue {
        LocalQueue::with_results(capacity, ResultLimits::default())
    }

    /// A queue holding at most `capacity` dishes, keeping results within `limits`.
    pub fn with_results(capacity: Capacity, limits: ResultLimits) -> LocalQueue {
        let (tx, rx) = match capacity {
            Capacity::Bounded(n) => crossbeam_channel::bounded(n.max(1)),
            Capacity::Unbounded => crossbeam_channel::unbounded(),
        };
        LocalQueue {
            tx: Mutex::new(Some(tx)),
            rx,
            capacity: capacity.limit(),
            sampled: false,
            results: Arc::new(LocalResults::new(limits.ttl, limits.max)),
            pantry: Arc::default(),
            aside: Arc::new(Aside::new(crate::defaults::DEAD_MAX)),
        }
    }

    /// The results store every thread of this process shares.
    pub fn results(&self) -> Arc<LocalResults> {
        self.results.clone()
    }

    /// Producers and consumers made after this read the depth on one
    /// operation in [`SAMPLE`] (and count a full queue as full) instead of on
    /// every one: reading crossbeam's length touches the two most contended
    /// cache lines of the channel, which costs a quiet full-speed run a third
    /// of its throughput. Depth is then a sample, not a per-dish figure.
    pub fn relax_depth(&mut self) {
        self.sampled = true;
    }

    fn probe(&self) -> DepthProbe {
        DepthProbe {
            every: if self.sampled { SAMPLE } else { 1 },
            n: 0,
            last: 0,
        }
    }

    /// A new producer, unless sealed.
    pub fn producer(&self) -> Result<Producer, OpenError> {
        let tx = self.tx.lock().clone().ok_or(OpenError::Sealed)?;
        Ok(Producer {
            tx,
            probe: self.probe(),
            capacity: self.capacity,
            pantry: self.pantry.clone(),
        })
    }

    /// A new consumer.
    pub fn consumer(&self) -> Consumer {
        Consumer {
            rx: self.rx.clone(),
            probe: self.probe(),
            pantry: self.pantry.clone(),
            aside: self.aside.clone(),
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
    tx: Sender<Packed>,
    probe: DepthProbe,
    capacity: Option<usize>,
    pantry: Arc<Pantry>,
}

/// Reads the depth every `every`th time, repeating the last reading between.
#[derive(Debug)]
struct DepthProbe {
    every: u32,
    n: u32,
    last: usize,
}

impl DepthProbe {
    #[inline]
    fn read(&mut self, len: impl FnOnce() -> usize) -> usize {
        self.n += 1;
        if self.n >= self.every {
            self.n = 0;
            self.last = len();
        }
        self.last
    }

    /// The queue was seen full: that is its depth, whether sampling or not.
    #[inline]
    fn saw_full(&mut self, capacity: Option<usize>, len: impl FnOnce() -> usize) -> usize {
        match capacity {
            Some(c) if self.every > 1 => {
                self.last = c;
                c
            }
            _ => self.read(len),
        }
    }
}

impl Producer {
    /// Puts `dish`, blocking while full until there is room or `shutdown`.
    #[inline]
    pub fn put(&mut self, dish: &Dish, shutdown: &Shutdown) -> Put {
        let put = self.send(Packed::pack(dish, &self.pantry), shutdown);
        if put == Put::Stopped {
            self.pantry.take(dish.id);
        }
        put
    }

    #[inline]
    fn send(&mut self, mut dish: Packed, shutdown: &Shutdown) -> Put {
        // The common case needs no clock: a deadline costs a clock read.
        dish = match self.tx.try_send(dish) {
            Ok(()) => {
                let tx = &self.tx;
                return Put::Queued {
                    depth: self.probe.read(|| tx.len()),
                };
            }
            Err(TrySendError::Disconnected(_)) => return Put::Stopped,
            Err(TrySendError::Full(d)) => d,
        };
        // crossbeam's own blocking send (spin, then park) is far cheaper than a
        // `select!` over the queue and the shutdown channel; waking every POLL
        // to look at the shutdown flag costs nothing while the queue moves.
        loop {
            match self.tx.send_timeout(dish, POLL) {
                Ok(()) => {
                    let tx = &self.tx;
                    return Put::Queued {
                        depth: self.probe.saw_full(self.capacity, || tx.len()),
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

    /// Puts `dishes` one by one, each waiting for room; stops at the first
    /// [`Put::Stopped`]. The channel has no round trips to save.
    pub fn put_all(&mut self, dishes: &[Dish], shutdown: &Shutdown) -> Vec<Put> {
        let mut out = Vec::with_capacity(dishes.len());
        for d in dishes {
            let put = self.put(d, shutdown);
            out.push(put);
            if put == Put::Stopped {
                break;
            }
        }
        out
    }

    /// Puts `dish` if there is room within `wait`; `None` when still full.
    #[inline]
    pub fn put_within(&mut self, dish: &Dish, wait: Duration) -> Option<Put> {
        let put = self.send_within(Packed::pack(dish, &self.pantry), wait);
        if !matches!(put, Some(Put::Queued { .. })) {
            self.pantry.take(dish.id);
        }
        put
    }

    fn send_within(&mut self, dish: Packed, wait: Duration) -> Option<Put> {
        let dish = match self.tx.try_send(dish) {
            Ok(()) => {
                return Some(Put::Queued {
                    depth: self.tx.len(),
                });
            }
            Err(TrySendError::Disconnected(_)) => return Some(Put::Stopped),
            Err(TrySendError::Full(d)) => d,
        };
        match self.tx.send_timeout(dish, wait) {
            Ok(()) => Some(Put::Queued {
                depth: self.tx.len(),
            }),
            Err(SendTimeoutError::Disconnected(_)) => Some(Put::Stopped),
            Err(SendTimeoutError::Timeout(_)) => None,
        }
    }
}

/// A diner's receiver (also used as a depth gauge).
#[derive(Debug)]
pub struct Consumer {
    rx: Receiver<Packed>,
    probe: DepthProbe,
    pantry: Arc<Pantry>,
    aside: Arc<Aside>,
}

impl Consumer {
    /// Takes the oldest dish; [`Take::Closed`] once every producer is gone and
    /// the channel is empty.
    ///
    /// A failed dish whose retry is due comes first, straight from beside
    /// the channel (so it never waits for room in it); while any wait, the
    /// queue is not closed.
    #[inline(always)]
    pub fn take(&mut self, _finished: &Shutdown) -> Take {
        // One relaxed load while nothing waits: the full-speed path.
        if self.aside.any_waiting()
            && let Some(dish) = self.aside.due()
        {
            return Take::Dish {
                dish,
                depth: self.rx.len(),
            };
        }
        let got = match self.rx.try_recv() {
            Ok(dish) => Ok(dish),
            Err(TryRecvError::Disconnected) => return self.closed(),
            Err(TryRecvError::Empty) => self.rx.recv_timeout(self.aside.wait(POLL)),
        };
        match got {
            Ok(packed) => {
                let rx = &self.rx;
                Take::Dish {
                    dish: packed.unpack(&self.pantry),
                    depth: self.probe.read(|| rx.len()),
                }
            }
            Err(RecvTimeoutError::Timeout) => Take::Idle,
            Err(RecvTimeoutError::Disconnected) => self.closed(),
        }
    }

    /// Every producer is gone and the channel is empty: closed, unless
    /// failed dishes still wait for a retry (then wait for the first).
    fn closed(&self) -> Take {
        if !self.aside.any_waiting() {
            return Take::Closed;
        }
        std::thread::sleep(self.aside.wait(POLL));
        Take::Idle
    }

    /// Dishes waiting now.
    pub fn depth(&self) -> usize {
        self.rx.len()
    }

    /// Sets `dish` aside to be tried again after `delay`, by any diner.
    pub fn retry(&self, dish: &Dish, delay: Duration) {
        self.aside.retry(dish.clone(), delay);
    }

    /// Makes `dish` a dead letter, for `reason`.
    pub fn bury(&self, dish: &Dish, reason: &str) {
        self.aside.bury(dish, reason);
    }

    /// Failed dishes waiting for their next attempt.
    pub fn waiting_retries(&self) -> usize {
        self.aside.waiting()
    }

    /// The newest `limit` dead letters.
    pub fn dead_letters(&self, limit: usize) -> DeadLetters {
        self.aside.dead_letters(limit)
    }

    /// Puts dead letters back (see [`crate::queue::Gauge::dead_requeue`]):
    /// they are due at once, beside the channel, so a full queue never
    /// refuses them.
    pub fn dead_requeue(&self, which: &Which) -> Result<usize, DeadError> {
        self.aside.requeue(which)
    }

    /// Deletes dead letters (see [`crate::queue::Gauge::dead_purge`]).
    pub fn dead_purge(&self, which: &Which) -> Result<usize, DeadError> {
        self.aside.purge(which)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn drains_then_closes_after_seal() {
        let q = LocalQueue::new(Capacity::Bounded(2));
        let stop = Shutdown::new();
        let mut p = q.producer().expect("producer before seal");
        let mut c = q.consumer();
        assert_eq!(p.put(&Dish::new(1, 3, 1), &stop), Put::Queued { depth: 1 });
        q.seal();
        assert!(matches!(q.producer(), Err(OpenError::Sealed)));
        drop(p);
        assert!(matches!(c.take(&stop), Take::Dish { depth: 0, .. }));
        assert_eq!(c.take(&stop), Take::Closed);
    }

    #[test]
    fn packing_keeps_every_field() {
        let pantry = Pantry::default();
        let mut d = Dish::new(123_456, 9, 4096);
        d.track = true;
        assert_eq!(Packed::pack(&d, &pantry).unpack(&pantry), d);
        let bare = Dish {
            id: DishId::NONE,
            payload: Payload::Number(7),
            chef: 0,
            made_at_us: 0,
            track: false,
            attempt: 1,
        };
        assert_eq!(Packed::pack(&bare, &pantry).unpack(&pantry), bare);
        let stranger = Dish::new(1, 0, CHEF_MAX + 1);
        assert_eq!(
            Packed::pack(&stranger, &pantry).unpack(&pantry).chef,
            0,
            "unknown, not wrapped"
        );
        // Other payloads wait in the pantry, beside the packed dish.
        let json = Dish::carrying(77, Payload::Json(Arc::from(r#"{"w":64}"#)), 2);
        let packed = Packed::pack(&json, &pantry);
        assert_eq!(pantry.shelf.lock().len(), 1);
        assert_eq!(packed.unpack(&pantry), json);
        assert!(pantry.shelf.lock().is_empty(), "taken with its dish");
        assert_eq!(std::mem::size_of::<Packed>(), 16);
    }

    #[test]
    fn a_sampling_probe_reads_every_sampleth_time_and_knows_full_is_full() {
        let mut p = DepthProbe {
            every: SAMPLE,
            n: 0,
            last: 0,
        };
        let mut reads = 0;
        for _ in 0..SAMPLE * 3 {
            p.read(|| {
                reads += 1;
                7
            });
        }
        assert_eq!((reads, p.last), (3, 7));
        assert_eq!(
            p.saw_full(Some(10), || unreachable!("no read when full")),
            10
        );
        let mut exact = DepthProbe {
            every: 1,
            n: 0,
            last: 0,
        };
        assert_eq!(exact.read(|| 4), 4);
        assert_eq!(
            exact.saw_full(Some(10), || 9),
            9,
            "exact probes always read"
        );
    }

    /// How long a stopped or unblocked chef may take to return: a few
    /// polls, generous for a loaded machine.
    const WAKE: Duration = Duration::from_secs(10);

    /// A chef thread putting `dish` on a full queue: once it has said it is
    /// about to put, and has stayed blocked across several polls, returns
    /// the channel its `put` answers on.
    fn blocked_put(mut p: Producer, dish: Dish, stop: &Shutdown) -> mpsc::Receiver<Put> {
        let (ready_tx, ready) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let _ = ready_tx.send(());
            let _ = done_tx.send(p.put(&dish, &stop));
        });
        ready.recv_timeout(WAKE).expect("the chef thread starts");
        assert_eq!(
            done.recv_timeout(POLL * 3),
            Err(mpsc::RecvTimeoutError::Timeout),
            "put returned while the queue was full"
        );
        done
    }

    #[test]
    fn a_chef_blocked_on_a_full_queue_wakes_on_shutdown() {
        let q = LocalQueue::new(Capacity::Bounded(1));
        let stop = Shutdown::new();
        let mut p = q.producer().expect("producer");
        assert_eq!(p.put(&Dish::new(1, 0, 1), &stop), Put::Queued { depth: 1 });
        let done = blocked_put(p, Dish::new(2, 0, 1), &stop);
        stop.stop();
        assert_eq!(done.recv_timeout(WAKE), Ok(Put::Stopped));
        assert_eq!(q.consumer().depth(), 1, "the refused dish never entered");
    }

    #[test]
    fn a_chef_blocked_on_a_full_queue_wakes_when_a_diner_makes_room() {
        let q = LocalQueue::new(Capacity::Bounded(1));
        let stop = Shutdown::new();
        let mut p = q.producer().expect("producer");
        assert_eq!(p.put(&Dish::new(1, 0, 1), &stop), Put::Queued { depth: 1 });
        let done = blocked_put(p, Dish::new(2, 0, 1), &stop);
        let mut c = q.consumer();
        let seq = |t: Take| match t {
            Take::Dish { dish, .. } => dish.id.seq,
            other => panic!("{other:?}"),
        };
        assert_eq!(seq(c.take(&stop)), 1);
        assert!(matches!(done.recv_timeout(WAKE), Ok(Put::Queued { .. })));
        assert_eq!(seq(c.take(&stop)), 2, "the waiting dish went in");
        assert!(!stop.is_stopped());
    }

    #[test]
    fn put_within_answers_full_at_once() {
        let q = LocalQueue::new(Capacity::Bounded(1));
        let mut p = q.producer().expect("producer");
        assert_eq!(
            p.put_within(&Dish::new(1, 0, 1), Duration::ZERO),
            Some(Put::Queued { depth: 1 })
        );
        assert_eq!(
            p.put_within(&Dish::new(2, 0, 1), Duration::from_millis(1)),
            None
        );
        assert_eq!(q.consumer().depth(), 1);
    }
}
