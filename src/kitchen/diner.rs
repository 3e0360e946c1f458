//! A diner: takes the oldest dish, eats it (a nap), acknowledges it, again.
//!
//! One loop for every diner kitchen runs: the kitchen's own (whose [`Sink`]
//! prints lines and keeps a report) and the web entry's (whose sink bumps
//! its counters).

use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;

use crate::dish::{Dish, now_us};
use crate::kitchen::KitchenError;
use crate::kitchen::work::{Course, Meal, Table};
use crate::queue::{Consumer, Results, Retry, Returned, Take};
use crate::shutdown::Shutdown;

/// Where a diner reports what it did.
pub trait Sink: Send {
    /// A dish was taken, `depth` left behind it; `latency_us` is the time
    /// since it was made, when it carries that time.
    fn took(&mut self, dish: &Dish, depth: usize, latency_us: Option<u64>);
    /// The dish in hand was eaten and acknowledged.
    fn ate(&mut self, dish: &Dish);
    /// The dish in hand failed its last attempt (its command's exit
    /// status, a timeout…, or its diners kept dying) and is dead.
    fn failed(&mut self, dish: &Dish, reason: &str);
    /// The dish in hand failed an attempt, for `reason`, and will be tried
    /// again after `delay`.
    fn retrying(&mut self, dish: &Dish, reason: &str, delay: Duration) {
        let _ = (dish, reason, delay);
    }
    /// The dish in hand was abandoned at the shutdown deadline, and went
    /// where `returned` says.
    fn abandoned(&mut self, dish: &Dish, returned: Returned);
    /// A payload that is not a dish was set aside.
    fn rejected(&mut self, reason: &str);
    /// The diner is done; `lost` dishes were shown never to have arrived.
    fn closed(&mut self, lost: u64);
}

/// Everything one diner thread needs.
#[derive(Debug)]
pub struct Diner<S> {
    /// Its end of the queue.
    pub consumer: Consumer,
    /// Stop taking new dishes (a diner-only process on Ctrl-C, or a failure).
    pub stop: Shutdown,
    /// Every producer is done: take what is left, then end.
    pub chefs_done: Shutdown,
    /// Told once the consumer is ready (dropped unsent if it fails first).
    pub ready: Option<crossbeam_channel::Sender<()>>,
    /// The shutdown deadline has passed: end the dish in hand, and give it back.
    pub abandon: Shutdown,
    /// What it does with each dish.
    pub meal: Meal,
    /// Naps a uniform random time below this per dish (the simulation).
    pub max_sleep: Duration,
    /// For the naps.
    pub rng: StdRng,
    /// The queue's name, for `KITCHEN_QUEUE`.
    pub queue: String,
    /// How often a failed dish is tried, and the wait between.
    pub retry: Retry,
    /// Where the results of tracked dishes go.
    pub results: Results,
    /// The name results are recorded under (unique across processes where
    /// the queue is shared).
    pub results_name: String,
    /// Where it reports.
    pub sink: S,
}

impl<S: Sink> Diner<S> {
    /// Eats until the queue closes or `stop`; hands back the sink, and the
    /// failure that ended it early, if one did (the sink still counts what
    /// was eaten before).
    pub fn eat(mut self) -> (S, Option<KitchenError>) {
        let failure = self.eat_all().err();
        self.sink.closed(self.consumer.lost());
        (self.sink, failure)
    }

    #[inline(never)]
    fn eat_all(&mut self) -> Result<(), KitchenError> {
        self.consumer.ready()?;
        if let Some(tx) = self.ready.take() {
            let _ = tx.send(());
        }
        while !self.stop.is_stopped() && !self.abandon.is_stopped() {
            match self.consumer.take(&self.chefs_done)? {
                Take::Dish { dish, depth } => self.eat_one(dish, depth)?,
                Take::Rejected { reason } => self.sink.rejected(&reason),
                Take::Idle => {}
                Take::Closed => break,
            }
        }
        Ok(())
    }

