//! CLIENT TRACKING for the proxy's clients: the commands byte for byte as redis-server answers
//! them, and invalidations for writes through the proxy (either shard), straight on Redis,
//! by the client itself (after its reply; none with NOLOOP), OPTIN/OPTOUT, REDIRECT to a RESP2
//! subscriber, BCAST prefixes, flushes, a bounded table, a redirect target that left.
mod common;
#[path = "common/frames.rs"]
mod frames;

use common::{Proxy, RedisServer};
use frames::Wire;
use std::time::Duration;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn invalidate(keys: &[&str]) -> String {
    let mut s = format!(">2\r\n$10\r\ninvalidate\r\n*{}\r\n", keys.len());
    for k in keys {
        s += &format!("${}\r\n{k}\r\n", k.len());
    }
    s
}

fn resp3(port: u16) -> Wire {
    let mut c = Wire::connect(port);
    c.send(&["HELLO", "3"]);
    c.frame();
    c
}

/// Replies of `script`, straight at Redis and through the proxy, compared byte for byte.
fn same_replies(redis: &RedisServer, proxy: &Proxy, hello3: bool, script: &[&[&str]]) {
    let (mut d, mut p) = if hello3 {
        (resp3(redis.port()), resp3(proxy.port()))
    } else {
        (Wire::connect(redis.port()), Wire::connect(proxy.port()))
    };
    for args in script {
        let want = text(&{
            d.send(args);
            d.frame()
        });
        let got = text(&{
            p.send(args);
            p.frame()
        });
        assert_eq!(got, want, "{args:?} (RESP3: {hello3})");
    }
}

const COMMANDS: &[&[&str]] = &[
    &["CLIENT", "TRACKINGINFO"],
    &["CLIENT", "GETREDIR"],
    &["CLIENT", "CACHING", "yes"],
    &["CLIENT", "TRACKING", "maybe"],
    &["CLIENT", "TRACKING", "on", "frob"],
    &["CLIENT", "TRACKING", "on", "prefix", "a"],
    &["CLIENT", "TRACKING", "on", "optin", "optout"],
    &["CLIENT", "TRACKING", "on", "bcast", "optin"],
    &["CLIENT", "TRACKING", "on", "redirect", "x"],
    &["CLIENT", "TRACKING", "on", "redirect", "999999"],
    &["CLIENT", "TRACKING", "on", "optin", "noloop"],
    &["CLIENT", "TRACKINGINFO"],
    &["CLIENT", "GETREDIR"],
    &["CLIENT", "CACHING", "no"],
    &["CLIENT", "CACHING", "maybe"],
    &["CLIENT", "CACHING", "yes"],
    &["CLIENT", "TRACKINGINFO"],
    &["CLIENT", "TRACKING", "on", "optout"],
    &["CLIENT", "TRACKING", "on", "bcast"],
    &["CLIENT", "TRACKING", "off"],
    &[
        "CLIENT", "TRACKING", "on", "bcast", "prefix", "ab", "prefix", "a",
    ],
    &[
        "CLIENT", "TRACKING", "on", "bcast", "prefix", "ab", "prefix", "cd",
    ],
    &["CLIENT", "TRACKING", "on", "bcast", "prefix", "abc"],
    &["CLIENT", "TRACKING", "on", "bcast", "prefix", "ef"],
    &["CLIENT", "TRACKINGINFO"],
    &["CLIENT", "TRACKING", "off"],
    &["CLIENT", "TRACKINGINFO"],
];

#[test]
fn commands_as_redis() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    same_replies(&redis, &proxy, false, COMMANDS);
    same_replies(&redis, &proxy, true, COMMANDS);
}

