//! A real Redis Cluster for the tests: six `redis-server --cluster-enabled yes` processes
//! (three masters, one replica each) on free loopback ports, joined by
//! `redis-cli --cluster create`, plus the operations cluster tests need: slot look-ups, slot
//! migration (whole, or step by step to sit mid-migration and get `-ASK`), manual failover,
//! killing a node and waiting for its replica to take over.
//!
//! Everything is synchronous and std-only. Every wait polls (every 25 ms) against a deadline
//! and panics with the cluster's view of itself when the deadline passes. Dropping the
//! [`Cluster`] SIGKILLs every node and removes their directories.
//!
//! Each node gets its cluster bus on a second free port (`cluster-port`, Redis 7), so a
//! client port above 55535 (whose default bus port, +10000, would not exist) is fine.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use super::{ping_ok, send_signal, wait_timeout, Raw, Reply};

/// Number of hash slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// How often the waits poll.
const POLL: Duration = Duration::from_millis(25);

/// Default deadline for the cluster to settle after a change.
const SETTLE: Duration = Duration::from_secs(30);

/// Nodes in the cluster: 3 masters, 1 replica each.
const NODES: usize = 6;

static CLUSTER_SEQ: AtomicUsize = AtomicUsize::new(0);

// ---------------------------------------------------------------------------
// key -> slot
// ---------------------------------------------------------------------------

/// CRC16-XMODEM (polynomial 0x1021, initial value 0), as Redis Cluster hashes keys.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The hash slot of `key`, as `CLUSTER KEYSLOT` computes it: CRC16 of the key modulo 16384,
/// or of its hash tag, the part between the first `{` and the first `}` after it, when that
/// part is not empty.
pub fn key_slot(key: &[u8]) -> u16 {
    let mut hashed = key;
    if let Some(open) = key.iter().position(|&c| c == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&c| c == b'}') {
            if len > 0 {
                hashed = &key[open + 1..open + 1 + len];
            }
        }
    }
    crc16(hashed) % SLOTS
}

/// A key `"{prefix}{n}"` (smallest such n) that hashes to `slot`.
pub fn key_in_slot(slot: u16, prefix: &str) -> String {
    assert!(slot < SLOTS, "slot {slot} out of range");
    for n in 0..2_000_000u32 {
        let key = format!("{prefix}{n}");
        if key_slot(key.as_bytes()) == slot {
            return key;
        }
    }
    panic!("no key {prefix:?}+N hashes to slot {slot} (a hash tag in the prefix?)");
}

// ---------------------------------------------------------------------------
// the cluster's own view: CLUSTER SLOTS / CLUSTER NODES
// ---------------------------------------------------------------------------

/// One range of `CLUSTER SLOTS`: slots `start..=end`, served by `master`, replicated to
/// `replicas` (sorted, so two nodes' views compare equal regardless of order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotRange {
    pub start: u16,
    pub end: u16,
    pub master: u16,
    pub replicas: Vec<u16>,
}

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub id: String,
    /// Client port (0 for a node without an address yet).
    pub port: u16,
    /// `myself`, `master`, `slave`, `fail?`, `fail`, `handshake`, `noaddr`, ...
    pub flags: Vec<String>,
    /// The master's id, for a replica.
    pub master_id: Option<String>,
    pub connected: bool,
    /// Served slot ranges (open migrations `[slot->-id]` / `[slot-<-id]` left out).
    pub slots: Vec<(u16, u16)>,
}

impl NodeInfo {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
    pub fn is_master(&self) -> bool {
        self.has_flag("master")
    }
    pub fn is_replica(&self) -> bool {
        self.has_flag("slave")
    }
    /// Flagged failing (`fail` or `fail?`), still joining (`handshake`) or without address.
    pub fn is_unhealthy(&self) -> bool {
        self.flags
            .iter()
            .any(|f| matches!(f.as_str(), "fail" | "fail?" | "handshake" | "noaddr"))
    }
}

/// Parses `CLUSTER NODES` output.
pub fn parse_cluster_nodes(text: &str) -> Vec<NodeInfo> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert!(f.len() >= 8, "short CLUSTER NODES line {line:?}");
            // ip:port@cport[,hostname]
            let addr = f[1].split('@').next().unwrap_or("");
            let port = addr
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse().ok())
                .unwrap_or(0);
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .map(|s| match s.split_once('-') {
                    Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                    None => {
                        let n = s.parse().unwrap();
                        (n, n)
                    }
                })
                .collect();
            NodeInfo {
                id: f[0].to_string(),
                port,
                flags: f[2].split(',').map(str::to_string).collect(),
                master_id: (f[3] != "-").then(|| f[3].to_string()),
                connected: f[7] == "connected",
                slots,
            }
        })
        .collect()
}

