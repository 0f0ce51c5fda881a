//! Fuzzes backend reply framing (`redis_proxy::resp::frame`) and RESP3 -> RESP2 conversion
//! (`redis_proxy::resp::convert`).
//!
//! Checks, on arbitrary bytes treated as one backend connection's byte stream:
//! * no panic; `frame_len` equals a reused `FrameScanner`; `push` and `resp3` flags are right;
//! * resumability: delivering the stream in chunks gives the same frames/errors as whole;
//! * differential against redis-protocol's RESP3 decoder (`resp3::decode::complete::decode`):
//!   - when it decodes a complete frame of `n` bytes, we frame exactly `n` bytes, unless the frame
//!     uses syntax we intentionally refuse (see `their_only_syntax`);
//!   - when we frame `len` bytes, it decodes the same `len` bytes, unless the frame holds content
//!     it refuses and we intentionally pass through (see `our_only_syntax`);
//! * `to_resp2` with every `Shape` on every frame we accept: no panic, and the output is exactly
//!   one RESP2 frame (`frame_len` gives its full length and `resp3 == false`); for strict frames
//!   also redis-protocol's RESP2 decoder takes it whole, and for the type-by-type shapes
//!   (`Plain`, `NullArray`, `XPending`) its value matches redis-protocol's RESP3 reading of the input (frames without maps/sets).
#![no_main]

#[path = "common.rs"]
mod common;

use bytes::BytesMut;
use common::*;
use libfuzzer_sys::fuzz_target;
use redis_protocol::resp2::decode::{decode as resp2_decode, decode_range as resp2_decode_range};
use redis_protocol::resp2::types::OwnedFrame as R2;
use redis_protocol::resp3::decode::complete::decode as resp3_decode;
use redis_protocol::resp3::types::OwnedFrame as R3;
use redis_proxy::resp::convert::{to_resp2, Shape};
use redis_proxy::resp::frame::{frame_len, FrameInfo, FrameScanner};

const AGGREGATES: &[u8] = b"*~%>|";

#[derive(Debug, PartialEq, Eq)]
enum Event {
    Frame { at: usize, info: FrameInfo },
    Error { at: usize, msg: &'static str },
    Incomplete { at: usize },
}

fn scan_whole(data: &[u8]) -> Vec<Event> {
    let aggs = ByteCounts::new(data, AGGREGATES);
    let mut sc = FrameScanner::default();
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let input = &data[at..];
        let r = sc.scan(input);
        assert_eq!(r, frame_len(input), "reused scanner vs frame_len at {at}");
        let reference = aggs.from(at) <= MAX_REFERENCE_DEPTH;
        if reference && !input.is_empty() {
            check_against_reference(input, &r);
        }
        match r {
            Ok(Some(info)) => {
                assert!(info.len > 0 && info.len <= input.len());
                let frame = &input[..info.len];
                assert_eq!(info.push, frame[0] == b'>', "push flag");
                let walk = walk_ours(frame);
                assert_eq!(info.resp3, walk.resp3, "resp3 flag of {:?}", escape(frame));
                check_conversion(frame, info, walk.excuse.is_none(), reference);
                out.push(Event::Frame { at, info });
                at += info.len;
            }
            Ok(None) => {
                out.push(Event::Incomplete { at });
                return out;
            }
            Err(e) => {
                out.push(Event::Error { at, msg: e.0 });
                return out;
            }
        }
    }
}

fn scan_chunked(data: &[u8], cuts: &[usize]) -> Vec<Event> {
    let mut sc = FrameScanner::default();
    let mut out = Vec::new();
    let mut cuts = cuts.iter().copied();
    let mut avail = cuts.next().unwrap_or(0);
    let mut at = 0;
    loop {
        match sc.scan(&data[at..avail]) {
            Ok(Some(info)) => {
                out.push(Event::Frame { at, info });
                at += info.len;
            }
            Ok(None) => match cuts.next() {
                Some(c) => avail = c,
                None => {
                    out.push(Event::Incomplete { at });
                    return out;
                }
            },
            Err(e) => {
                out.push(Event::Error { at, msg: e.0 });
                return out;
            }
        }
    }
}

