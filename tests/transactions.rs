//! MULTI/EXEC/DISCARD and WATCH/UNWATCH: replies byte for byte as redis-server's, a watched
//! key changed by anyone aborts EXEC, and read-your-writes holds around the cache.
mod common;
#[path = "common/frames.rs"]
mod frames;

use common::{wait_until, Proxy, RedisServer};
use frames::{encode, Wire};
use std::time::Duration;

/// Sends each step to one Redis directly and to another (same data: none) through the proxy;
/// every reply must be identical.
fn same(direct: &RedisServer, proxy: &Proxy, proto: &str, steps: &[&[&str]]) {
    let mut d = Wire::connect(direct.port());
    let mut p = Wire::connect(proxy.port());
    d.cmd(&["HELLO", proto]);
    p.cmd(&["HELLO", proto]);
    d.cmd(&["FLUSHALL"]);
    p.cmd(&["FLUSHALL"]);
    for s in steps {
        let want = d.cmd(s);
        let got = p.cmd(s);
        assert_eq!(got, want, "{s:?} (RESP{proto})");
    }
}

const SEQUENCES: &[&[&[&str]]] = &[
    // The basics, with replies whose RESP2 shape differs.
    &[
        &["MULTI"],
        &["SET", "a", "1"],
        &["INCR", "a"],
        &["ZADD", "z", "1", "m"],
        &["ZRANGE", "z", "0", "-1", "WITHSCORES"],
        &["HSET", "h", "f", "v"],
        &["HGETALL", "h"],
        &["GET", "nothing"],
        &["PING"],
        &["ECHO", "e"],
        &["EXEC"],
        &["GET", "a"],
        &["DEL", "a", "z", "h"],
    ],
    // Queue-time errors abort at EXEC.
    &[
        &["MULTI"],
        &["SET", "b", "1"],
        &["NOSUCH", "x", "y"],
        &["GET"],
        &["CONFIG", "NOSUCH"],
        &["CONFIG", "GET"],
        &["EXEC"],
        &["EXISTS", "b"],
    ],
    // Run-time errors do not.
    &[
        &["SET", "s", "text"],
        &["MULTI"],
        &["INCR", "s"],
        &["SET", "t", "1"],
        &["EXEC"],
        &["GET", "t"],
        &["DEL", "s", "t"],
    ],
    // A command Redis refuses inside a transaction (no-multi) aborts it.
    &[
        &["MULTI"],
        &["SET", "d", "1"],
        &["SHUTDOWN"],
        &["EXEC"],
        &["EXISTS", "d"],
    ],
    // Misuse.
    &[
        &["EXEC"],
        &["DISCARD"],
        &["MULTI", "extra"],
        &["MULTI"],
        &["MULTI"],
        &["WATCH", "k"],
        &["SET", "c", "1"],
        &["DISCARD"],
        &["EXISTS", "c"],
        &["WATCH"],
        &["UNWATCH"],
    ],
    // WATCH with nothing changed.
    &[
        &["WATCH", "w"],
        &["GET", "w"],
        &["MULTI"],
        &["SET", "w", "1"],
        &["EXEC"],
        &["GET", "w"],
        &["UNWATCH"],
        &["DEL", "w"],
    ],
    // WATCH, then DISCARD, then a plain transaction.
    &[
        &["WATCH", "x"],
        &["MULTI"],
        &["INCR", "x"],
        &["DISCARD"],
        &["MULTI"],
        &["INCR", "x"],
        &["EXEC"],
        &["DEL", "x"],
    ],
];

#[test]
fn replies_match_redis_server() {
    let direct = RedisServer::start();
    let behind = RedisServer::start();
    let proxy = Proxy::start(behind.port(), &["--threads", "1", "--expire", "1h"]);
    for proto in ["2", "3"] {
        for seq in SEQUENCES {
            same(&direct, &proxy, proto, seq);
        }
    }
}

