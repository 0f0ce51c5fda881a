//! The client's side of pub/sub: (P|S)SUBSCRIBE and (P|S)UNSUBSCRIBE answered as redis-server
//! answers them (one confirmation per name, with the client's own count), RESP2's subscribed
//! mode, and PING in it.

use super::hub::Subscriber;
use super::Class;
use crate::dispatch::{arity, switching_at, Flow, Session};
use crate::replies::ClientShared;
use crate::resp::encode::Proto;
use crate::resp::request::Args;
use crate::resp::write::{put_bulk, put_error, put_header};
use crate::shard::Shard;
use bytes::{Bytes, BytesMut};
use std::rc::Rc;

/// One confirmation, as Redis writes it: `[event, name, count]`, a push in RESP3.
fn put_event(o: &mut BytesMut, proto: Proto, event: &[u8], name: Option<&[u8]>, count: usize) {
    put_header(o, if proto == Proto::Resp3 { b'>' } else { b'*' }, 3);
    put_bulk(o, event);
    match (name, proto) {
        (Some(n), _) => put_bulk(o, n),
        (None, Proto::Resp3) => o.extend_from_slice(b"_\r\n"),
        (None, Proto::Resp2) => o.extend_from_slice(b"$-1\r\n"),
    }
    put_header(o, b':', count as i64);
}

pub fn subscribe(
    shard: &Rc<Shard>,
    client: &Rc<ClientShared>,
    s: &mut Session,
    class: Class,
    args: &Args,
) -> Flow {
    if args.len() < 2 {
        let name = String::from_utf8_lossy(class.command(true)).to_lowercase();
        return arity(client, &name);
    }
    // Shard channels of one command share a slot (in cluster mode, they live on its master).
    let slot = crate::cluster::slots::key_slot;
    if class == Class::Shard
        && shard.cluster.is_some()
        && args.iter().skip(2).any(|n| slot(n) != slot(args.get(1)))
    {
        client
            .push_local(|o| put_error(o, b"CROSSSLOT Keys in request don't hash to the same slot"));
        return Flow::Next;
    }
    let Some(hub) = shard.hub(class, args.get(1)) else {
        client.push_local(|o| put_error(o, crate::cluster::dispatch::CLUSTERDOWN));
        return Flow::Next;
    };
    let known = |n: &[u8]| s.sub.as_ref().is_some_and(|sub| sub.has(class, n));
    // Redis must hold the subscription before the client hears it confirmed, and the client's
    // commands before it (a PUBLISH) must reach Redis first.
    if args
        .iter()
        .skip(1)
        .any(|n| !known(n) && hub.must_wait(class, n))
    {
        if let Some(flow) = switching_at(hub.conn_addr(shard), client) {
            return flow;
        }
    }
    let proto = s.proto;
    let sub = s
        .sub
        .get_or_insert_with(|| Rc::new(Subscriber::new(client.clone(), proto)))
        .clone();
    let mut reply = BytesMut::new();
    let mut waits = Vec::new();
    for name in args.iter().skip(1) {
        if !sub.has(class, name) {
            let name = Bytes::copy_from_slice(name);
            sub.insert(class, name.clone());
            if hub.add(class, &name, &sub) {
                waits.push(name);
            }
        }
        put_event(
            &mut reply,
            proto,
            class.event(true),
            Some(name),
            sub.count(class),
        );
    }
    hub.send();
    show(shard, client, &sub);
    // Sent even under CLIENT REPLY OFF, as by redis-server.
    if waits.is_empty() {
        client.push_always(|o| o.extend_from_slice(&reply));
    } else {
        let seq = client.push_pending_always();
        hub.wait(client, seq, reply, class, &waits);
    }
    Flow::Next
}

