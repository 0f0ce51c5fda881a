//! `CLIENT TRACKING`, `CLIENT CACHING`, `CLIENT GETREDIR` and `CLIENT TRACKINGINFO`, with
//! redis-server 7's checks, errors and replies.

use super::Tracker;
use crate::dispatch::{Flow, Session};
use crate::replies::ClientShared;
use crate::resp::encode::Proto;
use crate::resp::request::Args;
use crate::resp::write::{put_bulk, put_error, put_header};
use crate::shard::Shard;
use bytes::{Bytes, BytesMut};
use std::rc::Rc;

const SYNTAX: &[u8] = b"ERR syntax error";

fn err(client: &ClientShared, msg: &str) -> Flow {
    client.push_local(|o| put_error(o, msg.as_bytes()));
    Flow::Next
}

pub fn tracking(
    shard: &Rc<Shard>,
    client: &Rc<ClientShared>,
    s: &mut Session,
    args: &Args,
) -> Flow {
    let mut redirect: u64 = 0;
    let (mut bcast, mut optin, mut optout, mut noloop) = (false, false, false, false);
    let mut prefixes: Vec<Bytes> = Vec::new();
    let mut j = 3;
    while j < args.len() {
        let a = args.get(j);
        let more = j + 1 < args.len();
        if a.eq_ignore_ascii_case(b"REDIRECT") && more {
            j += 1;
            if redirect != 0 {
                return err(
                    client,
                    "ERR A client can only redirect to a single other client",
                );
            }
            let Some(id) = crate::command::redis_int(args.get(j)) else {
                return err(client, "ERR value is not an integer or out of range");
            };
            // Required to exist now, as redis-server requires (it may leave later).
            if id <= 0 || crate::registry::get(id as u64).is_none() {
                return err(
                    client,
                    "ERR The client ID you want redirect to does not exist",
                );
            }
            redirect = id as u64;
        } else if a.eq_ignore_ascii_case(b"BCAST") {
            bcast = true;
        } else if a.eq_ignore_ascii_case(b"OPTIN") {
            optin = true;
        } else if a.eq_ignore_ascii_case(b"OPTOUT") {
            optout = true;
        } else if a.eq_ignore_ascii_case(b"NOLOOP") {
            noloop = true;
        } else if a.eq_ignore_ascii_case(b"PREFIX") && more {
            j += 1;
            prefixes.push(Bytes::copy_from_slice(args.get(j)));
        } else {
            return err(client, "ERR syntax error");
        }
        j += 1;
    }
    let on = args.get(2);
    if on.eq_ignore_ascii_case(b"OFF") {
        disable(shard, s);
        client.push_local(|o| o.extend_from_slice(b"+OK\r\n"));
        return Flow::Next;
    }
    if !on.eq_ignore_ascii_case(b"ON") {
        return err(client, "ERR syntax error");
    }
    if !bcast && !prefixes.is_empty() {
        return err(
            client,
            "ERR PREFIX option requires BCAST mode to be enabled",
        );
    }
    if let Some(t) = &s.tracker {
        if t.bcast.get() != bcast {
            return err(
                client,
                "ERR You can't switch BCAST mode on/off before disabling tracking for this \
                 client, and then re-enabling it with a different mode.",
            );
        }
    }
    if bcast && (optin || optout) {
        return err(client, "ERR OPTIN and OPTOUT are not compatible with BCAST");
    }
    if optin && optout {
        return err(
            client,
            "ERR You can't specify both OPTIN mode and OPTOUT mode",
        );
    }
    if let Some(t) = &s.tracker {
        if (optin && t.optout.get()) || (optout && t.optin.get()) {
            return err(
                client,
                "ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this \
                 client, and then re-enabling it with a different mode.",
            );
        }
    }
    if bcast {
        let existing = s
            .tracker
            .as_ref()
            .map(|t| t.prefixes.borrow().clone())
            .unwrap_or_default();
        if let Some(msg) = collision(&existing, &prefixes) {
            return err(client, &msg);
        }
    }
    if bcast && prefixes.is_empty() {
        prefixes.push(Bytes::new());
    }
    if shard.cluster.is_some() {
        return err(
            client,
            "ERR CLIENT TRACKING is not supported by redis-proxy in cluster mode",
        );
    }
    if !shard.client_tracking_possible() {
        return err(
            client,
            "ERR CLIENT TRACKING through redis-proxy needs its cache kept coherent by Redis \
             (--invalidation tracking and --capacity above 0)",
        );
    }
    // A BCAST client's `+OK` waits until Redis broadcasts its prefixes to the shard, and its
    // next command until then.
    let plan = bcast.then(|| shard.bcast.plan(&prefixes));
    let conn = bcast.then(|| shard.bcast.conn(shard));
    if let Some(c) = &conn {
        if let Some(flow) = crate::dispatch::switching(c, client) {
            return flow;
        }
    }
    let t = s
        .tracker
        .get_or_insert_with(|| Rc::new(Tracker::new(client.clone(), s.proto)))
        .clone();
    t.proto.set(s.proto);
    t.bcast.set(bcast);
    t.optin.set(optin);
    t.optout.set(optout);
    t.noloop.set(noloop);
    t.broken.set(false);
    t.redirect.set(redirect);
    if bcast {
        t.prefixes.borrow_mut().extend(prefixes.iter().cloned());
    }
    shard.tracking.add(&t);
    client.info().update(|d| {
        d.tracking = true;
        d.redir = redirect as i64;
    });
    match (plan, conn) {
        (Some(plan), Some(conn)) => {
            let seq = client.push_pending();
            shard.bcast.apply(&conn, plan, client, seq);
        }
        _ => client.push_local(|o| o.extend_from_slice(b"+OK\r\n")),
    }
    Flow::Next
}

