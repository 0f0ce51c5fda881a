//! A shard's view of the cluster: which node serves each slot (master, and the replica reads
//! may use), one pipelined connection per node it talks to (opened on first use, tracking
//! what it reads), and the reloads of the slot map: every `--slots-reload-interval`, after a
//! `-MOVED`, and when a node connection fails, never twice within `MIN_GAP_MS`.

use super::slots::{key_slot, Topology, SLOTS};
use crate::backend::handshake::{open, roundtrip};
use crate::backend::supervisor::{check_timeout, close, supervise};
use crate::backend::{Conn, Params, Status};
use crate::config::ReadFrom;
use crate::deliver::Waiter;
use crate::shard::Shard;
use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const NONE: u16 = u16::MAX;

/// Bumped by a shard that saw slots change owner, after `SLOT_GEN` of each such slot: every
/// other shard then drops its entries of those slots too, since it may hold some read from
/// the old owner (a cached nil, which no migration deletes) that no invalidation will reach.
/// Read once per batch of client input; written only when slots move.
static SLOT_MOVES: AtomicU64 = AtomicU64::new(0);
static SLOT_GEN: [AtomicU32; SLOTS] = [const { AtomicU32::new(0) }; SLOTS];
/// Least time between two reloads of the slot map: a burst of MOVED or of failing
/// connections costs a few reloads per second at most.
const MIN_GAP_MS: u32 = 250;

struct Node {
    addr: SocketAddr,
    conn: Option<Rc<Conn<Waiter>>>,
}

pub struct Cluster {
    read_from: ReadFrom,
    seeds: Vec<SocketAddr>,
    nodes: RefCell<Vec<Node>>,
    /// Slot -> index in `nodes` of its master (`NONE`: unassigned).
    masters: RefCell<Box<[u16]>>,
    /// Slot -> index of the replica this shard reads it from (`NONE`: none).
    replicas: RefCell<Box<[u16]>>,
    /// The distinct masters of `masters`, in slot order (kept with it, by `set_master`s).
    master_list: RefCell<Vec<u16>>,
    /// Bumped whenever a slot changes owner: a client's requests sent before may be answered
    /// by another node than the ones after, so it waits for them (see `dispatch`).
    epoch: Cell<u64>,
    wanted: Cell<bool>,
    loading: Cell<bool>,
    last_load: Cell<u32>,
    interval_ms: u32,
    /// Which replica of a slot this shard reads from: shards spread over replicas.
    pick: usize,
    /// The shard's shared connection (to the node that served slot 0 at start): it carries
    /// Redis's command table and is never closed.
    home: Rc<Conn<Waiter>>,
    shard: RefCell<Weak<Shard>>,
    /// What the proxy calls itself to cluster-aware clients (`CLUSTER MYID`, `NODES`).
    pub node_id: String,
    /// `SLOT_MOVES` and `SLOT_GEN` as this shard last applied them.
    moves_seen: Cell<u64>,
    gens_seen: RefCell<Box<[u32]>>,
    /// Hostnames of slot maps and redirections, resolved once (on the shard's thread).
    resolved: RefCell<hashbrown::HashMap<(String, u16), SocketAddr>>,
}

impl Cluster {
    pub fn new(
        cfg: &crate::config::Config,
        t: &Topology,
        asked: SocketAddr,
        seeds: Vec<SocketAddr>,
        pick: usize,
        home: Rc<Conn<Waiter>>,
    ) -> Self {
        // Kept from its first request on: a redirected one is sent again.
        home.st.borrow_mut().journal = Some(Default::default());
        let c = Cluster {
            read_from: cfg.read_from,
            seeds,
            nodes: RefCell::new(vec![Node {
                addr: home.params.addr,
                conn: Some(home.clone()),
            }]),
            masters: RefCell::new(vec![NONE; SLOTS].into_boxed_slice()),
            replicas: RefCell::new(vec![NONE; SLOTS].into_boxed_slice()),
            master_list: RefCell::default(),
            epoch: Cell::new(0),
            wanted: Cell::new(!t.complete()),
            loading: Cell::new(false),
            last_load: Cell::new(0),
            interval_ms: cfg.slots_reload_interval.as_millis().min(u32::MAX as u128) as u32,
            pick,
            home,
            shard: RefCell::new(Weak::new()),
            node_id: node_id(cfg),
            moves_seen: Cell::new(SLOT_MOVES.load(Ordering::Acquire)),
            gens_seen: RefCell::new(SLOT_GEN.iter().map(|g| g.load(Ordering::Relaxed)).collect()),
            resolved: RefCell::default(),
        };
        c.install(t, asked);
        c
    }

