//! Every client connection of the process, for CLIENT LIST, CLIENT KILL and CLIENT UNBLOCK
//! across shards. Written when a client connects, leaves or changes what CLIENT LIST shows
//! (SETNAME, SELECT, HELLO), never per request, except `last_active`: a word only its own
//! shard writes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

static CLIENTS: LazyLock<Mutex<BTreeMap<u64, Arc<Info>>>> = LazyLock::new(Default::default);
/// The process's clock origin; shard clocks count from it too, so a shard's `now` can be
/// stored here as is.
pub static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

#[derive(Default, Clone)]
pub struct Details {
    pub name: Vec<u8>,
    pub db: u32,
    pub resp: u8,
    pub lib_name: Vec<u8>,
    pub lib_ver: Vec<u8>,
    /// Commands queued in a transaction, -1 outside one.
    pub multi: i64,
    pub no_evict: bool,
    pub no_touch: bool,
    /// Channel, pattern and shard channel subscriptions.
    pub sub: i64,
    pub psub: i64,
    pub ssub: i64,
    /// CLIENT TRACKING's redirect target (-1: none), and whether tracking is on.
    pub redir: i64,
    pub tracking: bool,
}

pub struct Info {
    pub id: u64,
    /// The shard serving the client.
    pub shard: usize,
    pub addr: String,
    pub laddr: String,
    created: Instant,
    /// Milliseconds since `EPOCH` (wrapping) at the client's last input.
    last_active: AtomicU32,
    /// Set by CLIENT KILL on any shard; the client's shard closes it on its next tick.
    pub kill: AtomicBool,
    /// Redis's id of the dedicated connection a blocking command of this client waits on,
    /// for CLIENT UNBLOCK (the connection fills it in once its handshake is done).
    pub blocked_on: Mutex<Option<Arc<AtomicI64>>>,
    pub details: Mutex<Details>,
}

impl Info {
    /// Redis's id of the connection this client is blocked on, if it is.
    pub fn blocked_id(&self) -> Option<i64> {
        let b = self.blocked_on.lock().unwrap_or_else(|e| e.into_inner());
        b.as_ref()
            .map(|id| id.load(Ordering::Relaxed))
            .filter(|&id| id != 0)
    }

    pub fn set_blocked(&self, on: Option<Arc<AtomicI64>>) {
        *self.blocked_on.lock().unwrap_or_else(|e| e.into_inner()) = on;
    }

    /// `now`: the shard's clock, already read for this batch of input.
    #[inline]
    pub fn touch(&self, now: u32) {
        self.last_active.store(now, Ordering::Relaxed);
    }

    pub fn details(&self) -> Details {
        self.details
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut Details)) {
        f(&mut self.details.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// CLIENT LIST's line for this client (redis-server 7.0's fields), without the newline.
    /// `cmd`: the command being run, for the caller's own line.
    pub fn line(&self, cmd: &str) -> String {
        let d = self.details();
        let now = EPOCH.elapsed().as_millis() as u32;
        let idle = now.wrapping_sub(self.last_active.load(Ordering::Relaxed)) / 1000;
        let mut flags = String::new();
        if d.multi >= 0 {
            flags.push('x');
        }
        if self.blocked_id().is_some() {
            flags.push('b');
        }
        if d.no_evict {
            flags.push('e');
        }
        if d.no_touch {
            flags.push('T');
        }
        if d.sub + d.psub + d.ssub > 0 {
            flags.push('P');
        }
        if d.tracking {
            flags.push('t');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        format!(
            "id={} addr={} laddr={} fd=-1 name={} age={} idle={idle} flags={flags} db={} sub={} \
             psub={} ssub={} multi={} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 \
             oll=0 omem=0 tot-mem=0 events=r cmd={cmd} user=default redir={} resp={}",
            self.id,
            self.addr,
            self.laddr,
            String::from_utf8_lossy(&d.name),
            self.created.elapsed().as_secs(),
            d.db,
            d.sub,
            d.psub,
            d.ssub,
            d.multi,
            if d.tracking { d.redir } else { -1 },
            d.resp,
        )
    }
}

/// Registers a connection; the returned guard removes it.
pub fn register(id: u64, shard: usize, addr: String, laddr: String, db: u32) -> Registered {
    let mut info = detached(id, addr, laddr, db);
    if let Some(i) = Arc::get_mut(&mut info) {
        i.shard = shard;
    }
    lock().insert(id, info.clone());
    Registered(info)
}

/// An entry nobody else sees (a client not yet, or never, registered).
pub fn detached(id: u64, addr: String, laddr: String, db: u32) -> Arc<Info> {
    Arc::new(Info {
        id,
        shard: 0,
        addr,
        laddr,
        created: Instant::now(),
        last_active: AtomicU32::new(EPOCH.elapsed().as_millis() as u32),
        kill: AtomicBool::new(false),
        blocked_on: Mutex::new(None),
        details: Mutex::new(Details {
            db,
            resp: 2,
            multi: -1,
            ..Default::default()
        }),
    })
}

fn lock() -> std::sync::MutexGuard<'static, BTreeMap<u64, Arc<Info>>> {
    CLIENTS.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Registered(pub Arc<Info>);

impl Drop for Registered {
    fn drop(&mut self) {
        lock().remove(&self.0.id);
    }
}

/// Every client, in id order (those already killed, but not yet gone, left out).
pub fn all() -> Vec<Arc<Info>> {
    lock()
        .values()
        .filter(|c| !c.kill.load(Ordering::Relaxed))
        .cloned()
        .collect()
}

pub fn get(id: u64) -> Option<Arc<Info>> {
    lock().get(&id).cloned()
}
