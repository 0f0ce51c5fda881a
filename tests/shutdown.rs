//! Graceful shutdown on SIGTERM / SIGINT.
mod common;

use common::*;
use std::thread;
use std::time::Duration;

#[track_caller]
fn assert_clean_exit(proxy: &mut Proxy, what: &str) {
    let status = proxy
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{what}: proxy still running 5s after the signal"));
    assert!(status.success(), "{what}: exit status {status:?}");
}

#[test]
fn sigterm_idle_exits_zero() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(redis.port(), &[]);
    proxy.signal("TERM");
    assert_clean_exit(&mut proxy, "SIGTERM, idle");
}

#[test]
fn sigint_exits_zero() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    let mut p = proxy.connect();
    assert_eq!(p.cmd(&["SET", "k", "v"]), Reply::ok());
    proxy.signal("INT");
    assert_clean_exit(&mut proxy, "SIGINT");
}

#[test]
fn sigterm_with_idle_clients_connected_exits_zero() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    let mut clients: Vec<Raw> = (0..10).map(|_| proxy.connect()).collect();
    for c in clients.iter_mut() {
        assert_eq!(c.cmd(&["GET", "k"]), Reply::nil());
    }
    proxy.signal("TERM");
    assert_clean_exit(&mut proxy, "SIGTERM with idle clients");
    for c in clients.iter_mut() {
        c.expect_closed();
    }
}

#[test]
fn sigterm_with_redis_down_exits_zero() {
    let mut redis = RedisServer::start();
    let mut proxy = Proxy::start(redis.port(), &["--connect-timeout", "500ms"]);
    let mut p = proxy.connect();
    assert_eq!(p.cmd(&["SET", "k", "v"]), Reply::ok());
    redis.kill();
    let _ = p.cmd(&["SET", "k", "v2"]);
    proxy.signal("TERM");
    assert_clean_exit(&mut proxy, "SIGTERM with redis down");
}

#[test]
fn sigterm_completes_in_flight_replies() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut p = proxy.connect();
    const N: usize = 5000;
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for i in 0..N {
        if i % 2 == 0 {
            bytes.extend(encode(&["SET", &format!("sd:{i}"), &format!("v{i}")]));
            expected.push(Reply::ok());
        } else {
            bytes.extend(encode(&["GET", &format!("sd:{}", i - 1)]));
            expected.push(Reply::bulk(format!("v{}", i - 1)));
        }
    }
    let mut w = p.writer();
    let writer = thread::spawn(move || {
        use std::io::Write;
        // The proxy may close the socket before consuming everything.
        let _ = w.write_all(&bytes);
    });
    // Once the first reply is back the proxy is surely busy with the pipeline.
    assert_eq!(p.read_reply(), expected[0]);
    proxy.signal("TERM");

    // Replies that do arrive must be the right ones, in order (or -ERR), and
    // the stream must end cleanly at a reply boundary.
    let mut ok = 1;
    let mut errors = 0;
    for (i, want) in expected.iter().enumerate().skip(1) {
        match p.try_read_reply() {
            Ok(got) if &got == want => ok += 1,
            Ok(Reply::Error(e)) if e.starts_with("ERR") => errors += 1,
            Ok(got) => panic!("reply #{i}: expected {want:?} or -ERR, got {got:?}"),
            Err(e) => {
                assert!(
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::UnexpectedEof
                            | std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::ConnectionAborted
                    ),
                    "reply #{i}: {e} ({:?}); unread {:?}",
                    e.kind(),
                    p.pending_bytes().escape_ascii().to_string()
                );
                assert!(
                    p.pending_bytes().is_empty(),
                    "connection closed in the middle of a reply"
                );
                break;
            }
        }
    }
    assert_clean_exit(&mut proxy, "SIGTERM during a pipeline");
    writer.join().unwrap();
    eprintln!("in-flight at SIGTERM: {ok} correct replies, {errors} errors out of {N}");
}