fn check_against_reference(input: &[u8], ours: &Result<Option<FrameInfo>, redis_proxy::resp::frame::FrameError>) {
    let theirs = resp3_decode(input);
    let ctx = || format!("input {:?}\nours {ours:?}\ntheirs {theirs:?}", escape(input));
    let ours_len = match ours {
        Ok(Some(i)) => Some(i.len),
        _ => None,
    };
    if let Ok(Some((_, n))) = &theirs {
        if ours_len != Some(*n) {
            if let Some(why) = their_only_syntax(&input[..*n]) {
                // Intentional: we refuse this frame (or frame it differently) on purpose.
                let _ = why;
            } else {
                panic!("redis-protocol frames {n} bytes, we do not\n{}", ctx());
            }
        }
    }
    if let Some(len) = ours_len {
        let agree = matches!(&theirs, Ok(Some((_, n))) if *n == len);
        if !agree && walk_ours(&input[..len]).excuse.is_none() {
            panic!("we frame {len} bytes, redis-protocol does not\n{}", ctx());
        }
    }
}

/// Walk of a frame redis-protocol decoded completely, following *its* grammar: returns why we
/// may refuse it, or `None` if it only uses syntax we must accept too.
fn their_only_syntax(frame: &[u8]) -> Option<String> {
    let mut pos = 0;
    let mut needed: u64 = 1;
    while needed > 0 {
        let t = frame[pos];
        match t {
            // HELLO is a client command; a server never sends it.
            b'H' => return Some("HELLO".into()),
            // Streamed strings: Redis never sends them, so we do not implement streaming.
            b';' | b'.' => return Some("streamed string chunk".into()),
            _ => {}
        }
        let eol = find_crlf(frame, pos + 1).expect("decoded line");
        let line = &frame[pos + 1..eol];
        let mut next = eol + 2;
        match t {
            b'+' | b'-' | b':' | b',' | b'#' | b'_' | b'(' => {}
            b'$' | b'!' | b'=' | b'*' | b'~' | b'%' | b'>' | b'|' => {
                if !our_int_syntax(line) {
                    return Some(format!("header integer {:?}", escape(line)));
                }
                let n: u64 = std::str::from_utf8(line).unwrap().parse::<i64>().unwrap().try_into().unwrap();
                match t {
                    b'$' | b'!' | b'=' => {
                        let end = next + n as usize;
                        if &frame[end..end + 2] != b"\r\n" {
                            // redis-protocol takes any two bytes after a blob; Redis always sends CRLF.
                            return Some(format!("blob trailer {:?}", escape(&frame[end..end + 2])));
                        }
                        next = end + 2;
                    }
                    b'%' => needed += 2 * n,
                    b'|' => needed += 2 * n + 1,
                    _ => needed += n,
                }
            }
            _ => unreachable!("redis-protocol decoded type {t:?}"),
        }
        needed -= 1;
        pos = next;
    }
    assert_eq!(pos, frame.len(), "redis-protocol length");
    None
}

struct Walk {
    /// Why redis-protocol may refuse this frame although we accept it.
    excuse: Option<String>,
    /// Holds a RESP3-only type.
    resp3: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Any,
    /// A map/attribute key or a set member: redis-protocol hashes it, so it must be a scalar.
    Hashable,
    /// The frame an attribute decorates (`true`: and it must be hashable as well).
    Decorated(bool),
}

struct Level {
    kind: u8,
    idx: u64,
    total: u64,
    /// Key/value frames of an attribute, before the decorated frame.
    pairs: u64,
    role: Role,
}

