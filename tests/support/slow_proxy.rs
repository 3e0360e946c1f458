//! A loopback TCP proxy that delays every reply: a slow network between a
//! client and a real server, to open a race window a test can step into.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

/// Forwards `127.0.0.1:<port>` to `target`, holding each chunk from the
/// server for `delay` before passing it on. Lives as long as the test.
pub struct SlowProxy {
    port: u16,
}

impl SlowProxy {
    pub fn start(target: u16, delay: Duration) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pipe(client, server, Duration::ZERO));
                std::thread::spawn(move || pipe(s2, c2, delay));
            }
        });
        SlowProxy { port }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        std::thread::sleep(delay);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
