//! Tests of the Redis Cluster harness itself (tests/common/cluster.rs), straight against the
//! nodes: no proxy involved.
mod common;

use std::time::Instant;

use common::cluster::{crc16, key_in_slot, key_slot, Cluster, SLOTS};
use common::{assert_err_prefix, Reply, Rng};

#[test]
fn cluster_comes_up_with_three_masters_and_a_replica_each() {
    let t0 = Instant::now();
    let c = Cluster::start();
    eprintln!("cluster up in {:?}", t0.elapsed());

    let ports = c.ports();
    assert_eq!(ports.len(), 6);
    assert_eq!(
        c.seeds(),
        format!("127.0.0.1:{},127.0.0.1:{}", ports[0], ports[1])
    );

    let masters = c.masters();
    assert_eq!(masters.len(), 3, "masters: {masters:?}");
    let mut replicas = Vec::new();
    for &m in &masters {
        let r = c.replicas_of(m);
        assert_eq!(r.len(), 1, "replicas of {m}: {r:?}");
        assert!(!masters.contains(&r[0]));
        assert_eq!(c.cmd(r[0], &["ROLE"]).to_string_lossy_first(), "slave");
        replicas.extend(r);
    }
    replicas.sort_unstable();
    replicas.dedup();
    assert_eq!(replicas.len(), 3);

    // Every slot has an owner, and the slot map covers 0..=16383 without gaps.
    let map = c.slot_map();
    assert_eq!(map.first().unwrap().start, 0);
    assert_eq!(map.last().unwrap().end, SLOTS - 1);
    for w in map.windows(2) {
        assert_eq!(w[0].end + 1, w[1].start);
    }
    // CLUSTER SLOTS of every node lists each master's replica.
    for p in c.ports() {
        for r in c.slots_of(p) {
            assert_eq!(r.replicas, c.replicas_of(r.master), "view of {p}");
        }
    }

    // Each master takes writes for its own keys and redirects the others.
    for &m in &masters {
        let key = c.key_in_slot_of_node(m, "up:");
        assert_eq!(c.owner_of_key(&key), m);
        assert_eq!(c.cmd(m, &["SET", &key, "v"]), Reply::ok());
        let other = *masters.iter().find(|&&o| o != m).unwrap();
        let slot = key_slot(key.as_bytes());
        assert_eq!(
            c.cmd(other, &["GET", &key]),
            Reply::Error(format!("MOVED {slot} 127.0.0.1:{m}"))
        );
        assert_eq!(c.node_id(m).len(), 40);
    }
    c.flushall();
    for p in c.ports() {
        assert_eq!(c.cmd(p, &["DBSIZE"]), Reply::Int(0));
    }
}

#[test]
fn key_slot_matches_cluster_keyslot() {
    // The reference value of CRC16-XMODEM, and Redis's documented examples.
    assert_eq!(crc16(b"123456789"), 0x31C3);
    assert_eq!(key_slot(b"foo"), 12182);
    assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));

    let c = Cluster::start();
    let node = c.ports()[3];
    let mut conn = c.connect(node);
    let mut keys: Vec<Vec<u8>> = [
        "",
        "a",
        "foo",
        "bar",
        "key:000000000042",
        "{tag}a",
        "{tag}b",
        "x{tag}y",
        "{}",
        "{}x",
        "a{}b{c}",
        "{",
        "}",
        "}{",
        "{a",
        "a}",
        "{{a}}",
        "{a}{b}",
        "a{b}c{d}",
        "{user1000}.x",
        "\u{e9}t\u{e9}",
        "{\u{e9}}",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let mut rng = Rng::new(7);
    for _ in 0..300 {
        let len = rng.below(24) as usize;
        let mut k: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
        // Often put braces in, so the hash-tag rules get exercised.
        if len > 2 && rng.below(2) == 0 {
            k[rng.below(len as u64) as usize] = b'{';
            k[rng.below(len as u64) as usize] = b'}';
        }
        keys.push(k);
    }
    for k in &keys {
        let want = match conn.cmd(&[b"CLUSTER".as_slice(), b"KEYSLOT", k]) {
            Reply::Int(n) => n as u16,
            other => panic!(
                "CLUSTER KEYSLOT {:?}: {other:?}",
                k.escape_ascii().to_string()
            ),
        };
        assert_eq!(
            key_slot(k),
            want,
            "slot of {:?}",
            k.escape_ascii().to_string()
        );
    }

    for slot in [0, 1, 5460, 5461, 12182, SLOTS - 1] {
        assert_eq!(key_slot(key_in_slot(slot, "k:").as_bytes()), slot);
    }
    for m in c.masters() {
        let key = c.key_in_slot_of_node(m, "mine:");
        assert_eq!(c.cmd(m, &["SET", &key, "1"]), Reply::ok());
    }
}

