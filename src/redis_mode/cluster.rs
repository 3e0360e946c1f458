//! One Redis or a Redis Cluster behind one connection type: [`Link`] says
//! where to connect, [`Con`] is the open connection every mode runs its
//! commands, pipelines and scripts on.
//!
//! **On a cluster** (`--cluster`) a [`Con`] is the `redis` crate's blocking
//! `ClusterConnection`: one connection per node it needs, commands routed by
//! their key's hash slot, `MOVED` and `ASK` followed. kitchen's pipelines
//! name keys of one slot only (see `slot.rs`), so a pipeline is sent whole
//! to the node of its first key: one round trip, as on one Redis.
//!
//! **Seeds.** `--redis-url` names one node. The first connection learns
//! every node of the cluster (`CLUSTER NODES`), and every later connection
//! starts from all the nodes known, so a role whose URL names a master that
//! died reconnects through the others and finds the promoted replica.
//!
//! **Pub/sub.** A subscription is a plain connection to one node (the first
//! known that answers): Redis Cluster forwards every `PUBLISH` to every
//! node, so a subscriber anywhere hears every dish. Chefs publish through
//! the cluster connection.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig, ClusterConnection};
use redis::{
    Client, Cmd, Connection, ConnectionAddr, ConnectionInfo, ConnectionLike, RedisError,
    RedisResult, TlsCertificates, Value,
};

/// Where to connect: one Redis, or the nodes of a cluster.
#[derive(Clone)]
pub(crate) enum Link {
    /// One server (with its database).
    Single(Client),
    /// A Redis Cluster.
    Cluster(Seeds),
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Link::Single(_) => f.write_str("Link::Single"),
            Link::Cluster(s) => write!(f, "Link::Cluster({} nodes)", s.nodes.lock().len()),
        }
    }
}

/// The nodes a cluster connection may start from: the URL's, then every
/// node learnt since; shared by every connection of the process.
#[derive(Clone)]
pub(crate) struct Seeds {
    /// The URL's settings (user, password, protocol), for every node.
    info: ConnectionInfo,
    /// The certificates of `--tls-*` (a private CA, a client certificate),
    /// for every node of a `rediss://` cluster.
    certs: Option<TlsCertificates>,
    nodes: Arc<Mutex<Vec<(String, u16)>>>,
}

impl Link {
    /// Opens a connection within `connect`; every reply then waits at most
    /// `timeout` (blocking commands included, on every node).
    pub(crate) fn connect(&self, connect: Duration, timeout: Duration) -> RedisResult<Con> {
        match self {
            Link::Single(client) => {
                let con = client.get_connection_with_timeout(connect)?;
                con.set_read_timeout(Some(timeout))?;
                con.set_write_timeout(Some(timeout))?;
                Ok(Con::Single(con))
            }
            Link::Cluster(seeds) => seeds.connect(connect, timeout),
        }
    }

    /// A plain connection to one server, for a subscription to `channel`:
    /// the server itself, or the master that serves the channel's slot
    /// (where chefs' `PUBLISH` goes, so its count of receivers is true),
    /// else the first node of the cluster that answers.
    pub(crate) fn plain(
        &self,
        channel: &str,
        connect: Duration,
        timeout: Duration,
    ) -> RedisResult<Connection> {
        let clients = match self {
            Link::Single(client) => vec![client.clone()],
            Link::Cluster(seeds) => {
                let mut nodes = seeds.node_clients()?;
                if let Some(owner) = seeds.owner_of(channel, connect, timeout) {
                    nodes.insert(0, owner);
                }
                nodes
            }
        };
        let mut last = None;
        for client in clients {
            match client.get_connection_with_timeout(connect) {
                Ok(con) => {
                    con.set_read_timeout(Some(timeout))?;
                    con.set_write_timeout(Some(timeout))?;
                    return Ok(con);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| RedisError::from(std::io::Error::other("no cluster node"))))
    }
}

impl Seeds {
    /// The seeds of a cluster reached through `info` (database 0).
    pub(crate) fn new(info: ConnectionInfo, certs: Option<TlsCertificates>) -> RedisResult<Seeds> {
        let node = match info.addr() {
            ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
            ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port),
            _ => {
                return Err(RedisError::from(std::io::Error::other(
                    "a Redis Cluster is reached over TCP: use redis://host:port",
                )));
            }
        };
        Ok(Seeds {
            info,
            certs,
            nodes: Arc::new(Mutex::new(vec![node])),
        })
    }

