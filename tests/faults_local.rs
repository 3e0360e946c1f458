//! Faults, local backend: a run stopped by SIGTERM or Ctrl-C eats every dish
//! it made exactly once, as the dishes' ids show.

mod support;

use support::ledger::Ledger;
use support::{last_json, num, spawn_lines};

fn exactly_once_on(sig: &str) {
    let (child, mut lines) = spawn_lines(&["run", "--max-sleep-ms", "5", "--ids", "--json"]);
    lines.wait_for_n(50, " made dish ");
    let all = child.stop(sig, lines);
    let s = last_json(&all);
    let mut ledger = Ledger::new();
    ledger.read(&all);
    assert_eq!(ledger.made(), num(&s, "made"), "{ledger} {s}");
    assert_eq!(ledger.uneaten(), Vec::<String>::new(), "{ledger}");
    assert_eq!(ledger.duplicates(), 0, "{ledger}");
    assert_eq!(
        (num(&s, "eaten"), num(&s, "left"), num(&s, "lost")),
        (ledger.made(), 0, 0),
        "{s}"
    );
}

#[test]
fn sigterm_to_a_local_run_eats_every_dish_once() {
    exactly_once_on("TERM");
}

#[test]
fn ctrl_c_to_a_local_run_eats_every_dish_once() {
    exactly_once_on("INT");
}
