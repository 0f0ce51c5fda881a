//! The dispatch table: command name -> what the proxy does with it.
//!
//! Every command redis-server flags as a write must appear here as a write (or be refused):
//! `tests/command_table.rs` checks this against the live `COMMAND` output of a real server.
//! Commands missing from the table are treated as writes of all their arguments: an unknown
//! (e.g. module) command can then cost a cache entry, but never serve a stale one.

use crate::pubsub::Class as PubSub;
use crate::resp::convert::Shape;
use crate::resp::request::Args;

/// Which arguments name keys that a write modifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// Arguments `first..=last` every `step`; a negative `last` counts from the end (-1 = last).
    Range { first: u8, last: i8, step: u8 },
    /// Keys are found by keywords or counts (SORT .. STORE, MIGRATE, LMPOP): every argument
    /// after the name is invalidated, which is always safe.
    AllArgs,
    /// EVAL-style: `numkeys` at argument 2, keys after it.
    Script,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `GET key`: served from the cache.
    Get,
    /// `MGET key...`: each key from the cache, the missing ones fetched in one command.
    Mget,
    /// Forwarded; modifies no key.
    Read,
    /// Forwarded after the keys are dropped from this shard's cache.
    Write(Keys),
    /// FLUSHALL: the cache is emptied, then the command is forwarded.
    Flush,
    /// FLUSHDB: the db's entries are dropped, then the command is forwarded.
    FlushDb,
    /// SWAPDB: forwarded; every shard's cache is dropped before the reply reaches the client.
    Swapdb,
    Ping,
    Echo,
    Quit,
    /// Client authentication, answered by the proxy (--requirepass).
    Auth,
    /// `HELLO [2]` answered by the proxy; clients always speak RESP2 to it.
    Hello,
    /// `SELECT db`: accepted for the backend's own db (clients often send it), else refused.
    Select,
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
    /// Blocks the connection until its timeout: runs on a dedicated connection.
    Blocking,
    /// CLIENT subcommands: answered by the proxy for its own clients (a few forwarded).
    Client,
    Reset,
    /// MONITOR: a connection of its own streams Redis's feed to the client.
    Monitor,
    /// INFO: Redis's sections plus the proxy's own (`observe/info.rs`).
    Info,
    /// (P|S)SUBSCRIBE: answered by the proxy, which subscribes at Redis once per shard.
    Subscribe(crate::pubsub::Class),
    /// (P|S)UNSUBSCRIBE.
    Unsubscribe(crate::pubsub::Class),
    /// Holds per-connection server state: cannot share the pipelined backend connection.
    Refused(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    pub kind: Kind,
    pub shape: Shape,
}

const fn w(first: u8, last: i8, step: u8) -> Kind {
    Kind::Write(Keys::Range { first, last, step })
}
const W1: Kind = w(1, 1, 1);
const WALL: Kind = Kind::Write(Keys::AllArgs);
const STATE: &str = "it holds per-connection server state";
const BLOCK: &str = "it blocks the connection";
const ADMIN: &str = "it would act on the proxy's shared backend connection";

/// Classifies a command by its name (any case) and, where it matters, its arguments.
pub fn classify(args: &Args) -> Class {
    let mut upper = [0u8; 24];
    let name = args.get(0);
    if name.len() > upper.len() {
        return Class {
            kind: WALL,
            shape: Shape::Plain,
        };
    }
    for (d, s) in upper.iter_mut().zip(name) {
        *d = s.to_ascii_uppercase();
    }
    let name = &upper[..name.len()];
    let kind = kind_of(name, args);
    let shape = shape_of(name, args);
    Class { kind, shape }
}

/// The kind of a command from its upper-case name alone (argument-dependent cases aside).
pub fn kind_of_name(name: &[u8]) -> Kind {
    table(name)
}

