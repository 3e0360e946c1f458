//! Real work from a library: a handler that counts the words of text payloads, behind the web entry.
//!
//! Run: `cargo run --example handler`
//!
//! It starts `kitchen serve` in-process (local backend, a free port on
//! loopback) with a handler in place of the nap, posts three payloads to
//! `POST /dishes`, and reads each result back from `GET /dishes/{id}`: the
//! handler's output, or why it failed (a payload that is not text).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use kitchen::Shutdown;
use kitchen::dish::{Dish, Payload};
use kitchen::kitchen::work::{Failure, Output, Work};
use kitchen::serve::{ServeConfig, Server};

/// The work: the number of words in a text payload. Anything else fails.
fn count_words(dish: &Dish) -> Result<Output, Failure> {
    match &dish.payload {
        Payload::Text(text) => Ok(Output(
            text.split_whitespace().count().to_string().into_bytes(),
        )),
        other => Err(Failure(format!("not text: {other}"))),
    }
}

/// Posts each payload, waits for its result, and returns (payload, result JSON).
pub fn run_example(payloads: &[&str]) -> Result<Vec<(String, serde_json::Value)>, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let config = ServeConfig {
        work: Work::handler(count_words),
        ..ServeConfig::default()
    };
    let server = Server::open(listener, &config).map_err(|e| e.to_string())?;
    let shutdown = Shutdown::new();
    let serving = {
        let shutdown = shutdown.clone();
        std::thread::spawn(move || server.run(&shutdown))
    };
    let results = payloads
        .iter()
        .map(|p| {
            let body = serde_json::to_string(p).map_err(|e| e.to_string())?;
            let accepted = request(addr, "POST", "/dishes", &body)?;
            let id = accepted["id"].as_str().ok_or("no id")?.to_owned();
            Ok(((*p).to_owned(), wait_for(addr, &id)?))
        })
        .collect();
    shutdown.stop();
    let _ = serving.join();
    results
}

/// Reads `/dishes/{id}` until the dish is eaten or failed (10 s at most).
fn wait_for(addr: SocketAddr, id: &str) -> Result<serde_json::Value, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = request(addr, "GET", &format!("/dishes/{id}"), "")?;
        if r["status"] == "eaten" || r["status"] == "failed" {
            return Ok(r);
        }
        if Instant::now() > deadline {
            return Err(format!("dish {id} not done: {r}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One HTTP/1.0 request; the JSON body of its answer.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<serde_json::Value, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let req = format!(
        "{method} {path} HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).map_err(|e| e.to_string())?;
    let (_, json) = reply.split_once("\r\n\r\n").ok_or("no body")?;
    serde_json::from_str(json).map_err(|e| format!("{e}: {json}"))
}

#[allow(dead_code)]
fn main() {
    let payloads = ["the quick brown fox", "jumps over the lazy dog", "hello"];
    match run_example(&payloads) {
        Ok(results) => {
            for (payload, r) in results {
                println!(
                    "{payload:?}: {} words ({})",
                    r["output"].as_str().unwrap_or("?"),
                    r["status"]
                );
            }
        }
        Err(e) => {
            eprintln!("handler example: {e}");
            std::process::exit(1);
        }
    }
}
