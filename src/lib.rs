//! kitchen: asynchronous work through a queue.
//!
//! Chefs (producers) put dishes on a bounded queue; diners (consumers) take
//! them off, oldest first. The queue is a backend chosen at run time: an
//! in-process crossbeam channel, or Redis (a list, publish/subscribe or a
//! stream with consumer groups), so the
//! same kitchen shows producer/consumer behaviour in one process and serves
//! real work across many.
//!
//! ```
//! use std::time::Duration;
//! use kitchen::{KitchenConfig, Printer, Shutdown, kitchen::run};
//!
//! let config = KitchenConfig {
//!     dishes: Some(1_000),
//!     max_sleep: Duration::ZERO,
//!     quiet: true,
//!     ..KitchenConfig::default()
//! };
//! let summary = run(&config, &Shutdown::new(), Printer::quiet()).unwrap();
//! assert_eq!((summary.made, summary.eaten, summary.left), (1_000, 1_000, Some(0)));
//! assert!(summary.max_depth <= 10);
//! ```
//!
//! # Layout
//!
//! | module | job |
//! |---|---|
//! | [`cli`] | clap definitions, validated into a [`cli::Command`] |
//! | [`app`] | carries out a command and prints its summary |
//! | [`dead`] | `kitchen dead`: list, requeue and purge dead letters |
//! | [`enqueue`] | `kitchen enqueue`: tracked dishes with given payloads, and their results |
//! | [`exec`] | runs a dish's command (`--exec`): stdin, environment, timeout, process group |
//! | [`kitchen`] | chefs, diners, statistics, the summary |
//! | [`vocab`] | the words both sides share: capacity, options, outcomes, errors (a leaf) |
//! | [`queue`] | the backend enum: the only module that sees both sides |
//! | [`local`] | the in-process crossbeam backend |
//! | [`serve`] | the web entry, `kitchen serve` |
//! | [`results`] | what became of each dish queued through the web API |
//! | `redis_mode` | the Redis backend: list, pub/sub and stream modes, on one server or a Redis Cluster, sharded lists (feature `redis`) |
//! | [`redis_url`] | Redis URLs: checked, database read, credentials redacted |
//! | [`dish`] | the dish and its wire format |
//! | [`defaults`] | every default, defined once |
//! | [`shutdown`] | the stop token every thread watches |
//! | [`notice`] | operator notices on stderr that never panic |

// No unwrap or expect where I/O or user input can reach; tests may.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod app;
pub mod cli;
pub mod dead;
pub mod defaults;
pub mod dish;
pub mod enqueue;
pub mod exec;
pub mod kitchen;
pub mod local;
pub mod notice;
pub mod queue;
#[cfg(feature = "redis")]
pub mod redis_mode;
pub mod redis_url;
pub mod results;
pub mod serve;
pub mod shutdown;
pub mod vocab;

pub use kitchen::{KitchenConfig, Printer, Role, Summary};
pub use shutdown::Shutdown;
