//! Fuzzes the HTTP request head parser and key routing (`redis_proxy::http::{parse, route}`).
//!
//! Checks, on arbitrary bytes treated as one connection's byte stream, driven as the
//! connection's reader drives them (blank lines skipped, bodies dropped, a rejection ends it):
//! * no panic; every request's head length fits in what was parsed;
//! * resumability: delivering the stream in chunks (cut points derived from the data), with the
//!   head search carried over between reads, yields exactly the same requests and rejection as
//!   parsing it whole; so a head arriving in pieces can never desynchronise the connection.
#![no_main]

#[path = "common.rs"]
mod common;

use common::split_points;
use libfuzzer_sys::fuzz_target;
use redis_proxy::http::parse::{leading_blank, parse, Body, Parsed};
use redis_proxy::http::route::key_of;

/// Small enough that the 414/431 paths are reached by fuzz inputs.
const LIMIT: usize = 2048;

#[derive(Debug, PartialEq, Eq)]
enum Event {
    Request {
        at: usize,
        len: usize,
        target: Vec<u8>,
        key: Result<Vec<u8>, &'static str>,
        body: Body,
    },
    Reject { at: usize, msg: &'static str },
}

/// Feeds `data` in reads ending at `cuts`; returns the events.
fn run(data: &[u8], cuts: &[usize]) -> Vec<Event> {
    let mut events = Vec::new();
    let (mut pos, mut scanned, mut skip) = (0usize, 0usize, 0u64);
    for &end in cuts {
        loop {
            if skip > 0 {
                let n = skip.min((end - pos) as u64);
                pos += n as usize;
                skip -= n;
                if skip > 0 {
                    break;
                }
            }
            if scanned == 0 {
                pos += leading_blank(&data[pos..end]);
            }
            match parse(&data[pos..end], &mut scanned, LIMIT) {
                Parsed::Partial => break,
                Parsed::Reject(_, msg) => {
                    events.push(Event::Reject { at: pos, msg });
                    return events;
                }
                Parsed::Request(r) => {
                    assert!(r.len > 0 && r.len <= end - pos);
                    let mut key = Vec::new();
                    let key = key_of(r.target, &mut key).map(|_| key);
                    events.push(Event::Request {
                        at: pos,
                        len: r.len,
                        target: r.target.to_vec(),
                        key,
                        body: r.body,
                    });
                    scanned = 0;
                    pos += r.len;
                    match r.body {
                        Body::Length(n) if n <= LIMIT as u64 => skip = n,
                        _ => return events,
                    }
                }
            }
        }
    }
    events
}

fuzz_target!(|data: &[u8]| {
    let whole = run(data, &[data.len()]);
    let chunked = run(data, &split_points(data));
    assert_eq!(whole, chunked);
});
