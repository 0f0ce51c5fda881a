//! Helpers shared by the fuzz targets.
#![allow(dead_code)]

/// redis-protocol's decoders recurse once per nesting level (through several nom combinator
/// frames), so a 64 KiB input of `*1\r\n*1\r\n...` overflows their stack. Our own code is not at
/// fault there, so the reference decoder is only consulted when the input cannot nest deeper
/// than this: every nesting level consumes one aggregate type byte, so counting those bytes in
/// the remaining input bounds the depth.
pub const MAX_REFERENCE_DEPTH: usize = 256;

/// Prefix counts of the bytes in `set`: `count(i..)` = `total - prefix[i]`.
pub struct ByteCounts {
    prefix: Vec<u32>,
}

impl ByteCounts {
    pub fn new(data: &[u8], set: &[u8]) -> Self {
        let mut prefix = Vec::with_capacity(data.len() + 1);
        let mut n = 0u32;
        prefix.push(0);
        for b in data {
            n += set.contains(b) as u32;
            prefix.push(n);
        }
        ByteCounts { prefix }
    }

    /// Bytes of the set in `data[from..]`.
    pub fn from(&self, from: usize) -> usize {
        (self.prefix[self.prefix.len() - 1] - self.prefix[from]) as usize
    }
}

fn fnv1a(data: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Points where a simulated socket delivers the next chunk: strictly increasing, ending at
/// `data.len()`. Derived from the data so a crash reproduces from the input alone. Small inputs
/// are sometimes delivered one byte at a time (every cut point at once); otherwise a few dozen
/// random cuts at most, so scanners that rescan an incomplete line stay cheap on 64 KiB inputs.
pub fn split_points(data: &[u8]) -> Vec<usize> {
    let len = data.len();
    let mut s = fnv1a(data) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    if len <= 512 && next() % 3 == 0 {
        return (1..=len).collect();
    }
    let k = (next() % 33) as usize;
    let mut pts: Vec<usize> = (0..k)
        .filter(|_| len > 1)
        .map(|_| 1 + (next() as usize) % (len - 1))
        .collect();
    pts.push(len);
    pts.sort_unstable();
    pts.dedup();
    pts.retain(|&p| p > 0);
    pts
}

/// Our integer syntax for header lines (`*N`, `$N`, ...): an optional `-`, then 1..=18 digits.
/// redis-protocol instead uses Rust's `str::parse`, which also takes a leading `+` and any number
/// of digits; those inputs are an intentional difference (redis-server's `string2ll` rejects `+`
/// too, and more than 18 digits is far beyond every limit anyway).
pub fn our_int_syntax(s: &[u8]) -> bool {
    let d = s.strip_prefix(b"-").unwrap_or(s);
    !d.is_empty() && d.len() <= 18 && d.iter().all(u8::is_ascii_digit)
}

/// The request scanner is stricter, as redis-server's `string2ll` is: no leading zero (`$01`)
/// and no `-0`. It must refuse whatever redis-server would, since requests are forwarded byte
/// for byte; redis-protocol accepts these, an intentional difference.
pub fn our_request_int_syntax(s: &[u8]) -> bool {
    let (neg, d) = match s.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, s),
    };
    our_int_syntax(s) && !(d[0] == b'0' && (d.len() > 1 || neg))
}

pub fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    if from >= buf.len() {
        return None;
    }
    buf[from..].windows(2).position(|w| w == b"\r\n").map(|i| i + from)
}

pub fn escape(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}
