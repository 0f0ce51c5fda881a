//! A shard: one pinned thread with its own monoio runtime (io_uring, or epoll where io_uring is
//! refused), its own listener, cache, in-flight fetches and backend connection. Nothing on the
//! hot path is shared with other shards.

use crate::backend::supervisor::{check_timeout, supervise};
use crate::backend::{Conn, Params, Status};
use crate::cache::Cache;
use crate::config::live::{Board, Live};
use crate::config::Config;
use crate::config::Invalidation;
use crate::deliver::Waiter;
use crate::fetch::Inflight;
use crate::multi::CommandTable;
use crate::observe::stats::{ShardStats, Source};
use crate::pool::Pool;
use crate::replies::ClientShared;
use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Bumped by every SWAPDB that goes through the proxy (see `Shard::swapped_dbs`).
static SWAP_EPOCH: AtomicU64 = AtomicU64::new(0);

/// The scripts connection without a reply for this long is probed (see `probe_if_stalled`).
const PROBE_AFTER_MS: u32 = 100;

/// Shards whose scripts connection waits behind a script (as of their last tick): while any
/// does, PING goes to Redis, which answers -BUSY for a long script whichever shard runs it.
/// Written on changes only.
static SCRIPTS_STALLED: AtomicUsize = AtomicUsize::new(0);

/// How often a shard sweeps expired entries and checks for shutdown.
const TICK: Duration = Duration::from_millis(50);
/// How long in-flight replies may take to finish at shutdown.
const GRACE: Duration = Duration::from_secs(3);

pub struct Shard {
    pub id: usize,
    pub cfg: Arc<Config>,
    pub redis_addr: SocketAddr,
    pub cache: RefCell<Cache>,
    pub cache_on: bool,
    /// --expire for entries cached from now on (SIGHUP may change it).
    pub expire_ms: Cell<u32>,
    /// The SIGHUP-changeable settings as this shard last applied them (see `refresh_live`).
    settings: RefCell<Rc<Live>>,
    board: Arc<Board>,
    live_seen: Cell<u64>,
    pub inflight: RefCell<Inflight>,
    /// The pipelined connection every client of the shard shares (tracking, when caching).
    pub shared: Rc<Conn<Waiter>>,
    /// Dedicated connections, for clients that hold server state or block.
    pub pool: Pool,
    /// Subscriptions at Redis and the clients listening.
    pub pubsub: Rc<crate::pubsub::hub::Hub>,
    /// Cluster mode: shard channels' subscriptions, one hub per node.
    pub shard_hubs: RefCell<Vec<Rc<crate::pubsub::hub::Hub>>>,
    /// What this shard's tracking clients read (CLIENT TRACKING for the proxy's clients).
    pub tracking: crate::tracking::table::Table,
    /// The connection in BCAST tracking mode, for BCAST clients.
    pub bcast: crate::tracking::bcast::Bcast,
    /// The client whose command is being dispatched (0: none), for NOLOOP.
    pub writer: Cell<u64>,
    /// The connection whose invalidation push is being applied (its address; 0: none), and
    /// how many replies it had delivered before it.
    pub push_via: Cell<usize>,
    pub push_replies: Cell<u64>,
    /// This shard's clients by id (redirect targets of tracking clients).
    by_id: RefCell<hashbrown::HashMap<u64, Weak<ClientShared>>>,
    /// Redis's commands, for MULTI's queue-time checks (once the shared connection got it).
    commands: RefCell<Option<Rc<CommandTable>>>,
    /// Shared connections to the other dbs clients SELECTed, opened on first use.
    other_dbs: RefCell<Vec<Rc<Conn<Waiter>>>>,
    /// For commands that must not wait behind anyone (CLIENT UNBLOCK, SCRIPT/FUNCTION KILL).
    oob: RefCell<Option<Rc<Conn<Waiter>>>>,
    /// Scripts (EVAL, FCALL ...) in the default db, so a long one holds only this connection.
    scripts: RefCell<Option<Rc<Conn<Waiter>>>>,
    /// This shard counts in `SCRIPTS_STALLED`.
    script_stalled: Cell<bool>,
    /// `SWAP_EPOCH` as this shard last applied it.
    swaps_seen: Cell<u64>,
    epoch: Instant,
    now: Cell<u32>,
    stop: Cell<bool>,
    /// One per accept loop (RESP, HTTP) waiting for shutdown.
    stop_wakers: RefCell<Vec<Waker>>,
    clients: RefCell<Vec<Weak<ClientShared>>>,
    /// Client connections of this shard still being served.
    live: Cell<usize>,
    /// Client connections across all shards, for --max-clients. Touched on connect and
    /// disconnect only, never per request.
    pub connections: Arc<AtomicUsize>,
    /// This shard's counters, read by the admin thread and INFO.
    pub stats: Arc<ShardStats>,
    /// Cluster mode: the slot map and a connection per node (`None`: one Redis server).
    pub cluster: Option<crate::cluster::topology::Cluster>,
}

