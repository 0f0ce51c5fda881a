//! Redis Cluster behind the proxy, against a real six-node cluster (three masters, three
//! replicas) that each test starts on free loopback ports: routing, splits, keyless commands,
//! the one-node view for cluster-aware clients, transactions and blocking commands in one
//! slot, replica reads, and, under pipelined load whose values encode their key and version,
//! slot migration (ASK, MOVED) and failover (CLUSTER FAILOVER, a killed master).

mod common;

use common::cluster::{key_slot, Cluster};
use common::{wait_until, Proxy, Raw, Reply};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

fn proxy(c: &Cluster, extra: &[&str]) -> Proxy {
    let mut args = vec!["--threads", "2"];
    if !extra.contains(&"--capacity") {
        args.extend(["--capacity", "100000"]);
    }
    args.extend_from_slice(extra);
    Proxy::start_with(&c.seeds(), &args, &[])
}

fn bulk(s: &str) -> Reply {
    Reply::bulk(s)
}

fn ok() -> Reply {
    Reply::ok()
}

/// Keys spread over all three masters, and a key of each master.
fn keys_on_every_master(c: &Cluster, n: usize) -> Vec<String> {
    let masters = c.masters();
    let keys: Vec<String> = (0..n).map(|i| format!("key:{i}")).collect();
    let owners: HashSet<u16> = keys.iter().map(|k| c.owner_of_key(k)).collect();
    assert_eq!(owners.len(), masters.len(), "keys cover every master");
    keys
}

#[test]
fn keys_go_to_their_owners_and_the_cache_stays_coherent() {
    let c = Cluster::start();
    let p = proxy(&c, &[]);
    let mut r = p.connect();
    let keys = keys_on_every_master(&c, 30);
    for k in &keys {
        assert_eq!(r.cmd(&["SET", k, &format!("v-{k}")]), ok());
    }
    for k in &keys {
        // Stored on the node serving its slot, and read back (twice: the second is a hit).
        let owner = c.owner_of_key(k);
        assert_eq!(
            c.cmd(owner, &["GET", k]),
            bulk(&format!("v-{k}")),
            "{k} on {owner}"
        );
        assert_eq!(r.cmd(&["GET", k]), bulk(&format!("v-{k}")));
        assert_eq!(r.cmd(&["GET", k]), bulk(&format!("v-{k}")));
    }
    // A write straight to a node reaches the proxy's cache through that node's invalidations.
    for k in keys.iter().take(6) {
        let owner = c.owner_of_key(k);
        assert_eq!(c.cmd(owner, &["SET", k, "changed"]), ok());
        assert!(
            wait_until(Duration::from_secs(5), || r.cmd(&["GET", k])
                == bulk("changed")),
            "{k}: the proxy still serves the old value"
        );
    }
    // Other commands route by their first key; Redis's own errors come back as they are.
    assert_eq!(r.cmd(&["HSET", "h:1", "f", "v"]), Reply::Int(1));
    assert_eq!(r.cmd(&["HGET", "h:1", "f"]), bulk("v"));
    assert_eq!(r.cmd(&["INCR", "counter"]), Reply::Int(1));
    assert_eq!(
        r.cmd(&["LPUSH", "h:1", "x"]).error_text(),
        Some("WRONGTYPE Operation against a key holding the wrong kind of value")
    );
    assert_eq!(r.cmd(&["PING"]), Reply::pong());
    assert_eq!(
        r.cmd(&["SELECT", "1"]).error_text(),
        Some("ERR SELECT is not allowed in cluster mode")
    );
    assert_eq!(r.cmd(&["SELECT", "0"]), ok());
}

