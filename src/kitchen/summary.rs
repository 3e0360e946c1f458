//! The summary of a run: a table for people on stderr, or one JSON object.

use std::fmt::Write as _;

use serde::Serialize;

use crate::kitchen::stats::Latency;
use crate::queue::Mode;

/// What a run did, as SPEC §3 lays it out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// `"local"` or `"redis"`.
    pub backend: &'static str,
    /// `null` for local, else `"list"` or `"pubsub"`.
    pub mode: Option<Mode>,
    /// Chef threads in this process.
    pub chefs: usize,
    /// Diner threads in this process.
    pub diners: usize,
    /// The bound on waiting dishes; `null` when unbounded or not applicable.
    pub capacity: Option<usize>,
    /// Dishes put on the queue (published, in pub/sub mode).
    pub made: u64,
    /// Dishes taken off it (deliveries, in pub/sub mode).
    pub eaten: u64,
    /// Dishes still queued at exit.
    pub left: u64,
    /// Dishes shown to be gone (published with no subscriber).
    pub lost: u64,
    /// Payloads a diner could not read.
    pub rejected: u64,
    /// The deepest the queue was seen.
    pub max_depth: u64,
    /// Wall time of the run.
    pub elapsed_s: f64,
    /// Dishes eaten per second (made per second, for a chef-only process).
    pub dishes_per_s: f64,
    /// Made→eaten latency.
    pub latency_us: Latency,
}

impl Summary {
    /// One JSON object on one line.
    pub fn to_json(&self) -> String {
        // Numbers and strings only: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The table printed on stderr.
    pub fn to_table(&self) -> String {
        let backend = match self.mode {
            Some(mode) => format!("{} ({})", self.backend, mode.name()),
            None => self.backend.to_owned(),
        };
        let capacity = self
            .capacity
            .map_or_else(|| "unbounded".to_owned(), |c| c.to_string());
        let l = &self.latency_us;
        let rows: [(&str, String); 14] = [
            ("backend", backend),
            ("chefs", self.chefs.to_string()),
            ("diners", self.diners.to_string()),
            ("capacity", capacity),
            ("made", self.made.to_string()),
            ("eaten", self.eaten.to_string()),
            ("left", self.left.to_string()),
            ("lost", self.lost.to_string()),
            ("rejected", self.rejected.to_string()),
            ("max depth", self.max_depth.to_string()),
            ("elapsed", format!("{:.3} s", self.elapsed_s)),
            (
                "rate",
                format!("{} dishes/s", human_rate(self.dishes_per_s)),
            ),
            (
                "latency",
                format!("p50 {} µs, p90 {} µs, p99 {} µs", l.p50, l.p90, l.p99),
            ),
            ("max latency", format!("{} µs", l.max)),
        ];
        let mut out = String::from("kitchen summary\n");
        for (k, v) in rows {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "  {k:<12} {v}");
        }
        out
    }
}

/// `1234567.0` → `"1.23 M"`, for people.
pub fn human_rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.1} k", per_s / 1e3)
    } else {
        format!("{per_s:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Summary {
        Summary {
            backend: "local",
            mode: None,
            chefs: 3,
            diners: 2,
            capacity: Some(10),
            made: 1000,
            eaten: 1000,
            left: 0,
            lost: 0,
            rejected: 0,
            max_depth: 10,
            elapsed_s: 0.01,
            dishes_per_s: 100_000.0,
            latency_us: Latency {
                p50: 3,
                p90: 9,
                p99: 40,
                max: 120,
            },
        }
    }

    #[test]
    fn json_has_the_spec_fields_in_order() {
        let json = sample().to_json();
        assert_eq!(
            json,
            concat!(
                r#"{"backend":"local","mode":null,"chefs":3,"diners":2,"capacity":10,"#,
                r#""made":1000,"eaten":1000,"left":0,"lost":0,"rejected":0,"max_depth":10,"#,
                r#""elapsed_s":0.01,"dishes_per_s":100000.0,"#,
                r#""latency_us":{"p50":3,"p90":9,"p99":40,"max":120}}"#
            )
        );
    }

    #[test]
    fn json_names_the_mode_in_lowercase() {
        let s = Summary {
            backend: "redis",
            mode: Some(Mode::Pubsub),
            capacity: None,
            ..sample()
        };
        let json = s.to_json();
        assert!(json.contains(r#""mode":"pubsub""#), "{json}");
        assert!(json.contains(r#""capacity":null"#), "{json}");
    }

    #[test]
    fn table_shows_every_figure() {
        let t = sample().to_table();
        for want in [
            "made         1000",
            "max depth    10",
            "100.0 k dishes/s",
            "p99 40 µs",
        ] {
            assert!(t.contains(want), "{want:?} missing from\n{t}");
        }
    }

    #[test]
    fn rates_read_well() {
        assert_eq!(human_rate(12_345_678.0), "12.35 M");
        assert_eq!(human_rate(20_500.0), "20.5 k");
        assert_eq!(human_rate(5_408.1), "5.4 k");
        assert_eq!(human_rate(9.0), "9.0");
    }
}