impl Shard {
    pub fn new(
        id: usize,
        cfg: Arc<Config>,
        redis_addr: SocketAddr,
        connections: Arc<AtomicUsize>,
        board: Arc<Board>,
        start: Option<&crate::cluster::detect::Start>,
    ) -> Self {
        let capacity = cfg.shard_capacity();
        let tracking = cfg.invalidation == Invalidation::Tracking && capacity > 0;
        let mut params = Self::params_for(&cfg, redis_addr, cfg.redis.db, tracking);
        params.commands = true;
        params.label = format!("shard {id}");
        let shared = Rc::new(Conn::new(params, cfg.redis_ops_limit));
        shared.timed.set(true);
        let cluster = start.map(|st| {
            crate::cluster::topology::Cluster::new(
                &cfg,
                &st.topology,
                st.asked,
                st.seeds.clone(),
                id,
                shared.clone(),
            )
        });
        Shard {
            cluster,
            id,
            redis_addr,
            cache: RefCell::new(Cache::new(capacity)),
            cache_on: capacity > 0,
            expire_ms: Cell::new(Live::of(&cfg).expire_ms()),
            settings: RefCell::new(Rc::new(Live::of(&cfg))),
            live_seen: Cell::new(0),
            board,
            inflight: RefCell::new(Inflight::default()),
            shared,
            pool: Pool::new(cfg.backend_idle_connections, cfg.max_pinned),
            pubsub: Default::default(),
            shard_hubs: RefCell::default(),
            tracking: crate::tracking::table::Table::new(
                cfg.tracking_table_max_keys.div_ceil(cfg.threads()).max(1),
            ),
            bcast: Default::default(),
            writer: Cell::new(0),
            push_via: Cell::new(0),
            push_replies: Cell::new(0),
            by_id: RefCell::default(),
            commands: RefCell::new(None),
            other_dbs: RefCell::new(Vec::new()),
            oob: RefCell::new(None),
            scripts: RefCell::new(None),
            swaps_seen: Cell::new(SWAP_EPOCH.load(Ordering::Relaxed)),
            script_stalled: Cell::new(false),
            epoch: *crate::registry::EPOCH,
            now: Cell::new(0),
            stop: Cell::new(false),
            stop_wakers: RefCell::new(Vec::new()),
            clients: RefCell::new(Vec::new()),
            live: Cell::new(0),
            connections,
            stats: crate::observe::stats::register(id),
            cfg,
        }
    }

    fn params_for(cfg: &Config, addr: SocketAddr, db: u32, tracking: bool) -> Params {
        Params {
            addr,
            user: cfg.redis.user.clone(),
            password: cfg.redis.password.clone(),
            db,
            tracking,
            commands: false,
            connect_timeout: cfg.connect_timeout,
            label: String::new(),
            log_connects: true,
            bcast: false,
            readonly: false,
        }
    }

