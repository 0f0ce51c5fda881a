//! CLIENT and RESET, answered by the proxy for its own clients as redis-server answers for
//! its own: a client's name, id, protocol and db are the proxy's to keep (the backend
//! connections are shared), and CLIENT LIST/KILL/UNBLOCK see every client of the process.

use crate::deliver::Waiter;
use crate::dispatch::{Flow, Session};
use crate::replies::ClientShared;
use crate::resp::encode::{put_null, Proto};
use crate::resp::request::Args;
use crate::resp::write::{put_bulk, put_error, put_header};
use crate::shard::Shard;
use std::rc::Rc;
use std::sync::atomic::Ordering;

const SYNTAX: &[u8] = b"ERR syntax error";

pub fn client(
    shard: &Rc<Shard>,
    client: &Rc<ClientShared>,
    s: &mut Session,
    args: Args,
    raw: Option<&[u8]>,
) -> Flow {
    // Unknown subcommands and wrong arities get Redis's own errors (from its command table).
    if let Some(err) = shard.commands().and_then(|t| t.check(&args)) {
        client.push_local(|o| put_error(o, err.as_bytes()));
        return Flow::Next;
    }
    if args.len() < 2 {
        client.push_local(|o| put_error(o, b"ERR wrong number of arguments for 'client' command"));
        return Flow::Next;
    }
    let sub = args.get(1).to_ascii_uppercase();
    let info = client.info();
    let proto = s.proto;
    match &sub[..] {
        b"ID" => client.push_local(|o| put_header(o, b':', client.id as i64)),
        b"SETNAME" if args.len() == 3 => {
            let name = args.get(2);
            if name.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
                client.push_local(|o| {
                    put_error(
                        o,
                        b"ERR Client names cannot contain spaces, newlines or special characters.",
                    )
                });
            } else {
                info.update(|d| d.name = name.to_vec());
                client.push_local(|o| o.extend_from_slice(b"+OK\r\n"));
            }
        }
        b"GETNAME" => {
            let name = info.details().name;
            client.push_local(|o| match name.is_empty() {
                true => put_null(o, proto),
                false => put_bulk(o, &name),
            });
        }
        b"SETINFO" if args.len() == 4 => {
            let attr = args.get(2).to_ascii_uppercase();
            let value = args.get(3).to_vec();
            let bad = value.iter().any(|&c| !(b'!'..=b'~').contains(&c));
            let err = match &attr[..] {
                _ if bad => Some(format!(
                    "ERR {} cannot contain spaces, newlines or special characters.",
                    String::from_utf8_lossy(args.get(2)).to_lowercase()
                )),
                b"LIB-NAME" => {
                    info.update(|d| d.lib_name = value);
                    None
                }
                b"LIB-VER" => {
                    info.update(|d| d.lib_ver = value);
                    None
                }
                _ => Some(format!(
                    "ERR Unrecognized option '{}'",
                    String::from_utf8_lossy(args.get(2))
                )),
            };
            client.push_local(|o| match err {
                Some(e) => put_error(o, e.as_bytes()),
                None => o.extend_from_slice(b"+OK\r\n"),
            });
        }
        b"INFO" => {
            let line = info.line("client|info") + "\n";
            client.push_local(|o| put_verbatim(o, line.as_bytes(), proto));
        }
        b"LIST" => return list(client, &args, proto),
        b"KILL" => return kill(client, &args),
        b"REPLY" if args.len() == 3 => match &args.get(2).to_ascii_uppercase()[..] {
            b"ON" => {
                client.muted.set(false);
                s.skip_next = false;
                client.push_local(|o| o.extend_from_slice(b"+OK\r\n"));
            }
            b"OFF" => client.muted.set(true),
            b"SKIP" => {
                if !client.muted.get() {
                    client.muted.set(true);
                    s.skip_next = true;
                }
            }
            _ => client.push_local(|o| put_error(o, SYNTAX)),
        },
        b"NO-EVICT" | b"NO-TOUCH" if args.len() == 3 => {
            let on = match &args.get(2).to_ascii_uppercase()[..] {
                b"ON" => true,
                b"OFF" => false,
                _ => {
                    client.push_local(|o| put_error(o, SYNTAX));
                    return Flow::Next;
                }
            };
            // Recorded and shown in CLIENT LIST. NO-EVICT: Redis never evicts the proxy's
            // connections on a client's account. NO-TOUCH: reads through the shared connection
            // cannot carry it (documented limitation).
            info.update(|d| match &sub[..] {
                b"NO-EVICT" => d.no_evict = on,
                _ => d.no_touch = on,
            });
            client.push_local(|o| o.extend_from_slice(b"+OK\r\n"));
        }
        b"UNBLOCK" => return unblock(shard, client, &args),
        b"TRACKING" => return crate::tracking::command::tracking(shard, client, s, &args),
        b"CACHING" => return crate::tracking::command::caching(client, s, &args),
        b"GETREDIR" => return crate::tracking::command::getredir(client, s),
        b"TRACKINGINFO" => return crate::tracking::command::trackinginfo(client, s),
        // Server-wide (and the help text): Redis's own answer.
        b"PAUSE" | b"UNPAUSE" | b"HELP" => {
            return crate::dispatch::forward_shared(shard, client, s, args, raw)
        }
        _ => {
            let msg = format!(
                "ERR command 'client {}' is not supported by redis-proxy (it holds \
                 per-connection server state)",
                String::from_utf8_lossy(args.get(1)).to_lowercase()
            );
            client.push_local(|o| put_error(o, msg.as_bytes()));
        }
    }
    Flow::Next
}

