//! The web entry's own diners (local backend): eat, and record what became of each dish.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;

use crate::dish::now_us;
use crate::kitchen::random_nap;
use crate::queue::{Consumer, QueueError, Take};
use crate::results::Recorder;
use crate::serve::Shared;
use crate::serve::metrics::Metrics;
use crate::shutdown::Shutdown;

/// One in-process diner of `kitchen serve`.
#[derive(Debug)]
pub(crate) struct WebDiner {
    pub name: String,
    pub consumer: Consumer,
    pub shared: Arc<Shared>,
    pub results: Recorder,
    pub max_sleep: Duration,
    pub rng: StdRng,
}

impl WebDiner {
    /// Eats until the queue closes (every web worker gone and the queue empty).
    pub fn eat(mut self) -> Result<(), QueueError> {
        // The local queue closes by disconnection; this token is for backends
        // that need telling, which have no in-process diners here.
        let finished = Shutdown::new();
        let m = &self.shared.metrics;
        loop {
            match self.consumer.take(&finished)? {
                Take::Dish { dish, .. } => {
                    // Latency ends when a diner takes the dish, as in the
                    // kitchen's summary: the nap is eating, not waiting.
                    if dish.made_at_us != 0 {
                        m.record_latency(now_us().saturating_sub(dish.made_at_us));
                    }
                    if dish.track {
                        self.results.eating(&dish, &self.name)?;
                    }
                    if !self.max_sleep.is_zero() {
                        std::thread::sleep(random_nap(&mut self.rng, self.max_sleep));
                    }
                    self.consumer.ack(&dish)?;
                    if dish.track {
                        self.results.eaten(&dish, &self.name)?;
                    }
                    Metrics::bump(&m.eaten);
                }
                Take::Rejected { .. } => Metrics::bump(&m.rejected),
                Take::Idle => {}
                Take::Closed => return Ok(()),
            }
        }
    }
}