#[test]
fn multi_key_commands_are_split_and_merged_in_order() {
    let c = Cluster::start();
    let p = proxy(&c, &[]);
    let mut r = p.connect();
    let keys = keys_on_every_master(&c, 12);
    let mut mset = vec!["MSET".to_string()];
    for k in &keys {
        mset.push(k.clone());
        mset.push(format!("v-{k}"));
    }
    assert_eq!(r.cmd(&mset), ok());
    for k in &keys {
        assert_eq!(
            c.cmd(c.owner_of_key(k), &["GET", k]),
            bulk(&format!("v-{k}"))
        );
    }
    // MGET in key order, missing keys as nil, with and without the cache.
    let mut mget = vec!["MGET".to_string()];
    let mut want = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        mget.push(k.clone());
        want.push(bulk(&format!("v-{k}")));
        if i % 4 == 0 {
            mget.push(format!("missing:{i}"));
            want.push(Reply::nil());
        }
    }
    assert_eq!(r.cmd(&mget), Reply::Array(Some(want.clone())));
    for k in &keys {
        r.cmd(&["GET", k]);
    }
    assert_eq!(r.cmd(&mget), Reply::Array(Some(want)));
    // Counts summed across nodes.
    let mut exists = vec!["EXISTS".to_string()];
    exists.extend(keys.iter().cloned());
    exists.push("missing".into());
    exists.push(keys[0].clone());
    assert_eq!(r.cmd(&exists), Reply::Int(keys.len() as i64 + 1));
    let mut touch = vec!["TOUCH".to_string()];
    touch.extend(keys.iter().cloned());
    assert_eq!(r.cmd(&touch), Reply::Int(keys.len() as i64));
    let mut del = vec!["DEL".to_string()];
    del.extend(keys.iter().take(6).cloned());
    del.push("missing".into());
    assert_eq!(r.cmd(&del), Reply::Int(6));
    let mut unlink = vec!["UNLINK".to_string()];
    unlink.extend(keys.iter().cloned());
    assert_eq!(r.cmd(&unlink), Reply::Int(keys.len() as i64 - 6));
    assert_eq!(
        r.cmd(&["GET", &keys[0]]),
        Reply::nil(),
        "deleted: not served from the cache"
    );
    // Other multi-key commands across slots get Redis Cluster's own error; one slot works.
    let crossslot = Some("CROSSSLOT Keys in request don't hash to the same slot");
    assert_eq!(
        r.cmd(&["MSETNX", "a", "1", "b", "2"]).error_text(),
        crossslot
    );
    assert_eq!(r.cmd(&["SUNION", "a", "b"]).error_text(), crossslot);
    assert_eq!(r.cmd(&["MSETNX", "{t}a", "1", "{t}b", "2"]), Reply::Int(1));
    assert_eq!(r.cmd(&["RENAME", "{t}a", "{t}c"]), ok());
    assert_eq!(
        r.cmd(&["MGET", "{t}a", "{t}b", "{t}c"]),
        Reply::Array(Some(vec![Reply::nil(), bulk("2"), bulk("1")]))
    );
}

#[test]
fn keyless_commands_follow_their_rules() {
    let c = Cluster::start();
    let p = proxy(&c, &[]);
    let mut r = p.connect();
    let keys = keys_on_every_master(&c, 300);
    for k in &keys {
        r.cmd(&["SET", k, "1"]);
    }
    // DBSIZE: every master, summed. KEYS: every master's, one list.
    assert_eq!(r.cmd(&["DBSIZE"]), Reply::Int(keys.len() as i64));
    let Reply::Array(Some(all)) = r.cmd(&["KEYS", "key:*"]) else {
        panic!("KEYS")
    };
    let all: HashSet<String> = all.iter().map(|k| k.as_str()).collect();
    assert_eq!(all, keys.iter().cloned().collect::<HashSet<_>>());
    // SCAN walks the masters one after the other: every key exactly once.
    let mut seen = Vec::new();
    let mut cursor = "0".to_string();
    let mut rounds = 0;
    loop {
        let Reply::Array(Some(rep)) = r.cmd(&["SCAN", &cursor, "COUNT", "50"]) else {
            panic!("SCAN")
        };
        cursor = rep[0].as_str();
        let Reply::Array(Some(batch)) = &rep[1] else {
            panic!("SCAN keys")
        };
        seen.extend(batch.iter().map(|k| k.as_str()));
        rounds += 1;
        assert!(rounds < 1000, "SCAN does not end");
        if cursor == "0" {
            break;
        }
    }
    seen.sort();
    let mut want = keys.clone();
    want.sort();
    assert_eq!(seen, want);
    assert!(
        r.cmd(&["SCAN", "x"]).is_error(),
        "Redis's own error for a bad cursor"
    );
    // SCRIPT LOAD on every master: EVALSHA then works whichever node the key is on.
    let sha = r
        .cmd(&["SCRIPT", "LOAD", "return redis.call('GET', KEYS[1])"])
        .as_str();
    for k in keys.iter().take(10) {
        assert_eq!(r.cmd(&["EVALSHA", &sha, "1", k]), bulk("1"));
    }
    // FLUSHALL: every master.
    assert_eq!(r.cmd(&["FLUSHALL"]), ok());
    for m in c.masters() {
        assert_eq!(c.cmd(m, &["DBSIZE"]), Reply::Int(0));
    }
    assert_eq!(r.cmd(&["GET", &keys[0]]), Reply::nil());
    assert_eq!(
        r.cmd(&["SWAPDB", "0", "1"]).error_text(),
        Some("ERR SWAPDB is not allowed in cluster mode")
    );
}

