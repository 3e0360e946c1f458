//! Faults, local backend: a run stopped by SIGTERM or Ctrl-C eats every dish
//! it made exactly once, as the dishes' ids show.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::ledger::Ledger;
use support::{KillOnDrop, Lines, kitchen, num, signal};

const LIMIT: Duration = Duration::from_secs(60);

fn exactly_once_on(sig: &str) {
    let mut child = KillOnDrop::new(
        kitchen()
            .args(["run", "--max-sleep-ms", "5", "--ids", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kitchen"),
    );
    let mut lines = Lines::new(child.child().stdout.take().expect("stdout"));
    for _ in 0..50 {
        lines.wait_for(LIMIT, |l| l.contains(" made dish "));
    }
    signal(child.id(), sig);
    let all = lines.rest(LIMIT);
    let out = child.wait(LIMIT);
    assert!(out.status.success(), "SIG{sig}: {:?}", out.status);
    let s: serde_json::Value = serde_json::from_str(all.last().expect("summary")).unwrap();
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
