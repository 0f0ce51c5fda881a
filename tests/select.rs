//! SELECT: each client has its own db, cache entries are per db, and MOVE, COPY .. DB,
//! FLUSHDB and SWAPDB leave nothing stale in any db.
mod common;
#[path = "common/frames.rs"]
mod frames;

use common::{Proxy, RedisServer};
use frames::Wire;

fn bulk(v: &str) -> String {
    format!("${}\r\n{v}\r\n", v.len())
}

#[test]
fn each_client_has_its_own_db_and_cache() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1", "--expire", "1h"]);
    let mut zero = Wire::connect(proxy.port());
    let mut one = Wire::connect(proxy.port());
    assert_eq!(one.cmd(&["SELECT", "1"]), "+OK\r\n");
    zero.cmd(&["SET", "k", "zero"]);
    one.cmd(&["SET", "k", "one"]);
    for _ in 0..3 {
        assert_eq!(zero.cmd(&["GET", "k"]), bulk("zero"));
        assert_eq!(one.cmd(&["GET", "k"]), bulk("one"));
        assert_eq!(
            one.cmd(&["MGET", "k", "k"]),
            format!("*2\r\n{0}{0}", bulk("one"))
        );
    }
    // Both were served from the cache after the first read of each.
    assert_eq!(redis.cmdstat_calls("get"), 2);
    // Writes land in the client's db, and evict only there.
    one.cmd(&["SET", "k", "uno"]);
    assert_eq!(one.cmd(&["GET", "k"]), bulk("uno"));
    assert_eq!(zero.cmd(&["GET", "k"]), bulk("zero"));
    assert_eq!(Wire::connect(redis.port()).cmd(&["GET", "k"]), bulk("zero"));
    // FLUSHDB empties that db only.
    assert_eq!(one.cmd(&["FLUSHDB"]), "+OK\r\n");
    assert_eq!(one.cmd(&["GET", "k"]), "$-1\r\n");
    assert_eq!(zero.cmd(&["GET", "k"]), bulk("zero"));
    // Switching back and forth on one connection, and a pipeline across dbs.
    one.send_raw(
        &[
            frames::encode(&["SET", "p", "in1"]),
            frames::encode(&["SELECT", "0"]),
            frames::encode(&["GET", "p"]),
            frames::encode(&["SELECT", "1"]),
            frames::encode(&["GET", "p"]),
        ]
        .concat(),
    );
    let replies: Vec<String> = (0..5)
        .map(|_| String::from_utf8_lossy(&one.frame()).into_owned())
        .collect();
    assert_eq!(
        replies,
        ["+OK\r\n", "+OK\r\n", "$-1\r\n", "+OK\r\n", &bulk("in1")]
    );
}

