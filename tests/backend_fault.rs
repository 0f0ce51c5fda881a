//! Redis going away / coming back: cached hits still served, everything else
//! gets `-ERR backend...` quickly, never another request's reply, and the
//! proxy recovers once redis is back.
mod common;

use common::*;
use std::time::{Duration, Instant};

const ARGS: &[&str] = &[
    "--threads",
    "1",
    "--connect-timeout",
    "500ms",
    "--expire",
    "1h",
];

#[track_caller]
fn assert_backend_err(r: &Reply) {
    match r {
        Reply::Error(e) if e.starts_with("ERR backend") => {}
        other => panic!("expected -ERR backend..., got {other:?}"),
    }
}

/// Runs a command and asserts the reply arrives within `limit`.
#[track_caller]
fn timed_cmd(c: &mut Raw, args: &[&str], limit: Duration) -> Reply {
    let start = Instant::now();
    let r = c.cmd(args);
    let took = start.elapsed();
    assert!(took < limit, "{args:?} took {took:?} (reply {r:?})");
    r
}

#[test]
fn redis_down_hits_served_misses_error() {
    let mut redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), ARGS);
    let mut p = proxy.connect();
    assert_eq!(p.cmd(&["SET", "cached", "v"]), Reply::ok());
    assert_eq!(p.cmd(&["GET", "cached"]), Reply::bulk("v"));
    assert_eq!(p.cmd(&["GET", "cached"]), Reply::bulk("v"));

    redis.kill();
    let limit = Duration::from_secs(2);
    assert_eq!(
        timed_cmd(&mut p, &["GET", "cached"], limit),
        Reply::bulk("v"),
        "cache hit while redis is down"
    );
    assert_backend_err(&timed_cmd(&mut p, &["GET", "uncached"], limit));
    assert_backend_err(&timed_cmd(&mut p, &["SET", "x", "1"], limit));
    assert_backend_err(&timed_cmd(&mut p, &["INCR", "n"], limit));
    // Local commands keep working.
    assert_eq!(timed_cmd(&mut p, &["PING"], limit), Reply::pong());
    // New connections are accepted and answered too.
    let mut q = proxy.connect();
    assert_backend_err(&timed_cmd(&mut q, &["GET", "other"], limit));
    assert_eq!(timed_cmd(&mut q, &["ECHO", "e"], limit), Reply::bulk("e"));
    // Pipelined misses all get errors, in order with local replies.
    let mut bytes = Vec::new();
    for i in 0..50 {
        bytes.extend(encode(&["GET", &format!("miss:{i}")]));
        bytes.extend(encode(&["ECHO", &format!("e{i}")]));
    }
    q.send(&bytes);
    for i in 0..50 {
        assert_backend_err(&q.read_reply());
        assert_eq!(q.read_reply(), Reply::bulk(format!("e{i}")));
    }
}

#[test]
fn recovers_after_redis_restart() {
    let mut redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), ARGS);
    let mut p = proxy.connect();
    assert_eq!(p.cmd(&["SET", "a", "1"]), Reply::ok());
    redis.kill();
    assert_backend_err(&timed_cmd(
        &mut p,
        &["SET", "b", "2"],
        Duration::from_secs(2),
    ));

    redis.restart();
    let mut last = Reply::nil();
    let ok = wait_until(Duration::from_secs(5), || {
        last = timed_cmd(&mut p, &["SET", "b", "2"], Duration::from_secs(2));
        if last == Reply::ok() {
            return true;
        }
        assert_backend_err(&last);
        false
    });
    assert!(
        ok,
        "forwarded commands did not recover after restart; last reply {last:?}"
    );
    assert_eq!(p.cmd(&["GET", "b"]), Reply::bulk("2"));
    assert_eq!(p.cmd(&["INCR", "n"]), Reply::Int(1));
    assert_eq!(redis.cmd(&["GET", "b"]), Reply::bulk("2"));
    // A fresh connection works too.
    let mut q = proxy.connect();
    assert_eq!(q.cmd(&["GET", "b"]), Reply::bulk("2"));
}

#[test]
fn stale_cache_not_served_after_restart() {
    // The restarted redis has an empty dataset; once the proxy talks to it
    // again, keys cached from the old instance must not be served.
    let mut redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), ARGS);
    let mut p = proxy.connect();
    assert_eq!(p.cmd(&["SET", "k", "old"]), Reply::ok());
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("old"));
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("old"));
    redis.restart();
    let ok = wait_until(Duration::from_secs(5), || {
        p.cmd(&["SET", "probe", "1"]) == Reply::ok()
    });
    assert!(ok, "did not recover after restart");
    assert_eq!(redis.cmd(&["GET", "k"]), Reply::nil());
    assert_eq!(
        p.cmd(&["GET", "k"]),
        Reply::nil(),
        "stale value from the old redis served"
    );
}

