//! What a shard does with a client command in cluster mode (transactions being queued and
//! pinned clients aside, which `dispatch` handles as for one server):
//!
//! - a key command goes to the node serving its first key's slot (reads to a replica with
//!   `--read-from`), its reply followed through `-MOVED`/`-ASK`;
//! - GET and MGET are served from the cache as for one server; misses fill from the owner;
//! - MGET, MSET, DEL, UNLINK, EXISTS and TOUCH whose keys span slots are split per slot and
//!   merged in order;
//! - keyless commands: DBSIZE, KEYS, FLUSHALL, FLUSHDB, SCRIPT LOAD/FLUSH and FUNCTION
//!   LOAD/FLUSH/DELETE/RESTORE go to every master and are merged; SCAN walks the masters one
//!   after the other (the cursor carries the node); CLUSTER is answered as a one-node
//!   cluster; every other keyless command goes to one node (the shard's first node while it
//!   is up, else the master of the lowest slot);
//! - SWAPDB and SELECT of another db are refused as Redis Cluster refuses them.
//!
//! Ordering: a client's requests to different nodes may run in any order, as with a
//! cluster client; requests on one slot share a connection and run in order. When the slot
//! map changes, a client's next request waits for the replies it has in flight, so none of
//! its requests overtakes an earlier one redirected to the new owner.

use super::split::{by_slot, Gather, Merge, SCAN_NODE_BITS};
use super::topology::Cluster;
use crate::backend::{Admit, Conn};
use crate::command::{Class, Kind};
use crate::deliver::Waiter;
use crate::dispatch::{invalidate, not_admitted, switching_at, Flow, Session};
use crate::observe::stats::{self, Class as Stat};
use crate::replies::ClientShared;
use crate::resp::encode::{put_cached, Proto};
use crate::resp::request::Args;
use crate::resp::write::{put_bulk, put_command, put_error, put_header};
use crate::shard::Shard;
use bytes::{Bytes, BytesMut};
use std::rc::Rc;

pub const CLUSTERDOWN: &[u8] = b"CLUSTERDOWN Hash slot not served";

pub fn dispatch(
    shard: &Rc<Shard>,
    client: &Rc<ClientShared>,
    s: &mut Session,
    args: Args,
    raw: Option<&[u8]>,
    class: Class,
) -> Flow {
    let cluster = shard.cluster.as_ref().expect("cluster mode");
    let proto = s.proto;
    let name = args.get(0);
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    match class.kind {
        Kind::Get if shard.cache_on => return get(shard, cluster, client, proto, args, raw),
        Kind::Mget => return mget(shard, cluster, client, proto, args, raw),
        Kind::Ping => {
            client.push_local(|o| match args.len() {
                1 => o.extend_from_slice(b"+PONG\r\n"),
                _ => put_bulk(o, args.get(1)),
            });
            return Flow::Next;
        }
        Kind::Echo => {
            client.push_local(|o| put_bulk(o, args.get(1)));
            return Flow::Next;
        }
        Kind::Flush | Kind::FlushDb => {
            return everywhere(shard, cluster, client, proto, &args, raw, Merge::Same);
        }
        Kind::Swapdb => {
            client.push_local(|o| put_error(o, b"ERR SWAPDB is not allowed in cluster mode"));
            return Flow::Next;
        }
        Kind::Blocking => {
            return crate::blocking::blocking(shard, client, s, args, raw, class.shape);
        }
        Kind::Info => return crate::observe::info::info(shard, client, s, args, raw),
        Kind::Read if is(b"CLUSTER") => return view(cluster, client, proto, &args, raw),
        Kind::Read if is(b"DBSIZE") && args.len() == 1 => {
            return everywhere(shard, cluster, client, proto, &args, raw, Merge::Sum);
        }
        Kind::Read if is(b"KEYS") && args.len() == 2 => {
            return everywhere(shard, cluster, client, proto, &args, raw, Merge::Concat);
        }
        Kind::Read if is(b"SCAN") && args.len() >= 2 => {
            return scan(cluster, client, proto, &args, raw);
        }
        Kind::Read if on_every_master(&args) => {
            return everywhere(shard, cluster, client, proto, &args, raw, Merge::Same);
        }
        // Multi-key commands whose keys span slots: one command per slot, merged.
        Kind::Read | Kind::Write(_) => {
            let (pairs, merge) = match () {
                _ if is(b"EXISTS") || is(b"TOUCH") || is(b"DEL") || is(b"UNLINK") => {
                    (false, Merge::Sum)
                }
                _ if is(b"MSET") && args.len() % 2 == 1 => (true, Merge::AllOk),
                _ => (false, Merge::Same),
            };
            if !matches!(merge, Merge::Same) && args.len() > 2 {
                let step = if pairs { 2 } else { 1 };
                let keys = (1..args.len())
                    .step_by(step)
                    .map(|i| (i, super::slots::key_slot(args.get(i))));
                let groups = by_slot(keys);
                if groups.len() > 1 {
                    let how = (pairs, merge);
                    return split(shard, cluster, client, proto, &args, groups, how);
                }
            }
        }
        _ => {}
    }
    let table = shard.commands();
    let key = super::route::first_key(table.as_deref(), class.kind, &args);
    let read = matches!(class.kind, Kind::Read | Kind::Get);
    let conn = match key {
        Some(i) => cluster.route(super::slots::key_slot(args.get(i)), read),
        // Keyless: the shard's first node (where its subscriptions are, so PUBLISH counts
        // them), or any master; a script without keys may write: a master.
        None if read => shard.keyless_conn(),
        None => cluster.any_master(),
    };
    let evict = || {
        if let (Kind::Write(keys), true) = (class.kind, shard.cache_on) {
            invalidate(shard, &args, keys);
        }
    };
    forward(
        cluster,
        client,
        conn,
        &args,
        raw,
        (class.shape, proto),
        evict,
    )
}

