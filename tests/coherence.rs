//! A coherent cache: what the proxy serves follows what Redis holds.
//!
//! Writes made straight to Redis reach every shard's cache through CLIENT TRACKING pushes;
//! flushes, key TTLs and a restarted Redis empty it; a fetch racing a write never fills it with
//! the old value; concurrent misses share one fetch; absent keys are cached and invalidated
//! like present ones; MGET mixes hits with one backend MGET. `--invalidation off` and a backend
//! that refuses HELLO 3 fall back to TTL-only caching.
//!
//! Clients land on shards by the kernel's SO_REUSEPORT hash, so tests that must reach every
//! shard open many connections. Backend GETs are counted with `INFO commandstats`
//! (`cmdstat_get`): a cache hit never reaches Redis.
mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Connections per test that must reach both shards of `--threads 2` (the chance that 24
/// connections all land on one shard is 2^-23).
const SPREAD: usize = 24;

/// Starts the proxy and waits until every shard is connected to Redis: then every shard's
/// listener is bound (so connections spread over all of them) and no fetch is queued before
/// the handshake (which empties the cache and would make the first fill not count).
fn start_proxy(redis: &RedisServer, args: &[&str]) -> Proxy {
    let proxy = Proxy::start(redis.port(), args);
    let threads: usize = args
        .windows(2)
        .find(|w| w[0] == "--threads")
        .map(|w| w[1].parse().expect("--threads N"))
        .expect("tests pass --threads");
    let mut log = String::new();
    let connected = wait_until(Duration::from_secs(5), || {
        log = proxy.log_contents();
        (0..threads).all(|i| log.contains(&format!("shard {i}: connected to Redis")))
    });
    assert!(connected, "not every shard connected to Redis; log:\n{log}");
    proxy
}

fn connections(proxy: &Proxy, n: usize) -> Vec<Raw> {
    (0..n).map(|_| proxy.connect()).collect()
}

/// Polls `GET key` on `c` until it returns `want` or `timeout` passes (at least one read);
/// the last reply on failure.
fn poll_get(c: &mut Raw, key: &str, want: &Reply, timeout: Duration) -> Result<(), Reply> {
    let mut last = Reply::nil();
    if wait_until(timeout, || {
        last = c.cmd(&["GET", key]);
        &last == want
    }) {
        Ok(())
    } else {
        Err(last)
    }
}

/// Time left until `deadline` (zero once past: [`poll_get`] then reads once).
fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// GETs `key` twice on every connection, expecting `want` (the second read is a hit).
fn warm(conns: &mut [Raw], key: &str, want: &Reply) {
    for (i, c) in conns.iter_mut().enumerate() {
        for _ in 0..2 {
            assert_eq!(
                &c.cmd(&["GET", key]),
                want,
                "warming {key} on connection {i}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// (a) direct writes reach every shard
// ---------------------------------------------------------------------------

#[test]
fn direct_write_is_seen_through_every_shard() {
    let redis = RedisServer::start();
    let proxy = start_proxy(&redis, &["--threads", "2", "--expire", "1h"]);
    let mut conns = connections(&proxy, SPREAD);
    assert_eq!(redis.cmd(&["SET", "k", "old"]), Reply::ok());

    let g0 = redis.cmdstat_calls("get");
    warm(&mut conns, "k", &Reply::bulk("old"));
    let fills = redis.cmdstat_calls("get") - g0;
    assert_eq!(
        fills, 2,
        "warming through {SPREAD} connections should fetch once per shard (2 shards), \
         then hit"
    );

    assert_eq!(redis.cmd(&["SET", "k", "new"]), Reply::ok());
    let g1 = redis.cmdstat_calls("get");
    let new = Reply::bulk("new");
    let mut immediate = 0;
    let mut stale = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(1);
    for (i, c) in conns.iter_mut().enumerate() {
        let first = c.cmd(&["GET", "k"]);
        if first == new {
            immediate += 1;
        }
        if let Err(last) = poll_get(c, "k", &new, left(deadline)) {
            stale.push(format!("connection {i}: still {last:?} after 1s"));
        }
    }
    assert!(
        stale.is_empty(),
        "a direct write never reached some shard's cache:\n  {}",
        stale.join("\n  ")
    );
    assert!(
        immediate * 4 >= SPREAD * 3,
        "only {immediate} of {SPREAD} connections saw the direct write on their first read"
    );
    assert_eq!(
        redis.cmdstat_calls("get") - g1,
        2,
        "after the invalidation each shard should refetch the key exactly once"
    );
}

// ---------------------------------------------------------------------------
// (b) FLUSHALL / FLUSHDB straight to Redis
// ---------------------------------------------------------------------------

fn direct_flush_empties_every_shard(flush: &str) {
    let redis = RedisServer::start();
    let proxy = start_proxy(&redis, &["--threads", "2", "--expire", "1h"]);
    let mut conns = connections(&proxy, SPREAD);
    let keys = ["k1", "k2", "k3"];
    for k in keys {
        assert_eq!(redis.cmd(&["SET", k, &format!("v-{k}")]), Reply::ok());
    }
    for k in keys {
        warm(&mut conns, k, &Reply::bulk(format!("v-{k}")));
    }

    assert_eq!(redis.cmd(&[flush]), Reply::ok());
    let mut stale = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(1);
    for (i, c) in conns.iter_mut().enumerate() {
        for k in keys {
            if let Err(last) = poll_get(c, k, &Reply::nil(), left(deadline)) {
                stale.push(format!("connection {i}: {k} still {last:?}"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "{flush} straight to Redis left values cached:\n  {}",
        stale.join("\n  ")
    );

    // The emptied caches keep working: new values (written directly) are seen too.
    for k in keys {
        assert_eq!(redis.cmd(&["SET", k, "again"]), Reply::ok());
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    for (i, c) in conns.iter_mut().enumerate() {
        for k in keys {
            if let Err(last) = poll_get(c, k, &Reply::bulk("again"), left(deadline)) {
                panic!("connection {i}: {k} is {last:?} after {flush} and a new SET");
            }
        }
    }
}

#[test]
fn direct_flushall_empties_every_shard() {
    direct_flush_empties_every_shard("FLUSHALL");
}

#[test]
fn direct_flushdb_empties_every_shard() {
    direct_flush_empties_every_shard("FLUSHDB");
}

// ---------------------------------------------------------------------------
// (c) a key's own TTL bounds its cached lifetime
// ---------------------------------------------------------------------------

fn key_ttl_bounds_cached_lifetime(extra: &[&str]) {
    let redis = RedisServer::start();
    let mut args = vec!["--threads", "1", "--expire", "1h"];
    args.extend_from_slice(extra);
    let proxy = start_proxy(&redis, &args);
    let mut p = proxy.connect();

    let set_at = Instant::now();
    assert_eq!(redis.cmd(&["SET", "k", "v", "PX", "400"]), Reply::ok());
    let g0 = redis.cmdstat_calls("get");
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    let fetched_in = set_at.elapsed();
    if fetched_in < Duration::from_millis(300) {
        assert_eq!(
            redis.cmdstat_calls("get") - g0,
            1,
            "the second GET should have been a hit"
        );
    }

    // The key's own expiry is what is tested: wait out its 400ms (a minimum, so a slow
    // machine only waits longer). No probe of Redis meanwhile, which would expire the key there
    // and send the proxy an invalidation.
    thread::sleep(Duration::from_millis(550).saturating_sub(set_at.elapsed()));
    assert_eq!(
        p.cmd(&["GET", "k"]),
        Reply::nil(),
        "a key set with PX 400 is still served {:?} after it was set (--expire 1h)",
        set_at.elapsed()
    );
    assert_eq!(redis.cmd(&["EXISTS", "k"]), Reply::Int(0));
}

#[test]
fn key_ttl_shorter_than_expire_is_respected() {
    key_ttl_bounds_cached_lifetime(&[]);
}

/// Without invalidation pushes (which also report expirations) only the PTTL bound can drop
/// the entry in time.
#[test]
fn key_ttl_shorter_than_expire_is_respected_without_tracking() {
    key_ttl_bounds_cached_lifetime(&["--invalidation", "off"]);
}

// ---------------------------------------------------------------------------
// (d) Redis restarted empty
// ---------------------------------------------------------------------------

#[test]
fn restarted_empty_redis_serves_no_stale_value() {
    let mut redis = RedisServer::start();
    let proxy = start_proxy(&redis, &["--threads", "2", "--expire", "1h"]);
    let mut conns = connections(&proxy, 16);
    assert_eq!(redis.cmd(&["SET", "k", "v"]), Reply::ok());
    warm(&mut conns, "k", &Reply::bulk("v"));

    redis.restart();
    assert_eq!(redis.cmd(&["DBSIZE"]), Reply::Int(0));

    let deadline = Instant::now() + Duration::from_secs(5);
    for (i, c) in conns.iter_mut().enumerate() {
        // A forwarded command answers only once this connection's shard is connected to the
        // new Redis (cache hits may be served while it is down, by design).
        let mut last = Reply::nil();
        let up = wait_until(left(deadline), || {
            last = c.cmd(&["EXISTS", "k"]);
            !last.is_error()
        });
        assert!(
            up,
            "connection {i}: proxy still failing after Redis came back: {last:?}"
        );
        assert_eq!(last, Reply::Int(0));
        assert_eq!(
            c.cmd(&["GET", "k"]),
            Reply::nil(),
            "connection {i}: value from before the restart served from cache"
        );
    }
}

// ---------------------------------------------------------------------------
// (e) fetches racing writes
// ---------------------------------------------------------------------------

/// `GET k; SET k new; GET k` pipelined: the first GET starts a fetch, the SET poisons it, and
/// the second GET must see the SET (not join or be served the old value), now and later.
#[test]
fn fetch_racing_a_write_never_fills_the_cache() {
    let redis = RedisServer::start();
    let proxy = start_proxy(&redis, &["--threads", "2", "--expire", "1h"]);
    let mut p = proxy.connect();
    let mut d = redis.connect();
    assert_eq!(d.cmd(&["SET", "k", "v-init"]), Reply::ok());

    let mut last = "v-init".to_string();
    for i in 0..500 {
        let mut possible_first = vec![Reply::bulk(&last)];
        if i % 5 == 0 {
            // A direct write just before: the first GET may see it or (until the push
            // arrives) the previous value.
            let direct = format!("d-{i}");
            assert_eq!(d.cmd(&["SET", "k", &direct]), Reply::ok());
            possible_first.push(Reply::bulk(&direct));
        }
        let new = format!("p-{i}");
        let mut bytes = encode(&["GET", "k"]);
        bytes.extend(encode(&["SET", "k", &new]));
        bytes.extend(encode(&["GET", "k"]));
        p.send(&bytes);
        let first = p.read_reply();
        assert!(
            possible_first.contains(&first),
            "iteration {i}: first GET {first:?}, expected one of {possible_first:?}"
        );
        assert_eq!(p.read_reply(), Reply::ok(), "iteration {i}: SET");
        assert_eq!(
            p.read_reply(),
            Reply::bulk(&new),
            "iteration {i}: GET right after SET in the same pipeline"
        );
        assert_eq!(
            p.cmd(&["GET", "k"]),
            Reply::bulk(&new),
            "iteration {i}: a later GET is served a stale fill"
        );
        last = new;
    }
    // Nothing to wait for: this gives a late stale fill, which should never come, time to land.
    thread::sleep(Duration::from_millis(50));
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk(&last));
    assert_eq!(d.cmd(&["GET", "k"]), Reply::bulk(&last));
}

/// A writer hammers the key straight into Redis while a proxy client reads it: reads never go
/// back in time, and once the writer stops the proxy converges on the final value (a fetch
/// that raced an invalidation and filled the cache anyway would be served until --expire).
#[test]
fn fetches_racing_direct_writes_converge() {
    let redis = RedisServer::start();
    let proxy = start_proxy(&redis, &["--threads", "1", "--expire", "1h"]);
    let mut p = proxy.connect();
    assert_eq!(redis.cmd(&["SET", "k", "0"]), Reply::ok());

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let mut d = redis.connect();
        let stop = stop.clone();
        let written = written.clone();
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                assert_eq!(d.cmd(&["SET", "k", &n.to_string()]), Reply::ok());
                written.store(n, Ordering::Relaxed);
            }
        })
    };

    let value = |r: &Reply| -> u64 {
        r.as_str()
            .parse()
            .unwrap_or_else(|_| panic!("bad value {r:?}"))
    };
    let start = Instant::now();
    let mut prev = 0;
    let mut reads = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        // Pipelined GETs: some join a fetch in flight, some are hits.
        for _ in 0..4 {
            p.send_cmd(&["GET", "k"]);
        }
        for _ in 0..4 {
            let v = value(&p.read_reply());
            assert!(v >= prev, "read went back in time: {v} after {prev}");
            prev = v;
            reads += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let last = written.load(Ordering::Relaxed);
    assert!(last > 10, "writer made only {last} writes");

    let want = Reply::bulk(last.to_string());
    assert_eq!(redis.cmd(&["GET", "k"]), want);
    if let Err(got) = poll_get(&mut p, "k", &want, Duration::from_secs(1)) {
        panic!("after {reads} reads the proxy serves {got:?}, Redis holds {want:?}: stale fill");
    }
    // And it stays there (nothing to wait for: a late stale fill should never come).
    thread::sleep(Duration::from_millis(100));
    assert_eq!(p.cmd(&["GET", "k"]), want);
}

// ---------------------------------------------------------------------------
// (f) single flight
// ---------------------------------------------------------------------------

#[test]
fn concurrent_misses_share_one_fetch() {
    let redis = RedisServer::start();
    let proxy = start_proxy(&redis, &["--threads", "1", "--expire", "1h"]);
    assert_eq!(redis.cmd(&["SET", "hot", "v"]), Reply::ok());
    let mut conns = connections(&proxy, 20);
    for c in conns.iter_mut() {
        assert_eq!(c.cmd(&["PING"]), Reply::pong()); // accepted by the proxy
    }
    let g0 = redis.cmdstat_calls("get");

    // Redis frozen: every GET reaches the proxy while the first fetch waits for Redis.
    redis.stop();
    let resumed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for c in conns.iter_mut() {
            c.send_cmd(&["GET", "hot"]);
        }
        // The fetch is in the frozen Redis' socket and the proxy has read every GET (it
        // handles what it reads without waiting on anything else).
        let all_read = wait_until(Duration::from_secs(5), || {
            unread_at(redis.port()) > 0 && conns.iter().all(|c| c.unread_by_peer() == 0)
        });
        assert!(all_read, "the GETs did not all reach the proxy");
    }));
    redis.cont();
    resumed.unwrap();

    for (i, c) in conns.iter_mut().enumerate() {
        assert_eq!(c.read_reply(), Reply::bulk("v"), "connection {i}");
    }
    let gets = redis.cmdstat_calls("get") - g0;
    assert!(
        (1..=2).contains(&gets),
        "20 concurrent GETs of one key on one shard reached Redis {gets} times"
    );
    // And the shared fetch filled the cache.
    assert_eq!(conns[0].cmd(&["GET", "hot"]), Reply::bulk("v"));
    assert_eq!(redis.cmdstat_calls("get") - g0, gets);
}

// ---------------------------------------------------------------------------
// (g) absent keys are cached, and invalidated
// ---------------------------------------------------------------------------

#[test]
fn missing_key_is_cached_and_invalidated() {
    let redis = RedisServer::start();
    let proxy = start_proxy(&redis, &["--threads", "1", "--expire", "1h"]);
    let mut p = proxy.connect();
    let g0 = redis.cmdstat_calls("get");
    assert_eq!(p.cmd(&["GET", "absent"]), Reply::nil());
    assert_eq!(p.cmd(&["GET", "absent"]), Reply::nil());
    assert_eq!(
        redis.cmdstat_calls("get") - g0,
        1,
        "the second GET of a missing key should be a hit"
    );

    assert_eq!(redis.cmd(&["SET", "absent", "now"]), Reply::ok());
    if let Err(last) = poll_get(
        &mut p,
        "absent",
        &Reply::bulk("now"),
        Duration::from_secs(1),
    ) {
        panic!("a cached nil outlived a direct SET: still {last:?}");
    }
}

// ---------------------------------------------------------------------------
// (h) MGET
// ---------------------------------------------------------------------------

#[test]
fn mget_mixes_hits_and_one_backend_mget() {
    let redis = RedisServer::start();
    let proxy = start_proxy(&redis, &["--threads", "1", "--expire", "1h"]);
    let mut p = proxy.connect();
    for k in ["a", "b", "c", "d"] {
        assert_eq!(redis.cmd(&["SET", k, &format!("v{k}")]), Reply::ok());
    }
    // a and c cached; the missing key e cached as nil.
    for k in ["a", "c", "e"] {
        p.cmd(&["GET", k]);
    }
    let (g0, m0) = (redis.cmdstat_calls("get"), redis.cmdstat_calls("mget"));

    let want = Reply::Array(Some(vec![
        Reply::bulk("va"),
        Reply::bulk("vb"),
        Reply::bulk("vc"),
        Reply::bulk("vd"),
        Reply::nil(),
        Reply::nil(),
        Reply::bulk("va"),
    ]));
    let mixed = ["MGET", "a", "b", "c", "d", "e", "f", "a"];
    assert_eq!(p.cmd(&mixed), want);
    assert_eq!(redis.cmdstat_calls("mget") - m0, 1, "one backend MGET");
    assert_eq!(redis.cmdstat_calls("get") - g0, 0, "no backend GETs");

    // MGET results are not cached: the same MGET goes to Redis again, once.
    assert_eq!(p.cmd(&mixed), want);
    assert_eq!(redis.cmdstat_calls("mget") - m0, 2);

    // All hits: Redis is not asked at all.
    let all_hits = p.cmd(&["MGET", "c", "e", "a"]);
    assert_eq!(
        all_hits,
        Reply::Array(Some(vec![
            Reply::bulk("vc"),
            Reply::nil(),
            Reply::bulk("va")
        ]))
    );
    assert_eq!(
        redis.cmdstat_calls("mget") - m0,
        2,
        "all-hit MGET reached Redis"
    );
    assert_eq!(redis.cmdstat_calls("get") - g0, 0);

    // A direct write to a cached key shows up in MGET too.
    assert_eq!(redis.cmd(&["SET", "a", "va2"]), Reply::ok());
    let want2 = Reply::Array(Some(vec![Reply::bulk("va2"), Reply::bulk("vc")]));
    let mut last = Reply::nil();
    let seen = wait_until(Duration::from_secs(1), || {
        last = p.cmd(&["MGET", "a", "c"]);
        last == want2
    });
    assert!(seen, "MGET still serves {last:?} after a direct write");
}

// ---------------------------------------------------------------------------
// (i) --invalidation off: TTL only
// ---------------------------------------------------------------------------

#[test]
fn invalidation_off_is_ttl_only() {
    let redis = RedisServer::start();
    let proxy = start_proxy(
        &redis,
        &[
            "--threads",
            "1",
            "--invalidation",
            "off",
            "--expire",
            "300ms",
        ],
    );
    let mut p = proxy.connect();
    assert_eq!(p.cmd(&["SET", "k", "v1"]), Reply::ok());
    let cached_at = Instant::now();
    let g0 = redis.cmdstat_calls("get");
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v1"));
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v1"));

    assert_eq!(redis.cmd(&["SET", "k", "v2"]), Reply::ok());
    let stale = p.cmd(&["GET", "k"]);
    if cached_at.elapsed() < Duration::from_millis(200) {
        assert_eq!(
            redis.cmdstat_calls("get") - g0,
            1,
            "the second GET should have been a hit"
        );
        assert_eq!(
            stale,
            Reply::bulk("v1"),
            "without tracking a direct write is seen only after --expire (documented)"
        );
    }
    // --expire is what is tested: wait out its 300ms (a minimum, so a slow machine only
    // waits longer).
    thread::sleep(Duration::from_millis(450).saturating_sub(cached_at.elapsed()));
    assert_eq!(
        p.cmd(&["GET", "k"]),
        Reply::bulk("v2"),
        "entry outlived --expire 300ms"
    );

    // The proxy's own writes still invalidate at once.
    assert_eq!(p.cmd(&["SET", "k", "v3"]), Reply::ok());
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v3"));

    // Missing keys are not cached without tracking: Redis would not report their creation.
    let g1 = redis.cmdstat_calls("get");
    assert_eq!(p.cmd(&["GET", "absent"]), Reply::nil());
    assert_eq!(p.cmd(&["GET", "absent"]), Reply::nil());
    assert_eq!(redis.cmdstat_calls("get") - g1, 2);
}

// ---------------------------------------------------------------------------
// (j) a backend that refuses HELLO 3 (twemproxy)
// ---------------------------------------------------------------------------

fn find_nutcracker() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join("nutcracker"))
        .find(|p| p.is_file())
}

/// nutcracker (twemproxy) in front of a redis-server, killed on drop.
struct Nutcracker {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Nutcracker {
    fn start(bin: &PathBuf, redis_port: u16) -> Nutcracker {
        let dir = std::env::temp_dir().join(format!(
            "redis-proxy-nutcracker-{}-{}",
            std::process::id(),
            redis_port
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for _ in 0..5 {
            let port = free_port();
            let stats = free_port();
            let conf = dir.join("nutcracker.yml");
            std::fs::write(
                &conf,
                format!(
                    "alpha:\n  listen: 127.0.0.1:{port}\n  redis: true\n  servers:\n   - \
                     127.0.0.1:{redis_port}:1\n"
                ),
            )
            .unwrap();
            let mut child = Command::new(bin)
                .arg("-c")
                .arg(&conf)
                .args(["-s", &stats.to_string(), "-a", "127.0.0.1"])
                .arg("-o")
                .arg(dir.join("nutcracker.log"))
                .arg("-p")
                .arg(dir.join("nutcracker.pid"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn nutcracker");
            let ready = wait_until(Duration::from_secs(5), || {
                matches!(child.try_wait(), Ok(None)) && ping_through(port)
            });
            if ready {
                return Nutcracker { child, port, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("nutcracker did not start");
    }
}

/// A SET + GET through twemproxy (which answers PING itself, so that proves little).
fn ping_through(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(&encode(&["SET", "nutcracker-probe", "1"]))
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+OK"))
}

impl Drop for Nutcracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn backend_refusing_hello3_falls_back_to_ttl_only() {
    let Some(bin) = find_nutcracker() else {
        println!("nutcracker (twemproxy) is not installed: skipping");
        return;
    };
    let redis = RedisServer::start();
    let twem = Nutcracker::start(&bin, redis.port());
    let proxy = Proxy::start(twem.port, &["--threads", "1", "--expire", "1h"]);
    let mut p = proxy.connect();

    // It serves: poll while the backend connection comes up.
    let mut last = Reply::nil();
    let up = wait_until(Duration::from_secs(5), || {
        last = p.cmd(&["SET", "k", "v1"]);
        last == Reply::ok()
    });
    assert!(
        up,
        "the proxy never served through a backend that refuses HELLO 3; last reply {last:?}"
    );
    let mut log = String::new();
    let warned = wait_until(Duration::from_secs(2), || {
        log = proxy.log_contents();
        log.contains("TTL only")
    });
    assert!(warned, "no warning mentioning TTL only; log:\n{log}");

    // Caching: the second GET is a hit (counted on the redis-server behind twemproxy).
    let g0 = redis.cmdstat_calls("get");
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v1"));
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v1"));
    assert_eq!(
        redis.cmdstat_calls("get") - g0,
        1,
        "the second GET should be a hit"
    );

    // Read-your-writes through the proxy.
    assert_eq!(p.cmd(&["SET", "k", "v2"]), Reply::ok());
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v2"));
    assert_eq!(p.cmd(&["DEL", "k"]), Reply::Int(1));
    assert_eq!(p.cmd(&["GET", "k"]), Reply::nil());
    assert_eq!(
        p.cmd(&["MGET", "k", "nutcracker-probe"]),
        Reply::Array(Some(vec![Reply::nil(), Reply::bulk("1")]))
    );
}