    /// Node connections need the shard as their sink; called once the shard is shared.
    pub fn bind(&self, shard: &Rc<Shard>) {
        *self.shard.borrow_mut() = Rc::downgrade(shard);
    }

    /// Tells a client whether its requests in flight may be on other nodes than its next one
    /// would go to: one value per slot map (odd, so never a connection's address).
    #[inline]
    pub fn token(&self) -> usize {
        ((self.epoch.get() as usize) << 1) | 1
    }

    pub fn master_addr(&self, slot: u16) -> Option<SocketAddr> {
        let i = self.masters.borrow()[slot as usize];
        (i != NONE).then(|| self.nodes.borrow()[i as usize].addr)
    }

    /// The connection for a request on `slot`; `read`: it only reads (may go to a replica).
    #[inline]
    pub fn route(&self, slot: u16, read: bool) -> Option<Rc<Conn<Waiter>>> {
        if read && self.read_from != ReadFrom::Master {
            let r = self.replicas.borrow()[slot as usize];
            if r != NONE {
                let conn = self.conn(r as usize, true);
                let up = conn.status() == Status::Up;
                if up || self.read_from == ReadFrom::Replica {
                    return Some(conn);
                }
            }
        }
        let m = self.masters.borrow()[slot as usize];
        (m != NONE).then(|| self.conn(m as usize, false))
    }

    /// A master for keyless commands: the one serving the lowest assigned slot.
    pub fn any_master(&self) -> Option<Rc<Conn<Waiter>>> {
        let m = *self.master_list.borrow().first()?;
        Some(self.conn(m as usize, false))
    }

    /// Every master, in the order of the slots they serve (stable while the map is).
    pub fn all_masters(&self) -> Vec<Rc<Conn<Waiter>>> {
        let list = self.master_list.borrow().clone();
        list.into_iter()
            .map(|m| self.conn(m as usize, false))
            .collect()
    }

    /// The masters' addresses, without opening connections to them.
    pub fn master_addrs(&self) -> Vec<SocketAddr> {
        let nodes = self.nodes.borrow();
        let list = self.master_list.borrow();
        list.iter().map(|&m| nodes[m as usize].addr).collect()
    }

    /// Derives `master_list` from `masters` (after they changed).
    fn list_masters(&self) {
        let mut list: Vec<u16> = Vec::new();
        for &m in self.masters.borrow().iter() {
            if m != NONE && !list.contains(&m) {
                list.push(m);
            }
        }
        *self.master_list.borrow_mut() = list;
    }

    /// The node's connection, opened on first use (again, if it was retired).
    fn conn(&self, i: usize, replica: bool) -> Rc<Conn<Waiter>> {
        if let Some(c) = &self.nodes.borrow()[i].conn {
            if c.status() != Status::Closed {
                return c.clone();
            }
        }
        let shard = self.shard.borrow().upgrade().expect("bound before use");
        let addr = self.nodes.borrow()[i].addr;
        let tracking = shard.shared.params.tracking;
        let label = format!("shard {} node {addr}", shard.id);
        let mut params = Params {
            addr,
            ..shard.params(0, tracking, label)
        };
        params.readonly = replica && self.read_from != ReadFrom::Master;
        let conn = Rc::new(Conn::new(params, shard.cfg.redis_ops_limit));
        conn.timed.set(true);
        conn.st.borrow_mut().journal = Some(Default::default());
        self.nodes.borrow_mut()[i].conn = Some(conn.clone());
        monoio::spawn(supervise(conn.clone(), shard));
        conn
    }

