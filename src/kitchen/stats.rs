//! Run statistics: live per-thread counters and a fixed-size latency histogram.

use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use serde::Serialize;

/// The highest latency the histogram tells apart: one hour, in microseconds.
/// Slower dishes are recorded as one hour.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Made→eaten latency in microseconds, in fixed memory whatever the count.
///
/// An HDR histogram with three significant digits: about 200 KiB, independent of
/// how many dishes are recorded, so a run of a billion dishes costs what a run
/// of ten does.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    hist: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2 * low,
        // sigfig <= 5): no input reaches this, and a unit test builds it.
        let mut hist = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
            .expect("constant histogram bounds are valid");
        // Touch every count now: the zeroed allocation is mapped lazily, so
        // without this a longer run (more distinct latencies) would show a
        // higher peak RSS although it allocates nothing more.
        for v in [MAX_LATENCY_US, 0] {
            hist.saturating_record(std::hint::black_box(v));
        }
        hist.reset();
        LatencyHistogram { hist }
    }

    /// Records one latency.
    #[inline]
    pub fn record(&mut self, us: u64) {
        self.hist.saturating_record(us.min(MAX_LATENCY_US));
    }

    /// Adds another histogram's samples to this one.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Same bounds on both sides, so `add` cannot fail; saturate if it did.
        if self.hist.add(&other.hist).is_err() {
            for v in other.hist.iter_recorded() {
                self.hist
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }

    /// How many latencies were recorded.
    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    /// How many latencies were at most `us` (for cumulative histogram buckets).
    pub fn count_at_most(&self, us: u64) -> u64 {
        self.hist.count_between(0, us.min(MAX_LATENCY_US))
    }

    /// The sum of the recorded latencies (to the histogram's precision).
    pub fn sum_us(&self) -> f64 {
        self.hist.mean() * self.hist.len() as f64
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// The percentiles the summary reports (all 0 when empty).
    pub fn latency(&self) -> Latency {
        if self.hist.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: self.hist.value_at_quantile(0.50),
            p90: self.hist.value_at_quantile(0.90),
            p99: self.hist.value_at_quantile(0.99),
            max: self.hist.max(),
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Slowest.
    pub max: u64,
}

/// One counter on its own cache line, so threads bumping neighbours do not
/// bounce a shared line between cores.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

/// Counters that the status line reads while the run goes on.
///
/// Each thread owns one slot and is its only writer, so a plain store of its
/// own running total is enough; readers sum the slots.
#[derive(Debug)]
pub struct LiveCounters {
    slots: Box<[Padded]>,
}

impl LiveCounters {
    /// `n` slots, all zero.
    pub fn new(n: usize) -> Self {
        LiveCounters {
            slots: (0..n).map(|_| Padded::default()).collect(),
        }
    }

    /// Publishes slot `i`'s running total.
    #[inline]
    pub fn set(&self, i: usize, total: u64) {
        if let Some(s) = self.slots.get(i) {
            s.0.store(total, Ordering::Relaxed);
        }
    }

    /// The sum over all slots.
    pub fn total(&self) -> u64 {
        self.slots.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// The shared budget of dishes for `--dishes N`.
///
/// Chefs claim tickets in batches so that, at full speed, they do not all
/// fight over one counter per dish; the total handed out is exactly N.
#[derive(Debug)]
pub struct Tickets {
    left: Option<AtomicU64>,
}

impl Tickets {
    /// `Some(n)`: exactly n tickets; `None`: unlimited.
    pub fn new(limit: Option<u64>) -> Self {
        Tickets {
            left: limit.map(AtomicU64::new),
        }
    }

    /// Claims up to `want` tickets; returns how many were granted (0 = none left).
    pub fn claim(&self, want: u64) -> u64 {
        let Some(left) = &self.left else {
            return want;
        };
        let mut cur = left.load(Ordering::Relaxed);
        loop {
            let got = cur.min(want);
            if got == 0 {
                return 0;
            }
            match left.compare_exchange_weak(cur, cur - got, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return got,
                Err(now) => cur = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_spread() {
        let mut h = LatencyHistogram::new();
        for v in 1..=100 {
            h.record(v);
        }
        let l = h.latency();
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50, 90, 99, 100));
        assert_eq!(h.len(), 100);
    }

    #[test]
    fn empty_reports_zeros_and_zero_is_recordable() {
        let mut h = LatencyHistogram::new();
        assert_eq!(h.latency(), Latency::default());
        h.record(0);
        assert_eq!(h.latency().max, 0);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn merge_adds_counts_and_huge_values_saturate() {
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        a.record(10);
        b.record(u64::MAX);
        a.merge(&b);
        assert_eq!(a.len(), 2);
        assert!(a.latency().max >= MAX_LATENCY_US);
    }

    #[test]
    fn memory_does_not_grow_with_samples() {
        let mut h = LatencyHistogram::new();
        let before = h.hist.distinct_values();
        for v in 0..1_000_000u64 {
            h.record(v * 3_601);
        }
        assert_eq!(h.hist.distinct_values(), before);
    }

    #[test]
    fn tickets_hand_out_exactly_the_limit() {
        let t = Tickets::new(Some(10));
        assert_eq!(t.claim(4), 4);
        assert_eq!(t.claim(4), 4);
        assert_eq!(t.claim(4), 2);
        assert_eq!(t.claim(4), 0);
        assert_eq!(Tickets::new(None).claim(7), 7);
    }

    #[test]
    fn live_counters_sum_their_slots() {
        let c = LiveCounters::new(3);
        c.set(0, 5);
        c.set(2, 7);
        c.set(9, 100); // out of range: ignored, not a panic
        assert_eq!(c.total(), 12);
    }
}