#[test]
fn cluster_aware_clients_see_one_node_owning_every_slot() {
    let c = Cluster::start();
    let p = proxy(&c, &[]);
    let mut r = p.connect();
    let Reply::Array(Some(slots)) = r.cmd(&["CLUSTER", "SLOTS"]) else {
        panic!("CLUSTER SLOTS")
    };
    assert_eq!(slots.len(), 1);
    let Reply::Array(Some(range)) = &slots[0] else {
        panic!()
    };
    assert_eq!((&range[0], &range[1]), (&Reply::Int(0), &Reply::Int(16383)));
    let Reply::Array(Some(node)) = &range[2] else {
        panic!()
    };
    assert_eq!(node[0], bulk("127.0.0.1"));
    assert_eq!(node[1], Reply::Int(p.port() as i64));
    let nodes = r.cmd(&["CLUSTER", "NODES"]).as_str();
    assert!(
        nodes.contains(&format!(
            "127.0.0.1:{}@{} myself,master",
            p.port(),
            p.port() + 10000
        )) && nodes.contains("connected 0-16383"),
        "{nodes}"
    );
    assert!(r
        .cmd(&["CLUSTER", "INFO"])
        .as_str()
        .contains("cluster_state:ok"));
    assert_eq!(
        r.cmd(&["CLUSTER", "KEYSLOT", "foo"]),
        Reply::Int(key_slot(b"foo") as i64)
    );
    assert_eq!(r.cmd(&["READONLY"]), ok());
    assert_eq!(r.cmd(&["ASKING"]), ok());
    // Slot questions go to the node that serves the slot.
    r.cmd(&["SET", "foo", "1"]);
    let slot = key_slot(b"foo").to_string();
    assert_eq!(r.cmd(&["CLUSTER", "COUNTKEYSINSLOT", &slot]), Reply::Int(1));
    assert!(r.cmd(&["CLUSTER", "MEET", "127.0.0.1", "1"]).is_error());
    // redis-cli in cluster mode follows the one-node map: everything through the proxy.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-c", "-p", &p.port().to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    for k in ["a", "b", "c", "{x}1"] {
        assert_eq!(cli(&["SET", k, &format!("cli-{k}")]), "OK");
        assert_eq!(cli(&["GET", k]), format!("cli-{k}"));
    }
}

#[test]
fn transactions_watch_and_blocking_commands_in_one_slot() {
    let c = Cluster::start();
    let p = proxy(&c, &[]);
    let mut r = p.connect();
    // A pipelined transaction on one slot runs on its owner, even one the proxy's first node
    // does not serve.
    let tag = (0..)
        .map(|i| format!("{{t{i}}}"))
        .find(|t| c.owner_of_key(t) != c.masters()[0])
        .unwrap();
    let (a, b) = (format!("{tag}a"), format!("{tag}b"));
    r.send(&common::encode(&["MULTI"]));
    r.send(&common::encode(&["SET", &a, "1"]));
    r.send(&common::encode(&["INCR", &a]));
    r.send(&common::encode(&["SET", &b, "x"]));
    r.send(&common::encode(&["EXEC"]));
    assert_eq!(r.read_reply(), ok());
    for _ in 0..3 {
        assert_eq!(r.read_reply(), Reply::Simple("QUEUED".into()));
    }
    assert_eq!(
        r.read_reply(),
        Reply::Array(Some(vec![ok(), Reply::Int(2), ok()]))
    );
    assert_eq!(c.cmd(c.owner_of_key(&a), &["GET", &a]), bulk("2"));
    // Interactive, across slots: refused at queue time as a cluster node refuses it.
    assert_eq!(r.cmd(&["MULTI"]), ok());
    assert_eq!(r.cmd(&["SET", "x1", "1"]), Reply::Simple("QUEUED".into()));
    let other = (0..)
        .map(|i| format!("y{i}"))
        .find(|k| key_slot(k.as_bytes()) != key_slot(b"x1"))
        .unwrap();
    assert_eq!(
        r.cmd(&["SET", &other, "1"]).error_text(),
        Some("CROSSSLOT Keys in request don't hash to the same slot")
    );
    assert!(r
        .cmd(&["EXEC"])
        .error_text()
        .unwrap()
        .starts_with("EXECABORT"));
    // WATCH on the key's owner: a change made elsewhere aborts EXEC.
    assert_eq!(r.cmd(&["WATCH", &a]), ok());
    assert_eq!(c.cmd(c.owner_of_key(&a), &["SET", &a, "changed"]), ok());
    assert_eq!(r.cmd(&["MULTI"]), ok());
    assert_eq!(r.cmd(&["SET", &a, "mine"]), Reply::Simple("QUEUED".into()));
    assert_eq!(r.cmd(&["EXEC"]), Reply::Array(None));
    assert_eq!(r.cmd(&["GET", &a]), bulk("changed"));
    // BLPOP blocks on the list's owner until a push through another client.
    let list = format!("{tag}list");
    let mut blocked = p.connect();
    blocked.send(&common::encode(&["BLPOP", &list, "10"]));
    let mut pusher = p.connect();
    assert!(wait_until(Duration::from_secs(5), || {
        let owner = c.owner_of_key(&list);
        matches!(c.cmd(owner, &["INFO", "clients"]), Reply::Bulk(Some(b))
            if String::from_utf8_lossy(&b).contains("blocked_clients:1"))
    }));
    assert_eq!(pusher.cmd(&["RPUSH", &list, "item"]), Reply::Int(1));
    assert_eq!(
        blocked.read_reply(),
        Reply::Array(Some(vec![bulk(&list), bulk("item")]))
    );
}