    fn index_of(&self, addr: SocketAddr) -> u16 {
        let mut nodes = self.nodes.borrow_mut();
        if let Some(i) = nodes.iter().position(|n| n.addr == addr) {
            return i as u16;
        }
        nodes.push(Node { addr, conn: None });
        (nodes.len() - 1) as u16
    }

    /// `resolve`, remembering what hostnames resolved to: a slow resolver then stalls the
    /// shard once per name, not at every reload.
    pub fn resolve(&self, host: &str, port: u16, asked: SocketAddr) -> Option<SocketAddr> {
        if host.is_empty() || host.parse::<IpAddr>().is_ok() {
            return resolve(host, port, asked);
        }
        let key = (host.to_string(), port);
        if let Some(a) = self.resolved.borrow().get(&key) {
            return Some(*a);
        }
        let a = resolve(host, port, asked)?;
        self.resolved.borrow_mut().insert(key, a);
        Some(a)
    }

    /// The connection to `addr`, for a redirection.
    pub fn conn_at(&self, addr: SocketAddr) -> Rc<Conn<Waiter>> {
        let i = self.index_of(addr);
        self.conn(i as usize, false)
    }

    /// `-MOVED`: the slot is served by `addr` from now on; the map is reloaded soon.
    pub fn moved(&self, shard: &Shard, slot: u16, addr: SocketAddr) {
        let i = self.index_of(addr);
        let old = std::mem::replace(&mut self.masters.borrow_mut()[slot as usize], i);
        self.replicas.borrow_mut()[slot as usize] = NONE;
        if old != i {
            self.list_masters();
            let mut changed = vec![false; SLOTS];
            changed[slot as usize] = true;
            self.changed(shard, &changed);
        }
        self.want_reload();
    }

    /// Whether `from` is one of the node connections (not a dedicated or subscriber one).
    pub fn is_node(&self, from: &Params) -> bool {
        self.nodes.borrow().iter().any(|n| {
            n.conn
                .as_ref()
                .is_some_and(|c| std::ptr::eq(&c.params, from))
        })
    }

    /// Once per batch of client input: another shard saw slots move (see `SLOT_MOVES`).
    #[inline]
    pub fn check_moves(&self, shard: &Shard) {
        let e = SLOT_MOVES.load(Ordering::Acquire);
        if e == self.moves_seen.get() {
            return;
        }
        self.moves_seen.set(e);
        let mut changed = vec![false; SLOTS];
        {
            let mut seen = self.gens_seen.borrow_mut();
            for (s, g) in SLOT_GEN.iter().enumerate() {
                let g = g.load(Ordering::Relaxed);
                if g != seen[s] {
                    seen[s] = g;
                    changed[s] = true;
                }
            }
        }
        drop_slots(shard, &changed);
        self.want_reload();
    }

    pub fn want_reload(&self) {
        self.wanted.set(true);
    }

    /// Slots changed owner: their cached entries were tracked at the old owner, which will
    /// not see the writes now, so they go; fetches in flight may fill from the old owner.
    fn changed(&self, shard: &Shard, changed: &[bool]) {
        self.epoch.set(self.epoch.get() + 1);
        {
            let mut seen = self.gens_seen.borrow_mut();
            for (s, _) in changed.iter().enumerate().filter(|(_, &c)| c) {
                seen[s] = SLOT_GEN[s].fetch_add(1, Ordering::Relaxed) + 1;
            }
        }
        self.moves_seen
            .set(SLOT_MOVES.fetch_add(1, Ordering::SeqCst) + 1);
        drop_slots(shard, changed);
    }