    /// Handshake parameters of a connection to `db`.
    pub fn params(&self, db: u32, tracking: bool, label: String) -> Params {
        Params {
            label,
            ..Self::params_for(&self.cfg, self.redis_addr, db, tracking)
        }
    }

    /// Where a dedicated connection for `args` goes: Redis, or in cluster mode the master of
    /// its first key's slot (`None`: no node serves that slot).
    pub fn dedicated_addr(
        &self,
        kind: crate::command::Kind,
        args: &crate::resp::request::Args,
    ) -> Option<SocketAddr> {
        let Some(c) = &self.cluster else {
            return Some(self.redis_addr);
        };
        let table = self.commands();
        match crate::cluster::route::first_key(table.as_deref(), kind, args) {
            Some(i) => c.master_addr(crate::cluster::slots::key_slot(args.get(i))),
            None => Some(self.redis_addr),
        }
    }

    /// Cluster mode: where a keyless command goes: the shard's first node while its connection
    /// is up, else the master of the lowest slot (`None`: one server, or no master known).
    pub fn keyless_conn(&self) -> Option<Rc<Conn<Waiter>>> {
        let c = self.cluster.as_ref()?;
        if self.shared.status() == Status::Up {
            return Some(self.shared.clone());
        }
        c.any_master()
    }

    /// Redis's command table, once known.
    pub fn commands(&self) -> Option<Rc<CommandTable>> {
        if let Some(t) = &*self.commands.borrow() {
            return Some(t.clone());
        }
        let raw = self.shared.st.borrow().server.commands.clone()?;
        let t = Rc::new(CommandTable::parse(&raw));
        *self.commands.borrow_mut() = Some(t.clone());
        Some(t)
    }

    /// The SIGHUP-changeable settings (requirepass, client limits) as of the last refresh.
    pub fn live(&self) -> Rc<Live> {
        self.settings.borrow().clone()
    }

    /// Takes up settings SIGHUP published: once per tick and per accepted connection, so the
    /// shared generation word is read nowhere near the per-request path.
    pub fn refresh_live(&self) {
        let g = self.board.generation();
        if g == self.live_seen.get() {
            return;
        }
        let live = Live::clone(&self.board.current());
        self.expire_ms.set(live.expire_ms());
        *self.settings.borrow_mut() = Rc::new(live);
        self.live_seen.set(g);
        self.board.applied(self.id, g);
    }

    /// Milliseconds on this shard's clock, as of the last `update_clock`. The clock wraps
    /// every 49.7 days: compare instants only through `wrapping_sub` (lifetimes and timeouts
    /// are far shorter than the 24.8 days that leaves).
    #[inline]
    pub fn now(&self) -> u32 {
        self.now.get()
    }

    /// Called once per batch of client input and per tick, not per request.
    #[inline]
    pub fn update_clock(&self) -> u32 {
        let elapsed = self.epoch.elapsed();
        crate::observe::clock::set(elapsed);
        let ms = elapsed.as_millis() as u32; // wraps, by design
        self.now.set(ms);
        ms
    }

    /// A write through this shard touched `key` (the client being dispatched wrote it).
    #[inline]
    pub fn invalidate(&self, key: &[u8]) {
        self.evict_for(key, Source::Write);
        self.tracking.invalidate(self, key, self.writer.get());
    }

    /// `key` changed, by `writer`'s command (`tracking::table::REDIS`: Redis told): drop it from the cache, poison
    /// its fetches, tell the tracking clients that read it.
    #[inline]
    pub fn invalidate_from(&self, key: &[u8], writer: u64) {
        let source = if writer == crate::tracking::table::REDIS {
            Source::Push
        } else {
            Source::Write
        };
        self.evict_for(key, source);
        self.tracking.invalidate(self, key, writer);
    }

    /// Drops `key` from the cache and poisons its fetches: Redis's (BCAST) push named it.
    #[inline]
    pub fn evict(&self, key: &[u8]) {
        self.evict_for(key, Source::Push);
    }

