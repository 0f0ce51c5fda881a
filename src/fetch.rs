//! Cache fills in flight: single flight per key, and the guard that keeps a fetch from filling
//! the cache with a value a later write (or invalidation) has made stale.
//!
//! A miss sends `GET key` and `PTTL key` back to back. The GET reply goes to every client waiting
//! for the key; the PTTL reply decides how long the value may be cached (never past the key's own
//! TTL in Redis). A write to the key, an invalidation push for it, or a flush sets `poisoned`
//! and unlinks the fetch, so the value is delivered to its waiters but never cached, and later
//! readers start a fresh fetch.

use crate::replies::ClientShared;
use crate::resp::encode::Proto;
use bytes::Bytes;
use hashbrown::HashMap;
use std::cell::RefCell;
use std::rc::Rc;

pub struct Fetch {
    pub db: u8,
    pub key: Bytes,
    /// Clients waiting for the GET reply: (client, reply sequence number, its protocol).
    pub waiters: Vec<(Rc<ClientShared>, u64, Proto)>,
    /// The GET reply in RESP2 form, once it has arrived (cacheable replies only).
    pub value: Option<Bytes>,
    pub poisoned: bool,
    /// The GET reply has arrived and gone to the waiters: nobody may join any more.
    pub replied: bool,
    /// Shard clock when the GET was queued: the cached lifetime counts from here.
    pub sent_at: u32,
    /// The GET's place in its connection's order (see `tracking`).
    pub at: u64,
}

pub type FetchRef = Rc<RefCell<Fetch>>;

#[derive(Default)]
pub struct Inflight {
    map: HashMap<(u8, Bytes), FetchRef, foldhash::fast::RandomState>,
    /// Dbs with fetches since the map was last empty (bit per db).
    used: [u64; 4],
}

/// Looks up a `(db, key)` entry without building its `Bytes`; hashes as the tuple does.
#[derive(Hash)]
struct Lookup<'a>(u8, &'a [u8]);

impl hashbrown::Equivalent<(u8, Bytes)> for Lookup<'_> {
    fn equivalent(&self, k: &(u8, Bytes)) -> bool {
        self.0 == k.0 && self.1 == &k.1[..]
    }
}

pub enum Join {
    /// A fetch is under way: the caller was added to its waiters.
    Joined,
    /// The value just arrived (its TTL has not yet): answer with it now.
    Value(Bytes),
    /// No usable fetch: the caller must start one.
    Start,
}

impl Inflight {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The place of the GET of the fetch of `key` in `db` under way, if one is.
    pub fn position(&self, db: u8, key: &[u8]) -> Option<u64> {
        // As `join` decides: a reply gone out without a value to reuse means a fresh fetch.
        self.map
            .get(&Lookup(db, key))
            .map(|f| f.borrow())
            .filter(|f| !f.replied || f.value.is_some())
            .map(|f| f.at)
    }

    /// Joins the fetch of `key` in `db` if one is under way.
    pub fn join(
        &mut self,
        db: u8,
        key: &[u8],
        client: &Rc<ClientShared>,
        proto: Proto,
        seq: impl FnOnce() -> u64,
    ) -> Join {
        let Some(f) = self.map.get(&Lookup(db, key)) else {
            return Join::Start;
        };
        let mut f = f.borrow_mut();
        if f.replied {
            // The reply went out already; only a cacheable one may be reused.
            return match &f.value {
                Some(v) => Join::Value(v.clone()),
                None => Join::Start,
            };
        }
        f.waiters.push((client.clone(), seq(), proto));
        Join::Joined
    }

    pub fn start(
        &mut self,
        db: u8,
        key: &[u8],
        waiter: (Rc<ClientShared>, u64, Proto),
        now: u32,
    ) -> FetchRef {
        let key = Bytes::copy_from_slice(key);
        self.used[db as usize / 64] |= 1 << (db % 64);
        let f = Rc::new(RefCell::new(Fetch {
            db,
            key: key.clone(),
            waiters: vec![waiter],
            value: None,
            poisoned: false,
            replied: false,
            sent_at: now,
            at: 0,
        }));
        if let Some(old) = self.map.insert((db, key), f.clone()) {
            old.borrow_mut().poisoned = true;
        }
        f
    }

    /// A write or an invalidation touched `key`: its fetches in flight (in any db, as for the
    /// cache) must not fill the cache.
    pub fn poison(&mut self, key: &[u8]) {
        if self.map.is_empty() {
            self.used = [0; 4];
            return;
        }
        for (word, bits) in self.used.into_iter().enumerate() {
            let mut bits = bits;
            while bits != 0 {
                let db = (word * 64 + bits.trailing_zeros() as usize) as u8;
                bits &= bits - 1;
                if let Some(f) = self.map.remove(&Lookup(db, key)) {
                    f.borrow_mut().poisoned = true;
                }
            }
        }
    }

    pub fn poison_all(&mut self) {
        for (_, f) in self.map.drain() {
            f.borrow_mut().poisoned = true;
        }
    }

    /// The fetch is over (filled, refused or failed): unlink it if it is still the current one.
    pub fn finish(&mut self, f: &FetchRef) {
        let (db, key) = {
            let f = f.borrow();
            (f.db, f.key.clone())
        };
        let at = Lookup(db, &key);
        if self.map.get(&at).is_some_and(|cur| Rc::ptr_eq(cur, f)) {
            self.map.remove(&at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found in review: a reader joining after an uncacheable reply (an error, a nil in
    /// TTL-only mode) went out was never answered.
    #[test]
    fn no_join_after_the_reply() {
        let mut inf = Inflight::default();
        let c = Rc::new(ClientShared::default());
        let f = inf.start(0, b"k", (c.clone(), 0, Proto::Resp2), 0);
        f.borrow_mut().replied = true;
        assert!(matches!(
            inf.join(0, b"k", &c, Proto::Resp2, || 1),
            Join::Start
        ));
        f.borrow_mut().value = Some(Bytes::from_static(b"$1\r\nv\r\n"));
        assert!(matches!(
            inf.join(0, b"k", &c, Proto::Resp2, || 1),
            Join::Value(_)
        ));
    }

    #[test]
    fn single_flight_and_poisoning() {
        let mut inf = Inflight::default();
        let c = Rc::new(ClientShared::default());
        assert!(matches!(
            inf.join(0, b"k", &c, Proto::Resp2, || 1),
            Join::Start
        ));
        let f = inf.start(0, b"k", (c.clone(), 0, Proto::Resp2), 0);
        assert!(matches!(
            inf.join(0, b"k", &c, Proto::Resp2, || 1),
            Join::Joined
        ));
        assert_eq!(f.borrow().waiters.len(), 2);
        inf.poison(b"k");
        assert!(f.borrow().poisoned);
        // A reader after the write starts a fresh fetch rather than joining the stale one.
        assert!(matches!(
            inf.join(0, b"k", &c, Proto::Resp2, || 2),
            Join::Start
        ));
        let g = inf.start(0, b"k", (c.clone(), 2, Proto::Resp2), 0);
        inf.finish(&f);
        assert_eq!(inf.len(), 1, "finishing the old fetch leaves the new one");
        inf.finish(&g);
        assert!(inf.is_empty());
    }
}
