//! A real, disposable Redis Cluster for tests and benches: 3 masters (and a
//! replica each, when asked) on free loopback ports, made with
//! `redis-server --cluster-enabled yes` and `redis-cli --cluster create`,
//! killed and removed on Drop, every node's log printed if the test panicked.
//!
//! Benches include this file directly, so it depends on nothing else in
//! `tests/support` but `redis_server::free_port`'s idea (copied below as a
//! two-port probe: a node needs its port and the bus port 10000 above).
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::FromRedisValue;

/// How long the cluster may take to form, or a replica to take over.
const FORM_LIMIT: Duration = Duration::from_secs(60);

/// One node: its process (None once killed), port and directory.
struct Node {
    child: Option<Child>,
    port: u16,
}

/// A running cluster, owned by one test.
pub struct RedisCluster {
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

impl RedisCluster {
    /// 3 masters, no replicas.
    pub fn start() -> RedisCluster {
        RedisCluster::start_with(3, 0)
    }

    /// 3 masters with one replica each (for failover).
    pub fn with_replicas() -> RedisCluster {
        RedisCluster::start_with(3, 1)
    }

    /// `masters` masters with `replicas` replicas each.
    pub fn start_with(masters: usize, replicas: usize) -> RedisCluster {
        let dir = tempfile::Builder::new()
            .prefix("kitchen-cluster-")
            .tempdir()
            .expect("temp dir for the cluster");
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            dir,
        };
        for _ in 0..masters * (1 + replicas) {
            cluster.spawn_node();
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        if replicas > 0 {
            create.args(["--cluster-replicas", &replicas.to_string()]);
        }
        let out = create
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            cluster.logs()
        );
        cluster.wait_ok();
        cluster
    }

    fn spawn_node(&mut self) {
        for _ in 0..20 {
            let port = free_port_pair();
            if let Some(child) = self.spawn_on(port) {
                self.nodes.push(Node {
                    child: Some(child),
                    port,
                });
                return;
            }
        }
        panic!("no cluster node started; logs:\n{}", self.logs());
    }