    #[inline]
    fn evict_for(&self, key: &[u8], source: Source) {
        if self.cache.borrow_mut().remove(key) {
            self.stats.invalidated(source, 1);
        }
        self.inflight.borrow_mut().poison(key);
    }

    /// Whether the proxy can answer CLIENT TRACKING: its shared connections track what they
    /// read (they do when it caches with Redis's invalidations).
    pub fn client_tracking_possible(&self) -> bool {
        self.shared.params.tracking
    }

    /// The client is leaving: no longer found by id.
    pub fn forget_client(&self, id: u64) {
        self.by_id.borrow_mut().remove(&id);
    }

    /// A client of this shard, by id.
    pub fn client_by_id(&self, id: u64) -> Option<Rc<ClientShared>> {
        self.by_id.borrow().get(&id).and_then(Weak::upgrade)
    }

    pub fn flush_cache(&self) {
        let mut cache = self.cache.borrow_mut();
        self.stats.invalidated(Source::Flush, cache.len() as u64);
        cache.clear();
        self.inflight.borrow_mut().poison_all();
    }

    /// FLUSHDB: that db's entries go (Redis then tells every tracking connection to drop
    /// everything, so the rest usually follows).
    pub fn flush_db(&self, db: u32) {
        let mut cache = self.cache.borrow_mut();
        let before = cache.len();
        match u8::try_from(db) {
            Ok(db) => cache.clear_db(db),
            Err(_) => cache.clear(),
        }
        self.stats
            .invalidated(Source::Flush, (before - cache.len()) as u64);
        drop(cache);
        self.inflight.borrow_mut().poison_all();
    }

    /// A SWAPDB went through some shard: Redis sends no invalidation for it, so the shard
    /// that ran it bumps `SWAP_EPOCH` before its client hears `+OK`, and every shard checks it
    /// once per batch of client input (a read-mostly word: no cache line bouncing).
    pub fn swapped_dbs(&self) {
        self.flush_cache();
        self.tracking.flush_all(self);
        let e = SWAP_EPOCH.fetch_add(1, Ordering::SeqCst) + 1;
        self.swaps_seen.set(e);
    }

    #[inline]
    pub fn check_swaps(&self) {
        if let Some(c) = &self.cluster {
            c.check_moves(self);
        }
        let e = SWAP_EPOCH.load(Ordering::Relaxed);
        if e != self.swaps_seen.get() {
            self.swaps_seen.set(e);
            self.flush_cache();
            self.tracking.flush_all(self);
        }
    }

    /// The shared connection to `db`, opened on first use.
    pub fn conn_for(self: &Rc<Self>, db: u32) -> Rc<Conn<Waiter>> {
        if db == self.cfg.redis.db {
            return self.shared.clone();
        }
        if let Some(c) = self.other_dbs.borrow().iter().find(|c| c.params.db == db) {
            return c.clone();
        }
        let tracking = self.shared.params.tracking;
        let label = format!("shard {} (db {db})", self.id);
        let conn = Rc::new(Conn::new(
            self.params(db, tracking, label),
            self.cfg.redis_ops_limit,
        ));
        conn.timed.set(true);
        self.other_dbs.borrow_mut().push(conn.clone());
        monoio::spawn(supervise(conn.clone(), self.clone()));
        conn
    }

    /// The scripts' connection without a reply for a while may sit behind a long script: ask
    /// Redis on the out-of-band connection. While it answers `-BUSY`, new scripts get that
    /// error at once (as from redis-server) and the backend timeout waits, since Redis is
    /// alive; if it answers nothing, the timeouts take their course.
    fn probe_if_stalled(self: &Rc<Self>, c: &Rc<Conn<Waiter>>, now: u32) {
        {
            let st = c.st.borrow();
            if st.status != Status::Up
                || st.waiters.is_empty()
                || st.probing
                || now.wrapping_sub(st.progress) < PROBE_AFTER_MS
                || st.blocking.is_some()
            {
                return;
            }
        }
        c.st.borrow_mut().probing = true;
        let oob = self.oob();
        oob.send_args([&b"PING"[..]].into_iter(), Waiter::Probe(c.clone()));
        oob.flush();
    }