/// Reads through the cache and forwarded; writes through the proxy from connections on every
/// shard and straight on Redis: each invalidates the tracking client, once.
#[test]
fn invalidations_for_every_kind_of_write() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    let mut setup = Wire::connect(redis.port());
    setup.cmd(&["HSET", "h", "f", "v"]);
    let mut writers: Vec<Wire> = (0..6).map(|_| Wire::connect(proxy.port())).collect();
    let mut direct = Wire::connect(redis.port());
    for round in 0..4 {
        let mut t = resp3(proxy.port());
        assert_eq!(t.cmd(&["CLIENT", "TRACKING", "ON"]), "+OK\r\n");
        let k = format!("k{round}");
        // Through the cache (twice: a miss, then a hit), and forwarded.
        t.cmd(&["GET", &k]);
        t.cmd(&["GET", &k]);
        t.cmd(&["HGET", "h", "f"]);
        t.cmd(&["MGET", "m1", "m2"]);
        for (i, w) in writers.iter_mut().enumerate() {
            assert_eq!(w.cmd(&["SET", &k, "x"]), "+OK\r\n");
            t.set_read_timeout(Duration::from_secs(5));
            let got = t.try_frame().map(|f| text(&f));
            assert_eq!(
                got.ok(),
                Some(invalidate(&[&k])),
                "round {round}, writer {i}"
            );
            t.cmd(&["GET", &k]); // read again: tracked again
        }
        assert_eq!(direct.cmd(&["HSET", "h", "f", "w"]), ":0\r\n");
        assert_eq!(text(&t.frame()), invalidate(&["h"]));
        direct.cmd(&["MSET", "m1", "1", "m2", "2"]);
        let mut got = vec![text(&t.frame()), text(&t.frame())];
        got.sort();
        assert_eq!(got, [invalidate(&["m1"]), invalidate(&["m2"])]);
        // A key no longer tracked (invalidated, not read since) gives nothing: the next push is
        // the sentinel's.
        direct.cmd(&["SET", "m1", "again"]);
        t.cmd(&["GET", "sentinel"]);
        direct.cmd(&["SET", "sentinel", "1"]);
        assert_eq!(text(&t.frame()), invalidate(&["sentinel"]));
    }
}

/// The client's own write: its invalidation follows the write's reply, as from Redis; with
/// NOLOOP there is none, while other clients' writes still invalidate.
#[test]
fn own_writes_and_noloop() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    let script: &[&[&str]] = &[
        &["CLIENT", "TRACKING", "ON"],
        &["GET", "own"],
        &["SET", "own", "1"],
        &["GET", "own"],
    ];
    let mut replies = Vec::new();
    for port in [redis.port(), proxy.port()] {
        Wire::connect(redis.port()).cmd(&["DEL", "own"]);
        let mut c = resp3(port);
        for args in script {
            c.send(args);
        }
        replies.push((0..5).map(|_| text(&c.frame())).collect::<Vec<_>>());
    }
    assert_eq!(replies[1], replies[0]);
    let mut t = resp3(proxy.port());
    t.cmd(&["CLIENT", "TRACKING", "ON", "NOLOOP"]);
    t.cmd(&["GET", "a"]);
    t.cmd(&["GET", "b"]);
    assert_eq!(t.cmd(&["SET", "a", "mine"]), "+OK\r\n");
    let mut other = Wire::connect(proxy.port());
    other.cmd(&["SET", "b", "theirs"]);
    assert_eq!(
        text(&t.frame()),
        invalidate(&["b"]),
        "no invalidation for a"
    );
}

#[test]
fn optin_and_optout() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut w = Wire::connect(redis.port());
    let mut t = resp3(proxy.port());
    t.cmd(&["CLIENT", "TRACKING", "ON", "OPTIN"]);
    t.cmd(&["GET", "skipped"]);
    assert_eq!(t.cmd(&["CLIENT", "CACHING", "YES"]), "+OK\r\n");
    t.cmd(&["GET", "kept"]);
    t.cmd(&["GET", "skipped2"]); // CACHING YES applied to one command only
    w.cmd(&["MSET", "skipped", "1", "skipped2", "1"]);
    w.cmd(&["SET", "kept", "1"]);
    assert_eq!(text(&t.frame()), invalidate(&["kept"]));
    let mut t = resp3(proxy.port());
    t.cmd(&["CLIENT", "TRACKING", "ON", "OPTOUT"]);
    t.cmd(&["CLIENT", "CACHING", "NO"]);
    t.cmd(&["GET", "out1"]);
    t.cmd(&["GET", "in1"]);
    w.cmd(&["SET", "out1", "1"]);
    w.cmd(&["SET", "in1", "1"]);
    assert_eq!(text(&t.frame()), invalidate(&["in1"]));
}

