//! Fuzzes the client request scanner (`redis_proxy::resp::request`).
//!
//! Checks, on arbitrary bytes treated as one client connection's byte stream:
//! * no panic, and basic invariants of every `Scan` result;
//! * resumability: delivering the stream in chunks (cut points derived from the data) yields
//!   exactly the same sequence of commands / skips / errors as scanning it whole;
//! * differential against redis-protocol's RESP2 decoder at every command starting with `*`.
//!
//! Intentional differences from redis-protocol (see `check_against_reference`):
//! * `*0` and `*-N` are skipped silently by us, as by redis-server; redis-protocol decodes `*0`
//!   as an empty array, `*-1` as a null and rejects other negative counts.
//! * Header integers: we take `-?[0-9]{1,18}`; redis-protocol takes whatever `str::parse::<isize>`
//!   takes (a leading `+`, 19+ digits, leading zeros, `-0`). We reject those, as redis-server does.
//! * redis-protocol takes *any* two bytes after a bulk string's payload; we require `\r\n`
//!   (as redis-server does).
//! * Limits: more than `MAX_ARGS` arguments or a bulk over `MAX_BULK` are protocol errors for us.
//!   (A 64 KiB fuzz input can never complete such a command, so they never show up as a
//!   disagreement; they are still handled for completeness.)
//! * Inline commands have no reference decoder here; they are only checked for resumability.
#![no_main]

#[path = "common.rs"]
mod common;

use common::*;
use libfuzzer_sys::fuzz_target;
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame;
use redis_proxy::resp::request::{RequestScanner, Scan, MAX_ARGS, MAX_BULK};

#[derive(Debug, PartialEq, Eq)]
enum Event {
    Command { at: usize, len: usize, inline: bool, args: Vec<Vec<u8>> },
    Skip { at: usize, len: usize },
    Error { at: usize, msg: &'static str },
    /// The stream ended inside a command starting at `at`.
    Incomplete { at: usize },
}

fn command(sc: &RequestScanner, input: &[u8], at: usize, len: usize, inline: bool) -> Event {
    let args = sc.args(input);
    assert!(!args.is_empty(), "a command has at least one argument");
    assert_eq!(args.len(), args.iter().len());
    Event::Command { at, len, inline, args: args.iter().map(<[u8]>::to_vec).collect() }
}

/// Scans the whole stream in one buffer, running the reference check at every `*` command.
fn scan_whole(data: &[u8]) -> Vec<Event> {
    let stars = ByteCounts::new(data, b"*");
    let mut sc = RequestScanner::new();
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let input = &data[at..];
        let r = sc.scan(input);
        if input.first() == Some(&b'*') && stars.from(at) <= MAX_REFERENCE_DEPTH {
            check_against_reference(&sc, input, &r);
        }
        match r {
            Scan::Command { len, inline } => {
                assert!(len > 0 && len <= input.len(), "command len {len} of {}", input.len());
                assert_eq!(inline, input[0] != b'*');
                out.push(command(&sc, input, at, len, inline));
                at += len;
            }
            Scan::Skip { len } => {
                assert!(len > 0 && len <= input.len(), "skip len {len} of {}", input.len());
                out.push(Event::Skip { at, len });
                at += len;
            }
            Scan::Incomplete { hint } => {
                assert!(hint == 0 || hint > input.len(), "hint {hint} but {} bytes there", input.len());
                out.push(Event::Incomplete { at });
                return out;
            }
            Scan::Error(e) => {
                out.push(Event::Error { at, msg: e.0 });
                return out;
            }
        }
    }
}

/// Scans the stream as a connection would see it: bytes arrive in chunks, and after `Incomplete`
/// the scanner is called again with the same start and more bytes.
fn scan_chunked(data: &[u8], cuts: &[usize]) -> Vec<Event> {
    let mut sc = RequestScanner::new();
    let mut out = Vec::new();
    let mut cuts = cuts.iter().copied();
    let mut avail = cuts.next().unwrap_or(0);
    let mut at = 0;
    // Largest `hint` returned for the command in progress.
    let mut hint_seen = 0;
    loop {
        let input = &data[at..avail];
        match sc.scan(input) {
            Scan::Command { len, inline } => {
                assert!(len > 0 && len <= input.len());
                assert!(len >= hint_seen, "command of {len} bytes after a hint of {hint_seen}");
                out.push(command(&sc, input, at, len, inline));
                at += len;
                hint_seen = 0;
            }
            Scan::Skip { len } => {
                assert!(len > 0 && len <= input.len());
                out.push(Event::Skip { at, len });
                at += len;
                hint_seen = 0;
            }
            Scan::Incomplete { hint } => {
                assert!(hint == 0 || hint > input.len(), "hint {hint} but {} bytes there", input.len());
                hint_seen = hint_seen.max(hint);
                match cuts.next() {
                    Some(c) => avail = c,
                    None => {
                        out.push(Event::Incomplete { at });
                        return out;
                    }
                }
            }
            Scan::Error(e) => {
                out.push(Event::Error { at, msg: e.0 });
                return out;
            }
        }
    }
}

