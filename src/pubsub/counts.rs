//! Subscribers per name across the whole process. Redis sees one subscription per shard where
//! the proxy's clients see one per client, so the replies that count subscribers (PUBLISH,
//! SPUBLISH, PUBSUB NUMSUB and SHARDNUMSUB) are corrected with these: Redis's count, less the
//! proxy's connections that received, plus the proxy's clients behind them. Touched when a
//! client (un)subscribes and on those replies, never for messages.

use super::Class;
use crate::resp::cursor::Cursor;
use crate::resp::request::Args;
use crate::resp::write::{put_bulk, put_header};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

#[derive(Default, Clone, Copy)]
struct Count {
    /// Shards subscribed to the name at Redis.
    shards: i64,
    /// The proxy's clients subscribed to it.
    clients: i64,
}

/// Names by class (channels, patterns, shard channels).
type Counts = [HashMap<Bytes, Count>; 3];

static COUNTS: Mutex<Option<Counts>> = Mutex::new(None);
/// Subscriptions of the proxy's clients, all names: replies need no correction at 0, and are
/// then relayed without taking the lock.
static ANY: AtomicI64 = AtomicI64::new(0);

fn with<R>(f: impl FnOnce(&mut Counts) -> R) -> R {
    let mut g = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(Default::default))
}

/// Whether any client of the proxy has a subscription.
pub fn any() -> bool {
    ANY.load(Ordering::Relaxed) > 0
}

/// A client joined (`delta` 1) or left (-1) `name` on some shard; `edge`: it was the shard's
/// first, or last, so the shard's own subscription at Redis comes or goes with it.
pub fn changed(class: Class, name: &[u8], edge: bool, delta: i64) {
    ANY.fetch_add(delta, Ordering::Relaxed);
    with(|m| {
        let m = &mut m[class.idx()];
        if !m.contains_key(name) {
            m.insert(Bytes::copy_from_slice(name), Count::default());
        }
        let c = m.get_mut(name).expect("inserted");
        c.clients += delta;
        if edge {
            c.shards += delta;
        }
        if c.clients <= 0 && c.shards <= 0 {
            m.remove(name);
        }
    })
}

/// Redis's subscriber count for a channel, in the proxy's clients' terms.
pub fn numsub(class: Class, name: &[u8], redis: i64) -> i64 {
    with(|m| {
        let c = m[class.idx()].get(name).copied().unwrap_or_default();
        (redis - c.shards).max(0) + c.clients
    })
}

/// Redis's receiver count for a message published on `channel`, in the proxy's clients'
/// terms: the channel's own subscribers and, unless it is a shard channel, those of every
/// pattern that matches it.
pub fn receivers(class: Class, channel: &[u8], redis: i64) -> i64 {
    with(|m| {
        let mut via_proxy = m[class.idx()].get(channel).copied().unwrap_or_default();
        if class == Class::Channel {
            for (pattern, n) in m[Class::Pattern.idx()].iter() {
                if crate::pubsub::glob::matches(pattern, channel) {
                    via_proxy.shards += n.shards;
                    via_proxy.clients += n.clients;
                }
            }
        }
        (redis - via_proxy.shards).max(0) + via_proxy.clients
    })
}

/// A reply that counts subscribers, to correct (see the module's doc).
pub enum Fix {
    /// PUBLISH or SPUBLISH to this channel.
    Publish(Class, Bytes),
    /// PUBSUB NUMSUB or SHARDNUMSUB.
    NumSub(Class),
}

/// The correction a command's reply needs, if any.
pub fn fix_for(args: &Args) -> Option<Fix> {
    if !any() {
        return None;
    }
    let name = args.get(0);
    if args.len() == 3 && name.eq_ignore_ascii_case(b"PUBLISH") {
        return Some(Fix::Publish(
            Class::Channel,
            Bytes::copy_from_slice(args.get(1)),
        ));
    }
    if args.len() == 3 && name.eq_ignore_ascii_case(b"SPUBLISH") {
        return Some(Fix::Publish(
            Class::Shard,
            Bytes::copy_from_slice(args.get(1)),
        ));
    }
    if args.len() >= 2 && name.eq_ignore_ascii_case(b"PUBSUB") {
        let sub = args.get(1);
        if sub.eq_ignore_ascii_case(b"NUMSUB") {
            return Some(Fix::NumSub(Class::Channel));
        }
        if sub.eq_ignore_ascii_case(b"SHARDNUMSUB") {
            return Some(Fix::NumSub(Class::Shard));
        }
    }
    None
}

/// The corrected reply (the same in RESP2 and RESP3: integers, bulk strings and an array),
/// or `None` to relay Redis's as it is (an error).
pub fn apply(fix: &Fix, frame: &[u8]) -> Option<BytesMut> {
    let mut out = BytesMut::new();
    match fix {
        Fix::Publish(class, channel) => {
            let n =
                crate::resp::frame::parse_int(frame.strip_prefix(b":")?.strip_suffix(b"\r\n")?)?;
            put_header(&mut out, b':', receivers(*class, channel, n));
        }
        Fix::NumSub(class) => {
            if frame.first() != Some(&b'*') {
                return None; // an error: relayed as it is
            }
            let mut c = Cursor::new(frame);
            let (b'*', n) = c.header()? else { return None };
            put_header(&mut out, b'*', n);
            for _ in 0..n / 2 {
                let name = c.bulk()?;
                let (b':', count) = c.header()? else {
                    return None;
                };
                put_bulk(&mut out, name);
                put_header(&mut out, b':', numsub(*class, name, count));
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_in_the_clients_terms() {
        // Three clients of one shard on `t:news`, one client of each of two shards on `t:n*`.
        let news = Bytes::from_static(b"t:news");
        changed(Class::Channel, &news, true, 1);
        changed(Class::Channel, &news, false, 1);
        changed(Class::Channel, &news, false, 1);
        let pat = Bytes::from_static(b"t:n*");
        changed(Class::Pattern, &pat, true, 1);
        changed(Class::Pattern, &pat, true, 1);
        // Redis saw 1 + 2 of the proxy's subscriptions and 1 direct subscriber: 4.
        let fix = Fix::Publish(Class::Channel, news.clone());
        assert_eq!(&apply(&fix, b":4\r\n").unwrap()[..], b":6\r\n");
        let fix = Fix::NumSub(Class::Channel);
        let reply = b"*4\r\n$6\r\nt:news\r\n:2\r\n$7\r\nt:other\r\n:0\r\n";
        assert_eq!(
            &apply(&fix, reply).unwrap()[..],
            b"*4\r\n$6\r\nt:news\r\n:4\r\n$7\r\nt:other\r\n:0\r\n"
        );
        assert!(
            apply(&fix, b"-ERR x\r\n").is_none(),
            "errors are relayed as they are"
        );
        for _ in 0..3 {
            changed(Class::Channel, &news, false, -1);
        }
        changed(Class::Pattern, &pat, true, -1);
        changed(Class::Pattern, &pat, true, -1);
    }
}
