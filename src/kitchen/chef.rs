//! A chef: draws a dish number, puts the dish on the queue, naps, again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;

use crate::dish::{Dish, ID_BLOCK, MAX_DISH, now_us};
use crate::kitchen::output::{IdTag, PrintOrder, Printer};
use crate::kitchen::stats::{LiveCounters, Tickets};
use crate::queue::{Producer, Put, PutError};
use crate::shutdown::Shutdown;

/// Everything one chef thread needs.
#[derive(Debug)]
pub(crate) struct Chef {
    /// 0-based slot in the live counters.
    pub slot: usize,
    /// 1-based number, as printed (`chef-2`).
    pub number: u32,
    pub producer: Producer,
    /// Stops the chefs: Ctrl-C, `--duration`, a closed stdout, a failure elsewhere.
    pub stop: Shutdown,
    pub tickets: Arc<Tickets>,
    /// Tickets to claim at once; 1 when chefs nap, so they share the work.
    pub batch: u64,
    /// Stamp the time made on dishes whose sequence has these low bits clear
    /// (0 = every dish).
    pub stamp_mask: u64,
    pub max_sleep: Duration,
    pub rng: StdRng,
    pub printer: Printer,
    /// Add each dish's id to its line (`--ids`).
    pub ids: bool,
    pub live: Arc<LiveCounters>,
    /// Where this chef says which of its dishes' lines are out.
    pub order: Arc<PrintOrder>,
}

/// What one chef did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ChefReport {
    pub made: u64,
    pub lost: u64,
    pub max_depth: u64,
}

impl Chef {
    /// Cooks until the tickets run out or `stop`; on a failure, also what
    /// was made before it (a summary still counts those dishes).
    pub fn cook(self) -> (ChefReport, Option<PutError>) {
        let mut r = ChefReport::default();
        let failure = self.cook_into(&mut r).err();
        (r, failure)
    }

    fn cook_into(mut self, r: &mut ChefReport) -> Result<(), PutError> {
        let mut ids = IdBlock::default();
        let mut budget = 0u64;
        // Dishes per round trip (`--batch`); 1 puts one dish at a time.
        let per_trip = self.producer.batch().max(1) as u64;
        let mut dishes = Vec::with_capacity(per_trip as usize);
        while !self.stop.is_stopped() {
            if budget == 0 {
                budget = self.tickets.claim(self.batch.max(per_trip));
                if budget == 0 {
                    break;
                }
            }
            let (stopped, n) = if per_trip == 1 {
                let dish = self.next_dish(&mut ids);
                let put = self.producer.put(&dish, &self.stop)?;
                (!self.record(r, &dish, put), 1)
            } else {
                dishes.clear();
                for _ in 0..budget.min(per_trip) {
                    dishes.push(self.next_dish(&mut ids));
                }
                let puts = self.producer.put_all(&dishes, &self.stop)?;
                let mut stopped = puts.len() < dishes.len();
                for (dish, put) in dishes.iter().zip(puts) {
                    stopped |= !self.record(r, dish, put);
                }
                (stopped, dishes.len() as u64)
            };
            if stopped {
                break;
            }
            budget -= n;
            self.live.set(self.slot, r.made);
            if !self.max_sleep.is_zero()
                && self.stop.sleep(random_nap(&mut self.rng, self.max_sleep))
            {
                break;
            }
        }
        Ok(())
    }

    /// A new dish with a random number, stamped with the time made unless
    /// this run samples and its sequence number is not in the sample.
    #[inline]
    fn next_dish(&mut self, ids: &mut IdBlock) -> Dish {
        let number = self.rng.random_range(0..=MAX_DISH);
        let seq = ids.next();
        let mut dish = Dish::unstamped(seq, number, self.number);
        if seq & self.stamp_mask == 0 {
            dish.made_at_us = now_us();
        }
        dish
    }

    /// Counts and prints one put; `false` when it was stopped instead.
    fn record(&self, r: &mut ChefReport, dish: &Dish, put: Put) -> bool {
        let (number, id) = (&dish.payload, IdTag(self.ids.then_some(dish.id)));
        match put {
            Put::Queued { depth } => {
                r.max_depth = r.max_depth.max(depth as u64);
                if self.printer.enabled() {
                    self.printer.line(
                        format_args!(
                            "chef-{} made dish {number} --- {depth} left unsold{id}",
                            self.number
                        ),
                        &self.stop,
                    );
                    self.order.printed(self.slot, dish.id.seq);
                }
            }
            Put::Published { receivers } => {
                if receivers == 0 {
                    r.lost += 1;
                }
                if self.printer.enabled() {
                    self.printer.line(
                        format_args!(
                            "chef-{} made dish {number} --- served to {receivers} diners{id}",
                            self.number
                        ),
                        &self.stop,
                    );
                    self.order.printed(self.slot, dish.id.seq);
                }
            }
            Put::Stopped => return false,
        }
        r.made += 1;
        true
    }
}

/// A uniform random nap below `max`, in whole microseconds.
pub(crate) fn random_nap(rng: &mut StdRng, max: Duration) -> Duration {
    let max_us = u64::try_from(max.as_micros()).unwrap_or(u64::MAX);
    if max_us == 0 {
        return Duration::ZERO;
    }
    Duration::from_micros(rng.random_range(0..max_us))
}

/// Hands out dish sequence numbers unique within the process, a block at a
/// time, so chefs (and web workers) never share a counter per dish.
#[derive(Debug, Default)]
pub(crate) struct IdBlock {
    next: u64,
    end: u64,
}

impl IdBlock {
    /// The next unused sequence number of this process.
    pub fn next(&mut self) -> u64 {
        // Blocks start at 1 (0 is "no id"): see `DishId::block`.
        static NEXT_BLOCK: AtomicU64 = AtomicU64::new(1);
        if self.next == self.end {
            self.next = NEXT_BLOCK.fetch_add(ID_BLOCK, Ordering::Relaxed);
            self.end = self.next + ID_BLOCK;
        }
        let n = self.next;
        self.next += 1;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn id_blocks_never_overlap() {
        let mut a = IdBlock::default();
        let mut b = IdBlock::default();
        let first_a = a.next();
        let first_b = b.next();
        assert_ne!(first_a, first_b);
        assert_eq!(a.next(), first_a + 1);
        assert!(first_a.abs_diff(first_b) >= ID_BLOCK);
    }

    #[test]
    fn naps_stay_below_the_maximum() {
        let mut rng = StdRng::seed_from_u64(1);
        let max = Duration::from_millis(3);
        assert!((0..1000).all(|_| random_nap(&mut rng, max) < max));
        assert_eq!(random_nap(&mut rng, Duration::ZERO), Duration::ZERO);
    }
}
