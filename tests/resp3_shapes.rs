//! Differential test of the RESP3 -> RESP2 conversion: the proxy's backend connection speaks
//! RESP3, its clients RESP2. For commands covering every reply shape, the bytes a RESP2 client
//! gets through the proxy must equal the bytes redis-server sends a direct RESP2 client, on
//! identical data.
//!
//! Each case resets the data (FLUSHALL and the same setup on a direct connection), runs the
//! command directly, resets again, and runs it through the proxy.
mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A RESP2 connection that returns each reply's exact bytes.
struct ByteConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl ByteConn {
    fn connect(port: u16) -> ByteConn {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        ByteConn {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, args: &[&str]) {
        self.stream.write_all(&encode(args)).expect("write");
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => panic!(
                "connection closed; unconsumed: {:?}",
                self.buf.escape_ascii().to_string()
            ),
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "read: {e}; unconsumed: {:?}",
                self.buf.escape_ascii().to_string()
            ),
        }
    }

    /// The length of the RESP2 reply at the start of `buf[pos..]`: Ok(None) if incomplete,
    /// Err if it is not RESP2.
    fn reply_len(buf: &[u8], pos: usize) -> Result<Option<usize>, String> {
        let Some(eol) = buf[pos..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = &buf[pos + 1..pos + eol];
        let next = pos + eol + 2;
        let num = || -> Result<i64, String> {
            std::str::from_utf8(line)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("bad number {:?}", line.escape_ascii().to_string()))
        };
        match buf[pos] {
            b'+' | b'-' => Ok(Some(next - pos)),
            b':' => num().map(|_| Some(next - pos)),
            b'$' => {
                let n = num()?;
                if n < 0 {
                    return Ok(Some(next - pos));
                }
                let end = next + n as usize + 2;
                Ok((buf.len() >= end).then_some(end - pos))
            }
            b'*' => {
                let n = num()?;
                let mut p = next;
                for _ in 0..n.max(0) {
                    match Self::reply_len(buf, p)? {
                        Some(len) => p += len,
                        None => return Ok(None),
                    }
                }
                Ok(Some(p - pos))
            }
            other => Err(format!(
                "not a RESP2 type byte {:?} in {:?}",
                other as char,
                buf[pos..].escape_ascii().to_string()
            )),
        }
    }

    /// The exact bytes of the next reply.
    fn read_reply(&mut self) -> Vec<u8> {
        loop {
            if !self.buf.is_empty() {
                match Self::reply_len(&self.buf, 0) {
                    Ok(Some(len)) => return self.buf.drain(..len).collect(),
                    Ok(None) => {}
                    Err(_) => {
                        // Not RESP2: hand back what arrived so the comparison shows it
                        // (after a moment for the rest of it; only the failure message needs
                        // it, so there is no condition to wait for).
                        std::thread::sleep(Duration::from_millis(50));
                        self.stream.set_nonblocking(true).unwrap();
                        let mut chunk = [0u8; 16 * 1024];
                        while let Ok(n) = self.stream.read(&mut chunk) {
                            if n == 0 {
                                break;
                            }
                            self.buf.extend_from_slice(&chunk[..n]);
                        }
                        self.stream.set_nonblocking(false).unwrap();
                        return std::mem::take(&mut self.buf);
                    }
                }
            }
            self.fill();
        }
    }

    fn call(&mut self, args: &[&str]) -> Vec<u8> {
        self.send(args);
        self.read_reply()
    }
}

/// Parses one RESP2 reply (already known complete) into a [`Reply`].
fn parse(bytes: &[u8]) -> Reply {
    fn go(b: &[u8], pos: &mut usize) -> Reply {
        let eol = *pos + b[*pos..].windows(2).position(|w| w == b"\r\n").unwrap();
        let line = std::str::from_utf8(&b[*pos + 1..eol]).unwrap().to_string();
        let kind = b[*pos];
        *pos = eol + 2;
        match kind {
            b'+' => Reply::Simple(line),
            b'-' => Reply::Error(line),
            b':' => Reply::Int(line.parse().unwrap()),
            b'$' => {
                let n: i64 = line.parse().unwrap();
                if n < 0 {
                    return Reply::Bulk(None);
                }
                let v = b[*pos..*pos + n as usize].to_vec();
                *pos += n as usize + 2;
                Reply::Bulk(Some(v))
            }
            b'*' => {
                let n: i64 = line.parse().unwrap();
                if n < 0 {
                    return Reply::Array(None);
                }
                Reply::Array(Some((0..n).map(|_| go(b, pos)).collect()))
            }
            other => panic!("not RESP2: {:?}", other as char),
        }
    }
    let mut pos = 0;
    go(bytes, &mut pos)
}