    /// The URL's settings at each known node.
    fn infos(&self) -> Vec<ConnectionInfo> {
        let nodes = self.nodes.lock().clone();
        nodes
            .into_iter()
            .map(|(host, port)| self.at(host, port))
            .collect()
    }

    /// The URL's settings (TLS included) at another node.
    fn at(&self, host: String, port: u16) -> ConnectionInfo {
        let addr = match self.info.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        self.info.clone().set_addr(addr)
    }

    /// A client for the master that serves `key`'s slot, as a cluster
    /// connection learns it; `None` if it cannot tell.
    fn owner_of(&self, key: &str, connect: Duration, timeout: Duration) -> Option<Client> {
        let Ok(Con::Cluster(mut con)) = self.connect(connect, timeout) else {
            return None;
        };
        let text: String = redis::cmd("CLUSTER").arg("NODES").query(&mut *con).ok()?;
        let (host, port) = master_of(&text, super::slot::keyslot(key))?;
        self.node_client(self.at(host, port)).ok()
    }

    /// A plain client for one node, with the seeds' certificates.
    fn node_client(&self, info: ConnectionInfo) -> RedisResult<Client> {
        match &self.certs {
            Some(certs) => Client::build_with_tls(info, certs.clone()),
            None => Client::open(info),
        }
    }

    fn node_clients(&self) -> RedisResult<Vec<Client>> {
        self.infos()
            .into_iter()
            .map(|info| self.node_client(info))
            .collect()
    }

    /// The one place a cluster client is built.
    fn client(&self) -> RedisResult<ClusterClient> {
        // Few retries inside the crate: kitchen's own reconnect loop (with
        // its notices and `--reconnect-timeout`) waits out a failover.
        let builder = ClusterClientBuilder::new(self.infos()).retries(3);
        match &self.certs {
            Some(certs) => builder.certs(certs.clone()).build(),
            None => builder.build(),
        }
    }

    fn connect(&self, connect: Duration, timeout: Duration) -> RedisResult<Con> {
        let config = ClusterConfig::new()
            .set_connection_timeout(connect)
            .set_response_timeout(timeout);
        let mut con = self.client()?.get_connection_with_config(config)?;
        con.set_read_timeout(Some(timeout))?;
        con.set_write_timeout(Some(timeout))?;
        self.learn(&mut con);
        Ok(Con::Cluster(Box::new(con)))
    }

    /// Adds the nodes the cluster knows to the seeds (best effort).
    fn learn(&self, con: &mut ClusterConnection) {
        let Ok(text) = redis::cmd("CLUSTER").arg("NODES").query::<String>(con) else {
            return;
        };
        let found = parse_nodes(&text);
        let mut nodes = self.nodes.lock();
        for node in found {
            if !nodes.contains(&node) {
                nodes.push(node);
            }
        }
    }
}

/// The `host:port` of every node `CLUSTER NODES` lists (failed ones too:
/// they may come back), skipping nodes without an address.
fn parse_nodes(text: &str) -> Vec<(String, u16)> {
    text.lines()
        .filter_map(|line| {
            let addr = line.split_whitespace().nth(1)?;
            // ip:port@cport[,hostname]
            let addr = addr.split(['@', ',']).next()?;
            let (host, port) = addr.rsplit_once(':')?;
            let port: u16 = port.parse().ok()?;
            (!host.is_empty() && port != 0).then(|| (host.to_owned(), port))
        })
        .collect()
}

/// The address of the live master that serves `slot`, from `CLUSTER NODES`.
fn master_of(text: &str, slot: u16) -> Option<(String, u16)> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let flags = f.get(2)?;
        if !flags.contains("master") || flags.contains("fail") {
            return None;
        }
        let serves = f.iter().skip(8).any(|r| {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
        });
        if !serves {
            return None;
        }
        parse_nodes(line).into_iter().next()
    })
}

/// An open connection: to one server, or to a cluster.
pub(crate) enum Con {
    /// One server.
    Single(Connection),
    /// A cluster (boxed: it holds a map of node connections).
    Cluster(Box<ClusterConnection>),
}

