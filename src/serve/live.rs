//! What the page shows live: a sample of the queue every second (for the
//! sparklines), the most recent failures, and both drawn as HTML.
//!
//! Server-rendered: the sparklines are inline SVG and the failures a list,
//! so the page shows them with JavaScript off (it then reloads itself);
//! with JavaScript, it swaps in the fresh section every second.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::Instant;

use parking_lot::Mutex;

/// How often the sampler looks at the queue.
pub const PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// Samples kept: one a second, a minute of them.
pub const SAMPLES: usize = 60;

/// Failures kept for the page; the oldest go first.
pub const FAILURES: usize = 10;

/// The longest piece of a payload or reason the page shows.
const EXCERPT: usize = 120;

/// One second's look at the queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Dishes waiting; `None` when the queue could not be read.
    pub depth: Option<usize>,
    /// Dishes eaten in the second before it; `None` when unknown.
    pub eaten_per_s: Option<f64>,
}

/// One dish that failed in this server's diners' hands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// When (µs since the epoch).
    pub at_us: u64,
    /// The dish's id.
    pub id: String,
    /// The start of its payload.
    pub payload: String,
    /// Why: the exit status and the tail of stderr, a timeout…
    pub reason: String,
    /// What became of it: dead, or tried again after a delay.
    pub then: String,
}

impl Failure {
    /// `dish` failed now for `reason`; `then` says what became of it.
    pub fn of(dish: &crate::dish::Dish, reason: &str, then: String) -> Failure {
        Failure {
            at_us: crate::dish::now_us(),
            id: dish.id.to_string(),
            payload: excerpt(&String::from_utf8_lossy(&dish.payload.bytes())),
            reason: excerpt(reason),
            then,
        }
    }
}

/// The rings the page draws from, shared by the sampler, the diners and the workers.
#[derive(Debug, Default)]
pub struct Live {
    samples: Mutex<Samples>,
    failures: Mutex<VecDeque<Failure>>,
}

#[derive(Debug, Default)]
struct Samples {
    ring: VecDeque<Sample>,
    /// The last eaten total and when it was read, for the next rate.
    last: Option<(Instant, u64)>,
}

impl Live {
    /// Records one look at the queue: `depth`, and the `eaten` total so far
    /// (its increase since the last look makes the rate; a total that went
    /// down, as diners left, counts as no eating).
    pub fn sample(&self, at: Instant, depth: Option<usize>, eaten: Option<u64>) {
        let mut s = self.samples.lock();
        let eaten_per_s = match (s.last, eaten) {
            (Some((t0, e0)), Some(e1)) => {
                let secs = at.duration_since(t0).as_secs_f64();
                (secs > 0.0).then(|| e1.saturating_sub(e0) as f64 / secs)
            }
            _ => None,
        };
        s.last = eaten.map(|e| (at, e));
        s.ring.push_back(Sample { depth, eaten_per_s });
        while s.ring.len() > SAMPLES {
            s.ring.pop_front();
        }
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().ring.iter().copied().collect()
    }

    /// Records a failure, forgetting the oldest beyond [`FAILURES`].
    pub fn failed(&self, f: Failure) {
        let mut ring = self.failures.lock();
        ring.push_front(f);
        ring.truncate(FAILURES);
    }