/// How two replies are compared.
#[derive(Clone, Copy, PartialEq)]
enum Cmp {
    /// Byte for byte.
    Exact,
    /// Byte for byte after sorting the elements of every array at this depth (0 = the reply
    /// itself): for hash-table iteration orders that may change with incremental rehashing.
    SortedAt(usize),
}

fn sort_at(r: &mut Reply, depth: usize) {
    if let Reply::Array(Some(items)) = r {
        if depth == 0 {
            items.sort_by_key(encode_reply);
        } else {
            for i in items {
                sort_at(i, depth - 1);
            }
        }
    }
}

fn normalize(bytes: &[u8], cmp: Cmp) -> Vec<u8> {
    match cmp {
        Cmp::Exact => bytes.to_vec(),
        Cmp::SortedAt(depth) => {
            let mut r = parse(bytes);
            sort_at(&mut r, depth);
            encode_reply(&r)
        }
    }
}

/// The same data for every case.
const SETUP: &[&[&str]] = &[
    &["HSET", "h", "f1", "v1", "f2", "v2", "f3", "v3"],
    &["HSET", "h1", "only", "onlyv"],
    &["ZADD", "z", "1", "a", "2.5", "b", "3", "c", "0.1", "d"],
    &["ZADD", "z2", "1", "x", "2", "y"],
    &["ZADD", "z1", "5", "only"],
    &["ZADD", "zi", "+inf", "top", "-inf", "bottom", "0", "zero"],
    &["SADD", "s", "m1", "m2", "m3"],
    &["SADD", "si", "3", "1", "2"],
    &["RPUSH", "l", "a", "b", "c", "d"],
    &["XADD", "st", "1-1", "f", "v"],
    &["XADD", "st", "2-1", "f2", "v2", "a", "b"],
    &["XADD", "se", "1-1", "a", "b"],
    &["XDEL", "se", "1-1"],
    &["XADD", "sg", "1-1", "f", "v"],
    &["XADD", "sg", "2-1", "f", "w"],
    &["XGROUP", "CREATE", "sg", "g", "0"],
    &["XGROUP", "CREATE", "sg", "idle", "$"],
    &[
        "XREADGROUP",
        "GROUP",
        "g",
        "c1",
        "COUNT",
        "1",
        "STREAMS",
        "sg",
        ">",
    ],
    // A pending entry deleted after delivery: its history shows the ID with a null body.
    &["XADD", "sd", "1-1", "f", "v"],
    &["XADD", "sd", "2-1", "f", "w"],
    &["XGROUP", "CREATE", "sd", "g", "0"],
    &["XREADGROUP", "GROUP", "g", "c1", "STREAMS", "sd", ">"],
    &["XDEL", "sd", "1-1"],
    &[
        "GEOADD",
        "g",
        "13.361389",
        "38.115556",
        "Palermo",
        "15.087269",
        "37.502669",
        "Catania",
    ],
    &["SET", "str", "hello"],
    &["SET", "n", "10"],
    &["SET", "f", "1.5"],
    &["SET", "k1", "ohmytext"],
    &["SET", "k2", "mynewtext"],
];

const EXACT: Cmp = Cmp::Exact;

