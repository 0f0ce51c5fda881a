//! `INFO` with the proxy's own `# Proxy` section. `INFO proxy` is answered by the proxy alone;
//! `INFO`, `INFO default|all|everything` (and any list naming `proxy`) get Redis's reply with
//! the section appended; other sections are Redis's alone. The reply keeps Redis's type: a
//! bulk string for RESP2 clients, a verbatim string (`=`, `txt:`) for RESP3 ones.

use super::metrics::readiness;
use super::stats::{self, Class};
use crate::deliver::Waiter;
use crate::dispatch::{forward_shared, not_admitted, switching, Flow, Session};
use crate::replies::ClientShared;
use crate::resp::convert::Shape;
use crate::resp::encode::{relay, Proto};
use crate::resp::frame::FrameInfo;
use crate::resp::request::Args;
use crate::shard::Shard;
use bytes::BytesMut;
use std::fmt::Write;
use std::rc::Rc;

pub fn info(
    shard: &Rc<Shard>,
    client: &Rc<ClientShared>,
    s: &Session,
    args: Args,
    raw: Option<&[u8]>,
) -> Flow {
    let named = |w: &[u8]| args.iter().skip(1).any(|a| a.eq_ignore_ascii_case(w));
    if args.len() > 1
        && args
            .iter()
            .skip(1)
            .all(|a| a.eq_ignore_ascii_case(b"proxy"))
    {
        let text = section();
        client.push_local(|o| put_text(o, text.as_bytes(), s.proto));
        return Flow::Next;
    }
    let with_proxy = args.len() == 1
        || [&b"proxy"[..], b"all", b"everything", b"default"]
            .into_iter()
            .any(named);
    if !with_proxy {
        return match shard.keyless_conn() {
            Some(conn) => {
                crate::dispatch::forward_on(&conn, client, args, raw, Shape::Plain, s.proto)
            }
            None => forward_shared(shard, client, s, args, raw),
        };
    }
    let conn = shard.keyless_conn().unwrap_or_else(|| shard.conn_for(s.db));
    if let Some(flow) = switching(&conn, client).or_else(|| not_admitted(&conn, client, 1)) {
        return flow;
    }
    let w = Waiter::Info {
        client: client.clone(),
        seq: client.push_pending(),
        proto: s.proto,
    };
    conn.send_request(raw, &args, w);
    Flow::Next
}

/// Redis's INFO reply with the proxy's section appended (an error is relayed as it came).
pub fn on_reply(frame: &[u8], info: FrameInfo, resp3: bool, proto: Proto, out: &mut BytesMut) {
    let Some(text) = payload(frame) else {
        relay(frame, info, Shape::Plain, resp3, proto, out);
        return;
    };
    let mut all = Vec::with_capacity(text.len() + 512);
    all.extend_from_slice(text);
    if !text.is_empty() {
        all.extend_from_slice(b"\r\n");
    }
    all.extend_from_slice(section().as_bytes());
    put_text(out, &all, proto);
}

/// The text of a bulk (`$`) or verbatim (`=`, with its 3-letter format) string.
fn payload(frame: &[u8]) -> Option<&[u8]> {
    let kind = *frame.first()?;
    if kind != b'$' && kind != b'=' {
        return None;
    }
    let start = frame.windows(2).position(|w| w == b"\r\n")? + 2;
    let body = frame.get(start..frame.len().checked_sub(2)?)?;
    match kind {
        b'=' => body.get(4..),
        _ => Some(body),
    }
}

/// INFO text the way Redis sends it to a client of that protocol.
fn put_text(out: &mut BytesMut, text: &[u8], proto: Proto) {
    match proto {
        Proto::Resp2 => {
            let _ = write!(Fmt(out), "${}\r\n", text.len());
            out.extend_from_slice(text);
        }
        Proto::Resp3 => {
            let _ = write!(Fmt(out), "={}\r\ntxt:", text.len() + 4);
            out.extend_from_slice(text);
        }
    }
    out.extend_from_slice(b"\r\n");
}

struct Fmt<'a>(&'a mut BytesMut);

impl std::fmt::Write for Fmt<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// `# Proxy`: the whole process, summed over shards.
pub fn section() -> String {
    let shards = stats::shards();
    let sum = |f: &dyn Fn(&stats::ShardStats) -> u64| shards.iter().map(|s| f(s)).sum::<u64>();
    let hits = sum(&|s| s.requests[Class::Hit as usize].get());
    let misses = sum(&|s| s.requests[Class::Miss as usize].get());
    let ratio = if hits + misses == 0 {
        0.0
    } else {
        hits as f64 / (hits + misses) as f64
    };
    let up = sum(&|s| s.backend_up.get());
    let (count, driver) = stats::process().map_or((shards.len(), ""), |p| (p.shards, p.driver));
    let mut o = String::with_capacity(512);
    let _ = write!(
        o,
        "# Proxy\r\n\
         proxy_version:{}\r\n\
         shards:{count}\r\n\
         io_driver:{driver}\r\n\
         connected_clients:{}\r\n\
         cache_hits:{hits}\r\n\
         cache_misses:{misses}\r\n\
         cache_hit_ratio:{ratio:.4}\r\n\
         cache_entries:{}\r\n\
         cache_memory_bytes:{}\r\n\
         backend_status:{}\r\n\
         backend_shards_up:{up}\r\n",
        env!("CARGO_PKG_VERSION"),
        sum(&|s| s.connections.get()),
        sum(&|s| s.cache_entries.get()),
        sum(&|s| s.cache_bytes.get()),
        if readiness().is_ok() { "up" } else { "down" },
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_of_each_string_type() {
        assert_eq!(payload(b"$3\r\nabc\r\n"), Some(&b"abc"[..]));
        assert_eq!(payload(b"=7\r\ntxt:abc\r\n"), Some(&b"abc"[..]));
        assert_eq!(payload(b"$0\r\n\r\n"), Some(&b""[..]));
        assert_eq!(payload(b"-ERR x\r\n"), None);
        assert_eq!(payload(b"=2\r\n"), None);
    }

    #[test]
    fn text_in_each_protocol() {
        let mut o = BytesMut::new();
        put_text(&mut o, b"# A\r\n", Proto::Resp2);
        put_text(&mut o, b"# A\r\n", Proto::Resp3);
        assert_eq!(&o[..], b"$5\r\n# A\r\n\r\n=9\r\ntxt:# A\r\n\r\n");
    }
}
