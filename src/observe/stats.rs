//! Per-shard counters, summed across shards only when someone reads them (a scrape, INFO).
//!
//! Each shard owns one [`ShardStats`] block, aligned so that no two shards' blocks share a
//! cache line, and is its only writer: a counter is bumped with a relaxed load and store (a
//! plain `mov` on x86), never a locked read-modify-write, so the hot path touches nothing
//! another core writes. Readers (the admin thread, INFO on any shard) load the words; a value
//! may be a few requests old, never torn.
//!
//! Per-request work is smaller still: dispatch only bumps a thread-local tally, which is added
//! to the block once per batch of client input ([`end_batch`]), together with that batch's
//! latency.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

/// What the proxy did with a request. Labels of `redis_proxy_requests_total{class}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// GET (or MGET) answered from the cache.
    Hit,
    /// GET (or MGET) not (all) in the cache: fetched from Redis.
    Miss,
    /// Sent to Redis (any command but a cache miss).
    Forwarded,
    /// Answered by the proxy itself (PING, HELLO, CLIENT, queued MULTI commands ...).
    Local,
    /// Refused as unsupported (SUBSCRIBE ...).
    Refused,
    /// Answered with an error by the proxy (NOAUTH, arity, backend unavailable, protocol).
    Error,
}

pub const CLASSES: [Class; 6] = [
    Class::Hit,
    Class::Miss,
    Class::Forwarded,
    Class::Local,
    Class::Refused,
    Class::Error,
];

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Hit => "hit",
            Class::Miss => "miss",
            Class::Forwarded => "forwarded",
            Class::Local => "local",
            Class::Refused => "refused",
            Class::Error => "error",
        }
    }

    /// Answered within the batch that carried it (its latency is the batch's).
    fn answered_in_batch(self) -> bool {
        !matches!(self, Class::Miss | Class::Forwarded)
    }
}

/// Why a cached entry was dropped before its time. Labels of
/// `redis_proxy_cache_invalidations_total{source}`.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// A write through this shard.
    Write,
    /// Redis's invalidation push (a write by anyone, through another shard or straight).
    Push,
    /// FLUSHALL/FLUSHDB/SWAPDB, a null invalidation, or a reconnect (lost invalidations).
    Flush,
}

pub const SOURCES: [&str; 3] = ["write", "push", "flush"];

