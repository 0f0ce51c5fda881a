//! Basic request/reply behaviour: local commands, GET/SET, verbatim forwarding.
mod common;

use common::*;

fn setup() -> (RedisServer, Proxy) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    (redis, proxy)
}

#[test]
fn ping_and_echo_answered_like_redis() {
    let (redis, proxy) = setup();
    let mut p = proxy.connect();
    let mut d = redis.connect();
    assert_eq!(p.cmd(&["PING"]), Reply::pong());
    assert_eq!(p.cmd(&["ping"]), Reply::pong());
    assert_eq!(p.cmd(&["PING", "hello world"]), Reply::bulk("hello world"));
    assert_eq!(p.cmd(&["PING", ""]), Reply::bulk(""));
    assert_eq!(p.cmd(&["ECHO", "hi"]), Reply::bulk("hi"));
    assert_eq!(p.cmd(&["echo", ""]), Reply::bulk(""));
    let binary: &[u8] = b"a\r\nb\0c\xff";
    assert_eq!(p.cmd(&[&b"ECHO"[..], binary]), Reply::bulk(binary));
    // Arity errors must look exactly like redis-server's.
    for args in [
        &["PING", "a", "b"][..],
        &["ECHO"][..],
        &["ECHO", "a", "b"][..],
    ] {
        let want = d.cmd(args);
        assert!(want.is_error(), "redis itself: {want:?}");
        assert_eq!(p.cmd(args), want, "{args:?}");
    }
    assert_eq!(p.cmd(&["PING"]), Reply::pong());
}

#[test]
fn get_set_roundtrip() {
    let (redis, proxy) = setup();
    let mut p = proxy.connect();
    assert_eq!(p.cmd(&["GET", "missing"]), Reply::nil());
    assert_eq!(p.cmd(&["SET", "k", "v"]), Reply::ok());
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    assert_eq!(p.cmd(&["get", "k"]), Reply::bulk("v"));
    assert_eq!(p.cmd(&["GeT", "k"]), Reply::bulk("v"));

    // Binary-safe keys and values, including CRLF and NUL.
    let key: &[u8] = b"bin\r\nkey\0";
    let val: &[u8] = b"\0\r\n$3\r\nfoo\r\n\xff";
    assert_eq!(p.cmd(&[&b"SET"[..], key, val]), Reply::ok());
    assert_eq!(p.cmd(&[&b"GET"[..], key]), Reply::bulk(val));
    assert_eq!(p.cmd(&[&b"GET"[..], key]), Reply::bulk(val));
    assert_eq!(redis.connect().cmd(&[&b"GET"[..], key]), Reply::bulk(val));

    // Empty value and a large value (1 MiB).
    assert_eq!(p.cmd(&["SET", "empty", ""]), Reply::ok());
    assert_eq!(p.cmd(&["GET", "empty"]), Reply::bulk(""));
    assert_eq!(p.cmd(&["GET", "empty"]), Reply::bulk(""));
    let big: Vec<u8> = (0..(1usize << 20)).map(|i| (i % 251) as u8).collect();
    assert_eq!(p.cmd(&[&b"SET"[..], b"big", &big]), Reply::ok());
    assert_eq!(p.cmd(&[&b"GET"[..], b"big"]), Reply::bulk(&big));
    assert_eq!(p.cmd(&[&b"GET"[..], b"big"]), Reply::bulk(&big));

    // Values written directly to redis are visible through the proxy.
    assert_eq!(redis.cmd(&["SET", "direct", "dv"]), Reply::ok());
    assert_eq!(p.cmd(&["GET", "direct"]), Reply::bulk("dv"));
}

#[test]
fn quit_replies_ok_and_closes() {
    let (_redis, proxy) = setup();
    let mut p = proxy.connect();
    assert_eq!(p.cmd(&["SET", "k", "v"]), Reply::ok());
    assert_eq!(p.cmd(&["QUIT"]), Reply::ok());
    p.expect_closed();

    // Pipelined: replies before QUIT are delivered, nothing after it.
    let mut p = proxy.connect();
    let mut bytes = encode(&["GET", "k"]);
    bytes.extend(encode(&["PING"]));
    bytes.extend(encode(&["quit"]));
    bytes.extend(encode(&["SET", "after-quit", "x"]));
    p.send(&bytes);
    assert_eq!(p.read_reply(), Reply::bulk("v"));
    assert_eq!(p.read_reply(), Reply::pong());
    assert_eq!(p.read_reply(), Reply::ok());
    let rest = p.expect_closed();
    assert!(
        rest.is_empty(),
        "data after QUIT's +OK: {:?}",
        rest.escape_ascii().to_string()
    );
}

