//! What the proxy does with one client command, given the client's session: a local answer, a
//! cache hit, a request on the shard's shared connection, a queued transaction command, or a
//! request on the client's dedicated connection.

use crate::backend::{Admit, Conn};
use crate::command::{classify, script_keys, write_keys, Keys, Kind};
use crate::deliver::Waiter;
use crate::fetch::Join;
use crate::multi::{Multi, Writes};
use crate::observe::stats::{self, Class};
use crate::pool::Dedicated;
use crate::replies::ClientShared;
use crate::resp::convert::Shape;
use crate::resp::encode::{put_cached, Proto};
use crate::resp::request::Args;
use crate::resp::write::{put_bulk, put_error, put_header};
use crate::shard::Shard;
use std::rc::Rc;

/// One client's connection state, as redis-server keeps it per connection.
pub struct Session {
    pub proto: Proto,
    /// The db the client SELECTed.
    pub db: u32,
    /// The pinned connection was moved to another db (SELECT while pinned): never reuse it.
    pub pinned_dirty: bool,
    /// A transaction is being queued.
    pub multi: Option<Multi>,
    /// The client's own backend connection while it holds server state (WATCH): every
    /// command goes there, in order.
    pub pinned: Option<Dedicated>,
    /// WATCH is in force on the pinned connection.
    pub watching: bool,
    /// The dedicated connection of a blocking command in flight.
    pub blocked: Option<Dedicated>,
    /// CLIENT REPLY SKIP: the next command's reply is dropped.
    pub skip_next: bool,
    /// MONITOR's own connection.
    pub monitor: Option<crate::monitor::Monitor>,
    /// The command being dispatched is the last one the client has sent so far.
    pub batch_end: bool,
    /// Its subscriptions (see `pubsub`).
    pub sub: Option<Rc<crate::pubsub::hub::Subscriber>>,
    /// CLIENT TRACKING is on (see `tracking`).
    pub tracker: Option<Rc<crate::tracking::Tracker>>,
}

impl Session {
    pub fn new(db: u32) -> Self {
        Session {
            proto: Proto::Resp2,
            db,
            pinned_dirty: false,
            multi: None,
            pinned: None,
            watching: false,
            blocked: None,
            skip_next: false,
            monitor: None,
            batch_end: false,
            sub: None,
            tracker: None,
        }
    }

    /// RESET: no transaction, no watch, the default db, RESP2, replies on.
    pub fn reset(&mut self, shard: &Shard) {
        let clean = !self.watching && self.multi.is_none();
        self.unpin(shard, clean);
        self.multi = None;
        self.watching = false;
        self.db = shard.cfg.redis.db;
        self.proto = Proto::Resp2;
        self.skip_next = false;
        self.stop_monitor();
        crate::pubsub::session::leave_all(shard, self);
        crate::tracking::command::disable(shard, self);
    }

    fn stop_monitor(&mut self) {
        if let Some(m) = self.monitor.take() {
            m.borrow().shutdown();
        }
    }

    /// Releases the pinned connection (the client's state on it is gone).
    fn unpin(&mut self, shard: &Shard, clean: bool) {
        if let Some(c) = self.pinned.take() {
            let clean = clean && !std::mem::take(&mut self.pinned_dirty);
            shard.pool.release(shard, &c, clean);
        }
    }

    /// The client left: its dedicated connections go back clean, or are closed.
    pub fn end(&mut self, shard: &Shard) {
        self.stop_monitor();
        crate::pubsub::session::leave_all(shard, self);
        crate::tracking::command::disable(shard, self);
        let clean = !self.watching && self.multi.is_none();
        self.unpin(shard, clean);
        if let Some(c) = self.blocked.take() {
            if c.in_flight() > 0 {
                // Still blocked: the reply would go to no one; never pool it.
                shard.pool.release(shard, &c, false);
            }
        }
    }
}