pub fn unsubscribe(
    shard: &Rc<Shard>,
    client: &Rc<ClientShared>,
    s: &mut Session,
    class: Class,
    args: &Args,
) -> Flow {
    let proto = s.proto;
    let names: Vec<Bytes> = if args.len() > 1 {
        args.iter().skip(1).map(Bytes::copy_from_slice).collect()
    } else {
        s.sub
            .as_ref()
            .map(|sub| sub.names(class))
            .unwrap_or_default()
    };
    let count = |s: &Session| s.sub.as_ref().map_or(0, |sub| sub.count(class));
    let mut reply = BytesMut::new();
    if names.is_empty() {
        put_event(&mut reply, proto, class.event(false), None, count(s));
    }
    let mut hubs: Vec<Rc<super::hub::Hub>> = Vec::new();
    for name in &names {
        if let Some(sub) = &s.sub {
            if sub.remove(class, name) {
                if let Some(hub) = shard.hub(class, name) {
                    hub.remove(class, name, sub);
                    if !hubs.iter().any(|h| Rc::ptr_eq(h, &hub)) {
                        hubs.push(hub);
                    }
                }
            }
        }
        put_event(&mut reply, proto, class.event(false), Some(name), count(s));
    }
    for hub in hubs {
        hub.send();
    }
    if let Some(sub) = &s.sub {
        show(shard, client, sub);
    }
    client.push_always(|o| o.extend_from_slice(&reply));
    Flow::Next
}

/// Drops every subscription of the client (it left, or RESET), without a reply.
pub fn leave_all(shard: &Shard, s: &mut Session) {
    let Some(sub) = s.sub.take() else { return };
    for class in Class::ALL {
        for name in sub.names(class) {
            sub.remove(class, &name);
            if let Some(hub) = shard.hub(class, &name) {
                hub.remove(class, &name, &sub);
            }
        }
    }
    shard.pubsub.send();
    for hub in shard.shard_hubs.borrow().iter() {
        hub.send();
    }
    show(shard, &sub.client, &sub);
}

/// The client switched protocols: its messages follow.
pub fn set_proto(s: &Session) {
    if let Some(sub) = &s.sub {
        sub.proto.set(s.proto);
    }
}

/// In RESP2, a client with subscriptions may only (un)subscribe, PING, QUIT and RESET, as in
/// redis-server. Answers the refusal (or the PING) and returns true if the command is done.
pub fn subscribed_mode(shard: &Shard, client: &ClientShared, s: &Session, args: &Args) -> bool {
    if s.proto != Proto::Resp2 || s.sub.as_ref().is_none_or(|sub| sub.total() == 0) {
        return false;
    }
    let name = args.get(0);
    let allowed = [
        &b"SUBSCRIBE"[..],
        b"PSUBSCRIBE",
        b"SSUBSCRIBE",
        b"UNSUBSCRIBE",
        b"PUNSUBSCRIBE",
        b"SUNSUBSCRIBE",
        b"QUIT",
        b"RESET",
    ];
    if allowed.iter().any(|a| name.eq_ignore_ascii_case(a)) {
        return false;
    }
    let table = shard.commands();
    // Redis checks the name and arity first (an unknown command is forwarded and refused by
    // Redis itself).
    let full = match &table {
        Some(t) => {
            if let Some(err) = t.check(args) {
                client.push_local(|o| put_error(o, err.as_bytes()));
                return true;
            }
            match t.full_name(args) {
                Some(full) => full,
                None => return false,
            }
        }
        None => String::from_utf8_lossy(name).to_lowercase(),
    };
    if name.eq_ignore_ascii_case(b"PING") {
        if args.len() > 2 {
            return false; // Redis's arity error
        }
        // In subscribed mode PING answers like a message: `pong` and the argument.
        client.push_local(|o| {
            put_header(o, b'*', 2);
            put_bulk(o, b"pong");
            put_bulk(o, if args.len() == 2 { args.get(1) } else { b"" });
        });
        return true;
    }
    let msg = format!(
        "ERR Can't execute '{full}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET \
         are allowed in this context"
    );
    client.push_local(|o| put_error(o, msg.as_bytes()));
    true
}

/// What CLIENT LIST and the subscriber gauge show of the client's subscriptions.
pub(super) fn show(shard: &Shard, client: &ClientShared, sub: &Subscriber) {
    let n = |c: Class| sub.len(c) as i64;
    let (ch, pat, sh) = (n(Class::Channel), n(Class::Pattern), n(Class::Shard));
    let subscribed = ch + pat + sh > 0;
    if client.pubsub.replace(subscribed) != subscribed {
        shard.stats.subscriber_changed(subscribed);
    }
    client.info().update(|d| {
        d.sub = ch;
        d.psub = pat;
        d.ssub = sh;
    });
}