fn kind_of(name: &[u8], args: &Args) -> Kind {
    match name {
        b"GET" if args.len() == 2 => Kind::Get,
        b"GET" => Kind::Read,
        b"MGET" if args.len() >= 2 => Kind::Mget,
        b"PING" if args.len() <= 2 => Kind::Ping,
        b"ECHO" if args.len() == 2 => Kind::Echo,
        b"XREAD" | b"XREADGROUP" if has_option(args, b"BLOCK") => Kind::Blocking,
        _ => table(name),
    }
}

fn has_word(args: &Args, word: &[u8]) -> bool {
    args.iter().skip(1).any(|a| a.eq_ignore_ascii_case(word))
}

/// An XREAD-style option: only before `STREAMS` (a stream may well be named "block").
fn has_option(args: &Args, word: &[u8]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|a| !a.eq_ignore_ascii_case(b"STREAMS"))
        .any(|a| a.eq_ignore_ascii_case(word))
}

fn shape_of(name: &[u8], args: &Args) -> Shape {
    match name {
        b"LPOP" | b"RPOP" if args.len() >= 3 => Shape::NullArray,
        b"LMPOP" | b"ZMPOP" | b"GEOPOS" | b"XRANGE" | b"XREVRANGE" => Shape::NullArray,
        // A blocking pop that times out answers a null array (BRPOPLPUSH, BLMOVE: a null bulk).
        b"BLPOP" | b"BRPOP" | b"BLMPOP" | b"BZPOPMIN" | b"BZPOPMAX" | b"BZMPOP" => Shape::NullArray,
        b"XPENDING" if args.len() == 3 => Shape::XPending,
        // Redis 7.2+: `[rank, score]`, or a null array for a missing member.
        b"ZRANK" | b"ZREVRANK" if has_word(args, b"WITHSCORE") => Shape::NullArray,
        b"XREAD" | b"XREADGROUP" => Shape::StreamMap,
        b"ZRANGE" | b"ZRANGEBYSCORE" | b"ZREVRANGEBYSCORE" | b"ZREVRANGE" | b"ZRANGEBYLEX"
        | b"ZREVRANGEBYLEX" | b"ZPOPMIN" | b"ZPOPMAX" | b"ZRANDMEMBER" | b"ZUNION" | b"ZINTER"
        | b"ZDIFF" | b"HRANDFIELD" => Shape::FlattenPairs,
        _ => Shape::Plain,
    }
}

