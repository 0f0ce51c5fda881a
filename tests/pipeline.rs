//! Deep pipelines: every reply exactly right and in order.
mod common;

use common::*;
use std::collections::HashMap;
use std::io::Write;
use std::thread;

/// Builds `n` pseudo-random mixed commands plus the exact expected replies,
/// using a model of the keyspace. Values encode their key and index.
fn build_workload(tag: &str, n: usize, seed: u64) -> (Vec<u8>, Vec<(String, Reply)>) {
    let mut rng = Rng::new(seed);
    let mut model: HashMap<String, Vec<u8>> = HashMap::new();
    let mut bytes = Vec::with_capacity(n * 48);
    let mut expected = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("{tag}:k:{}", rng.below(400));
        let ctr = format!("{tag}:c:{}", rng.below(50));
        let (args, reply): (Vec<Vec<u8>>, Reply) = match rng.below(100) {
            0..=24 => {
                let mut v = format!("v:{key}:{i}").into_bytes();
                if rng.below(200) == 0 {
                    // Occasionally a big value to exercise partial reads/writes.
                    v.extend((0..70_000).map(|j| b'a' + (j % 26) as u8));
                }
                model.insert(key.clone(), v.clone());
                (vec![b"SET".to_vec(), key.into_bytes(), v], Reply::ok())
            }
            25..=59 => {
                let r = match model.get(&key) {
                    Some(v) => Reply::bulk(v),
                    None => Reply::nil(),
                };
                (vec![b"GET".to_vec(), key.into_bytes()], r)
            }
            60..=71 => {
                let cur = model
                    .get(&ctr)
                    .map(|v| std::str::from_utf8(v).unwrap().parse::<i64>().unwrap())
                    .unwrap_or(0)
                    + 1;
                model.insert(ctr.clone(), cur.to_string().into_bytes());
                (vec![b"INCR".to_vec(), ctr.into_bytes()], Reply::Int(cur))
            }
            72..=79 => {
                let r = match model.get(&ctr) {
                    Some(v) => Reply::bulk(v),
                    None => Reply::nil(),
                };
                (vec![b"GET".to_vec(), ctr.into_bytes()], r)
            }
            80..=87 => {
                let missing = format!("{tag}:missing:{i}");
                (vec![b"GET".to_vec(), missing.into_bytes()], Reply::nil())
            }
            88..=93 => (vec![b"PING".to_vec()], Reply::pong()),
            _ => {
                let msg = format!("echo:{tag}:{i}").into_bytes();
                (vec![b"ECHO".to_vec(), msg.clone()], Reply::Bulk(Some(msg)))
            }
        };
        let desc = args
            .iter()
            .map(|a| String::from_utf8_lossy(&a[..a.len().min(60)]).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        bytes.extend(encode(&args));
        expected.push((desc, reply));
    }
    (bytes, expected)
}

/// Writes `bytes` in one go from a helper thread while reading and checking
/// every reply in order on this thread.
fn run_pipeline(conn: &mut Raw, bytes: Vec<u8>, expected: &[(String, Reply)]) {
    let mut w = conn.writer();
    let writer = thread::spawn(move || w.write_all(&bytes));
    for (i, (cmd, want)) in expected.iter().enumerate() {
        let got = conn
            .try_read_reply()
            .unwrap_or_else(|e| panic!("reply #{i} to `{cmd}`: read failed: {e}"));
        assert_eq!(&got, want, "reply #{i} to `{cmd}`");
    }
    writer.join().unwrap().expect("writing the pipeline");
}

#[test]
fn pipeline_25k_mixed_commands() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2", "--capacity", "10000"]);
    let mut p = proxy.connect();
    let (bytes, expected) = build_workload("p25k", 25_000, 0x5eed);
    run_pipeline(&mut p, bytes, &expected);
    // Connection still healthy afterwards.
    assert_eq!(p.cmd(&["PING"]), Reply::pong());
}

#[test]
fn pipelines_on_concurrent_connections() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2", "--capacity", "10000"]);
    let handles: Vec<_> = (0..4)
        .map(|c| {
            let mut conn = proxy.connect();
            thread::spawn(move || {
                let (bytes, expected) = build_workload(&format!("conc{c}"), 5_000, 1000 + c);
                run_pipeline(&mut conn, bytes, &expected);
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a pipelined client saw a wrong reply");
    }
}

#[test]
fn pipeline_written_before_reading() {
    // Small enough to fit in socket buffers: write everything, then read.
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut p = proxy.connect();
    let (bytes, expected) = build_workload("wbr", 2_000, 7);
    p.send(&bytes);
    for (i, (cmd, want)) in expected.iter().enumerate() {
        assert_eq!(&p.read_reply(), want, "reply #{i} to `{cmd}`");
    }
}

#[test]
fn hits_and_misses_interleaved_keep_order() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(
        redis.port(),
        &["--threads", "1", "--capacity", "10000", "--expire", "1h"],
    );
    let mut d = redis.connect();
    let mut p = proxy.connect();
    for j in 0..100 {
        assert_eq!(
            d.cmd(&["SET", &format!("hm:{j}"), &format!("val:{j}")]),
            Reply::ok()
        );
    }
    // Warm half of them.
    for j in (0..100).step_by(2) {
        assert_eq!(
            p.cmd(&["GET", &format!("hm:{j}")]),
            Reply::bulk(format!("val:{j}"))
        );
    }
    let gets_before = redis.cmdstat_calls("get");

    // Pipeline alternating warm (hit) and cold (miss) keys, plus missing keys,
    // so cache hits are ready long before earlier misses come back.
    let mut rng = Rng::new(99);
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for i in 0..6_000u64 {
        let (key, want) = match i % 3 {
            0 => {
                let j = rng.below(50) * 2 + 1; // cold at first
                (format!("hm:{j}"), Reply::bulk(format!("val:{j}")))
            }
            1 => {
                let j = rng.below(50) * 2; // warm
                (format!("hm:{j}"), Reply::bulk(format!("val:{j}")))
            }
            _ => (format!("hm:none:{i}"), Reply::nil()),
        };
        bytes.extend(encode(&["GET", &key]));
        expected.push((format!("GET {key}"), want));
    }
    run_pipeline(&mut p, bytes, &expected);

    let forwarded = redis.cmdstat_calls("get") - gets_before;
    assert!(
        forwarded < 6_000,
        "no GET of the pipeline was served from the cache ({forwarded} forwarded)"
    );
    // Warm keys never needed redis: at most cold keys (each at least once) and missing keys.
    assert!(
        forwarded <= 4_000,
        "warm keys were not served from cache: {forwarded} GETs forwarded"
    );
}

#[test]
fn tiny_redis_ops_limit_still_correct() {
    // Backpressure: at most 2 requests in flight to redis per shard.
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2", "--redis-ops-limit", "2"]);
    let handles: Vec<_> = (0..3)
        .map(|c| {
            let mut conn = proxy.connect();
            thread::spawn(move || {
                let (bytes, expected) = build_workload(&format!("lim{c}"), 3_000, 77 + c);
                run_pipeline(&mut conn, bytes, &expected);
            })
        })
        .collect();
    for h in handles {
        h.join().expect("wrong reply under --redis-ops-limit 2");
    }
}