    /// Starts a node on `port` (its config file, if any, is kept: a node
    /// restarted rejoins the cluster it knew); `None` if it did not answer.
    fn spawn_on(&self, port: u16) -> Option<Child> {
        let log = self.dir.path().join(format!("node-{port}.log"));
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .arg("--cluster-config-file")
            .arg(self.dir.path().join(format!("nodes-{port}.conf")))
            .args(["--cluster-node-timeout", "2000"])
            // A replica may always take over, however long its link was
            // down: a loaded test machine must not veto the failover.
            .args(["--cluster-replica-validity-factor", "0"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}); install it or run scripts/test")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return None; // the port was taken meanwhile
            }
            if ping(port) {
                return Some(child);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the killed node on `port` again; it rejoins as a replica of
    /// the master that took over from it. Waits (bounded) for the cluster.
    pub fn restart(&mut self, port: u16) {
        let deadline = Instant::now() + FORM_LIMIT;
        let child = loop {
            if let Some(c) = self.spawn_on(port) {
                break c;
            }
            assert!(
                Instant::now() < deadline,
                "node :{port} did not restart; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster");
        node.child = Some(child);
        self.wait_ok();
    }

    /// Waits (bounded) until every live node says `cluster_state:ok` and
    /// agrees on who serves each slot.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + FORM_LIMIT;
        loop {
            let ok = self.live_ports().iter().all(|&p| {
                node_query::<String>(p, &["CLUSTER", "INFO"])
                    .is_some_and(|i| i.contains("cluster_state:ok"))
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The ports of nodes still running.
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// The URL kitchen gets with `--cluster`: the first live node, database 0.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.live_ports()[0])
    }

    /// `ROLE --backend redis --cluster --redis-url URL ARGS…`.
    pub fn args(&self, role: &str, rest: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = [role, "--backend", "redis", "--cluster", "--redis-url"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        v.push(self.url());
        v.extend(rest.iter().map(|s| (*s).to_owned()));
        v
    }

    /// The ports of the masters now, as a live node sees them.
    pub fn masters(&self) -> Vec<u16> {
        self.topology()
            .into_iter()
            .filter(|n| n.master && !n.failed)
            .map(|n| n.port)
            .collect()
    }

    /// The port of the master that serves `key` now.
    pub fn master_of(&self, key: &str) -> u16 {
        let slot = self.keyslot(key);
        self.topology()
            .into_iter()
            .find(|n| {
                n.master && !n.failed && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
            })
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("no master serves slot {slot}; logs:\n{}", self.logs()))
    }

    fn topology(&self) -> Vec<NodeInfo> {
        for p in self.live_ports() {
            if let Some(text) = node_query::<String>(p, &["CLUSTER", "NODES"]) {
                return text.lines().filter_map(NodeInfo::parse).collect();
            }
        }
        panic!("no node answers CLUSTER NODES; logs:\n{}", self.logs())
    }

    /// `CLUSTER KEYSLOT key`.
    pub fn keyslot(&self, key: &str) -> u16 {
        self.query_any(&["CLUSTER", "KEYSLOT", key])
    }

    /// Runs a command on every live node (ACLs and configuration are per
    /// node); each must answer.
    pub fn on_every_node<T: FromRedisValue>(&self, args: &[&str]) -> Vec<T> {
        self.live_ports()
            .into_iter()
            .map(|p| {
                node_query(p, args).unwrap_or_else(|| {
                    panic!("redis {args:?} on :{p} failed; logs:\n{}", self.logs())
                })
            })
            .collect()
    }

    /// Runs a command on any live node.
    pub fn query_any<T: FromRedisValue>(&self, args: &[&str]) -> T {
        for p in self.live_ports() {
            if let Some(v) = node_query(p, args) {
                return v;
            }
        }
        panic!("no node answered {args:?}; logs:\n{}", self.logs())
    }

    /// Runs a command on the node that serves `key`'s slot (following the
    /// cluster's map, not a redirect).
    pub fn query<T: FromRedisValue>(&self, key: &str, args: &[&str]) -> T {
        let port = self.master_of(key);
        node_query(port, args)
            .unwrap_or_else(|| panic!("redis {args:?} on :{port} failed; logs:\n{}", self.logs()))
    }

    /// `LLEN key` on its master.
    pub fn llen(&self, key: &str) -> u64 {
        self.query(key, &["LLEN", key])
    }

    /// Every key on every master, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .masters()
            .into_iter()
            .flat_map(|p| node_query::<Vec<String>>(p, &["KEYS", "*"]).unwrap_or_default())
            .collect();
        keys.sort();
        keys
    }

    /// Kills (SIGKILL) the node on `port`, as a crash would.
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster");
        if let Some(mut c) = node.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits (bounded) until `port` is no longer a master that serves slots
    /// (its replica took over) and the cluster is ok again.
    pub fn wait_failover(&self, port: u16) {
        let deadline = Instant::now() + FORM_LIMIT;
        loop {
            let gone = self
                .topology()
                .iter()
                .all(|n| n.port != port || !n.master || n.failed || n.slots.is_empty());
            let replaced = self.masters().len() >= 3;
            if gone && replaced {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no replica took over from :{port}; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.wait_ok();
    }

    /// CPU seconds (user + system) each live node has used, summed.
    pub fn cpu_seconds(&self) -> f64 {
        self.live_ports()
            .into_iter()
            .filter_map(|p| node_query::<String>(p, &["INFO", "cpu"]))
            .map(|info| {
                info.lines()
                    .filter_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        matches!(k, "used_cpu_sys" | "used_cpu_user")
                            .then(|| v.trim().parse::<f64>().ok())?
                    })
                    .sum::<f64>()
            })
            .sum()
    }

    fn log_paths(&self) -> Vec<PathBuf> {
        self.nodes
            .iter()
            .map(|n| self.dir.path().join(format!("node-{}.log", n.port)))
            .collect()
    }

    /// Every node's log, each under a header.
    pub fn logs(&self) -> String {
        self.log_paths()
            .iter()
            .map(|p| {
                format!(
                    "--- {} ---\n{}",
                    p.display(),
                    std::fs::read_to_string(p).unwrap_or_default()
                )
            })
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- redis cluster logs ---\n{}--- end of logs ---",
                self.logs()
            );
        }
    }
}

/// A node as `CLUSTER NODES` describes it.
struct NodeInfo {
    port: u16,
    master: bool,
    failed: bool,
    slots: Vec<(u16, u16)>,
}

impl NodeInfo {
    fn parse(line: &str) -> Option<NodeInfo> {
        let f: Vec<&str> = line.split_whitespace().collect();
        let addr = f.get(1)?.split(['@', ',']).next()?;
        let port = addr.rsplit_once(':')?.1.parse().ok()?;
        let flags = f.get(2)?;
        let slots = f
            .iter()
            .skip(8)
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => s.parse().ok().map(|n| (n, n)),
            })
            .collect();
        Some(NodeInfo {
            port,
            master: flags.contains("master"),
            failed: flags.contains("fail") && !flags.contains("fail?"),
            slots,
        })
    }
}

/// One command on one node (no redirects); `None` if it failed.
fn node_query<T: FromRedisValue>(port: u16, args: &[&str]) -> Option<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut con = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    con.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let (name, rest) = args.split_first()?;
    let mut c = redis::cmd(name);
    for a in rest {
        c.arg(*a);
    }
    c.query(&mut con).ok()
}

fn ping(port: u16) -> bool {
    node_query::<String>(port, &["PING"]).is_some()
}

/// A loopback port free a moment ago whose cluster bus port (10000 above)
/// was free too.
fn free_port_pair() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind a loopback port")
            .port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}
