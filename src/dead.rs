//! `kitchen dead`: list the dead letters, put them back on the queue, or delete them.

use std::fmt::Write as _;
use std::io::Write;

use crate::queue::{
    Backend, BackendConfig, Capacity, DeadError, DeadLetters, OpenError, RedisOptions,
    ResultLimits, Which,
};

/// What `kitchen dead` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadCommand {
    /// Print the dead letters, newest first.
    List {
        /// One JSON object instead of a table.
        json: bool,
        /// At most this many (`None`: all).
        limit: Option<usize>,
    },
    /// Put these back on the queue, with fresh attempts.
    Requeue(Which),
    /// Delete these.
    Purge(Which),
}

/// What stops `kitchen dead`.
#[derive(Debug, thiserror::Error)]
pub enum DeadCommandError {
    /// Redis could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The dead letters could not be read or changed.
    #[error(transparent)]
    Dead(#[from] DeadError),
}

/// Carries out `command` on the dead letters of `redis`'s queue (or
/// stream), writing what it did to `out`.
pub fn run(
    redis: &RedisOptions,
    command: &DeadCommand,
    out: &mut impl Write,
) -> Result<(), DeadCommandError> {
    let backend = Backend::open(
        &BackendConfig::Redis(redis.clone()),
        Capacity::Unbounded,
        ResultLimits::default(),
    )?;
    let mut gauge = backend.gauge();
    let place = match redis.mode {
        crate::queue::Mode::Stream => format!("stream {}", redis.stream),
        _ => format!("queue {}", redis.queue),
    };
    // A reader that went away (`kitchen dead list | head`) is not an error.
    match command {
        DeadCommand::List { json, limit } => {
            let letters = gauge.dead_letters(limit.unwrap_or(usize::MAX))?;
            let text = if *json {
                serde_json::to_string(&letters).unwrap_or_default() + "\n"
            } else {
                table(&letters, &place)
            };
            let _ = out.write_all(text.as_bytes());
        }
        DeadCommand::Requeue(which) => {
            let n = gauge.dead_requeue(which)?;
            let _ = writeln!(out, "requeued {n} {} onto the {place}", letters(n));
            if *which == Which::All {
                // What `--all` left: letters without a whole payload.
                let left = gauge.dead_letters(0)?.total;
                if left > 0 {
                    let _ = writeln!(
                        out,
                        "{left} {} left: unreadable or over --max-payload, they cannot be requeued; remove them with `kitchen dead purge ID…`",
                        letters(left)
                    );
                }
            }
        }
        DeadCommand::Purge(which) => {
            let n = gauge.dead_purge(which)?;
            let _ = writeln!(out, "purged {n} {} of the {place}", letters(n));
        }
    }
    Ok(())
}

fn letters(n: usize) -> &'static str {
    if n == 1 {
        "dead letter"
    } else {
        "dead letters"
    }
}

/// The letters as a table for people: one line each, then a count.
fn table(d: &DeadLetters, place: &str) -> String {
    let mut out = String::new();
    if !d.entries.is_empty() {
        let _ = writeln!(
            out,
            "{:<35} {:>8}  {:<20}  {:<40}  PAYLOAD",
            "ID", "ATTEMPTS", "DIED (UTC)", "REASON"
        );
    }
    for l in &d.entries {
        let _ = writeln!(
            out,
            "{:<35} {:>8}  {:<20}  {:<40}  {}",
            if l.id.is_empty() { "-" } else { &l.id },
            l.attempts,
            utc(l.at_us),
            one_line(&l.reason, 40),
            one_line(&l.payload, 60),
        );
    }
    let _ = write!(out, "{} {} on the {place}", d.total, letters(d.total));
    if d.entries.len() < d.total {
        let _ = write!(out, " ({} shown)", d.entries.len());
    }
    if d.trimmed > 0 {
        let _ = write!(out, "; {} older ones trimmed beyond --dead-max", d.trimmed);
    }
    out.push('\n');
    out
}

/// `text` on one line of at most `width` characters.
fn one_line(text: &str, width: usize) -> String {
    let mut s: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().count() > width {
        s = s.chars().take(width - 1).collect::<String>() + "…";
    }
    s
}

/// µs since the epoch as `2024-05-01 12:34:56`, UTC.
fn utc(at_us: u64) -> String {
    if at_us == 0 {
        return "-".to_owned();
    }
    let secs = at_us / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_in_utc() {
        assert_eq!(utc(0), "-");
        assert_eq!(utc(1_000_000), "1970-01-01 00:00:01");
        assert_eq!(utc(1_709_210_096_000_000), "2024-02-29 12:34:56");
    }

    #[test]
    fn long_and_multiline_text_fits_one_line() {
        assert_eq!(one_line("a\nb", 10), "a b");
        assert_eq!(one_line("abcdef", 4), "abc…");
    }
}
