//! Transactions. A MULTI without WATCH is queued by the proxy, which answers `+QUEUED` or the
//! queue-time error redis-server would give, and at EXEC sends `MULTI`, the commands and
//! `EXEC` as one contiguous block on the shard's shared pipelined connection: nothing of
//! another client can come between them on the wire, so Redis runs them exactly as it would
//! for a connection of the client's own, and no dedicated connection is spent. With WATCH the
//! client is pinned to a dedicated connection (see `pool.rs`) and the commands go to it as
//! they come; either way the written keys are evicted before EXEC is sent and again when its
//! reply arrives.

use crate::command::{script_keys, write_keys, Keys, Kind};
use crate::deliver::Waiter;
use crate::dispatch::{arity, forward_on, not_admitted, switching, Flow, Session};
use crate::replies::ClientShared;
use crate::resp::convert::Shape;
use crate::resp::cursor::{header, Cursor};
use crate::resp::encode::{relay, Proto};
use crate::resp::frame::frame_len;
use crate::resp::request::Args;
use crate::resp::write::{put_command, put_error, put_header};
use crate::shard::Shard;
use bytes::{Bytes, BytesMut};
use hashbrown::HashMap;
use std::rc::Rc;

/// A transaction being queued.
#[derive(Default)]
pub struct Multi {
    /// `MULTI` and the queued commands, as RESP (empty when pinned: they went to Redis).
    pub block: BytesMut,
    pub queued: usize,
    /// Reply shape of each queued command, for a RESP2 client's EXEC reply.
    pub shapes: Vec<Shape>,
    /// What the queued commands write.
    pub writes: Writes,
    /// A command was refused at queue time: EXEC answers EXECABORT.
    pub dirty: bool,
    /// Keys the queued commands read, for a tracking client (key, Redis's word only).
    pub reads: Vec<(Bytes, bool)>,
    /// Cluster mode: the slot of the queued commands' keys (they must share one).
    pub slot: Option<u16>,
}

impl Multi {
    pub fn new(pinned: bool) -> Self {
        let mut m = Multi::default();
        if !pinned {
            crate::resp::write::put_command(&mut m.block, [&b"MULTI"[..]].into_iter());
        }
        m
    }
}

pub const EXECABORT: &[u8] = b"-EXECABORT Transaction discarded because of previous errors.\r\n";

/// What a command (or a transaction's commands) writes, to evict before it is sent and again
/// when its reply arrives.
#[derive(Default)]
pub struct Writes {
    pub keys: Vec<Bytes>,
    /// It flushes a db: the whole cache goes.
    pub flush: bool,
    /// SWAPDB: every shard's cache goes (Redis sends no invalidation for it).
    pub swap: bool,
}

impl Writes {
    /// Adds what the command `args` of kind `kind` writes.
    pub fn add(&mut self, kind: Kind, args: &Args) {
        let copy = |i: usize| Bytes::copy_from_slice(args.get(i));
        match kind {
            Kind::Write(Keys::Script) => {
                if let Some(range) = script_keys(args) {
                    self.keys.extend(range.map(copy));
                }
            }
            Kind::Write(keys) => self.keys.extend(write_keys(keys, args.len()).map(copy)),
            Kind::Blocking => self.keys.extend((1..args.len()).map(copy)),
            Kind::Flush | Kind::FlushDb => self.flush = true,
            Kind::Swapdb => self.swap = true,
            _ => {}
        }
    }

    pub fn evict(&self, shard: &Shard) {
        if self.swap {
            shard.swapped_dbs();
        } else if self.flush {
            shard.flush_cache();
        }
        for k in &self.keys {
            shard.invalidate(k);
        }
    }
}

/// Waits for the reply of an EXEC, or of a write on a client's dedicated connection.
pub struct ExecReply {
    pub client: Rc<ClientShared>,
    pub seq: u64,
    pub proto: Proto,
    /// One per queued command; a single command's own shape when not an EXEC.
    pub shapes: Vec<Shape>,
    /// The reply is a single command's, not EXEC's array.
    pub single: bool,
    pub writes: Writes,
}