#[rustfmt::skip]
fn table(name: &[u8]) -> Kind {
    match name {
        // Answered by the proxy itself.
        b"PING" => Kind::Read, // PING with too many arguments: Redis's arity error.
        b"ECHO" => Kind::Read,
        b"QUIT" => Kind::Quit,
        b"AUTH" => Kind::Auth,
        b"HELLO" => Kind::Hello,
        b"SELECT" => Kind::Select,
        b"INFO" => Kind::Info,
        b"GET" => Kind::Read,
        b"MGET" => Kind::Read,

        // String writes.
        b"SET" | b"SETNX" | b"SETEX" | b"PSETEX" | b"APPEND" | b"SETRANGE" | b"SETBIT"
        | b"INCR" | b"INCRBY" | b"INCRBYFLOAT" | b"DECR" | b"DECRBY" | b"GETSET" | b"GETDEL"
        | b"GETEX" | b"BITFIELD" | b"PFADD" | b"RESTORE" | b"RESTORE-ASKING" | b"MOVE" => W1,
        b"MSET" | b"MSETNX" => w(1, -1, 2),
        b"DEL" | b"UNLINK" | b"PFMERGE" | b"PFCOUNT" => w(1, -1, 1),
        b"BITOP" => w(2, -1, 1),
        b"PFDEBUG" => w(2, 2, 1),
        b"RENAME" | b"RENAMENX" | b"COPY" | b"SMOVE" | b"LMOVE" | b"RPOPLPUSH"
        | b"ZRANGESTORE" | b"GEOSEARCHSTORE" => w(1, 2, 1),
        // Expiry changes the key's lifetime, so the cached entry's too.
        b"EXPIRE" | b"PEXPIRE" | b"EXPIREAT" | b"PEXPIREAT" | b"PERSIST" => W1,

        // Writes to other types: a cached GET of such a key holds a WRONGTYPE error or a nil
        // that the write turns stale.
        b"HSET" | b"HSETNX" | b"HMSET" | b"HDEL" | b"HINCRBY" | b"HINCRBYFLOAT"
        | b"LPUSH" | b"LPUSHX" | b"RPUSH" | b"RPUSHX" | b"LPOP" | b"RPOP" | b"LREM" | b"LSET"
        | b"LTRIM" | b"LINSERT"
        | b"SADD" | b"SREM" | b"SPOP"
        | b"ZADD" | b"ZINCRBY" | b"ZREM" | b"ZREMRANGEBYLEX" | b"ZREMRANGEBYRANK"
        | b"ZREMRANGEBYSCORE" | b"ZPOPMIN" | b"ZPOPMAX" | b"ZUNIONSTORE" | b"ZINTERSTORE"
        | b"ZDIFFSTORE" | b"GEOADD"
        | b"XADD" | b"XDEL" | b"XTRIM" | b"XACK" | b"XCLAIM" | b"XAUTOCLAIM" | b"XSETID" => W1,
        b"SINTERSTORE" | b"SUNIONSTORE" | b"SDIFFSTORE" => w(1, -1, 1),
        b"SORT" | b"GEORADIUS" | b"GEORADIUSBYMEMBER" | b"MIGRATE" | b"LMPOP" | b"ZMPOP"
        | b"XGROUP" | b"XREADGROUP" => WALL,
        b"EVAL" | b"EVALSHA" | b"FCALL" => Kind::Write(Keys::Script),
        b"FLUSHALL" => Kind::Flush,
        b"FLUSHDB" => Kind::FlushDb,
        b"SWAPDB" => Kind::Swapdb,

        // Reads and server-wide commands that modify no key.
        b"STRLEN" | b"GETRANGE" | b"SUBSTR" | b"GETBIT" | b"BITCOUNT" | b"BITPOS" | b"LCS"
        | b"EXISTS" | b"TYPE" | b"TTL" | b"PTTL" | b"EXPIRETIME" | b"PEXPIRETIME" | b"TOUCH"
        | b"DUMP" | b"KEYS" | b"SCAN" | b"RANDOMKEY" | b"DBSIZE"
        | b"HGET" | b"HMGET" | b"HGETALL" | b"HKEYS" | b"HVALS" | b"HLEN" | b"HEXISTS"
        | b"HSTRLEN" | b"HSCAN" | b"HRANDFIELD"
        | b"LLEN" | b"LRANGE" | b"LINDEX" | b"LPOS"
        | b"SMEMBERS" | b"SISMEMBER" | b"SMISMEMBER" | b"SCARD" | b"SINTER" | b"SUNION"
        | b"SDIFF" | b"SINTERCARD" | b"SRANDMEMBER" | b"SSCAN"
        | b"ZRANGE" | b"ZRANGEBYSCORE" | b"ZREVRANGEBYSCORE" | b"ZREVRANGE" | b"ZRANGEBYLEX"
        | b"ZREVRANGEBYLEX" | b"ZCARD" | b"ZCOUNT" | b"ZLEXCOUNT" | b"ZSCORE" | b"ZMSCORE"
        | b"ZRANK" | b"ZREVRANK" | b"ZRANDMEMBER" | b"ZUNION" | b"ZINTER" | b"ZDIFF"
        | b"ZINTERCARD" | b"ZSCAN"
        | b"GEOPOS" | b"GEODIST" | b"GEOHASH" | b"GEOSEARCH" | b"GEORADIUS_RO"
        | b"GEORADIUSBYMEMBER_RO"
        | b"XRANGE" | b"XREVRANGE" | b"XLEN" | b"XREAD" | b"XINFO" | b"XPENDING"
        | b"SORT_RO" | b"BITFIELD_RO" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL_RO"
        | b"TIME" | b"LASTSAVE" | b"LOLWUT" | b"COMMAND" | b"MEMORY" | b"LATENCY"
        | b"SLOWLOG" | b"CONFIG" | b"SCRIPT" | b"FUNCTION" | b"PUBLISH" | b"SPUBLISH"
        | b"PUBSUB" | b"ROLE" | b"SAVE" | b"BGSAVE" | b"BGREWRITEAOF" | b"ACL" | b"CLUSTER"
        | b"OBJECT" => Kind::Read,

        // Per-connection state: would leak into every client sharing the backend connection.
        b"MULTI" => Kind::Multi,
        b"EXEC" => Kind::Exec,
        b"DISCARD" => Kind::Discard,
        b"WATCH" => Kind::Watch,
        b"UNWATCH" => Kind::Unwatch,
        b"CLIENT" => Kind::Client,
        b"RESET" => Kind::Reset,
        b"READONLY" | b"READWRITE" | b"ASKING" => Kind::Refused(STATE),
        b"SUBSCRIBE" => Kind::Subscribe(PubSub::Channel),
        b"PSUBSCRIBE" => Kind::Subscribe(PubSub::Pattern),
        b"SSUBSCRIBE" => Kind::Subscribe(PubSub::Shard),
        b"UNSUBSCRIBE" => Kind::Unsubscribe(PubSub::Channel),
        b"PUNSUBSCRIBE" => Kind::Unsubscribe(PubSub::Pattern),
        b"SUNSUBSCRIBE" => Kind::Unsubscribe(PubSub::Shard),
        b"SYNC" | b"PSYNC" | b"REPLCONF" => Kind::Refused(STATE),
        b"MONITOR" => Kind::Monitor,
        b"BLPOP" | b"BRPOP" | b"BRPOPLPUSH" | b"BLMOVE" | b"BLMPOP" | b"BZPOPMIN" | b"BZPOPMAX"
        | b"BZMPOP" | b"WAIT" | b"WAITAOF" => Kind::Blocking,
        b"DEBUG" => Kind::Refused(BLOCK),
        b"SHUTDOWN" | b"FAILOVER" | b"REPLICAOF" | b"SLAVEOF" => Kind::Refused(ADMIN),

        _ => WALL,
    }
}