/// The same sequences pipelined (the proxy queues them and sends one block): the same replies.
#[test]
fn pipelined_replies_match_redis_server() {
    let direct = RedisServer::start();
    let behind = RedisServer::start();
    let proxy = Proxy::start(behind.port(), &["--threads", "1", "--expire", "1h"]);
    for proto in ["2", "3"] {
        for seq in SEQUENCES {
            let mut d = Wire::connect(direct.port());
            let mut p = Wire::connect(proxy.port());
            for w in [&mut d, &mut p] {
                w.cmd(&["HELLO", proto]);
                w.cmd(&["FLUSHALL"]);
                w.send_raw(&seq.iter().map(|a| encode(a)).collect::<Vec<_>>().concat());
            }
            for step in seq.iter() {
                let want = String::from_utf8_lossy(&d.frame()).into_owned();
                let got = String::from_utf8_lossy(&p.frame()).into_owned();
                assert_eq!(got, want, "{step:?} in {seq:?} (RESP{proto})");
            }
        }
    }
}

/// A watched key changed by another client (through the proxy on any shard, or straight on
/// Redis) makes EXEC return a null.
#[test]
fn watched_key_changed_by_anyone_aborts_exec() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2", "--expire", "1h"]);
    for via_proxy in [true, false] {
        let mut c = Wire::connect(proxy.port());
        assert_eq!(c.cmd(&["SET", "acct", "10"]), "+OK\r\n");
        assert_eq!(c.cmd(&["GET", "acct"]), "$2\r\n10\r\n");
        assert_eq!(c.cmd(&["WATCH", "acct"]), "+OK\r\n");
        assert_eq!(c.cmd(&["GET", "acct"]), "$2\r\n10\r\n");
        let port = if via_proxy {
            proxy.port()
        } else {
            redis.port()
        };
        // Several connections: through the proxy some land on the other shard.
        for _ in 0..4 {
            assert_eq!(
                Wire::connect(port).cmd(&["INCR", "acct"]).chars().next(),
                Some(':')
            );
        }
        assert_eq!(c.cmd(&["MULTI"]), "+OK\r\n");
        assert_eq!(c.cmd(&["SET", "acct", "0"]), "+QUEUED\r\n");
        assert_eq!(c.cmd(&["EXEC"]), "*-1\r\n", "via proxy: {via_proxy}");
        assert_eq!(c.cmd(&["GET", "acct"]), "$2\r\n14\r\n");
        // And in RESP3 the null is `_`.
        c.cmd(&["HELLO", "3"]);
        c.cmd(&["WATCH", "acct"]);
        Wire::connect(port).cmd(&["INCR", "acct"]);
        c.cmd(&["MULTI"]);
        c.cmd(&["DEL", "acct"]);
        assert_eq!(c.cmd(&["EXEC"]), "_\r\n");
        assert_eq!(c.cmd(&["EXISTS", "acct"]), ":1\r\n");
        c.cmd(&["DEL", "acct"]);
    }
}

/// Keys written in a transaction are never read stale afterwards, even if they were cached
/// and read by others meanwhile: with and without invalidations from Redis, on the shared
/// connection and on a dedicated one (WATCH).
#[test]
fn read_your_writes_through_the_cache() {
    for invalidation in ["tracking", "off"] {
        for watch in [false, true] {
            let redis = RedisServer::start();
            let proxy = Proxy::start(
                redis.port(),
                &[
                    "--threads",
                    "1",
                    "--expire",
                    "1h",
                    "--invalidation",
                    invalidation,
                ],
            );
            let mut c = Wire::connect(proxy.port());
            let mut other = Wire::connect(proxy.port());
            for round in 0..100 {
                let v = round.to_string();
                let what = format!("round {round}, invalidation {invalidation}, watch {watch}");
                c.cmd(&["SET", "k", "old"]);
                assert_eq!(other.cmd(&["GET", "k"]), "$3\r\nold\r\n", "{what}");
                if watch {
                    assert_eq!(c.cmd(&["WATCH", "k"]), "+OK\r\n");
                }
                // The transaction and reads of the same key by another client, interleaved.
                c.send_raw(
                    &[
                        encode(&["MULTI"]),
                        encode(&["SET", "k", &v]),
                        encode(&["EXEC"]),
                    ]
                    .concat(),
                );
                other.send(&["GET", "k"]);
                assert_eq!(String::from_utf8_lossy(&c.frame()), "+OK\r\n");
                assert_eq!(String::from_utf8_lossy(&c.frame()), "+QUEUED\r\n");
                c.frame();
                other.frame();
                let want = format!("${}\r\n{v}\r\n", v.len());
                assert_eq!(c.cmd(&["GET", "k"]), want, "{what}");
                assert_eq!(other.cmd(&["GET", "k"]), want, "{what}");
            }
        }
    }
}

