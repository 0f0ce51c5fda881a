//! Redis Cluster behind the proxy. Clients see one Redis (or, if they ask, a one-node
//! cluster: [`view`]); each shard routes every key command to the node serving its slot over
//! one pipelined connection per node ([`topology`]), follows `-MOVED` and `-ASK` without the
//! client seeing them ([`Routed`]), splits multi-key commands across slots and merges their
//! replies in order ([`split`]), and reloads the slot map on a timer, after redirections and
//! when a node connection fails.
//!
//! - [`detect`]: at start-up, is `--redis` a cluster, and its first slot map.
//! - [`slots`]: CRC16 hash slots; `CLUSTER SLOTS` parsed.
//! - [`redirect`]: `-MOVED`/`-ASK` parsed.
//! - [`route`]: which argument routes a command.
//! - [`dispatch`]: what a shard does with a client command in cluster mode.

pub mod detect;
pub mod dispatch;
pub mod redirect;
pub mod route;
pub mod slots;
pub mod split;
pub mod topology;
pub mod view;

use crate::deliver::Waiter;
use crate::shard::Shard;
use bytes::Bytes;
use std::net::SocketAddr;

/// Redirections followed for one request before its client gets the last one as its reply
/// (a slot bouncing between nodes while the cluster settles).
const MAX_REDIRECTS: u8 = 5;

/// `frame` redirects `req` (waited for by `w`, sent `tries` times, last to `from`): sends it
/// again where Redis says (after `ASKING` for `-ASK`) and returns `None`; or gives the waiter
/// back when it cannot be followed, for the client to get the error as it is.
pub fn follow(
    shard: &Shard,
    w: Waiter,
    frame: &[u8],
    req: Bytes,
    tries: u8,
    from: SocketAddr,
) -> Option<Waiter> {
    let Some(cluster) = shard.cluster.as_ref() else {
        return Some(w);
    };
    let Some(rd) = redirect::parse(frame) else {
        return Some(w);
    };
    if tries >= MAX_REDIRECTS || rd.host.is_empty() {
        cluster.want_reload();
        return Some(w);
    }
    let Some(addr) = cluster.resolve(&rd.host, rd.port, from) else {
        cluster.want_reload();
        return Some(w);
    };
    if !rd.ask {
        cluster.moved(shard, rd.slot, addr);
    }
    let conn = cluster.conn_at(addr);
    if matches!(
        conn.status(),
        crate::backend::Status::Down | crate::backend::Status::Closed
    ) {
        let msg = format!("ERR backend unavailable: {}", conn.st.borrow().last_error);
        crate::backend::Sink::fail(shard, w, &msg);
        return None;
    }
    if rd.ask {
        conn.send_args([&b"ASKING"[..]].into_iter(), Waiter::Ignore);
    }
    let w = evicting_again(w, &req);
    conn.send_again(&req, w, tries + 1);
    conn.flush();
    None
}

/// A redirected write evicts its keys again when its reply arrives: until it reached the
/// new owner, a fill from there could read (and cache) the value it replaces.
fn evicting_again(w: Waiter, req: &[u8]) -> Waiter {
    let Waiter::Reply {
        client,
        seq,
        shape,
        proto,
    } = w
    else {
        return w;
    };
    let mut scanner = crate::resp::request::RequestScanner::new();
    let mut writes = crate::multi::Writes::default();
    if let crate::resp::request::Scan::Command { .. } = scanner.scan(req) {
        let args = scanner.args(req);
        writes.add(crate::command::classify(&args).kind, &args);
    }
    if writes.keys.is_empty() && !writes.flush {
        return Waiter::Reply {
            client,
            seq,
            shape,
            proto,
        };
    }
    Waiter::Exec(Box::new(crate::multi::ExecReply {
        client,
        seq,
        proto,
        shapes: vec![shape],
        single: true,
        writes,
    }))
}
