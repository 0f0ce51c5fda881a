//! Cluster mode: regressions found in review, each forcing its interleaving against a real
//! cluster (a node frozen with SIGSTOP, maps made stale on purpose). Each failed on the code
//! before its fix.

mod common;

use common::cluster::{key_slot, Cluster};
use common::{unread_at, wait_until, Proxy, Raw, Reply};
use std::time::Duration;

fn ok() -> Reply {
    Reply::ok()
}

/// A nil cached by one shard while the old owner tracked the key is still served after the
/// slot moved and a write through the proxy (on another shard) was acknowledged: the new owner
/// never saw that shard read the key, and only the shard that got the `-MOVED` dropped its
/// entries of the slot; the others wait for their next reload (3 s by default, 60 s here).
#[test]
fn cached_nil_outlives_a_slot_move_on_other_shards() {
    let c = Cluster::start();
    let p = Proxy::start_with(
        &c.seeds(),
        &[
            "--threads",
            "2",
            "--capacity",
            "100000",
            "--slots-reload-interval",
            "60s",
        ],
        &[],
    );
    let key = "{rvnil}k";
    let slot = key_slot(key.as_bytes());
    // Enough connections that both shards (SO_REUSEPORT) get some.
    let mut rs: Vec<Raw> = (0..8).map(|_| p.connect()).collect();
    // A key of another slot, cached too: it must stay cached through the move.
    let kept = (0..)
        .map(|i| format!("kept{i}"))
        .find(|k| key_slot(k.as_bytes()) != slot)
        .unwrap();
    assert_eq!(rs[0].cmd(&["SET", &kept, "x"]), ok());
    for r in rs.iter_mut() {
        assert_eq!(r.cmd(&["GET", key]), Reply::nil());
        assert_eq!(r.cmd(&["GET", key]), Reply::nil());
        assert_eq!(r.cmd(&["GET", &kept]), Reply::bulk("x"));
    }
    let kept_owner = c.owner_of_key(&kept);
    let kept_gets = c.cmdstat_calls(kept_owner, "get");
    let to = c
        .masters()
        .into_iter()
        .find(|&m| m != c.owner_of_slot(slot))
        .unwrap();
    c.migrate_slot(slot, to);
    // Acknowledged through the proxy.
    assert_eq!(rs[0].cmd(&["SET", key, "v"]), ok());
    let mut stale = Vec::new();
    for (i, r) in rs.iter_mut().enumerate() {
        if r.cmd(&["GET", key]) != Reply::bulk("v") {
            stale.push(i);
        }
    }
    assert!(
        stale.is_empty(),
        "clients {stale:?} still read nil after SET was acknowledged"
    );
    // Only the moved slot's entries went: the other key is still served from every cache.
    for r in rs.iter_mut() {
        assert_eq!(r.cmd(&["GET", &kept]), Reply::bulk("x"));
    }
    if c.owner_of_key(&kept) == kept_owner {
        assert_eq!(
            c.cmdstat_calls(kept_owner, "get"),
            kept_gets,
            "the other slot's entries were dropped"
        );
    }
}

/// One client's SET is in flight to the old owner (stale map) when a reload moves the slot;
/// another client then fills the cache from the new owner, and the first client's GET is a
/// cache hit (no epoch check on hits or joins): it reads the value from before its own write.
#[test]
fn read_after_write_overtaken_by_cache_hit_after_reload() {
    // Node timeout long enough that SIGSTOPping a master for ~2 s does not fail it over.
    let c = Cluster::start_with(15000, &[]);
    let p = Proxy::start_with(
        &c.seeds(),
        &[
            "--threads",
            "1",
            "--capacity",
            "100000",
            "--slots-reload-interval",
            "60s",
            "--backend-timeout",
            "20s",
        ],
        &[],
    );
    let masters = c.masters();
    let b = c.owner_of_slot(0); // the shard's first node: asked first for the map
    let a = *masters.iter().find(|&&m| m != b).unwrap();
    let other = *masters.iter().find(|&&m| m != b && m != a).unwrap();
    let k = c.key_in_slot_of_node(a, "rvk");
    let k2 = c.key_in_slot_of_node(other, "rvz");
    let mut x = p.connect();
    let mut y = p.connect();
    let mut z = p.connect();
    assert_eq!(x.cmd(&["SET", &k, "v1"]), ok());
    // Both slots move to b behind the proxy's back (its map is now stale).
    c.migrate_slot(key_slot(k.as_bytes()), b);
    c.migrate_slot(key_slot(k2.as_bytes()), b);
    // a answers nothing for a while: x's SET sits in flight there.
    c.stop(a);
    x.send_cmd(&["SET", &k, "v2"]);
    assert!(
        wait_until(Duration::from_secs(5), || unread_at(a) > 0),
        "x's SET did not reach a"
    );
    // A -MOVED on another slot: the shard reloads its map (from b) within ~250 ms.
    assert_eq!(z.cmd(&["GET", &k2]), Reply::nil());
    assert!(
        wait_until(Duration::from_secs(5), || p
            .log_contents()
            .contains("slot map changed")),
        "the map was not reloaded"
    );
    // y fills the cache from the new owner (b still has v1: x's SET has not reached it).
    assert_eq!(y.cmd(&["GET", &k]), Reply::bulk("v1"));
    // x reads its own key after its write.
    x.send_cmd(&["GET", &k]);
    assert!(
        wait_until(Duration::from_secs(5), || x.unread_by_peer() == 0),
        "the proxy did not read x's GET"
    );
    c.cont(a);
    assert_eq!(x.read_reply(), ok(), "x's SET (followed from a to b)");
    assert_eq!(
        x.read_reply(),
        Reply::bulk("v2"),
        "x's GET after its own SET"
    );
}

/// Error strings of CLUSTER subcommands against a real node's.
#[test]
fn cluster_subcommand_errors_match_redis() {
    let c = Cluster::start();
    let p = Proxy::start_with(&c.seeds(), &["--threads", "1"], &[]);
    let mut r = p.connect();
    let node = c.masters()[0];
    let mut bad = Vec::new();
    for args in [
        vec!["CLUSTER", "COUNTKEYSINSLOT", "x"],
        vec!["CLUSTER", "COUNTKEYSINSLOT", "99999"],
        vec!["CLUSTER", "GETKEYSINSLOT", "99999", "10"],
        vec!["CLUSTER", "COUNTKEYSINSLOT", "1", "extra"],
        vec!["CLUSTER"],
        vec!["MSET", "a", "1", "b"],
        vec!["SWAPDB", "0", "1"],
        vec!["SELECT", "1"],
    ] {
        let want = c.cmd(node, &args);
        let got = r.cmd(&args);
        if want != got {
            bad.push(format!("{args:?}: redis {want:?}, proxy {got:?}"));
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
}
