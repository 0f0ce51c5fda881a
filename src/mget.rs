//! MGET served key by key: hits come from the cache, the missing keys are fetched from Redis in
//! one MGET, and the two are merged back in the client's order.
//!
//! Values fetched by an MGET are not cached: caching needs each key's TTL (a PTTL per key), and
//! the GET path already fills the cache for keys that are read on their own.

use crate::backend::io::relay;
use crate::replies::ClientShared;
use crate::resp::convert::Shape;
use crate::resp::frame::{FrameInfo, FrameScanner};
use crate::resp::write::{put_error, put_header};
use bytes::{Bytes, BytesMut};
use std::rc::Rc;

pub struct Mget {
    pub client: Rc<ClientShared>,
    pub seq: u64,
    /// One per requested key, in order: the cached reply, or `None` for a key being fetched.
    pub parts: Vec<Option<Bytes>>,
}

impl Mget {
    pub fn on_reply(&mut self, frame: &[u8], info: FrameInfo, resp3: bool) {
        let parts = std::mem::take(&mut self.parts);
        self.client.complete(self.seq, |out| {
            if !frame.starts_with(b"*") || !merge(&parts, frame, out) {
                relay(frame, info, Shape::Plain, resp3, out);
            }
        });
    }

    pub fn fail(&mut self, msg: &str) {
        self.client
            .complete(self.seq, |out| put_error(out, msg.as_bytes()));
    }
}

/// Writes the merged array; false if the backend reply does not have one element per missing key.
fn merge(parts: &[Option<Bytes>], frame: &[u8], out: &mut BytesMut) -> bool {
    let header_end = match crate::resp::frame::find_crlf(frame, 1) {
        Some(e) => e + 2,
        None => return false,
    };
    let missing = parts.iter().filter(|p| p.is_none()).count();
    if crate::resp::frame::parse_int(&frame[1..header_end - 2]) != Some(missing as i64) {
        return false;
    }
    let mut elems = Vec::with_capacity(missing);
    let mut pos = header_end;
    for _ in 0..missing {
        match FrameScanner::default().scan(&frame[pos..]) {
            Ok(Some(i)) => {
                elems.push(&frame[pos..pos + i.len]);
                pos += i.len;
            }
            _ => return false,
        }
    }
    put_header(out, b'*', parts.len() as i64);
    let mut fetched = elems.into_iter();
    for p in parts {
        match p {
            Some(hit) => out.extend_from_slice(hit),
            None => {
                let e = fetched.next().unwrap_or(b"$-1\r\n");
                if e == b"_\r\n" {
                    out.extend_from_slice(b"$-1\r\n");
                } else {
                    out.extend_from_slice(e);
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_hits_and_fetched_in_order() {
        let parts = vec![Some(Bytes::from_static(b"$1\r\na\r\n")), None, None];
        let mut out = BytesMut::new();
        assert!(merge(&parts, b"*2\r\n_\r\n$1\r\nc\r\n", &mut out));
        assert_eq!(&out[..], b"*3\r\n$1\r\na\r\n$-1\r\n$1\r\nc\r\n");
        assert!(!merge(&parts, b"*1\r\n$1\r\nc\r\n", &mut BytesMut::new()));
    }
}