fn parse_cluster_slots(reply: &Reply) -> Result<Vec<SlotRange>, String> {
    let Reply::Array(Some(ranges)) = reply else {
        return Err(format!("CLUSTER SLOTS: unexpected reply {reply:?}"));
    };
    let node_port = |r: &Reply| -> Result<u16, String> {
        match r {
            Reply::Array(Some(f)) if f.len() >= 2 => match &f[1] {
                Reply::Int(p) => Ok(*p as u16),
                other => Err(format!("CLUSTER SLOTS: bad port {other:?}")),
            },
            other => Err(format!("CLUSTER SLOTS: bad node entry {other:?}")),
        }
    };
    let mut out = Vec::with_capacity(ranges.len());
    for range in ranges {
        let Reply::Array(Some(f)) = range else {
            return Err(format!("CLUSTER SLOTS: bad range {range:?}"));
        };
        let (Some(Reply::Int(start)), Some(Reply::Int(end)), Some(master)) =
            (f.first(), f.get(1), f.get(2))
        else {
            return Err(format!("CLUSTER SLOTS: bad range {range:?}"));
        };
        let mut replicas = f[3..]
            .iter()
            .map(node_port)
            .collect::<Result<Vec<_>, _>>()?;
        replicas.sort_unstable();
        out.push(SlotRange {
            start: *start as u16,
            end: *end as u16,
            master: node_port(master)?,
            replicas,
        });
    }
    out.sort_by_key(|r| r.start);
    Ok(out)
}

/// `field:value` lines (INFO, CLUSTER INFO).
fn info_field(text: &str, field: &str) -> Option<String> {
    let prefix = format!("{field}:");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().to_string())
}

// ---------------------------------------------------------------------------
// talking to one node without panicking (the waits poll nodes that may be down)
// ---------------------------------------------------------------------------

fn try_connect(port: u16, timeout: Duration) -> io::Result<Raw> {
    let addr = ([127, 0, 0, 1], port).into();
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    let local = stream.local_addr()?.port();
    Ok(Raw {
        stream,
        buf: Vec::with_capacity(16 * 1024),
        pos: 0,
        ports: (local, port),
    })
}

/// One command on a fresh connection; transport errors returned, error replies are `Ok`.
fn try_cmd<T: AsRef<[u8]>>(port: u16, args: &[T]) -> io::Result<Reply> {
    try_cmd_within(port, args, Duration::from_secs(2))
}

fn try_cmd_within<T: AsRef<[u8]>>(port: u16, args: &[T], t: Duration) -> io::Result<Reply> {
    let mut c = try_connect(port, t)?;
    c.try_send(&super::encode(args))?;
    c.try_read_reply()
}

/// A bulk-string reply as text, or an error describing what came back.
fn try_text<T: AsRef<[u8]>>(port: u16, args: &[T]) -> Result<String, String> {
    match try_cmd(port, args) {
        Ok(Reply::Bulk(Some(b))) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Ok(other) => Err(format!("{port}: {other:?}")),
        Err(e) => Err(format!("{port}: {e}")),
    }
}

