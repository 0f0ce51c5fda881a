//! Writing replies in the client's protocol. Backend replies arrive in RESP3 (the connection
//! speaks it for CLIENT TRACKING) and cached values are kept in RESP2 form; each client gets
//! the protocol it chose with HELLO, as redis-server would send it.

use super::convert::{to_resp2, Shape};
use super::cursor::{NULL3, NULL_BULK};
use super::frame::FrameInfo;
use bytes::BytesMut;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Proto {
    #[default]
    Resp2,
    Resp3,
}

/// Copies a backend reply for a client. RESP3 clients get it as Redis sent it (a client can
/// only choose RESP3 while the backend speaks it); RESP2 clients get it converted where the
/// reply, or the command's reply shape, needs it.
#[inline]
pub fn relay(
    frame: &[u8],
    info: FrameInfo,
    shape: Shape,
    backend_resp3: bool,
    proto: Proto,
    out: &mut BytesMut,
) {
    if proto == Proto::Resp2 && backend_resp3 && (info.resp3 || shape != Shape::Plain) {
        to_resp2(frame, shape, out);
    } else {
        out.extend_from_slice(frame);
    }
}

/// Copies a cached reply (RESP2 form: a bulk string or a null) for a client.
#[inline]
pub fn put_cached(out: &mut BytesMut, reply: &[u8], proto: Proto) {
    if proto == Proto::Resp3 && reply == NULL_BULK {
        out.extend_from_slice(NULL3);
    } else {
        out.extend_from_slice(reply);
    }
}

/// A null bulk string / null.
#[inline]
pub fn put_null(out: &mut BytesMut, proto: Proto) {
    out.extend_from_slice(match proto {
        Proto::Resp2 => NULL_BULK,
        Proto::Resp3 => NULL3,
    });
}

/// The header of a map of `n` pairs: `%n` in RESP3, a flat array of `2n` in RESP2.
#[inline]
pub fn put_map_header(out: &mut BytesMut, n: usize, proto: Proto) {
    match proto {
        Proto::Resp2 => super::write::put_header(out, b'*', 2 * n as i64),
        Proto::Resp3 => super::write::put_header(out, b'%', n as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_nil_in_each_protocol() {
        let mut o = BytesMut::new();
        put_cached(&mut o, b"$-1\r\n", Proto::Resp3);
        put_cached(&mut o, b"$-1\r\n", Proto::Resp2);
        put_cached(&mut o, b"$1\r\nv\r\n", Proto::Resp3);
        assert_eq!(&o[..], b"_\r\n$-1\r\n$1\r\nv\r\n");
    }

    #[test]
    fn relays_per_protocol() {
        let frame = b"%1\r\n$1\r\na\r\n,1.5\r\n";
        let info = crate::resp::frame::frame_len(frame).unwrap().unwrap();
        let mut o = BytesMut::new();
        relay(frame, info, Shape::Plain, true, Proto::Resp3, &mut o);
        assert_eq!(&o[..], frame);
        o.clear();
        relay(frame, info, Shape::Plain, true, Proto::Resp2, &mut o);
        assert_eq!(&o[..], b"*2\r\n$1\r\na\r\n$3\r\n1.5\r\n");
    }
}