#[test]
fn reads_from_replicas() {
    let c = Cluster::start();
    // The seeds list the replicas in their slot map (gossip may take a moment after start).
    let listed = |port: u16| {
        matches!(c.cmd(port, &["CLUSTER", "SLOTS"]), Reply::Array(Some(ranges))
            if ranges.iter().all(|r| matches!(r, Reply::Array(Some(f)) if f.len() >= 4)))
    };
    assert!(wait_until(Duration::from_secs(10), || listed(c.ports()[0])
        && listed(c.ports()[1])));
    let p = proxy(&c, &["--read-from", "replica"]);
    let mut r = p.connect();
    let key = "replicated";
    let owner = c.owner_of_key(key);
    let replica = c.replicas_of(owner)[0];
    assert_eq!(r.cmd(&["SET", key, "1"]), ok());
    c.cmd(replica, &["CONFIG", "RESETSTAT"]);
    c.cmd(owner, &["CONFIG", "RESETSTAT"]);
    let mut direct = c.connect(replica);
    assert_eq!(direct.cmd(&["READONLY"]), ok());
    assert!(wait_until(Duration::from_secs(5), || direct
        .cmd(&["GET", key])
        == bulk("1")));
    c.cmd(replica, &["CONFIG", "RESETSTAT"]);
    assert_eq!(r.cmd(&["GET", key]), bulk("1"));
    assert_eq!(r.cmd(&["STRLEN", key]), Reply::Int(1));
    assert_eq!(
        c.cmdstat_calls(replica, "get"),
        1,
        "the miss filled from the replica"
    );
    assert_eq!(c.cmdstat_calls(replica, "strlen"), 1);
    assert_eq!(c.cmdstat_calls(owner, "get"), 0);
    // Writes go to the master; the replica's invalidation then reaches the cache.
    assert_eq!(r.cmd(&["SET", key, "22"]), ok());
    assert_eq!(c.cmdstat_calls(owner, "set"), 1);
    assert!(wait_until(Duration::from_secs(5), || r.cmd(&["GET", key])
        == bulk("22")));
}

#[test]
fn subscribers_hear_publishes_from_any_node() {
    let c = Cluster::start();
    let p = proxy(&c, &[]);
    let mut sub = p.connect();
    assert_eq!(
        sub.cmd(&["SUBSCRIBE", "news"]),
        Reply::Array(Some(vec![bulk("subscribe"), bulk("news"), Reply::Int(1)]))
    );
    // Published on every master in turn: the cluster bus carries it to the proxy's node.
    for (i, m) in c.masters().into_iter().enumerate() {
        c.cmd(m, &["PUBLISH", "news", &format!("m{i}")]);
        assert_eq!(
            sub.read_reply(),
            Reply::Array(Some(vec![
                bulk("message"),
                bulk("news"),
                bulk(&format!("m{i}"))
            ]))
        );
    }
    let mut r = p.connect();
    assert_eq!(r.cmd(&["PUBLISH", "news", "via proxy"]), Reply::Int(1));
    assert_eq!(
        sub.read_reply(),
        Reply::Array(Some(vec![bulk("message"), bulk("news"), bulk("via proxy")]))
    );
}

// ------------------------------------------------------------------------ under load

/// What pipelined clients saw: replies right, errors by kind, wrong replies described.
#[derive(Default, Debug)]
struct Tally {
    ok: u64,
    errors: HashMap<String, u64>,
    wrong: Vec<String>,
    /// When the last error was seen.
    last_error: Option<Instant>,
}

/// Pipelined clients writing `key=version` values and reading them back, each checking every
/// reply against what its own acknowledged writes make the only right answer.
struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16, clients: usize, keys: Vec<String>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let keys = Arc::new(keys);
        let threads = (0..clients)
            .map(|w| {
                let (stop, tally, keys) = (stop.clone(), tally.clone(), keys.clone());
                thread::spawn(move || client(port, w, &keys, &stop, &tally))
            })
            .collect();
        Load {
            stop,
            tally,
            threads,
        }
    }

    fn ok_count(&self) -> u64 {
        self.tally.lock().unwrap().ok
    }

    fn finish(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("load client");
        }
        Arc::try_unwrap(self.tally).unwrap().into_inner().unwrap()
    }
}

