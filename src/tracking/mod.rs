//! Server-assisted client-side caching for the proxy's own clients: `CLIENT TRACKING`,
//! `CACHING`, `GETREDIR` and `TRACKINGINFO` answered by the proxy, as redis-server answers them.
//!
//! Each shard remembers which keys its tracking clients read ([`table`]), through the cache or
//! forwarded (read keys come from Redis's command table, [`keys`]), and sends a client an
//! invalidation when the shard learns a key changed: a write through the proxy on this shard,
//! or Redis's own invalidation push on the shard's tracking connection (a write on another
//! shard, or straight on Redis). Every key a tracking client read through its shard's shared
//! connection or cache is tracked by Redis for that connection, so no change is missed.
//! BCAST clients get Redis's broadcast invalidations through a connection of the shard in BCAST
//! mode ([`bcast`]).

pub mod bcast;
pub mod command;
pub mod keys;
pub mod mail;
pub mod table;

use crate::replies::ClientShared;
use crate::resp::encode::Proto;
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// One tracking client: its mode, as `CLIENT TRACKING ON ...` set it.
pub struct Tracker {
    pub client: Rc<ClientShared>,
    pub proto: Cell<Proto>,
    pub bcast: Cell<bool>,
    pub optin: Cell<bool>,
    pub optout: Cell<bool>,
    pub noloop: Cell<bool>,
    /// CLIENT CACHING YES/NO, for the next command only.
    pub caching: Cell<bool>,
    /// The redirect target left.
    pub broken: Cell<bool>,
    /// Client id invalidations go to; 0: this client.
    pub redirect: Cell<u64>,
    /// BCAST prefixes (the empty prefix: every key).
    pub prefixes: RefCell<Vec<Bytes>>,
}

impl Tracker {
    pub fn new(client: Rc<ClientShared>, proto: Proto) -> Self {
        Tracker {
            client,
            proto: Cell::new(proto),
            bcast: Cell::new(false),
            optin: Cell::new(false),
            optout: Cell::new(false),
            noloop: Cell::new(false),
            caching: Cell::new(false),
            broken: Cell::new(false),
            redirect: Cell::new(0),
            prefixes: RefCell::default(),
        }
    }

    pub fn id(&self) -> u64 {
        self.client.id
    }

    /// Whether the keys the current command reads are remembered (Redis's rule: not in BCAST
    /// mode; in OPTIN mode only after CACHING YES; in OPTOUT mode unless CACHING NO).
    pub fn remembers(&self) -> bool {
        if self.bcast.get() {
            return false;
        }
        let caching = self.caching.get();
        !((self.optin.get() && !caching) || (self.optout.get() && caching))
    }

    /// Whether a BCAST client wants to hear of `key`.
    pub fn matches(&self, key: &[u8]) -> bool {
        self.prefixes.borrow().iter().any(|p| key.starts_with(p))
    }
}