pub enum Flow {
    Next,
    Quit,
    /// The connection's in-flight limit is reached: wait for room for this many requests,
    /// then dispatch the command again.
    Wait(Rc<Conn<Waiter>>, usize),
    /// The command needs another connection than the client's replies in flight: wait for
    /// them (so Redis runs the client's commands in order), then dispatch it again.
    Drain,
    /// Dispatched on a dedicated connection (a blocking command): the client's next command
    /// waits until it is answered.
    DrainAfter,
}

pub fn dispatch(
    shard: &Rc<Shard>,
    client: &Rc<ClientShared>,
    s: &mut Session,
    args: Args,
    raw: Option<&[u8]>,
) -> Flow {
    // A CLIENT REPLY SKIP before this command: its reply is dropped, then replies resume.
    let skip = std::mem::take(&mut s.skip_next);
    if s.tracker.is_none() {
        let flow = dispatch_muted(shard, client, s, args, raw);
        if skip {
            after_skip(client, s, &flow);
        }
        return flow;
    }
    // A tracking client: its writes may invalidate keys it read itself (sent after the reply,
    // unless NOLOOP), and CLIENT CACHING applies to one command.
    let client_cmd = args.get(0).eq_ignore_ascii_case(b"CLIENT");
    shard.writer.set(client.id);
    let flow = dispatch_muted(shard, client, s, args, raw);
    shard.writer.set(0);
    shard.tracking.flush_own(shard);
    if !matches!(flow, Flow::Wait(..) | Flow::Drain) && !client_cmd && s.multi.is_none() {
        if let Some(t) = &s.tracker {
            t.caching.set(false);
        }
    }
    if skip {
        after_skip(client, s, &flow);
    }
    flow
}

fn after_skip(client: &ClientShared, s: &mut Session, flow: &Flow) {
    if matches!(flow, Flow::Wait(..) | Flow::Drain) {
        s.skip_next = true; // dispatched again
    } else {
        client.muted.set(false);
    }
}