#[test]
fn in_flight_requests_get_errors_never_wrong_replies() {
    let mut redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), ARGS);
    let mut d = redis.connect();
    const N: usize = 2000;
    let mut bytes = Vec::new();
    for i in 0..N {
        bytes.extend(encode(&["SET", &format!("k:{i}"), &format!("v:{i}")]));
    }
    d.send(&bytes);
    for _ in 0..N {
        assert_eq!(d.read_reply(), Reply::ok());
    }

    let mut p = proxy.connect();
    assert_eq!(p.cmd(&["PING"]), Reply::pong());
    // Make sure the backend connection exists, then freeze redis so that the
    // pipeline below is in flight when redis dies.
    assert_eq!(p.cmd(&["GET", "k:0"]), Reply::bulk("v:0"));
    redis.stop();
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for i in 0..N {
        match i % 3 {
            0 => {
                bytes.extend(encode(&["GET", &format!("k:{i}")]));
                expected.push(Reply::bulk(format!("v:{i}")));
            }
            1 => {
                bytes.extend(encode(&["SET", &format!("new:{i}"), "x"]));
                expected.push(Reply::ok());
            }
            _ => {
                bytes.extend(encode(&["ECHO", &format!("e:{i}")]));
                expected.push(Reply::bulk(format!("e:{i}")));
            }
        }
    }
    p.send(&bytes);
    // Kill redis once the proxy has taken the whole pipeline: every forwarded request is then
    // in flight.
    let taken = wait_until(Duration::from_secs(5), || p.unread_by_peer() == 0);
    assert!(taken, "the proxy did not read the pipeline");
    redis.kill();

    let mut errors = 0;
    for (i, want) in expected.iter().enumerate() {
        let got = p
            .try_read_reply()
            .unwrap_or_else(|e| panic!("reply #{i}: {e}"));
        if &got == want {
            continue;
        }
        assert!(
            i % 3 != 2,
            "reply #{i}: local ECHO must not fail, got {got:?}"
        );
        match &got {
            Reply::Error(e) if e.starts_with("ERR") => errors += 1,
            other => panic!("reply #{i}: expected {want:?} or -ERR, got {other:?}"),
        }
    }
    assert!(
        errors > 0,
        "redis was frozen then killed, yet every request succeeded"
    );
    assert_eq!(p.cmd(&["PING"]), Reply::pong());
}

#[test]
fn disconnecting_client_with_pending_requests_does_not_disturb_others() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), ARGS);
    let mut good = proxy.connect();
    for i in 0..100 {
        assert_eq!(
            good.cmd(&["SET", &format!("g:{i}"), &format!("gv:{i}")]),
            Reply::ok()
        );
    }

    for round in 0..5 {
        // Freeze redis so the quitter's requests are surely pending.
        redis.stop();
        {
            let mut quitter = proxy.connect();
            let mut bytes = Vec::new();
            for i in 0..5000 {
                bytes.extend(encode(&["GET", &format!("q:{i}")]));
                bytes.extend(encode(&["INCR", "quitter-counter"]));
            }
            quitter.send(&bytes);
            // Its requests reached the frozen redis: they are pending.
            let pending = wait_until(Duration::from_secs(5), || unread_at(redis.port()) > 0);
            assert!(
                pending,
                "round {round}: the quitter's requests never reached redis"
            );
        } // dropped with everything pending
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        for i in 0..300 {
            let k = format!("g:{}", (i * 7 + round) % 100);
            bytes.extend(encode(&["GET", &k]));
            expected.push(Reply::bulk(format!("gv:{}", (i * 7 + round) % 100)));
            bytes.extend(encode(&["INCR", &format!("good-counter-{round}")]));
            expected.push(Reply::Int(i as i64 + 1));
        }
        good.send(&bytes);
        // Queued behind the quitter's orphaned requests before redis answers any of them.
        let queued = wait_until(Duration::from_secs(5), || {
            good.unread_by_peer() < bytes.len() as u64
        });
        assert!(queued, "round {round}: the proxy took none of the pipeline");
        redis.cont();
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(&good.read_reply(), want, "round {round}, reply #{i}");
        }
        // And a few while other clients come and go without waiting.
        for j in 0..20 {
            let mut q = proxy.connect();
            q.send(&encode(&["GET", &format!("g:{j}")]).repeat(200));
            drop(q);
            assert_eq!(
                good.cmd(&["GET", &format!("g:{j}")]),
                Reply::bulk(format!("gv:{j}"))
            );
            assert_eq!(
                good.cmd(&["INCR", "after"]),
                Reply::Int(round as i64 * 20 + j + 1)
            );
        }
    }
}

#[test]
fn frozen_redis_times_out_and_recovers() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(
        redis.port(),
        &[
            "--threads",
            "1",
            "--backend-timeout",
            "500ms",
            "--connect-timeout",
            "500ms",
            "--expire",
            "1h",
        ],
    );
    let mut p = proxy.connect();
    assert_eq!(p.cmd(&["SET", "cached", "v"]), Reply::ok());
    assert_eq!(p.cmd(&["GET", "cached"]), Reply::bulk("v"));
    assert_eq!(p.cmd(&["GET", "cached"]), Reply::bulk("v"));

    redis.stop();
    let start = Instant::now();
    p.send_cmd(&["GET", "uncached"]);
    p.send_cmd(&["ECHO", "after"]);
    let r = p.read_reply();
    let took = start.elapsed();
    assert!(r.is_error(), "frozen redis: got {r:?}");
    assert_err_prefix(&r, "ERR");
    assert!(took < Duration::from_secs(3), "error took {took:?}");
    assert_eq!(p.read_reply(), Reply::bulk("after"));
    assert_eq!(p.cmd(&["PING"]), Reply::pong());

    redis.cont();
    let mut last = Reply::nil();
    let ok = wait_until(Duration::from_secs(5), || {
        last = p.cmd(&["SET", "x", "1"]);
        last == Reply::ok()
    });
    assert!(ok, "no recovery after SIGCONT; last {last:?}");
    assert_eq!(p.cmd(&["GET", "x"]), Reply::bulk("1"));
    assert_eq!(redis.cmd(&["GET", "x"]), Reply::bulk("1"));
}