fn client(port: u16, w: usize, keys: &[String], stop: &AtomicBool, tally: &Mutex<Tally>) {
    let mut r = Raw::connect(port);
    r.set_read_timeout(Duration::from_secs(20));
    let mut rng = common::Rng::new(w as u64 + 1);
    // Per key: the version last written (if known for sure) and the next to write.
    let mut known: HashMap<String, Option<u64>> = HashMap::new();
    let mut next: HashMap<String, u64> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let mut batch = Vec::new();
        let mut out = Vec::new();
        for _ in 0..32 {
            let k = format!("{}:w{w}", keys[rng.below(keys.len() as u64) as usize]);
            if rng.below(2) == 0 {
                let v = next.entry(k.clone()).or_insert(0);
                *v += 1;
                out.extend(common::encode(&["SET", &k, &format!("{k}={v}")]));
                batch.push((true, k, *v));
            } else {
                out.extend(common::encode(&["GET", &k]));
                batch.push((false, k, 0));
            }
        }
        r.send(&out);
        for (set, k, v) in batch {
            let reply = r.read_reply();
            let mut t = tally.lock().unwrap();
            if let Reply::Error(e) = &reply {
                let kind: String = e.chars().take(40).collect();
                *t.errors.entry(kind).or_default() += 1;
                t.last_error = Some(Instant::now());
                if set {
                    known.insert(k, None); // may or may not have run
                }
                continue;
            }
            if set {
                if reply == Reply::ok() {
                    t.ok += 1;
                    known.insert(k, Some(v));
                } else {
                    t.wrong.push(format!("SET {k}: {reply:?}"));
                }
                continue;
            }
            match known.get(&k) {
                Some(None) => t.ok += 1, // after an unacknowledged write: either is right
                Some(Some(v)) if reply == Reply::bulk(format!("{k}={v}")) => t.ok += 1,
                None if reply == Reply::nil() => t.ok += 1,
                want => t.wrong.push(format!("GET {k}: {reply:?}, want {want:?}")),
            }
        }
    }
}

/// Waits until the load has made `n` more right replies.
fn progress(load: &Load, n: u64, within: Duration) -> bool {
    let start = load.ok_count();
    wait_until(within, || load.ok_count() >= start + n)
}

#[test]
fn slot_migration_under_load_is_invisible_to_clients() {
    let c = Cluster::start();
    let p = proxy(&c, &[]);
    // Half the keys in one slot, which moves; the rest elsewhere.
    let slot = key_slot(b"{mover}");
    let mut keys: Vec<String> = (0..20).map(|i| format!("{{mover}}{i}")).collect();
    keys.extend((0..20).map(|i| format!("other{i}")));
    // An absent key of the slot, cached (as nil) while the old owner tracks it: moving the
    // slot deletes nothing there, so no invalidation comes from it.
    let mut r = p.connect();
    assert_eq!(r.cmd(&["GET", "{mover}cached"]), Reply::nil());
    assert_eq!(r.cmd(&["GET", "{mover}cached"]), Reply::nil());
    let load = Load::start(p.port(), 8, keys);
    assert!(
        progress(&load, 20_000, Duration::from_secs(20)),
        "load runs"
    );
    let to = c
        .masters()
        .into_iter()
        .find(|&m| m != c.owner_of_slot(slot))
        .unwrap();
    // Mid-migration: some keys moved (ASK), the slot not yet handed over.
    let m = c.begin_migration(slot, to);
    let moving: Vec<String> = (0..8)
        .flat_map(|w| (0..10).map(move |i| format!("{{mover}}{i}:w{w}")))
        .collect();
    let moving: Vec<&str> = moving.iter().map(String::as_str).collect();
    m.move_keys(&moving);
    assert!(
        progress(&load, 20_000, Duration::from_secs(20)),
        "load runs while keys are asked for"
    );
    m.finish();
    assert!(
        progress(&load, 20_000, Duration::from_secs(20)),
        "load runs after the slot moved"
    );
    // Written straight on the new owner, which never saw the proxy read it: the proxy must
    // have dropped what it cached of the slot when it moved.
    assert_eq!(c.cmd(to, &["SET", "{mover}cached", "new"]), ok());
    assert!(
        wait_until(Duration::from_secs(5), || r.cmd(&["GET", "{mover}cached"])
            == bulk("new")),
        "a moved slot's cached entry outlived the move"
    );
    // And back, whole (MOVED again, the other way).
    c.migrate_slot(slot, c.masters().into_iter().find(|&x| x != to).unwrap());
    assert!(progress(&load, 20_000, Duration::from_secs(20)));
    let t = load.finish();
    assert!(
        t.wrong.is_empty(),
        "wrong replies: {:?}",
        &t.wrong[..t.wrong.len().min(10)]
    );
    // MIGRATE moves keys atomically for single-key commands: none sees an error.
    assert!(t.errors.is_empty(), "errors: {:?}", t.errors);
    assert!(t.ok > 80_000);
}

