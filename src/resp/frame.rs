//! Reply framing for the backend connection: where does the next RESP2/RESP3 reply end?
//!
//! Hand-written because it runs once per backend reply and only needs the frame's length and
//! two facts about it (is it a push, does it hold RESP3-only types); redis-protocol's decoders
//! build frames we would throw away. Tested against redis-protocol below and fuzzed.

/// Largest bulk reply accepted from the backend. Redis never sends more than `proto-max-bulk-len`.
pub const MAX_REPLY_BULK: i64 = 1 << 32;
/// Most elements in one aggregate reply header.
pub const MAX_REPLY_ELEMENTS: i64 = 1 << 32;
/// Longest simple-string or header line accepted from the backend.
pub const MAX_LINE: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    pub len: usize,
    /// Holds a type that RESP2 lacks (null, double, boolean, map, set, verbatim, big number,
    /// attribute, blob error): the reply must be converted before a RESP2 client sees it.
    pub resp3: bool,
    /// Top-level push frame (`>`): out-of-band, not a reply to any request.
    pub push: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameError(pub &'static str);

/// Length of the complete frame at the start of `buf`, or `None` if more bytes are needed.
pub fn frame_len(buf: &[u8]) -> Result<Option<FrameInfo>, FrameError> {
    FrameScanner::default().scan(buf)
}

/// Resumable framing: a reply arriving in many reads is scanned once overall, not once per
/// read (a 1M-element reply would otherwise cost quadratic time).
#[derive(Debug, Default, Clone)]
pub struct FrameScanner {
    pos: usize,
    /// Frames still to read. Aggregates add their children; an attribute adds its pairs plus
    /// the frame it decorates. Zero means "not started".
    needed: u64,
    resp3: bool,
}

impl FrameScanner {
    /// Scans the frame at the start of `buf`. After `Ok(None)`, call again with the same start
    /// and more bytes; after a result, the scanner is ready for the next frame.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<FrameInfo>, FrameError> {
        if self.needed == 0 {
            *self = FrameScanner {
                pos: 0,
                needed: 1,
                resp3: false,
            };
        }
        let r = self.run(buf);
        if !matches!(r, Ok(None)) {
            self.needed = 0;
        }
        r
    }

    fn run(&mut self, buf: &[u8]) -> Result<Option<FrameInfo>, FrameError> {
        let push = buf.first() == Some(&b'>');
        while self.needed > 0 {
            let pos = self.pos;
            let Some(&t) = buf.get(pos) else {
                return Ok(None);
            };
            let Some(eol) = find_crlf(buf, pos + 1) else {
                if buf.len() - pos > MAX_LINE {
                    return Err(FrameError("reply line too long"));
                }
                return Ok(None);
            };
            if eol - pos > MAX_LINE {
                return Err(FrameError("reply line too long"));
            }
            let line = &buf[pos + 1..eol];
            let mut next = eol + 2;
            match t {
                b'+' | b'-' | b':' => {}
                b'_' | b',' | b'#' | b'(' => self.resp3 = true,
                b'$' | b'!' | b'=' => {
                    let n = parse_int(line).ok_or(FrameError("invalid bulk length"))?;
                    if !(n == -1 && t == b'$') {
                        if !(0..=MAX_REPLY_BULK).contains(&n) {
                            return Err(FrameError("invalid bulk length"));
                        }
                        let end = next + n as usize;
                        if buf.len() < end + 2 {
                            return Ok(None);
                        }
                        if &buf[end..end + 2] != b"\r\n" {
                            return Err(FrameError("bulk not terminated by CRLF"));
                        }
                        next = end + 2;
                    }
                    if t != b'$' {
                        self.resp3 = true;
                    }
                }
                b'*' | b'~' | b'>' | b'%' | b'|' => {
                    let n = parse_int(line).ok_or(FrameError("invalid aggregate length"))?;
                    if !(n == -1 && t == b'*') {
                        if !(0..=MAX_REPLY_ELEMENTS).contains(&n) {
                            return Err(FrameError("invalid aggregate length"));
                        }
                        self.needed += match t {
                            b'%' => 2 * n as u64,
                            b'|' => 2 * n as u64 + 1,
                            _ => n as u64,
                        };
                    }
                    if t != b'*' {
                        self.resp3 = true;
                    }
                }
                _ => return Err(FrameError("unknown reply type")),
            }
            self.needed -= 1;
            self.pos = next;
        }
        Ok(Some(FrameInfo {
            len: self.pos,
            resp3: self.resp3,
            push,
        }))
    }
}