impl ConnectionLike for Con {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            Con::Single(c) => c.req_packed_command(cmd),
            Con::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            Con::Single(c) => c.req_packed_commands(cmd, offset, count),
            // Sent whole to the node of the first command's key: kitchen's
            // pipelines keep to one hash slot.
            Con::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Con::Single(c) => c.req_command(cmd),
            Con::Cluster(c) => c.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Con::Single(c) => c.get_db(),
            Con::Cluster(c) => c.get_db(),
        }
    }

    /// Pipelines work on both (see `req_packed_commands`), though the
    /// crate's cluster connection says no to steer users to its own.
    fn supports_pipelining(&self) -> bool {
        true
    }

    fn check_connection(&mut self) -> bool {
        match self {
            Con::Single(c) => c.check_connection(),
            Con::Cluster(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Con::Single(c) => c.is_open(),
            Con::Cluster(c) => c.is_open(),
        }
    }
}

/// Runs `cmd` on the master that serves `key`'s slot (on a cluster; on one
/// server, there), for commands the crate would otherwise send to every
/// node or a random one: `WAIT` (which counts the writes of the connection
/// it runs on), `PUBSUB NUMSUB` (subscribers are counted per node, and
/// kitchen's subscribe on the channel's master).
pub(crate) fn on_node_of<T: redis::FromRedisValue>(
    c: &mut Con,
    key: &str,
    cmd: &Cmd,
) -> RedisResult<T> {
    match c {
        Con::Single(c) => cmd.query(c),
        Con::Cluster(c) => {
            use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
            let route = Route::new(super::slot::keyslot(key), SlotAddr::Master);
            let v = c.route_command(
                cmd,
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
            )?;
            Ok(redis::from_redis_value(v)?)
        }
    }
}

/// How long one `WAIT` for a replica blocks inside Redis (`--durable`).
pub(crate) const DURABLE_WAIT: Duration = Duration::from_millis(1_000);

const _: () = assert!(DURABLE_WAIT.as_millis() <= super::MAX_BLOCK.as_millis());

/// `--durable`: waits until a replica holds every write this connection
/// made to `key`'s node (`WAIT 1`, on that node, on the connection that
/// wrote: `WAIT` counts only its own connection's writes), for at most
/// `tries` × [`DURABLE_WAIT`]; the first wait in vain is announced.
///
/// Runs inside the caller's `Conn::run`, right after its write: should the
/// connection fail, the write is sent again on a new one (at least once,
/// never counted made without a replica).
pub(crate) fn wait_for_replica(c: &mut Con, key: &str, tries: u32) -> RedisResult<()> {
    let ms = u64::try_from(DURABLE_WAIT.as_millis()).unwrap_or(1_000);
    let mut wait = redis::cmd("WAIT");
    wait.arg(1).arg(ms);
    for attempt in 0..tries {
        let acked: u64 = on_node_of(c, key, &wait)?;
        if acked >= 1 {
            return Ok(());
        }
        if attempt == 0 && tries > 1 {
            crate::notice!(
                "kitchen: no replica acknowledged a write to {key} within {} s (--durable); chefs wait for one",
                DURABLE_WAIT.as_secs()
            );
        }
    }
    Err(RedisError::from((
        redis::ErrorKind::Client,
        "no replica acknowledged",
        format!(
            "no replica holds the dishes written to {key} after {} s (--durable): check the replicas (INFO replication), or run without --durable",
            DURABLE_WAIT.as_secs() * u64::from(tries)
        ),
    )))
}

/// Errors a cluster answers while it changes (a failover, a resharding):
/// a new connection, with a fresh map of slots, may succeed.
pub(crate) fn is_moving(e: &RedisError) -> bool {
    e.is_cluster_error()
        || e.kind() == redis::ErrorKind::ClusterConnectionNotFound
        // The crate's "no node told us the slots" while a cluster forms or
        // fails over (it has no kind of its own).
        || e.to_string().contains("Slot refresh error")
        || matches!(
            e.code(),
            Some("CLUSTERDOWN" | "MOVED" | "ASK" | "TRYAGAIN" | "READONLY" | "MASTERDOWN")
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_lists_addresses() {
        let text = "07c3 127.0.0.1:30004@40004 slave e7d1 0 1 4 connected\n\
                    67ed 127.0.0.1:30002@40002,host.example master - 0 1 2 connected 5461-10922\n\
                    e7d1 :0@0 master,fail,noaddr - 1 1 1 disconnected\n";
        assert_eq!(
            parse_nodes(text),
            [
                ("127.0.0.1".to_owned(), 30004),
                ("127.0.0.1".to_owned(), 30002)
            ]
        );
        assert_eq!(master_of(text, 6000), Some(("127.0.0.1".to_owned(), 30002)));
        assert_eq!(master_of(text, 100), None);
    }
}
