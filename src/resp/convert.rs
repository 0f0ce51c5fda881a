//! RESP3 -> RESP2 reply conversion.
//!
//! The backend connection speaks RESP3 so that CLIENT TRACKING invalidations arrive on it as push
//! frames, in order with the replies. Clients speak RESP2, so a reply holding RESP3-only types
//! is rewritten here the way redis-server would have written it for a RESP2 client.
//!
//! Hand-written over raw bytes, not via redis-protocol's frames: those parse doubles into `f64`
//! (losing Redis's exact text, e.g. `0.10000000000000001`) and maps into a `HashMap` (losing
//! HGETALL's order), and a RESP2 client must see exactly what redis-server would send it.

use super::cursor::{header, NULL_BULK};
use super::write::{put_bulk, put_header};
use bytes::BytesMut;

/// Reply shapes that differ between RESP2 and RESP3 beyond the element types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Type-by-type conversion; a null is a null bulk string (`$-1`).
    Plain,
    /// A null is a null array (`*-1`) at any depth: LPOP/RPOP with a count, LMPOP, ZMPOP, GEOPOS.
    NullArray,
    /// RESP3 nests `[member, score]` pairs that RESP2 sends flat: ZRANGE.. WITHSCORES, ZPOPMIN,
    /// ZRANDMEMBER WITHSCORES, HRANDFIELD WITHVALUES, ZUNION/ZINTER/ZDIFF WITHSCORES.
    FlattenPairs,
    /// XREAD/XREADGROUP: a RESP3 map of stream -> entries is a RESP2 array of pairs; null is `*-1`.
    StreamMap,
    /// XPENDING's summary `[count, min, max, consumers]`: the last null is an array, the others bulk.
    XPending,
}

/// Appends the RESP2 form of the complete, already framed RESP3 reply `frame` to `out`.
pub fn to_resp2(frame: &[u8], shape: Shape, out: &mut BytesMut) {
    match shape {
        Shape::Plain => {
            conv(frame, 0, out, false);
        }
        Shape::NullArray => {
            conv(frame, 0, out, true);
        }
        Shape::FlattenPairs => flatten_pairs(frame, out),
        Shape::StreamMap => stream_map(frame, out),
        Shape::XPending => xpending(frame, out),
    }
}

fn xpending(buf: &[u8], out: &mut BytesMut) {
    let h = header(buf, 0);
    if h.kind != b'*' || h.count() != 4 {
        conv(buf, 0, out, false);
        return;
    }
    put_header(out, b'*', 4);
    let mut p = h.next;
    for i in 0..4 {
        p = conv(buf, p, out, i == 3);
    }
}

/// Deeper replies are not converted (the recursion would exhaust the shard's stack): the
/// subtree is replaced by one error element, so the reply stays well formed. Redis's own
/// replies (Lua's stack limit included) stay far below this.
const MAX_DEPTH: usize = 1000;

/// Converts the frame at `pos`; returns the position after it.
fn conv(buf: &[u8], pos: usize, out: &mut BytesMut, null_array: bool) -> usize {
    conv_at(buf, pos, out, null_array, 0)
}

fn conv_at(buf: &[u8], pos: usize, out: &mut BytesMut, null_array: bool, depth: usize) -> usize {
    if depth > MAX_DEPTH {
        out.extend_from_slice(b"-ERR reply nested too deeply to convert to RESP2\r\n");
        return skip(buf, pos);
    }
    let h = header(buf, pos);
    match h.kind {
        b'+' | b'-' | b':' => {
            out.extend_from_slice(&buf[pos..h.next]);
            h.next
        }
        b'$' | b'=' | b'!' => {
            let n = h.count();
            if n < 0 {
                out.extend_from_slice(NULL_BULK);
                return h.next;
            }
            let body = &buf[h.next..h.next + n as usize];
            match h.kind {
                b'$' => out.extend_from_slice(&buf[pos..h.next + n as usize + 2]),
                // Verbatim strings carry a 3-letter format and a colon before the text.
                b'=' => put_bulk(out, body.get(4..).unwrap_or(b"")),
                _ => {
                    out.extend_from_slice(b"-");
                    out.extend(
                        body.iter()
                            .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
                    );
                    out.extend_from_slice(b"\r\n");
                }
            }
            h.next + n as usize + 2
        }
        b'_' => {
            out.extend_from_slice(if null_array { b"*-1\r\n" } else { NULL_BULK });
            h.next
        }
        b',' | b'(' => {
            put_bulk(out, h.line);
            h.next
        }
        // redis-server's addReplyBool for a RESP2 client. (Lua's false in a RESP2-mode script
        // reaches a RESP3 connection as a null, which becomes `$-1`, as for a RESP2 client.)
        b'#' => {
            out.extend_from_slice(if h.line == b"t" { b":1\r\n" } else { b":0\r\n" });
            h.next
        }
        b'*' | b'~' | b'>' | b'%' => {
            let n = h.count();
            if n < 0 {
                out.extend_from_slice(b"*-1\r\n");
                return h.next;
            }
            let items = if h.kind == b'%' { 2 * n } else { n };
            put_header(out, b'*', items);
            let mut p = h.next;
            for _ in 0..items {
                p = conv_at(buf, p, out, null_array, depth + 1);
            }
            p
        }
        b'|' => {
            let mut p = h.next;
            for _ in 0..2 * h.count() {
                p = skip(buf, p);
            }
            conv_at(buf, p, out, null_array, depth + 1)
        }
        _ => unreachable!("framed reply"),
    }
}

