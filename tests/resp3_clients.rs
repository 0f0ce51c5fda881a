//! RESP3 clients: HELLO 3, then replies byte for byte as redis-server sends a RESP3 client,
//! cached values in either protocol, HELLO 2 back to RESP2.
mod common;
#[path = "common/frames.rs"]
mod frames;

use common::{Proxy, RedisServer};
use frames::Wire;

/// HELLO's reply with the connection id masked (the proxy numbers its own clients).
fn mask_id(frame: &[u8]) -> String {
    let s = String::from_utf8_lossy(frame).into_owned();
    match s.find("$2\r\nid\r\n:") {
        Some(i) => {
            let rest = &s[i + 9..];
            let end = rest.find("\r\n").unwrap();
            format!("{}<id>{}", &s[..i + 9], &rest[end..])
        }
        None => s,
    }
}

/// Runs `script` on a connection straight to Redis and on one through the proxy, both after
/// `hello`, and compares every reply byte for byte.
fn same_replies(redis: &RedisServer, proxy: &Proxy, hello: &[&str], script: &[&[&str]]) {
    let mut direct = Wire::connect(redis.port());
    let mut through = Wire::connect(proxy.port());
    direct.send(hello);
    through.send(hello);
    assert_eq!(
        mask_id(&through.frame()),
        mask_id(&direct.frame()),
        "{hello:?}"
    );
    for args in script {
        direct.send(args);
        through.send(args);
        let want = direct.frame();
        let got = through.frame();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{args:?} after {hello:?}"
        );
    }
}

const SETUP: &[&[&str]] = &[
    &["DEL", "h", "z", "s", "str", "l", "missing"],
    &["HSET", "h", "f1", "v1", "f2", "v2"],
    &["ZADD", "z", "1.5", "a", "2", "b"],
    &["SADD", "s", "only"],
    &["SET", "str", "value"],
    &["RPUSH", "l", "x", "y"],
];

const SCRIPT: &[&[&str]] = &[
    &["HGETALL", "h"],
    &["ZRANGE", "z", "0", "-1", "WITHSCORES"],
    &["ZSCORE", "z", "a"],
    &["ZPOPMIN", "missing"],
    &["SMEMBERS", "s"],
    &["SISMEMBER", "s", "only"],
    &["GET", "missing"],
    &["GET", "missing"], // a cached nil: `_` for RESP3
    &["GET", "str"],
    &["GET", "str"], // a hit
    &["MGET", "str", "missing"],
    &["MGET", "str", "missing"], // all cached
    &["LPOP", "missing", "2"],
    &["HRANDFIELD", "missing", "1", "WITHVALUES"],
    &["XRANGE", "missing", "-", "+"],
    &["OBJECT", "ENCODING", "missing"],
    &["CONFIG", "GET", "maxmemory"],
    &["EVAL", "return {1, 'two', {3}}", "0"],
    &[
        "EVAL",
        "redis.setresp(3); return redis.call('HGETALL', KEYS[1])",
        "1",
        "h",
    ],
    &["PING"],
    &["ECHO", "hi"],
    &["INCR", "str"],
    &["NOSUCHCOMMAND"],
];

#[test]
fn resp3_replies_are_redis_servers() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1", "--expire", "1h"]);
    let mut setup = Wire::connect(redis.port());
    for args in SETUP {
        setup.cmd(args);
    }
    same_replies(&redis, &proxy, &["HELLO", "3"], SCRIPT);
    for args in SETUP {
        setup.cmd(args);
    }
    same_replies(&redis, &proxy, &["HELLO", "2"], SCRIPT);
}

#[test]
fn protocol_switches_per_connection() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1", "--expire", "1h"]);
    let mut w = Wire::connect(proxy.port());
    w.cmd(&["DEL", "nothing"]);
    assert_eq!(w.cmd(&["GET", "nothing"]), "$-1\r\n");
    assert!(w.cmd(&["HELLO", "3"]).starts_with("%7\r\n"));
    // The same cached nil, in the client's new protocol.
    assert_eq!(w.cmd(&["GET", "nothing"]), "_\r\n");
    let hello = w.cmd(&["HELLO"]);
    assert!(
        hello.starts_with("%7\r\n") && hello.contains("proto\r\n:3\r\n"),
        "{hello}"
    );
    assert!(w.cmd(&["HELLO", "2"]).starts_with("*14\r\n"));
    assert_eq!(w.cmd(&["GET", "nothing"]), "$-1\r\n");
    // A pipeline that switches protocol midway: each reply in the protocol of its request.
    w.send_raw(
        &[
            frames::encode(&["GET", "fresh"]),
            frames::encode(&["HELLO", "3"]),
            frames::encode(&["GET", "fresh"]),
        ]
        .concat(),
    );
    assert_eq!(String::from_utf8_lossy(&w.frame()), "$-1\r\n");
    w.frame();
    assert_eq!(String::from_utf8_lossy(&w.frame()), "_\r\n");
    // Errors as redis-server gives them.
    assert_eq!(
        w.cmd(&["HELLO", "4"]),
        "-NOPROTO unsupported protocol version\r\n"
    );
    assert_eq!(
        w.cmd(&["HELLO", "x"]),
        "-ERR Protocol version is not an integer or out of range\r\n"
    );
    assert_eq!(
        w.cmd(&["HELLO", "3", "SETNAME", "a b"]),
        "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
    );
}

#[test]
fn hello_reports_the_backend_version() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut direct = Wire::connect(redis.port());
    let mut through = Wire::connect(proxy.port());
    // Once the shard's connection is up.
    through.cmd(&["PING"]);
    through.cmd(&["SET", "k", "v"]);
    assert_eq!(
        mask_id(through.cmd(&["HELLO", "3"]).as_bytes()),
        mask_id(direct.cmd(&["HELLO", "3"]).as_bytes())
    );
}
