//! Read-your-writes: a write on a connection invalidates the cached key, so
//! the next GET on the same connection sees exactly what redis has.
//!
//! Every case: SET k via the proxy (or leave k missing), GET k twice through
//! the proxy (now cached), apply the write(s) through the SAME proxy
//! connection, then GET k through the proxy must equal a direct GET.
mod common;

use common::*;
use std::thread::sleep;
use std::time::Duration;

struct Rw {
    _redis: RedisServer,
    _proxy: Proxy,
    p: Raw,
    d: Raw,
}

impl Rw {
    /// `tracking`: default invalidation. Without it (`--invalidation off`)
    /// nothing but the proxy's own invalidation of written keys can make the
    /// GET right, so a missed key fails deterministically instead of racing
    /// an asynchronous tracking message.
    fn new(tracking: bool) -> Rw {
        let redis = RedisServer::start();
        let mode = if tracking { "tracking" } else { "off" };
        let proxy = Proxy::start(
            redis.port(),
            &["--threads", "2", "--expire", "1h", "--invalidation", mode],
        );
        let p = proxy.connect();
        let d = redis.connect();
        Rw {
            _redis: redis,
            _proxy: proxy,
            p,
            d,
        }
    }

    /// A command on the direct connection (setup of other keys).
    fn direct<T: AsRef<[u8]>>(&mut self, args: &[T]) -> Reply {
        let r = self.d.cmd(args);
        assert!(!r.is_error(), "direct setup command failed: {r:?}");
        r
    }

    /// Puts `k` into the proxy cache with `initial` (None: k missing).
    fn cache(&mut self, initial: Option<&str>) -> Reply {
        self.cache_with(initial, &[])
    }

    fn cache_with(&mut self, initial: Option<&str>, set_opts: &[&str]) -> Reply {
        let want = match initial {
            Some(v) => {
                let mut args = vec!["SET", "k", v];
                args.extend_from_slice(set_opts);
                assert_eq!(self.p.cmd(&args), Reply::ok());
                Reply::bulk(v)
            }
            None => Reply::nil(),
        };
        assert_eq!(self.p.cmd(&["GET", "k"]), want);
        assert_eq!(self.p.cmd(&["GET", "k"]), want);
        want
    }

    /// The write, through the proxy; must not be an error.
    fn write<T: AsRef<[u8]>>(&mut self, args: &[T]) -> Reply {
        let r = self.p.cmd(args);
        assert!(!r.is_error(), "write through proxy failed: {r:?}");
        r
    }

    /// GET k through the proxy == GET k on redis. With `changed`, also checks
    /// that the write really changed what GET returns (guards the test).
    fn check(&mut self, before: &Reply, changed: bool) {
        let got = self.p.cmd(&["GET", "k"]);
        let want = self.d.cmd(&["GET", "k"]);
        assert_eq!(got, want, "proxy GET after write differs from redis");
        if changed {
            assert_ne!(&want, before, "test bug: the write did not change k");
        }
        // And again (now possibly cached again).
        assert_eq!(self.p.cmd(&["GET", "k"]), want);
    }
}

/// One module per case, with a test per invalidation mode.
macro_rules! rw_case {
    ($name:ident, $initial:expr, |$rw:ident| $body:block) => {
        mod $name {
            use super::*;

            fn run(tracking: bool) {
                let mut $rw = Rw::new(tracking);
                let before = $rw.cache($initial);
                $body
                $rw.check(&before, true);
            }

            #[test]
            fn tracking() {
                run(true);
            }

            #[test]
            fn invalidation_off() {
                run(false);
            }
        }
    };
}

