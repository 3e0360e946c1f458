//! A diner: takes the oldest dish, eats it (a nap), acknowledges it, again.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;

use crate::dish::now_us;
use crate::kitchen::chef::random_nap;
use crate::kitchen::output::{IdTag, Printer};
use crate::kitchen::stats::{LatencyHistogram, LiveCounters};
use crate::queue::{Consumer, QueueError, Take};
use crate::results::Recorder;
use crate::shutdown::Shutdown;

/// Everything one diner thread needs.
#[derive(Debug)]
pub(crate) struct Diner {
    pub slot: usize,
    /// 1-based number, as printed (`diner-1`).
    pub number: u32,
    pub consumer: Consumer,
    /// Stop taking new dishes (a diner-only process on Ctrl-C, or a failure).
    pub quit: Shutdown,
    /// Every producer is done: take what is left, then end.
    pub finished: Shutdown,
    /// Told once the consumer is ready (dropped unsent if it fails first).
    pub ready: Option<crossbeam_channel::Sender<()>>,
    pub max_sleep: Duration,
    pub rng: StdRng,
    pub printer: Printer,
    /// Add each dish's id to its line (`--ids`).
    pub ids: bool,
    /// Where a closed stdout sends its stop.
    pub print_stop: Shutdown,
    pub live: Arc<LiveCounters>,
    /// Where the results of tracked dishes go, and the name they are
    /// recorded under; `None` where nobody can ask (a local `kitchen run`).
    pub results: Option<(Recorder, String)>,
}

/// What one diner did.
#[derive(Debug, Default, Clone)]
pub(crate) struct DinerReport {
    pub eaten: u64,
    /// Dishes shown never to have arrived (a dropped pub/sub subscription).
    pub lost: u64,
    pub rejected: u64,
    pub max_depth: u64,
    pub latency: LatencyHistogram,
}

impl Diner {
    /// Eats until the queue closes or `quit`.
    pub fn eat(mut self) -> Result<DinerReport, QueueError> {
        let mut r = DinerReport::default();
        self.consumer.ready()?;
        if let Some(tx) = self.ready.take() {
            let _ = tx.send(());
        }
        while !self.quit.is_stopped() {
            match self.consumer.take(&self.finished)? {
                Take::Dish { dish, depth } => {
                    if dish.made_at_us != 0 {
                        r.latency.record(now_us().saturating_sub(dish.made_at_us));
                    }
                    r.eaten += 1;
                    r.max_depth = r.max_depth.max(depth as u64);
                    self.live.set(self.slot, r.eaten);
                    if self.printer.enabled() {
                        self.printer.line(
                            format_args!(
                                "diner-{} ate dish {} --- {depth} left to eat{}",
                                self.number,
                                dish.number,
                                IdTag(self.ids.then_some(dish.id))
                            ),
                            &self.print_stop,
                        );
                    }
                    if let Some((rec, name)) = self.results.as_mut().filter(|_| dish.track) {
                        rec.eating(&dish, name)?;
                    }
                    // Eating is not interrupted by a stop: a diner finishes its dish.
                    if !self.max_sleep.is_zero() {
                        std::thread::sleep(random_nap(&mut self.rng, self.max_sleep));
                    }
                    self.consumer.ack(&dish)?;
                    if let Some((rec, name)) = self.results.as_mut().filter(|_| dish.track) {
                        rec.eaten(&dish, name)?;
                    }
                }
                Take::Rejected { reason } => {
                    r.rejected += 1;
                    if self.printer.enabled() {
                        self.printer.line(
                            format_args!("diner-{} rejected a payload --- {reason}", self.number),
                            &self.print_stop,
                        );
                    }
                }
                Take::Idle => {}
                Take::Closed => break,
            }
        }
        r.lost = self.consumer.lost();
        Ok(r)
    }
}
