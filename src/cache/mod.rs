//! One shard's cache: an LRU of ready-to-send GET replies with a deadline each.
//!
//! Layout, chosen for memory (about 105 bytes per 16-byte key / 32-byte value entry, see
//! `benches/memory.rs`): entries live in a slab (`Vec<Entry>`, 32 bytes each) linked into an LRU
//! list by `u32` indices; a `hashbrown::HashTable<u32>` indexes them by key. Each entry owns one
//! allocation holding the key followed by the reply bytes exactly as a client receives them, so a
//! hit is one hash lookup and one copy into the client's output buffer.
//!
//! Time is passed in (`now`, milliseconds on the shard's clock) so tests control it.

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;

const NIL: u32 = u32::MAX;
/// `prev` value marking a slab slot as free (its `next` links the free list).
const FREE: u32 = u32::MAX - 1;

/// Has the wrapping millisecond clock reached `deadline`? Correct while lifetimes stay under
/// 2^31 ms (24.8 days; `--expire` is capped below that).
#[inline]
pub fn reached(now: u32, deadline: u32) -> bool {
    now.wrapping_sub(deadline) as i32 >= 0
}

/// Keys longer than this are not cached (the length shares a word with the db number).
const MAX_KEY: usize = (1 << 24) - 1;

struct Entry {
    data: Box<[u8]>,
    /// Key length (low 24 bits) and db number (high 8 bits).
    meta: u32,
    /// Deadline in shard milliseconds; the entry is dead once `now >= expires`.
    expires: u32,
    prev: u32,
    next: u32,
}

impl Entry {
    #[inline]
    fn key_len(&self) -> usize {
        (self.meta & MAX_KEY as u32) as usize
    }
    #[inline]
    fn db(&self) -> u8 {
        (self.meta >> 24) as u8
    }
    #[inline]
    fn key(&self) -> &[u8] {
        &self.data[..self.key_len()]
    }
    #[inline]
    fn reply(&self) -> &[u8] {
        &self.data[self.key_len()..]
    }
}

pub struct Cache {
    index: HashTable<u32>,
    hasher: RandomState,
    entries: Vec<Entry>,
    free: u32,
    /// Most recently used.
    head: u32,
    /// Least recently used: evicted first.
    tail: u32,
    len: usize,
    capacity: usize,
    sweep_at: usize,
    /// Dbs that have held entries since the last `clear` (bit per db).
    used: [u64; 4],
    /// For metrics: bytes of keys and replies held; entries dropped by LRU and by deadline
    /// (these two survive `clear`).
    bytes: usize,
    evictions: u64,
    expirations: u64,
}

/// What the cache counts for metrics.
pub struct Counts {
    pub bytes: usize,
    pub evictions: u64,
    pub expirations: u64,
}

impl Cache {
    /// A cache holding at most `capacity` keys (0: holds nothing).
    pub fn new(capacity: usize) -> Self {
        Cache {
            index: HashTable::new(),
            hasher: RandomState::default(),
            entries: Vec::new(),
            free: NIL,
            head: NIL,
            tail: NIL,
            len: 0,
            capacity: capacity.min(FREE as usize - 1),
            sweep_at: 0,
            used: [0; 4],
            bytes: 0,
            evictions: 0,
            expirations: 0,
        }
    }