/// How long a blocking command may block, in ms: `None` for ever (a timeout of 0). A timeout
/// that does not parse is refused by Redis at once, so it counts as no block.
pub fn block_timeout_ms(args: &Args) -> Option<u64> {
    let name = args.get(0).to_ascii_uppercase();
    let at = |i: usize| args.iter().nth(i);
    let (arg, seconds) = match &name[..] {
        b"BLMPOP" | b"BZMPOP" => (at(1), true),
        b"WAIT" => (at(2), false),
        b"WAITAOF" => (at(3), false),
        b"XREAD" | b"XREADGROUP" => {
            let block = args.iter().position(|a| a.eq_ignore_ascii_case(b"BLOCK"));
            (block.and_then(|i| at(i + 1)), false)
        }
        _ => (args.iter().last(), true),
    };
    // Missing or not a number: Redis refuses the command at once, so it blocks nothing.
    let Some(v) = arg
        .and_then(|a| std::str::from_utf8(a).ok())
        .and_then(|a| a.parse::<f64>().ok())
    else {
        return Some(0);
    };
    if v == 0.0 {
        return None;
    }
    let ms = if seconds { v * 1000.0 } else { v };
    Some(ms.clamp(0.0, 1e12) as u64)
}

/// The key arguments a write command modifies, as indices into its arguments.
pub fn write_keys(keys: Keys, argc: usize) -> impl Iterator<Item = usize> {
    let (first, last, step) = match keys {
        Keys::Range { first, last, step } => {
            let last = if last < 0 {
                argc as isize + last as isize
            } else {
                last as isize
            };
            (first as usize, last.max(0) as usize, step as usize)
        }
        Keys::AllArgs => (1, argc.saturating_sub(1), 1),
        Keys::Script => (1, 0, 1), // resolved by the caller with `script_keys`
    };
    let last = last.min(argc.saturating_sub(1));
    (first..=last)
        .step_by(step.max(1))
        .filter(move |&i| i >= 1 && i < argc)
}

