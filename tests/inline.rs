//! Inline commands as typed in telnet / nc, parsed like redis-server does.
mod common;

use common::*;
use std::time::Duration;

fn setup() -> (RedisServer, Proxy, Raw) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let p = proxy.connect();
    (redis, proxy, p)
}

#[test]
fn inline_ping_set_get() {
    let (redis, _proxy, mut p) = setup();
    p.send(b"PING\r\n");
    assert_eq!(p.read_reply(), Reply::pong());
    p.send(b"ping hello\r\n");
    assert_eq!(p.read_reply(), Reply::bulk("hello"));
    p.send(b"SET k v\r\n");
    assert_eq!(p.read_reply(), Reply::ok());
    p.send(b"GET k\r\n");
    assert_eq!(p.read_reply(), Reply::bulk("v"));
    p.send(b"get k\r\n");
    assert_eq!(p.read_reply(), Reply::bulk("v"));
    p.send(b"ECHO  spaced   \t out \r\n");
    // Extra arguments: redis-server's arity error, exactly.
    let want = redis.connect().cmd(&["ECHO", "spaced", "out"]);
    assert_eq!(p.read_reply(), want);
    p.send(b"INCR n\r\nINCR n\r\n");
    assert_eq!(p.read_reply(), Reply::Int(1));
    assert_eq!(p.read_reply(), Reply::Int(2));
    assert_eq!(redis.cmd(&["GET", "k"]), Reply::bulk("v"));
}

#[test]
fn inline_quoting_like_redis_server() {
    let (redis, _proxy, mut p) = setup();
    // Double quotes with escapes, single quotes.
    p.send(b"set \"a b\" \"c\\nd\"\r\n");
    assert_eq!(p.read_reply(), Reply::ok());
    assert_eq!(redis.cmd(&["GET", "a b"]), Reply::bulk("c\nd"));
    p.send(b"GET \"a b\"\r\n");
    assert_eq!(p.read_reply(), Reply::bulk("c\nd"));

    p.send(b"SET hex \"\\x41\\x42\\t\\\"q\\\"\"\r\n");
    assert_eq!(p.read_reply(), Reply::ok());
    assert_eq!(redis.cmd(&["GET", "hex"]), Reply::bulk("AB\t\"q\""));

    p.send(b"SET 'single q' 'it\\'s \"raw\"\\n'\r\n");
    assert_eq!(p.read_reply(), Reply::ok());
    assert_eq!(
        redis.cmd(&["GET", "single q"]),
        Reply::bulk("it's \"raw\"\\n")
    );

    p.send(b"ECHO \"\"\r\n");
    assert_eq!(p.read_reply(), Reply::bulk(""));
}

#[test]
fn inline_lf_only_and_empty_lines() {
    let (redis, _proxy, mut p) = setup();
    p.send(b"SET lf value\n");
    assert_eq!(p.read_reply(), Reply::ok());
    assert_eq!(redis.cmd(&["GET", "lf"]), Reply::bulk("value"));
    // Empty lines (CRLF or LF) are ignored, no reply.
    p.send(b"\r\n\n   \r\nGET lf\n\r\n");
    assert_eq!(p.read_reply(), Reply::bulk("value"));
    p.send(b"PING\r\n");
    assert_eq!(p.read_reply(), Reply::pong());
}

#[test]
fn inline_split_across_writes() {
    let (_redis, _proxy, mut p) = setup();
    for chunk in [
        &b"SE"[..],
        b"T sp",
        b"lit val",
        b"ue\r",
        b"\nGE",
        b"T split\r\n",
    ] {
        p.send(chunk);
        // Each piece in a read of its own: let the proxy take it before sending the next.
        assert!(wait_until(Duration::from_secs(5), || p.unread_by_peer() == 0));
    }
    assert_eq!(p.read_reply(), Reply::ok());
    assert_eq!(p.read_reply(), Reply::bulk("value"));
}

#[test]
fn inline_and_multibulk_mixed() {
    let (_redis, _proxy, mut p) = setup();
    let mut bytes = b"SET m 1\r\n".to_vec();
    bytes.extend(encode(&["INCR", "m"]));
    bytes.extend_from_slice(b"GET m\r\n");
    bytes.extend(encode(&["GET", "m"]));
    bytes.extend_from_slice(b"PING\n");
    p.send(&bytes);
    assert_eq!(p.read_reply(), Reply::ok());
    assert_eq!(p.read_reply(), Reply::Int(2));
    assert_eq!(p.read_reply(), Reply::bulk("2"));
    assert_eq!(p.read_reply(), Reply::bulk("2"));
    assert_eq!(p.read_reply(), Reply::pong());
}

#[test]
fn inline_quit() {
    let (_redis, _proxy, mut p) = setup();
    p.send(b"PING\r\nQUIT\r\n");
    assert_eq!(p.read_reply(), Reply::pong());
    assert_eq!(p.read_reply(), Reply::ok());
    p.expect_closed();
}

#[test]
fn inline_unbalanced_quotes_is_protocol_error() {
    let (_redis, proxy, mut p) = setup();
    p.send(b"SET \"unbalanced value\r\n");
    assert_err_prefix(&p.read_reply(), "ERR Protocol error");
    p.expect_closed();
    // Other connections unaffected.
    let mut q = proxy.connect();
    q.send(b"PING\r\n");
    assert_eq!(q.read_reply(), Reply::pong());
}