    pub fn counts(&self) -> Counts {
        Counts {
            bytes: self.bytes,
            evictions: self.evictions,
            expirations: self.expirations,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The db number mixed into the key's hash (db 0 hashes as the key alone).
    #[inline]
    fn hash(hasher: &RandomState, db: u8, key: &[u8]) -> u64 {
        hasher.hash_one(key) ^ (db as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn find(&self, db: u8, key: &[u8]) -> Option<u32> {
        let hash = Self::hash(&self.hasher, db, key);
        let entries = &self.entries;
        self.index
            .find(hash, |&i| {
                let e = &entries[i as usize];
                e.db() == db && e.key() == key
            })
            .copied()
    }

    /// [`get_in`](Self::get_in) db 0.
    #[inline]
    pub fn get(&mut self, key: &[u8], now: u32) -> Option<&[u8]> {
        self.get_in(0, key, now)
    }

    /// The cached reply for `key` in `db`, marking it most recently used. Expired entries are
    /// removed.
    #[inline]
    pub fn get_in(&mut self, db: u8, key: &[u8], now: u32) -> Option<&[u8]> {
        let i = self.find(db, key)?;
        if reached(now, self.entries[i as usize].expires) {
            self.remove_at(i);
            self.expirations += 1;
            return None;
        }
        self.unlink(i);
        self.push_front(i);
        Some(self.entries[i as usize].reply())
    }

    /// Whether `key` has a live entry in `db` (without touching its recency).
    #[inline]
    pub fn contains(&self, db: u8, key: &[u8], now: u32) -> bool {
        self.find(db, key)
            .is_some_and(|i| !reached(now, self.entries[i as usize].expires))
    }

    /// [`insert_in`](Self::insert_in) db 0.
    pub fn insert(&mut self, key: &[u8], reply: &[u8], expires: u32) {
        self.insert_in(0, key, reply, expires)
    }

    /// Stores `reply` for `key` in `db` until `expires`, evicting the least recently used key
    /// if full.
    pub fn insert_in(&mut self, db: u8, key: &[u8], reply: &[u8], expires: u32) {
        if self.capacity == 0 || key.len() > MAX_KEY || key.len() + reply.len() > u32::MAX as usize
        {
            return;
        }
        let mut data = Vec::with_capacity(key.len() + reply.len());
        data.extend_from_slice(key);
        data.extend_from_slice(reply);
        let data = data.into_boxed_slice();
        if let Some(i) = self.find(db, key) {
            let e = &mut self.entries[i as usize];
            self.bytes = self.bytes - e.data.len() + data.len();
            e.data = data;
            e.expires = expires;
            self.unlink(i);
            self.push_front(i);
            return;
        }
        if self.len >= self.capacity {
            self.remove_at(self.tail);
            self.evictions += 1;
        }
        self.bytes += data.len();
        self.used[db as usize / 64] |= 1 << (db % 64);
        let entry = Entry {
            data,
            meta: key.len() as u32 | (db as u32) << 24,
            expires,
            prev: NIL,
            next: NIL,
        };
        let i = if self.free != NIL {
            let i = self.free;
            self.free = self.entries[i as usize].next;
            self.entries[i as usize] = entry;
            i
        } else {
            self.entries.push(entry);
            (self.entries.len() - 1) as u32
        };
        let hash = Self::hash(&self.hasher, db, key);
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index.insert_unique(hash, i, |&j| {
            let e = &entries[j as usize];
            Self::hash(hasher, e.db(), e.key())
        });
        self.push_front(i);
        self.len += 1;
    }

    /// Drops `key` from every db; true if it was cached. A write through the proxy may touch
    /// the same name in another db (MOVE, COPY .. DB), and Redis's invalidations carry no db.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        let mut removed = false;
        for (word, bits) in self.used.into_iter().enumerate() {
            let mut bits = bits;
            while bits != 0 {
                let db = (word * 64 + bits.trailing_zeros() as usize) as u8;
                bits &= bits - 1;
                if let Some(i) = self.find(db, key) {
                    self.remove_at(i);
                    removed = true;
                }
            }
        }
        removed
    }

    /// Drops every entry of `db` (FLUSHDB, SWAPDB).
    pub fn clear_db(&mut self, db: u8) {
        for i in 0..self.entries.len() {
            let e = &self.entries[i];
            if e.prev != FREE && e.db() == db {
                self.remove_at(i as u32);
            }
        }
    }

    /// Drops every entry whose key `doomed` picks (the slots a cluster node lost); returns how
    /// many went.
    pub fn remove_where(&mut self, mut doomed: impl FnMut(&[u8]) -> bool) -> usize {
        let mut n = 0;
        for i in 0..self.entries.len() {
            let e = &self.entries[i];
            if e.prev != FREE && doomed(e.key()) {
                self.remove_at(i as u32);
                n += 1;
            }
        }
        n
    }

    /// Drops everything and gives the memory back.
    pub fn clear(&mut self) {
        let (evictions, expirations) = (self.evictions, self.expirations);
        *self = Cache::new(self.capacity);
        self.evictions = evictions;
        self.expirations = expirations;
    }

    /// Removes expired entries among the next `budget` slab slots; returns how many it removed.
    /// Called on a timer so memory comes back even for keys never read again.
    pub fn sweep(&mut self, now: u32, budget: usize) -> usize {
        let mut removed = 0;
        let n = self.entries.len();
        if n == 0 {
            return 0;
        }
        for _ in 0..budget.min(n) {
            if self.sweep_at >= n {
                self.sweep_at = 0;
            }
            let i = self.sweep_at;
            self.sweep_at += 1;
            let e = &self.entries[i];
            if e.prev != FREE && reached(now, e.expires) {
                self.remove_at(i as u32);
                removed += 1;
            }
        }
        self.expirations += removed as u64;
        removed
    }

    fn remove_at(&mut self, i: u32) {
        let e = &self.entries[i as usize];
        let hash = Self::hash(&self.hasher, e.db(), e.key());
        if let Ok(slot) = self.index.find_entry(hash, |&j| j == i) {
            slot.remove();
        }
        self.unlink(i);
        let e = &mut self.entries[i as usize];
        self.bytes -= e.data.len();
        e.data = Box::default();
        e.prev = FREE;
        e.next = self.free;
        self.free = i;
        self.len -= 1;
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let e = &self.entries[i as usize];
            (e.prev, e.next)
        };
        if prev != NIL {
            self.entries[prev as usize].next = next;
        } else {
            self.head = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        } else {
            self.tail = prev;
        }
        let e = &mut self.entries[i as usize];
        e.prev = NIL;
        e.next = NIL;
    }

    fn push_front(&mut self, i: u32) {
        let old = self.head;
        {
            let e = &mut self.entries[i as usize];
            e.prev = NIL;
            e.next = old;
        }
        if old != NIL {
            self.entries[old as usize].prev = i;
        } else {
            self.tail = i;
        }
        self.head = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAR: u32 = 1_000_000;

    #[test]
    fn counts_bytes_evictions_and_expirations() {
        let mut c = Cache::new(2);
        c.insert(b"a", b"12", 10);
        c.insert(b"b", b"123", FAR);
        c.insert(b"b", b"1", FAR);
        assert_eq!(c.counts().bytes, 3 + 2);
        c.insert(b"c", b"1", FAR); // evicts a
        assert_eq!(c.get(b"c", 20), Some(&b"1"[..]));
        c.insert(b"d", b"1", 5); // evicts b
        assert_eq!(c.get(b"d", 20), None); // expired
        let n = c.counts();
        assert_eq!((n.bytes, n.evictions, n.expirations), (2, 2, 1));
        c.clear();
        let n = c.counts();
        assert_eq!((n.bytes, n.evictions, n.expirations), (0, 2, 1));
    }

    #[test]
    fn dbs_are_separate_and_removal_reaches_all() {
        let mut c = Cache::new(10);
        c.insert_in(0, b"k", b"zero", FAR);
        c.insert_in(3, b"k", b"three", FAR);
        c.insert_in(200, b"j", b"j", FAR);
        assert_eq!(c.get_in(3, b"k", 0), Some(&b"three"[..]));
        assert_eq!(c.get_in(0, b"k", 0), Some(&b"zero"[..]));
        assert_eq!(c.get_in(1, b"k", 0), None);
        c.clear_db(0);
        assert_eq!(c.get_in(0, b"k", 0), None);
        assert!(c.contains(3, b"k", 0));
        c.insert_in(0, b"k", b"zero", FAR);
        assert!(c.remove(b"k"));
        assert!(!c.contains(0, b"k", 0) && !c.contains(3, b"k", 0));
        assert!(c.contains(200, b"j", 0));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn get_returns_what_was_inserted() {
        let mut c = Cache::new(10);
        c.insert(b"k", b"$1\r\nv\r\n", FAR);
        assert_eq!(c.get(b"k", 0), Some(&b"$1\r\nv\r\n"[..]));
        assert_eq!(c.get(b"x", 0), None);
        c.insert(b"k", b"$2\r\nvv\r\n", FAR);
        assert_eq!(c.get(b"k", 0), Some(&b"$2\r\nvv\r\n"[..]));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn evicts_least_recently_used() {
        let mut c = Cache::new(2);
        c.insert(b"a", b"1", FAR);
        c.insert(b"b", b"2", FAR);
        assert!(c.get(b"a", 0).is_some());
        c.insert(b"c", b"3", FAR);
        assert!(c.get(b"b", 0).is_none(), "b was least recently used");
        assert!(c.get(b"a", 0).is_some());
        assert!(c.get(b"c", 0).is_some());
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn expired_entries_act_as_absent() {
        let mut c = Cache::new(10);
        c.insert(b"k", b"v", 100);
        assert!(c.get(b"k", 99).is_some());
        assert!(c.get(b"k", 100).is_none());
        assert!(c.is_empty());
    }

    /// Found in review: the clock used to stop at u32::MAX (49.7 days), expiring everything.
    #[test]
    fn deadlines_survive_clock_wrap() {
        let mut c = Cache::new(10);
        let now = u32::MAX - 100;
        c.insert(b"k", b"v", now.wrapping_add(1000));
        assert!(c.get(b"k", now).is_some());
        assert!(c.get(b"k", now.wrapping_add(999)).is_some());
        assert!(c.get(b"k", now.wrapping_add(1000)).is_none());
    }

    #[test]
    fn sweep_frees_expired_entries_with_bounded_work() {
        let mut c = Cache::new(1000);
        for i in 0..1000u32 {
            c.insert(&i.to_be_bytes(), b"v", if i % 2 == 0 { 10 } else { FAR });
        }
        assert_eq!(c.sweep(20, 100), 50);
        let mut total = 50;
        for _ in 0..20 {
            total += c.sweep(20, 100);
        }
        assert_eq!(total, 500);
        assert_eq!(c.len(), 500);
        // Freed slots are reused before the slab grows.
        let slab = c.entries.len();
        for i in 1000..1500u32 {
            c.insert(&i.to_be_bytes(), b"v", FAR);
        }
        assert_eq!(c.entries.len(), slab);
    }

    #[test]
    fn remove_and_clear() {
        let mut c = Cache::new(4);
        c.insert(b"a", b"1", FAR);
        c.insert(b"b", b"2", FAR);
        assert!(c.remove(b"a"));
        assert!(!c.remove(b"a"));
        c.clear();
        assert!(c.get(b"b", 0).is_none());
        assert_eq!(c.capacity(), 4);
    }

    #[test]
    fn zero_capacity_holds_nothing() {
        let mut c = Cache::new(0);
        c.insert(b"a", b"1", FAR);
        assert!(c.get(b"a", 0).is_none());
    }

    /// Model check: random operations against a simple reference LRU.
    #[test]
    fn matches_reference_model() {
        let mut c = Cache::new(8);
        let mut model: Vec<(u8, u8)> = vec![]; // most recent last
        let mut seed = 12345u64;
        for step in 0..20_000u32 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = ((seed >> 33) % 12) as u8;
            match (seed >> 40) % 3 {
                0 => {
                    let val = step as u8;
                    c.insert(&[key], &[val], FAR);
                    model.retain(|&(k, _)| k != key);
                    if model.len() == 8 {
                        model.remove(0);
                    }
                    model.push((key, val));
                }
                1 => {
                    let got = c.get(&[key], 0).map(|v| v[0]);
                    let pos = model.iter().position(|&(k, _)| k == key);
                    let want = pos.map(|p| {
                        let e = model.remove(p);
                        model.push(e);
                        e.1
                    });
                    assert_eq!(got, want, "step {step}");
                }
                _ => {
                    let had = model.iter().any(|&(k, _)| k == key);
                    model.retain(|&(k, _)| k != key);
                    assert_eq!(c.remove(&[key]), had);
                }
            }
            assert_eq!(c.len(), model.len());
        }
    }
}