/// Forwards the client's request to `conn` (or answers CLUSTERDOWN when no node serves it),
/// its reply relayed in `(shape, proto)`; `before` runs once it is sure to be sent (a write's
/// keys are evicted only then).
fn forward(
    cluster: &Cluster,
    client: &Rc<ClientShared>,
    conn: Option<Rc<Conn<Waiter>>>,
    args: &Args,
    raw: Option<&[u8]>,
    (shape, proto): (crate::resp::convert::Shape, Proto),
    before: impl FnOnce(),
) -> Flow {
    let Some(conn) = conn else {
        return clusterdown(client);
    };
    if let Some(flow) =
        switching_at(cluster.token(), client).or_else(|| not_admitted(&conn, client, 1))
    {
        return flow;
    }
    before();
    let seq = client.push_pending();
    let inner = match crate::pubsub::counts::fix_for(args) {
        Some(fix) => Waiter::Counted {
            client: client.clone(),
            seq,
            proto,
            fix,
        },
        None => Waiter::Reply {
            client: client.clone(),
            seq,
            shape,
            proto,
        },
    };
    conn.send_request(raw, args, inner);
    Flow::Next
}

/// Commands every master must run alike.
fn on_every_master(args: &Args) -> bool {
    if args.len() < 2 {
        return false;
    }
    let (name, sub) = (args.get(0), args.get(1));
    let any = |list: &[&str]| list.iter().any(|w| sub.eq_ignore_ascii_case(w.as_bytes()));
    (name.eq_ignore_ascii_case(b"SCRIPT") && any(&["LOAD", "FLUSH"]))
        || (name.eq_ignore_ascii_case(b"FUNCTION") && any(&["LOAD", "FLUSH", "DELETE", "RESTORE"]))
}

fn clusterdown(client: &ClientShared) -> Flow {
    stats::count(Stat::Error);
    client.push_local(|o| put_error(o, CLUSTERDOWN));
    Flow::Next
}

/// The request as RESP: its raw bytes, or its arguments encoded (an inline command).
fn request(args: &Args, raw: Option<&[u8]>) -> Bytes {
    match raw {
        Some(raw) => Bytes::copy_from_slice(raw),
        None => {
            let mut b = BytesMut::new();
            put_command(&mut b, args.iter());
            b.freeze()
        }
    }
}