fn dispatch_muted(
    shard: &Rc<Shard>,
    client: &Rc<ClientShared>,
    s: &mut Session,
    args: Args,
    raw: Option<&[u8]>,
) -> Flow {
    let class = classify(&args);
    if !client.authed.get() && !matches!(class.kind, Kind::Auth | Kind::Hello | Kind::Quit) {
        stats::count(Class::Error);
        client.push_local(|o| o.extend_from_slice(b"-NOAUTH Authentication required.\r\n"));
        return Flow::Next;
    }
    #[cfg(debug_assertions)]
    crate::fault::maybe_panic(&args);
    if s.sub.is_some() && crate::pubsub::session::subscribed_mode(shard, client, s, &args) {
        return Flow::Next;
    }
    if let Some(t) = &s.tracker {
        // Only on the shared connection is a read's place in Redis's order known; queued in
        // a transaction there, it is EXEC's (see `multi::exec`).
        let shared = s.pinned.is_none() && s.multi.is_none();
        match s.multi.as_mut() {
            Some(m) if s.pinned.is_none() => crate::tracking::queue(&mut m.reads, || {
                crate::tracking::remember(shard, t, s.db, shared, &args, class.kind)
            }),
            _ => crate::tracking::remember(shard, t, s.db, shared, &args, class.kind),
        }
    }
    if s.multi.is_some() {
        return crate::multi::in_multi(shard, client, s, args, raw, class.kind, class.shape);
    }
    if s.pinned.is_some() && !s.watching {
        // Done with its dedicated connection (EXEC, DISCARD, UNWATCH ran on it).
        if client.backlog().1 > 0 {
            return Flow::Drain;
        }
        s.unpin(shard, true);
    }
    let proto = s.proto;
    match class.kind {
        Kind::Quit => {
            client.push_local(|o| o.extend_from_slice(b"+OK\r\n"));
            return Flow::Quit;
        }
        Kind::Auth => {
            client.push_local(|o| crate::auth::auth(shard, client, &args, o));
            return Flow::Next;
        }
        Kind::Hello => {
            client.push_local(|o| crate::auth::hello(shard, client, s, &args, o));
            let resp = if s.proto == Proto::Resp3 { 3 } else { 2 };
            client.info().update(|d| d.resp = resp);
            crate::pubsub::session::set_proto(s);
            client.resp3.set(s.proto == Proto::Resp3);
            if let Some(t) = &s.tracker {
                t.proto.set(s.proto);
            }
            return Flow::Next;
        }
        Kind::Monitor if shard.cluster.is_some() => {
            refuse(client, &args, "in cluster mode it would see one node only");
            return Flow::Next;
        }
        // A cluster client's per-connection flags: the proxy routes reads and redirections
        // itself, so they change nothing.
        Kind::Refused(_)
            if shard.cluster.is_some()
                && args.len() == 1
                && [&b"READONLY"[..], b"READWRITE", b"ASKING"]
                    .iter()
                    .any(|n| args.get(0).eq_ignore_ascii_case(n)) =>
        {
            client.push_local(|o| o.extend_from_slice(b"+OK\r\n"));
            return Flow::Next;
        }
        Kind::Subscribe(c) => return crate::pubsub::session::subscribe(shard, client, s, c, &args),
        Kind::Unsubscribe(c) => {
            return crate::pubsub::session::unsubscribe(shard, client, s, c, &args)
        }
        Kind::Client => return crate::client_cmd::client(shard, client, s, args, raw),
        Kind::Reset => {
            if client.backlog().1 > 0 && s.pinned.is_some() {
                return Flow::Drain;
            }
            return crate::client_cmd::reset(shard, client, s);
        }
        Kind::Monitor => {
            if client.backlog().1 > 0 {
                return Flow::Drain;
            }
            if s.monitor.is_none() {
                let seq = client.push_pending();
                s.monitor = Some(crate::monitor::start(shard, client, seq, s.db));
            } else {
                client.push_local(|o| o.extend_from_slice(b"+OK\r\n"));
            }
            return Flow::Next;
        }
        Kind::Select => {
            let Some(db) = crate::client_cmd::select(shard, &args, client) else {
                return Flow::Next;
            };
            if db != 0 && shard.cluster.is_some() {
                client.push_local(|o| put_error(o, b"ERR SELECT is not allowed in cluster mode"));
                return Flow::Next;
            }
            s.db = db;
            client.info().update(|d| d.db = db);
            match &s.pinned {
                Some(c) => {
                    s.pinned_dirty = true;
                    return forward_on(c, client, args, raw, class.shape, proto);
                }
                None => {
                    client.push_local(|o| o.extend_from_slice(b"+OK\r\n"));
                    return Flow::Next;
                }
            }
        }
        Kind::Refused(why) => {
            refuse(client, &args, why);
            return Flow::Next;
        }
        Kind::Multi => {
            if args.len() != 1 {
                return arity(client, "multi");
            }
            // Nothing follows MULTI in what the client sent: it waits for the +OK, so it queues
            // interactively, and Redis's queue-time checks depend on the server's state at each
            // command (OOM, BUSY): give it a dedicated connection where Redis itself queues. A
            // pipelined MULTI ... EXEC (redis-py's pipeline, ioredis's multi) is queued here and
            // sent as one block on the shared connection.
            // In cluster mode the transaction's node is known only from its keys: always queued
            // here.
            if s.pinned.is_none() && s.batch_end && shard.cluster.is_none() {
                if client.backlog().1 > 0 {
                    return Flow::Drain;
                }
                if let Some(c) = shard.pool.acquire(shard, s.db) {
                    s.pinned = Some(c);
                }
            }
            s.multi = Some(Multi::new(s.pinned.is_some()));
            return match &s.pinned {
                Some(c) => forward_on(c, client, args, raw, class.shape, proto),
                None => {
                    client.push_local(|o| o.extend_from_slice(b"+OK\r\n"));
                    Flow::Next
                }
            };
        }
        Kind::Exec | Kind::Discard => {
            let name = if class.kind == Kind::Exec {
                "EXEC"
            } else {
                "DISCARD"
            };
            let msg = format!("ERR {name} without MULTI");
            client.push_local(|o| put_error(o, msg.as_bytes()));
            return Flow::Next;
        }
        Kind::Watch if args.len() < 2 => return arity(client, "watch"),
        Kind::Watch if s.pinned.is_none() => {
            if client.backlog().1 > 0 {
                return Flow::Drain;
            }
            let Some(addr) = shard.dedicated_addr(class.kind, &args) else {
                client.push_local(|o| put_error(o, crate::cluster::dispatch::CLUSTERDOWN));
                return Flow::Next;
            };
            let Some(c) = shard.pool.acquire_at(shard, addr, s.db) else {
                client.push_local(|o| put_error(o, b"ERR max pinned connections reached"));
                return Flow::Next;
            };
            s.pinned = Some(c);
        }
        Kind::Unwatch if s.pinned.is_none() => {
            client.push_local(|o| o.extend_from_slice(b"+OK\r\n"));
            return Flow::Next;
        }
        _ => {}
    }
    if let Some(c) = &s.pinned {
        let c = c.clone();
        return pinned(shard, client, s, &c, args, raw, class.kind, class.shape);
    }
    if shard.cluster.is_some() {
        return crate::cluster::dispatch::dispatch(shard, client, s, args, raw, class);
    }
    let cache_on = shard.cache_on;
    // Dbs past 255 are not cached (the cache keeps the db in a byte).
    let cache_db = u8::try_from(s.db).ok().filter(|_| cache_on);
    match class.kind {
        Kind::Get if cache_db.is_some() => return get(shard, s, client, args, raw),
        Kind::Mget if cache_db.is_some() => return mget(shard, s, client, args, raw),
        _ => {}
    }
    let conn = &shard.conn_for(s.db);
    match class.kind {
        Kind::Write(keys) => {
            // A tracking client's scripts run where Redis tracks what they read (see
            // `tracking::remember`).
            let script = keys == Keys::Script && s.db == shard.cfg.redis.db && s.tracker.is_none();
            // A BCAST client with NOLOOP writes through the shard's BCAST connection, which is
            // NOLOOP too: Redis then leaves its own writes out of what it broadcasts to it.
            let noloop_bcast = s.db == shard.cfg.redis.db
                && s.tracker
                    .as_ref()
                    .is_some_and(|t| t.bcast.get() && t.noloop.get());
            let conn = &if script {
                shard.script_conn()
            } else if noloop_bcast {
                shard.bcast.conn(shard)
            } else {
                conn.clone()
            };
            if let Some(flow) = switching(conn, client).or_else(|| not_admitted(conn, client, 1)) {
                return flow;
            }
            // Checked first: the keys are evicted only once the write will be sent.
            if cache_on {
                invalidate(shard, &args, keys);
            }
            send_on(conn, client, args, raw, class.shape, proto)
        }
        Kind::Flush | Kind::FlushDb => {
            if let Some(flow) = switching(conn, client).or_else(|| not_admitted(conn, client, 1)) {
                return flow;
            }
            if class.kind == Kind::Flush {
                shard.flush_cache();
            } else {
                shard.flush_db(s.db);
            }
            send_on(conn, client, args, raw, class.shape, proto)
        }
        Kind::Swapdb => {
            let writes = Writes {
                swap: true,
                ..Default::default()
            };
            send_evicting(shard, conn, client, proto, args, raw, class.shape, writes)
        }
        Kind::Ping => {
            // Answered here, unless a script is running: then Redis tells (`-BUSY` once it is
            // a long one).
            if let Some(busy) = shard.busy_script() {
                client.push_local(|o| put_error(o, busy.as_bytes()));
                return Flow::Next;
            }
            if shard.scripts_in_flight() {
                return forward_on(conn, client, args, raw, class.shape, proto);
            }
            client.push_local(|o| match args.len() {
                1 => o.extend_from_slice(b"+PONG\r\n"),
                _ => put_bulk(o, args.get(1)),
            });
            Flow::Next
        }
        Kind::Echo => {
            client.push_local(|o| put_bulk(o, args.get(1)));
            Flow::Next
        }
        Kind::Blocking => crate::blocking::blocking(shard, client, s, args, raw, class.shape),
        Kind::Info => crate::observe::info::info(shard, client, s, args, raw),
        // They must reach Redis while the shared connection waits behind the script.
        Kind::Read if is_script_kill(&args) => {
            let oob = shard.oob();
            let flow = send_on(&oob, client, args, raw, class.shape, proto);
            oob.flush();
            flow
        }
        // Scripts have a pipelined connection of their own: a long one then holds only it,
        // and Redis answers the shard's other clients -BUSY itself, as it would them directly.
        Kind::Read if is_script(&args) && s.db == shard.cfg.redis.db && s.tracker.is_none() => {
            let sc = shard.script_conn();
            forward_on(&sc, client, args, raw, class.shape, proto)
        }
        Kind::Read => match crate::pubsub::counts::fix_for(&args) {
            Some(fix) => {
                if let Some(flow) = switching(conn, client) {
                    return flow;
                }
                send_with(conn, client, &args, raw, |seq| Waiter::Counted {
                    client: client.clone(),
                    seq,
                    proto,
                    fix,
                })
            }
            None => forward_on(conn, client, args, raw, class.shape, proto),
        },
        _ => forward_on(conn, client, args, raw, class.shape, proto),
    }
}