    /// The out-of-band connection, opened on first use and kept.
    pub fn oob(self: &Rc<Self>) -> Rc<Conn<Waiter>> {
        self.extra_conn(&self.oob, "out-of-band")
    }

    /// Redis's `-BUSY` line while the scripts connection waits behind a long script.
    pub fn busy_script(&self) -> Option<String> {
        let scripts = self.scripts.borrow();
        let busy = scripts.as_ref()?.st.borrow().busy.clone();
        busy
    }

    /// A script may be running: this shard's wait for Redis's reply, or some shard's have
    /// waited a while.
    pub fn scripts_in_flight(&self) -> bool {
        SCRIPTS_STALLED.load(Ordering::Relaxed) > 0
            || self
                .scripts
                .borrow()
                .as_ref()
                .is_some_and(|c| c.in_flight() > 0)
    }

    /// The scripts' connection, opened on first use and kept.
    pub fn script_conn(self: &Rc<Self>) -> Rc<Conn<Waiter>> {
        self.extra_conn(&self.scripts, "scripts")
    }

    fn extra_conn(
        self: &Rc<Self>,
        slot: &RefCell<Option<Rc<Conn<Waiter>>>>,
        what: &str,
    ) -> Rc<Conn<Waiter>> {
        if let Some(c) = &*slot.borrow() {
            return c.clone();
        }
        let label = format!("shard {} {what}", self.id);
        let conn = Rc::new(Conn::new(
            self.params(self.cfg.redis.db, false, label),
            self.cfg.redis_ops_limit,
        ));
        *slot.borrow_mut() = Some(conn.clone());
        monoio::spawn(supervise(conn.clone(), self.clone()));
        conn
    }

    /// Lets the shared connections' writers send what clients queued.
    #[inline]
    pub fn flush_shared(&self) {
        self.shared.flush();
        if let Some(c) = &*self.scripts.borrow() {
            c.flush();
        }
        for c in self.other_dbs.borrow().iter() {
            c.flush();
        }
        self.bcast.flush();
        if let Some(c) = &self.cluster {
            c.flush();
        }
    }

    /// Redis's `databases` setting, once known.
    pub fn databases(&self) -> Option<u32> {
        self.shared.st.borrow().server.databases
    }