fn get(
    shard: &Rc<Shard>,
    cluster: &Cluster,
    client: &Rc<ClientShared>,
    proto: Proto,
    args: Args,
    raw: Option<&[u8]>,
) -> Flow {
    let key = args.get(1);
    // The map changed since the client's requests in flight were sent: one of them (a write
    // of this key, redirected) may not have reached the key's new owner yet, which a fill of
    // another client may have read before it. Its reply evicts the key again (see `follow`).
    if let Some(flow) = switching_at(cluster.token(), client) {
        return flow;
    }
    if crate::dispatch::served_or_joined(shard, client, 0, key, proto) {
        return Flow::Next;
    }
    let Some(conn) = cluster.route(super::slots::key_slot(key), true) else {
        return clusterdown(client);
    };
    if let Some(flow) = not_admitted(&conn, client, 2) {
        return flow;
    }
    crate::dispatch::start_fetch(shard, &conn, client, 0, &args, raw, proto);
    Flow::Next
}

/// All keys cached: answered here, as for one server; else split by slot (one MGET per slot,
/// merged in key order).
fn mget(
    shard: &Rc<Shard>,
    cluster: &Cluster,
    client: &Rc<ClientShared>,
    proto: Proto,
    args: Args,
    raw: Option<&[u8]>,
) -> Flow {
    let now = shard.now();
    if let Some(flow) = switching_at(cluster.token(), client) {
        return flow; // as for GET
    }
    if shard.cache_on {
        let mut cache = shard.cache.borrow_mut();
        if args.iter().skip(1).all(|k| cache.contains(0, k, now)) {
            stats::count(Stat::Hit);
            client.push_local(|o| {
                put_header(o, b'*', args.len() as i64 - 1);
                for key in args.iter().skip(1) {
                    put_cached(o, cache.get_in(0, key, now).unwrap_or(b"$-1\r\n"), proto);
                }
            });
            return Flow::Next;
        }
    }
    let keys = (1..args.len()).map(|i| (i, super::slots::key_slot(args.get(i))));
    let groups = by_slot(keys);
    if groups.len() == 1 {
        let conn = cluster.route(groups[0].0, true);
        let reply = (crate::resp::convert::Shape::Plain, proto);
        return forward(cluster, client, conn, &args, raw, reply, || {});
    }
    let n = args.len() - 1;
    let merge = Merge::Mget {
        positions: groups
            .iter()
            .map(|(_, idx)| idx.iter().map(|&i| i as u32 - 1).collect())
            .collect(),
        n,
    };
    split(shard, cluster, client, proto, &args, groups, (false, merge))
}

/// One command per slot group (`pairs`: each key is followed by its value), merged.
fn split(
    shard: &Rc<Shard>,
    cluster: &Cluster,
    client: &Rc<ClientShared>,
    proto: Proto,
    args: &Args,
    groups: Vec<(u16, Vec<usize>)>,
    (pairs, merge): (bool, Merge),
) -> Flow {
    let read = !pairs
        && !args.get(0).eq_ignore_ascii_case(b"DEL")
        && !args.get(0).eq_ignore_ascii_case(b"UNLINK");
    let mut conns = Vec::with_capacity(groups.len());
    for (slot, _) in &groups {
        match cluster.route(*slot, read) {
            Some(c) => conns.push(c),
            None => return clusterdown(client),
        }
    }
    if let Some(flow) = admit_all(cluster, client, &conns) {
        return flow;
    }
    if !read && shard.cache_on {
        for (_, idx) in &groups {
            for &i in idx {
                shard.invalidate(args.get(i));
            }
        }
    }
    let seq = client.push_pending();
    let g = Gather::new(client, seq, proto, merge, groups.len());
    for (i, ((_, idx), conn)) in groups.iter().zip(&conns).enumerate() {
        let mut part = BytesMut::new();
        let words = idx.len() * if pairs { 2 } else { 1 } + 1;
        put_header(&mut part, b'*', words as i64);
        put_bulk(&mut part, args.get(0));
        for &k in idx {
            put_bulk(&mut part, args.get(k));
            if pairs {
                put_bulk(&mut part, args.get(k + 1));
            }
        }
        send_part(conn, part.freeze(), &g, i);
    }
    Flow::Next
}

/// The client may switch nodes, and every connection has room (`Some`: wait, or drain).
fn admit_all(cluster: &Cluster, client: &ClientShared, conns: &[Rc<Conn<Waiter>>]) -> Option<Flow> {
    if let Some(flow) = switching_at(cluster.token(), client) {
        return Some(flow);
    }
    for c in conns {
        let n = conns.iter().filter(|d| Rc::ptr_eq(c, d)).count();
        if let Admit::Full = c.admit(n) {
            return Some(Flow::Wait(c.clone(), n));
        }
    }
    None
}