/// A command while the client's dedicated connection holds its state: everything goes there,
/// in order, and nothing is served from the cache (it could overtake a write in flight there).
#[allow(clippy::too_many_arguments)]
fn pinned(
    shard: &Shard,
    client: &Rc<ClientShared>,
    s: &mut Session,
    c: &Dedicated,
    args: Args,
    raw: Option<&[u8]>,
    kind: Kind,
    shape: Shape,
) -> Flow {
    match kind {
        Kind::Watch => s.watching = true,
        Kind::Unwatch => s.watching = false,
        Kind::Blocking => crate::blocking::set_blocking(shard, c, &args),
        _ => {}
    }
    let mut writes = Writes::default();
    writes.add(kind, &args);
    if writes.keys.is_empty() && !writes.flush && !writes.swap {
        return forward_on(c, client, args, raw, shape, s.proto);
    }
    send_evicting(shard, c, client, s.proto, args, raw, shape, writes)
}

/// Sends a write whose keys are evicted before it is sent and again when its reply arrives:
/// on a dedicated connection it races with fills on the shared one, and SWAPDB must reach
/// every shard before its client hears `+OK`.
#[allow(clippy::too_many_arguments)]
fn send_evicting(
    shard: &Shard,
    conn: &Rc<Conn<Waiter>>,
    client: &Rc<ClientShared>,
    proto: Proto,
    args: Args,
    raw: Option<&[u8]>,
    shape: Shape,
    writes: Writes,
) -> Flow {
    if let Some(flow) = switching(conn, client).or_else(|| not_admitted(conn, client, 1)) {
        return flow;
    }
    writes.evict(shard);
    let reply = crate::multi::ExecReply {
        client: client.clone(),
        seq: client.push_pending(),
        proto,
        shapes: vec![shape],
        single: true,
        writes,
    };
    conn.send_request(raw, &args, Waiter::Exec(Box::new(reply)));
    Flow::Next
}