/// (command, comparison).
fn cases() -> Vec<(Vec<&'static str>, Cmp)> {
    let c = |s: &'static str| s.split(' ').collect::<Vec<_>>();
    let mut v: Vec<(Vec<&str>, Cmp)> = vec![
        // Maps.
        (c("HGETALL h"), EXACT),
        (c("HGETALL missing"), EXACT),
        (c("CONFIG GET maxmemory"), EXACT),
        (c("CONFIG GET maxmemory-policy"), EXACT),
        (c("LCS k1 k2"), EXACT),
        (c("LCS k1 k2 LEN"), EXACT),
        (c("LCS k1 k2 IDX"), EXACT),
        (c("LCS k1 k2 IDX MINMATCHLEN 4 WITHMATCHLEN"), EXACT),
        (c("XINFO STREAM st"), EXACT),
        (c("XINFO STREAM se"), EXACT),
        (c("XINFO STREAM st FULL"), EXACT),
        (c("XINFO GROUPS sg"), EXACT),
        (c("COMMAND INFO get"), EXACT),
        (c("COMMAND INFO nosuchcommand"), EXACT),
        (c("COMMAND DOCS get"), EXACT),
        // Sorted sets: scores are doubles in RESP3, pairs nested.
        (c("ZRANGE z 0 -1"), EXACT),
        (c("ZRANGE z 0 -1 WITHSCORES"), EXACT),
        (c("ZRANGE z 0 -1 REV WITHSCORES"), EXACT),
        (c("ZRANGE z (0 (3 BYSCORE WITHSCORES"), EXACT),
        (c("ZRANGE zi 0 -1 WITHSCORES"), EXACT),
        (c("ZRANGE missing 0 -1 WITHSCORES"), EXACT),
        (c("ZRANGEBYSCORE z -inf +inf WITHSCORES"), EXACT),
        (c("ZRANGEBYSCORE z (1 3 WITHSCORES LIMIT 0 2"), EXACT),
        (c("ZREVRANGEBYSCORE z +inf -inf WITHSCORES"), EXACT),
        (c("ZREVRANGE z 0 -1 WITHSCORES"), EXACT),
        (c("ZRANGEBYLEX z2 - +"), EXACT),
        (c("ZPOPMIN z"), EXACT),
        (c("ZPOPMIN z 2"), EXACT),
        (c("ZPOPMAX z 3"), EXACT),
        (c("ZPOPMIN z 1"), EXACT),
        (c("ZPOPMIN missing"), EXACT),
        (c("ZPOPMIN missing 2"), EXACT),
        (c("ZRANDMEMBER z2 2 WITHSCORES"), EXACT),
        (c("ZRANDMEMBER z1 -3 WITHSCORES"), EXACT),
        (c("ZRANDMEMBER z1"), EXACT),
        (c("ZRANDMEMBER missing 2 WITHSCORES"), EXACT),
        (c("ZRANDMEMBER missing"), EXACT),
        (c("HRANDFIELD h1 -5 WITHVALUES"), EXACT),
        (c("HRANDFIELD h1 1 WITHVALUES"), EXACT),
        (c("HRANDFIELD h1 -2"), EXACT),
        (c("HRANDFIELD missing 2 WITHVALUES"), EXACT),
        (c("HRANDFIELD missing"), EXACT),
        (c("ZSCORE z b"), EXACT),
        (c("ZSCORE z d"), EXACT),
        (c("ZSCORE z nosuch"), EXACT),
        (c("ZSCORE zi top"), EXACT),
        (c("ZSCORE zi bottom"), EXACT),
        (c("ZMSCORE z a nosuch d"), EXACT),
        (c("ZMSCORE missing a"), EXACT),
        (c("ZINCRBY z 1.25 a"), EXACT),
        (c("ZINCRBY z 0.1 d"), EXACT),
        (c("ZADD z INCR 0.2 b"), EXACT),
        (c("ZADD z NX INCR 1 a"), EXACT),
        (c("ZRANK z c"), EXACT),
        (c("ZRANK z nosuch"), EXACT),
        // WITHSCORE (Redis 7.2+; an error before): a missing member is a null array.
        (c("ZRANK z c WITHSCORE"), EXACT),
        (c("ZRANK z nosuch WITHSCORE"), EXACT),
        (c("ZREVRANK z nosuch WITHSCORE"), EXACT),
        (c("ZRANK missing a WITHSCORE"), EXACT),
        (c("ZUNION 2 z z2 WITHSCORES"), EXACT),
        (c("ZINTER 2 z z WITHSCORES"), EXACT),
        (c("ZDIFF 2 z z2 WITHSCORES"), EXACT),
        (c("ZUNION 2 z z2"), EXACT),
        (c("ZRANGESTORE dst z 0 -1"), EXACT),
        (c("ZSCAN z 0"), EXACT),
        (c("ZMPOP 1 z MIN COUNT 2"), EXACT),
        (c("ZMPOP 2 missing z2 MAX"), EXACT),
        (c("ZMPOP 1 missing MAX"), EXACT),
        // Floats as strings.
        (c("INCRBYFLOAT f 0.1"), EXACT),
        (c("INCRBYFLOAT f 1e3"), EXACT),
        (c("HINCRBYFLOAT h1 num 0.5"), EXACT),
        // Sets.
        (c("SMEMBERS s"), Cmp::SortedAt(0)),
        (c("SMEMBERS si"), EXACT),
        (c("SMEMBERS missing"), EXACT),
        (c("SINTER s s"), Cmp::SortedAt(0)),
        (c("SUNION si s"), Cmp::SortedAt(0)),
        (c("SPOP missing 2"), EXACT),
        (c("SRANDMEMBER missing 3"), EXACT),
        (c("SMISMEMBER s m1 nosuch"), EXACT),
        (c("SSCAN si 0"), EXACT),
        // Streams.
        (c("XADD st 3-1 x y"), EXACT),
        (c("XRANGE st - +"), EXACT),
        (c("XRANGE st - + COUNT 1"), EXACT),
        (c("XREVRANGE st + -"), EXACT),
        (c("XRANGE missing - +"), EXACT),
        (c("XREAD COUNT 10 STREAMS st 0"), EXACT),
        (c("XREAD STREAMS st sg 0 0"), EXACT),
        (c("XREAD STREAMS st missing 0 0"), EXACT),
        (c("XREAD STREAMS missing 0"), EXACT),
        (c("XREAD STREAMS st $"), EXACT),
        (c("XREAD COUNT 1 STREAMS st 1-1"), EXACT),
        (c("XPENDING sg g"), EXACT),
        (c("XPENDING sg idle"), EXACT),
        (c("XCLAIM sg g c2 0 1-1 JUSTID"), EXACT),
        (c("XAUTOCLAIM sg g c2 0 0-0"), EXACT),
        (c("XLEN st"), EXACT),
        (c("XRANGE st - + COUNT 0"), EXACT),
        (c("XREVRANGE st + - COUNT 0"), EXACT),
        (c("XRANGE missing - + COUNT 0"), EXACT),
        (c("XPENDING sg g - + 0"), EXACT),
        (c("XREADGROUP GROUP g c1 STREAMS sd 0"), EXACT),
        (c("XREADGROUP GROUP g c1 COUNT 5 STREAMS sd >"), EXACT),
        // Lists.
        (c("LPOP missing 2"), EXACT),
        (c("LPOP missing"), EXACT),
        (c("RPOP l 2"), EXACT),
        (c("RPOP l 10"), EXACT),
        (c("LPOP l 0"), EXACT),
        (c("LMPOP 2 missing l LEFT COUNT 2"), EXACT),
        (c("LMPOP 1 missing LEFT"), EXACT),
        (c("LPOS l c"), EXACT),
        (c("LPOS l nosuch"), EXACT),
        (c("LPOS l a COUNT 0"), EXACT),
        (c("LRANGE l 0 -1"), EXACT),
        (c("SORT l ALPHA"), EXACT),
        (c("SORT l ALPHA GET nosuch_*"), EXACT),
        // Geo.
        (c("GEOPOS g Palermo nosuch Catania"), EXACT),
        (c("GEOPOS missing a"), EXACT),
        (c("GEODIST g Palermo Catania km"), EXACT),
        (c("GEODIST g Palermo nosuch"), EXACT),
        (c("GEOHASH g Palermo nosuch"), EXACT),
        (
            c("GEOSEARCH g FROMLONLAT 15 37 BYRADIUS 200 km ASC WITHCOORD WITHDIST WITHHASH"),
            EXACT,
        ),
        (
            c("GEORADIUS_RO g 15 37 200 km ASC WITHCOORD WITHDIST"),
            EXACT,
        ),
        // Keys and strings.
        (c("OBJECT ENCODING h"), EXACT),
        (c("OBJECT ENCODING z"), EXACT),
        (c("OBJECT ENCODING missing"), EXACT),
        (c("MEMORY USAGE str"), EXACT),
        (c("MEMORY USAGE missing"), EXACT),
        (c("TYPE z"), EXACT),
        (c("TYPE missing"), EXACT),
        (c("EXISTS h z missing"), EXACT),
        (c("SCAN 0 COUNT 1000"), Cmp::SortedAt(1)),
        (c("HSCAN h 0"), EXACT),
        (c("HMGET h f1 nosuch"), EXACT),
        (c("GET str"), EXACT),
        (c("GET missing"), EXACT),
        (c("GET h"), EXACT),
        (c("MGET str missing h n"), EXACT),
        (c("SET str x GET"), EXACT),
        (c("SET fresh x GET"), EXACT),
        (c("GETDEL missing"), EXACT),
        (c("BITFIELD bf SET u8 0 255 GET u8 0"), EXACT),
        (c("BITFIELD bf OVERFLOW FAIL INCRBY u2 0 5"), EXACT),
        (c("DBSIZE"), EXACT),
        (c("INFO keyspace"), EXACT),
        (c("LATENCY DOCTOR"), EXACT),
        (c("NOSUCHCOMMAND a b"), EXACT),
        (c("ZADD h 1 a"), EXACT),
    ];
    // Scripts: written out, since their bodies hold spaces.
    for body in [
        "return true",
        "return false",
        "return nil",
        "return {1,2,{3,'x'}}",
        "return {1,false,3}",
        "return {1,nil,3}",
        "return '3.14'",
        "return 3.99",
        "return redis.status_reply('FINE')",
        "return redis.error_reply('MY ERR')",
        "return redis.call('HGETALL', 'h')",
        "return redis.call('ZSCORE', 'z', 'd')",
        "return redis.call('ZRANGE', 'z', 0, -1, 'WITHSCORES')",
        "redis.setresp(3); return true",
        "redis.setresp(3); return false",
        "redis.setresp(3); return {true, false, 1}",
        "redis.setresp(3); return nil",
        "redis.setresp(3); return {double=0.1}",
        "redis.setresp(3); return {map={a=1}}",
        "redis.setresp(3); return {set={x=true}}",
        "redis.setresp(3); return {big_number='12345678901234567890'}",
        "redis.setresp(3); return {verbatim_string={format='txt', string='hi'}}",
        "redis.setresp(3); return redis.call('HGETALL', 'h')",
        "redis.setresp(3); return redis.call('ZSCORE', 'z', 'd')",
        "redis.setresp(3); return redis.call('ZRANGE', 'z', 0, -1, 'WITHSCORES')",
        "redis.setresp(3); return redis.call('SMEMBERS', 'si')",
        "redis.setresp(3); return redis.call('GET', 'missing')",
        "redis.setresp(3); return redis.call('LPOP', 'missing', 2)",
    ] {
        v.push((vec!["EVAL", body, "0"], EXACT));
    }
    v
}