/// RESP2: invalidations go to the client named by REDIRECT, subscribed to
/// `__redis__:invalidate`, wherever its shard; when it leaves, a RESP3 tracker hears so.
#[test]
fn redirect_to_a_resp2_subscriber() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    let mut w = Wire::connect(redis.port());
    for round in 0..6 {
        let mut r = Wire::connect(proxy.port());
        let id = r.cmd(&["CLIENT", "ID"]);
        let id = id.trim_start_matches(':').trim_end();
        r.cmd(&["SUBSCRIBE", "__redis__:invalidate"]);
        let mut t = Wire::connect(proxy.port());
        assert_eq!(
            t.cmd(&["CLIENT", "TRACKING", "ON", "REDIRECT", id]),
            "+OK\r\n"
        );
        assert_eq!(t.cmd(&["CLIENT", "GETREDIR"]), format!(":{id}\r\n"));
        let k = format!("r{round}");
        t.cmd(&["GET", &k]);
        w.cmd(&["SET", &k, "1"]);
        r.set_read_timeout(Duration::from_secs(10));
        assert_eq!(
            text(&r.frame()),
            format!(
                "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n${}\r\n{k}\r\n",
                k.len()
            ),
            "round {round}"
        );
        w.cmd(&["FLUSHALL"]);
        assert_eq!(
            text(&r.frame()),
            "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n$-1\r\n"
        );
    }
    // The target leaves: a RESP3 tracker is told its redirect is broken.
    let mut r = Wire::connect(proxy.port());
    let id = r.cmd(&["CLIENT", "ID"]);
    let id = id.trim_start_matches(':').trim_end().to_string();
    let mut t = resp3(proxy.port());
    t.cmd(&["CLIENT", "TRACKING", "ON", "REDIRECT", &id]);
    t.cmd(&["GET", "gone"]);
    drop(r);
    let mut killed = Wire::connect(proxy.port());
    assert!(common::wait_until(Duration::from_secs(5), || !killed
        .cmd(&["CLIENT", "LIST"])
        .contains(&format!("id={id} "))));
    w.cmd(&["SET", "gone", "1"]);
    assert_eq!(
        text(&t.frame()),
        format!(">2\r\n$21\r\ntracking-redir-broken\r\n:{id}\r\n")
    );
    assert!(t
        .cmd(&["CLIENT", "TRACKINGINFO"])
        .contains("broken_redirect"));
}