/// Walk of a frame *we* accepted, following our grammar. The excuse lists the content we pass
/// through on purpose (we only need the frame's length; Redis is trusted to send sane values)
/// while redis-protocol validates it.
fn walk_ours(frame: &[u8]) -> Walk {
    let mut excuse: Option<String> = None;
    let mut note = |s: String| {
        excuse.get_or_insert(s);
    };
    let mut resp3 = false;
    let mut stack: Vec<Level> = Vec::new();
    let mut pos = 0;
    loop {
        let role = match stack.last() {
            None => Role::Any,
            Some(l) => match l.kind {
                b'%' if l.idx % 2 == 0 => Role::Hashable,
                b'~' => Role::Hashable,
                b'|' if l.idx < l.pairs => {
                    if l.idx % 2 == 0 {
                        Role::Hashable
                    } else {
                        Role::Any
                    }
                }
                b'|' => Role::Decorated(matches!(l.role, Role::Hashable | Role::Decorated(true))),
                _ => Role::Any,
            },
        };
        let t = frame[pos];
        let eol = find_crlf(frame, pos + 1).expect("framed line");
        let line = &frame[pos + 1..eol];
        let mut next = eol + 2;
        if matches!(role, Role::Decorated(_)) {
            match t {
                b'|' => note("attribute decorating an attribute".into()),
                b'_' => note("attribute on a null".into()),
                _ => {}
            }
        }
        let hashable = matches!(role, Role::Hashable | Role::Decorated(true));
        let utf8 = std::str::from_utf8(line).ok();
        let mut opened = false;
        match t {
            b'+' => {}
            b'-' => {
                if utf8.is_none() {
                    note("simple error not UTF-8".into());
                }
            }
            b':' => {
                if utf8.and_then(|s| s.parse::<i64>().ok()).is_none() {
                    note(format!("integer {:?}", escape(line)));
                }
            }
            b',' => {
                resp3 = true;
                if utf8.and_then(|s| s.parse::<f64>().ok()).is_none() {
                    note(format!("double {:?}", escape(line)));
                }
            }
            b'#' => {
                resp3 = true;
                if line != b"t" && line != b"f" {
                    note(format!("boolean {:?}", escape(line)));
                }
            }
            b'_' | b'(' => resp3 = true,
            b'$' | b'!' | b'=' | b'*' | b'~' | b'%' | b'>' | b'|' => {
                assert!(our_int_syntax(line), "we accepted header {:?}", escape(line));
                let n: i64 = utf8.unwrap().parse().unwrap();
                if line.starts_with(b"-") {
                    // `$-1` / `*-1` are RESP2 nulls (Redis sends `_` in RESP3); redis-protocol
                    // reads `-1` as a streamed header. `-0` only parses as a signed length there.
                    assert!(n == -1 && (t == b'$' || t == b'*') || n == 0, "we accepted {:?}", escape(line));
                    note(format!("negative length {:?}", escape(line)));
                }
                if !matches!(t, b'$' | b'*') {
                    resp3 = true;
                }
                let null = n == -1;
                let n = n.max(0) as u64;
                match t {
                    b'$' | b'!' | b'=' => {
                        if !null {
                            let body = &frame[next..next + n as usize];
                            if t == b'=' && !(n >= 4 && (body.starts_with(b"txt") || body.starts_with(b"mkd"))) {
                                note(format!("verbatim {:?}", escape(body)));
                            }
                            next += n as usize + 2;
                        }
                    }
                    _ => {
                        if hashable && t != b'|' {
                            note("aggregate as map key or set member".into());
                        }
                        let total = match t {
                            b'%' => 2 * n,
                            b'|' => 2 * n + 1,
                            _ => n,
                        };
                        if total > 0 && !null {
                            stack.push(Level { kind: t, idx: 0, total, pairs: 2 * n, role });
                            opened = true;
                        }
                    }
                }
            }
            _ => unreachable!("we accepted type {t:?}"),
        }
        pos = next;
        if !opened {
            // This frame is complete; so may be the aggregates it ends.
            loop {
                match stack.last_mut() {
                    None => {
                        assert_eq!(pos, frame.len(), "our frame length");
                        return Walk { excuse, resp3 };
                    }
                    Some(l) => {
                        l.idx += 1;
                        if l.idx < l.total {
                            break;
                        }
                        stack.pop();
                    }
                }
            }
        }
    }
}

const SHAPES: [Shape; 5] = [Shape::Plain, Shape::NullArray, Shape::FlattenPairs, Shape::StreamMap, Shape::XPending];

