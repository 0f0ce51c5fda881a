//! Command classification: `classify(&args)` runs once per client command.
//!
//! Run: `cargo bench --bench command`
//!
//! Results (criterion medians; `cargo bench`, profile.release: fat LTO, codegen-units=1),
//! machine: Intel(R) Xeon(R) Processor (as /proc/cpuinfo names it), 2 cores, Linux
//! 6.18.44-fc-v669, 2026-11-21. The machine was shared with other jobs (load average 1.5-3 while
//! these ran), so take differences under ~10% as noise.
//!
//! | command                                                   | ns per classify |
//! |-----------------------------------------------------------|----------------:|
//! | `GET key`                                                 |             5.7 |
//! | `SET key <32 B>`                                          |             8.8 |
//! | unknown (`MYMODULE.DOSOMETHING`: treated as a write)      |             9.3 |
//! | mix of 20 common commands (GET, SET EX, MGET, HSET, ...)  |            11.6 |

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use redis_proxy::command::classify;
use redis_proxy::resp::request::{RequestScanner, Scan};
use std::hint::black_box;

/// A scanned command: its bytes and the scanner holding its argument offsets.
struct Scanned {
    buf: Vec<u8>,
    sc: RequestScanner,
}

fn scanned(args: &[&str]) -> Scanned {
    let mut buf = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        buf.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    let mut sc = RequestScanner::new();
    match sc.scan(&buf) {
        Scan::Command { len, .. } => assert_eq!(len, buf.len()),
        other => panic!("{other:?}"),
    }
    Scanned { buf, sc }
}

const V32: &str = "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv";
const K: &str = "key:000000001234";

fn bench_classify(c: &mut Criterion) {
    let get = scanned(&["GET", K]);
    let set = scanned(&["SET", K, V32]);
    let unknown = scanned(&["MYMODULE.DOSOMETHING", K, "x"]);
    let mix: Vec<Scanned> = [
        &["GET", K][..],
        &["SET", K, V32, "EX", "60"],
        &["get", K],
        &["MGET", K, "key:000000001235", "key:000000001236"],
        &["DEL", K],
        &["INCR", "counter"],
        &["EXPIRE", K, "60"],
        &["TTL", K],
        &["EXISTS", K],
        &["HGET", "hash", "field"],
        &["HSET", "hash", "field", V32],
        &["HGETALL", "hash"],
        &["LPUSH", "list", V32],
        &["LRANGE", "list", "0", "-1"],
        &["SADD", "set", "member"],
        &["SMEMBERS", "set"],
        &["ZADD", "zset", "1.5", "member"],
        &["ZRANGE", "zset", "0", "-1", "WITHSCORES"],
        &["PING"],
        &[
            "EVALSHA",
            "0123456789abcdef0123456789abcdef01234567",
            "1",
            K,
        ],
    ]
    .iter()
    .map(|a| scanned(a))
    .collect();
    assert_eq!(mix.len(), 20);

    let mut g = c.benchmark_group("classify");
    g.throughput(Throughput::Elements(1));
    for (name, s) in [("GET", &get), ("SET", &set), ("unknown", &unknown)] {
        let args = s.sc.args(&s.buf);
        g.bench_function(name, |b| b.iter(|| classify(black_box(&args))));
    }
    let mix_args: Vec<_> = mix.iter().map(|s| s.sc.args(&s.buf)).collect();
    g.throughput(Throughput::Elements(mix_args.len() as u64));
    g.bench_function("mix_of_20", |b| {
        b.iter(|| {
            for a in black_box(&mix_args) {
                black_box(classify(a));
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench_classify
}
criterion_main!(benches);
