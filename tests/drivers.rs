//! Smoke test with both monoio drivers: io_uring (when available) and the
//! legacy epoll driver forced through MONOIO_FORCE_LEGACY_DRIVER=1.
mod common;

use common::*;
use std::io::Write;
use std::thread;

/// The I/O driver the proxy's start-up line names (`... 1 shard(s) on <driver>, ...`).
fn driver_in_log(proxy: &Proxy) -> String {
    let log = proxy.log_contents();
    let line = log
        .lines()
        .find(|l| l.contains(" listening on "))
        .unwrap_or_else(|| panic!("no start-up line in the log:\n{log}"));
    line.split_once(" shard(s) on ")
        .and_then(|(_, rest)| rest.split(',').next())
        .unwrap_or_else(|| panic!("no driver in the start-up line {line:?}"))
        .to_string()
}

/// Whether this kernel lets a process set up an io_uring with the operations monoio's driver
/// needs (it may be too old, or io_uring refused by a seccomp profile or
/// `kernel.io_uring_disabled`): then the proxy must use io_uring, otherwise epoll.
fn io_uring_allowed() -> bool {
    use io_uring::opcode::*;
    let Ok(ring) = io_uring::IoUring::new(8) else {
        return false;
    };
    let mut probe = io_uring::Probe::new();
    if ring.submitter().register_probe(&mut probe).is_err() {
        return false;
    }
    [
        Accept::CODE,
        AsyncCancel::CODE,
        Close::CODE,
        Connect::CODE,
        Read::CODE,
        Recv::CODE,
        Send::CODE,
        Timeout::CODE,
        Write::CODE,
        Writev::CODE,
    ]
    .iter()
    .all(|&op| probe.is_supported(op))
}

fn smoke(env: &[(&str, &str)], driver: &str) {
    let redis = RedisServer::start();
    let proxy = Proxy::start_env(redis.port(), &["--threads", "1", "--expire", "1h"], env);
    assert_eq!(driver_in_log(&proxy), driver, "driver ({env:?})");
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
    let driver = if io_uring_allowed() {
        "io_uring"
    } else {
        "epoll"
    };
    smoke(&[], driver);
}

#[test]
fn legacy_driver_smoke() {
    smoke(&[("MONOIO_FORCE_LEGACY_DRIVER", "1")], "epoll");
}
