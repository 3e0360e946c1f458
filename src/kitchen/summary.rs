//! The summary of a run: a table for people on stderr, or one JSON object.

use std::fmt::Write as _;

use serde::Serialize;

use crate::kitchen::Role;
use crate::kitchen::stats::Latency;
use crate::queue::Mode;

/// What a run did, as SPEC §3 lays it out.
///
/// Every figure is kept here; what a process cannot know (a chef-only
/// process has no diners, so no latency; a diner-only process does not know
/// the bound its chefs keep) is `null` in the JSON and absent from the table,
/// rather than a misleading 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Which threads ran.
    pub role: Role,
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
    /// Dishes taken off it and eaten (deliveries, in pub/sub mode).
    pub eaten: u64,
    /// Dishes that ended dead: their last attempt failed (their command
    /// exited non-zero, timed out…), or their diners kept dying.
    pub failed: u64,
    /// Attempts after the first: failed attempts that were tried again.
    pub retried: u64,
    /// Failed dishes still waiting for their next attempt at exit; `None`
    /// when it could not be read.
    pub waiting: Option<u64>,
    /// Dishes still queued at exit; `None` when the queue could not be read.
    pub left: Option<u64>,
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

/// The JSON form: the spec's fields in order, `null` where the role cannot know.
#[derive(Serialize)]
struct Wire<'a> {
    backend: &'static str,
    mode: Option<Mode>,
    chefs: Option<usize>,
    diners: Option<usize>,
    capacity: Option<usize>,
    made: Option<u64>,
    eaten: Option<u64>,
    failed: Option<u64>,
    retried: Option<u64>,
    left: Option<u64>,
    waiting: Option<u64>,
    lost: u64,
    rejected: Option<u64>,
    max_depth: u64,
    elapsed_s: f64,
    dishes_per_s: f64,
    latency_us: Option<&'a Latency>,
}

impl Summary {
    fn cooks(&self) -> bool {
        self.role != Role::Diner
    }

    fn eats(&self) -> bool {
        self.role != Role::Chef
    }

    fn wire(&self) -> Wire<'_> {
        let (cooks, eats) = (self.cooks(), self.eats());
        Wire {
            backend: self.backend,
            mode: self.mode,
            chefs: cooks.then_some(self.chefs),
            diners: eats.then_some(self.diners),
            // Chefs keep the bound; a diner-only process cannot know theirs.
            capacity: self.capacity.filter(|_| cooks),
            made: cooks.then_some(self.made),
            eaten: eats.then_some(self.eaten),
            failed: eats.then_some(self.failed),
            retried: eats.then_some(self.retried),
            left: self.left,
            waiting: self.waiting,
            lost: self.lost,
            rejected: eats.then_some(self.rejected),
            max_depth: self.max_depth,
            elapsed_s: self.elapsed_s,
            dishes_per_s: self.dishes_per_s,
            latency_us: eats.then_some(&self.latency_us),
        }
    }

    /// One JSON object on one line.
    pub fn to_json(&self) -> String {
        // Numbers and strings only: serializing cannot fail.
        serde_json::to_string(&self.wire()).unwrap_or_default()
    }

    /// The table printed on stderr: only the rows this role knows.
    pub fn to_table(&self) -> String {
        let w = self.wire();
        let backend = match self.mode {
            Some(mode) => format!("{} ({})", self.backend, mode.name()),
            None => self.backend.to_owned(),
        };
        let capacity = if self.cooks() {
            Some(
                self.capacity
                    .map_or_else(|| "unbounded".to_owned(), |c| c.to_string()),
            )
        } else {
            None
        };
        let show = |v: Option<u64>| v.map(|n| n.to_string());
        let rows: [(&str, Option<String>); 17] = [
            ("backend", Some(backend)),
            ("chefs", w.chefs.map(|n| n.to_string())),
            ("diners", w.diners.map(|n| n.to_string())),
            ("capacity", capacity),
            ("made", show(w.made)),
            ("eaten", show(w.eaten)),
            ("failed", show(w.failed)),
            ("retried", show(w.retried)),
            (
                "left",
                Some(
                    w.left
                        .map_or_else(|| "unknown".to_owned(), |n| n.to_string()),
                ),
            ),
            ("waiting", show(w.waiting)),
            ("lost", Some(self.lost.to_string())),
            ("rejected", show(w.rejected)),
            ("max depth", Some(self.max_depth.to_string())),
            ("elapsed", Some(format!("{:.3} s", self.elapsed_s))),
            (
                "rate",
                Some(format!("{} dishes/s", human_rate(self.dishes_per_s))),
            ),
            (
                "latency",
                w.latency_us
                    .map(|l| format!("p50 {} µs, p90 {} µs, p99 {} µs", l.p50, l.p90, l.p99)),
            ),
            ("max latency", w.latency_us.map(|l| format!("{} µs", l.max))),
        ];
        let mut out = String::from("kitchen summary\n");
        for (k, v) in rows {
            if let Some(v) = v {
                // Writing to a String cannot fail.
                let _ = writeln!(out, "  {k:<12} {v}");
            }
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
            role: Role::Run,
            backend: "local",
            mode: None,
            chefs: 3,
            diners: 2,
            capacity: Some(10),
            made: 1000,
            eaten: 1000,
            failed: 0,
            retried: 0,
            waiting: Some(0),
            left: Some(0),
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
                r#""made":1000,"eaten":1000,"failed":0,"retried":0,"left":0,"waiting":0,"lost":0,"#,
                r#""rejected":0,"max_depth":10,"#,
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
    fn one_role_shows_only_what_it_knows() {
        let chef = Summary {
            role: Role::Chef,
            ..sample()
        };
        let json = chef.to_json();
        for null in ["diners", "eaten", "retried", "rejected", "latency_us"] {
            assert!(
                json.contains(&format!(r#""{null}":null"#)),
                "{null}: {json}"
            );
        }
        let t = chef.to_table();
        assert!(!t.contains("eaten") && !t.contains("latency"), "{t}");
        let diner = Summary {
            role: Role::Diner,
            ..sample()
        };
        let json = diner.to_json();
        for null in ["chefs", "capacity", "made"] {
            assert!(
                json.contains(&format!(r#""{null}":null"#)),
                "{null}: {json}"
            );
        }
        assert!(!diner.to_table().contains("made"), "{}", diner.to_table());
    }

    #[test]
    fn rates_read_well() {
        assert_eq!(human_rate(12_345_678.0), "12.35 M");
        assert_eq!(human_rate(20_500.0), "20.5 k");
        assert_eq!(human_rate(5_408.1), "5.4 k");
        assert_eq!(human_rate(9.0), "9.0");
    }
}