#[test]
fn failover_under_load_loses_nothing_and_service_returns() {
    let c = Cluster::start();
    let p = proxy(&c, &["--slots-reload-interval", "1s"]);
    let keys: Vec<String> = (0..60).map(|i| format!("fo{i}")).collect();
    let load = Load::start(p.port(), 8, keys);
    assert!(
        progress(&load, 20_000, Duration::from_secs(20)),
        "load runs"
    );

    // A manual failover: coordinated by Redis, so no request should fail.
    let master = c.owner_of_key("fo0");
    let replica = c.replicas_of(master)[0];
    c.failover(replica);
    assert!(
        progress(&load, 20_000, Duration::from_secs(20)),
        "service after CLUSTER FAILOVER"
    );

    // A master killed: its slots fail until a replica takes over, then come back.
    let victim = c.owner_of_key("fo1");
    c.kill(victim);
    let killed = Instant::now();
    let promoted = c.wait_failover_of(victim);
    let failover_time = killed.elapsed();
    // Service for the moved slots returns within the reload interval of the promotion.
    assert!(
        wait_until(Duration::from_secs(3), || {
            let t = load.tally.lock().unwrap();
            t.last_error
                .is_none_or(|e| e.elapsed() > Duration::from_millis(500))
        }),
        "errors continue after the failover to {promoted} ({failover_time:?})"
    );
    assert!(
        progress(&load, 20_000, Duration::from_secs(20)),
        "service after the kill"
    );
    let t = load.finish();
    assert!(
        t.wrong.is_empty(),
        "wrong replies: {:?}",
        &t.wrong[..t.wrong.len().min(10)]
    );
    let allowed = ["ERR backend", "CLUSTERDOWN", "TRYAGAIN"];
    for kind in t.errors.keys() {
        assert!(
            allowed.iter().any(|a| kind.starts_with(a)),
            "unexpected error {kind:?} in {:?}",
            t.errors
        );
    }
}

/// redis-py's RedisCluster and ioredis's Cluster pointed at the proxy: they load its one-node
/// map and send everything there. The same checks run straight at the cluster first.
#[test]
fn cluster_mode_client_libraries() {
    let c = Cluster::start();
    let p = proxy(&c, &[]);
    for lib in ["redis-py-cluster", "ioredis-cluster"] {
        let node = c.masters()[0].to_string();
        common::clients::run_checks(lib, &[("REDIS_PORT", node.clone()), ("DIRECT", "1".into())]);
        common::clients::run_checks(
            lib,
            &[("REDIS_PORT", node), ("PROXY_PORT", p.port().to_string())],
        );
    }
}

/// SSUBSCRIBE lives on the master serving the channel's slot, where SPUBLISH is delivered.
#[test]
fn shard_channels_subscribe_on_their_slot_owner() {
    let c = Cluster::start();
    let p = proxy(&c, &[]);
    let mut sub = p.connect();
    // Channels on two different masters, in two commands (one command's share a slot).
    let masters = c.masters();
    let chan = |m: u16| c.key_in_slot_of_node(m, "chan");
    let (a, b) = (chan(masters[1]), chan(masters[2]));
    for ch in [&a, &b] {
        assert_eq!(
            sub.cmd(&["SSUBSCRIBE", ch]),
            Reply::Array(Some(vec![
                bulk("ssubscribe"),
                bulk(ch),
                Reply::Int(1 + (ch == &b) as i64)
            ]))
        );
    }
    assert_eq!(
        sub.cmd(&["SSUBSCRIBE", &a, &b]).error_text(),
        Some("CROSSSLOT Keys in request don't hash to the same slot")
    );
    let mut r = p.connect();
    for ch in [&a, &b] {
        // Through the proxy (counted as one subscriber), and straight on the owner.
        assert_eq!(r.cmd(&["SPUBLISH", ch, "via proxy"]), Reply::Int(1));
        assert_eq!(
            sub.read_reply(),
            Reply::Array(Some(vec![bulk("smessage"), bulk(ch), bulk("via proxy")]))
        );
        c.cmd(c.owner_of_key(ch), &["SPUBLISH", ch, "direct"]);
        assert_eq!(
            sub.read_reply(),
            Reply::Array(Some(vec![bulk("smessage"), bulk(ch), bulk("direct")]))
        );
    }
    assert_eq!(
        sub.cmd(&["SUNSUBSCRIBE", &a]),
        Reply::Array(Some(vec![bulk("sunsubscribe"), bulk(&a), Reply::Int(1)]))
    );
    assert!(wait_until(Duration::from_secs(5), || {
        c.cmd(c.owner_of_key(&a), &["PUBSUB", "SHARDNUMSUB", &a])
            == Reply::Array(Some(vec![bulk(&a), Reply::Int(0)]))
    }));
}

