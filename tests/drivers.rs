//! Smoke test with both monoio drivers: io_uring (when available) and the
//! legacy epoll driver forced through MONOIO_FORCE_LEGACY_DRIVER=1.
mod common;

use common::*;
use std::io::Write;
use std::thread;

fn smoke(env: &[(&str, &str)]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start_env(redis.port(), &["--threads", "1", "--expire", "1h"], env);
    let mut p = proxy.connect();

    assert_eq!(p.cmd(&["PING"]), Reply::pong());
    assert_eq!(p.cmd(&["SET", "k", "v"]), Reply::ok());
    let n0 = redis.cmdstat_calls("get");
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    assert_eq!(
        redis.cmdstat_calls("get"),
        n0 + 1,
        "GET hits must not reach redis ({env:?})"
    );

    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for i in 0..1000 {
        let key = format!("s:{}", i % 50);
        match i % 4 {
            0 => {
                bytes.extend(encode(&["SET", &key, &format!("{key}:{i}")]));
                expected.push(Reply::ok());
            }
            1 => {
                bytes.extend(encode(&["GET", "k"]));
                expected.push(Reply::bulk("v"));
            }
            2 => {
                bytes.extend(encode(&["INCR", "ctr"]));
                expected.push(Reply::Int(i / 4 + 1));
            }
            _ => {
                bytes.extend(encode(&["PING", &key]));
                expected.push(Reply::bulk(&key));
            }
        }
    }
    let mut w = p.writer();
    let writer = thread::spawn(move || w.write_all(&bytes));
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(&p.read_reply(), want, "reply #{i} ({env:?})");
    }
    writer.join().unwrap().unwrap();
    assert_eq!(redis.cmd(&["GET", "ctr"]), Reply::bulk("250"));
}

#[test]
fn default_driver_smoke() {
    smoke(&[]);
}

#[test]
fn legacy_driver_smoke() {
    smoke(&[("MONOIO_FORCE_LEGACY_DRIVER", "1")]);
}
