//! Notices for the operator on stderr: one whole line, and never a panic when stderr is gone.
//!
//! `eprintln!` panics when stderr is a closed pipe (a supervisor that went
//! away), which would turn a `503` into a `500` or end a diner; a notice is
//! worth less than the work around it.

use std::fmt;
use std::io::Write;

/// Writes one line to stderr, ignoring a closed or full stderr.
pub fn line(args: fmt::Arguments<'_>) {
    let mut buf = Vec::with_capacity(128);
    // Formatting into a Vec cannot fail.
    let _ = buf.write_fmt(args);
    buf.push(b'\n');
    let _ = std::io::stderr().lock().write_all(&buf);
}

/// `notice!("kitchen: …")`: [`line`] with `format!` arguments.
#[macro_export]
macro_rules! notice {
    ($($arg:tt)*) => {
        $crate::notice::line(format_args!($($arg)*))
    };
}
