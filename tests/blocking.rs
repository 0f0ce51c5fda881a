//! Blocking commands block their own client only, for their own timeout, on a dedicated
//! connection; a client that leaves while blocked leaves nothing behind.
mod common;
#[path = "common/frames.rs"]
mod frames;

use common::{wait_until, Proxy, RedisServer};
use frames::Wire;
use std::time::{Duration, Instant};

fn blocked_clients(redis: &RedisServer) -> usize {
    let info = Wire::connect(redis.port()).cmd(&["INFO", "clients"]);
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("blocked_clients")
}

#[test]
fn blpop_blocks_only_its_client() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut a = Wire::connect(proxy.port());
    let mut b = Wire::connect(proxy.port());
    a.send(&["BLPOP", "q", "0"]);
    assert!(wait_until(Duration::from_secs(5), || blocked_clients(
        &redis
    ) == 1));
    // Everyone else on the shard is served meanwhile.
    for i in 0..100 {
        assert_eq!(b.cmd(&["SET", "k", &i.to_string()]), "+OK\r\n");
        assert!(b.cmd(&["GET", "k"]).ends_with(&format!("{i}\r\n")));
    }
    assert_eq!(b.cmd(&["RPUSH", "q", "job"]), ":1\r\n");
    assert_eq!(
        String::from_utf8_lossy(&a.frame()),
        "*2\r\n$1\r\nq\r\n$3\r\njob\r\n"
    );
    // Pipelined behind a block: runs after it, in order.
    a.send_raw(
        &[
            frames::encode(&["BLPOP", "q", "0"]),
            frames::encode(&["INCR", "after"]),
        ]
        .concat(),
    );
    assert!(wait_until(Duration::from_secs(5), || blocked_clients(
        &redis
    ) == 1));
    assert_eq!(
        b.cmd(&["GET", "after"]),
        "$-1\r\n",
        "INCR ran before the BLPOP ended"
    );
    b.cmd(&["RPUSH", "q", "two"]);
    assert_eq!(
        String::from_utf8_lossy(&a.frame()),
        "*2\r\n$1\r\nq\r\n$3\r\ntwo\r\n"
    );
    assert_eq!(String::from_utf8_lossy(&a.frame()), ":1\r\n");
}

/// --backend-timeout never cuts a block short: it counts from the end of the block's own
/// timeout.
#[test]
fn backend_timeout_does_not_cut_a_block() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(
        redis.port(),
        &["--threads", "1", "--backend-timeout", "200ms"],
    );
    let mut a = Wire::connect(proxy.port());
    let start = Instant::now();
    assert_eq!(a.cmd(&["BLPOP", "empty", "1"]), "*-1\r\n");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    a.cmd(&["HELLO", "3"]);
    assert_eq!(a.cmd(&["BRPOP", "empty", "0.5"]), "_\r\n");
    let start = Instant::now();
    assert_eq!(
        a.cmd(&["XREAD", "BLOCK", "600", "STREAMS", "s", "$"]),
        "_\r\n"
    );
    assert!(start.elapsed() >= Duration::from_millis(550));
}

/// A client that disconnects while blocked: its dedicated connection is closed, so nothing
/// pops the next element for nobody.
#[test]
fn leaving_while_blocked_leaves_nothing_behind() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut a = Wire::connect(proxy.port());
    a.send(&["BLPOP", "q", "0"]);
    assert!(wait_until(Duration::from_secs(5), || blocked_clients(
        &redis
    ) == 1));
    drop(a);
    assert!(
        wait_until(Duration::from_secs(5), || blocked_clients(&redis) == 0),
        "the proxy left a BLPOP blocked in Redis for a client that is gone"
    );
    let mut b = Wire::connect(proxy.port());
    assert_eq!(b.cmd(&["RPUSH", "q", "x"]), ":1\r\n");
    assert_eq!(b.cmd(&["LLEN", "q"]), ":1\r\n");
    assert_eq!(b.cmd(&["BLPOP", "q", "0"]), "*2\r\n$1\r\nq\r\n$1\r\nx\r\n");
}

/// Many clients blocked at once, each woken by its own push.
#[test]
fn many_blocked_clients() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    let mut waiting: Vec<Wire> = (0..20)
        .map(|i| {
            let mut w = Wire::connect(proxy.port());
            w.send(&["BLPOP", &format!("q{i}"), "0"]);
            w
        })
        .collect();
    assert!(wait_until(Duration::from_secs(5), || blocked_clients(
        &redis
    ) == 20));
    let mut p = Wire::connect(proxy.port());
    for i in (0..20).rev() {
        p.cmd(&["RPUSH", &format!("q{i}"), &format!("v{i}")]);
    }
    for (i, w) in waiting.iter_mut().enumerate() {
        let want = format!(
            "*2\r\n${}\r\nq{i}\r\n${}\r\nv{i}\r\n",
            format!("q{i}").len(),
            format!("v{i}").len()
        );
        assert_eq!(String::from_utf8_lossy(&w.frame()), want);
    }
}

/// A blocked client's connection that then times out (Redis frozen past the block's own
/// timeout plus --backend-timeout) gets an error, and the proxy carries on. (Found in review:
/// failing that connection's waiter re-entered the pool while the timeout sweep held it.)
#[test]
fn frozen_redis_fails_a_block_after_its_timeout() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(
        redis.port(),
        &[
            "--threads",
            "1",
            "--backend-timeout",
            "300ms",
            "--connect-timeout",
            "300ms",
        ],
    );
    let mut a = Wire::connect(proxy.port());
    assert_eq!(a.cmd(&["SET", "k", "v"]), "+OK\r\n");
    assert_eq!(a.cmd(&["BLPOP", "empty", "0.1"]), "*-1\r\n"); // a warm dedicated connection
    redis.stop();
    let start = Instant::now();
    let r = a.cmd(&["BLPOP", "empty", "0.2"]);
    assert!(r.starts_with("-ERR backend timeout"), "{r}");
    assert!(
        start.elapsed() >= Duration::from_millis(450),
        "{:?}",
        start.elapsed()
    );
    redis.cont();
    let mut b = Wire::connect(proxy.port());
    assert!(
        wait_until(Duration::from_secs(5), || b.cmd(&["GET", "k"])
            == "$1\r\nv\r\n"),
        "the proxy did not carry on"
    );
}