/// Redis's check that no two prefixes of one client overlap (one a prefix of the other).
fn collision(existing: &[Bytes], new: &[Bytes]) -> Option<String> {
    let overlap = |a: &[u8], b: &[u8]| a.starts_with(b) || b.starts_with(a);
    let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    for (i, p) in new.iter().enumerate() {
        if let Some(e) = existing.iter().find(|e| overlap(e, p)) {
            return Some(format!(
                "ERR Prefix '{}' overlaps with an existing prefix '{}'. Prefixes for a single \
                 client must not overlap.",
                show(p),
                show(e)
            ));
        }
        if let Some(q) = new[i + 1..].iter().find(|q| overlap(p, q)) {
            return Some(format!(
                "ERR Prefix '{}' overlaps with another provided prefix '{}'. Prefixes for a \
                 single client must not overlap.",
                show(p),
                show(q)
            ));
        }
    }
    None
}

/// Tracking off: the client is forgotten by its shard's table.
pub fn disable(shard: &Shard, s: &mut Session) {
    if let Some(t) = s.tracker.take() {
        shard.tracking.remove(t.id());
        t.client.info().update(|d| {
            d.tracking = false;
            d.redir = -1;
        });
    }
}

pub fn caching(client: &ClientShared, s: &Session, args: &Args) -> Flow {
    let Some(t) = s
        .tracker
        .as_ref()
        .filter(|t| t.optin.get() || t.optout.get())
    else {
        // Redis's message says OPTIN or OPTOUT, but it checks only that tracking is on.
        if s.tracker.is_none() {
            return err(
                client,
                "ERR CLIENT CACHING can be called only when the client is in tracking mode \
                 with OPTIN or OPTOUT mode enabled",
            );
        }
        return caching_mode_error(client, args);
    };
    let opt = args.get(2);
    if opt.eq_ignore_ascii_case(b"YES") {
        if !t.optin.get() {
            return caching_mode_error(client, args);
        }
    } else if opt.eq_ignore_ascii_case(b"NO") {
        if !t.optout.get() {
            return caching_mode_error(client, args);
        }
    } else {
        client.push_local(|o| put_error(o, SYNTAX));
        return Flow::Next;
    }
    t.caching.set(true);
    client.push_local(|o| o.extend_from_slice(b"+OK\r\n"));
    Flow::Next
}

fn caching_mode_error(client: &ClientShared, args: &Args) -> Flow {
    let opt = args.get(2);
    if opt.eq_ignore_ascii_case(b"YES") {
        err(
            client,
            "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
        )
    } else if opt.eq_ignore_ascii_case(b"NO") {
        err(
            client,
            "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
        )
    } else {
        client.push_local(|o| put_error(o, SYNTAX));
        Flow::Next
    }
}

pub fn getredir(client: &ClientShared, s: &Session) -> Flow {
    let r = s.tracker.as_ref().map_or(-1, |t| t.redirect.get() as i64);
    client.push_local(|o| put_header(o, b':', r));
    Flow::Next
}

pub fn trackinginfo(client: &ClientShared, s: &Session) -> Flow {
    let t = s.tracker.as_ref();
    let mut flags: Vec<&[u8]> = vec![if t.is_some() { b"on" } else { b"off" }];
    if let Some(t) = t {
        if t.bcast.get() {
            flags.push(b"bcast");
        }
        if t.optin.get() {
            flags.push(b"optin");
            if t.caching.get() {
                flags.push(b"caching-yes");
            }
        }
        if t.optout.get() {
            flags.push(b"optout");
            if t.caching.get() {
                flags.push(b"caching-no");
            }
        }
        if t.noloop.get() {
            flags.push(b"noloop");
        }
        if t.broken.get() {
            flags.push(b"broken_redirect");
        }
    }
    let resp3 = s.proto == Proto::Resp3;
    let mut o = BytesMut::new();
    put_header(
        &mut o,
        if resp3 { b'%' } else { b'*' },
        if resp3 { 3 } else { 6 },
    );
    put_bulk(&mut o, b"flags");
    put_header(&mut o, if resp3 { b'~' } else { b'*' }, flags.len() as i64);
    for f in flags {
        put_bulk(&mut o, f);
    }
    put_bulk(&mut o, b"redirect");
    put_header(&mut o, b':', t.map_or(-1, |t| t.redirect.get() as i64));
    put_bulk(&mut o, b"prefixes");
    let mut prefixes = t.map(|t| t.prefixes.borrow().clone()).unwrap_or_default();
    prefixes.sort();
    put_header(&mut o, b'*', prefixes.len() as i64);
    for p in &prefixes {
        put_bulk(&mut o, p);
    }
    client.push_local(|out| out.extend_from_slice(&o));
    Flow::Next
}

#[cfg(test)]
mod tests {
    use super::collision;
    use bytes::Bytes;

    fn b(v: &[&str]) -> Vec<Bytes> {
        v.iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect()
    }

    #[test]
    fn prefix_collisions_as_redis_reports_them() {
        assert_eq!(collision(&b(&["ab"]), &b(&["cd", "ef"])), None);
        assert_eq!(
            collision(&b(&["ab"]), &b(&["abc"])).unwrap(),
            "ERR Prefix 'abc' overlaps with an existing prefix 'ab'. Prefixes for a single \
             client must not overlap."
        );
        assert_eq!(
            collision(&[], &b(&["ab", "a"])).unwrap(),
            "ERR Prefix 'ab' overlaps with another provided prefix 'a'. Prefixes for a single \
             client must not overlap."
        );
        assert!(
            collision(&b(&[""]), &b(&["x"])).is_some(),
            "the empty prefix covers all"
        );
    }
}
