//! Reply encoding and RESP3 -> RESP2 conversion, appending to a reused `BytesMut` as the client
//! writer does.
//!
//! Run: `cargo bench --bench encode`
//!
//! Results (criterion medians; `cargo bench`, profile.release: fat LTO, codegen-units=1),
//! machine: Intel(R) Xeon(R) Processor (as /proc/cpuinfo names it), 2 cores, Linux
//! 6.18.44-fc-v669, 2026-11-21. The machine was shared with other jobs (load average 1.5-3 while
//! these ran), so take differences under ~10% as noise.
//!
//! | operation                                              | ns per op |
//! |--------------------------------------------------------|----------:|
//! | put_bulk, 32-byte value                                |      6.79 |
//! | put_header (`*N`)                                      |      4.87 |
//! | put_command, `SET key:000000001234 <32 B>`             |      25.5 |
//! | put_error, 58-byte message                             |      39.8 |
//! | to_resp2, RESP3 map (HGETALL, 10 fields, 32 B values)  |       164 |
//! | to_resp2, ZRANGE WITHSCORES, 10 pairs (FlattenPairs)   |       435 |
//!
//! put_error copies byte by byte (replacing CR/LF); FlattenPairs walks the reply twice (a check
//! that every element is a pair, then the conversion), hence 2.6x the map for a shorter reply.

mod common;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use redis_proxy::resp::convert::{to_resp2, Shape};
use redis_proxy::resp::write::{put_bulk, put_command, put_error, put_header};
use std::hint::black_box;

const N: usize = 100;

fn bench_write(c: &mut Criterion) {
    let value = [b'v'; 32];
    let key = b"key:000000001234";
    let mut out = BytesMut::with_capacity(64 * 1024);

    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("put_bulk_32B_x100", |b| {
        b.iter(|| {
            out.clear();
            for _ in 0..N {
                put_bulk(&mut out, black_box(&value));
            }
            out.len()
        })
    });
    g.bench_function("put_header_x100", |b| {
        b.iter(|| {
            out.clear();
            for i in 0..N {
                put_header(&mut out, b'*', black_box(i as i64));
            }
            out.len()
        })
    });
    g.bench_function("put_command_SET_32B_x100", |b| {
        let args: [&[u8]; 3] = [b"SET", key, &value];
        b.iter(|| {
            out.clear();
            for _ in 0..N {
                put_command(&mut out, black_box(args).into_iter());
            }
            out.len()
        })
    });
    g.bench_function("put_error_x100", |b| {
        let msg = b"ERR unknown command 'FOO', with args beginning with: 'bar'";
        b.iter(|| {
            out.clear();
            for _ in 0..N {
                put_error(&mut out, black_box(msg));
            }
            out.len()
        })
    });
    g.finish();
}

fn bench_convert(c: &mut Criterion) {
    // HGETALL of 10 fields, 32-byte values, as a RESP3 map.
    let mut map = b"%10\r\n".to_vec();
    for i in 0..10 {
        map.extend_from_slice(format!("$7\r\nfield:{i}\r\n$32\r\n").as_bytes());
        map.extend_from_slice(&[b'v'; 32]);
        map.extend_from_slice(b"\r\n");
    }
    // ZRANGE z 0 9 WITHSCORES: RESP3 nests [member, score] pairs, RESP2 sends them flat.
    let mut zrange = b"*10\r\n".to_vec();
    for i in 0..10 {
        zrange.extend_from_slice(format!("*2\r\n$8\r\nmember:{i}\r\n,{}.5\r\n", i * 3).as_bytes());
    }
    let mut out = BytesMut::with_capacity(64 * 1024);
    to_resp2(&map, Shape::Plain, &mut out);
    assert!(out.starts_with(b"*20\r\n"));
    out.clear();
    to_resp2(&zrange, Shape::FlattenPairs, &mut out);
    assert!(out.starts_with(b"*20\r\n$8\r\nmember:0\r\n$3\r\n0.5\r\n"));

    let mut g = c.benchmark_group("to_resp2");
    g.throughput(Throughput::Elements(1));
    g.bench_function("map_hgetall_10_fields", |b| {
        b.iter(|| {
            out.clear();
            to_resp2(black_box(&map), Shape::Plain, &mut out);
            out.len()
        })
    });
    g.bench_function("zrange_withscores_10_pairs", |b| {
        b.iter(|| {
            out.clear();
            to_resp2(black_box(&zrange), Shape::FlattenPairs, &mut out);
            out.len()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench_write, bench_convert
}
criterion_main!(benches);