/// Remembers the keys a tracking client's command reads, with where the read stands in its
/// connection's order (a change Redis reports before the read's reply is one the read saw).
pub fn remember(
    shard: &Rc<crate::shard::Shard>,
    t: &Tracker,
    db: u32,
    shared: bool,
    args: &crate::resp::request::Args,
    kind: crate::command::Kind,
) {
    use crate::command::Kind;
    use table::Read;
    let script = crate::dispatch::is_script(args);
    if !t.remembers() || matches!(kind, Kind::Write(_)) && !script {
        return;
    }
    // Queued in a transaction on the shared connection: Redis runs it at EXEC, so its keys
    // are remembered there, at EXEC's place (see `multi::exec`).
    if let Some(queued) = QUEUE.with(|q| q.take()) {
        let mut queued = queued;
        queue_reads(shard, args, kind, script, &mut queued);
        QUEUE.with(|q| q.set(Some(queued)));
        return;
    }
    // Served from the cache: answered now, so any later invalidation concerns it.
    let cached = |keys: &mut dyn Iterator<Item = &[u8]>| {
        let now = shard.now();
        let cache = shard.cache.borrow();
        let Ok(db) = u8::try_from(db) else {
            return false;
        };
        for k in keys {
            if !cache.contains(db, k, now) {
                return false;
            }
        }
        true
    };
    // Forwarded now: its reply is the next one of its connection (sent later: a later one,
    // and the earlier place only makes Redis's invalidations count sooner). Joining a fetch:
    // the place of its GET.
    let forwarded = |joined: Option<u64>| {
        if !shared {
            // On a dedicated connection, or queued in a transaction: its place in the shared
            // connection's order says nothing, so every later invalidation counts.
            return Read::DONE;
        }
        let conn = shard.conn_for(db);
        Read {
            via: Rc::as_ptr(&conn) as usize,
            at: joined.unwrap_or_else(|| conn.order().1),
        }
    };
    let fetching = |key: &[u8]| {
        u8::try_from(db)
            .ok()
            .and_then(|db| shard.inflight.borrow().position(db, key))
    };
    match kind {
        Kind::Get => {
            let key = args.get(1);
            let read = if cached(&mut std::iter::once(key)) {
                Read::DONE
            } else {
                forwarded(fetching(key))
            };
            shard.tracking.remember(shard, t, key, read);
        }
        Kind::Mget => {
            let read = if cached(&mut args.iter().skip(1)) {
                Read::DONE
            } else {
                forwarded(None)
            };
            for k in args.iter().skip(1) {
                shard.tracking.remember(shard, t, k, read);
            }
        }
        // Redis tracks a script's declared keys only if the script ran a read command, which
        // the proxy cannot see: the keys are remembered as Redis's to confirm. A tracking
        // client's script runs on the shared connection, where Redis then tracks them, and only
        // Redis's invalidation (not the shard's own writes) reaches the client for them.
        _ if script => {
            if let Some(range) = crate::command::script_keys(args) {
                let read = forwarded(None);
                for i in range {
                    let key = args.get(i);
                    shard.tracking.remember_if_redis_tracks(shard, t, key, read);
                }
            }
        }
        Kind::Read | Kind::Blocking => {
            let read = forwarded(None);
            // Without Redis's command table (COMMAND refused to the proxy's user, or not
            // connected yet) every argument counts as a key: extra entries cost an
            // invalidation at most, a missing one leaves the client a stale value.
            let positions = match shard.commands() {
                Some(table) => keys::read_keys(&table, args),
                None => (1..args.len()).collect(),
            };
            for i in positions {
                shard.tracking.remember(shard, t, args.get(i), read);
            }
        }
        _ => {}
    }
}

thread_local! {
    /// Set while a command is queued in a transaction: where its read keys go.
    static QUEUE: std::cell::Cell<Option<Vec<(Bytes, bool)>>> = const { std::cell::Cell::new(None) };
}

/// The keys a queued command reads, and whether only Redis's invalidation counts for them.
fn queue_reads(
    shard: &Rc<crate::shard::Shard>,
    args: &crate::resp::request::Args,
    kind: crate::command::Kind,
    script: bool,
    out: &mut Vec<(Bytes, bool)>,
) {
    use crate::command::Kind;
    let key = |k: &[u8]| Bytes::copy_from_slice(k);
    match kind {
        Kind::Get => out.push((key(args.get(1)), false)),
        Kind::Mget => out.extend(args.iter().skip(1).map(|k| (key(k), false))),
        _ if script => {
            if let Some(range) = crate::command::script_keys(args) {
                out.extend(range.map(|i| (key(args.get(i)), true)));
            }
        }
        Kind::Read | Kind::Blocking => {
            let positions = match shard.commands() {
                Some(table) => keys::read_keys(&table, args),
                None => (1..args.len()).collect(),
            };
            out.extend(positions.into_iter().map(|i| (key(args.get(i)), false)));
        }
        _ => {}
    }
}

/// Remembers a command queued in a transaction (`f` runs `remember` for it) into `reads`.
pub fn queue(reads: &mut Vec<(Bytes, bool)>, f: impl FnOnce()) {
    QUEUE.with(|q| q.set(Some(std::mem::take(reads))));
    f();
    *reads = QUEUE.with(|q| q.take()).unwrap_or_default();
}

/// EXEC of a transaction queued on `conn` is sent: its reads are remembered at its place.
pub fn remember_exec(
    shard: &crate::shard::Shard,
    t: &Tracker,
    reads: Vec<(Bytes, bool)>,
    read: table::Read,
) {
    for (key, redis_only) in reads {
        if redis_only {
            shard
                .tracking
                .remember_if_redis_tracks(shard, t, &key, read);
        } else {
            shard.tracking.remember(shard, t, &key, read);
        }
    }
}
