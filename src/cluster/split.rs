//! Commands split across nodes, and their replies merged in order: multi-key commands whose
//! keys hash to several slots (MGET, MSET, DEL, UNLINK, EXISTS, TOUCH), and keyless commands
//! sent to every master (DBSIZE, KEYS, FLUSHALL, SCRIPT LOAD ...) or walked node by node
//! (SCAN). A part that fails fails only itself: its keys' elements of an MGET are its error;
//! a count, an `+OK` or a list with a failed part is that part's error (Envoy's rule).

use crate::replies::ClientShared;
use crate::resp::convert::Shape;
use crate::resp::cursor::header;
use crate::resp::encode::{relay, Proto};
use crate::resp::frame::{frame_len, parse_int};
use crate::resp::write::{put_bulk, put_header};
use bytes::{Bytes, BytesMut};
use std::cell::RefCell;
use std::rc::Rc;

/// How the parts' replies make the client's.
pub enum Merge {
    /// MGET: part `i` answered for the keys at `positions[i]` of `n`.
    Mget { positions: Vec<Vec<u32>>, n: usize },
    /// DEL, UNLINK, EXISTS, TOUCH, DBSIZE: integers summed.
    Sum,
    /// MSET: `+OK` from each.
    AllOk,
    /// KEYS: the arrays, one after the other.
    Concat,
    /// FLUSHALL, SCRIPT LOAD ...: every node answers alike; the first reply (or error).
    Same,
    /// SCAN on master `node` of `nodes`: the cursor carries the node in its low byte.
    Scan { node: u64, nodes: u64 },
}

pub struct Gather {
    client: Rc<ClientShared>,
    seq: u64,
    proto: Proto,
    merge: Merge,
    parts: Vec<Option<Bytes>>,
    left: usize,
    /// The backend connections speak RESP3.
    resp3: bool,
}

pub type GatherRef = Rc<RefCell<Gather>>;

/// The low bits of a cluster SCAN cursor that name the master (up to 256 masters).
pub const SCAN_NODE_BITS: u32 = 8;

impl Gather {
    pub fn new(
        client: &Rc<ClientShared>,
        seq: u64,
        proto: Proto,
        merge: Merge,
        parts: usize,
    ) -> GatherRef {
        Rc::new(RefCell::new(Gather {
            client: client.clone(),
            seq,
            proto,
            merge,
            parts: vec![None; parts],
            left: parts,
            resp3: true,
        }))
    }
}

/// Part `i` answered `frame`; the client's reply goes out with the last part.
pub fn part_reply(g: &GatherRef, i: usize, frame: &[u8], resp3: bool) {
    let mut g = g.borrow_mut();
    if g.parts[i].is_some() {
        return;
    }
    g.resp3 &= resp3;
    g.parts[i] = Some(Bytes::copy_from_slice(frame));
    g.left -= 1;
    if g.left == 0 {
        let g = &*g;
        g.client.complete(g.seq, |out| merge(g, out));
    }
}

/// Part `i` got no reply: its connection failed with `msg`.
pub fn part_fail(g: &GatherRef, i: usize, msg: &str) {
    let frame = format!("-{msg}\r\n");
    part_reply(g, i, frame.as_bytes(), true);
}

fn first_error(g: &Gather) -> Option<&Bytes> {
    g.parts
        .iter()
        .flatten()
        .find(|p| p.first() == Some(&b'-') || p.first() == Some(&b'!'))
}

fn merge(g: &Gather, out: &mut BytesMut) {
    let parts: Vec<&Bytes> = g.parts.iter().flatten().collect();
    match &g.merge {
        Merge::Mget { positions, n } => {
            let mut elems: Vec<Option<&[u8]>> = vec![None; *n];
            for (part, pos) in parts.iter().zip(positions) {
                let h = header(part, 0);
                if h.kind != b'*' {
                    // An error: each of its keys gets it.
                    for &p in pos {
                        elems[p as usize] = Some(&part[..]);
                    }
                    continue;
                }
                let mut at = h.next;
                for &p in pos {
                    let Ok(Some(info)) = frame_len(&part[at..]) else {
                        break;
                    };
                    elems[p as usize] = Some(&part[at..at + info.len]);
                    at += info.len;
                }
            }
            put_header(out, b'*', *n as i64);
            for e in elems {
                put_elem(g, e.unwrap_or(b"_\r\n"), out);
            }
        }
        _ if first_error(g).is_some() => {
            let e = first_error(g).expect("checked");
            put_elem(g, e, out);
        }
        Merge::Sum => {
            let sum: i64 = parts
                .iter()
                .map(|p| {
                    p.strip_prefix(b":")
                        .and_then(|r| r.strip_suffix(b"\r\n"))
                        .and_then(parse_int)
                        .unwrap_or(0)
                })
                .sum();
            out.extend_from_slice(format!(":{sum}\r\n").as_bytes());
        }
        Merge::AllOk => out.extend_from_slice(b"+OK\r\n"),
        Merge::Same => put_elem(g, parts[0], out),
        Merge::Concat => {
            let mut elems: Vec<&[u8]> = Vec::new();
            for p in &parts {
                let h = header(p, 0);
                let mut at = h.next;
                for _ in 0..h.count().max(0) {
                    let Ok(Some(info)) = frame_len(&p[at..]) else {
                        break;
                    };
                    elems.push(&p[at..at + info.len]);
                    at += info.len;
                }
            }
            put_header(out, b'*', elems.len() as i64);
            for e in elems {
                put_elem(g, e, out);
            }
        }
        Merge::Scan { node, nodes } => {
            let p = parts[0];
            let h = header(p, 0);
            let Ok(Some(info)) = frame_len(&p[h.next..]) else {
                return put_elem(g, p, out);
            };
            let cur = header(p, h.next);
            let next: u64 =
                std::str::from_utf8(&p[cur.next..cur.next + cur.count().max(0) as usize])
                    .ok()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
            let cursor = if next != 0 {
                (next << SCAN_NODE_BITS) | node
            } else if node + 1 < *nodes {
                node + 1
            } else {
                0
            };
            put_header(out, b'*', 2);
            put_bulk(out, cursor.to_string().as_bytes());
            let keys = h.next + info.len;
            put_elem(g, &p[keys..], out);
        }
    }
}

