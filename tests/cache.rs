//! GET caching: hits, LRU eviction, TTL, capacity 0, coherence.
//!
//! Only `cmdstat_get` is counted: the proxy's backend connection sends its
//! own housekeeping commands as well.
mod common;

use common::*;
use std::thread::sleep;
use std::time::{Duration, Instant};

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
    let asked = Instant::now();
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    // The entry was filled after `asked`: a second GET this early must have been a hit (a
    // slower machine only skips the check).
    if asked.elapsed() < Duration::from_millis(250) {
        assert_eq!(redis.cmdstat_calls("get"), n0 + 1, "second GET must hit");
    }

    // --expire is what is tested: wait it out (a minimum: a slow machine only waits longer).
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
    // The key's expiry is what is tested: wait it out (a minimum: a slow machine only waits
    // longer). The proxy is asked first: a read in Redis would expire the key there and send
    // the proxy an invalidation.
    sleep(Duration::from_millis(450));
    assert_eq!(
        p.cmd(&["GET", "k"]),
        Reply::nil(),
        "expired key served from cache"
    );
    assert_eq!(redis.cmd(&["GET", "k"]), Reply::nil());
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

#[test]
fn mget_served_from_cache() {
    // MGET takes hits from the cache (filled by GETs) and fetches only the
    // missing keys from redis.
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1", "--expire", "1h"]);
    let mut p = proxy.connect();
    for k in ["a", "b", "c"] {
        assert_eq!(redis.cmd(&["SET", k, &format!("val-{k}")]), Reply::ok());
    }
    let want = Reply::Array(Some(vec![
        Reply::bulk("val-a"),
        Reply::nil(),
        Reply::bulk("val-b"),
        Reply::bulk("val-c"),
        Reply::bulk("val-a"),
    ]));
    let args = ["MGET", "a", "missing", "b", "c", "a"];
    assert_eq!(p.cmd(&args), want, "MGET, nothing cached");
    let calls = |r: &RedisServer| r.cmdstat_calls("get") + r.cmdstat_calls("mget");
    for k in ["a", "c"] {
        assert_eq!(p.cmd(&["GET", k]), Reply::bulk(format!("val-{k}")));
    }
    let n0 = calls(&redis);
    assert_eq!(
        p.cmd(&["MGET", "c", "a", "c"]),
        Reply::array_of_bulks(&["val-c", "val-a", "val-c"])
    );
    assert_eq!(calls(&redis), n0, "all-hit MGET must not reach redis");
    assert_eq!(p.cmd(&args), want, "MGET, partly cached");
    assert_eq!(calls(&redis), n0 + 1, "one MGET for the missing keys only");
    let mut d = redis.connect();
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for i in 0..300 {
        let keys: Vec<String> = (0..(i % 5 + 1))
            .map(|j| ["a", "b", "c", "missing", "a"][(i + j) % 5].to_string())
            .collect();
        let mut cmd = vec!["MGET".to_string()];
        cmd.extend(keys.iter().cloned());
        expected.push(d.cmd(&cmd));
        bytes.extend(encode(&cmd));
        if i % 7 == 0 {
            bytes.extend(encode(&["GET", "b"]));
            expected.push(Reply::bulk("val-b"));
        }
    }
    p.send(&bytes);
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(&p.read_reply(), want, "pipelined reply #{i}");
    }

    // Read-your-writes through MGET.
    assert_eq!(p.cmd(&["SET", "b", "new-b"]), Reply::ok());
    assert_eq!(p.cmd(&["DEL", "c"]), Reply::Int(1));
    assert_eq!(
        p.cmd(&["MGET", "a", "b", "c"]),
        Reply::Array(Some(vec![
            Reply::bulk("val-a"),
            Reply::bulk("new-b"),
            Reply::nil()
        ]))
    );
    // Errors like redis: arity, and a wrong-type key is just nil in MGET.
    assert_eq!(redis.cmd(&["RPUSH", "list", "x"]), Reply::Int(1));
    let mut d = redis.connect();
    for args in [&["MGET"][..], &["MGET", "list", "a"][..]] {
        assert_eq!(p.cmd(args), d.cmd(args), "{args:?}");
    }
}

#[test]
fn invalidation_off_relies_on_expire_and_own_writes() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(
        redis.port(),
        &[
            "--threads",
            "1",
            "--invalidation",
            "off",
            "--expire",
            "500ms",
        ],
    );
    let mut p = proxy.connect();
    assert_eq!(redis.cmd(&["SET", "k", "v1"]), Reply::ok());
    let asked = Instant::now();
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v1"));
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v1"));
    // External write: not seen until the entry expires.
    assert_eq!(redis.cmd(&["SET", "k", "v2"]), Reply::ok());
    let r = p.cmd(&["GET", "k"]);
    // The entry was filled after `asked` for 500ms (a slower machine only skips the check).
    if asked.elapsed() < Duration::from_millis(450) {
        assert_eq!(
            r,
            Reply::bulk("v1"),
            "--invalidation off still invalidated?"
        );
    }
    // --expire is what is tested: wait it out (a minimum: a slow machine only waits longer).
    sleep(Duration::from_millis(600));
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v2"));
    // Own writes still invalidate.
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v2"));
    assert_eq!(p.cmd(&["SET", "k", "v3"]), Reply::ok());
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v3"));
}