pub(crate) fn is_script(args: &Args) -> bool {
    let name = args.get(0);
    [
        &b"EVAL"[..],
        b"EVALSHA",
        b"EVAL_RO",
        b"EVALSHA_RO",
        b"FCALL",
        b"FCALL_RO",
    ]
    .iter()
    .any(|n| name.eq_ignore_ascii_case(n))
}

fn is_script_kill(args: &Args) -> bool {
    args.len() == 2
        && args.get(1).eq_ignore_ascii_case(b"KILL")
        && (args.get(0).eq_ignore_ascii_case(b"SCRIPT")
            || args.get(0).eq_ignore_ascii_case(b"FUNCTION"))
}

fn refuse(client: &ClientShared, args: &Args, why: &str) {
    stats::count(Class::Refused);
    let name = String::from_utf8_lossy(args.get(0)).to_lowercase();
    let msg = format!("ERR command '{name}' is not supported by redis-proxy ({why})");
    client.push_local(|o| put_error(o, msg.as_bytes()));
}

pub(crate) fn arity(client: &ClientShared, name: &str) -> Flow {
    stats::count(Class::Error);
    let msg = format!("ERR wrong number of arguments for '{name}' command");
    client.push_local(|o| put_error(o, msg.as_bytes()));
    Flow::Next
}