impl ExecReply {
    /// The transaction ran (or not): evict its keys again, so a fill that raced with it cannot
    /// outlive it, then relay the reply.
    pub fn on_reply(&self, shard: &Shard, frame: &[u8], resp3: bool) {
        self.writes.evict(shard);
        self.client.complete(self.seq, |out| match self.single {
            true => {
                let info = frame_len(frame).ok().flatten().expect("framed reply");
                relay(frame, info, self.shapes[0], resp3, self.proto, out);
            }
            false => put_exec_reply(frame, &self.shapes, resp3, self.proto, out),
        });
    }

    /// The connection failed: the command may have run, so evict all the same.
    pub fn fail(&self, shard: &Shard, msg: &str) {
        self.writes.evict(shard);
        self.client
            .complete(self.seq, |out| put_error(out, msg.as_bytes()));
    }
}

/// EXEC's reply for a client: element by element with each command's shape for RESP2; a
/// null (WATCH failed) is RESP2's null array.
fn put_exec_reply(frame: &[u8], shapes: &[Shape], resp3: bool, proto: Proto, out: &mut BytesMut) {
    let h = header(frame, 0);
    if proto == Proto::Resp3 || !resp3 {
        out.extend_from_slice(frame);
    } else if h.kind == b'_' {
        out.extend_from_slice(b"*-1\r\n");
    } else if h.kind == b'*' && h.count() == shapes.len() as i64 {
        put_header(out, b'*', shapes.len() as i64);
        let mut at = h.next;
        for &shape in shapes {
            let Ok(Some(info)) = frame_len(&frame[at..]) else {
                return; // framed by the reader: cannot happen
            };
            relay(
                &frame[at..at + info.len],
                info,
                shape,
                true,
                Proto::Resp2,
                out,
            );
            at += info.len;
        }
    } else {
        let info = frame_len(frame).ok().flatten().expect("framed reply");
        relay(frame, info, Shape::Plain, true, Proto::Resp2, out);
    }
}

/// A command between MULTI and EXEC.
pub fn in_multi(
    shard: &Rc<Shard>,
    client: &Rc<ClientShared>,
    s: &mut Session,
    args: Args,
    raw: Option<&[u8]>,
    kind: Kind,
    shape: Shape,
) -> Flow {
    let proto = s.proto;
    let m = s.multi.as_mut().expect("in a transaction");
    match kind {
        Kind::Exec if args.len() != 1 => return arity(client, "exec"),
        Kind::Discard if args.len() != 1 => return arity(client, "discard"),
        Kind::Exec => return exec(shard, client, s, args, raw),
        Kind::Discard => {
            s.multi = None;
            if let Some(c) = &s.pinned {
                s.watching = false;
                return forward_on(c, client, args, raw, shape, proto);
            }
            client.push_local(|o| o.extend_from_slice(b"+OK\r\n"));
            return Flow::Next;
        }
        Kind::Multi => {
            client.push_local(|o| put_error(o, b"ERR MULTI calls can not be nested"));
            return Flow::Next;
        }
        Kind::Watch => {
            client.push_local(|o| put_error(o, b"ERR WATCH inside MULTI is not allowed"));
            return Flow::Next;
        }
        Kind::Quit => {
            client.push_local(|o| o.extend_from_slice(b"+OK\r\n"));
            return Flow::Quit;
        }
        // Redis's own refusal: from Redis on a pinned connection, else given here.
        _ if shard.commands().is_some_and(|t| t.no_multi(&args)) => {
            if let Some(c) = &s.pinned {
                return forward_on(c, client, args, raw, shape, proto);
            }
            m.dirty = true;
            client.push_local(|o| put_error(o, b"ERR Command not allowed inside a transaction"));
            return Flow::Next;
        }
        // As in redis-server, RESET is not queued: it ends the transaction (once the replies
        // Redis owes for what it queued have come back).
        Kind::Reset if s.pinned.is_some() && client.backlog().1 > 0 => return Flow::Drain,
        Kind::Reset => return crate::client_cmd::reset(shard, client, s),
        Kind::Refused(_)
        | Kind::Select
        | Kind::Auth
        | Kind::Hello
        | Kind::Client
        | Kind::Subscribe(_)
        | Kind::Unsubscribe(_)
        | Kind::Monitor => {
            m.dirty = true;
            let name = String::from_utf8_lossy(args.get(0)).to_lowercase();
            let msg = format!(
                "ERR command '{name}' inside MULTI is not supported by redis-proxy (it changes \
                 per-connection server state)"
            );
            client.push_local(|o| put_error(o, msg.as_bytes()));
            return Flow::Next;
        }
        _ => {}
    }
    if s.pinned.is_none() {
        if let Some(err) = shard.commands().and_then(|t| t.check(&args)) {
            m.dirty = true;
            client.push_local(|o| put_error(o, err.as_bytes()));
            return Flow::Next;
        }
        if shard.cluster.is_some() {
            let table = shard.commands();
            if let Some(i) = crate::cluster::route::first_key(table.as_deref(), kind, &args) {
                let slot = crate::cluster::slots::key_slot(args.get(i));
                if *m.slot.get_or_insert(slot) != slot {
                    // As a cluster node refuses it at queue time (then EXEC aborts).
                    m.dirty = true;
                    client.push_local(|o| {
                        put_error(o, b"CROSSSLOT Keys in request don't hash to the same slot")
                    });
                    return Flow::Next;
                }
            }
        }
    }
    m.queued += 1;
    m.shapes.push(shape);
    m.writes.add(kind, &args);
    match &s.pinned {
        Some(c) => forward_on(c, client, args, raw, Shape::Plain, proto),
        None => {
            match raw {
                Some(raw) => m.block.extend_from_slice(raw),
                None => put_command(&mut m.block, args.iter()),
            }
            client.push_local(|o| o.extend_from_slice(b"+QUEUED\r\n"));
            Flow::Next
        }
    }
}