/// Keys declared by an EVAL/EVALSHA/FCALL: `numkeys` at argument 2. `None` if `numkeys` is
/// not a number or exceeds the arguments (Redis then refuses the command itself).
pub fn script_keys(args: &Args) -> Option<std::ops::Range<usize>> {
    let n: usize = std::str::from_utf8(args.iter().nth(2)?)
        .ok()?
        .parse()
        .ok()?;
    let end = n.checked_add(3)?;
    (end <= args.len()).then_some(3..end)
}

/// An integer argument as redis-server reads one (`string2ll`): optional `-`, digits, no
/// leading zero, no sign on zero, no blanks, within i64.
pub fn redis_int(arg: &[u8]) -> Option<i64> {
    let (neg, digits) = match arg.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, arg),
    };
    match digits {
        [b'0'] if !neg => return Some(0),
        [b'1'..=b'9', rest @ ..] if rest.iter().all(u8::is_ascii_digit) => {}
        _ => return None,
    }
    let mut v: i64 = 0;
    for &d in digits {
        let d = (d - b'0') as i64;
        v = v.checked_mul(10)?;
        v = if neg {
            v.checked_sub(d)?
        } else {
            v.checked_add(d)?
        };
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::request::{RequestScanner, Scan};

    fn class(line: &str) -> Class {
        let input = format!("{line}\r\n");
        let mut sc = RequestScanner::new();
        assert!(matches!(sc.scan(input.as_bytes()), Scan::Command { .. }));
        classify(&sc.args(input.as_bytes()))
    }

    fn keys(line: &str) -> Vec<String> {
        let input = format!("{line}\r\n");
        let mut sc = RequestScanner::new();
        sc.scan(input.as_bytes());
        let args = sc.args(input.as_bytes());
        match classify(&args).kind {
            Kind::Write(Keys::Script) => script_keys(&args)
                .unwrap()
                .map(|i| String::from_utf8(args.get(i).to_vec()).unwrap())
                .collect(),
            Kind::Write(k) => write_keys(k, args.len())
                .map(|i| String::from_utf8(args.get(i).to_vec()).unwrap())
                .collect(),
            other => panic!("{line}: not a write: {other:?}"),
        }
    }

    #[test]
    fn gets_are_cacheable_only_with_one_key() {
        assert_eq!(class("get k").kind, Kind::Get);
        assert_eq!(class("GET a b").kind, Kind::Read);
        assert_eq!(class("mget a b").kind, Kind::Mget);
    }

    /// GETSET, GETDEL and GETEX read *and* write: a cache that treats them as reads lies.
    #[test]
    fn read_modify_commands_are_writes() {
        for c in [
            "getset k v",
            "getdel k",
            "getex k ex 1",
            "incr k",
            "append k v",
            "setrange k 0 v",
        ] {
            assert_eq!(keys(c), vec!["k"], "{c}");
        }
    }

    #[test]
    fn key_positions() {
        assert_eq!(keys("set k v"), ["k"]);
        assert_eq!(keys("del a b c"), ["a", "b", "c"]);
        assert_eq!(keys("mset a 1 b 2"), ["a", "b"]);
        assert_eq!(keys("msetnx a 1 b 2"), ["a", "b"]);
        assert_eq!(keys("rename a b"), ["a", "b"]);
        assert_eq!(keys("copy a b replace"), ["a", "b"]);
        assert_eq!(keys("bitop and d s1 s2"), ["d", "s1", "s2"]);
        assert_eq!(keys("expire k 10"), ["k"]);
        assert_eq!(keys("sort s store d"), ["s", "store", "d"]);
        assert_eq!(keys("eval x 2 a b c"), ["a", "b"]);
        assert_eq!(keys("sunionstore d a"), ["d", "a"]);
        assert_eq!(keys("set"), Vec::<String>::new());
        assert_eq!(keys("frobnicate a b"), ["a", "b"]);
    }

    #[test]
    fn stateful_commands_are_refused() {
        for c in ["sync", "psync", "readonly"] {
            assert!(matches!(class(c).kind, Kind::Refused(_)), "{c}");
        }
        for c in [
            "blpop k 0",
            "xread block 0 streams s 0",
            "wait 0 0",
            "bzmpop 1 1 z min",
        ] {
            assert_eq!(class(c).kind, Kind::Blocking, "{c}");
        }
        assert_eq!(class("multi").kind, Kind::Multi);
        assert_eq!(class("watch k").kind, Kind::Watch);
        assert_eq!(class("xread count 1 streams s 0").kind, Kind::Read);
        assert_eq!(class("xread streams block 0").kind, Kind::Read);
        assert_eq!(class("select 0").kind, Kind::Select);
        assert_eq!(class("swapdb 0 1").kind, Kind::Swapdb);
        assert_eq!(class("flushdb").kind, Kind::FlushDb);
    }

    #[test]
    fn local_commands() {
        assert_eq!(class("ping").kind, Kind::Ping);
        assert_eq!(class("PING hi").kind, Kind::Ping);
        assert_eq!(class("ping a b").kind, Kind::Read);
        assert_eq!(class("echo x").kind, Kind::Echo);
        assert_eq!(class("quit").kind, Kind::Quit);
        assert_eq!(class("flushall").kind, Kind::Flush);
    }

    #[test]
    fn block_timeouts() {
        let t = |line: &str| {
            let input = format!("{line}\r\n");
            let mut sc = RequestScanner::new();
            sc.scan(input.as_bytes());
            block_timeout_ms(&sc.args(input.as_bytes()))
        };
        assert_eq!(t("blpop a b 1.5"), Some(1500));
        assert_eq!(t("blpop a 0"), None);
        assert_eq!(t("blmpop 2 1 l left"), Some(2000));
        assert_eq!(t("xread count 1 block 250 streams s $"), Some(250));
        assert_eq!(t("wait 1 100"), Some(100));
        assert_eq!(t("waitaof 0 1 0"), None);
        assert_eq!(t("blpop a x"), Some(0));
        // Found by Redis's own suite: too few arguments panicked (BZMPOP, WAIT, WAITAOF).
        for short in [
            "bzmpop",
            "blmpop",
            "wait",
            "wait 1",
            "waitaof 1 1",
            "xread block",
            "blpop",
        ] {
            assert_eq!(t(short), Some(0), "{short}");
        }
    }

    #[test]
    fn integers_as_redis_reads_them() {
        assert_eq!(redis_int(b"0"), Some(0));
        assert_eq!(redis_int(b"15"), Some(15));
        assert_eq!(redis_int(b"-3"), Some(-3));
        assert_eq!(redis_int(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            "00",
            "-0",
            "+1",
            " 1",
            "1 ",
            "",
            "-",
            "0x1",
            "9223372036854775808",
            "01",
        ] {
            assert_eq!(redis_int(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn shapes() {
        assert_eq!(class("zrange z 0 -1 withscores").shape, Shape::FlattenPairs);
        assert_eq!(class("lpop l 2").shape, Shape::NullArray);
        assert_eq!(class("lpop l").shape, Shape::Plain);
        assert_eq!(class("xread streams s 0").shape, Shape::StreamMap);
    }
}