#[test]
fn migrate_slot_moves_keys_and_the_old_owner_redirects() {
    let c = Cluster::start();
    let masters = c.masters();
    let (src, dst) = (masters[0], masters[1]);

    // Whole-slot migration.
    let key = c.key_in_slot_of_node(src, "mig:");
    let slot = key_slot(key.as_bytes());
    assert_eq!(c.cmd(src, &["SET", &key, "before"]), Reply::ok());
    c.migrate_slot(slot, dst);
    assert_eq!(c.owner_of_slot(slot), dst);
    assert_eq!(c.cmd(dst, &["GET", &key]), Reply::bulk("before"));
    assert_eq!(
        c.cmd(src, &["GET", &key]),
        Reply::Error(format!("MOVED {slot} 127.0.0.1:{dst}"))
    );
    // Every node, replicas included, agrees.
    for p in c.ports() {
        assert_eq!(c.owner_in_view_of(p, slot), dst, "view of {p}");
    }

    // Step by step, sitting mid-migration: moved keys get -ASK from the source.
    let slot2 = c.first_slot_of(masters[2]);
    let moved = key_in_slot(slot2, "ask-a:");
    let stays = key_in_slot(slot2, "ask-b:");
    let src2 = masters[2];
    assert_eq!(c.cmd(src2, &["SET", &moved, "m"]), Reply::ok());
    assert_eq!(c.cmd(src2, &["SET", &stays, "s"]), Reply::ok());
    let m = c.begin_migration(slot2, dst);
    assert_eq!((m.source(), m.target(), m.slot()), (src2, dst, slot2));
    m.move_keys(&[&moved]);
    assert_eq!(
        c.cmd(src2, &["GET", &moved]),
        Reply::Error(format!("ASK {slot2} 127.0.0.1:{dst}"))
    );
    assert_eq!(c.cmd(src2, &["GET", &stays]), Reply::bulk("s"));
    // The target serves the slot only after ASKING, on the same connection.
    assert_err_prefix(&c.cmd(dst, &["GET", &moved]), "MOVED");
    let mut conn = c.connect(dst);
    assert_eq!(conn.cmd(&["ASKING"]), Reply::ok());
    assert_eq!(conn.cmd(&["GET", &moved]), Reply::bulk("m"));
    m.finish();
    assert_eq!(c.owner_of_slot(slot2), dst);
    assert_eq!(c.cmd(dst, &["GET", &stays]), Reply::bulk("s"));
    assert_eq!(
        c.cmd(src2, &["GET", &stays]),
        Reply::Error(format!("MOVED {slot2} 127.0.0.1:{dst}"))
    );
}

#[test]
fn failover_kill_restart_stop_and_cont() {
    let c = Cluster::start();
    let masters = c.masters();

    // Manual failover: the replica takes over, the old master follows it.
    let m0 = masters[0];
    let key = c.key_in_slot_of_node(m0, "fo:");
    assert_eq!(c.cmd(m0, &["SET", &key, "1"]), Reply::ok());
    let r0 = c.replicas_of(m0)[0];
    let t = Instant::now();
    c.failover(r0);
    eprintln!("manual failover took {:?}", t.elapsed());
    assert_eq!(c.owner_of_key(&key), r0);
    assert_eq!(c.replicas_of(r0), vec![m0]);
    assert_eq!(c.cmd(r0, &["GET", &key]), Reply::bulk("1"));

    // Killing a master: its replica is promoted.
    let m1 = masters[1];
    let r1 = c.replicas_of(m1)[0];
    let t = Instant::now();
    c.kill(m1);
    assert!(!c.is_alive(m1));
    assert_eq!(c.wait_failover_of(m1), r1);
    eprintln!("failover after kill took {:?}", t.elapsed());
    assert!(c.masters().contains(&r1));
    assert!(!c.masters().contains(&m1));

    // Back on its port, it rejoins as the new master's replica.
    c.restart(m1);
    assert_eq!(c.replicas_of(r1), vec![m1]);

    // SIGSTOP: a frozen master is failed over too, and rejoins as a replica after SIGCONT.
    let m2 = masters[2];
    let r2 = c.replicas_of(m2)[0];
    c.stop(m2);
    assert_eq!(c.wait_failover_of(m2), r2);
    c.cont(m2);
    assert_eq!(c.replicas_of(r2), vec![m2]);
}

trait FirstField {
    fn to_string_lossy_first(&self) -> String;
}

impl FirstField for Reply {
    /// The first element of an array reply, as text (e.g. ROLE's role).
    fn to_string_lossy_first(&self) -> String {
        match self {
            Reply::Array(Some(items)) => items[0].as_str(),
            other => panic!("expected an array, got {other:?}"),
        }
    }
}