/// redis-protocol's reading of a complete array of bulk strings, re-walked byte by byte to see
/// whether it only uses syntax we accept too. `Ok(())`: we must agree exactly; `Err(why)`: an
/// intentional difference, and we must refuse it with a protocol error.
fn our_syntax(frame: &[u8]) -> Result<(), String> {
    let line = |from: usize| {
        let eol = find_crlf(frame, from).expect("reference decoded a line here");
        (&frame[from..eol], eol + 2)
    };
    let (count, mut p) = line(1);
    if !our_request_int_syntax(count) {
        return Err(format!("array count {:?}", escape(count)));
    }
    let n: i64 = std::str::from_utf8(count).unwrap().parse().unwrap();
    if n > MAX_ARGS as i64 {
        return Err(format!("{n} arguments > MAX_ARGS"));
    }
    for _ in 0..n.max(0) {
        assert_eq!(frame[p], b'$');
        let (len, q) = line(p + 1);
        if !our_request_int_syntax(len) {
            return Err(format!("bulk length {:?}", escape(len)));
        }
        // `-0` is a valid (empty) length for both.
        let len = std::str::from_utf8(len).unwrap().parse::<i64>().unwrap().max(0) as usize;
        if len > MAX_BULK {
            return Err(format!("bulk of {len} > MAX_BULK"));
        }
        if &frame[q + len..q + len + 2] != b"\r\n" {
            return Err(format!("bulk trailer {:?}", escape(&frame[q + len..q + len + 2])));
        }
        p = q + len + 2;
    }
    assert_eq!(p, frame.len());
    Ok(())
}

fn check_against_reference(sc: &RequestScanner, input: &[u8], ours: &Scan) {
    let theirs = decode(input);
    let ctx = || format!("input {:?}\nours {ours:?}\ntheirs {theirs:?}", escape(input));
    match &theirs {
        // A complete array (possibly empty or null) whose elements are all bulk strings.
        Ok(Some((frame @ (OwnedFrame::Array(_) | OwnedFrame::Null), n)))
            if match frame {
                OwnedFrame::Array(items) => items.iter().all(|f| matches!(f, OwnedFrame::BulkString(_))),
                _ => true,
            } =>
        {
            let n = *n;
            match our_syntax(&input[..n]) {
                Err(why) => assert!(
                    matches!(ours, Scan::Error(_)),
                    "we must refuse what only redis-protocol takes ({why})\n{}",
                    ctx()
                ),
                Ok(()) => match frame {
                    OwnedFrame::Array(items) if !items.is_empty() => {
                        assert_eq!(ours, &Scan::Command { len: n, inline: false }, "{}", ctx());
                        let args = sc.args(input);
                        assert_eq!(args.len(), items.len(), "{}", ctx());
                        for (i, item) in items.iter().enumerate() {
                            let OwnedFrame::BulkString(b) = item else { unreachable!() };
                            assert_eq!(args.get(i), &b[..], "argument {i}\n{}", ctx());
                        }
                    }
                    // `*0` / `*-1`: redis-server (and we) skip them, nothing is answered.
                    _ => assert_eq!(ours, &Scan::Skip { len: n }, "{}", ctx()),
                },
            }
        }
        _ => match ours {
            Scan::Command { .. } => panic!("we accept a command redis-protocol does not\n{}", ctx()),
            // Only `*0`, `*-1` (decoded above) and other negative counts, which redis-protocol
            // refuses, are skipped.
            Scan::Skip { len } => {
                let c = &input[1..*len - 2];
                assert!(
                    c.starts_with(b"-") && theirs.is_err(),
                    "skip of {:?}\n{}",
                    escape(c),
                    ctx()
                );
            }
            _ => {}
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = scan_whole(data);
    let cuts = split_points(data);
    let chunked = scan_chunked(data, &cuts);
    assert_eq!(whole, chunked, "chunked at {cuts:?}\ninput {:?}", escape(data));
});
