//! Client authentication (--requirepass) and HELLO, answered by the proxy as redis-server would
//! for the `default` user. Clients always speak RESP2 to the proxy: `HELLO 3` is refused with
//! NOPROTO, which RESP3-capable clients take as "use RESP2".

use crate::replies::ClientShared;
use crate::resp::request::Args;
use crate::resp::write::{put_bulk, put_error, put_header};
use crate::shard::Shard;
use bytes::BytesMut;

const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";

/// Compares without an early exit on the first differing byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks `user`/`pass` against --requirepass; only the `default` user exists.
fn check(shard: &Shard, user: &[u8], pass: &[u8]) -> bool {
    match &shard.cfg.requirepass {
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
    if shard.cfg.requirepass.is_none() && args.len() == 2 {
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

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
pub fn hello(shard: &Shard, client: &ClientShared, args: &Args, out: &mut BytesMut) {
    let mut i = 1;
    if args.len() > 1 {
        match args.get(1) {
            b"2" => {}
            b"3" => {
                out.extend_from_slice(
                    b"-NOPROTO sorry, this protocol version is not supported.\r\n",
                );
                return;
            }
            v if v.iter().all(u8::is_ascii_digit) && !v.is_empty() => {
                out.extend_from_slice(b"-NOPROTO unsupported protocol version\r\n");
                return;
            }
            _ => {
                out.extend_from_slice(
                    b"-ERR Protocol version is not an integer or out of range\r\n",
                );
                return;
            }
        }
        i = 2;
    }
    let mut creds = None;
    while i < args.len() {
        let opt = args.get(i);
        if opt.eq_ignore_ascii_case(b"AUTH") && i + 2 < args.len() {
            creds = Some((args.get(i + 1), args.get(i + 2)));
            i += 3;
        } else if opt.eq_ignore_ascii_case(b"SETNAME") && i + 1 < args.len() {
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
    put_header(out, b'*', 14);
    for (k, v) in [
        ("server", "redis-proxy"),
        ("version", env!("CARGO_PKG_VERSION")),
    ] {
        put_bulk(out, k.as_bytes());
        put_bulk(out, v.as_bytes());
    }
    put_bulk(out, b"proto");
    out.extend_from_slice(b":2\r\n");
    put_bulk(out, b"id");
    out.extend_from_slice(b":0\r\n");
    for (k, v) in [("mode", "standalone"), ("role", "master")] {
        put_bulk(out, k.as_bytes());
        put_bulk(out, v.as_bytes());
    }
    put_bulk(out, b"modules");
    out.extend_from_slice(b"*0\r\n");
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