/// Shapes that only change how nulls are written (`$-1` or `*-1`, the same RESP2 null to
/// redis-protocol), so the value must otherwise survive unchanged.
fn type_by_type(shape: Shape) -> bool {
    matches!(shape, Shape::Plain | Shape::NullArray | Shape::XPending)
}

fn check_conversion(frame: &[u8], info: FrameInfo, strict: bool, reference: bool) {
    for shape in SHAPES {
        let mut out = BytesMut::new();
        to_resp2(frame, shape, &mut out);
        let ctx = || format!("{shape:?} of {:?}\ngives {:?}", escape(frame), escape(&out));
        assert_eq!(
            frame_len(&out),
            Ok(Some(FrameInfo { len: out.len(), resp3: false, push: false })),
            "not one RESP2 frame\n{}",
            ctx()
        );
        if !reference || out.iter().filter(|b| **b == b'*').count() > MAX_REFERENCE_DEPTH {
            continue;
        }
        if !info.resp3 && type_by_type(shape) {
            // Nothing to convert: the same RESP2 value comes out (headers re-encoded at most).
            if let Ok(Some((want, _))) = resp2_decode(frame) {
                assert_eq!(resp2_decode(&out).ok(), Some(Some((want, out.len()))), "{}", ctx());
            }
        }
        if !strict {
            continue;
        }
        match resp2_decode_range(&out) {
            Ok(Some((_, n))) if n == out.len() => {}
            other => panic!("redis-protocol RESP2 reads {other:?}\n{}", ctx()),
        }
        if type_by_type(shape) {
            let Ok(Some((want, _))) = resp3_decode(frame) else { continue };
            let Ok(Some((got, _))) = resp2_decode(&out) else { continue }; // e.g. a non-UTF-8 blob error
            if let Some(false) = same_value(&want, &got) {
                panic!("value changed: RESP3 {want:?}\nRESP2 {got:?}\n{}", ctx());
            }
        }
    }
}

/// Whether the RESP2 value is what redis-server would send a RESP2 client for the RESP3 value
/// (attributes dropped). `None`: cannot tell (maps and sets are unordered in redis-protocol).
fn same_value(want: &R3, got: &R2) -> Option<bool> {
    Some(match (want, got) {
        (R3::Map { .. } | R3::Set { .. }, _) => return None,
        (R3::SimpleString { data, .. }, R2::SimpleString(g)) => data == g,
        (R3::SimpleError { data, .. }, R2::Error(g)) => data == g,
        (R3::BlobError { data, .. }, R2::Error(g)) => {
            let flat: Vec<u8> = data.iter().map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }).collect();
            flat == g.as_bytes()
        }
        (R3::Number { data, .. }, R2::Integer(g)) => data == g,
        (R3::Boolean { data: true, .. }, R2::Integer(1)) => true,
        // redis-server's addReplyBool for a RESP2 client.
        (R3::Boolean { data: false, .. }, R2::Integer(0)) => true,
        (R3::Null, R2::Null) => true,
        (R3::Double { data, .. }, R2::BulkString(g)) => {
            let v: f64 = std::str::from_utf8(g).ok()?.parse().ok()?;
            v == *data || v.is_nan() && data.is_nan()
        }
        (R3::BlobString { data, .. }, R2::BulkString(g)) => data == g,
        (R3::VerbatimString { data, .. }, R2::BulkString(g)) => data == g,
        (R3::BigNumber { data, .. }, R2::BulkString(g)) => data == g,
        (R3::Array { data, .. } | R3::Push { data, .. }, R2::Array(g)) => {
            if data.len() != g.len() {
                return Some(false);
            }
            let mut unknown = false;
            for (w, g) in data.iter().zip(g) {
                match same_value(w, g) {
                    Some(false) => return Some(false),
                    None => unknown = true,
                    Some(true) => {}
                }
            }
            return if unknown { None } else { Some(true) };
        }
        _ => false,
    })
}

fuzz_target!(|data: &[u8]| {
    let whole = scan_whole(data);
    let cuts = split_points(data);
    let chunked = scan_chunked(data, &cuts);
    assert_eq!(whole, chunked, "chunked at {cuts:?}\ninput {:?}", escape(data));
});