rw_case!(set, Some("old"), |rw| {
    rw.write(&["SET", "k", "new"]);
});
rw_case!(set_on_cached_missing_key, None, |rw| {
    rw.write(&["SET", "k", "new"]);
});
rw_case!(set_with_get_option, Some("old"), |rw| {
    assert_eq!(rw.write(&["SET", "k", "new", "GET"]), Reply::bulk("old"));
});
rw_case!(setex, Some("old"), |rw| {
    rw.write(&["SETEX", "k", "100", "new"]);
});
rw_case!(psetex, Some("old"), |rw| {
    rw.write(&["PSETEX", "k", "100000", "new"]);
});
rw_case!(setnx, None, |rw| {
    assert_eq!(rw.write(&["SETNX", "k", "new"]), Reply::Int(1));
});
rw_case!(setrange, Some("hello"), |rw| {
    rw.write(&["SETRANGE", "k", "1", "EY"]);
});
rw_case!(append, Some("old"), |rw| {
    rw.write(&["APPEND", "k", "-suffix"]);
});
rw_case!(incr, Some("10"), |rw| {
    assert_eq!(rw.write(&["INCR", "k"]), Reply::Int(11));
});
rw_case!(incrby, Some("10"), |rw| {
    assert_eq!(rw.write(&["INCRBY", "k", "5"]), Reply::Int(15));
});
rw_case!(incrbyfloat, Some("10"), |rw| {
    rw.write(&["INCRBYFLOAT", "k", "1.5"]);
});
rw_case!(decr, Some("10"), |rw| {
    assert_eq!(rw.write(&["DECR", "k"]), Reply::Int(9));
});
rw_case!(decrby, Some("10"), |rw| {
    assert_eq!(rw.write(&["DECRBY", "k", "3"]), Reply::Int(7));
});
rw_case!(getset, Some("old"), |rw| {
    assert_eq!(rw.write(&["GETSET", "k", "new"]), Reply::bulk("old"));
});
rw_case!(getdel, Some("old"), |rw| {
    assert_eq!(rw.write(&["GETDEL", "k"]), Reply::bulk("old"));
});
rw_case!(getex_with_px, Some("old"), |rw| {
    assert_eq!(rw.write(&["GETEX", "k", "PX", "100"]), Reply::bulk("old"));
    // The expiry is the write under test: wait it out (a minimum, so never too short).
    sleep(Duration::from_millis(250));
});
rw_case!(del, Some("old"), |rw| {
    assert_eq!(rw.write(&["DEL", "k"]), Reply::Int(1));
});
rw_case!(del_multiple_keys, Some("old"), |rw| {
    assert_eq!(rw.write(&["DEL", "other1", "k", "other2"]), Reply::Int(1));
});
rw_case!(unlink, Some("old"), |rw| {
    assert_eq!(rw.write(&["UNLINK", "other", "k"]), Reply::Int(1));
});
rw_case!(expire_zero_deletes, Some("old"), |rw| {
    rw.write(&["EXPIRE", "k", "0"]);
});
rw_case!(pexpire, Some("old"), |rw| {
    assert_eq!(rw.write(&["PEXPIRE", "k", "100"]), Reply::Int(1));
    // The expiry is the write under test: wait it out (a minimum, so never too short).
    sleep(Duration::from_millis(250));
});
rw_case!(pexpire_then_recached, Some("old"), |rw| {
    // Long enough for the two GETs below to come first, even on a slow machine.
    assert_eq!(rw.write(&["PEXPIRE", "k", "500"]), Reply::Int(1));
    // Re-cache while the key still lives, then let it expire in redis.
    assert_eq!(rw.p.cmd(&["GET", "k"]), Reply::bulk("old"));
    assert_eq!(rw.p.cmd(&["GET", "k"]), Reply::bulk("old"));
    // The expiry is the write under test: wait it out (a minimum, so never too short).
    sleep(Duration::from_millis(650));
});
rw_case!(expireat_past, Some("old"), |rw| {
    assert_eq!(rw.write(&["EXPIREAT", "k", "1"]), Reply::Int(1));
});
rw_case!(pexpireat_past, Some("old"), |rw| {
    assert_eq!(rw.write(&["PEXPIREAT", "k", "1000"]), Reply::Int(1));
});

mod persist {
    use super::*;

    // k has a short TTL when cached; PERSIST removes it, so k must still be
    // there after the original TTL would have passed.
    fn run(tracking: bool) {
        let mut rw = Rw::new(tracking);
        // Long enough for PERSIST to come first, even on a slow machine.
        let before = rw.cache_with(Some("old"), &["PX", "1000"]);
        assert_eq!(rw.write(&["PERSIST", "k"]), Reply::Int(1));
        // Past the TTL PERSIST removed is the point (a minimum, so never too short).
        sleep(Duration::from_millis(1200));
        assert_eq!(rw.d.cmd(&["GET", "k"]), Reply::bulk("old"));
        rw.check(&before, false);
    }