#[inline]
pub(crate) fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 1 < buf.len() {
        if buf[i] == b'\r' && buf[i + 1] == b'\n' {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[inline]
pub(crate) fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as i64;
    }
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(b: &[u8]) -> FrameInfo {
        frame_len(b).unwrap().unwrap()
    }

    #[test]
    fn scalars_and_aggregates() {
        assert_eq!(info(b"+OK\r\n").len, 5);
        assert_eq!(info(b"$-1\r\n").len, 5);
        assert_eq!(info(b"*-1\r\n").len, 5);
        assert!(!info(b"*2\r\n$1\r\na\r\n:1\r\n").resp3);
        let i = info(b"%1\r\n$1\r\nk\r\n,1.5\r\nrest");
        assert_eq!((i.len, i.resp3), (17, true));
        let p = info(b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n");
        assert!(p.push);
        assert_eq!(info(b"|1\r\n+a\r\n+b\r\n:3\r\n").len, 16);
    }

    #[test]
    fn incomplete_at_every_cut() {
        let full = b"*3\r\n$3\r\nfoo\r\n%1\r\n+a\r\n_\r\n=8\r\ntxt:abcd\r\n";
        for cut in 0..full.len() {
            assert_eq!(frame_len(&full[..cut]), Ok(None), "cut {cut}");
        }
        assert_eq!(info(full).len, full.len());
    }

    #[test]
    fn resumes_where_it_stopped() {
        let full = b"*3\r\n$3\r\nfoo\r\n%1\r\n+a\r\n_\r\n=8\r\ntxt:abcd\r\n+next\r\n";
        let mut sc = FrameScanner::default();
        for cut in 0..38 {
            assert_eq!(sc.scan(&full[..cut]), Ok(None), "cut {cut}");
        }
        assert_eq!(sc.scan(full).unwrap().unwrap().len, 38);
        assert_eq!(sc.scan(&full[38..]).unwrap().unwrap().len, 7);
    }

    #[test]
    fn rejects_junk() {
        assert!(frame_len(b"?\r\n").is_err());
        assert!(frame_len(b"$abc\r\n").is_err());
        assert!(frame_len(b"$3\r\nabcXY").is_err());
        assert!(frame_len(b"*99999999999999999999\r\n").is_err());
        assert!(frame_len(b"$1\rx\r\n").is_err());
    }

    /// Differential: every frame redis-protocol's RESP3 decoder accepts has the same length here.
    #[test]
    fn agrees_with_redis_protocol() {
        use redis_protocol::resp3::decode::complete::decode;
        let samples: &[&[u8]] = &[
            b"+OK\r\n",
            b"-ERR x\r\n",
            b":-12\r\n",
            b"$0\r\n\r\n",
            b"_\r\n",
            b",3.25\r\n",
            b"#t\r\n",
            b"(12345678901234567890\r\n",
            b"!3\r\nerr\r\n",
            b"=7\r\ntxt:abc\r\n",
            b"*2\r\n*1\r\n:1\r\n~1\r\n+x\r\n",
            b"%2\r\n+a\r\n:1\r\n+b\r\n*0\r\n",
            b">3\r\n+message\r\n+ch\r\n$2\r\nhi\r\n",
        ];
        for s in samples {
            let (_, n) = decode(s).unwrap().unwrap();
            assert_eq!(info(s).len, n, "{}", String::from_utf8_lossy(s));
        }
    }
}
