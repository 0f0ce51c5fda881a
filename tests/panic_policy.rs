//! Panic policy: a panic anywhere aborts the whole process (so a supervisor restarts a clean
//! one) instead of leaving a shard's clients silently dropped. Debug builds have a fault
//! injection hook: with REDIS_PROXY_FAULT_INJECTION=1, `__REDIS_PROXY_PANIC__` panics inside a
//! client connection's handling.
mod common;

use common::*;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

const PANIC_CMD: &str = "__REDIS_PROXY_PANIC__";
const INJECT: &[(&str, &str)] = &[("REDIS_PROXY_FAULT_INJECTION", "1")];

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "fault injection exists in debug builds only"
)]
fn panic_in_a_connection_aborts_the_process() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start_env(redis.port(), &["--threads", "2"], INJECT);
    // Bystanders, likely on both shards, one with a reply it is still waiting for.
    let mut others: Vec<Raw> = (0..6).map(|_| proxy.connect()).collect();
    for (i, c) in others.iter_mut().enumerate() {
        assert_eq!(c.cmd(&["SET", &format!("k{i}"), "v"]), Reply::ok());
        assert_eq!(c.cmd(&["GET", &format!("k{i}")]), Reply::bulk("v"));
    }

    let mut victim = proxy.connect();
    assert_eq!(victim.cmd(&["PING"]), Reply::pong());
    let start = Instant::now();
    // Panics while handling this connection's input; no reply is due.
    let _ = victim.try_send(&encode(&[PANIC_CMD]));
    let status = proxy
        .wait_exit(Duration::from_secs(5))
        .expect("the proxy kept running after a panic");
    let took = start.elapsed();
    assert_eq!(
        status.signal(),
        Some(libc_sigabrt()),
        "expected death by SIGABRT, got {status:?}"
    );
    assert!(!status.success());
    assert!(took < Duration::from_secs(3), "abort took {took:?}");

    let log = proxy.log_contents();
    assert!(
        log.contains("fatal"),
        "the log does not say what happened:\n{log}"
    );
    assert!(
        log.contains(PANIC_CMD),
        "the log does not carry the panic message:\n{log}"
    );

    // Every client sees its connection end (not a hang).
    victim.expect_closed_within(Duration::from_secs(2));
    for c in others.iter_mut() {
        c.expect_closed_within(Duration::from_secs(2));
    }
    // Redis is untouched.
    assert_eq!(redis.cmd(&["GET", "k0"]), Reply::bulk("v"));
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "fault injection exists in debug builds only"
)]
fn panic_with_requests_in_flight_aborts_too() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start_env(redis.port(), &["--threads", "1"], INJECT);
    let mut c = proxy.connect();
    assert_eq!(c.cmd(&["SET", "k", "v"]), Reply::ok());
    // A pipeline with the panic in the middle of backend requests.
    let mut bytes = Vec::new();
    for i in 0..200 {
        bytes.extend(encode(&["INCR", &format!("n{i}")]));
    }
    bytes.extend(encode(&[PANIC_CMD]));
    for i in 0..200 {
        bytes.extend(encode(&["GET", &format!("m{i}")]));
    }
    let _ = c.try_send(&bytes);
    let status = proxy
        .wait_exit(Duration::from_secs(5))
        .expect("the proxy kept running after a panic");
    assert_eq!(status.signal(), Some(libc_sigabrt()), "{status:?}");
    // Whatever was answered before the abort is right; then the connection ends.
    c.set_read_timeout(Duration::from_secs(2));
    let mut answered = 0;
    while let Ok(r) = c.try_read_reply() {
        assert_eq!(r, Reply::Int(1), "reply #{answered}");
        answered += 1;
    }
    assert!(answered <= 200, "{answered} replies before the abort");
}

#[test]
fn panic_command_is_inert_without_fault_injection() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut c = proxy.connect();
    let r = c.cmd(&[PANIC_CMD]);
    assert!(r.is_error(), "{PANIC_CMD} without fault injection: {r:?}");
    assert_eq!(c.cmd(&["PING"]), Reply::pong());
    // Any value other than "1" does not arm it either.
    let proxy = Proxy::start_env(
        redis.port(),
        &["--threads", "1"],
        &[("REDIS_PROXY_FAULT_INJECTION", "0")],
    );
    let mut c = proxy.connect();
    assert!(c.cmd(&[PANIC_CMD]).is_error());
    assert_eq!(c.cmd(&["PING"]), Reply::pong());
}

/// SIGABRT on Linux (and every other Unix this runs on).
fn libc_sigabrt() -> i32 {
    6
}
