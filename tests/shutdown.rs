//! Graceful shutdown on SIGTERM / SIGINT.
mod common;

use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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

/// Request `i` of an endless pipeline: `SET sd:i vi` for even `i`, then a GET of that key.
fn shutdown_request(i: u64) -> (Vec<u8>, Reply) {
    if i.is_multiple_of(2) {
        (
            encode(&["SET", &format!("sd:{i}"), &format!("v{i}")]),
            Reply::ok(),
        )
    } else {
        (
            encode(&["GET", &format!("sd:{}", i - 1)]),
            Reply::bulk(format!("v{}", i - 1)),
        )
    }
}

#[test]
fn sigterm_completes_in_flight_replies() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut p = proxy.connect();
    // The client keeps pipelining until the proxy closes, so the signal surely finds requests
    // in flight however fast the machine is.
    let done = Arc::new(AtomicBool::new(false));
    let mut w = p.writer();
    let writer = {
        let done = done.clone();
        thread::spawn(move || {
            use std::io::Write;
            let mut i = 0;
            while !done.load(Ordering::Relaxed) {
                let mut bytes = Vec::new();
                for _ in 0..1000 {
                    bytes.extend(shutdown_request(i).0);
                    i += 1;
                }
                // The proxy stops reading at the signal and closes once it has answered what
                // it read: the rest of the pipeline is refused.
                if w.write_all(&bytes).is_err() {
                    break;
                }
            }
        })
    };
    // Once the first reply is back the proxy has read a batch of the pipeline.
    assert_eq!(p.read_reply(), shutdown_request(0).1);
    proxy.signal("TERM");

    // Replies that arrive are the right ones, in order, with no error (Redis is up); the
    // stream ends at a reply boundary.
    let mut received = 1;
    loop {
        match p.try_read_reply() {
            Ok(got) => {
                let want = shutdown_request(received).1;
                assert_eq!(got, want, "reply #{received} after SIGTERM");
                received += 1;
            }
            Err(e) => {
                assert!(
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::UnexpectedEof
                            | std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::ConnectionAborted
                    ),
                    "reply #{received}: {e} ({:?}); unread {:?}",
                    e.kind(),
                    p.pending_bytes().escape_ascii().to_string()
                );
                assert!(
                    p.pending_bytes().is_empty(),
                    "connection closed in the middle of reply #{received}: {:?}",
                    p.pending_bytes().escape_ascii().to_string()
                );
                break;
            }
        }
    }
    // Stop pipelining and hang up, so a proxy that drains input before closing need not wait.
    done.store(true, Ordering::Relaxed);
    p.shutdown_write();
    writer.join().unwrap();
    drop(p);
    assert_clean_exit(&mut proxy, "SIGTERM during a pipeline");
    eprintln!("in-flight at SIGTERM: {received} replies received");
    assert!(
        received >= 2,
        "nothing answered after SIGTERM, though the proxy had read a batch of requests"
    );

    // Every request Redis executed was answered: the proxy dropped no reply it had asked
    // for. Redis may still be running what the proxy sent just before closing: count once
    // the proxy's connection is gone.
    let gone = wait_until(Duration::from_secs(5), || redis.other_clients() == 0);
    assert!(
        gone,
        "the proxy's connection to Redis still open after it exited"
    );
    let set_oks = received.div_ceil(2);
    let get_replies = received / 2;
    let sets_run = redis.cmd(&["DBSIZE"]).as_int() as u64;
    let gets_run = redis.cmdstat_calls("get");
    assert!(
        set_oks >= sets_run,
        "Redis executed {sets_run} SETs but the client received only {set_oks} +OK"
    );
    assert!(
        get_replies >= gets_run,
        "Redis executed {gets_run} GETs but the client received only {get_replies} of their replies"
    );
}
