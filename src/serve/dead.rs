//! The dead letters on the page: listed with requeue and purge buttons,
//! which are plain `POST` forms answered `303 See Other` back to `/`, so
//! they work with JavaScript off.
//!
//! | request | does |
//! |---|---|
//! | `POST /dead/requeue` with `id=ID` (repeatable) or `all=1` | puts them back on the queue, fresh attempts |
//! | `POST /dead/purge` with `id=ID` (repeatable) or `all=1` | deletes them |
//!
//! Bodies are `application/x-www-form-urlencoded`, as a browser sends a
//! form. A body that names nothing, names both ids and `all`, or has other
//! fields is a `400` with one line saying what to send. An id that is not
//! a dead letter (another operator got there first) is a `404` with one
//! line, and nothing is changed: the backend's requeue and purge are all or
//! nothing.

use std::fmt::Write as _;

use crate::queue::{DeadError, DeadLetters, Which};
use crate::serve::http::Response;
use crate::serve::live::{clock, escape, excerpt};

/// The most dead letters the page lists (the newest); the buttons for all
/// of them act on every one, listed or not.
pub const SHOWN: usize = 20;

/// What a dead-letter form asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Back on the queue.
    Requeue,
    /// Deleted.
    Purge,
}

impl Action {
    fn path(self) -> &'static str {
        match self {
            Action::Requeue => "/dead/requeue",
            Action::Purge => "/dead/purge",
        }
    }
}

/// The most ids one form may name.
pub const MAX_FORM_IDS: usize = 100;

/// Reads a form body: `id=ID` (one or more, repeats counted once) or
/// `all=1`; `Err` is the line for the `400`.
pub fn parse_form(body: &[u8]) -> Result<Which, String> {
    const SEND: &str = "send id=ID (one or more) or all=1, form-encoded";
    let mut ids: Vec<String> = Vec::new();
    let mut all = false;
    for (key, value) in url::form_urlencoded::parse(body) {
        match (&*key, &*value) {
            ("id", "") => return Err(format!("an empty id: {SEND}")),
            // The page names one at a time: a form of thousands is not
            // a person's, and each id costs a scan of the letters.
            ("id", _) if ids.len() >= MAX_FORM_IDS => {
                return Err(format!(
                    "more than {MAX_FORM_IDS} ids: name fewer, or send all=1"
                ));
            }
            ("id", id) if ids.iter().any(|i| i == id) => {}
            ("id", id) => ids.push(id.to_owned()),
            ("all", "1") => all = true,
            ("all", v) => return Err(format!("all={v}: {SEND}")),
            (k, _) => return Err(format!("unknown field {k:?}: {SEND}")),
        }
    }
    match (all, ids.is_empty()) {
        (true, true) => Ok(Which::All),
        (false, false) => Ok(Which::Ids(ids)),
        (true, false) => Err(format!("both ids and all=1: {SEND}")),
        (false, true) => Err(format!("no dead letter named: {SEND}")),
    }
}

/// The answer to a form whose action ran: back to the page.
pub fn see_page() -> Response {
    Response::new(303, "text/plain; charset=utf-8", &b"see /\n"[..]).with("Location", "/")
}

/// The answer to a form whose action failed.
pub fn refused(e: &DeadError) -> Response {
    let status = match e {
        DeadError::NotDead(_) => 404,
        DeadError::Fault(_) => 503,
        // Named ids that cannot be requeued (their payload was cut): the
        // request is fine, the state forbids it.
        _ => 409,
    };
    if status == 503 {
        // Names no server: the operator's log has the detail.
        return Response::text(503, "the queue is unavailable; retry in a second\n")
            .with("Retry-After", "1");
    }
    Response::text(status, format!("{e}\n"))
}