/// `Some(flow)` if `n` requests cannot be queued on `conn` now.
#[inline]
pub(crate) fn not_admitted(
    conn: &Rc<Conn<Waiter>>,
    client: &ClientShared,
    n: usize,
) -> Option<Flow> {
    match conn.admit(n) {
        Admit::Yes => None,
        Admit::Full => Some(Flow::Wait(conn.clone(), n)),
        Admit::Down => {
            stats::count(Class::Error);
            client.push_local(|o| conn.put_down_error(o));
            Some(Flow::Next)
        }
    }
}

pub(crate) fn invalidate(shard: &Shard, args: &Args, keys: Keys) {
    match keys {
        Keys::Script => {
            if let Some(range) = script_keys(args) {
                for i in range {
                    shard.invalidate(args.get(i));
                }
            }
        }
        k => {
            for i in write_keys(k, args.len()) {
                shard.invalidate(args.get(i));
            }
        }
    }
}

/// Forwards on the shared connection of the client's db (server-wide commands).
pub fn forward_shared(
    shard: &Rc<Shard>,
    client: &Rc<ClientShared>,
    s: &Session,
    args: Args,
    raw: Option<&[u8]>,
) -> Flow {
    let conn = shard.conn_for(s.db);
    forward_on(&conn, client, args, raw, Shape::Plain, s.proto)
}

/// `Some(Flow::Drain)` if the client's requests in flight went to another connection than
/// `conn`: they must be answered first, or Redis could run the new one before them.
#[inline]
pub(crate) fn switching(conn: &Rc<Conn<Waiter>>, client: &ClientShared) -> Option<Flow> {
    switching_at(Rc::as_ptr(conn) as usize, client)
}

/// `switching` for a connection named by its address.
#[inline]
pub(crate) fn switching_at(at: usize, client: &ClientShared) -> Option<Flow> {
    if client.last_conn.get() != at {
        if client.backlog().1 > 0 {
            return Some(Flow::Drain);
        }
        client.last_conn.set(at);
    }
    None
}

pub(crate) fn forward_on(
    conn: &Rc<Conn<Waiter>>,
    client: &Rc<ClientShared>,
    args: Args,
    raw: Option<&[u8]>,
    shape: Shape,
    proto: Proto,
) -> Flow {
    if let Some(flow) = switching(conn, client) {
        return flow;
    }
    send_on(conn, client, args, raw, shape, proto)
}

/// Forwards without regard to order with the client's other requests (SCRIPT KILL must
/// overtake the script it kills).
fn send_on(
    conn: &Rc<Conn<Waiter>>,
    client: &Rc<ClientShared>,
    args: Args,
    raw: Option<&[u8]>,
    shape: Shape,
    proto: Proto,
) -> Flow {
    send_with(conn, client, &args, raw, |seq| Waiter::Reply {
        client: client.clone(),
        seq,
        shape,
        proto,
    })
}

/// Queues a request whose reply goes to the waiter `waiter` makes for the client's slot.
#[inline]
fn send_with(
    conn: &Rc<Conn<Waiter>>,
    client: &Rc<ClientShared>,
    args: &Args,
    raw: Option<&[u8]>,
    waiter: impl FnOnce(u64) -> Waiter,
) -> Flow {
    if let Some(flow) = not_admitted(conn, client, 1) {
        return flow;
    }
    let seq = client.push_pending();
    conn.send_request(raw, args, waiter(seq));
    Flow::Next
}