    #[test]
    fn tracking() {
        run(true);
    }

    #[test]
    fn invalidation_off() {
        run(false);
    }
}

rw_case!(rename_onto_cached_dest, Some("old"), |rw| {
    rw.direct(&["SET", "src", "new"]);
    rw.write(&["RENAME", "src", "k"]);
});
rw_case!(rename_cached_source, Some("old"), |rw| {
    rw.write(&["RENAME", "k", "dest"]);
    assert_eq!(rw.p.cmd(&["GET", "dest"]), Reply::bulk("old"));
});
rw_case!(renamenx_onto_cached_missing_dest, None, |rw| {
    rw.direct(&["SET", "src", "new"]);
    assert_eq!(rw.write(&["RENAMENX", "src", "k"]), Reply::Int(1));
});
rw_case!(renamenx_cached_source, Some("old"), |rw| {
    assert_eq!(rw.write(&["RENAMENX", "k", "dest"]), Reply::Int(1));
});
rw_case!(mset, Some("old"), |rw| {
    rw.write(&["MSET", "a", "1", "k", "new", "b", "2"]);
});
rw_case!(msetnx, None, |rw| {
    assert_eq!(rw.write(&["MSETNX", "a", "1", "k", "new"]), Reply::Int(1));
});
rw_case!(copy_replace_onto_cached_dest, Some("old"), |rw| {
    rw.direct(&["SET", "src", "new"]);
    assert_eq!(rw.write(&["COPY", "src", "k", "REPLACE"]), Reply::Int(1));
});
rw_case!(copy_onto_cached_missing_dest, None, |rw| {
    rw.direct(&["SET", "src", "new"]);
    assert_eq!(rw.write(&["COPY", "src", "k"]), Reply::Int(1));
});
rw_case!(move_to_other_db, Some("old"), |rw| {
    assert_eq!(rw.write(&["MOVE", "k", "1"]), Reply::Int(1));
});
rw_case!(setbit, Some("a"), |rw| {
    rw.write(&["SETBIT", "k", "1", "0"]);
});
rw_case!(bitfield, Some("a"), |rw| {
    rw.write(&["BITFIELD", "k", "SET", "u8", "0", "66"]);
});
rw_case!(bitop_dest, Some("old"), |rw| {
    rw.direct(&["SET", "src", "abc"]);
    rw.write(&["BITOP", "NOT", "k", "src"]);
});
rw_case!(restore_replace, Some("old"), |rw| {
    rw.direct(&["SET", "src", "restored-value"]);
    let dump = match rw.direct(&["DUMP", "src"]) {
        Reply::Bulk(Some(b)) => b,
        other => panic!("DUMP: {other:?}"),
    };
    rw.write(&[&b"RESTORE"[..], b"k", b"0", &dump, b"REPLACE"]);
});
rw_case!(sort_store_dest, Some("old"), |rw| {
    rw.direct(&["RPUSH", "list", "3", "1", "2"]);
    assert_eq!(rw.write(&["SORT", "list", "STORE", "k"]), Reply::Int(3));
});
rw_case!(sunionstore_overwrites_string_dest, Some("old"), |rw| {
    rw.direct(&["SADD", "s1", "a", "b"]);
    rw.direct(&["SADD", "s2", "c"]);
    assert_eq!(rw.write(&["SUNIONSTORE", "k", "s1", "s2"]), Reply::Int(3));
});
rw_case!(zunionstore_dest, Some("old"), |rw| {
    rw.direct(&["ZADD", "z", "1", "m"]);
    assert_eq!(rw.write(&["ZUNIONSTORE", "k", "1", "z"]), Reply::Int(1));
});
rw_case!(eval_with_declared_key, Some("old"), |rw| {
    rw.write(&[
        "EVAL",
        "return redis.call('SET', KEYS[1], ARGV[1])",
        "1",
        "k",
        "new-from-lua",
    ]);
});
rw_case!(eval_with_second_declared_key, Some("old"), |rw| {
    rw.write(&[
        "EVAL",
        "redis.call('SET', KEYS[2], ARGV[1]) return 1",
        "2",
        "other",
        "k",
        "new-from-lua",
    ]);
});
rw_case!(evalsha_with_declared_key, Some("old"), |rw| {
    let sha = rw
        .direct(&["SCRIPT", "LOAD", "return redis.call('DEL', KEYS[1])"])
        .as_str();
    assert_eq!(rw.write(&["EVALSHA", &sha, "1", "k"]), Reply::Int(1));
});
rw_case!(flushdb, Some("old"), |rw| {
    rw.write(&["FLUSHDB"]);
});
rw_case!(flushall, Some("old"), |rw| {
    rw.write(&["FLUSHALL"]);
});
rw_case!(lowercase_write_command, Some("old"), |rw| {
    rw.write(&["set", "k", "new"]);
});

