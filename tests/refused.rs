//! Connection-stateful commands are refused with an `-ERR ... not supported`
//! reply, and the connection stays usable. (HELLO is answered by the proxy
//! itself: see auth.rs; transactions and blocking commands: transactions.rs, blocking.rs;
//! pub/sub: pubsub.rs.)
mod common;

use common::*;
use std::time::{Duration, Instant};

const REFUSED: &[(&[&str], &str)] = &[
    (&["PSYNC", "?", "-1"], "'psync'"),
    (&["READONLY"], "'readonly'"),
    (&["SHUTDOWN", "NOSAVE"], "'shutdown'"),
];

#[track_caller]
fn assert_refused(r: &Reply, name: &str) {
    match r {
        Reply::Error(e)
            if e.starts_with("ERR") && e.contains(name) && e.contains("not supported") => {}
        other => panic!("expected -ERR ...{name}... not supported, got {other:?}"),
    }
}

#[test]
fn stateful_commands_refused_connection_stays_usable() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut p = proxy.connect();
    for (i, (args, name)) in REFUSED.iter().enumerate() {
        let start = Instant::now();
        let r = p.cmd(args);
        assert_refused(&r, name);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{args:?} was slow"
        );
        // Usable afterwards, and not in some MULTI/SUBSCRIBE/MONITOR state.
        assert_eq!(p.cmd(&["PING"]), Reply::pong(), "after {args:?}");
        let key = format!("after:{i}");
        assert_eq!(p.cmd(&["SET", &key, "v"]), Reply::ok(), "after {args:?}");
        assert_eq!(p.cmd(&["GET", &key]), Reply::bulk("v"), "after {args:?}");
    }
}

#[test]
fn lowercase_and_pipelined_refusals() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut p = proxy.connect();
    let mut bytes = Vec::new();
    for (args, _) in REFUSED {
        let lower: Vec<String> = args.iter().map(|a| a.to_ascii_lowercase()).collect();
        bytes.extend(encode(&lower));
        bytes.extend(encode(&["INCR", "n"]));
    }
    p.send(&bytes);
    for (i, (args, name)) in REFUSED.iter().enumerate() {
        assert_refused(&p.read_reply(), name);
        assert_eq!(
            p.read_reply(),
            Reply::Int(i as i64 + 1),
            "INCR after {args:?}"
        );
    }
}

#[test]
fn refused_commands_do_not_reach_redis() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut p = proxy.connect();

    assert_eq!(p.cmd(&["SET", "m", "1"]), Reply::ok());

    assert_eq!(p.cmd(&["GET", "m"]), Reply::bulk("1"));

    // SHUTDOWN must never reach redis.
    assert_refused(&p.cmd(&["SHUTDOWN", "NOSAVE"]), "'shutdown'");
    assert_eq!(redis.cmd(&["PING"]), Reply::pong());
    assert_eq!(p.cmd(&["INCR", "still-up"]), Reply::Int(1));
}
