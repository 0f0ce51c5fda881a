//! A shard's tracking table: which of its tracking clients read which key, and the sending of
//! invalidations, to the client itself (a RESP3 push) or to the client it redirects to (a push,
//! or a `__redis__:invalidate` message to a RESP2 subscriber), on this shard or another.

use super::Tracker;
use crate::replies::ClientShared;
use crate::resp::encode::Proto;
use crate::resp::write::{put_bulk, put_header};
use crate::shard::Shard;
use bytes::{Bytes, BytesMut};
use hashbrown::HashMap;
use std::cell::RefCell;
use std::rc::Rc;

/// The writer of an invalidation Redis reported (not a write through this shard).
pub const REDIS: u64 = u64::MAX;

/// Where a read stands: its reply is the `at`-th (or a later one) of the connection at
/// address `via`; `via` 0: already answered (a cache hit).
#[derive(Clone, Copy)]
pub struct Read {
    pub via: usize,
    pub at: u64,
}

impl Read {
    pub const DONE: Read = Read { via: 0, at: 0 };
}

#[derive(Clone, Copy)]
struct Reader {
    id: u64,
    /// Only Redis's invalidation counts (see `remember_if_redis_tracks`).
    redis_only: bool,
    /// The client's first read of the key not yet invalidated, and its latest.
    first: Read,
    latest: Read,
}

impl Read {
    /// Whether Redis ran this read before it pushed, on `via` after `replies` replies, an
    /// invalidation: a push that comes before the read's reply is about a write it saw.
    fn before(&self, via: usize, replies: u64) -> bool {
        self.via != via || replies > self.at
    }
}

#[derive(Default)]
pub struct Table {
    /// Key -> the clients that read it since its last invalidation.
    keys: RefCell<HashMap<Bytes, Vec<Reader>>>,
    /// Tracking clients of this shard, by id.
    trackers: RefCell<HashMap<u64, Rc<Tracker>>>,
    /// Invalidations for the client whose write caused them: sent once the write's reply has
    /// its place, as redis-server sends them after the reply.
    own: RefCell<Vec<(Rc<Tracker>, Bytes)>>,
    /// Most keys remembered; past it, a key is forgotten and its readers invalidated.
    max_keys: usize,
}

impl Table {
    pub fn new(max_keys: usize) -> Self {
        Table {
            max_keys: max_keys.max(1),
            ..Default::default()
        }
    }

    pub fn add(&self, t: &Rc<Tracker>) {
        self.trackers.borrow_mut().insert(t.id(), t.clone());
    }

    /// The client stopped tracking (OFF, RESET, left). Its ids stay in the key lists until
    /// those keys are invalidated; they are skipped then.
    pub fn remove(&self, id: u64) {
        self.trackers.borrow_mut().remove(&id);
    }

    pub fn is_empty(&self) -> bool {
        self.trackers.borrow().is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.borrow().len()
    }

    /// `t` read `key`.
    pub fn remember(&self, shard: &Shard, t: &Tracker, key: &[u8], read: Read) {
        self.insert(shard, t, key, false, read);
    }

    /// `t` may have read `key` (a script's declared key): Redis knows whether it did, and its
    /// invalidation is the one that counts.
    pub fn remember_if_redis_tracks(&self, shard: &Shard, t: &Tracker, key: &[u8], read: Read) {
        self.insert(shard, t, key, true, read);
    }

