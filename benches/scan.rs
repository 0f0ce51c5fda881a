//! Request scanning and backend reply framing: the hand-written scanners beside redis-protocol's
//! decoders on the same bytes (project rule: hand-write only where a benchmark shows the need).
//!
//! Run: `cargo bench --bench scan`
//!
//! Results (criterion medians; `cargo bench`, profile.release: fat LTO, codegen-units=1),
//! machine: Intel(R) Xeon(R) Processor (as /proc/cpuinfo names it), 2 cores, Linux
//! 6.18.44-fc-v669, 2026-11-21. The machine was shared with other jobs (load average 1.5-3 while
//! these ran), so take differences under ~10% as noise.
//!
//! Request scanning, ns per command (100 pipelined commands per iteration unless noted):
//!
//! | input                                | proxy scanner | rp decode_range | rp decode_bytes_mut |
//! |--------------------------------------|--------------:|----------------:|--------------------:|
//! | `GET key:000000001234` x100          |          16.9 |            52.4 |               130.5 |
//! | `SET key <32 B>` x100                |          23.8 |            72.5 |               180.5 |
//! | one `SET key <1 MB>`                 |          21.1 |            75.0 |               453.2 |
//! | MSET 10k pairs (620 KB), 16 KB reads |      128.6 us |        5,741 us |                   - |
//! | inline `GET key` x100                |          40.2 |             n/a |                 n/a |
//! | inline `SET key <32 B>` x100         |         106.2 |             n/a |                 n/a |
//!
//! "rp" is redis-protocol 6 `resp2::decode` on the same bytes. The proxy's scanner is 3x faster
//! than `decode_range` (which allocates a `Vec` of ranges per command) and 7.5x faster than
//! `decode_bytes_mut` (what a codec would use: it also splits and freezes the buffer). The
//! MSET-in-pieces row shows the resumable scan: a from-scratch decoder rescans the command after
//! every read (quadratic, 45x slower here). redis-protocol has no inline-command decoder; inline
//! commands (telnet, rare) cost 2x a bare whitespace split (20.4 and 63.6 ns), which implements
//! none of redis-server's quoting rules.
//!
//! Backend reply framing, ns per reply ("rp resp3" is `resp3::decode::complete::decode_range`):
//!
//! | replies                               | FrameScanner | frame_len | rp resp3 decode_range |
//! |---------------------------------------|-------------:|----------:|----------------------:|
//! | `$32` bulk x100                       |         10.0 |      10.0 |                  56.0 |
//! | nested RESP3 map (10 fields, 1,015 B) |          357 |       357 |                 6,947 |
//!
//! The framer only finds where each reply ends (and flags push / RESP3-only types): 5.6x faster
//! on small bulks, 19x on nested aggregates, where redis-protocol builds a frame tree.

mod common;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use redis_proxy::resp::frame::{frame_len, FrameScanner};
use redis_proxy::resp::request::{RequestScanner, Scan};
use std::hint::black_box;

const PIPELINE: usize = 100;

fn resp_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn repeat(one: &[u8], n: usize) -> Vec<u8> {
    one.repeat(n)
}

/// Scans every command in `buf` with one scanner, as a client connection does.
fn proxy_scan_all(sc: &mut RequestScanner, buf: &[u8]) -> usize {
    let mut at = 0;
    let mut argc = 0;
    while at < buf.len() {
        match sc.scan(&buf[at..]) {
            Scan::Command { len, .. } => {
                let args = sc.args(&buf[at..]);
                black_box(args.get(args.len() - 1));
                argc += args.len();
                at += len;
            }
            Scan::Skip { len } => at += len,
            Scan::Incomplete { .. } => break,
            Scan::Error(e) => panic!("scan error: {e:?}"),
        }
    }
    argc
}

fn rp_decode_range_all(buf: &[u8]) -> usize {
    let mut at = 0;
    let mut n = 0;
    while at < buf.len() {
        match redis_protocol::resp2::decode::decode_range(&buf[at..]) {
            Ok(Some((frame, len))) => {
                black_box(&frame);
                n += 1;
                at += len;
            }
            Ok(None) => break,
            Err(e) => panic!("decode error: {e:?}"),
        }
    }
    n
}

fn rp_decode_bytes_mut_all(mut buf: BytesMut) -> usize {
    let mut n = 0;
    while !buf.is_empty() {
        match redis_protocol::resp2::decode::decode_bytes_mut(&mut buf) {
            Ok(Some((frame, _, _))) => {
                black_box(&frame);
                n += 1;
            }
            Ok(None) => break,
            Err(e) => panic!("decode error: {e:?}"),
        }
    }
    n
}

/// One request workload beside redis-protocol's RESP2 decoders on the same bytes.
fn request_group(c: &mut Criterion, name: &str, buf: &[u8], commands: usize, inline: bool) {
    let mut g = c.benchmark_group(format!("scan/{name}"));
    g.throughput(Throughput::Elements(commands as u64));
    let mut sc = RequestScanner::new();
    assert!(proxy_scan_all(&mut sc, buf) > 0);
    g.bench_function("proxy_RequestScanner", |b| {
        b.iter(|| proxy_scan_all(&mut sc, black_box(buf)))
    });
    if inline {
        // redis-protocol has no inline-command decoder: the baseline is a plain whitespace split
        // (no quoting rules), the least any inline parser must do.
        g.bench_function("naive_split_whitespace", |b| {
            b.iter(|| {
                let mut n = 0;
                for line in black_box(buf).split(|&c| c == b'\n') {
                    for a in line.split(|c| c.is_ascii_whitespace()) {
                        if !a.is_empty() {
                            black_box(a);
                            n += 1;
                        }
                    }
                }
                n
            })
        });
    } else {
        assert_eq!(rp_decode_range_all(buf), commands);
        g.bench_function("redis_protocol_decode_range", |b| {
            b.iter(|| rp_decode_range_all(black_box(buf)))
        });
        g.bench_function("redis_protocol_decode_bytes_mut", |b| {
            b.iter_batched(
                || BytesMut::from(buf),
                rp_decode_bytes_mut_all,
                if buf.len() > 64 * 1024 {
                    BatchSize::LargeInput
                } else {
                    BatchSize::SmallInput
                },
            )
        });
    }
    g.finish();
}

