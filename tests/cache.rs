//! GET caching: hits, LRU eviction, TTL, capacity 0, coherence.
//!
//! Only `cmdstat_get` is counted: the proxy's backend connection sends its
//! own housekeeping commands as well.
mod common;

use common::*;
use std::thread::sleep;
use std::time::Duration;

#[test]
fn hit_is_served_from_cache() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1", "--capacity", "1000"]);
    let mut p = proxy.connect();
    assert_eq!(redis.cmd(&["SET", "k", "v"]), Reply::ok());

    let before = redis.cmdstat_calls("get");
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    let after_miss = redis.cmdstat_calls("get");
    assert_eq!(after_miss, before + 1, "the first GET must reach redis");

    for _ in 0..10 {
        assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    }
    assert_eq!(
        redis.cmdstat_calls("get"),
        after_miss,
        "repeated GETs must be cache hits"
    );

    // Another connection on the same (single) shard hits too.
    let mut p2 = proxy.connect();
    assert_eq!(p2.cmd(&["get", "k"]), Reply::bulk("v"));
    assert_eq!(redis.cmdstat_calls("get"), after_miss);
}

#[test]
fn lru_evicts_least_recently_used() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--capacity", "2", "--threads", "1"]);
    let mut p = proxy.connect();
    for k in ["a", "b", "c"] {
        assert_eq!(redis.cmd(&["SET", k, &format!("val-{k}")]), Reply::ok());
    }
    let get = |p: &mut Raw, k: &str| {
        assert_eq!(p.cmd(&["GET", k]), Reply::bulk(format!("val-{k}")));
    };
    let n0 = redis.cmdstat_calls("get");
    get(&mut p, "a"); // miss
    get(&mut p, "b"); // miss
    get(&mut p, "a"); // hit: a is now more recent than b
    assert_eq!(
        redis.cmdstat_calls("get"),
        n0 + 2,
        "a, b missed; second a must hit"
    );
    get(&mut p, "c"); // miss, evicts b
    assert_eq!(redis.cmdstat_calls("get"), n0 + 3);

    get(&mut p, "a");
    assert_eq!(redis.cmdstat_calls("get"), n0 + 3, "a must still be cached");
    get(&mut p, "b");
    assert_eq!(
        redis.cmdstat_calls("get"),
        n0 + 4,
        "b must have been evicted"
    );
}

#[test]
fn entries_expire_after_ttl() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1", "--expire", "300ms"]);
    let mut p = proxy.connect();
    assert_eq!(redis.cmd(&["SET", "k", "v"]), Reply::ok());

    let n0 = redis.cmdstat_calls("get");
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    assert_eq!(redis.cmdstat_calls("get"), n0 + 1, "second GET must hit");

    sleep(Duration::from_millis(400));
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    assert_eq!(
        redis.cmdstat_calls("get"),
        n0 + 2,
        "after the TTL the GET must reach redis again"
    );
}

#[test]
fn capacity_zero_disables_cache() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1", "--capacity", "0"]);
    let mut p = proxy.connect();
    assert_eq!(redis.cmd(&["SET", "k", "v"]), Reply::ok());
    let n0 = redis.cmdstat_calls("get");
    for _ in 0..5 {
        assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    }
    assert_eq!(
        redis.cmdstat_calls("get"),
        n0 + 5,
        "every GET must reach redis"
    );
}

#[test]
fn capacity_from_env_var() {
    let redis = RedisServer::start();
    let proxy = Proxy::start_env(
        redis.port(),
        &["--threads", "1"],
        &[("REDIS_PROXY_CAPACITY", "0")],
    );
    let mut p = proxy.connect();
    assert_eq!(redis.cmd(&["SET", "k", "v"]), Reply::ok());
    let n0 = redis.cmdstat_calls("get");
    for _ in 0..3 {
        assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    }
    assert_eq!(
        redis.cmdstat_calls("get"),
        n0 + 3,
        "REDIS_PROXY_CAPACITY=0 must disable the cache"
    );
}