fn reset(d: &mut ByteConn) {
    assert_eq!(d.call(&["FLUSHALL"]), b"+OK\r\n");
    for cmd in SETUP {
        d.send(cmd);
    }
    for cmd in SETUP {
        let r = d.read_reply();
        assert!(
            !r.starts_with(b"-"),
            "setup {cmd:?} failed: {:?}",
            r.escape_ascii().to_string()
        );
    }
}

#[test]
fn replies_match_redis_byte_for_byte() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut d = ByteConn::connect(redis.port());
    let mut p = ByteConn::connect(proxy.port());
    let cases = cases();
    let mut mismatches = Vec::new();
    for (cmd, cmp) in &cases {
        reset(&mut d);
        let want = d.call(cmd);
        reset(&mut d);
        let got = p.call(cmd);
        if normalize(&want, *cmp) != normalize(&got, *cmp) {
            mismatches.push(format!(
                "{}\n      redis: {}\n      proxy: {}",
                cmd.join(" "),
                want.escape_ascii(),
                got.escape_ascii()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} replies differ between redis-server (RESP2) and the proxy:\n  {}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n  ")
    );
}

/// A pipeline of the same cases on one connection (no reset between them) gives the same
/// bytes through the proxy as directly: conversions keep reply boundaries and order.
#[test]
fn pipelined_replies_match_redis() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut d = ByteConn::connect(redis.port());
    // Only commands that leave the data as they found it, so both runs see the same data.
    let reads: Vec<Vec<&str>> = cases()
        .into_iter()
        .map(|(c, _)| c)
        .filter(|c| {
            matches!(
                c[0],
                "HGETALL"
                    | "ZRANGE"
                    | "ZRANGEBYSCORE"
                    | "ZREVRANGE"
                    | "ZSCORE"
                    | "ZMSCORE"
                    | "XRANGE"
                    | "XREAD"
                    | "GEOPOS"
                    | "GEODIST"
                    | "LCS"
                    | "HRANDFIELD"
                    | "LRANGE"
                    | "HMGET"
                    | "MGET"
                    | "GET"
                    | "XINFO"
            )
        })
        .collect();
    let run = |conn: &mut ByteConn| -> Vec<Vec<u8>> {
        let mut bytes = Vec::new();
        for c in &reads {
            bytes.extend_from_slice(&encode(c));
        }
        conn.stream.write_all(&bytes).unwrap();
        reads.iter().map(|_| conn.read_reply()).collect()
    };
    reset(&mut d);
    let want = run(&mut d);
    let mut p = ByteConn::connect(proxy.port());
    let got = run(&mut p);
    let mismatches: Vec<String> = reads
        .iter()
        .zip(&want)
        .zip(&got)
        .filter(|((_, w), g)| w != g)
        .map(|((c, w), g)| {
            format!(
                "{}\n      redis: {}\n      proxy: {}",
                c.join(" "),
                w.escape_ascii(),
                g.escape_ascii()
            )
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} pipelined replies differ:\n  {}",
        mismatches.len(),
        reads.len(),
        mismatches.join("\n  ")
    );
}
