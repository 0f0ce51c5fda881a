//! The one cursor over already framed replies (see `frame.rs`): headers, bulk strings, nulls.
//! Framing has checked every line and length, so a malformed frame here is a bug in the caller.

use super::frame::{find_crlf, parse_int};

/// RESP2's null bulk string: how a missing value looks to a RESP2 client.
pub const NULL_BULK: &[u8] = b"$-1\r\n";
/// RESP3's null.
pub const NULL3: &[u8] = b"_\r\n";

/// Whether a whole reply is a null, in either protocol.
#[inline]
pub fn is_null(frame: &[u8]) -> bool {
    frame == NULL3 || frame == NULL_BULK
}

/// A type byte and the rest of its line.
pub struct Header<'a> {
    pub kind: u8,
    pub line: &'a [u8],
    /// Where the next element (or a bulk body) starts.
    pub next: usize,
}

impl Header<'_> {
    /// The line as a number (lengths and counts); `-1` for a RESP3 null.
    pub fn count(&self) -> i64 {
        if self.kind == b'_' {
            return -1;
        }
        parse_int(self.line).expect("framed reply")
    }
}

/// The header at `pos` of a framed reply.
pub fn header(buf: &[u8], pos: usize) -> Header<'_> {
    let eol = find_crlf(buf, pos + 1).expect("framed reply");
    Header {
        kind: buf[pos],
        line: &buf[pos + 1..eol],
        next: eol + 2,
    }
}

/// Reads a framed reply element by element.
pub struct Cursor<'a> {
    buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    /// The next header, as (type, count); `None` at the end.
    pub fn header(&mut self) -> Option<(u8, i64)> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let h = header(self.buf, self.pos);
        self.pos = h.next;
        Some((h.kind, h.count()))
    }

    /// The next element as a bulk string; `None` (and the element skipped) for anything else.
    pub fn bulk(&mut self) -> Option<&'a [u8]> {
        let at = self.pos;
        match self.header()? {
            (b'$', n) if n >= 0 => {
                let s = &self.buf[self.pos..self.pos + n as usize];
                self.pos += n as usize + 2;
                Some(s)
            }
            _ => {
                self.pos = at + super::frame::frame_len(&self.buf[at..]).ok()??.len;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_a_push() {
        let push = b">2\r\n$10\r\ninvalidate\r\n*2\r\n$1\r\na\r\n:5\r\n";
        let mut c = Cursor::new(push);
        assert_eq!(c.header(), Some((b'>', 2)));
        assert_eq!(c.bulk(), Some(&b"invalidate"[..]));
        assert_eq!(c.header(), Some((b'*', 2)));
        assert_eq!(c.bulk(), Some(&b"a"[..]));
        assert_eq!(c.bulk(), None, "not a bulk: skipped");
        assert_eq!(c.header(), None);
        assert!(is_null(b"_\r\n") && is_null(b"$-1\r\n") && !is_null(b"*-1\r\n"));
    }
}