#[test]
fn redis_key_ttl_is_respected() {
    // Even with a long cache TTL, a key expiring in redis must not be served
    // from the cache after it expired.
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1", "--expire", "1h"]);
    let mut p = proxy.connect();
    assert_eq!(redis.cmd(&["SET", "k", "v", "PX", "300"]), Reply::ok());
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    sleep(Duration::from_millis(450));
    assert_eq!(redis.cmd(&["GET", "k"]), Reply::nil());
    assert_eq!(
        p.cmd(&["GET", "k"]),
        Reply::nil(),
        "expired key served from cache"
    );
}

#[test]
fn external_write_invalidates_cache() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1", "--expire", "1h"]);
    let mut p = proxy.connect();
    assert_eq!(redis.cmd(&["SET", "k", "v1"]), Reply::ok());
    let n0 = redis.cmdstat_calls("get");
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v1"));
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v1"));
    assert_eq!(redis.cmdstat_calls("get"), n0 + 1, "second GET must hit");

    // A write that bypasses the proxy: invalidation arrives asynchronously.
    assert_eq!(redis.cmd(&["SET", "k", "v2"]), Reply::ok());
    let mut last = Reply::nil();
    let seen = wait_until(Duration::from_secs(2), || {
        last = p.cmd(&["GET", "k"]);
        last == Reply::bulk("v2")
    });
    assert!(
        seen,
        "cache never picked up the external write; last GET: {last:?}"
    );

    // Deleted externally.
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v2"));
    assert_eq!(redis.cmd(&["DEL", "k"]), Reply::Int(1));
    let seen = wait_until(Duration::from_secs(2), || {
        last = p.cmd(&["GET", "k"]);
        last == Reply::nil()
    });
    assert!(
        seen,
        "cache never picked up the external DEL; last GET: {last:?}"
    );
}

#[test]
fn write_on_one_connection_visible_on_others_eventually() {
    // With 2 threads the connections may live on different shards.
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2", "--expire", "1h"]);
    let mut readers: Vec<Raw> = (0..4).map(|_| proxy.connect()).collect();
    let mut writer = proxy.connect();
    assert_eq!(writer.cmd(&["SET", "k", "old"]), Reply::ok());
    for r in readers.iter_mut() {
        assert_eq!(r.cmd(&["GET", "k"]), Reply::bulk("old"));
        assert_eq!(r.cmd(&["GET", "k"]), Reply::bulk("old"));
    }
    assert_eq!(writer.cmd(&["SET", "k", "new"]), Reply::ok());
    assert_eq!(
        writer.cmd(&["GET", "k"]),
        Reply::bulk("new"),
        "read-your-writes"
    );
    for (i, r) in readers.iter_mut().enumerate() {
        let mut last = Reply::nil();
        let ok = wait_until(Duration::from_secs(2), || {
            last = r.cmd(&["GET", "k"]);
            last == Reply::bulk("new")
        });
        assert!(ok, "reader {i} still sees {last:?}");
    }
}

#[test]
fn missing_key_then_created_externally() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1", "--expire", "1h"]);
    let mut p = proxy.connect();
    assert_eq!(p.cmd(&["GET", "k"]), Reply::nil());
    assert_eq!(p.cmd(&["GET", "k"]), Reply::nil());
    assert_eq!(redis.cmd(&["SET", "k", "v"]), Reply::ok());
    let mut last = Reply::nil();
    let ok = wait_until(Duration::from_secs(2), || {
        last = p.cmd(&["GET", "k"]);
        last == Reply::bulk("v")
    });
    assert!(
        ok,
        "a cached miss was never invalidated; last GET: {last:?}"
    );
}

#[test]
fn non_string_values_are_not_cached_wrongly() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut p = proxy.connect();
    assert_eq!(redis.cmd(&["RPUSH", "l", "x"]), Reply::Int(1));
    let want = redis.cmd(&["GET", "l"]);
    assert_err_prefix(&want, "WRONGTYPE");
    assert_eq!(p.cmd(&["GET", "l"]), want);
    assert_eq!(p.cmd(&["GET", "l"]), want);
    assert_eq!(redis.cmd(&["DEL", "l"]), Reply::Int(1));
    assert_eq!(redis.cmd(&["SET", "l", "now-a-string"]), Reply::ok());
    let mut last = Reply::nil();
    let ok = wait_until(Duration::from_secs(2), || {
        last = p.cmd(&["GET", "l"]);
        last == Reply::bulk("now-a-string")
    });
    assert!(ok, "last GET: {last:?}");
}
