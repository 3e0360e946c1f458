//! Drives the kitchen as a library: your own stop token, your own output.
//!
//! Run: `cargo run --example embed`
//!
//! It cooks for half a second with short naps, stops the run from another
//! thread (as a Ctrl-C handler would), and prints the summary that the diners
//! left after draining the queue.

use std::time::Duration;

use kitchen::{KitchenConfig, Printer, Shutdown, kitchen::run};

fn main() {
    let config = KitchenConfig {
        max_sleep: Duration::from_millis(20),
        ..KitchenConfig::default()
    };
    let shutdown = Shutdown::new();
    let stopper = {
        let shutdown = shutdown.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            shutdown.stop();
        })
    };
    match run(&config, &shutdown, Printer::stdout()) {
        Ok(summary) => {
            let _ = stopper.join();
            eprint!("{}", summary.to_table());
            assert_eq!(summary.made, summary.eaten, "a stop drains the queue");
        }
        Err(e) => eprintln!("embed: {e}"),
    }
}