    #[inline]
    fn eat_one(&mut self, dish: Dish, depth: usize) -> Result<(), KitchenError> {
        // Latency ends when a diner takes the dish: eating is not waiting.
        let latency = (dish.made_at_us != 0).then(|| now_us().saturating_sub(dish.made_at_us));
        self.sink.took(&dish, depth, latency);
        let attempt = dish.attempt;
        if attempt > self.retry.max_attempts {
            return self.poisoned(dish);
        }
        // Only a tracked dish's record needs the start time: a clock read
        // per dish would cost the in-process queue a fifth of its speed.
        let started = if dish.track { now_us() } else { 0 };
        if dish.track {
            self.results
                .eating(&dish, &self.results_name, attempt, started)?;
        }
        let table = Table {
            attempt,
            queue: &self.queue,
            max_sleep: self.max_sleep,
            abandon: &self.abandon,
        };
        // A stop does not interrupt a dish: the diner finishes it, unless the
        // shutdown deadline passes first.
        match self.meal.eat(&dish, &table, &mut self.rng) {
            Course::Ate(output) => {
                self.consumer.ack(&dish)?;
                if dish.track {
                    let output = output.map(|o| String::from_utf8_lossy(&o).into_owned());
                    self.results
                        .eaten(&dish, &self.results_name, attempt, started, output)?;
                }
                self.sink.ate(&dish);
            }
            Course::Failed(reason) => self.failed(&dish, started, &reason)?,
            Course::Abandoned => {
                // Not an attempt: its diner was stopped, the dish did not fail.
                let returned = self.consumer.give_back(&dish);
                self.sink.abandoned(&dish, returned);
            }
        }
        Ok(())
    }

    /// Only a dish whose diner died holding it on its last attempt comes
    /// back past the limit (a failed last attempt is dead at once): eating
    /// it again would only kill another diner, so it is dead.
    // Out of line, as the other failures: the loop of a full-speed local
    // run is inlined whole, and these paths would push it over the limit.
    #[cold]
    #[inline(never)]
    fn poisoned(&mut self, dish: Dish) -> Result<(), KitchenError> {
        let tried = dish.attempt.saturating_sub(1);
        let reason = format!(
            "poison: its diner died during attempt {tried} of {}",
            self.retry.max_attempts
        );
        let dish = Dish {
            attempt: tried,
            ..dish
        };
        self.dead(&dish, now_us(), &reason)
    }

    /// `dish` failed an attempt, for `reason`: tried again after its delay,
    /// or, after the last attempt (or where nothing can be tried again),
    /// dead.
    #[cold]
    #[inline(never)]
    fn failed(&mut self, dish: &Dish, started: u64, reason: &str) -> Result<(), KitchenError> {
        let attempt = dish.attempt;
        if attempt >= self.retry.max_attempts || !self.consumer.can_retry() {
            return self.dead(dish, started, reason);
        }
        let delay = self
            .retry
            .delay_after(attempt, self.rng.random_range(0.5..1.5));
        let next = Dish {
            attempt: attempt + 1,
            ..dish.clone()
        };
        self.consumer.retry(&next, delay)?;
        if dish.track {
            let due = now_us().saturating_add(u64::try_from(delay.as_micros()).unwrap_or(u64::MAX));
            self.results
                .retrying(dish, &self.results_name, started, reason, due)?;
        }
        self.sink.retrying(dish, reason, delay);
        Ok(())
    }

    /// `dish` is dead, for `reason`: into the dead letters, recorded, reported.
    fn dead(&mut self, dish: &Dish, started: u64, reason: &str) -> Result<(), KitchenError> {
        self.consumer.bury(dish, reason)?;
        if dish.track {
            self.results
                .failed(dish, &self.results_name, dish.attempt, started, reason)?;
        }
        self.sink.failed(dish, reason);
        Ok(())
    }
}