/// Runs a command that must succeed (anything but an error reply); panics otherwise.
#[track_caller]
fn must<T: AsRef<[u8]>>(port: u16, args: &[T]) -> Reply {
    let shown = || {
        args.iter()
            .map(|a| String::from_utf8_lossy(a.as_ref()).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    };
    match try_cmd_within(port, args, Duration::from_secs(10)) {
        Ok(Reply::Error(e)) => panic!("node {port}: `{}` -> -{e}", shown()),
        Ok(r) => r,
        Err(e) => panic!("node {port}: `{}` -> {e}", shown()),
    }
}

fn free_ports(n: usize) -> Vec<u16> {
    // Held open together, so they are distinct.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local_addr").port())
        .collect()
}

// ---------------------------------------------------------------------------
// nodes
// ---------------------------------------------------------------------------

struct Node {
    port: u16,
    bus_port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// SIGSTOPped by [`Cluster::stop`].
    stopped: bool,
}

impl Node {
    fn spawn(&mut self, node_timeout_ms: u64, extra: &[String]) {
        let _ = std::fs::create_dir_all(&self.dir);
        let log = self.dir.join("redis.log");
        let child = Command::new("redis-server")
            .arg("--dir")
            .arg(&self.dir)
            .args(["--port", &self.port.to_string()])
            .args(["--cluster-port", &self.bus_port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", &node_timeout_ms.to_string()])
            // A replica whose link to its master broke long ago may still fail over.
            .args(["--cluster-replica-validity-factor", "0"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            // Replicas sync at once (default: wait 5 s for more replicas to join).
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--logfile")
            .arg(&log)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server (is it installed and on PATH?)");
        self.child = Some(child);
        self.stopped = false;
    }

    fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Running and not stopped.
    fn live(&mut self) -> bool {
        !self.stopped && self.alive()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stopped = false;
    }

    /// True once the node answers on its port as this very process (not some other server
    /// that got the port while this one failed to bind it).
    fn ready(&mut self) -> bool {
        let Some(pid) = self.child.as_ref().map(|c| c.id()) else {
            return false;
        };
        self.alive()
            && matches!(try_text(self.port, &["INFO", "server"]),
                Ok(info) if info_field(&info, "process_id") == Some(pid.to_string()))
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // SIGKILL works on a SIGSTOPped process too.
        self.kill();
    }
}

// ---------------------------------------------------------------------------
// the cluster
// ---------------------------------------------------------------------------

/// Six `redis-server` cluster nodes on loopback: three masters, one replica each.
///
/// Ports are fixed for the cluster's life (a restarted node comes back on its port); roles
/// change with failovers, so ask [`masters`](Self::masters) / [`replicas_of`](Self::replicas_of)
/// rather than assuming. All methods take `&self`, so a cluster can be shared with threads.
pub struct Cluster {
    ports: Vec<u16>,
    nodes: Mutex<Vec<Node>>,
    ids: Mutex<HashMap<u16, String>>,
    /// For a master killed or stopped while serving slots: its lowest slot then.
    killed_master_slot: Mutex<HashMap<u16, u16>>,
    root: PathBuf,
    node_timeout_ms: u64,
    extra: Vec<String>,
}

impl Cluster {
    /// Starts a 3-master / 3-replica cluster with `cluster-node-timeout 1000`.
    pub fn start() -> Cluster {
        Self::start_with(1000, &[])
    }

    /// Starts a 3-master / 3-replica cluster with the given `cluster-node-timeout` (ms) and
    /// extra `redis-server` arguments for every node (they come last, so they override the
    /// harness's own settings; kept for [`restart`](Self::restart)).
    ///
    /// Returns once the cluster has [`settled`](Self::settled): every node `cluster_state:ok`,
    /// all agreeing on `CLUSTER NODES` roles and on `CLUSTER SLOTS`, which lists every replica.
    /// That takes a little over 2 s: a master refuses to go `ok` in its first 2 s.
    pub fn start_with(node_timeout_ms: u64, extra_args: &[&str]) -> Cluster {
        let seq = CLUSTER_SEQ.fetch_add(1, Ordering::Relaxed);
        let root =
            std::env::temp_dir().join(format!("redis-proxy-cluster-{}-{seq}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create cluster temp dir");
        let extra: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();

        // Spawn all six, then wait for them together; a node that exits (its port was taken
        // in the meantime) is tried again on new ports.
        let ports = free_ports(2 * NODES);
        let mut nodes: Vec<Node> = (0..NODES)
            .map(|i| Node {
                port: ports[2 * i],
                bus_port: ports[2 * i + 1],
                dir: root.join(format!("node{i}")),
                child: None,
                stopped: false,
            })
            .collect();
        for n in nodes.iter_mut() {
            n.spawn(node_timeout_ms, &extra);
        }
        let cluster = Cluster {
            ports: Vec::new(),
            nodes: Mutex::new(Vec::new()),
            ids: Mutex::new(HashMap::new()),
            killed_master_slot: Mutex::new(HashMap::new()),
            root,
            node_timeout_ms,
            extra,
        };
        let mut respawns = 0;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut ready = 0;
            for n in nodes.iter_mut() {
                if !n.alive() {
                    respawns += 1;
                    if respawns > 10 {
                        let log = n.log_tail(20);
                        drop(nodes);
                        panic!("redis-server keeps exiting at start; its log:\n{log}");
                    }
                    let p = free_ports(2);
                    n.port = p[0];
                    n.bus_port = p[1];
                    let _ = std::fs::remove_dir_all(&n.dir);
                    n.spawn(node_timeout_ms, &cluster.extra);
                } else if n.ready() {
                    ready += 1;
                }
            }
            if ready == NODES {
                break;
            }
            if Instant::now() >= deadline {
                drop(nodes);
                panic!("cluster nodes did not answer within 15s");
            }
            thread::sleep(POLL);
        }
        let mut cluster = cluster;
        cluster.ports = nodes.iter().map(|n| n.port).collect();
        *cluster.nodes.get_mut().unwrap() = nodes;

        // redis-cli makes the first three masters and spreads the replicas over them.
        let log_path = cluster.root.join("create.log");
        let log = std::fs::File::create(&log_path).expect("create redis-cli log");
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for p in &cluster.ports {
            create.arg(format!("127.0.0.1:{p}"));
        }
        let mut child = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn redis-cli (is it installed and on PATH?)");
        let status = wait_timeout(&mut child, Duration::from_secs(60));
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let out = std::fs::read_to_string(&log_path).unwrap_or_default();
        // redis-cli --cluster exits 0 on some failures too: trust its [OK] lines, then ours.
        let ok = status.is_some_and(|s| s.success()) && out.contains("All 16384 slots covered");
        assert!(ok, "redis-cli --cluster create failed ({status:?}):\n{out}");
        // A replica shows in CLUSTER SLOTS only once its replication offset is above 0: write
        // (and delete) a key on every master as soon as it takes writes.
        let masters: Vec<u16> = cluster.slot_map().iter().map(|r| r.master).collect();
        for m in masters {
            let key = cluster.key_in_slot_of_node(m, "harness:start:");
            let wrote = super::wait_until(
                SETTLE,
                || matches!(try_cmd(m, &["SET", &key, "1"]), Ok(r) if r == Reply::ok()),
            );
            if !wrote {
                cluster.fail_with(&format!("master {m} took no write"));
            }
            must(m, &["DEL", &key]);
        }
        cluster.wait_settled("cluster start");
        cluster
    }

    // ----------------------------------------------------------------- addresses

    /// `"127.0.0.1:p1,127.0.0.1:p2"`: the first two nodes (masters at start), for `--redis`.
    pub fn seeds(&self) -> String {
        format!("127.0.0.1:{},127.0.0.1:{}", self.ports[0], self.ports[1])
    }

    /// Client ports of all six nodes, in creation order (dead ones included).
    pub fn ports(&self) -> Vec<u16> {
        self.ports.clone()
    }

    /// `"127.0.0.1:<port>"`.
    pub fn addr(&self, port: u16) -> String {
        format!("127.0.0.1:{port}")
    }

    /// True if the node's process is running (it may still be stopped with SIGSTOP).
    pub fn is_alive(&self, port: u16) -> bool {
        self.with_node(port, |n| n.alive())
    }

    /// Ports of the nodes whose process is running and not stopped: the ones the waits
    /// expect to agree.
    pub fn live_ports(&self) -> Vec<u16> {
        let mut nodes = self.nodes.lock().unwrap();
        nodes
            .iter_mut()
            .filter_map(|n| n.live().then_some(n.port))
            .collect()
    }

    /// The node's process id.
    pub fn pid(&self, port: u16) -> u32 {
        self.with_node(port, |n| {
            n.child
                .as_ref()
                .unwrap_or_else(|| panic!("node {port} is not running"))
                .id()
        })
    }

    /// The node's cluster id (`CLUSTER MYID`); remembered, as it survives restarts.
    pub fn node_id(&self, port: u16) -> String {
        if let Some(id) = self.ids.lock().unwrap().get(&port) {
            return id.clone();
        }
        let id = must(port, &["CLUSTER", "MYID"]).as_str();
        self.ids.lock().unwrap().insert(port, id.clone());
        id
    }

    // ----------------------------------------------------------------- commands

    /// One command to one node on a fresh connection (panics if it cannot connect).
    pub fn cmd(&self, port: u16, args: &[&str]) -> Reply {
        Raw::connect(port).cmd(args)
    }

    /// How many times node `port` ran command `name` (`INFO commandstats`; 0 if never).
    pub fn cmdstat_calls(&self, port: u16, name: &str) -> u64 {
        let Reply::Bulk(Some(info)) = self.cmd(port, &["INFO", "commandstats"]) else {
            return 0;
        };
        let prefix = format!("cmdstat_{}:", name.to_ascii_lowercase());
        String::from_utf8_lossy(&info)
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|l| l.split(',').find_map(|f| f.strip_prefix("calls=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// A direct connection to one node.
    pub fn connect(&self, port: u16) -> Raw {
        Raw::connect(port)
    }

    /// `FLUSHALL` on every live master; returns once every live node is empty.
    pub fn flushall(&self) {
        for m in self.masters() {
            must(m, &["FLUSHALL"]);
        }
        let live = self.live_ports();
        let empty = super::wait_until(SETTLE, || {
            live.iter()
                .all(|&p| matches!(try_cmd(p, &["DBSIZE"]), Ok(Reply::Int(0))))
        });
        assert!(empty, "nodes not empty after FLUSHALL");
    }

    // ----------------------------------------------------------------- topology

    /// `CLUSTER SLOTS` as seen by `port`.
    pub fn slots_of(&self, port: u16) -> Vec<SlotRange> {
        parse_cluster_slots(&must(port, &["CLUSTER", "SLOTS"]))
            .unwrap_or_else(|e| panic!("node {port}: {e}"))
    }

    /// `CLUSTER NODES` as seen by `port`.
    pub fn nodes_of(&self, port: u16) -> Vec<NodeInfo> {
        parse_cluster_nodes(&must(port, &["CLUSTER", "NODES"]).as_str())
    }

    /// A live node that answers (the first in creation order).
    pub fn any_live(&self) -> u16 {
        self.live_ports()
            .into_iter()
            .find(|&p| ping_ok(p))
            .expect("no live cluster node answers PING")
    }

    /// The slot map as seen by a live node.
    pub fn slot_map(&self) -> Vec<SlotRange> {
        self.slots_of(self.any_live())
    }

    /// Ports of the masters serving slots now, by lowest slot served (asked of a live node).
    pub fn masters(&self) -> Vec<u16> {
        let mut out: Vec<u16> = Vec::new();
        for r in self.slot_map() {
            if !out.contains(&r.master) {
                out.push(r.master);
            }
        }
        out
    }

    /// Ports of the replicas of `master_port` (from `CLUSTER NODES` of a live node), leaving
    /// out nodes this harness killed or stopped. Flags are not looked at: under load a node may
    /// flag a healthy replica `fail?` for a moment.
    pub fn replicas_of(&self, master_port: u16) -> Vec<u16> {
        let id = self.node_id(master_port);
        let live = self.live_ports();
        let mut out: Vec<u16> = self
            .nodes_of(self.any_live())
            .into_iter()
            .filter(|n| n.is_replica() && n.master_id.as_deref() == Some(id.as_str()))
            .map(|n| n.port)
            .filter(|p| live.contains(p))
            .collect();
        out.sort_unstable();
        out
    }

    /// The master port serving `slot` now (asked of a live node).
    pub fn owner_of_slot(&self, slot: u16) -> u16 {
        owner_in(&self.slot_map(), slot)
            .unwrap_or_else(|| panic!("slot {slot} is not served by any node"))
    }

    /// The master serving `slot` in `port`'s own view (nodes may disagree for a moment
    /// after a change).
    pub fn owner_in_view_of(&self, port: u16, slot: u16) -> u16 {
        owner_in(&self.slots_of(port), slot)
            .unwrap_or_else(|| panic!("node {port} sees no owner for slot {slot}"))
    }

    /// The master port serving `key` now.
    pub fn owner_of_key(&self, key: &str) -> u16 {
        self.owner_of_slot(key_slot(key.as_bytes()))
    }

    /// A key `"{prefix}{n}"` whose slot `port` (a master) serves now.
    pub fn key_in_slot_of_node(&self, port: u16, prefix: &str) -> String {
        let map = self.slot_map();
        assert!(
            map.iter().any(|r| r.master == port),
            "node {port} serves no slots; map: {map:?}"
        );
        for n in 0..2_000_000u32 {
            let key = format!("{prefix}{n}");
            if owner_in(&map, key_slot(key.as_bytes())) == Some(port) {
                return key;
            }
        }
        panic!("no key {prefix:?}+N lands on node {port} (a hash tag in the prefix?)");
    }

    /// The lowest slot `port` serves now.
    pub fn first_slot_of(&self, port: u16) -> u16 {
        self.slot_map()
            .iter()
            .find(|r| r.master == port)
            .unwrap_or_else(|| panic!("node {port} serves no slots"))
            .start
    }

    // ----------------------------------------------------------------- slot migration

    /// Moves `slot` (and its keys) to the master `to_port`, the way Redis documents it:
    /// IMPORTING on the target, MIGRATING on the source, `GETKEYSINSLOT` + `MIGRATE ... KEYS`
    /// until the slot is empty, then `SETSLOT NODE` on every master; returns once every live
    /// node agrees. A no-op if `to_port` already serves it.
    pub fn migrate_slot(&self, slot: u16, to_port: u16) {
        if self.owner_of_slot(slot) == to_port {
            return;
        }
        self.begin_migration(slot, to_port).finish();
    }

    /// Starts migrating `slot` to `to_port` and stops there: the source answers `-ASK` for
    /// keys of the slot it no longer has, the target accepts them after `ASKING`.
    pub fn begin_migration(&self, slot: u16, to_port: u16) -> Migration<'_> {
        let from = self.owner_of_slot(slot);
        assert_ne!(from, to_port, "node {to_port} already serves slot {slot}");
        let (from_id, to_id) = (self.node_id(from), self.node_id(to_port));
        let s = slot.to_string();
        must(to_port, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]);
        must(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]);
        Migration {
            cluster: self,
            slot,
            from,
            to: to_port,
        }
    }

    // ----------------------------------------------------------------- failures

    /// `CLUSTER FAILOVER` on the replica `replica_port`; returns once it is a master, every
    /// live node agrees and reports `cluster_state:ok` (the old master is then its replica).
    pub fn failover(&self, replica_port: u16) {
        let me = self
            .nodes_of(replica_port)
            .into_iter()
            .find(|n| n.has_flag("myself"))
            .expect("myself in CLUSTER NODES");
        assert!(me.is_replica(), "node {replica_port} is not a replica");
        let deadline = Instant::now() + SETTLE;
        // A manual failover that does not complete is abandoned after 5 s: ask again.
        'outer: loop {
            must(replica_port, &["CLUSTER", "FAILOVER"]);
            let retry = Instant::now() + Duration::from_secs(6);
            loop {
                if matches!(try_text(replica_port, &["CLUSTER", "NODES"]), Ok(t)
                    if parse_cluster_nodes(&t).iter().any(|n| n.has_flag("myself") && n.is_master()))
                {
                    break 'outer;
                }
                if Instant::now() >= deadline {
                    self.fail_with(&format!("node {replica_port} did not become master"));
                }
                if Instant::now() >= retry {
                    continue 'outer;
                }
                thread::sleep(POLL);
            }
        }
        self.wait_settled(&format!("failover to {replica_port}"));
    }

    /// SIGKILLs a node (it stays known to the others, which flag it failing).
    pub fn kill(&self, port: u16) {
        self.note_going_down(port);
        self.with_node(port, |n| n.kill());
    }

    /// SIGSTOPs a node: it keeps its sockets but answers nothing (cluster peers flag it
    /// failing after the node timeout). The waits leave it out until [`cont`](Self::cont).
    pub fn stop(&self, port: u16) {
        self.note_going_down(port);
        send_signal(self.pid(port), "STOP");
        self.with_node(port, |n| n.stopped = true);
    }

    /// SIGCONT after [`stop`](Self::stop); returns once every live node agrees again.
    pub fn cont(&self, port: u16) {
        send_signal(self.pid(port), "CONT");
        self.with_node(port, |n| n.stopped = false);
        self.wait_settled(&format!("SIGCONT of {port}"));
    }

    /// Remembers the lowest slot `port` serves, if any, for `wait_failover_of`.
    fn note_going_down(&self, port: u16) {
        let live: Vec<u16> = self
            .live_ports()
            .into_iter()
            .filter(|&p| p != port)
            .collect();
        for p in live {
            if let Ok(r) = try_cmd(p, &["CLUSTER", "SLOTS"]) {
                if let Ok(map) = parse_cluster_slots(&r) {
                    let mut m = self.killed_master_slot.lock().unwrap();
                    match map.iter().find(|r| r.master == port) {
                        Some(r) => m.insert(port, r.start),
                        None => m.remove(&port),
                    };
                    return;
                }
            }
        }
    }

    /// Waits until the slots `dead_master_port` served when it was killed are served by
    /// another node and every live node agrees and reports `cluster_state:ok`; returns the
    /// port of the node that took them (its former replica).
    pub fn wait_failover_of(&self, dead_master_port: u16) -> u16 {
        let slot = self
            .killed_master_slot
            .lock()
            .unwrap()
            .get(&dead_master_port)
            .copied()
            .unwrap_or_else(|| {
                panic!("node {dead_master_port} was not a master serving slots when killed/stopped")
            });
        let deadline = Instant::now() + SETTLE;
        loop {
            let last = match self.settled() {
                Ok(map) => match owner_in(&map, slot) {
                    Some(p) if p != dead_master_port => return p,
                    _ => format!("slot {slot} still served by {dead_master_port}"),
                },
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                self.fail_with(&format!(
                    "no failover of {dead_master_port} within {SETTLE:?}: {last}"
                ));
            }
            thread::sleep(POLL);
        }
    }

    /// Starts a killed node again on its port with its `nodes.conf` (no data: `save ""`); it
    /// rejoins (a former master as a replica of whoever took its slots). Returns once every
    /// live node agrees and reports `cluster_state:ok`.
    pub fn restart(&self, port: u16) {
        {
            let mut nodes = self.nodes.lock().unwrap();
            let n = nodes
                .iter_mut()
                .find(|n| n.port == port)
                .expect("known port");
            n.kill();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                n.spawn(self.node_timeout_ms, &self.extra);
                let up = super::wait_until(Duration::from_secs(5), || n.ready() || !n.alive());
                let up = up && n.alive();
                if up {
                    break;
                }
                n.kill();
                assert!(
                    Instant::now() < deadline,
                    "could not restart node {port}:\n{}",
                    n.log_tail(20)
                );
                thread::sleep(Duration::from_millis(100));
            }
        }
        self.wait_settled(&format!("restart of {port}"));
    }

    // ----------------------------------------------------------------- settling

    /// Waits (up to 30 s) until the cluster has settled (see [`settled`](Self::settled)).
    /// Panics with every node's view if not.
    pub fn wait_settled(&self, what: &str) {
        let deadline = Instant::now() + SETTLE;
        loop {
            let last = match self.settled() {
                Ok(_) => return,
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                self.fail_with(&format!("{what}: not settled within {SETTLE:?}: {last}"));
            }
            thread::sleep(POLL);
        }
    }

    /// One check that the cluster has settled; the agreed slot map, or the first condition
    /// not met. Settled: every live node (running, not stopped)
    /// - reports `cluster_state:ok`;
    /// - sees every other live node, connected and not flagged `fail?`/`fail`/`handshake`;
    /// - has the same view of every node's role, master and slots in `CLUSTER NODES`;
    /// - if a replica, has `master_link_status:up`;
    /// - answers the same `CLUSTER SLOTS`, which lists under each master exactly its live
    ///   replicas (Redis 7 leaves out a replica until it has heard that the replica's
    ///   replication offset is above 0, and a failed one once it is flagged `fail`).
    pub fn settled(&self) -> Result<Vec<SlotRange>, String> {
        let live = self.live_ports();
        let mut agreed: Option<(u16, Topology, Vec<SlotRange>)> = None;
        for &p in &live {
            let info = try_text(p, &["CLUSTER", "INFO"])?;
            if info_field(&info, "cluster_state").as_deref() != Some("ok") {
                return Err(format!("{p}: cluster_state is not ok"));
            }
            let view = parse_cluster_nodes(&try_text(p, &["CLUSTER", "NODES"])?);
            for &q in &live {
                match view.iter().find(|n| n.port == q) {
                    None => return Err(format!("{p} does not know {q} yet")),
                    Some(n) if n.is_unhealthy() => {
                        return Err(format!("{p} sees {q} as {}", n.flags.join(",")))
                    }
                    Some(n) if !n.connected => return Err(format!("{p} is not connected to {q}")),
                    Some(_) => {}
                }
            }
            let me = view
                .iter()
                .find(|n| n.has_flag("myself"))
                .ok_or_else(|| format!("{p}: no myself in CLUSTER NODES"))?;
            if me.is_replica() {
                let repl = try_text(p, &["INFO", "replication"])?;
                if info_field(&repl, "master_link_status").as_deref() != Some("up") {
                    return Err(format!("replica {p}: master link not up"));
                }
            }
            let topo = topology(&view);
            let slots = match try_cmd(p, &["CLUSTER", "SLOTS"]) {
                Ok(r) => parse_cluster_slots(&r)?,
                Err(e) => return Err(format!("{p}: {e}")),
            };
            match &agreed {
                None => agreed = Some((p, topo, slots)),
                Some((q, other, _)) if *other != topo => {
                    return Err(format!(
                        "{p} and {q} disagree on CLUSTER NODES: {topo:?} vs {other:?}"
                    ))
                }
                Some((q, _, other)) if *other != slots => {
                    return Err(format!(
                        "{p} and {q} disagree on CLUSTER SLOTS: {slots:?} vs {other:?}"
                    ))
                }
                Some(_) => {}
            }
        }
        let (_, topo, slots) = agreed.ok_or_else(|| "no live node".to_string())?;
        for r in &slots {
            let want: Vec<u16> = topo
                .iter()
                .filter(|n| n.master == Some(r.master) && live.contains(&n.port))
                .map(|n| n.port)
                .collect();
            if r.replicas != want {
                return Err(format!(
                    "CLUSTER SLOTS lists replicas {:?} for master {}, CLUSTER NODES {want:?}",
                    r.replicas, r.master
                ));
            }
        }
        Ok(slots)
    }

    // ----------------------------------------------------------------- internals

    fn with_node<R>(&self, port: u16, f: impl FnOnce(&mut Node) -> R) -> R {
        let mut nodes = self.nodes.lock().unwrap();
        let n = nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("{port} is not a node of this cluster"));
        f(n)
    }

    /// Panics with `msg` and every live node's `CLUSTER NODES`.
    #[track_caller]
    fn fail_with(&self, msg: &str) -> ! {
        let mut views = String::new();
        for p in self.live_ports() {
            let v = try_text(p, &["CLUSTER", "NODES"]).unwrap_or_else(|e| e);
            views.push_str(&format!("--- CLUSTER NODES of {p} ---\n{v}\n"));
        }
        panic!("{msg}\n{views}");
    }
}

/// One node in a normalized `CLUSTER NODES` view: what every node must agree on.
#[derive(Debug, PartialEq, Eq)]
struct TopoNode {
    port: u16,
    /// The master's port, for a replica.
    master: Option<u16>,
    slots: Vec<(u16, u16)>,
}

type Topology = Vec<TopoNode>;

/// Roles, masters and slots of a `CLUSTER NODES` view, by port (flags, timestamps and link
/// states left out: they differ from node to node).
fn topology(view: &[NodeInfo]) -> Topology {
    let port_of = |id: &str| view.iter().find(|n| n.id == id).map(|n| n.port);
    let mut out: Topology = view
        .iter()
        .map(|n| TopoNode {
            port: n.port,
            master: if n.is_replica() {
                n.master_id.as_deref().and_then(port_of)
            } else {
                None
            },
            slots: n.slots.clone(),
        })
        .collect();
    out.sort_by_key(|n| n.port);
    out
}

fn owner_in(map: &[SlotRange], slot: u16) -> Option<u16> {
    map.iter()
        .find(|r| r.start <= slot && slot <= r.end)
        .map(|r| r.master)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let nodes = self.nodes.get_mut().unwrap_or_else(|e| e.into_inner());
        if thread::panicking() {
            for n in nodes.iter() {
                let tail = n.log_tail(15);
                if !tail.trim().is_empty() {
                    eprintln!(
                        "---- redis-server cluster node {} log (last lines) ----\n{tail}",
                        n.port
                    );
                }
            }
        }
        for n in nodes.iter_mut() {
            n.kill();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A slot migration stopped half-way (see [`Cluster::begin_migration`]): the source is
/// `MIGRATING`, the target `IMPORTING`. Keys not moved yet are still served by the source;
/// moved ones get `-ASK` from it.
#[must_use = "a migration left open keeps the slot MIGRATING/IMPORTING"]
pub struct Migration<'a> {
    cluster: &'a Cluster,
    slot: u16,
    from: u16,
    to: u16,
}

impl Migration<'_> {
    pub fn slot(&self) -> u16 {
        self.slot
    }

    /// The master the slot is leaving.
    pub fn source(&self) -> u16 {
        self.from
    }

    /// The master the slot is going to.
    pub fn target(&self) -> u16 {
        self.to
    }

    /// `MIGRATE` of these keys (which must be in the slot) from source to target; keys the
    /// source does not have are skipped by Redis (`NOKEY`).
    pub fn move_keys(&self, keys: &[&str]) {
        for k in keys {
            assert_eq!(
                key_slot(k.as_bytes()),
                self.slot,
                "key {k:?} is not in slot {}",
                self.slot
            );
        }
        let keys: Vec<Vec<u8>> = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
        self.migrate(&keys);
    }

    /// Moves every key still in the slot on the source.
    pub fn move_all(&self) {
        let s = self.slot.to_string();
        loop {
            let keys = match must(self.from, &["CLUSTER", "GETKEYSINSLOT", &s, "100"]) {
                Reply::Array(Some(items)) => items
                    .into_iter()
                    .map(|k| match k {
                        Reply::Bulk(Some(b)) => b,
                        other => panic!("GETKEYSINSLOT: {other:?}"),
                    })
                    .collect::<Vec<_>>(),
                other => panic!("GETKEYSINSLOT: {other:?}"),
            };
            if keys.is_empty() {
                return;
            }
            self.migrate(&keys);
        }
    }

    fn migrate(&self, keys: &[Vec<u8>]) {
        if keys.is_empty() {
            return;
        }
        let to = self.to.to_string();
        let mut args: Vec<Vec<u8>> = ["MIGRATE", "127.0.0.1", &to, "", "0", "5000", "KEYS"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        args.extend(keys.iter().cloned());
        match must(self.from, &args) {
            Reply::Simple(s) if s == "OK" || s == "NOKEY" => {}
            other => panic!("MIGRATE from {} to {}: {other:?}", self.from, self.to),
        }
    }

    /// Moves the remaining keys, then `CLUSTER SETSLOT <slot> NODE <target>` on the target,
    /// the source and the other masters; returns once every live node agrees.
    pub fn finish(self) {
        self.move_all();
        let s = self.slot.to_string();
        let to_id = self.cluster.node_id(self.to);
        let mut order = vec![self.to, self.from];
        for m in self.cluster.masters() {
            if !order.contains(&m) {
                order.push(m);
            }
        }
        for p in order {
            must(p, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
        }
        let deadline = Instant::now() + SETTLE;
        loop {
            let last = match self.cluster.settled() {
                Ok(map) if owner_in(&map, self.slot) == Some(self.to) => return,
                Ok(_) => format!("slot {} not yet served by {}", self.slot, self.to),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                self.cluster.fail_with(&format!(
                    "migration of slot {} to {}: not settled: {last}",
                    self.slot, self.to
                ));
            }
            thread::sleep(POLL);
        }
    }

    /// Abandons the migration: `CLUSTER SETSLOT <slot> STABLE` on both ends (keys already
    /// moved stay on the target, unreachable until the slot moves there).
    pub fn cancel(self) {
        let s = self.slot.to_string();
        must(self.to, &["CLUSTER", "SETSLOT", &s, "STABLE"]);
        must(self.from, &["CLUSTER", "SETSLOT", &s, "STABLE"]);
    }
}