/// One element (or a whole reply) in the client's protocol.
fn put_elem(g: &Gather, e: &[u8], out: &mut BytesMut) {
    match frame_len(e) {
        Ok(Some(info)) => relay(e, info, Shape::Plain, g.resp3, g.proto, out),
        _ => out.extend_from_slice(e),
    }
}

/// Positions of the keys of a split command, grouped by slot in order of first appearance:
/// `(slot, [argument index])`. `pairs`: keys are followed by a value (MSET).
pub fn by_slot(keys: impl Iterator<Item = (usize, u16)>) -> Vec<(u16, Vec<usize>)> {
    let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
    for (i, slot) in keys {
        match groups.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, v)) => v.push(i),
            None => groups.push((slot, vec![i])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(merge: Merge, parts: &[&[u8]], proto: Proto) -> String {
        let c = Rc::new(ClientShared::default());
        let seq = c.push_pending();
        let g = Gather::new(&c, seq, proto, merge, parts.len());
        for (i, p) in parts.iter().enumerate().rev() {
            part_reply(&g, i, p, true);
        }
        let mut out = BytesMut::new();
        c.take_ready(&mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn mget_in_key_order() {
        let positions = vec![vec![0, 2], vec![1]];
        let out = run(
            Merge::Mget { positions, n: 3 },
            &[b"*2\r\n$1\r\na\r\n_\r\n", b"*1\r\n$1\r\nb\r\n"],
            Proto::Resp2,
        );
        assert_eq!(out, "*3\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n");
    }

    #[test]
    fn a_failed_part_fails_only_its_keys() {
        let positions = vec![vec![0], vec![1]];
        let out = run(
            Merge::Mget { positions, n: 2 },
            &[b"*1\r\n$1\r\na\r\n", b"-ERR backend unavailable\r\n"],
            Proto::Resp3,
        );
        assert_eq!(out, "*2\r\n$1\r\na\r\n-ERR backend unavailable\r\n");
        let out = run(Merge::Sum, &[b":1\r\n", b"-ERR x\r\n"], Proto::Resp2);
        assert_eq!(out, "-ERR x\r\n");
    }

    #[test]
    fn sums_oks_lists_and_scan_cursors() {
        assert_eq!(
            run(Merge::Sum, &[b":1\r\n", b":2\r\n"], Proto::Resp2),
            ":3\r\n"
        );
        assert_eq!(
            run(Merge::AllOk, &[b"+OK\r\n", b"+OK\r\n"], Proto::Resp2),
            "+OK\r\n"
        );
        assert_eq!(
            run(
                Merge::Concat,
                &[b"*1\r\n$1\r\na\r\n", b"*0\r\n", b"*1\r\n$1\r\nb\r\n"],
                Proto::Resp2
            ),
            "*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        let scan =
            |node, nodes, reply: &[u8]| run(Merge::Scan { node, nodes }, &[reply], Proto::Resp2);
        // More on this node: its cursor, node in the low byte.
        assert_eq!(
            scan(1, 3, b"*2\r\n$2\r\n17\r\n*0\r\n"),
            format!("*2\r\n$4\r\n{}\r\n*0\r\n", 17 << 8 | 1)
        );
        // This node done: the next one, from its start.
        assert_eq!(
            scan(1, 3, b"*2\r\n$1\r\n0\r\n*1\r\n$1\r\nk\r\n"),
            "*2\r\n$1\r\n2\r\n*1\r\n$1\r\nk\r\n"
        );
        // The last node done: the scan is over.
        assert_eq!(
            scan(2, 3, b"*2\r\n$1\r\n0\r\n*0\r\n"),
            "*2\r\n$1\r\n0\r\n*0\r\n"
        );
    }

    #[test]
    fn groups_by_slot_in_order() {
        let g = by_slot([(1, 5), (2, 9), (3, 5)].into_iter());
        assert_eq!(g, vec![(5, vec![1, 3]), (9, vec![2])]);
    }
}