#[test]
fn commands_forwarded_verbatim() {
    let (redis, proxy) = setup();
    let mut p = proxy.connect();
    let mut d = redis.connect();

    assert_eq!(p.cmd(&["INCR", "counter"]), Reply::Int(1));
    assert_eq!(p.cmd(&["INCR", "counter"]), Reply::Int(2));
    assert_eq!(p.cmd(&["INCRBY", "counter", "40"]), Reply::Int(42));
    assert_eq!(d.cmd(&["GET", "counter"]), Reply::bulk("42"));

    assert_eq!(p.cmd(&["HSET", "h", "f1", "v1", "f2", "v2"]), Reply::Int(2));
    assert_eq!(
        p.cmd(&["HGETALL", "h"]),
        Reply::array_of_bulks(&["f1", "v1", "f2", "v2"])
    );
    assert_eq!(p.cmd(&["HGET", "h", "f2"]), Reply::bulk("v2"));

    assert_eq!(p.cmd(&["LPUSH", "l", "a", "b", "c"]), Reply::Int(3));
    assert_eq!(
        p.cmd(&["LRANGE", "l", "0", "-1"]),
        Reply::array_of_bulks(&["c", "b", "a"])
    );
    assert_eq!(d.cmd(&["LLEN", "l"]), Reply::Int(3));

    // Nested arrays and nil arrays pass through intact.
    assert_eq!(p.cmd(&["ZADD", "z", "1", "one", "2", "two"]), Reply::Int(2));
    assert_eq!(
        p.cmd(&["ZRANGE", "z", "0", "-1", "WITHSCORES"]),
        Reply::array_of_bulks(&["one", "1", "two", "2"])
    );
    let scan = p.cmd(&["SCAN", "0", "COUNT", "1000"]);
    assert_eq!(scan, d.cmd(&["SCAN", "0", "COUNT", "1000"]));
    match &scan {
        Reply::Array(Some(items)) => assert_eq!(items.len(), 2),
        other => panic!("SCAN: {other:?}"),
    }
    assert_eq!(
        p.cmd(&["MGET", "counter", "nope", "counter"]),
        d.cmd(&["MGET", "counter", "nope", "counter"])
    );

    // Errors produced by redis pass through unchanged.
    let want = d.cmd(&["LPUSH", "counter", "x"]);
    assert_err_prefix(&want, "WRONGTYPE");
    assert_eq!(p.cmd(&["LPUSH", "counter", "x"]), want);
    assert_eq!(p.cmd(&["GET", "l"]), d.cmd(&["GET", "l"]));
    assert_err_prefix(&p.cmd(&["GET", "l"]), "WRONGTYPE");
}

#[test]
fn unknown_command_error_comes_from_redis() {
    let (redis, proxy) = setup();
    let mut p = proxy.connect();
    let mut d = redis.connect();
    for args in [
        &["FOOBAR"][..],
        &["FOOBAR", "a", "b"][..],
        &["nosuchcommand", "with", "args"][..],
    ] {
        let want = d.cmd(args);
        assert_err_prefix(&want, "ERR unknown command");
        assert_eq!(p.cmd(args), want, "{args:?}");
    }
    assert_eq!(p.cmd(&["PING"]), Reply::pong());
}

#[test]
fn wrong_arity_errors_like_redis() {
    let (redis, proxy) = setup();
    let mut p = proxy.connect();
    let mut d = redis.connect();
    for args in [
        &["GET"][..],
        &["GET", "a", "b"][..],
        &["SET", "k"][..],
        &["SET"][..],
        &["INCR"][..],
        &["DEL"][..],
        &["MSET", "a"][..],
        &["HSET", "h", "f"][..],
    ] {
        let want = d.cmd(args);
        assert!(want.is_error(), "redis accepted {args:?}: {want:?}");
        assert_eq!(p.cmd(args), want, "{args:?}");
    }
    // Still usable.
    assert_eq!(p.cmd(&["SET", "k", "v"]), Reply::ok());
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
}

#[test]
fn many_connections_at_once() {
    let (_redis, proxy) = setup();
    let mut conns: Vec<Raw> = (0..50).map(|_| proxy.connect()).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        c.send_cmd(&["SET", &format!("conn:{i}"), &format!("value-{i}")]);
    }
    for c in conns.iter_mut() {
        assert_eq!(c.read_reply(), Reply::ok());
    }
    for (i, c) in conns.iter_mut().enumerate().rev() {
        assert_eq!(
            c.cmd(&["GET", &format!("conn:{i}")]),
            Reply::bulk(format!("value-{i}"))
        );
        assert_eq!(
            c.cmd(&["GET", &format!("conn:{i}")]),
            Reply::bulk(format!("value-{i}"))
        );
    }
}
