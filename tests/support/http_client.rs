//! Attacking clients for the web entry's fault tests: keep-alive hogs,
//! slowloris connections, a probe that times one fresh request, and a
//! descriptor limit raised for thousands of sockets.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::web::{connect, read_one, request};

/// Raises this process's soft limit on open descriptors toward `want` (as
/// far as the hard limit allows) and returns the soft limit in force.
#[cfg(unix)]
pub fn raise_fd_limit(want: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft >= want {
        return soft;
    }
    let raised = want.min(hard);
    match setrlimit(Resource::RLIMIT_NOFILE, raised, hard) {
        Ok(()) => raised,
        Err(_) => soft,
    }
}

#[cfg(not(unix))]
pub fn raise_fd_limit(want: u64) -> u64 {
    want
}

/// A fresh connection's `GET path`: its status and how long the answer took,
/// connect included.
pub fn probe(addr: SocketAddr, path: &str) -> (u16, Duration) {
    let start = Instant::now();
    let status = request(addr, "GET", path, None).status;
    (status, start.elapsed())
}

/// `n` connections that each send part of a request head, then nothing.
pub fn slowloris(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut s = connect(addr);
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .unwrap_or_else(|e| panic!("slowloris connection {i}: {e}"));
            s
        })
        .collect()
}

/// Keep-alive clients that each send `GET path` again the moment the
/// previous answer is in, until stopped.
pub struct Hogs {
    stop: Arc<AtomicBool>,
    /// Connections that have had at least one answer.
    served: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<u64>>,
}

impl Hogs {
    /// Starts `n` hogs on their own connections.
    pub fn start(addr: SocketAddr, n: usize, path: &str) -> Hogs {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes();
        let threads = (0..n)
            .map(|i| {
                let (stop, served, raw) = (stop.clone(), served.clone(), raw.clone());
                std::thread::Builder::new()
                    .name(format!("hog-{i}"))
                    .stack_size(128 * 1024)
                    .spawn(move || {
                        let mut s = connect(addr);
                        let mut answers = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            s.write_all(&raw).expect("hog: send");
                            let status = read_one(&mut s, false).status;
                            assert_eq!(status, 200, "hog {i}");
                            answers += 1;
                            if answers == 1 {
                                served.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        answers
                    })
                    .expect("spawn a hog")
            })
            .collect();
        Hogs {
            stop,
            served,
            threads,
        }
    }

    /// How many hogs have had at least one answer.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }

    /// Stops every hog after its request in flight; the answers each had.
    pub fn stop(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|t| t.join().expect("a hog failed"))
            .collect()
    }
}
