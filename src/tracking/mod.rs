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

/// Remembers the keys a tracking client's command reads (before it runs: a change Redis
/// reports between now and its reply invalidates what the client is about to cache).
pub fn remember(
    shard: &crate::shard::Shard,
    t: &Tracker,
    args: &crate::resp::request::Args,
    kind: crate::command::Kind,
) {
    use crate::command::Kind;
    if !t.remembers() {
        return;
    }
    match kind {
        Kind::Get => shard.tracking.remember(shard, t, args.get(1)),
        Kind::Mget => {
            for k in args.iter().skip(1) {
                shard.tracking.remember(shard, t, k);
            }
        }
        Kind::Read | Kind::Blocking => {
            if let Some(table) = shard.commands() {
                for i in keys::read_keys(&table, args) {
                    shard.tracking.remember(shard, t, args.get(i));
                }
            }
        }
        _ => {}
    }
}