#[test]
fn bcast_prefixes() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    let mut w = Wire::connect(redis.port());
    let mut through = Wire::connect(proxy.port());
    for round in 0..4 {
        let mut t = resp3(proxy.port());
        assert_eq!(
            t.cmd(&["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "user:", "PREFIX", "cfg"]),
            "+OK\r\n"
        );
        // A broader prefix of another client on the same shard rebuilds the registration.
        let mut broad = resp3(proxy.port());
        broad.cmd(&["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "us"]);
        w.cmd(&["MSET", "user:1", "a", "other", "b"]);
        assert_eq!(text(&t.frame()), invalidate(&["user:1"]), "round {round}");
        assert_eq!(text(&broad.frame()), invalidate(&["user:1"]));
        through.cmd(&["SET", "cfg.x", "1"]);
        assert_eq!(text(&t.frame()), invalidate(&["cfg.x"]));
        through.cmd(&["SET", "usual", "1"]);
        assert_eq!(text(&broad.frame()), invalidate(&["usual"]));
        w.cmd(&["SET", "user:2", "1"]);
        assert_eq!(text(&t.frame()), invalidate(&["user:2"]), "not usual's");
    }
}

#[test]
fn flushall_invalidates_everything() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    let mut t = resp3(proxy.port());
    t.cmd(&["CLIENT", "TRACKING", "ON"]);
    t.cmd(&["GET", "x"]);
    Wire::connect(proxy.port()).cmd(&["FLUSHALL"]);
    assert_eq!(text(&t.frame()), ">2\r\n$10\r\ninvalidate\r\n_\r\n");
}

/// Past --tracking-table-max-keys a key is forgotten, and whoever read it told at once.
#[test]
fn bounded_table_invalidates_what_it_forgets() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(
        redis.port(),
        &["--threads", "1", "--tracking-table-max-keys", "10"],
    );
    let mut t = resp3(proxy.port());
    t.cmd(&["CLIENT", "TRACKING", "ON"]);
    for i in 0..10 {
        assert!(t.cmd(&["GET", &format!("b{i}")]).starts_with('_'));
    }
    t.send(&["GET", "b10"]);
    let first = text(&t.frame());
    let second = text(&t.frame());
    let (push, reply) = if first.starts_with('>') {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(reply, "_\r\n");
    assert!(
        push.starts_with(">2\r\n$10\r\ninvalidate\r\n*1\r\n$2\r\nb"),
        "{push:?}"
    );
}

#[test]
fn refused_without_a_coherent_cache() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--capacity", "0"]);
    let mut t = resp3(proxy.port());
    assert!(t
        .cmd(&["CLIENT", "TRACKING", "ON"])
        .starts_with("-ERR CLIENT TRACKING through redis-proxy needs"));
}

/// Found by `perf/tracking_stale_window.sh`: a client that joined another's fetch was placed
/// too early in the connection's order, so Redis's invalidation of a write the fetch had
/// already seen dropped it from the table; the next write then reached it no more, and it kept
/// a stale value for ever.
#[test]
fn a_joined_fetch_stays_tracked_past_an_earlier_write() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut c = [resp3(proxy.port()), resp3(proxy.port())];
    for t in c.iter_mut() {
        assert_eq!(t.cmd(&["CLIENT", "TRACKING", "ON"]), "+OK\r\n");
        assert!(t.cmd(&["GET", "j"]).starts_with('_'));
    }
    let mut other = Wire::connect(proxy.port());
    let mut w = Wire::connect(proxy.port());
    redis.stop();
    // A reply that will come in before Redis's invalidation of the SET, then the SET, then
    // both clients' reads of the key: one starts a fetch, the other joins it.
    other.send(&["INCR", "unrelated"]);
    w.send(&["SET", "j", "v1"]);
    for t in c.iter_mut() {
        assert_eq!(
            text(&t.frame()),
            invalidate(&["j"]),
            "the proxy's own write"
        );
    }
    for t in c.iter_mut() {
        t.send(&["GET", "j"]);
    }
    redis.cont();
    for (i, t) in c.iter_mut().enumerate() {
        // The read ran after the SET: no invalidation for that write may come, before or
        // after its reply (the next frame is the PING's).
        assert_eq!(text(&t.frame()), "$2\r\nv1\r\n", "client {i}");
        assert_eq!(t.cmd(&["PING"]), "+PONG\r\n", "client {i}");
    }
    assert_eq!(other.frame(), b":1\r\n");
    assert_eq!(w.frame(), b"+OK\r\n");
    Wire::connect(redis.port()).cmd(&["SET", "j", "v2"]);
    for (i, t) in c.iter_mut().enumerate() {
        t.set_read_timeout(Duration::from_secs(5));
        let got = t.try_frame().map(|f| text(&f));
        assert_eq!(
            got.ok(),
            Some(invalidate(&["j"])),
            "client {i} must hear of v2"
        );
    }
}

// Found in review: each of these left a tracking client with a stale value.

