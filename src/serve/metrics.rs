//! The server's counters, and their two faces: `/stats` JSON and `/metrics` Prometheus text.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::Serialize;

use crate::kitchen::stats::{Latency, LatencyHistogram};

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS_S: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0,
];

/// Counters shared by the web workers and the in-process diners.
///
/// Plain atomics: a request bumps one counter, so workers never wait on each
/// other. Only the latency histogram takes a lock, and only diners write it.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Dishes put on the queue (or published) by this server.
    pub made: AtomicU64,
    /// Dishes eaten by this server's diners.
    pub eaten: AtomicU64,
    /// Payloads this server's diners could not read.
    pub rejected: AtomicU64,
    /// Dishes this server's diners failed (their command exited non-zero).
    pub failed: AtomicU64,
    /// Attempts after the first by this server's diners.
    pub retried: AtomicU64,
    /// Dishes published with no subscriber.
    pub lost: AtomicU64,
    /// Requests refused with `503` because the queue was full.
    pub full: AtomicU64,
    /// Requests refused with `503` because the backend failed.
    pub unavailable: AtomicU64,
    latency: Mutex<LatencyHistogram>,
}

/// A point-in-time copy of the figures, with the queue's state.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// `"local"` or `"redis"`.
    pub backend: &'static str,
    /// The bound on waiting dishes; `null` when unbounded.
    pub capacity: Option<usize>,
    /// Dishes waiting now; `null` when the backend cannot be read.
    pub queued: Option<usize>,
    /// Dishes waiting in each shard (`--shards` N > 1), shard 0 first;
    /// absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<Vec<usize>>,
    /// See [`Metrics::made`].
    pub made: u64,
    /// See [`Metrics::eaten`]; `null` where the diners are other processes.
    pub eaten: Option<u64>,
    /// See [`Metrics::rejected`]; `null` where the diners are other processes.
    pub rejected: Option<u64>,
    /// See [`Metrics::failed`]; `null` where the diners are other processes.
    pub failed: Option<u64>,
    /// See [`Metrics::retried`]; `null` where the diners are other processes.
    pub retried: Option<u64>,
    /// Dead letters kept now; `null` when they cannot be read.
    pub dead_letters: Option<u64>,
    /// Failed dishes waiting out their delay before another attempt; `null`
    /// when they cannot be read.
    pub waiting_retries: Option<u64>,
    /// See [`Metrics::lost`].
    pub lost: u64,
    /// See [`Metrics::full`].
    pub refused_full: u64,
    /// See [`Metrics::unavailable`].
    pub refused_unavailable: u64,
    /// Subscribers of the pub/sub channel; `null` where there is none.
    pub subscribers: Option<usize>,
    /// Diner threads eating from the queue: this process's own, or the live
    /// diner processes' threads on a shared queue; `null` when unknown.
    pub diners: Option<usize>,
    /// Web worker threads.
    pub workers: usize,
    /// Seconds since the server started.
    pub uptime_s: f64,
    /// Made→taken latency of dishes eaten in this process; `null` where
    /// the diners are other processes (each reports its own).
    pub latency_us: Option<Latency>,
}

impl Metrics {
    /// Adds one to `counter`.
    #[inline]
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one made→taken latency.
    pub fn record_latency(&self, us: u64) {
        self.latency.lock().record(us);
    }

