//! Regressions for bugs found in review, end to end against a real redis-server.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// `$01` used to pass the proxy's scanner and reach Redis byte for byte; Redis then closed the
/// shard's shared connection, failing every other client's requests in flight.
#[test]
fn malformed_length_only_hurts_its_sender() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut good = proxy.connect();
    let n = 20_000;
    let mut pipeline = Vec::new();
    for _ in 0..n {
        pipeline.extend_from_slice(&encode(&["INCR", "counter"]));
    }
    good.send(&pipeline);
    let mut bad = proxy.connect();
    bad.send(b"*3\r\n$3\r\nSET\r\n$01\r\nk\r\n$1\r\nv\r\n");
    let reply = bad.read_reply();
    assert!(
        reply
            .error_text()
            .is_some_and(|e| e.starts_with("ERR Protocol error")),
        "{reply:?}"
    );
    for i in 1..=n {
        assert_eq!(good.read_reply(), Reply::Int(i as i64), "reply {i}");
    }
    assert_eq!(redis.cmd(&["EXISTS", "k"]), Reply::Int(0));
}

/// A client may send a whole large pipeline before reading any reply (as many client
/// libraries do); the proxy used to stop reading at 8 MB of unsent replies and deadlock.
#[test]
fn large_pipeline_sent_before_reading() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let value = "x".repeat(100);
    assert_eq!(proxy.connect().cmd(&["SET", "v", &value]), Reply::ok());
    let n = 150_000; // ~16 MB of replies
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&b"GET v\r\n".repeat(n)).unwrap();
    let want = n * (value.len() + 8); // "$100\r\n" + value + "\r\n"
    let mut got = 0;
    let mut buf = vec![0u8; 1 << 20];
    let deadline = Instant::now() + Duration::from_secs(30);
    while got < want && Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) => panic!("after {got} of {want} bytes: {e}"),
        }
    }
    assert_eq!(got, want);
}

/// A GET joining a fetch whose reply was not cacheable (here a WRONGTYPE error, with the PTTL
/// still in flight) used to wait forever.
#[test]
fn readers_of_an_uncacheable_key_all_get_answers() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    for i in 0..16 {
        redis.cmd(&["RPUSH", &format!("list{i}"), "a"]);
    }
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let port = proxy.port();
            std::thread::spawn(move || {
                let mut c = Raw::connect(port);
                for round in 0..200 {
                    let mut req = Vec::new();
                    for j in 0..10 {
                        req.extend_from_slice(&encode(&[
                            "GET",
                            &format!("list{}", (t + j + round) % 16),
                        ]));
                    }
                    req.extend_from_slice(&encode(&["PING"]));
                    c.send(&req);
                    for _ in 0..10 {
                        assert!(c.read_reply().is_error());
                    }
                    assert_eq!(c.read_reply(), Reply::pong());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client hung or got a wrong reply");
    }
}