    /// Installs a slot map read from the node at `asked`; returns which slots changed master.
    fn install(&self, t: &Topology, asked: SocketAddr) -> Vec<bool> {
        let mut masters = vec![NONE; SLOTS];
        let mut replicas = vec![NONE; SLOTS];
        for r in &t.ranges {
            let Some(m) = self.resolve(&r.master.host, r.master.port, asked) else {
                continue;
            };
            let m = self.index_of(m);
            let reps: Vec<u16> = r
                .replicas
                .iter()
                .filter_map(|e| self.resolve(&e.host, e.port, asked))
                .map(|a| self.index_of(a))
                .collect();
            let rep = if reps.is_empty() {
                NONE
            } else {
                reps[self.pick % reps.len()]
            };
            for s in r.start..=r.end {
                masters[s as usize] = m;
                replicas[s as usize] = rep;
            }
        }
        let old = std::mem::replace(&mut *self.masters.borrow_mut(), masters.into());
        *self.replicas.borrow_mut() = replicas.into();
        self.list_masters();
        let new = self.masters.borrow();
        old.iter().zip(new.iter()).map(|(a, b)| a != b).collect()
    }

    /// A reloaded map: applied, and connections to nodes it no longer names are retired.
    fn apply(&self, shard: &Rc<Shard>, t: &Topology, asked: SocketAddr) {
        let changed = self.install(t, asked);
        if changed.iter().any(|&c| c) {
            tracing::info!(
                "shard {}: slot map changed ({} slots moved)",
                shard.id,
                changed.iter().filter(|&&c| c).count()
            );
            self.changed(shard, &changed);
        }
        let used: Vec<u16> = {
            let m = self.masters.borrow();
            let r = self.replicas.borrow();
            let mut u: Vec<u16> = m.iter().chain(r.iter()).copied().collect();
            u.sort_unstable();
            u.dedup();
            u
        };
        let retired: Vec<Rc<Conn<Waiter>>> = {
            let mut nodes = self.nodes.borrow_mut();
            nodes
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| used.binary_search(&(*i as u16)).is_err())
                .filter(|(_, n)| !n.conn.as_ref().is_some_and(|c| Rc::ptr_eq(c, &self.home)))
                .filter_map(|(_, n)| n.conn.take())
                .collect()
        };
        for c in retired {
            close(&c, &**shard, "the node left the slot map");
        }
        // The subscriber connection follows a failover: to a master, if its node is gone.
        let nodes = self.nodes.borrow();
        let known = |a: SocketAddr| {
            nodes
                .iter()
                .enumerate()
                .any(|(i, n)| n.addr == a && used.binary_search(&(i as u16)).is_ok())
        };
        let lost = shard.pubsub.node().filter(|&a| !known(a));
        let m = self.master_list.borrow().first().copied();
        let to = m.map(|m| nodes[m as usize].addr);
        drop(nodes);
        if let (Some(lost), Some(to)) = (lost, to) {
            tracing::info!("shard {}: subscriptions move from {lost} to {to}", shard.id);
            shard.pubsub.move_to(shard, to);
        }
    }

    /// Once per shard tick: timeouts of the node connections, and a reload when one is due.
    pub fn tick(&self, shard: &Rc<Shard>, now: u32) {
        let conns: Vec<Rc<Conn<Waiter>>> = self.node_conns();
        for c in &conns {
            check_timeout(c, &**shard, now, shard.cfg.backend_timeout);
        }
        let since = now.wrapping_sub(self.last_load.get());
        let due = since >= self.interval_ms || (self.wanted.get() && since >= MIN_GAP_MS);
        if due && !self.loading.get() {
            self.loading.set(true);
            self.wanted.set(false);
            self.last_load.set(now);
            monoio::spawn(reload(shard.clone()));
        }
    }

    /// Node connections other than the shard's shared one.
    pub fn node_conns(&self) -> Vec<Rc<Conn<Waiter>>> {
        self.nodes
            .borrow()
            .iter()
            .filter_map(|n| n.conn.clone())
            .filter(|c| !Rc::ptr_eq(c, &self.home))
            .collect()
    }

    /// Lets every node connection's writer send what clients queued.
    #[inline]
    pub fn flush(&self) {
        for n in self.nodes.borrow().iter() {
            match &n.conn {
                // The shard flushes its shared connection itself.
                Some(c) if !Rc::ptr_eq(c, &self.home) => c.flush(),
                _ => {}
            }
        }
    }

    /// Where to ask for the map: masters whose connection is up, other known nodes, seeds.
    fn candidates(&self) -> Vec<SocketAddr> {
        let nodes = self.nodes.borrow();
        let mut up: Vec<SocketAddr> = Vec::new();
        let mut rest: Vec<SocketAddr> = Vec::new();
        for n in nodes.iter() {
            match &n.conn {
                Some(c) if c.status() == Status::Up => up.push(n.addr),
                _ => rest.push(n.addr),
            }
        }
        up.into_iter()
            .chain(rest)
            .chain(self.seeds.iter().copied())
            .fold(Vec::new(), |mut v, a| {
                if !v.contains(&a) {
                    v.push(a);
                }
                v
            })
    }
}