/// A fresh tracking client (it never sent anything to Redis: `last_conn` is 0) joins another
/// client's fetch; a write through the proxy then invalidates the key. The shard's own
/// invalidations are sent with `push_via` 0, which `push_ahead` takes for "the client's
/// connection", so the push is placed ahead of the GET's reply, which carries the value from
/// before the write: the client hears "invalidate k", then the old value, and caches it.
#[test]
fn invalidation_not_ahead_of_a_joined_read_of_the_old_value() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    Wire::connect(redis.port()).cmd(&["SET", "k", "v0"]);
    let mut t = resp3(proxy.port());
    assert_eq!(t.cmd(&["CLIENT", "TRACKING", "ON"]), "+OK\r\n");
    let mut a = Wire::connect(proxy.port());
    let mut w = Wire::connect(proxy.port());
    redis.stop();
    a.send(&["GET", "k"]); // starts the fetch
    std::thread::sleep(Duration::from_millis(200));
    t.send(&["GET", "k"]); // joins it
    std::thread::sleep(Duration::from_millis(200));
    w.send(&["SET", "k", "v1"]); // after the GET on the same connection
    std::thread::sleep(Duration::from_millis(200));
    redis.cont();
    let first = text(&t.frame());
    let second = text(&t.frame());
    // Redis (and a direct connection) would send the value read, then the invalidation.
    assert_eq!(
        (first.as_str(), second.as_str()),
        (
            "$2\r\nv0\r\n",
            ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"
        ),
        "an invalidation ahead of the stale value it invalidates"
    );
    assert_eq!(a.frame(), b"$2\r\nv0\r\n");
    assert_eq!(w.frame(), b"+OK\r\n");
}

/// A read queued in a transaction on the shared connection is remembered at its place when
/// queued (or as a cache hit), not at EXEC's, where Redis runs it. Redis's invalidation of a
/// write between the two then drops the client from the table; EXEC reads the new value, Redis
/// tracks the key again, and the next write reaches the client no more.
#[test]
fn a_read_in_a_transaction_is_tracked_where_exec_runs_it() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut direct = Wire::connect(redis.port());
    direct.cmd(&["SET", "k", "v0"]);
    let mut a = Wire::connect(proxy.port());
    assert_eq!(a.cmd(&["GET", "k"]), "$2\r\nv0\r\n"); // cached; Redis tracks k
    let mut t = resp3(proxy.port());
    assert_eq!(t.cmd(&["CLIENT", "TRACKING", "ON"]), "+OK\r\n");
    // Pipelined: queued by the proxy, for one block at EXEC.
    let mut both = frames::encode(&["MULTI"]);
    both.extend(frames::encode(&["GET", "k"]));
    t.send_raw(&both);
    assert_eq!(text(&t.frame()), "+OK\r\n");
    assert_eq!(text(&t.frame()), "+QUEUED\r\n");
    direct.cmd(&["SET", "k", "v1"]);
    std::thread::sleep(Duration::from_millis(200));
    t.send(&["EXEC"]);
    let mut got = text(&t.frame());
    if got.starts_with('>') {
        got = text(&t.frame()); // the (harmless) invalidation for v1
    }
    assert_eq!(got, "*1\r\n$2\r\nv1\r\n");
    direct.cmd(&["SET", "k", "v2"]);
    t.set_read_timeout(Duration::from_secs(3));
    let got = t.try_frame().map(|f| text(&f));
    assert_eq!(
        got.ok().as_deref(),
        Some(">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"),
        "the client read v1 in EXEC and must hear of v2"
    );
}