/// Upper bounds of the latency buckets, in microseconds (Prometheus `le`, in seconds).
pub const BUCKETS_US: [u64; 18] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A counter or gauge with one writer (its shard) and any number of readers.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Only the owning shard calls this: a load and a store, no lock prefix.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Fixed buckets (not cumulative: `buckets[i]` counts observations in
/// `(BUCKETS_US[i-1], BUCKETS_US[i]]`, the last one everything above), and the sum.
#[derive(Default)]
pub struct Histogram {
    pub buckets: [Counter; BUCKETS_US.len() + 1],
    pub sum_us: Counter,
}

impl Histogram {
    /// `n` observations of `us` microseconds each.
    #[inline]
    pub fn observe(&self, us: u64, n: u64) {
        let i = BUCKETS_US.partition_point(|&b| b < us);
        self.buckets[i].add(n);
        self.sum_us.add(us.saturating_mul(n));
    }
}

/// One shard's counters and gauges. Gauges are published by the shard on its tick (50 ms) or
/// when they change.
#[repr(align(128))]
#[derive(Default)]
pub struct ShardStats {
    pub id: usize,
    pub accepted: Counter,
    pub rejected_max_clients: Counter,
    pub connections: Counter,
    pub requests: [Counter; 6],
    pub latency: [Histogram; 6],
    /// Round trips on the shard's shared connections, every request (the proxy's PTTLs too).
    pub rtt: Histogram,
    pub backend_up: Counter,
    pub reconnects: Counter,
    pub timeouts: Counter,
    pub in_flight: Counter,
    pub cache_entries: Counter,
    pub cache_bytes: Counter,
    pub evictions: Counter,
    pub expirations: Counter,
    pub invalidations: [Counter; 3],
    pub pinned: Counter,
    /// Connections in subscriber mode (pub/sub): bumped by whatever serves them.
    pub subscribers: Counter,
    /// Why the shared connection is down (empty while up). Written on changes only.
    pub backend_error: Mutex<String>,
}

impl ShardStats {
    #[inline]
    pub fn invalidated(&self, source: Source, n: u64) {
        self.invalidations[source as usize].add(n);
    }

    /// A reply from Redis, `us` after its request was queued, answered `n` requests of
    /// `class` (a fill answers every client that joined it).
    #[inline]
    pub fn replied(&self, class: Class, us: u64, n: u64) {
        self.latency[class as usize].observe(us, n);
    }

    /// A connection entered (`true`) or left subscriber mode (or closed while in it).
    pub fn subscriber_changed(&self, entered: bool) {
        let n = self.subscribers.get();
        self.subscribers
            .set(if entered { n + 1 } else { n.saturating_sub(1) });
    }
}

/// What the process is, for the metrics and INFO.
pub struct Process {
    pub shards: usize,
    pub driver: &'static str,
}

static SHARDS: Mutex<Vec<Arc<ShardStats>>> = Mutex::new(Vec::new());
static PROCESS: OnceLock<Process> = OnceLock::new();

/// A new shard's block, listed for readers.
pub fn register(id: usize) -> Arc<ShardStats> {
    let s = Arc::new(ShardStats {
        id,
        ..Default::default()
    });
    let mut all = SHARDS.lock().unwrap_or_else(|e| e.into_inner());
    all.push(s.clone());
    all.sort_by_key(|s| s.id);
    s
}

/// Every shard's block, by shard id.
pub fn shards() -> Vec<Arc<ShardStats>> {
    SHARDS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Set once every shard has started.
pub fn set_process(p: Process) {
    let _ = PROCESS.set(p);
}

pub fn process() -> Option<&'static Process> {
    PROCESS.get()
}

thread_local! {
    /// Requests of the current batch by class, not yet added to the shard's block. `Local`
    /// is not counted here: it is what is left of the batch's requests.
    static TALLY: [Cell<u64>; 6] = const { [const { Cell::new(0) }; 6] };
    /// Round trip of the backend reply being delivered (set by the backend reader of a
    /// timed connection, taken by the shard's sink).
    static REPLY_AGE: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Counts one request of `class` in the current batch (hits, misses, refusals and errors at
/// their dispatch sites; forwarded requests as they are queued on a backend connection).
#[inline]
pub fn count(class: Class) {
    TALLY.with(|t| {
        let c = &t[class as usize];
        c.set(c.get() + 1);
    });
}

/// Requests counted as forwarded in the current batch so far.
#[inline]
pub fn forwarded_so_far() -> u64 {
    TALLY.with(|t| t[Class::Forwarded as usize].get())
}

/// A request counted as forwarded (`n` sends) was a cache miss: one miss instead.
#[inline]
pub fn forwarded_as_miss(n: u64) {
    TALLY.with(|t| {
        let f = &t[Class::Forwarded as usize];
        f.set(f.get().saturating_sub(n));
        let m = &t[Class::Miss as usize];
        m.set(m.get() + 1);
    });
}

/// The batch read at `start_us`, of `requests` commands, is dispatched: its requests go into
/// `stats` (those not counted otherwise as local), and those answered within it (hits, local,
/// refused, errors) observe its duration as their latency.
pub fn end_batch(stats: &ShardStats, start_us: u64, requests: u64) {
    let mut elapsed = None;
    TALLY.with(|t| {
        let counted: u64 = t.iter().map(Cell::get).sum();
        t[Class::Local as usize].set(requests.saturating_sub(counted));
        for class in CLASSES {
            let n = t[class as usize].replace(0);
            if n == 0 {
                continue;
            }
            stats.requests[class as usize].add(n);
            if class.answered_in_batch() {
                let us = *elapsed
                    .get_or_insert_with(|| super::clock::refresh().saturating_sub(start_us));
                stats.latency[class as usize].observe(us, n);
            }
        }
    });
}

/// Set by the backend reader before it delivers a reply of a timed connection.
#[inline]
pub fn set_reply_age(us: Option<u64>) {
    REPLY_AGE.with(|a| a.set(us));
}

#[inline]
pub fn take_reply_age() -> Option<u64> {
    REPLY_AGE.with(|a| a.take())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_upper_bounds() {
        let h = Histogram::default();
        h.observe(25, 1); // le 25us
        h.observe(26, 2); // le 50us
        h.observe(20_000_000, 1); // +Inf
        assert_eq!(h.buckets[0].get(), 1);
        assert_eq!(h.buckets[1].get(), 2);
        assert_eq!(h.buckets[BUCKETS_US.len()].get(), 1);
        assert_eq!(h.sum_us.get(), 25 + 52 + 20_000_000);
    }

    #[test]
    fn batch_tally_goes_to_the_block() {
        let s = ShardStats::default();
        count(Class::Hit);
        count(Class::Forwarded);
        count(Class::Forwarded); // a miss's GET and PTTL
        count(Class::Forwarded);
        forwarded_as_miss(2);
        end_batch(&s, super::super::clock::refresh(), 4);
        assert_eq!(s.requests[Class::Hit as usize].get(), 1);
        assert_eq!(s.requests[Class::Forwarded as usize].get(), 1);
        assert_eq!(s.requests[Class::Miss as usize].get(), 1);
        assert_eq!(s.requests[Class::Local as usize].get(), 1);
        // Forwarded latency is observed when Redis replies, not at the batch's end.
        let n = |c: Class| {
            s.latency[c as usize]
                .buckets
                .iter()
                .map(Counter::get)
                .sum::<u64>()
        };
        assert_eq!(
            (n(Class::Hit), n(Class::Local), n(Class::Forwarded)),
            (1, 1, 0)
        );
        end_batch(&s, 0, 0);
        assert_eq!(s.requests[Class::Hit as usize].get(), 1);
    }
}