fn bench_requests(c: &mut Criterion) {
    let get = resp_command(&[b"GET", b"key:000000001234"]);
    request_group(c, "get_x100", &repeat(&get, PIPELINE), PIPELINE, false);

    let set = resp_command(&[b"SET", b"key:000000001234", &[b'v'; 32]]);
    request_group(c, "set32_x100", &repeat(&set, PIPELINE), PIPELINE, false);

    let big = resp_command(&[b"SET", b"key:000000001234", &vec![b'v'; 1 << 20]]);
    request_group(c, "set_1MB", &big, 1, false);

    let inline_get = b"GET key:000000001234\r\n";
    request_group(
        c,
        "inline_get_x100",
        &repeat(inline_get, PIPELINE),
        PIPELINE,
        true,
    );

    let inline_set = b"SET key:000000001234 vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv\r\n";
    request_group(
        c,
        "inline_set32_x100",
        &repeat(inline_set, PIPELINE),
        PIPELINE,
        true,
    );
}

/// An MSET of 10,000 pairs arriving in 16 KB reads, rescanned after each read: the proxy's
/// scanner resumes where it stopped, a from-scratch decoder starts over each time.
fn bench_resume(c: &mut Criterion) {
    let mut args: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
    for i in 0..10_000 {
        args.push(format!("key:{i:012}").into_bytes());
        args.push(vec![b'v'; 32]);
    }
    let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
    let buf = resp_command(&refs);
    const READ: usize = 16 * 1024;
    let cuts: Vec<usize> = (1..=buf.len().div_ceil(READ))
        .map(|k| (k * READ).min(buf.len()))
        .collect();

    let mut g = c.benchmark_group("scan/mset10k_in_16KB_reads");
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("proxy_RequestScanner", |b| {
        let mut sc = RequestScanner::new();
        b.iter(|| {
            for &end in &cuts {
                match sc.scan(&buf[..end]) {
                    Scan::Command { len, .. } => return len,
                    Scan::Incomplete { .. } => {}
                    other => panic!("{other:?}"),
                }
            }
            unreachable!()
        })
    });
    g.bench_function("redis_protocol_decode_range", |b| {
        b.iter(|| {
            for &end in &cuts {
                if let Some((frame, len)) =
                    redis_protocol::resp2::decode::decode_range(&buf[..end]).unwrap()
                {
                    black_box(&frame);
                    return len;
                }
            }
            unreachable!()
        })
    });
    g.finish();
}

/// Backend replies: the proxy only needs each frame's length (and two flags).
fn frame_group(c: &mut Criterion, name: &str, buf: &[u8], frames: usize) {
    let mut g = c.benchmark_group(format!("frame/{name}"));
    g.throughput(Throughput::Elements(frames as u64));
    g.bench_function("proxy_FrameScanner", |b| {
        let mut sc = FrameScanner::default();
        b.iter(|| {
            let buf = black_box(buf);
            let mut at = 0;
            while at < buf.len() {
                let info = sc.scan(&buf[at..]).unwrap().unwrap();
                at += black_box(info).len;
            }
            at
        })
    });
    g.bench_function("proxy_frame_len", |b| {
        b.iter(|| {
            let buf = black_box(buf);
            let mut at = 0;
            while at < buf.len() {
                at += black_box(frame_len(&buf[at..]).unwrap().unwrap()).len;
            }
            at
        })
    });
    g.bench_function("redis_protocol_resp3_decode_range", |b| {
        b.iter(|| {
            let buf = black_box(buf);
            let mut at = 0;
            while at < buf.len() {
                let (frame, len) =
                    redis_protocol::resp3::decode::complete::decode_range(&buf[at..])
                        .unwrap()
                        .unwrap();
                black_box(&frame);
                at += len;
            }
            at
        })
    });
    g.finish();
}

fn bench_frames(c: &mut Criterion) {
    let mut bulk = b"$32\r\n".to_vec();
    bulk.extend_from_slice(&[b'v'; 32]);
    bulk.extend_from_slice(b"\r\n");
    frame_group(c, "bulk32_x100", &repeat(&bulk, PIPELINE), PIPELINE);

    // A RESP3 map of 10 fields, each an array mixing bulk, double, boolean, null, set and
    // verbatim string: every RESP3 type the proxy has to recognise, two levels deep.
    let mut nested = b"%10\r\n".to_vec();
    for i in 0..10 {
        nested.extend_from_slice(format!("$7\r\nfield:{i}\r\n").as_bytes());
        nested.extend_from_slice(
            b"*6\r\n$32\r\nvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv\r\n,3.14159\r\n#t\r\n_\r\n\
              ~2\r\n:1\r\n+two\r\n=8\r\ntxt:abcd\r\n",
        );
    }
    let n = frame_len(&nested).unwrap().unwrap();
    assert_eq!(n.len, nested.len());
    assert!(n.resp3);
    frame_group(c, "resp3_nested_map", &nested, 1);
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench_requests, bench_resume, bench_frames
}
criterion_main!(benches);