/// EXEC: the queued block goes out contiguously on the shared connection (or EXEC on the
/// pinned one, where Redis queued the commands itself).
fn exec(
    shard: &Rc<Shard>,
    client: &Rc<ClientShared>,
    s: &mut Session,
    args: Args,
    raw: Option<&[u8]>,
) -> Flow {
    let m = s.multi.as_ref().expect("in a transaction");
    if m.dirty {
        // The proxy refused a command at queue time; on a pinned connection Redis queued the
        // others and must not run them.
        if let Some(c) = &s.pinned {
            c.send_args([&b"DISCARD"[..]].into_iter(), Waiter::Ignore);
            s.watching = false;
        }
        s.multi = None;
        client.push_local(|o| o.extend_from_slice(EXECABORT));
        return Flow::Next;
    }
    let conn = match (&s.pinned, &shard.cluster) {
        (Some(c), _) => c.clone(),
        (None, Some(cluster)) => {
            let conn = match m.slot {
                Some(slot) => cluster.route(slot, false),
                None => cluster.any_master(),
            };
            let Some(conn) = conn else {
                s.multi = None;
                client.push_local(|o| put_error(o, crate::cluster::dispatch::CLUSTERDOWN));
                return Flow::Next;
            };
            if let Some(flow) = crate::dispatch::switching_at(cluster.token(), client) {
                return flow;
            }
            // The block runs where the map says: counted as this client's cluster requests.
            client.last_conn.set(cluster.token());
            conn
        }
        (None, None) => shard.conn_for(s.db),
    };
    let n = if s.pinned.is_some() { 1 } else { m.queued + 2 };
    let switched = match shard.cluster.is_some() && s.pinned.is_none() {
        true => None,
        false => switching(&conn, client),
    };
    if let Some(flow) = switched.or_else(|| not_admitted(&conn, client, n)) {
        return flow;
    }
    let m = s.multi.take().expect("in a transaction");
    let reply = ExecReply {
        client: client.clone(),
        seq: client.push_pending(),
        proto: s.proto,
        shapes: m.shapes,
        single: false,
        writes: m.writes,
    };
    reply.writes.evict(shard);
    let reply = Waiter::Exec(Box::new(reply));
    if s.pinned.is_some() {
        s.watching = false;
        conn.send_request(raw, &args, reply);
    } else {
        if let Some(t) = &s.tracker {
            // Redis runs the queued reads at EXEC, the block's last reply.
            let at = conn.order().1 + m.queued as u64 + 1;
            let via = Rc::as_ptr(&conn) as usize;
            let read = crate::tracking::table::Read { via, at };
            crate::tracking::remember_exec(shard, t, m.reads, read);
        }
        let mut block = m.block;
        put_command(&mut block, [&b"EXEC"[..]].into_iter());
        let acks = (0..=m.queued).map(|_| Waiter::Ignore);
        conn.send_block(&block, acks.chain(std::iter::once(reply)));
    }
    conn.flush();
    Flow::Next
}

