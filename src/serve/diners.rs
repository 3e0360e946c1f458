//! The web entry's in-process diners report to its figures: a [`Sink`] for the kitchen's diner.

use std::sync::Arc;
use std::time::Duration;

use crate::dish::Dish;
use crate::kitchen::diner::Sink;
use crate::queue::Returned;
use crate::serve::Shared;
use crate::serve::live::Failure;
use crate::serve::metrics::Metrics;

/// Where the web entry's diners count what they ate.
#[derive(Debug)]
pub(crate) struct WebSink {
    pub shared: Arc<Shared>,
}

impl Sink for WebSink {
    fn took(&mut self, _: &Dish, _: usize, latency_us: Option<u64>) {
        if let Some(us) = latency_us {
            self.shared.metrics.record_latency(us);
        }
    }

    fn ate(&mut self, _: &Dish) {
        Metrics::bump(&self.shared.metrics.eaten);
    }

    fn failed(&mut self, dish: &Dish, reason: &str) {
        Metrics::bump(&self.shared.metrics.failed);
        self.shared.live.failed(Failure::of(
            dish,
            reason,
            format!("dead after {}", attempts(dish.attempt)),
        ));
    }

    fn retrying(&mut self, dish: &Dish, reason: &str, delay: Duration) {
        // Each retry is one attempt after the first.
        Metrics::bump(&self.shared.metrics.retried);
        self.shared.live.failed(Failure::of(
            dish,
            reason,
            format!(
                "attempt {} failed; tried again in {:.1} s",
                dish.attempt,
                delay.as_secs_f64()
            ),
        ));
    }

    fn abandoned(&mut self, _: &Dish, _: Returned) {}

    fn rejected(&mut self, _: &str) {
        Metrics::bump(&self.shared.metrics.rejected);
    }

    fn closed(&mut self, _: u64) {}
}

/// "1 attempt", "3 attempts".
fn attempts(n: u32) -> String {
    format!("{n} attempt{}", if n == 1 { "" } else { "s" })
}