    /// The recent failures, newest first.
    pub fn failures(&self) -> Vec<Failure> {
        self.failures.lock().iter().cloned().collect()
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The first [`EXCERPT`] characters of `text`, with `…` when cut.
pub fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// A sparkline: `values` (oldest first, `None` as gaps) as an inline SVG
/// polyline scaled to `top` (at least the largest value), labelled for
/// screen readers and tests with `label` and the last value.
pub fn sparkline(id: &str, label: &str, values: &[Option<f64>], top: f64) -> String {
    const W: f64 = 240.0;
    const H: f64 = 40.0;
    let top = values.iter().flatten().fold(top, |a, &b| a.max(b)).max(1.0);
    let step = W / (SAMPLES.saturating_sub(1)).max(1) as f64;
    // Right-aligned: the newest sample sits at the right edge.
    let offset = SAMPLES.saturating_sub(values.len());
    let mut segments: Vec<String> = Vec::new();
    let mut current = String::new();
    for (n, v) in values.iter().enumerate() {
        match v {
            Some(v) => {
                let x = (offset + n) as f64 * step;
                let y = H - (v / top) * (H - 2.0) - 1.0;
                // Writing to a String cannot fail.
                let _ = write!(current, "{x:.1},{y:.1} ");
            }
            None if !current.is_empty() => segments.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        segments.push(current);
    }
    let last = values
        .iter()
        .rev()
        .flatten()
        .next()
        .map_or_else(|| "–".to_owned(), |v| format!("{v:.1}"));
    let mut svg = format!(
        r#"<svg id="{id}" class="spark" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{label}: {last}" xmlns="http://www.w3.org/2000/svg"><title>{label}: {last}</title><line x1="0" y1="{H}" x2="{W}" y2="{H}" class="axis"/>"#
    );
    for points in segments {
        let _ = write!(svg, r#"<polyline points="{}"/>"#, points.trim_end());
    }
    svg.push_str("</svg>");
    svg
}

/// A short key that changes when `html` does (FNV-1a, hex): the page's
/// script compares it to skip a swap that would change nothing.
pub fn key(html: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in html.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The time of day of `at_us` (µs since the epoch), UTC, as `HH:MM:SS`.
pub fn clock(at_us: u64) -> String {
    let s = at_us / 1_000_000 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3_600, s / 60 % 60, s % 60)
}

/// The live section of the page: the sparklines and the recent failures
/// (`failures` is `None` where the diners are other processes, which
/// report their own). Everything from a dish or a command is escaped.
pub fn section(live: &Live, capacity: Option<usize>, failures: Option<&[Failure]>) -> String {
    let samples = live.samples();
    let depths: Vec<Option<f64>> = samples.iter().map(|s| s.depth.map(|d| d as f64)).collect();
    let rates: Vec<Option<f64>> = samples.iter().map(|s| s.eaten_per_s).collect();
    let depth_now = samples
        .last()
        .and_then(|s| s.depth)
        .map_or_else(|| "–".to_owned(), |d| d.to_string());
    let of = capacity.map_or_else(String::new, |c| format!(" of {c}"));
    let rate_now = samples
        .last()
        .and_then(|s| s.eaten_per_s)
        .map_or_else(|| "–".to_owned(), |r| format!("{r:.1}"));
    let mut out = String::with_capacity(4096);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        r#"<h2>The last minute</h2>
<div class="sparks">
  <figure><figcaption>queue depth <strong id="depth-now">{depth_now}</strong>{of}</figcaption>{depth_svg}</figure>
  <figure><figcaption>eaten per second <strong id="rate-now">{rate_now}</strong></figcaption>{rate_svg}</figure>
</div>
<h2>Recent failures</h2>
"#,
        depth_svg = sparkline(
            "depth-spark",
            "queue depth",
            &depths,
            capacity.unwrap_or(1) as f64
        ),
        rate_svg = sparkline("rate-spark", "eaten per second", &rates, 1.0),
    );
    match failures {
        None => out.push_str(
            "<p class=\"note\" id=\"failures\">The diners are <code>kitchen diner</code> processes: each reports its failures; failed dishes end in the dead letters.</p>\n",
        ),
        Some([]) => out.push_str("<p class=\"note\" id=\"failures\">None yet.</p>\n"),
        Some(list) => {
            out.push_str("<ol class=\"failures\" id=\"failures\">\n");
            for f in list {
                let _ = writeln!(
                    out,
                    r#"  <li><span class="when">{when} UTC</span> <code>{id}</code> <span class="then">{then}</span> <span class="payload">{payload}</span><br><span class="reason">{reason}</span></li>"#,
                    when = clock(f.at_us),
                    id = escape(&f.id),
                    payload = escape(&f.payload),
                    reason = escape(&f.reason),
                    then = escape(&f.then),
                );
            }
            out.push_str("</ol>\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rates_come_from_the_increase_and_a_drop_is_no_eating() {
        let live = Live::default();
        let t = Instant::now();
        live.sample(t, Some(3), Some(10));
        live.sample(t + Duration::from_secs(1), Some(2), Some(14));
        live.sample(t + Duration::from_secs(2), None, Some(1));
        let s = live.samples();
        assert_eq!(s[0].eaten_per_s, None);
        assert_eq!(s[1].eaten_per_s, Some(4.0));
        assert_eq!(s[2].eaten_per_s, Some(0.0));
        assert_eq!(s[2].depth, None);
    }

    #[test]
    fn the_rings_are_bounded() {
        let live = Live::default();
        let t = Instant::now();
        for n in 0..(SAMPLES as u64 + 5) {
            live.sample(t + Duration::from_secs(n), Some(1), Some(n));
        }
        assert_eq!(live.samples().len(), SAMPLES);
        for n in 0..(FAILURES + 3) {
            live.failed(Failure {
                at_us: n as u64,
                id: n.to_string(),
                payload: String::new(),
                reason: String::new(),
                then: String::new(),
            });
        }
        let f = live.failures();
        assert_eq!(f.len(), FAILURES);
        assert_eq!(f[0].id, (FAILURES + 2).to_string(), "newest first");
    }

    #[test]
    fn failures_are_escaped_in_the_section() {
        let live = Live::default();
        live.failed(Failure {
            at_us: 3_723_000_000,
            id: "d<1>".into(),
            payload: "<script>alert(1)</script>".into(),
            reason: "exit status 1: \"bad\" & worse".into(),
            then: "dead after 3 attempts".into(),
        });
        let html = section(&live, Some(10), Some(&live.failures()));
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(html.contains("&quot;bad&quot; &amp; worse"), "{html}");
        assert!(html.contains("01:02:03 UTC"), "{html}");
    }

    #[test]
    fn escaping_and_excerpts() {
        assert_eq!(
            escape(r#"<b a="1">&'</b>"#),
            "&lt;b a=&quot;1&quot;&gt;&amp;&#39;&lt;/b&gt;"
        );
        assert_eq!(excerpt("short"), "short");
        let long = "é".repeat(EXCERPT + 1);
        assert_eq!(excerpt(&long).chars().count(), EXCERPT + 1);
        assert!(excerpt(&long).ends_with('…'));
    }

    #[test]
    fn a_sparkline_has_gaps_where_the_queue_could_not_be_read() {
        let svg = sparkline("d", "depth", &[Some(1.0), None, Some(2.0), Some(0.0)], 10.0);
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert!(svg.contains("depth: 0.0"), "{svg}");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }
}