/// Names and arities of Redis's commands (from `COMMAND`), for the checks redis-server makes
/// when it queues a command.
#[derive(Default)]
pub struct CommandTable {
    /// Lower-case name (`container|sub` for subcommands) -> what Redis says of it.
    commands: HashMap<Vec<u8>, Spec>,
    /// Commands flagged `no_multi`: refused inside a transaction.
    no_multi: hashbrown::HashSet<Vec<u8>>,
}

/// One command of Redis's table.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spec {
    pub arity: i64,
    pub subs: bool,
    /// Flagged `readonly`: Redis remembers its keys for a tracking client.
    pub readonly: bool,
    /// Flagged `movablekeys`: the key positions depend on the arguments.
    pub movable: bool,
    pub first: i64,
    pub last: i64,
    pub step: i64,
}

impl CommandTable {
    /// Parses `COMMAND`'s reply (RESP2 or RESP3).
    pub fn parse(reply: &[u8]) -> CommandTable {
        let mut t = CommandTable::default();
        let mut c = Cursor::new(reply);
        if let Some((b'*', n)) = c.header() {
            for _ in 0..n {
                t.read_entry(&mut c, reply);
            }
        }
        t
    }

    fn read_entry(&mut self, c: &mut Cursor, reply: &[u8]) {
        let Some((_, fields)) = c.header() else {
            return;
        };
        let name = c.bulk().map(|n| n.to_ascii_lowercase());
        let arity = match c.header() {
            Some((b':', a)) => a,
            _ => 0,
        };
        let mut subs = 0;
        let mut spec = Spec {
            arity,
            ..Spec::default()
        };
        for i in 2..fields {
            if i == 2 {
                if let Some((_, flags)) = c.header() {
                    for _ in 0..flags.max(0) {
                        let at = c.pos;
                        let flag = crate::resp::cursor::header(reply, at);
                        skip(c, reply);
                        match flag.line {
                            b"no_multi" => {
                                if let Some(n) = &name {
                                    self.no_multi.insert(n.clone());
                                }
                            }
                            b"readonly" => spec.readonly = true,
                            b"movablekeys" => spec.movable = true,
                            _ => {}
                        }
                    }
                }
            } else if (3..=5).contains(&i) {
                let n = match c.header() {
                    Some((b':', n)) => n,
                    _ => 0,
                };
                match i {
                    3 => spec.first = n,
                    4 => spec.last = n,
                    _ => spec.step = n,
                }
            } else if i == 9 {
                if let Some((_, n)) = c.header() {
                    subs = n.max(0);
                    for _ in 0..subs {
                        self.read_entry(c, reply);
                    }
                }
            } else {
                skip(c, reply);
            }
        }
        if let Some(name) = name {
            spec.subs = subs > 0;
            self.commands.insert(name, spec);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// Redis refuses this command inside MULTI ("Command not allowed inside a transaction").
    pub fn no_multi(&self, args: &Args) -> bool {
        self.no_multi.contains(&args.get(0).to_ascii_lowercase())
    }

    /// The entry of a command (of its subcommand, for a container), if Redis has it.
    pub fn spec(&self, args: &Args) -> Option<Spec> {
        let name = args.get(0).to_ascii_lowercase();
        let spec = *self.commands.get(&name)?;
        if spec.subs && args.len() >= 2 {
            let mut full = name;
            full.push(b'|');
            full.extend(args.get(1).to_ascii_lowercase());
            return self.commands.get(&full).copied();
        }
        Some(spec)
    }

    /// The name Redis gives a command in errors (`client|id` for a subcommand), if it has it.
    pub fn full_name(&self, args: &Args) -> Option<String> {
        let name = args.get(0).to_ascii_lowercase();
        let subs = self.commands.get(&name)?.subs;
        let mut full = name;
        if subs && args.len() >= 2 {
            full.push(b'|');
            full.extend(args.get(1).to_ascii_lowercase());
        }
        Some(String::from_utf8_lossy(&full).into_owned())
    }

    /// redis-server's queue-time check of a command's name and arity: the error line, or
    /// `None` if Redis would queue it.
    pub fn check(&self, args: &Args) -> Option<String> {
        if self.commands.is_empty() {
            return None; // not known yet: Redis itself will refuse at EXEC
        }
        let name = args.get(0).to_ascii_lowercase();
        let Some(&Spec { arity, subs, .. }) = self.commands.get(&name) else {
            let mut list = String::new();
            for a in args.iter().skip(1) {
                if list.len() >= 128 {
                    break;
                }
                let room = 128 - list.len();
                let a = String::from_utf8_lossy(a);
                let a: String = a.chars().take(room).collect();
                list.push_str(&format!("'{a}' "));
            }
            let shown: String = String::from_utf8_lossy(args.get(0))
                .chars()
                .take(128)
                .collect();
            return Some(format!(
                "ERR unknown command '{shown}', with args beginning with: {list}"
            ));
        };
        let (full, arity) = if subs && args.len() >= 2 {
            let mut full = name.clone();
            full.push(b'|');
            full.extend(args.get(1).to_ascii_lowercase());
            match self.commands.get(&full) {
                Some(spec) => (full, spec.arity),
                None => {
                    let sub: String = String::from_utf8_lossy(args.get(1))
                        .chars()
                        .take(128)
                        .collect();
                    return Some(format!(
                        "ERR unknown subcommand '{sub}'. Try {} HELP.",
                        String::from_utf8_lossy(&name).to_uppercase()
                    ));
                }
            }
        } else {
            (name, arity)
        };
        let n = args.len() as i64;
        if (arity > 0 && n != arity) || n < arity.abs() {
            return Some(format!(
                "ERR wrong number of arguments for '{}' command",
                String::from_utf8_lossy(&full)
            ));
        }
        None
    }
}

fn skip(c: &mut Cursor, reply: &[u8]) {
    if let Ok(Some(i)) = frame_len(&reply[c.pos..]) {
        c.pos += i.len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::request::{RequestScanner, Scan};

    fn check(t: &CommandTable, line: &str) -> Option<String> {
        let input = format!("{line}\r\n");
        let mut sc = RequestScanner::new();
        assert!(matches!(sc.scan(input.as_bytes()), Scan::Command { .. }));
        t.check(&sc.args(input.as_bytes()))
    }

    fn no_multi(t: &CommandTable, line: &str) -> bool {
        let input = format!("{line}\r\n");
        let mut sc = RequestScanner::new();
        sc.scan(input.as_bytes());
        t.no_multi(&sc.args(input.as_bytes()))
    }

    #[test]
    fn queue_time_checks() {
        // Two entries as Redis 7 sends them: name, arity, flags, first, last, step, acl,
        // tips, key specs, subcommands.
        let reply = b"*2\r\n\
            *10\r\n$3\r\nget\r\n:2\r\n~0\r\n:1\r\n:1\r\n:1\r\n~0\r\n*0\r\n*0\r\n*0\r\n\
            *10\r\n$6\r\nconfig\r\n:-2\r\n~1\r\n+no_multi\r\n:0\r\n:0\r\n:0\r\n~0\r\n*0\r\n*0\r\n\
            *1\r\n*10\r\n$10\r\nconfig|get\r\n:-3\r\n~0\r\n:0\r\n:0\r\n:0\r\n~0\r\n*0\r\n*0\r\n*0\r\n";
        let t = CommandTable::parse(reply);
        assert_eq!(check(&t, "GET k"), None);
        assert!(no_multi(&t, "CONFIG get x") && !no_multi(&t, "get k"));
        assert_eq!(check(&t, "config get maxmemory"), None);
        assert_eq!(
            check(&t, "get").unwrap(),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(
            check(&t, "CONFIG GET").unwrap(),
            "ERR wrong number of arguments for 'config|get' command"
        );
        assert_eq!(
            check(&t, "config foo").unwrap(),
            "ERR unknown subcommand 'foo'. Try CONFIG HELP."
        );
        assert_eq!(
            check(&t, "FOO bar baz").unwrap(),
            "ERR unknown command 'FOO', with args beginning with: 'bar' 'baz' "
        );
    }

    #[test]
    fn exec_reply_for_resp2() {
        let frame = b"*2\r\n+OK\r\n*1\r\n*2\r\n$1\r\na\r\n,1\r\n";
        let mut out = BytesMut::new();
        put_exec_reply(
            frame,
            &[Shape::Plain, Shape::FlattenPairs],
            true,
            Proto::Resp2,
            &mut out,
        );
        assert_eq!(&out[..], b"*2\r\n+OK\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n");
        out.clear();
        put_exec_reply(b"_\r\n", &[], true, Proto::Resp2, &mut out);
        assert_eq!(&out[..], b"*-1\r\n");
    }
}