/// The shard's subscriber connection lives on its first node; when that master dies, the
/// subscriptions move to a live master once the map says so, and messages flow again.
#[test]
fn subscriptions_follow_a_failover_of_their_node() {
    let c = Cluster::start();
    let p = proxy(&c, &["--slots-reload-interval", "500ms"]);
    let mut sub = p.connect();
    assert_eq!(
        sub.cmd(&["SUBSCRIBE", "alerts"]),
        Reply::Array(Some(vec![bulk("subscribe"), bulk("alerts"), Reply::Int(1)]))
    );
    // The proxy's subscriber connection is on the master of slot 0.
    let home = c.owner_of_slot(0);
    c.kill(home);
    let promoted = c.wait_failover_of(home);
    sub.set_read_timeout(Duration::from_millis(200));
    let mut n = 0;
    let heard = wait_until(Duration::from_secs(10), || {
        n += 1;
        c.cmd(promoted, &["PUBLISH", "alerts", &format!("after-{n}")]);
        matches!(sub.try_read_reply(), Ok(Reply::Array(Some(m))) if m[0] == bulk("message"))
    });
    assert!(
        heard,
        "no message reached the subscriber after the failover"
    );
    // Keyless commands no longer go to the dead node either.
    let mut r = p.connect();
    for _ in 0..4 {
        let info = r.cmd(&["INFO", "server"]);
        assert!(
            matches!(&info, Reply::Bulk(Some(b)) if String::from_utf8_lossy(b).contains("redis_version")),
            "{info:?}"
        );
        assert!(matches!(r.cmd(&["DBSIZE"]), Reply::Int(_)));
        assert!(matches!(r.cmd(&["TIME"]), Reply::Array(Some(_))));
    }
}

/// A frozen node delays only the requests that need it (and what its own clients queued
/// behind them); when it times out, only its part of a split command fails.
#[test]
fn a_slow_node_delays_only_its_part() {
    let c = Cluster::start();
    let p = Proxy::start_with(
        &c.seeds(),
        &["--threads", "2", "--backend-timeout", "1s"],
        &[],
    );
    let masters = c.masters();
    let frozen = masters[1];
    let on = |m: u16, i: usize| c.key_in_slot_of_node(m, &format!("slow{i}-"));
    let (a, b, f) = (on(masters[0], 0), on(masters[2], 1), on(frozen, 2));
    let mut r = p.connect();
    for k in [&a, &b, &f] {
        assert_eq!(r.cmd(&["SET", k, &format!("v-{k}")]), ok());
    }
    c.stop(frozen);
    let resumed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // One client waits on the frozen node...
        let mut stuck = p.connect();
        stuck.send(&common::encode(&["MGET", &a, &f, &b]));
        // ...while others are served by the live nodes at once.
        let mut other = p.connect();
        other.set_read_timeout(Duration::from_millis(500));
        for _ in 0..20 {
            assert_eq!(other.cmd(&["GET", &a]), bulk(&format!("v-{a}")));
            assert_eq!(other.cmd(&["GET", &b]), bulk(&format!("v-{b}")));
        }
        // After --backend-timeout, only the frozen node's part is an error.
        stuck.set_read_timeout(Duration::from_secs(5));
        let Reply::Array(Some(items)) = stuck.read_reply() else {
            panic!("MGET: not an array")
        };
        assert_eq!(items[0], bulk(&format!("v-{a}")));
        assert!(
            items[1]
                .error_text()
                .is_some_and(|e| e.starts_with("ERR backend")),
            "{:?}",
            items[1]
        );
        assert_eq!(items[2], bulk(&format!("v-{b}")));
    }));
    c.cont(frozen);
    resumed.unwrap();
}

/// `prefer-replica`: reads from a replica while it is up; when it dies, from the master,
/// without an error.
#[test]
fn prefer_replica_falls_back_to_the_master() {
    let c = Cluster::start();
    let p = proxy(&c, &["--read-from", "prefer-replica", "--capacity", "0"]);
    let key = "preferred";
    let owner = c.owner_of_key(key);
    let replica = c.replicas_of(owner)[0];
    let mut r = p.connect();
    assert_eq!(r.cmd(&["SET", key, "1"]), ok());
    // Replicated, then read from the replica (once its connection is up: the first reads,
    // while it opens, go to the master).
    assert!(
        wait_until(Duration::from_secs(5), || {
            r.cmd(&["STRLEN", key]) == Reply::Int(1) && c.cmdstat_calls(replica, "strlen") >= 1
        }),
        "no read reached the replica"
    );
    c.kill(replica);
    // From now on every read is answered (the master takes them once the replica's
    // connection is seen down).
    let before = c.cmdstat_calls(owner, "strlen");
    for _ in 0..50 {
        let got = r.cmd(&["STRLEN", key]);
        assert!(got == Reply::Int(1) || got.is_error(), "{got:?}");
    }
    assert!(
        wait_until(Duration::from_secs(5), || r.cmd(&["STRLEN", key])
            == Reply::Int(1)
            && c.cmdstat_calls(owner, "strlen") > before),
        "reads did not move to the master"
    );
    for _ in 0..50 {
        assert_eq!(r.cmd(&["STRLEN", key]), Reply::Int(1));
    }
}