/// Drops the shard's cached entries of the `changed` slots and bars fetches in flight from
/// filling (they may read from the old owner).
fn drop_slots(shard: &Shard, changed: &[bool]) {
    let n = shard
        .cache
        .borrow_mut()
        .remove_where(|k| changed[key_slot(k) as usize]);
    shard
        .stats
        .invalidated(crate::observe::stats::Source::Flush, n as u64);
    shard.inflight.borrow_mut().poison_all();
}

/// Asks the candidates in turn for `CLUSTER SLOTS` until one answers with a map.
async fn reload(shard: Rc<Shard>) {
    let Some(cluster) = &shard.cluster else {
        return;
    };
    for addr in cluster.candidates() {
        let params = Params {
            addr,
            tracking: false,
            commands: false,
            log_connects: false,
            ..shard.params(0, false, format!("shard {} slot map", shard.id))
        };
        let limit = shard.cfg.connect_timeout * 2;
        match monoio::time::timeout(limit, load(&params)).await {
            Ok(Ok(t)) if !t.ranges.is_empty() => {
                cluster.apply(&shard, &t, addr);
                break;
            }
            Ok(Ok(_)) => tracing::debug!("{addr}: empty slot map"),
            Ok(Err(e)) => tracing::debug!("slot map from {addr}: {e}"),
            Err(_) => tracing::debug!("slot map from {addr}: timed out"),
        }
    }
    cluster.loading.set(false);
    cluster.last_load.set(shard.update_clock());
}

async fn load(params: &Params) -> Result<Topology, String> {
    let mut o = open(params, true).await?;
    let reply = roundtrip(&mut o.stream, &mut o.leftover, &[b"CLUSTER", b"SLOTS"]).await?;
    Topology::parse(&reply).ok_or_else(|| {
        let text = String::from_utf8_lossy(&reply);
        format!("not a slot map: {}", text.trim_end())
    })
}

/// An endpoint of a slot map or redirection as an address. Empty: the node asked. Hostnames
/// are resolved here, on the shard's thread (IP addresses, the usual case, cost nothing).
pub fn resolve(host: &str, port: u16, asked: SocketAddr) -> Option<SocketAddr> {
    if host.is_empty() {
        return Some(SocketAddr::new(asked.ip(), port));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    (host, port).to_socket_addrs().ok()?.next()
}

/// A stable 40-hex-digit node id for this proxy (from its listen address and process id).
fn node_id(cfg: &crate::config::Config) -> String {
    let seed = format!("{}-{}", cfg.listen, std::process::id());
    let mut id = String::with_capacity(40);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    while id.len() < 40 {
        for b in seed.bytes().chain(id.clone().into_bytes()) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        id.push_str(&format!("{h:016x}"));
    }
    id.truncate(40);
    id
}
