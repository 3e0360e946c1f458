//! Following dishes by id through `--ids` lines: what was made, what was eaten, how often.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::fmt;

/// The id at the end of a `--ids` per-dish line (`… [id 0123456789abcdef-5]`).
pub fn id_of(line: &str) -> Option<&str> {
    let (_, tail) = line.rsplit_once(" [id ")?;
    tail.strip_suffix(']')
}

/// Every dish seen made and eaten, by id, with how many times.
#[derive(Debug, Default)]
pub struct Ledger {
    made: HashMap<String, u64>,
    eaten: HashMap<String, u64>,
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// Reads a process's stdout lines: chefs' `made dish` and diners' `ate dish` lines.
    pub fn read(&mut self, lines: &[String]) {
        for line in lines {
            let Some(id) = id_of(line) else { continue };
            let book = if line.contains(" made dish ") {
                &mut self.made
            } else if line.contains(" ate dish ") {
                &mut self.eaten
            } else {
                continue;
            };
            *book.entry(id.to_owned()).or_default() += 1;
        }
    }

    /// Distinct dishes made.
    pub fn made(&self) -> u64 {
        self.made.len() as u64
    }

    /// Distinct dishes eaten at least once.
    pub fn eaten(&self) -> u64 {
        self.eaten.len() as u64
    }

    /// Every `ate dish` line: deliveries, duplicates included.
    pub fn deliveries(&self) -> u64 {
        self.eaten.values().sum()
    }

    /// How often the dish `id` was eaten.
    pub fn eaten_times(&self, id: &str) -> u64 {
        self.eaten.get(id).copied().unwrap_or(0)
    }

    /// Deliveries beyond the first of each dish.
    pub fn duplicates(&self) -> u64 {
        self.deliveries() - self.eaten()
    }

    /// Dishes made and never eaten, sorted.
    pub fn uneaten(&self) -> Vec<String> {
        only_in(&self.made, &self.eaten)
    }

    /// Dishes eaten that no chef line made (should be none).
    pub fn unknown(&self) -> Vec<String> {
        only_in(&self.eaten, &self.made)
    }

    /// Conservation, from the lines: `made` dishes made, every one of them
    /// eaten, and none eaten that was never made; `name` names the
    /// processes read, in a failure.
    pub fn assert_all_eaten(&self, made: u64, name: &str) {
        assert_eq!(self.made(), made, "{name}: {self}");
        assert!(self.unknown().is_empty(), "{name}: {:?}", self.unknown());
        assert_eq!(
            self.uneaten(),
            Vec::<String>::new(),
            "{name} lost dishes: {self}"
        );
    }
}

/// The ids in `book` and not in `other`, sorted.
fn only_in(book: &HashMap<String, u64>, other: &HashMap<String, u64>) -> Vec<String> {
    let mut v: Vec<String> = book
        .keys()
        .filter(|id| !other.contains_key(*id))
        .cloned()
        .collect();
    v.sort();
    v
}

impl fmt::Display for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "made {}, eaten {} ({} deliveries, {} duplicates), uneaten {}",
            self.made(),
            self.eaten(),
            self.deliveries(),
            self.duplicates(),
            self.uneaten().len()
        )
    }
}

/// The ids of JSON dishes as Redis holds them (`LRANGE`), sorted.
pub fn payload_ids(payloads: &[String]) -> Vec<String> {
    let mut v: Vec<String> = payloads
        .iter()
        .map(|p| {
            let dish: serde_json::Value =
                serde_json::from_str(p).unwrap_or_else(|e| panic!("{p:?} is not a dish: {e}"));
            dish["id"].as_str().expect("a dish id").to_owned()
        })
        .collect();
    v.sort();
    v
}
