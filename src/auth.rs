//! Client authentication (--requirepass) and HELLO, answered by the proxy as redis-server would
//! for the `default` user. HELLO switches the client's protocol (RESP2 or RESP3).

use crate::backend::Status;
use crate::dispatch::Session;
use crate::replies::ClientShared;
use crate::resp::encode::{put_map_header, Proto};
use crate::resp::request::Args;
use crate::resp::write::{put_bulk, put_error, put_header};
use crate::shard::Shard;
use bytes::BytesMut;

const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";

/// Compares without an early exit on the first differing byte.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks `user`/`pass` against --requirepass; only the `default` user exists.
fn check(shard: &Shard, user: &[u8], pass: &[u8]) -> bool {
    match &shard.live().requirepass {
        Some(p) => same(user, b"default") & same(pass, p.as_bytes()),
        None => same(user, b"default"),
    }
}

pub fn auth(shard: &Shard, client: &ClientShared, args: &Args, out: &mut BytesMut) {
    let (user, pass) = match args.len() {
        2 => (&b"default"[..], args.get(1)),
        3 => (args.get(1), args.get(2)),
        1 => {
            out.extend_from_slice(b"-ERR wrong number of arguments for 'auth' command\r\n");
            return;
        }
        _ => {
            out.extend_from_slice(b"-ERR syntax error\r\n");
            return;
        }
    };
    if shard.live().requirepass.is_none() && args.len() == 2 {
        out.extend_from_slice(
            b"-ERR AUTH <password> called without any password configured for the default user. \
              Are you sure your configuration is correct?\r\n",
        );
        return;
    }
    if check(shard, user, pass) {
        client.authed.set(true);
        out.extend_from_slice(b"+OK\r\n");
    } else {
        out.extend_from_slice(WRONGPASS);
    }
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`, as redis-server answers it. RESP3 is
/// offered while the backend speaks it (the proxy relays RESP3 replies as Redis sends them).
pub fn hello(
    shard: &Shard,
    client: &ClientShared,
    session: &mut Session,
    args: &Args,
    out: &mut BytesMut,
) {
    let mut i = 1;
    let mut proto = None;
    if args.len() > 1 {
        match crate::command::redis_int(args.get(1)) {
            None => {
                put_error(
                    out,
                    b"ERR Protocol version is not an integer or out of range",
                );
                return;
            }
            Some(2) => proto = Some(Proto::Resp2),
            Some(3) if backend_speaks_resp3(shard) => proto = Some(Proto::Resp3),
            Some(_) => {
                put_error(out, b"NOPROTO unsupported protocol version");
                return;
            }
        }
        i = 2;
    }
    let mut creds = None;
    let mut name = None;
    while i < args.len() {
        let opt = args.get(i);
        let more = args.len() - 1 - i;
        if opt.eq_ignore_ascii_case(b"AUTH") && more >= 2 {
            creds = Some((args.get(i + 1), args.get(i + 2)));
            i += 3;
        } else if opt.eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
            name = Some(args.get(i + 1));
            i += 2;
        } else {
            let msg = format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(opt)
            );
            put_error(out, msg.as_bytes());
            return;
        }
    }
    if let Some((user, pass)) = creds {
        if !check(shard, user, pass) {
            out.extend_from_slice(WRONGPASS);
            return;
        }
        client.authed.set(true);
    }
    if !client.authed.get() {
        out.extend_from_slice(
            b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the \
              HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
              select the RESP protocol version at the same time\r\n",
        );
        return;
    }
    if let Some(name) = name {
        if name.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
            put_error(
                out,
                b"ERR Client names cannot contain spaces, newlines or special characters.",
            );
            return;
        }
        client.info().update(|d| d.name = name.to_vec());
    }
    if let Some(p) = proto {
        session.proto = p;
    }
    let p = session.proto;
    let version = shard.shared.server().version;
    put_map_header(out, 7, p);
    for (k, v) in [("server", "redis"), ("version", version.as_str())] {
        put_bulk(out, k.as_bytes());
        put_bulk(out, v.as_bytes());
    }
    put_bulk(out, b"proto");
    put_header(out, b':', if p == Proto::Resp3 { 3 } else { 2 });
    put_bulk(out, b"id");
    put_header(out, b':', client.id as i64);
    for (k, v) in [("mode", "standalone"), ("role", "master")] {
        put_bulk(out, k.as_bytes());
        put_bulk(out, v.as_bytes());
    }
    put_bulk(out, b"modules");
    out.extend_from_slice(b"*0\r\n");
}

/// RESP3 can be offered unless the backend is known to refuse it (a RESP2-only middleman).
fn backend_speaks_resp3(shard: &Shard) -> bool {
    shard.shared.status() != Status::Up || shard.shared.resp3()
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