    fn insert(&self, shard: &Shard, t: &Tracker, key: &[u8], redis_only: bool, read: Read) {
        let me = Reader {
            id: t.id(),
            redis_only,
            first: read,
            latest: read,
        };
        let mut keys = self.keys.borrow_mut();
        if let Some(readers) = keys.get_mut(key) {
            // Clients that stopped tracking (or left) are dropped here, as this list is read
            // anyway: a hot key never written does not grow with every client that read it.
            let live = self.trackers.borrow();
            readers.retain(|r| live.contains_key(&r.id));
            drop(live);
            match readers.iter_mut().find(|r| r.id == t.id()) {
                Some(r) => {
                    r.redis_only &= redis_only;
                    // `first` must stay the read Redis ran earliest: a cache hit (or a read on
                    // another connection) counts as before any push, and a joined fetch can
                    // sit earlier in the order than a read the client sent before it.
                    if read.via != r.first.via {
                        r.first = Read::DONE;
                    } else if read.at < r.first.at {
                        r.first = read;
                    }
                    if read.via != r.latest.via || read.at > r.latest.at {
                        r.latest = read;
                    }
                }
                None => readers.push(me),
            }
            return;
        }
        let evicted = if keys.len() >= self.max_keys {
            let victim = keys.keys().next().cloned();
            victim.and_then(|k| keys.remove_entry(&k))
        } else {
            None
        };
        keys.insert(Bytes::copy_from_slice(key), vec![me]);
        drop(keys);
        // Forgetting a key must not leave a client holding it unwarned.
        if let Some((key, readers)) = evicted {
            let ids = readers.into_iter().map(|r| r.id).collect();
            self.notify(shard, &key, ids, REDIS);
        }
    }

    /// `key` changed: a write by client `writer` through this shard (0: a client that does not
    /// track), or `REDIS`: Redis's invalidation.
    pub fn invalidate(&self, shard: &Shard, key: &[u8], writer: u64) {
        // A NOLOOP BCAST client's writes go through the BCAST connection, which Redis then
        // leaves out of their broadcast: the shard's other BCAST clients hear of them here.
        if writer != REDIS {
            let noloop_bcast = self
                .trackers
                .borrow()
                .get(&writer)
                .is_some_and(|t| t.bcast.get() && t.noloop.get());
            if noloop_bcast {
                let key = Bytes::copy_from_slice(key);
                for t in self.trackers(true) {
                    if t.id() != writer && t.matches(&key) {
                        send(shard, &t, Some(std::slice::from_ref(&key)));
                    }
                }
            }
        }
        let Some((key, readers)) = self.keys.borrow_mut().remove_entry(key) else {
            return;
        };
        // A write through this shard reaches Redis after every read already sent: all their
        // readers are told, but for reads only Redis can confirm. Redis's invalidation is
        // about the reads it ran before the write, not those whose reply is still to come.
        // A client whose first read Redis ran before the write is told; if its latest read
        // runs after it, that read stays remembered.
        let (via, replies) = (shard.push_via.get(), shard.push_replies.get());
        let mut ids = Vec::new();
        let mut kept = Vec::new();
        for mut r in readers {
            if writer != REDIS {
                if r.redis_only {
                    kept.push(r);
                } else {
                    ids.push(r.id);
                }
                continue;
            }
            if !r.first.before(via, replies) {
                kept.push(r);
                continue;
            }
            ids.push(r.id);
            if !r.latest.before(via, replies) {
                r.first = r.latest;
                kept.push(r);
            }
        }
        if !kept.is_empty() {
            self.keys.borrow_mut().insert(key.clone(), kept);
        }
        self.notify(shard, &key, ids, writer);
    }

    fn notify(&self, shard: &Shard, key: &Bytes, ids: Vec<u64>, writer: u64) {
        for id in ids {
            let Some(t) = self.trackers.borrow().get(&id).cloned() else {
                continue;
            };
            if t.bcast.get() {
                continue;
            }
            if id == writer {
                if !t.noloop.get() {
                    self.own.borrow_mut().push((t, key.clone()));
                }
                continue;
            }
            send(shard, &t, Some(std::slice::from_ref(key)));
        }
    }

    /// Sends the writer's own invalidations, now that its reply has its place.
    pub fn flush_own(&self, shard: &Shard) {
        if self.own.borrow().is_empty() {
            return;
        }
        let own = std::mem::take(&mut *self.own.borrow_mut());
        for (t, key) in own {
            send(shard, &t, Some(std::slice::from_ref(&key)));
        }
    }

    /// Everything may have changed (FLUSHALL, FLUSHDB, SWAPDB, a lost tracking connection):
    /// every tracking client is told to drop everything.
    pub fn flush_all(&self, shard: &Shard) {
        self.keys.borrow_mut().clear();
        for t in self.trackers(false) {
            send(shard, &t, None);
        }
    }