#[test]
fn move_copy_and_swapdb_leave_nothing_stale() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2", "--expire", "1h"]);
    let mut a = Wire::connect(proxy.port());
    let mut b = Wire::connect(proxy.port());
    b.cmd(&["SELECT", "1"]);
    // MOVE: gone from db 0, present in db 1, though both were cached.
    a.cmd(&["SET", "m", "moved"]);
    assert_eq!(a.cmd(&["GET", "m"]), bulk("moved"));
    assert_eq!(b.cmd(&["GET", "m"]), "$-1\r\n");
    assert_eq!(a.cmd(&["MOVE", "m", "1"]), ":1\r\n");
    assert_eq!(a.cmd(&["GET", "m"]), "$-1\r\n");
    assert_eq!(b.cmd(&["GET", "m"]), bulk("moved"));
    // COPY .. DB: the destination in the other db, cached before, is new.
    a.cmd(&["SET", "src", "copied"]);
    b.cmd(&["SET", "dst", "old"]);
    assert_eq!(b.cmd(&["GET", "dst"]), bulk("old"));
    assert_eq!(
        a.cmd(&["COPY", "src", "dst", "DB", "1", "REPLACE"]),
        ":1\r\n"
    );
    assert_eq!(b.cmd(&["GET", "dst"]), bulk("copied"));
    // SWAPDB: every client on every shard sees the swap, however much was cached.
    a.cmd(&["SET", "s", "was0"]);
    b.cmd(&["SET", "s", "was1"]);
    let mut readers: Vec<(Wire, &str)> = Vec::new();
    for i in 0..8 {
        let mut w = Wire::connect(proxy.port());
        let db = if i % 2 == 0 { "0" } else { "1" };
        w.cmd(&["SELECT", db]);
        let want = if db == "0" { "was0" } else { "was1" };
        assert_eq!(w.cmd(&["GET", "s"]), bulk(want));
        assert_eq!(w.cmd(&["GET", "s"]), bulk(want));
        readers.push((w, db));
    }
    assert_eq!(a.cmd(&["SWAPDB", "0", "1"]), "+OK\r\n");
    for (w, db) in readers.iter_mut() {
        let want = if *db == "0" { "was1" } else { "was0" };
        assert_eq!(w.cmd(&["GET", "s"]), bulk(want), "a client in db {db}");
        assert_eq!(w.cmd(&["GET", "s"]), bulk(want), "a client in db {db}");
    }
    // The same through a transaction (one block on the shared connection), then from a client
    // pinned by WATCH: every shard still sees each swap.
    a.send_raw(
        &[
            frames::encode(&["MULTI"]),
            frames::encode(&["SWAPDB", "0", "1"]),
            frames::encode(&["EXEC"]),
        ]
        .concat(),
    );
    for _ in 0..3 {
        a.frame();
    }
    for (w, db) in readers.iter_mut() {
        let want = if *db == "0" { "was0" } else { "was1" };
        assert_eq!(
            w.cmd(&["GET", "s"]),
            bulk(want),
            "after MULTI, a client in db {db}"
        );
        assert_eq!(
            w.cmd(&["GET", "s"]),
            bulk(want),
            "after MULTI, a client in db {db}"
        );
    }
    assert_eq!(a.cmd(&["WATCH", "s"]), "+OK\r\n");
    assert_eq!(a.cmd(&["SWAPDB", "0", "1"]), "+OK\r\n");
    for (w, db) in readers.iter_mut() {
        let want = if *db == "0" { "was1" } else { "was0" };
        assert_eq!(
            w.cmd(&["GET", "s"]),
            bulk(want),
            "after WATCH, a client in db {db}"
        );
    }
}

#[test]
fn select_errors_as_redis_server() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut p = Wire::connect(proxy.port());
    let mut d = Wire::connect(redis.port());
    // Once the proxy's connection is up (PING would be answered by the proxy itself): the
    // number of databases is learnt in its handshake.
    p.cmd(&["DBSIZE"]);
    for args in [
        &["SELECT", "16"][..],
        &["SELECT", "-1"],
        &["SELECT", "00"],
        &["SELECT", "x"],
        &["SELECT", "99999999999"],
        &["SELECT"],
        &["SELECT", "1", "2"],
        &["SELECT", "15"],
    ] {
        assert_eq!(p.cmd(args), d.cmd(args), "{args:?}");
    }
}

#[test]
fn db_in_the_url_is_the_default() {
    let redis = RedisServer::start();
    let url = format!("redis://127.0.0.1:{}/3", redis.port());
    let proxy = Proxy::start_with(&url, &["--threads", "1"], &[]);
    let mut p = Wire::connect(proxy.port());
    p.cmd(&["SET", "where", "three"]);
    let mut d = Wire::connect(redis.port());
    d.cmd(&["SELECT", "3"]);
    assert_eq!(d.cmd(&["GET", "where"]), bulk("three"));
    assert_eq!(p.cmd(&["SELECT", "0"]), "+OK\r\n");
    assert_eq!(p.cmd(&["GET", "where"]), "$-1\r\n");
}
