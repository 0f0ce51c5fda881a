//! Blocking commands (BLPOP, XREAD BLOCK, WAIT ...): each runs on a dedicated connection of
//! its own, so it blocks its client only, and the backend timeout counts from the end of the
//! command's own timeout.

use crate::command::{block_timeout_ms, Keys};
use crate::deliver::Waiter;
use crate::dispatch::{invalidate, Flow, Session};
use crate::pool::Dedicated;
use crate::replies::ClientShared;
use crate::resp::convert::Shape;
use crate::resp::request::Args;
use crate::resp::write::put_error;
use crate::shard::Shard;
use std::rc::Rc;

/// A blocking command on a dedicated connection of its own, so it blocks only its client.
pub fn blocking(
    shard: &Rc<Shard>,
    client: &Rc<ClientShared>,
    s: &mut Session,
    args: Args,
    raw: Option<&[u8]>,
    shape: Shape,
) -> Flow {
    if client.backlog().1 > 0 {
        return Flow::Drain;
    }
    let Some(addr) = shard.dedicated_addr(crate::command::Kind::Blocking, &args) else {
        client.push_local(|o| put_error(o, crate::cluster::dispatch::CLUSTERDOWN));
        return Flow::Next;
    };
    let Some(c) = shard.pool.acquire_at(shard, addr, s.db) else {
        client.push_local(|o| put_error(o, b"ERR max pinned connections reached"));
        return Flow::Next;
    };
    if shard.cache_on {
        invalidate(shard, &args, Keys::AllArgs);
    }
    set_blocking(shard, &c, &args);
    client.info().set_blocked(Some(c.redis_id.clone()));
    let seq = client.push_pending();
    let w = Waiter::Blocking {
        client: client.clone(),
        seq,
        shape,
        proto: s.proto,
        conn: c.clone(),
    };
    c.send_request(raw, &args, w);
    c.flush();
    s.blocked = Some(c);
    Flow::DrainAfter
}

/// The backend timeout of `c` counts from the end of the command's own timeout.
pub fn set_blocking(shard: &Shard, c: &Dedicated, args: &Args) {
    let until = block_timeout_ms(args)
        .map(|ms| shard.now().wrapping_add(ms.min(u32::MAX as u64 / 4) as u32));
    c.st.borrow_mut().blocking = Some(until);
}