/// A pipelined MULTI ... EXEC (as client libraries send it) costs no dedicated connection:
/// Redis sees only the proxy's shared connection however many clients run transactions. An
/// interactive MULTI (the client waits for +OK) and WATCH take one each, and give it back.
#[test]
fn pipelined_transactions_use_the_shared_connection() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(
        redis.port(),
        &["--threads", "1", "--backend-idle-connections", "0"],
    );
    let mut c = Wire::connect(proxy.port());
    c.cmd(&["PING"]);
    c.cmd(&["SET", "warm", "1"]);
    let baseline = connected_clients(&redis);
    let mut clients: Vec<Wire> = (0..20).map(|_| Wire::connect(proxy.port())).collect();
    for (i, w) in clients.iter_mut().enumerate() {
        w.send_raw(
            &[
                encode(&["MULTI"]),
                encode(&["INCR", "n"]),
                encode(&["EXEC"]),
            ]
            .concat(),
        );
        assert_eq!(String::from_utf8_lossy(&w.frame()), "+OK\r\n");
        assert_eq!(String::from_utf8_lossy(&w.frame()), "+QUEUED\r\n");
        let exec = String::from_utf8_lossy(&w.frame()).into_owned();
        assert!(exec.starts_with("*1\r\n:"), "client {i}: {exec}");
    }
    assert_eq!(connected_clients(&redis), baseline);
    // Interactive MULTI: Redis queues it on a dedicated connection, so that its queue-time
    // errors are Redis's own at each command.
    assert_eq!(c.cmd(&["MULTI"]), "+OK\r\n");
    assert_eq!(connected_clients(&redis), baseline + 1);
    assert_eq!(c.cmd(&["INCR", "n"]), "+QUEUED\r\n");
    assert_eq!(c.cmd(&["EXEC"]), "*1\r\n:21\r\n");
    c.cmd(&["GET", "n"]);
    // WATCH does take one too, and gives it back.
    c.cmd(&["WATCH", "n"]);
    c.cmd(&["GET", "n"]);
    c.cmd(&["UNWATCH"]);
    c.cmd(&["GET", "n"]);
    drop(c);
    assert!(wait_until(Duration::from_secs(5), || connected_clients(
        &redis
    ) == baseline));
}

/// `--max-pinned` bounds dedicated connections: past it WATCH gets an error at once.
#[test]
fn max_pinned_is_an_error_not_a_hang() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1", "--max-pinned", "2"]);
    let mut a = Wire::connect(proxy.port());
    let mut b = Wire::connect(proxy.port());
    let mut c = Wire::connect(proxy.port());
    assert_eq!(a.cmd(&["WATCH", "x"]), "+OK\r\n");
    assert_eq!(b.cmd(&["WATCH", "x"]), "+OK\r\n");
    assert_eq!(
        c.cmd(&["WATCH", "x"]),
        "-ERR max pinned connections reached\r\n"
    );
    assert_eq!(c.cmd(&["SET", "x", "1"]), "+OK\r\n");
    drop(a);
    assert!(wait_until(Duration::from_secs(5), || c
        .cmd(&["WATCH", "x"])
        == "+OK\r\n"));
}

fn connected_clients(redis: &RedisServer) -> usize {
    let info = Wire::connect(redis.port()).cmd(&["INFO", "clients"]);
    let n: usize = info
        .lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("connected_clients");
    n - 1 // this INFO's own connection
}