    /// Registers a new client connection; the guard gives its --max-clients slot back
    /// however the connection ends.
    pub fn client_connected(&self, c: &Rc<ClientShared>) -> ClientSlot<'_> {
        self.clients.borrow_mut().push(Rc::downgrade(c));
        self.by_id.borrow_mut().insert(c.id, Rc::downgrade(c));
        self.live.set(self.live.get() + 1);
        self.stats.connections.set(self.live.get() as u64);
        ClientSlot(self, c.id)
    }

    pub fn stopping(&self) -> bool {
        self.stop.get()
    }

    /// Resolves once shutdown has begun.
    pub async fn stopped(&self) {
        poll_fn(|cx| {
            if self.stop.get() {
                Poll::Ready(())
            } else {
                let mut wakers = self.stop_wakers.borrow_mut();
                if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }

    /// Stops accepting and stops every client's reading; replies owed are still written.
    fn begin_stop(&self) {
        self.stop.set(true);
        for w in self.stop_wakers.take() {
            w.wake();
        }
        for c in self.clients.borrow().iter().filter_map(Weak::upgrade) {
            c.stop_reading();
        }
    }

    fn close_idle_clients(&self, now: u32) {
        let timeout = self
            .live()
            .client_idle_timeout
            .as_millis()
            .min(u32::MAX as u128) as u32;
        if timeout == 0 {
            return;
        }
        for c in self.clients.borrow().iter().filter_map(Weak::upgrade) {
            if !c.is_dead() && !c.has_pending() && now.wrapping_sub(c.last_active.get()) > timeout {
                c.disconnect();
            }
        }
    }

    /// Closes the clients CLIENT KILL (on any shard) marked.
    fn close_killed_clients(&self) {
        for c in self.clients.borrow().iter().filter_map(Weak::upgrade) {
            if !c.is_dead() && c.info().kill.load(Ordering::Relaxed) {
                c.disconnect();
            }
        }
    }

    /// Every client connection has been served to its end.
    fn idle(&self) -> bool {
        self.live.get() == 0
    }

    fn tick(self: &Rc<Self>, n: u64) {
        self.refresh_live();
        let now = self.update_clock();
        let timeout = self.cfg.backend_timeout;
        check_timeout(&self.shared, &**self, now, timeout);
        for c in self.other_dbs.borrow().iter() {
            check_timeout(c, &**self, now, timeout);
        }
        if let Some(oob) = &*self.oob.borrow() {
            check_timeout(oob, &**self, now, timeout);
        }
        if let Some(sc) = self.scripts.borrow().clone() {
            check_timeout(&sc, &**self, now, timeout);
            self.probe_if_stalled(&sc, now);
            let stalled = {
                let st = sc.st.borrow();
                !st.waiters.is_empty()
                    && (st.busy.is_some() || now.wrapping_sub(st.progress) >= PROBE_AFTER_MS)
            };
            if stalled != self.script_stalled.replace(stalled) {
                if stalled {
                    SCRIPTS_STALLED.fetch_add(1, Ordering::Relaxed);
                } else {
                    SCRIPTS_STALLED.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        self.pool.each(|c| check_timeout(c, &**self, now, timeout));
        if let Some(c) = &self.cluster {
            c.tick(self, now);
        }
        // Warm connections only while Redis is there: no connect churn while it is down.
        if !self.stopping() && self.shared.status() == Status::Up {
            self.pool.top_up(self);
        }
        if n.is_multiple_of(20) {
            self.close_idle_clients(now);
        }
        self.close_killed_clients();
        crate::tracking::mail::take(self);
        let mut cache = self.cache.borrow_mut();
        let budget = 1024.max(cache.len() / 32);
        cache.sweep(now, budget);
        drop(cache);
        let mut clients = self.clients.borrow_mut();
        if clients.len() > 64 {
            clients.retain(|c| c.strong_count() > 0);
        }
        drop(clients);
        crate::observe::publish::publish(self);
    }

    /// Every long-lived backend connection: shared (per db), scripts, out-of-band.
    pub fn each_long_lived(&self, mut f: impl FnMut(&Conn<Waiter>)) {
        f(&self.shared);
        self.other_dbs.borrow().iter().for_each(|c| f(c));
        if let Some(cl) = &self.cluster {
            cl.node_conns().iter().for_each(|c| f(c));
        }
        for c in [&self.scripts, &self.oob] {
            if let Some(c) = &*c.borrow() {
                f(c);
            }
        }
    }
}

pub struct ClientSlot<'a>(&'a Shard, u64);

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        self.0.by_id.borrow_mut().remove(&self.1);
        self.0.live.set(self.0.live.get() - 1);
        self.0.stats.connections.set(self.0.live.get() as u64);
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What every shard is started with.
#[derive(Clone)]
pub struct Common {
    pub cfg: Arc<Config>,
    pub listen: SocketAddr,
    /// --http, with its port resolved.
    pub http: Option<SocketAddr>,
    pub redis_addr: SocketAddr,
    /// Set by the signal handler: begin shutdown.
    pub stop: Arc<AtomicBool>,
    pub connections: Arc<AtomicUsize>,
    /// Settings SIGHUP changes.
    pub board: Arc<Board>,
    /// Each shard reports here whether it bound its listener (and on which I/O driver).
    pub ready: std::sync::mpsc::Sender<Result<&'static str, String>>,
    /// Cluster mode: the first slot map and the seed nodes.
    pub cluster: Option<Arc<crate::cluster::detect::Start>>,
}

/// Starts shard `id` on its own thread, pinned to `core` when given.
pub fn spawn(
    id: usize,
    core: Option<core_affinity::CoreId>,
    common: Common,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let ready = common.ready.clone();
    std::thread::Builder::new()
        .name(format!("shard-{id}"))
        .spawn(move || {
            // Every event from this thread carries the shard's id.
            let _span = tracing::info_span!("shard", id).entered();
            if let Some(core) = core {
                if !core_affinity::set_for_current(core) {
                    tracing::warn!("shard {id}: could not pin to core {}", core.id);
                }
            }
            let fut = run(id, common);
            if let Err(e) = block_on(fut) {
                let _ = ready.send(Err(format!("shard {id}: cannot start a runtime: {e}")));
            }
        })
}

/// Runs `fut` on an io_uring runtime, or on epoll when io_uring is unavailable or refused
/// (old kernels, Docker's default seccomp profile) or `MONOIO_FORCE_LEGACY_DRIVER=1`.
fn block_on<F: std::future::Future<Output = ()>>(fut: F) -> std::io::Result<()> {
    if monoio::utils::detect_uring() {
        // COOP_TASKRUN: completions are reaped when the thread next enters the kernel instead
        // of interrupting it. Measured here (perf/): 1.7x the throughput of a default ring for
        // pipelined GETs and 1.5x at -P 1; without it io_uring lost to epoll. Kernels before
        // 5.19 refuse the flag: then a default ring, then epoll.
        let mut coop = io_uring::IoUring::builder();
        coop.setup_coop_taskrun();
        for urb in [coop, io_uring::IoUring::builder()] {
            match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .uring_builder(urb)
                .with_entries(4096)
                .enable_timer()
                .build()
            {
                Ok(mut rt) => {
                    DRIVER.with(|d| d.set("io_uring"));
                    rt.block_on(fut);
                    return Ok(());
                }
                Err(e) => tracing::warn!("io_uring setup refused ({e})"),
            }
        }
        tracing::warn!("io_uring unavailable; using epoll");
    }
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()?;
    DRIVER.with(|d| d.set("epoll"));
    rt.block_on(fut);
    Ok(())
}

thread_local! {
    static DRIVER: Cell<&'static str> = const { Cell::new("") };
}

async fn run(id: usize, common: Common) {
    let Common {
        cfg,
        listen,
        http,
        redis_addr,
        stop,
        connections,
        board,
        ready,
        cluster,
    } = common;
    let listener = match crate::listener::bind(listen) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(format!("shard {id}: cannot listen on {listen}: {e}")));
            return;
        }
    };
    let http = match http.map(crate::listener::bind).transpose() {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(format!("shard {id}: cannot listen for HTTP: {e}")));
            return;
        }
    };
    let shard = Rc::new(Shard::new(
        id,
        cfg,
        redis_addr,
        connections,
        board,
        cluster.as_deref(),
    ));
    if let Some(c) = &shard.cluster {
        c.bind(&shard);
    }
    let _ = ready.send(Ok(DRIVER.with(|d| d.get())));
    monoio::spawn(supervise(shard.shared.clone(), shard.clone()));
    crate::tracking::mail::install(&shard);
    {
        let shard = shard.clone();
        monoio::spawn(async move {
            for n in 1.. {
                monoio::time::sleep(TICK).await;
                shard.tick(n);
                if stop.load(Ordering::Relaxed) {
                    shard.begin_stop();
                    return;
                }
            }
        });
    }
    if let Some(l) = http {
        let refusal = crate::http::respond::REFUSAL;
        monoio::spawn(crate::listener::accept_loop(
            shard.clone(),
            l,
            refusal,
            crate::http::serve,
        ));
    }
    let refusal = crate::listener::RESP_REFUSAL;
    crate::listener::accept_loop(shard.clone(), listener, refusal, crate::client::serve).await;
    // Stopped accepting and reading; let every client get the replies it is owed and close,
    // then return, which drops every task. A client that reads nothing is cut at the deadline.
    let deadline = Instant::now() + GRACE;
    while !shard.idle() && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
}