    /// The latency percentiles.
    pub fn latency(&self) -> Latency {
        self.latency.lock().latency()
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of `snap` and the latency histogram.
    pub fn prometheus(&self, snap: &Snapshot) -> String {
        let mut out = String::with_capacity(2048);
        let counters = [
            (
                "made",
                Some(snap.made),
                "Dishes put on the queue or published by this server.",
            ),
            ("eaten", snap.eaten, "Dishes eaten by this server's diners."),
            (
                "rejected",
                snap.rejected,
                "Payloads this server's diners could not read.",
            ),
            (
                "lost",
                Some(snap.lost),
                "Dishes published with no subscriber.",
            ),
        ];
        // Writing to a String cannot fail. A figure this server cannot know
        // (its diners are other processes) is left out, not reported as 0.
        for (name, value, help) in counters {
            let Some(value) = value else { continue };
            let _ = writeln!(out, "# HELP kitchen_dishes_{name}_total {help}");
            let _ = writeln!(out, "# TYPE kitchen_dishes_{name}_total counter");
            let _ = writeln!(out, "kitchen_dishes_{name}_total {value}");
        }
        let series = [
            (
                "kitchen_failed_total",
                "counter",
                snap.failed,
                "Dishes that failed in this server's diners' hands.",
            ),
            (
                "kitchen_retried_total",
                "counter",
                snap.retried,
                "Attempts after the first by this server's diners.",
            ),
            (
                "kitchen_dead_letters",
                "gauge",
                snap.dead_letters,
                "Dead letters kept now.",
            ),
            (
                "kitchen_waiting_retries",
                "gauge",
                snap.waiting_retries,
                "Failed dishes waiting out their delay before another attempt.",
            ),
        ];
        for (name, kind, value, help) in series {
            let Some(value) = value else { continue };
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        }
        out.push_str("# HELP kitchen_refused_total Requests refused with 503, by reason.\n");
        out.push_str("# TYPE kitchen_refused_total counter\n");
        let _ = writeln!(
            out,
            "kitchen_refused_total{{reason=\"full\"}} {}",
            snap.refused_full
        );
        let _ = writeln!(
            out,
            "kitchen_refused_total{{reason=\"unavailable\"}} {}",
            snap.refused_unavailable
        );
        out.push_str("# HELP kitchen_queue_depth Dishes waiting on the queue.\n");
        out.push_str("# TYPE kitchen_queue_depth gauge\n");
        // A depth that cannot be read (Redis down) is left out: a scraper
        // would store NaN as a value, and `up`/`/healthz` tell the outage.
        if let Some(q) = snap.queued {
            let _ = writeln!(out, "kitchen_queue_depth {q}");
        }
        out.push_str(
            "# HELP kitchen_dish_latency_seconds Time from made to taken by a diner of this process.\n",
        );
        out.push_str("# TYPE kitchen_dish_latency_seconds histogram\n");
        let h = self.latency.lock();
        for le in BUCKETS_S {
            let le_us = (le * 1e6) as u64;
            let n = h.count_at_most(le_us);
            let _ = writeln!(
                out,
                "kitchen_dish_latency_seconds_bucket{{le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "kitchen_dish_latency_seconds_bucket{{le=\"+Inf\"}} {}",
            h.len()
        );
        let _ = writeln!(out, "kitchen_dish_latency_seconds_sum {}", h.sum_us() / 1e6);
        let _ = writeln!(out, "kitchen_dish_latency_seconds_count {}", h.len());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_counters_gauge_and_cumulative_buckets() {
        let m = Metrics::default();
        Metrics::bump(&m.made);
        m.record_latency(50);
        m.record_latency(2_000_000);
        let snap = Snapshot {
            backend: "local",
            capacity: Some(10),
            queued: Some(3),
            shards: None,
            made: Metrics::get(&m.made),
            eaten: Some(2),
            rejected: Some(0),
            failed: Some(4),
            retried: Some(5),
            dead_letters: Some(6),
            waiting_retries: Some(7),
            lost: 0,
            refused_full: 0,
            refused_unavailable: 0,
            subscribers: None,
            diners: Some(2),
            workers: 4,
            uptime_s: 1.0,
            latency_us: Some(m.latency()),
        };
        let text = m.prometheus(&snap);
        for want in [
            "kitchen_dishes_made_total 1\n",
            "# TYPE kitchen_failed_total counter\nkitchen_failed_total 4\n",
            "# TYPE kitchen_retried_total counter\nkitchen_retried_total 5\n",
            "# TYPE kitchen_dead_letters gauge\nkitchen_dead_letters 6\n",
            "# TYPE kitchen_waiting_retries gauge\nkitchen_waiting_retries 7\n",
            "kitchen_queue_depth 3\n",
            "kitchen_dish_latency_seconds_bucket{le=\"0.0001\"} 1\n",
            "kitchen_dish_latency_seconds_bucket{le=\"1\"} 1\n",
            "kitchen_dish_latency_seconds_bucket{le=\"5\"} 2\n",
            "kitchen_dish_latency_seconds_bucket{le=\"+Inf\"} 2\n",
            "kitchen_dish_latency_seconds_count 2\n",
        ] {
            assert!(text.contains(want), "{want:?} missing from\n{text}");
        }
    }

    #[test]
    fn an_unreadable_depth_is_left_out_not_nan() {
        let m = Metrics::default();
        let snap = Snapshot {
            backend: "redis",
            capacity: Some(10),
            queued: None,
            shards: None,
            made: 0,
            eaten: None,
            rejected: None,
            failed: None,
            retried: None,
            dead_letters: None,
            waiting_retries: None,
            lost: 0,
            refused_full: 0,
            refused_unavailable: 1,
            subscribers: None,
            diners: None,
            workers: 4,
            uptime_s: 1.0,
            latency_us: None,
        };
        let text = m.prometheus(&snap);
        assert!(!text.contains("NaN"), "{text}");
        assert!(
            !text.lines().any(|l| l.starts_with("kitchen_queue_depth")),
            "{text}"
        );
    }
}