fn skip(buf: &[u8], pos: usize) -> usize {
    pos + super::frame::frame_len(&buf[pos..])
        .ok()
        .flatten()
        .expect("framed reply")
        .len
}

fn flatten_pairs(buf: &[u8], out: &mut BytesMut) {
    let h = header(buf, 0);
    if !matches!(h.kind, b'*' | b'~') || h.count() <= 0 {
        conv(buf, 0, out, false);
        return;
    }
    let n = h.count();
    let mut p = h.next;
    let mut all_pairs = true;
    for _ in 0..n {
        let c = header(buf, p);
        if !(matches!(c.kind, b'*' | b'~') && c.count() == 2) {
            all_pairs = false;
            break;
        }
        p = skip(buf, p);
    }
    if !all_pairs {
        conv(buf, 0, out, false);
        return;
    }
    put_header(out, b'*', 2 * n);
    let mut p = h.next;
    for _ in 0..n {
        p = header(buf, p).next;
        p = conv(buf, p, out, false);
        p = conv(buf, p, out, false);
    }
}

fn stream_map(buf: &[u8], out: &mut BytesMut) {
    let h = header(buf, 0);
    if h.kind != b'%' {
        conv(buf, 0, out, true);
        return;
    }
    let n = h.count();
    put_header(out, b'*', n);
    let mut p = h.next;
    for _ in 0..n {
        out.extend_from_slice(b"*2\r\n");
        p = conv(buf, p, out, true);
        p = conv(buf, p, out, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(input: &[u8], shape: Shape) -> String {
        let mut out = BytesMut::new();
        to_resp2(input, shape, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn scalars() {
        assert_eq!(c(b"_\r\n", Shape::Plain), "$-1\r\n");
        assert_eq!(c(b"_\r\n", Shape::NullArray), "*-1\r\n");
        assert_eq!(
            c(b",0.10000000000000001\r\n", Shape::Plain),
            "$19\r\n0.10000000000000001\r\n"
        );
        assert_eq!(c(b",inf\r\n", Shape::Plain), "$3\r\ninf\r\n");
        assert_eq!(c(b"#t\r\n", Shape::Plain), ":1\r\n");
        assert_eq!(c(b"#f\r\n", Shape::Plain), ":0\r\n");
        assert_eq!(
            c(b"*4\r\n:0\r\n_\r\n_\r\n_\r\n", Shape::XPending),
            "*4\r\n:0\r\n$-1\r\n$-1\r\n*-1\r\n"
        );
        assert_eq!(c(b"(123\r\n", Shape::Plain), "$3\r\n123\r\n");
        assert_eq!(c(b"=8\r\ntxt:a\r\nb\r\n", Shape::Plain), "$4\r\na\r\nb\r\n");
        assert_eq!(c(b"!5\r\nERR x\r\n", Shape::Plain), "-ERR x\r\n");
        assert_eq!(c(b"$2\r\nab\r\n", Shape::Plain), "$2\r\nab\r\n");
    }

    #[test]
    fn aggregates_keep_order() {
        assert_eq!(
            c(b"%2\r\n$1\r\nb\r\n:1\r\n$1\r\na\r\n:2\r\n", Shape::Plain),
            "*4\r\n$1\r\nb\r\n:1\r\n$1\r\na\r\n:2\r\n"
        );
        assert_eq!(c(b"~1\r\n+x\r\n", Shape::Plain), "*1\r\n+x\r\n");
        assert_eq!(c(b"|1\r\n+k\r\n+v\r\n:7\r\n", Shape::Plain), ":7\r\n");
    }

    #[test]
    fn deep_nesting_stays_well_formed() {
        let depth = 5000;
        let mut input = b"*1\r\n".repeat(depth);
        input.extend_from_slice(b"_\r\n");
        let mut out = BytesMut::new();
        to_resp2(&input, Shape::Plain, &mut out);
        let info = crate::resp::frame::frame_len(&out).unwrap().unwrap();
        assert_eq!(info.len, out.len());
        assert!(!info.resp3);
    }

    #[test]
    fn pairs_are_flattened() {
        let z = b"*2\r\n*2\r\n$1\r\na\r\n,1\r\n*2\r\n$1\r\nb\r\n,2.5\r\n";
        assert_eq!(
            c(z, Shape::FlattenPairs),
            "*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$3\r\n2.5\r\n"
        );
        // ZPOPMIN without a count is already flat in RESP3.
        let flat = b"*2\r\n$1\r\na\r\n,1\r\n";
        assert_eq!(c(flat, Shape::FlattenPairs), "*2\r\n$1\r\na\r\n$1\r\n1\r\n");
        assert_eq!(c(b"*0\r\n", Shape::FlattenPairs), "*0\r\n");
    }

    #[test]
    fn stream_map_becomes_pairs() {
        let x = b"%1\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n";
        assert_eq!(
            c(x, Shape::StreamMap),
            "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
        );
        assert_eq!(c(b"_\r\n", Shape::StreamMap), "*-1\r\n");
    }
}