/// Found by Redis's suite through a cluster: after a long script held a node past
/// --backend-timeout, the proxy's reconnection met `-BUSY` in its handshake and panicked.
/// It now waits until the node answers again.
#[test]
fn a_node_busy_with_a_script_does_not_bring_the_proxy_down() {
    let c = Cluster::start_with(30000, &[]);
    let p = Proxy::start_with(
        &c.seeds(),
        &["--threads", "1", "--backend-timeout", "1s"],
        &[],
    );
    // A key of the shard's first node, whose connection also reads Redis's command table.
    let node = c.owner_of_slot(0);
    let key = c.key_in_slot_of_node(node, "busy");
    let mut r = p.connect();
    assert_eq!(r.cmd(&["SET", &key, "1"]), ok());
    let mut looping = p.connect();
    looping.send(&common::encode(&[
        "EVAL",
        "redis.call('get', KEYS[1]) while true do end",
        "1",
        &key,
    ]));
    // The script's connection times out and is reset; once the node answers -BUSY, every
    // reconnection meets it in the handshake.
    assert!(looping.read_reply().is_error());
    assert!(wait_until(Duration::from_secs(15), || c
        .cmd(node, &["PING"])
        .error_text()
        .is_some_and(|e| e.starts_with("BUSY"))));
    let up_for = std::time::Instant::now();
    while up_for.elapsed() < Duration::from_secs(2) {
        assert_eq!(r.cmd(&["PING"]), Reply::pong(), "the proxy went down");
    }
    assert_eq!(c.cmd(node, &["SCRIPT", "KILL"]), ok());
    assert!(
        wait_until(Duration::from_secs(10), || r.cmd(&["GET", &key])
            == bulk("1")),
        "service did not come back once the script was killed"
    );
}

/// A blocking command starts at once on any master (warm dedicated connections to each):
/// another client's command sent after it does not overtake it. Found by Redis's suite
/// (stream-cgroups): with a connect per blocking command, a DEL sent just after an
/// XREADGROUP ... BLOCK reached the node first in most tries.
#[test]
fn a_blocking_command_is_not_overtaken_on_another_master() {
    let c = Cluster::start();
    // One shard: two shards read their clients in parallel, with no order between them.
    let p = Proxy::start_with(&c.seeds(), &["--threads", "1"], &[]);
    let home = c.owner_of_slot(0);
    let node = c.masters().into_iter().find(|&m| m != home).unwrap();
    let key = c.key_in_slot_of_node(node, "stream");
    let mut r = p.connect();
    // Warm connections are opened by the shards' first ticks.
    assert!(wait_until(Duration::from_secs(5), || {
        matches!(c.cmd(node, &["INFO", "clients"]), Reply::Bulk(Some(b))
            if String::from_utf8_lossy(&b).lines().any(|l| l.starts_with("connected_clients:")
                && l[18..].trim().parse::<u32>().unwrap_or(0) >= 2))
    }));
    let mut right = 0;
    for _ in 0..20 {
        r.cmd(&["DEL", &key]);
        r.cmd(&["XADD", &key, "1-1", "f", "v"]);
        assert_eq!(r.cmd(&["XGROUP", "CREATE", &key, "g", "$"]), ok());
        let mut reader = p.connect();
        let mut deleter = p.connect();
        reader.send(&common::encode(&[
            "XREADGROUP",
            "GROUP",
            "g",
            "a",
            "BLOCK",
            "0",
            "STREAMS",
            &key,
            ">",
        ]));
        assert_eq!(deleter.cmd(&["DEL", &key]), Reply::Int(1));
        reader.set_read_timeout(Duration::from_secs(5));
        match reader.read_reply() {
            Reply::Error(e) if e.starts_with("UNBLOCKED") => right += 1,
            Reply::Error(e) if e.starts_with("NOGROUP") => {} // ran after the DEL
            other => panic!("{other:?}"),
        }
    }
    assert!(
        right >= 15,
        "the blocking command ran first in only {right} of 20 tries"
    );
}
