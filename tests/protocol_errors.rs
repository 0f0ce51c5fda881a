//! Malformed RESP input: `-ERR Protocol error...`, then the connection closes
//! quickly, without disturbing other clients.
mod common;

use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const BAD_INPUTS: &[(&str, &[u8])] = &[
    ("non-numeric bulk length", b"*1\r\n$x\r\n"),
    ("non-numeric multibulk length", b"*x\r\n"),
    ("missing $ in multibulk", b"*1\r\nfoo\r\n"),
    ("negative bulk length", b"*1\r\n$-7\r\n"),
    (
        "2 GB bulk in an array",
        b"*2\r\n$3\r\nSET\r\n$2147483648\r\n",
    ),
    ("huge bulk as first element", b"*1\r\n$2147483648\r\n"),
    ("100M-element array", b"*100000000\r\n"),
];

fn assert_protocol_error_and_close(proxy: &Proxy, what: &str, input: &[u8]) {
    let mut c = proxy.connect();
    let start = Instant::now();
    c.send(input);
    let r = c
        .try_read_reply()
        .unwrap_or_else(|e| panic!("{what}: no protocol error reply: {e}"));
    match &r {
        Reply::Error(e) if e.starts_with("ERR Protocol error") => {}
        other => panic!("{what}: expected -ERR Protocol error..., got {other:?}"),
    }
    c.expect_closed_within(Duration::from_secs(2));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{what}: took {:?}",
        start.elapsed()
    );
}

#[test]
fn malformed_requests_get_protocol_error_and_close() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    for (what, input) in BAD_INPUTS {
        assert_protocol_error_and_close(&proxy, what, input);
    }
    // The proxy is fine afterwards.
    let mut c = proxy.connect();
    assert_eq!(c.cmd(&["SET", "k", "v"]), Reply::ok());
    assert_eq!(c.cmd(&["GET", "k"]), Reply::bulk("v"));
}

#[test]
fn empty_or_negative_multibulk_is_ignored_or_rejected() {
    // redis-server silently ignores `*0` and `*-5`; a protocol error that
    // closes the connection is accepted too. Nothing else is.
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    for input in [&b"*0\r\n"[..], b"*-5\r\n", b"*-1\r\n"] {
        let mut c = proxy.connect();
        let mut bytes = input.to_vec();
        bytes.extend(encode(&["PING"]));
        c.send(&bytes);
        match c.read_reply() {
            r if r == Reply::pong() => {
                assert_eq!(c.cmd(&["ECHO", "x"]), Reply::bulk("x"));
            }
            Reply::Error(e) if e.starts_with("ERR Protocol error") => {
                c.expect_closed_within(Duration::from_secs(2));
            }
            other => panic!(
                "{:?}: unexpected reply {other:?}",
                input.escape_ascii().to_string()
            ),
        }
    }
}

#[test]
fn valid_commands_before_garbage_are_answered_in_order() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut c = proxy.connect();
    let mut bytes = encode(&["SET", "k", "v"]);
    bytes.extend(encode(&["GET", "k"]));
    bytes.extend(encode(&["INCR", "n"]));
    bytes.extend(encode(&["PING"]));
    bytes.extend_from_slice(b"*1\r\n$x\r\n");
    bytes.extend(encode(&["SET", "after", "garbage"]));
    c.send(&bytes);
    assert_eq!(c.read_reply(), Reply::ok());
    assert_eq!(c.read_reply(), Reply::bulk("v"));
    assert_eq!(c.read_reply(), Reply::Int(1));
    assert_eq!(c.read_reply(), Reply::pong());
    assert_err_prefix(&c.read_reply(), "ERR Protocol error");
    c.expect_closed_within(Duration::from_secs(2));
    assert_eq!(
        redis.cmd(&["EXISTS", "after"]),
        Reply::Int(0),
        "command after garbage executed"
    );
}

#[test]
fn other_client_unaffected_by_protocol_errors() {
    let redis = RedisServer::start();
    // One thread: the good client and the bad ones share a shard.
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let stop = Arc::new(AtomicBool::new(false));
    let mut good = proxy.connect();
    let good_stop = stop.clone();
    let good_thread = thread::spawn(move || {
        let mut round = 0u64;
        while !good_stop.load(Ordering::Relaxed) || round < 3 {
            let mut bytes = Vec::new();
            let mut expected = Vec::new();
            for i in 0..300u64 {
                let key = format!("good:{}", i % 37);
                let val = format!("r{round}:i{i}");
                bytes.extend(encode(&["SET", &key, &val]));
                expected.push(Reply::ok());
                bytes.extend(encode(&["GET", &key]));
                expected.push(Reply::bulk(&val));
                bytes.extend(encode(&["ECHO", &val]));
                expected.push(Reply::bulk(&val));
            }
            good.send(&bytes);
            for (i, want) in expected.iter().enumerate() {
                let got = good.read_reply();
                assert_eq!(&got, want, "good client, round {round}, reply #{i}");
            }
            round += 1;
        }
        round
    });
    for _ in 0..3 {
        for (what, input) in BAD_INPUTS {
            assert_protocol_error_and_close(&proxy, what, input);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = good_thread.join().expect("good client saw a wrong reply");
    assert!(rounds >= 3);
}
