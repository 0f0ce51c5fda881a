//! Reply encoding helpers: headers, bulk strings, errors. Appends to a buffer, never allocates
//! beyond the buffer's own growth.

use bytes::BytesMut;

#[inline]
pub fn put_header(out: &mut BytesMut, kind: u8, n: i64) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(&[kind]);
    out.extend_from_slice(b.format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[inline]
pub fn put_bulk(out: &mut BytesMut, data: &[u8]) {
    put_header(out, b'$', data.len() as i64);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Encodes `args` as a RESP array of bulk strings (how inline commands are forwarded).
pub fn put_command<'a>(out: &mut BytesMut, args: impl ExactSizeIterator<Item = &'a [u8]>) {
    put_header(out, b'*', args.len() as i64);
    for a in args {
        put_bulk(out, a);
    }
}

/// `-<prefix><msg>\r\n`, with CR/LF in `msg` replaced so a reply can never be split in two.
pub fn put_error(out: &mut BytesMut, msg: &[u8]) {
    out.extend_from_slice(b"-");
    out.extend(
        msg.iter()
            .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
    );
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes() {
        let mut b = BytesMut::new();
        put_command(&mut b, [&b"GET"[..], b"k"].into_iter());
        put_error(&mut b, b"ERR a\r\nb");
        assert_eq!(&b[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n-ERR a  b\r\n");
    }
}