    /// The tracking clients of the shard (BCAST ones only, or all), taken out of the table's
    /// borrow so that sending may touch it.
    fn trackers(&self, bcast_only: bool) -> Vec<Rc<Tracker>> {
        self.trackers
            .borrow()
            .values()
            .filter(|t| !bcast_only || t.bcast.get())
            .cloned()
            .collect()
    }

    /// The BCAST connection was lost and is back: BCAST clients drop everything.
    pub fn flush_bcast(&self, shard: &Shard) {
        for t in self.trackers(true) {
            send(shard, &t, None);
        }
    }

    /// Keys Redis broadcast (BCAST): each BCAST client hears of those matching its prefixes.
    pub fn broadcast(&self, shard: &Shard, keys: &[Bytes]) {
        // One message per prefix of the client, in prefix order, as redis-server sends them.
        for t in self.trackers(true) {
            let mut prefixes = t.prefixes.borrow().clone();
            prefixes.sort();
            for p in &prefixes {
                let mine: Vec<Bytes> = keys.iter().filter(|k| k.starts_with(p)).cloned().collect();
                if !mine.is_empty() {
                    send(shard, &t, Some(&mine));
                }
            }
        }
    }
}

/// Sends `t` an invalidation of `keys` (`None`: of everything), where redis-server would.
fn send(shard: &Shard, t: &Tracker, keys: Option<&[Bytes]>) {
    let target = t.redirect.get();
    if target == 0 {
        if t.proto.get() == Proto::Resp3 {
            let msg = message(keys, true, Proto::Resp3);
            t.client
                .push_ahead(shard.push_via.get(), |o| o.extend_from_slice(&msg));
            t.client.wake_writer();
        }
        return; // RESP2 without redirect: nothing can carry it, as with Redis
    }
    // Redis writes the null in the tracking client's own protocol, whoever receives it.
    let null3 = t.proto.get() == Proto::Resp3;
    if let Some(r) = shard.client_by_id(target) {
        deliver_to(&r, keys, null3, shard.push_via.get());
        return;
    }
    match crate::registry::get(target) {
        Some(info) => super::mail::post(info.shard, target, keys.map(|k| k.to_vec()), null3),
        None => {
            t.broken.set(true);
            if t.proto.get() == Proto::Resp3 {
                t.client.push_always(|o| {
                    put_header(o, b'>', 2);
                    put_bulk(o, b"tracking-redir-broken");
                    put_header(o, b':', target as i64);
                });
                t.client.wake_writer();
            }
        }
    }
}

/// An invalidation as redirect target `r` receives it: a push in RESP3, a message on
/// `__redis__:invalidate` to a RESP2 client with subscriptions, nothing otherwise.
pub(super) fn deliver_to(r: &ClientShared, keys: Option<&[Bytes]>, null3: bool, via: usize) {
    let proto = if r.resp3.get() {
        Proto::Resp3
    } else if r.pubsub.get() {
        Proto::Resp2
    } else {
        return;
    };
    let msg = message(keys, null3, proto);
    r.push_ahead(via, |o| o.extend_from_slice(&msg));
    r.wake_writer();
}

fn message(keys: Option<&[Bytes]>, null3: bool, proto: Proto) -> BytesMut {
    let mut o = BytesMut::new();
    if proto == Proto::Resp3 {
        put_header(&mut o, b'>', 2);
        put_bulk(&mut o, b"invalidate");
    } else {
        put_header(&mut o, b'*', 3);
        put_bulk(&mut o, b"message");
        put_bulk(&mut o, b"__redis__:invalidate");
    }
    match keys {
        Some(keys) => {
            put_header(&mut o, b'*', keys.len() as i64);
            for k in keys {
                put_bulk(&mut o, k);
            }
        }
        None if null3 => o.extend_from_slice(b"_\r\n"),
        None => o.extend_from_slice(b"$-1\r\n"),
    }
    o
}