/// A part goes out, or fails at once with its node's error when its connection is down.
fn send_part(conn: &Rc<Conn<Waiter>>, req: Bytes, g: &super::split::GatherRef, i: usize) {
    match conn.admit(1) {
        Admit::Down => {
            let mut msg = BytesMut::new();
            conn.put_down_error(&mut msg);
            let text = String::from_utf8_lossy(&msg[1..msg.len() - 2]).into_owned();
            super::split::part_fail(g, i, &text);
        }
        _ => conn.send_raw(&req, Waiter::Part(g.clone(), i as u32)),
    }
}

/// The same command on every master, merged.
fn everywhere(
    shard: &Rc<Shard>,
    cluster: &Cluster,
    client: &Rc<ClientShared>,
    proto: Proto,
    args: &Args,
    raw: Option<&[u8]>,
    merge: Merge,
) -> Flow {
    let masters = cluster.all_masters();
    if masters.is_empty() {
        return clusterdown(client);
    }
    if let Some(flow) = admit_all(cluster, client, &masters) {
        return flow;
    }
    if matches!(merge, Merge::Same)
        && (args.get(0).eq_ignore_ascii_case(b"FLUSHALL")
            || args.get(0).eq_ignore_ascii_case(b"FLUSHDB"))
    {
        shard.flush_cache();
    }
    let req = request(args, raw);
    let seq = client.push_pending();
    let g = Gather::new(client, seq, proto, merge, masters.len());
    for (i, conn) in masters.iter().enumerate() {
        send_part(conn, req.clone(), &g, i);
    }
    Flow::Next
}

/// SCAN across masters: the cursor's low byte names the master, the rest is its cursor.
fn scan(
    cluster: &Cluster,
    client: &Rc<ClientShared>,
    proto: Proto,
    args: &Args,
    raw: Option<&[u8]>,
) -> Flow {
    let masters = cluster.all_masters();
    let Some(cursor) = std::str::from_utf8(args.get(1))
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
    else {
        // Not a cursor: Redis's own error, from any node.
        let reply = (crate::resp::convert::Shape::Plain, proto);
        return forward(
            cluster,
            client,
            masters.first().cloned(),
            args,
            raw,
            reply,
            || {},
        );
    };
    let node = cursor & ((1 << SCAN_NODE_BITS) - 1);
    let Some(conn) = masters.get(node as usize) else {
        client.push_local(|o| o.extend_from_slice(b"*2\r\n$1\r\n0\r\n*0\r\n"));
        return Flow::Next;
    };
    if let Some(flow) = admit_all(cluster, client, std::slice::from_ref(conn)) {
        return flow;
    }
    let inner = (cursor >> SCAN_NODE_BITS).to_string();
    let mut req = BytesMut::new();
    let rest = args.iter().skip(2);
    put_command(
        &mut req,
        [args.get(0), inner.as_bytes()]
            .into_iter()
            .chain(rest)
            .collect::<Vec<_>>()
            .into_iter(),
    );
    let seq = client.push_pending();
    let merge = Merge::Scan {
        node,
        nodes: masters.len() as u64,
    };
    let g = Gather::new(client, seq, proto, merge, 1);
    send_part(conn, req.freeze(), &g, 0);
    Flow::Next
}

/// CLUSTER: the one-node view, or the node serving the slot asked about.
fn view(
    cluster: &Cluster,
    client: &Rc<ClientShared>,
    proto: Proto,
    args: &Args,
    raw: Option<&[u8]>,
) -> Flow {
    let laddr = client.info().laddr.clone();
    let (ip, port) = super::view::split_addr(&laddr);
    let me = super::view::Me {
        ip,
        port,
        id: &cluster.node_id,
    };
    let words: Vec<&[u8]> = args.iter().collect();
    let mut out = BytesMut::new();
    let target = match super::view::cluster(&me, &words, proto, &mut out) {
        super::view::Answer::Done => {
            client.push_local(|o| o.extend_from_slice(&out));
            return Flow::Next;
        }
        super::view::Answer::Slot(slot) => cluster.route(slot, false),
        super::view::Answer::Any => cluster.any_master(),
    };
    let reply = (crate::resp::convert::Shape::Plain, proto);
    forward(cluster, client, target, args, raw, reply, || {})
}