// Writes that create k (cached as missing) with another type: any write
// must invalidate, not just string commands.
rw_case!(hset_creates_key, None, |rw| {
    rw.write(&["HSET", "k", "f", "v"]);
});
rw_case!(lpush_creates_key, None, |rw| {
    rw.write(&["LPUSH", "k", "x"]);
});
rw_case!(sadd_creates_key, None, |rw| {
    rw.write(&["SADD", "k", "x"]);
});
rw_case!(zadd_creates_key, None, |rw| {
    rw.write(&["ZADD", "k", "1", "x"]);
});
rw_case!(xadd_creates_key, None, |rw| {
    rw.write(&["XADD", "k", "*", "f", "v"]);
});
rw_case!(pfadd_creates_key, None, |rw| {
    rw.write(&["PFADD", "k", "a", "b"]);
});
rw_case!(geoadd_creates_key, None, |rw| {
    rw.write(&["GEOADD", "k", "13.361389", "38.115556", "palermo"]);
});
rw_case!(xgroup_create_mkstream, None, |rw| {
    rw.write(&["XGROUP", "CREATE", "k", "grp", "$", "MKSTREAM"]);
});
rw_case!(lmove_dest, None, |rw| {
    rw.direct(&["RPUSH", "src", "a"]);
    rw.write(&["LMOVE", "src", "k", "LEFT", "RIGHT"]);
});
rw_case!(rpoplpush_dest, None, |rw| {
    rw.direct(&["RPUSH", "src", "a"]);
    rw.write(&["RPOPLPUSH", "src", "k"]);
});
rw_case!(smove_dest, None, |rw| {
    rw.direct(&["SADD", "src", "a"]);
    assert_eq!(rw.write(&["SMOVE", "src", "k", "a"]), Reply::Int(1));
});
rw_case!(incr_on_cached_missing_key, None, |rw| {
    assert_eq!(rw.write(&["INCR", "k"]), Reply::Int(1));
});
rw_case!(append_on_cached_missing_key, None, |rw| {
    rw.write(&["APPEND", "k", "abc"]);
});
rw_case!(sinterstore_empty_result_deletes_dest, Some("old"), |rw| {
    rw.direct(&["SADD", "s1", "a"]);
    rw.direct(&["SADD", "s2", "b"]);
    assert_eq!(rw.write(&["SINTERSTORE", "k", "s1", "s2"]), Reply::Int(0));
});
rw_case!(zrangestore_dest, Some("old"), |rw| {
    rw.direct(&["ZADD", "z", "1", "m"]);
    assert_eq!(
        rw.write(&["ZRANGESTORE", "k", "z", "0", "-1"]),
        Reply::Int(1)
    );
});
rw_case!(georadius_store_dest, Some("old"), |rw| {
    rw.direct(&["GEOADD", "geo", "13.361389", "38.115556", "palermo"]);
    assert_eq!(
        rw.write(&["GEORADIUS", "geo", "15", "37", "200", "km", "STORE", "k"]),
        Reply::Int(1)
    );
});
rw_case!(georadiusbymember_storedist_dest, Some("old"), |rw| {
    rw.direct(&["GEOADD", "geo", "13.361389", "38.115556", "palermo"]);
    assert_eq!(
        rw.write(&[
            "GEORADIUSBYMEMBER",
            "geo",
            "palermo",
            "10",
            "km",
            "STOREDIST",
            "k"
        ]),
        Reply::Int(1)
    );
});
rw_case!(geosearchstore_dest, Some("old"), |rw| {
    rw.direct(&["GEOADD", "geo", "13.361389", "38.115556", "palermo"]);
    assert_eq!(
        rw.write(&[
            "GEOSEARCHSTORE",
            "k",
            "geo",
            "FROMLONLAT",
            "15",
            "37",
            "BYRADIUS",
            "200",
            "km"
        ]),
        Reply::Int(1)
    );
});
rw_case!(getex_then_set_keepttl, Some("old"), |rw| {
    rw.write(&["GETEX", "k", "PX", "5000"]);
    rw.write(&["SET", "k", "new", "KEEPTTL"]);
});
rw_case!(set_xx, Some("old"), |rw| {
    rw.write(&["SET", "k", "new", "XX"]);
});
rw_case!(mset_same_key_twice, Some("old"), |rw| {
    rw.write(&["MSET", "k", "first", "k", "second"]);
});
rw_case!(fcall_with_declared_key, Some("old"), |rw| {
    rw.direct(&[
        "FUNCTION",
        "LOAD",
        "#!lua name=testlib\nredis.register_function('setkey', function(keys, args) return redis.call('SET', keys[1], args[1]) end)",
    ]);
    rw.write(&["FCALL", "setkey", "1", "k", "from-function"]);
});
rw_case!(pipelined_write_then_get_same_batch, Some("old"), |rw| {
    let mut bytes = encode(&["SET", "k", "new"]);
    bytes.extend(encode(&["GET", "k"]));
    rw.p.send(&bytes);
    assert_eq!(rw.p.read_reply(), Reply::ok());
    assert_eq!(rw.p.read_reply(), Reply::bulk("new"));
});