fn get(
    shard: &Rc<Shard>,
    s: &Session,
    client: &Rc<ClientShared>,
    args: Args,
    raw: Option<&[u8]>,
) -> Flow {
    let (proto, db) = (s.proto, s.db as u8);
    let key = args.get(1);
    if served_or_joined(shard, client, db, key, proto) {
        return Flow::Next;
    }
    let conn = &shard.conn_for(s.db);
    if let Some(flow) = switching(conn, client).or_else(|| not_admitted(conn, client, 2)) {
        return flow;
    }
    start_fetch(shard, conn, client, db, &args, raw, proto);
    Flow::Next
}

/// A cache fill of `GET key` (`args`) on `conn`: `GET` and `PTTL` back to back, the client the
/// fetch's first waiter. The caller has checked that `conn` takes two requests.
pub(crate) fn start_fetch(
    shard: &Shard,
    conn: &Conn<Waiter>,
    client: &Rc<ClientShared>,
    db: u8,
    args: &Args,
    raw: Option<&[u8]>,
    proto: Proto,
) {
    let key = args.get(1);
    let seq = client.push_pending();
    let f = shard
        .inflight
        .borrow_mut()
        .start(db, key, (client.clone(), seq, proto), shard.now());
    f.borrow_mut().at = conn.order().1;
    conn.send_request(raw, args, Waiter::Get(f.clone()));
    conn.send_args([&b"PTTL"[..], key].into_iter(), Waiter::Ttl(f));
    stats::forwarded_as_miss(2);
}

/// A GET answered from the cache, or from (or joined to) a fetch of the key under way;
/// `false`: a fetch must start.
#[inline]
pub(crate) fn served_or_joined(
    shard: &Shard,
    client: &Rc<ClientShared>,
    db: u8,
    key: &[u8],
    proto: Proto,
) -> bool {
    if let Some(reply) = shard.cache.borrow_mut().get_in(db, key, shard.now()) {
        stats::count(Class::Hit);
        client.push_local(|o| put_cached(o, reply, proto));
        return true;
    }
    let join = shard
        .inflight
        .borrow_mut()
        .join(db, key, client, proto, || client.push_pending());
    match join {
        Join::Joined => stats::count(Class::Miss),
        Join::Value(v) => {
            stats::count(Class::Miss);
            client.push_local(|o| put_cached(o, &v, proto));
        }
        Join::Start => return false,
    }
    true
}

/// MGET is atomic in Redis, so the proxy answers with a combination of values that existed:
/// all keys from the cache (which mirrors Redis as of the last invalidation applied), or, on any
/// miss, one backend MGET of all the keys. Never hits mixed with values fetched later.
fn mget(
    shard: &Rc<Shard>,
    s: &Session,
    client: &Rc<ClientShared>,
    args: Args,
    raw: Option<&[u8]>,
) -> Flow {
    let (proto, db) = (s.proto, s.db as u8);
    let now = shard.now();
    let mut cache = shard.cache.borrow_mut();
    if !args.iter().skip(1).all(|k| cache.contains(db, k, now)) {
        drop(cache);
        let conn = &shard.conn_for(s.db);
        let sent = stats::forwarded_so_far();
        let flow = forward_on(conn, client, args, raw, Shape::Plain, proto);
        if stats::forwarded_so_far() > sent {
            stats::forwarded_as_miss(1);
        }
        return flow;
    }
    stats::count(Class::Hit);
    client.push_local(|o| {
        put_header(o, b'*', args.len() as i64 - 1);
        for key in args.iter().skip(1) {
            // Checked just above, and nothing has run since.
            put_cached(o, cache.get_in(db, key, now).unwrap_or(b"$-1\r\n"), proto);
        }
    });
    Flow::Next
}