/// The dead letters' part of the page: the newest [`SHOWN`], each with its
/// buttons, and buttons for all. Everything from a dish is escaped.
pub fn section(dead: &DeadLetters) -> String {
    let mut out = String::with_capacity(2048);
    let shown = if dead.total > dead.entries.len() {
        format!(", the newest {} shown", dead.entries.len())
    } else {
        String::new()
    };
    let trimmed = if dead.trimmed > 0 {
        format!(", {} trimmed (the oldest, past --dead-max)", dead.trimmed)
    } else {
        String::new()
    };
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        r#"<h2>Dead letters <span class="count">(<span id="dead-total">{}</span>{shown}{trimmed})</span></h2>"#,
        dead.total
    );
    if dead.entries.is_empty() {
        out.push_str("<p class=\"note\" id=\"dead\">None.</p>\n");
        return out;
    }
    let _ = writeln!(
        out,
        r#"<p>{} {}</p>"#,
        button(Action::Requeue, None, "requeue-all", "Requeue all"),
        button(Action::Purge, None, "purge-all", "Purge all"),
    );
    out.push_str("<ul class=\"dead\" id=\"dead\">\n");
    for d in &dead.entries {
        let id = escape(&d.id);
        let more = if d.bytes > d.payload.len() {
            format!(" ({} bytes)", d.bytes)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            r#"  <li class="dead-letter" data-id="{id}"><code>{id}</code> <span class="when">{when} UTC, {attempts} attempt{s}</span> {requeue} {purge}<br><span class="payload">{payload}{more}</span><br><span class="reason">{reason}</span></li>"#,
            when = clock(d.at_us),
            attempts = d.attempts,
            s = if d.attempts == 1 { "" } else { "s" },
            requeue = button(Action::Requeue, Some(&id), "", "Requeue"),
            purge = button(Action::Purge, Some(&id), "", "Purge"),
            payload = escape(&excerpt(&d.payload)),
            reason = escape(&excerpt(&d.reason)),
        );
    }
    out.push_str("</ul>\n");
    out
}

/// One button in a form of its own; `id` (already escaped) names the dead
/// letter, `None` means all of them.
fn button(action: Action, id: Option<&str>, element_id: &str, label: &str) -> String {
    let field = match id {
        Some(id) => format!(r#"<input type="hidden" name="id" value="{id}">"#),
        None => r#"<input type="hidden" name="all" value="1">"#.to_owned(),
    };
    let element_id = if element_id.is_empty() {
        String::new()
    } else {
        format!(r#" id="{element_id}""#)
    };
    let class = match action {
        Action::Requeue => "requeue",
        Action::Purge => "purge",
    };
    format!(
        r#"<form class="inline" method="post" action="{}">{field}<button type="submit" class="{class}"{element_id}>{label}</button></form>"#,
        action.path()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::DeadLetter;

    #[test]
    fn forms_name_ids_or_all_and_nothing_else() {
        assert_eq!(parse_form(b"all=1"), Ok(Which::All));
        assert_eq!(
            parse_form(b"id=a-1&id=b%2F2+x"),
            Ok(Which::Ids(vec!["a-1".into(), "b/2 x".into()]))
        );
        for (body, says) in [
            (&b""[..], "no dead letter named"),
            (b"all=1&id=a", "both ids and all=1"),
            (b"all=yes", "all=yes"),
            (b"id=", "an empty id"),
            (b"ids=a", "unknown field \"ids\""),
            (b"{\"id\":\"a\"}", "unknown field"),
        ] {
            let e = parse_form(body).expect_err(says);
            assert!(e.contains(says), "{e}");
            assert!(e.contains("send id=ID"), "{e}");
        }
    }

    #[test]
    fn forms_name_few_ids_each_once() {
        assert_eq!(
            parse_form(b"id=a&id=b&id=a"),
            Ok(Which::Ids(vec!["a".into(), "b".into()]))
        );
        let ok: String = (0..MAX_FORM_IDS).map(|i| format!("id={i}&")).collect();
        assert!(parse_form(ok.as_bytes()).is_ok());
        let many = format!("{ok}id=one-more");
        let e = parse_form(many.as_bytes()).expect_err("too many ids");
        assert!(
            e.contains("more than 100 ids") && e.contains("all=1"),
            "{e}"
        );
    }

    #[test]
    fn the_section_escapes_what_came_from_a_dish() {
        let dead = DeadLetters {
            entries: vec![DeadLetter {
                id: "x\"><script>".into(),
                payload: "<img src=x onerror=alert(1)>".into(),
                bytes: 28,
                reason: "exit status 1: <b>".into(),
                attempts: 3,
                at_us: 0,
            }],
            total: 5,
            trimmed: 2,
        };
        let html = section(&dead);
        assert!(!html.contains("<script>") && !html.contains("<img") && !html.contains("<b>"));
        assert!(
            html.contains(r#"value="x&quot;&gt;&lt;script&gt;""#),
            "{html}"
        );
        assert!(html.contains("the newest 1 shown"), "{html}");
        assert!(html.contains("2 trimmed"), "{html}");
        assert!(html.contains(r#"action="/dead/requeue""#) && html.contains(r#"id="purge-all""#));
    }

    #[test]
    fn no_dead_letters_no_buttons() {
        let html = section(&DeadLetters {
            entries: vec![],
            total: 0,
            trimmed: 0,
        });
        assert!(html.contains("None."), "{html}");
        assert!(!html.contains("<form"), "{html}");
    }
}
