//! The shard cache: get hit / miss, insert with eviction, remove, and expiry sweeps, at 10k and
//! 1M entries. Keys are 16 bytes (`key:` and 12 bytes of index), values are 32-byte GET replies
//! stored as the client receives them (`$32\r\n<32 bytes>\r\n`), capacity = entries so every
//! insert of a new key evicts. Keys are drawn at random, so at 1M most lookups miss the CPU caches.
//! Memory per entry is measured by `cargo bench --bench memory`.
//!
//! Run: `cargo bench --bench cache`
//!
//! Results (criterion medians; `cargo bench`, profile.release: fat LTO, codegen-units=1),
//! machine: Intel(R) Xeon(R) Processor (as /proc/cpuinfo names it), 2 cores, Linux
//! 6.18.44-fc-v669, 2026-11-21. The machine was shared with other jobs (load average 1.5-3 while
//! these ran), so take differences under ~10% as noise.
//!
//! | operation (ns per op)                          | 10k entries | 1M entries |
//! |------------------------------------------------|------------:|-----------:|
//! | get, hit (independent random keys: throughput) |        15.6 |        146 |
//! | get, hit (each key depends on the last reply)  |        31.9 |        568 |
//! | get, miss                                      |         5.8 |       29.1 |
//! | insert new key, evicting the LRU entry         |        25.8 |        156 |
//! | remove                                         |        32.9 |        417 |
//! | sweep, per slot scanned, nothing expired       |        1.07 |       1.51 |
//! | sweep, per slot scanned, all expired (removed) |        21.3 |       88.4 |
//!
//! At 1M entries (about 105 MB) every get misses the CPU caches several times (index control
//! bytes, index slot, slab entry, key+reply allocation, LRU neighbours): the dependent-chain row
//! is the latency of one get, the first row what overlapping misses of back-to-back gets allow.

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use redis_proxy::cache::Cache;
use std::hint::black_box;
use std::time::{Duration, Instant};

const SIZES: [usize; 2] = [10_000, 1_000_000];
/// Far in the future on the shard clock: nothing expires.
const NEVER: u32 = u32::MAX;
const NOW: u32 = 1_000;

/// `key:`, 4 zero bytes and the index as 8 big-endian bytes: two word stores, so computing a key
/// costs ~1 ns and no key table is needed. (A key built byte by byte on the stack measured 4x
/// slower gets at 1M entries: the byte stores followed by the hash's word loads defeat store
/// forwarding and serialise the lookups. In the proxy the key sits in the client's input buffer.)
#[inline]
fn key(i: usize) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(b"key:");
    k[8..].copy_from_slice(&(i as u64).to_be_bytes());
    k
}

fn reply() -> Vec<u8> {
    let mut r = b"$32\r\n".to_vec();
    r.extend_from_slice(&[b'v'; 32]);
    r.extend_from_slice(b"\r\n");
    r
}

/// A full cache of capacity `n` holding keys `0..n`; keys `n..2n` are used as absent keys.
fn filled(n: usize, expires: u32) -> Cache {
    let r = reply();
    let mut c = Cache::new(n);
    for i in 0..n {
        c.insert(&key(i), &r, expires);
    }
    assert_eq!(c.len(), n);
    c
}

/// xorshift32 + multiply-shift range reduction: a random index in `0..n` for ~1 ns.
struct Rng(u32);
impl Rng {
    #[inline]
    fn below(&mut self, n: usize) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        ((x as u64 * n as u64) >> 32) as usize
    }
}

fn bench_cache(c: &mut Criterion) {
    let r = reply();
    for n in SIZES {
        let mut g = c.benchmark_group("cache");
        g.throughput(Throughput::Elements(1));

        {
            let mut cache = filled(n, NEVER);
            let mut rng = Rng(0x9e37_79b9);
            g.bench_function(BenchmarkId::new("get_hit", n), |b| {
                b.iter(|| {
                    let k = key(rng.below(n));
                    black_box(cache.get(&k, NOW).map(|r| r.len()))
                })
            });
            // Latency rather than throughput: the next key depends on the bytes of the previous
            // reply, so the cache misses of consecutive gets cannot overlap (in the proxy, a get
            // is separated from the next by scanning and reply writing).
            let mut rng = Rng(0x2545_f491);
            g.bench_function(BenchmarkId::new("get_hit_dependent", n), |b| {
                b.iter(|| {
                    let r = cache.get(&key(rng.below(n)), NOW).unwrap();
                    // Always 0, but only known once the reply is loaded.
                    rng.0 ^= (r[0] ^ b'$') as u32;
                })
            });
            let mut rng = Rng(0x85eb_ca6b);
            g.bench_function(BenchmarkId::new("get_miss", n), |b| {
                b.iter(|| {
                    let k = key(n + rng.below(n));
                    black_box(cache.get(&k, NOW).is_none())
                })
            });
        }

        {
            // Keys cycle over 0..2n starting at n: at every insert the key is one of the n not
            // inserted most recently, so it is absent and the least recently used key is evicted.
            let mut cache = filled(n, NEVER);
            let mut at = n;
            g.bench_function(BenchmarkId::new("insert_evict", n), |b| {
                b.iter(|| {
                    cache.insert(&key(at), &r, NEVER);
                    at += 1;
                    if at == 2 * n {
                        at = 0;
                    }
                })
            });
            assert_eq!(cache.len(), n);
        }

        {
            // Only the removals are timed; each chunk of removed keys is put back untimed.
            let mut cache = filled(n, NEVER);
            let mut rng = Rng(0xc2b2_ae35);
            let mut chunk = Vec::with_capacity(1000);
            g.bench_function(BenchmarkId::new("remove", n), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let m = left.min(1000);
                        left -= m;
                        chunk.clear();
                        chunk.extend((0..m).map(|_| rng.below(n)));
                        chunk.sort_unstable();
                        chunk.dedup();
                        while chunk.len() < m as usize {
                            // Duplicates were dropped: top up with distinct keys.
                            let i = rng.below(n);
                            if !chunk.contains(&i) {
                                chunk.push(i);
                            }
                        }
                        let t = Instant::now();
                        for &i in &chunk {
                            black_box(cache.remove(&key(i)));
                        }
                        total += t.elapsed();
                        for &i in &chunk {
                            cache.insert(&key(i), &r, NEVER);
                        }
                    }
                    total
                })
            });
            assert_eq!(cache.len(), n);
        }

        const BUDGET: usize = 1024;
        g.throughput(Throughput::Elements(BUDGET as u64));
        {
            let mut cache = filled(n, NEVER);
            g.bench_function(BenchmarkId::new("sweep1024_none_expired", n), |b| {
                b.iter(|| assert_eq!(cache.sweep(NOW, BUDGET), 0))
            });
        }
        {
            // Every entry is expired; after each timed sweep the freed slots are refilled
            // (untimed) with fresh expired keys, so the next sweep again removes all it scans.
            let mut cache = filled(n, NOW - 1);
            let mut fresh = 2 * n;
            g.bench_function(BenchmarkId::new("sweep1024_all_expired", n), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let t = Instant::now();
                        let removed = cache.sweep(NOW, BUDGET);
                        total += t.elapsed();
                        assert_eq!(removed, BUDGET.min(n));
                        for _ in 0..removed {
                            cache.insert(&key(fresh), &r, NOW - 1);
                            fresh += 1;
                        }
                    }
                    total
                })
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench_cache
}
criterion_main!(benches);