/// BCAST with NOLOOP: the shard remembers the keys the client writes, and swallows the next
/// broadcast of each. A write that changes nothing (SET NX on an existing key, DEL of a missing
/// one, a write that fails) gets no broadcast from Redis, so the next one, for another
/// client's write, is swallowed instead: the client never hears of that write.
#[test]
fn bcast_noloop_never_swallows_another_clients_write() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut direct = Wire::connect(redis.port());
    direct.cmd(&["SET", "k", "v0"]);
    let mut t = resp3(proxy.port());
    assert_eq!(
        t.cmd(&["CLIENT", "TRACKING", "ON", "BCAST", "NOLOOP"]),
        "+OK\r\n"
    );
    assert_eq!(t.cmd(&["GET", "k"]), "$2\r\nv0\r\n");
    assert_eq!(t.cmd(&["SET", "k", "x", "NX"]), "_\r\n"); // changes nothing
    direct.cmd(&["SET", "k", "v1"]);
    t.set_read_timeout(Duration::from_secs(3));
    let got = t.try_frame().map(|f| text(&f));
    assert_eq!(
        got.ok().as_deref(),
        Some(">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"),
        "another client's write must reach a BCAST NOLOOP client"
    );
}

/// A client's first read of a key still in flight (its reply after Redis's invalidation: it
/// saw the write), then a cache hit of the same key (the value from before the write). The
/// table keeps the client silently because its *first* read ran after the write, though its
/// latest (the hit) did not: the client caches the old value and is never told.
#[test]
fn a_cache_hit_after_an_inflight_read_is_invalidated() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut d = Wire::connect(redis.port());
    d.cmd(&["SET", "k", "v0"]);
    let mut a = Wire::connect(proxy.port());
    assert_eq!(a.cmd(&["GET", "k"]), "$2\r\nv0\r\n"); // cached, tracked by Redis
    std::thread::sleep(Duration::from_millis(100));
    let mut t = resp3(proxy.port());
    assert_eq!(t.cmd(&["CLIENT", "TRACKING", "ON"]), "+OK\r\n");
    redis.stop();
    d.send(&["SET", "k", "v1"]); // runs first when Redis resumes
    std::thread::sleep(Duration::from_millis(200));
    let mut both = frames::encode(&["MGET", "k", "x"]); // forwarded: runs after the SET
    both.extend(frames::encode(&["GET", "k"])); // a cache hit: v0, from before the SET
    t.send_raw(&both);
    std::thread::sleep(Duration::from_millis(200));
    redis.cont();
    assert_eq!(d.frame(), b"+OK\r\n");
    let mut frames = Vec::new();
    t.set_read_timeout(Duration::from_secs(3));
    while let Ok(f) = t.try_frame() {
        frames.push(text(&f));
        if frames.len() == 4 {
            break;
        }
    }
    let hit = frames.iter().position(|f| f == "$2\r\nv0\r\n");
    assert!(
        hit.is_some(),
        "the scenario needs the stale hit: {frames:?}"
    );
    let inv = ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n";
    assert!(
        frames[hit.unwrap()..].iter().any(|f| f == inv),
        "the client got v0 from the cache after the SET and must hear of it: {frames:?}"
    );
}

/// A NOLOOP BCAST client does not hear of its own writes; another BCAST client of the same
/// shard does (its writes go through the BCAST connection, whose broadcasts leave them out).
#[test]
fn bcast_noloop_own_writes_reach_the_others() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut quiet = resp3(proxy.port());
    assert_eq!(
        quiet.cmd(&["CLIENT", "TRACKING", "ON", "BCAST", "NOLOOP"]),
        "+OK\r\n"
    );
    let mut other = resp3(proxy.port());
    assert_eq!(other.cmd(&["CLIENT", "TRACKING", "ON", "BCAST"]), "+OK\r\n");
    assert_eq!(quiet.cmd(&["SET", "mine", "1"]), "+OK\r\n");
    assert_eq!(text(&other.frame()), invalidate(&["mine"]));
    Wire::connect(redis.port()).cmd(&["SET", "theirs", "1"]);
    // Its next frame is the other write's, not its own.
    assert_eq!(text(&quiet.frame()), invalidate(&["theirs"]));
    assert_eq!(text(&other.frame()), invalidate(&["theirs"]));
}