/// `RESET`: the connection as new (the proxy's part: transaction, watch, db, protocol, name,
/// reply mode, authentication).
pub fn reset(shard: &Shard, client: &ClientShared, s: &mut Session) -> Flow {
    s.reset(shard);
    client.resp3.set(false);
    client.muted.set(false);
    client.authed.set(shard.live().requirepass.is_none());
    client.info().update(|d| {
        d.name.clear();
        d.db = s.db;
        d.resp = 2;
        d.multi = -1;
        d.no_evict = false;
        d.no_touch = false;
    });
    client.push_local(|o| o.extend_from_slice(b"+RESET\r\n"));
    Flow::Next
}

/// `SELECT db`, with redis-server's checks and errors: the db, or `None` once the error is
/// written.
pub fn select(shard: &Shard, args: &Args, client: &ClientShared) -> Option<u32> {
    let err: &[u8] = if args.len() != 2 {
        b"ERR wrong number of arguments for 'select' command"
    } else {
        match crate::command::redis_int(args.get(1)).map(i32::try_from) {
            None => b"ERR value is not an integer or out of range",
            Some(Err(_)) => {
                b"ERR value is out of range, value must between -2147483648 and 2147483647"
            }
            Some(Ok(n)) if n < 0 || shard.databases().is_some_and(|dbs| n as u32 >= dbs) => {
                b"ERR DB index is out of range"
            }
            Some(Ok(n)) => return Some(n as u32),
        }
    };
    client.push_local(|o| put_error(o, err));
    None
}

fn put_verbatim(o: &mut bytes::BytesMut, text: &[u8], proto: Proto) {
    match proto {
        Proto::Resp2 => put_bulk(o, text),
        Proto::Resp3 => {
            put_header(o, b'=', text.len() as i64 + 4);
            o.extend_from_slice(b"txt:");
            o.extend_from_slice(text);
            o.extend_from_slice(b"\r\n");
        }
    }
}

fn list(client: &ClientShared, args: &Args, proto: Proto) -> Flow {
    let mut ids: Option<Vec<u64>> = None;
    let mut i = 2;
    while i < args.len() {
        let opt = args.get(i).to_ascii_uppercase();
        if opt == b"TYPE" && i + 1 < args.len() {
            let t = args.get(i + 1).to_ascii_lowercase();
            match &t[..] {
                b"normal" => {}
                b"master" | b"replica" | b"slave" | b"pubsub" => ids = Some(Vec::new()),
                _ => {
                    let msg = format!(
                        "ERR Unknown client type '{}'",
                        String::from_utf8_lossy(args.get(i + 1))
                    );
                    client.push_local(|o| put_error(o, msg.as_bytes()));
                    return Flow::Next;
                }
            }
            i += 2;
        } else if opt == b"ID" && i + 1 < args.len() {
            let mut v = Vec::new();
            for a in args.iter().skip(i + 1) {
                match crate::command::redis_int(a) {
                    Some(n) if n > 0 => v.push(n as u64),
                    _ => {
                        client.push_local(|o| put_error(o, b"ERR Invalid client ID"));
                        return Flow::Next;
                    }
                }
            }
            ids = Some(v);
            i = args.len();
        } else {
            client.push_local(|o| put_error(o, SYNTAX));
            return Flow::Next;
        }
    }
    let mut text = String::new();
    for c in crate::registry::all() {
        if ids.as_ref().is_some_and(|ids| !ids.contains(&c.id)) {
            continue;
        }
        let cmd = if c.id == client.id {
            "client|list"
        } else {
            "NULL"
        };
        text.push_str(&c.line(cmd));
        text.push('\n');
    }
    client.push_local(|o| put_verbatim(o, text.as_bytes(), proto));
    Flow::Next
}