fn pipelined_writes_then_gets(tracking: bool) {
    // Within one pipeline: GET (cached) / write / GET must see the write.
    let rw = &mut Rw::new(tracking);
    for k in ["a", "b", "c", "d"] {
        assert_eq!(rw.p.cmd(&["SET", k, "10"]), Reply::ok());
        assert_eq!(rw.p.cmd(&["GET", k]), Reply::bulk("10"));
        assert_eq!(rw.p.cmd(&["GET", k]), Reply::bulk("10"));
    }
    let script: Vec<(Vec<&str>, Reply)> = vec![
        (vec!["GET", "a"], Reply::bulk("10")),
        (vec!["SET", "a", "x"], Reply::ok()),
        (vec!["GET", "a"], Reply::bulk("x")),
        (vec!["GET", "b"], Reply::bulk("10")),
        (vec!["INCR", "b"], Reply::Int(11)),
        (vec!["GET", "b"], Reply::bulk("11")),
        (vec!["GET", "c"], Reply::bulk("10")),
        (vec!["DEL", "c"], Reply::Int(1)),
        (vec!["GET", "c"], Reply::nil()),
        (vec!["GET", "d"], Reply::bulk("10")),
        (vec!["MSET", "d", "m", "c", "n"], Reply::ok()),
        (vec!["GET", "d"], Reply::bulk("m")),
        (vec!["GET", "c"], Reply::bulk("n")),
        (vec!["APPEND", "a", "y"], Reply::Int(2)),
        (vec!["GET", "a"], Reply::bulk("xy")),
        (vec!["GET", "a"], Reply::bulk("xy")),
    ];
    let mut bytes = Vec::new();
    for (args, _) in &script {
        bytes.extend(encode(args));
    }
    rw.p.send(&bytes);
    for (i, (args, want)) in script.iter().enumerate() {
        assert_eq!(&rw.p.read_reply(), want, "reply #{i} to {args:?}");
    }
    for k in ["a", "b", "c", "d"] {
        assert_eq!(rw.p.cmd(&["GET", k]), rw.d.cmd(&["GET", k]), "key {k}");
    }
}

#[test]
fn pipelined_writes_then_gets_tracking() {
    pipelined_writes_then_gets(true);
}

#[test]
fn pipelined_writes_then_gets_invalidation_off() {
    pipelined_writes_then_gets(false);
}