/// `CLIENT KILL addr:port` or `CLIENT KILL <filter value>...` over the proxy's clients.
fn kill(client: &ClientShared, args: &Args) -> Flow {
    let all = crate::registry::all();
    if args.len() == 3 {
        let addr = String::from_utf8_lossy(args.get(2));
        match all.iter().find(|c| c.addr == addr) {
            Some(c) => {
                c.kill.store(true, Ordering::Relaxed);
                client.push_local(|o| o.extend_from_slice(b"+OK\r\n"));
            }
            None => client.push_local(|o| put_error(o, b"ERR No such client")),
        }
        return Flow::Next;
    }
    if !args.len().is_multiple_of(2) {
        client.push_local(|o| put_error(o, SYNTAX));
        return Flow::Next;
    }
    let mut victims: Vec<_> = all;
    let mut skipme = true;
    for pair in (2..args.len()).step_by(2) {
        let (opt, v) = (args.get(pair).to_ascii_uppercase(), args.get(pair + 1));
        let text = String::from_utf8_lossy(v).into_owned();
        match &opt[..] {
            b"ID" => match crate::command::redis_int(v) {
                Some(id) if id > 0 => victims.retain(|c| c.id == id as u64),
                _ => {
                    client.push_local(|o| put_error(o, b"ERR client-id should be greater than 0"));
                    return Flow::Next;
                }
            },
            b"ADDR" => victims.retain(|c| c.addr == text),
            b"LADDR" => victims.retain(|c| c.laddr == text),
            b"USER" => victims.retain(|_| text == "default"),
            b"TYPE" if text.eq_ignore_ascii_case("normal") => {}
            b"TYPE" => victims.clear(),
            b"SKIPME" if text.eq_ignore_ascii_case("yes") => skipme = true,
            b"SKIPME" if text.eq_ignore_ascii_case("no") => skipme = false,
            _ => {
                client.push_local(|o| put_error(o, SYNTAX));
                return Flow::Next;
            }
        }
    }
    if skipme {
        victims.retain(|c| c.id != client.id);
    }
    for c in &victims {
        c.kill.store(true, Ordering::Relaxed);
    }
    let n = victims.len() as i64;
    client.push_local(|o| put_header(o, b':', n));
    Flow::Next
}

/// `CLIENT UNBLOCK id [TIMEOUT|ERROR]`: a proxy client blocked on its dedicated connection is
/// unblocked by Redis itself, addressed by that connection's id, on the shard's out-of-band
/// connection (which never waits behind anyone).
fn unblock(shard: &Rc<Shard>, client: &Rc<ClientShared>, args: &Args) -> Flow {
    let mode: &[u8] = match args.len() {
        3 => b"TIMEOUT",
        4 if args.get(3).eq_ignore_ascii_case(b"TIMEOUT") => b"TIMEOUT",
        4 if args.get(3).eq_ignore_ascii_case(b"ERROR") => b"ERROR",
        _ => {
            client.push_local(|o| {
                put_error(o, b"ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
            });
            return Flow::Next;
        }
    };
    let Some(id) = crate::command::redis_int(args.get(2)) else {
        client.push_local(|o| put_error(o, b"ERR value is not an integer or out of range"));
        return Flow::Next;
    };
    let redis_id = crate::registry::get(id as u64)
        .and_then(|c| c.blocked_id())
        .unwrap_or(0);
    if redis_id == 0 {
        client.push_local(|o| o.extend_from_slice(b":0\r\n"));
        return Flow::Next;
    }
    let oob = shard.oob();
    let seq = client.push_pending();
    let w = Waiter::Reply {
        client: client.clone(),
        seq,
        shape: crate::resp::convert::Shape::Plain,
        proto: Proto::Resp2,
    };
    let rid = redis_id.to_string();
    oob.send_args(
        [&b"CLIENT"[..], b"UNBLOCK", rid.as_bytes(), mode].into_iter(),
        w,
    );
    oob.flush();
    Flow::Next
}
