//! Every command Redis knows, sent with too few arguments (and with one junk argument) through
//! the proxy: the proxy must give redis-server's own error, never panic or hang (Redis's own
//! test suite found a panic this way once: BZMPOP with no arguments).
mod common;
#[path = "common/frames.rs"]
mod frames;

use common::{Proxy, RedisServer};
use frames::Wire;

/// State-changing or connection-ending commands, tried elsewhere.
const SKIP: &[&str] = &[
    "shutdown",
    "quit",
    "reset",
    "multi",
    "monitor",
    "subscribe",
    "psubscribe",
    "ssubscribe",
    "sync",
    "psync",
    "failover",
    "replicaof",
    "slaveof",
    "debug",
    "hello",
    "auth",
    "client",
    "select",
    "swapdb",
    "flushall",
    "flushdb",
    "exec",
    "discard",
    "watch",
    "unwatch",
];

fn command_names(redis: &RedisServer) -> Vec<String> {
    let list = Wire::connect(redis.port()).cmd(&["COMMAND", "LIST"]);
    list.split("\r\n")
        .filter(|l| !l.starts_with('*') && !l.starts_with('$') && !l.is_empty())
        .map(|l| l.to_lowercase())
        .filter(|n| !SKIP.contains(&n.as_str()))
        .collect()
}

#[test]
fn short_commands_get_redis_errors() {
    let direct = RedisServer::start();
    let behind = RedisServer::start();
    let proxy = Proxy::start(behind.port(), &["--threads", "1"]);
    let names = command_names(&direct);
    assert!(names.len() > 150, "{} commands", names.len());
    let mut d = Wire::connect(direct.port());
    let mut p = Wire::connect(proxy.port());
    p.cmd(&["DBSIZE"]);
    let mut compared = 0;
    for name in &names {
        for args in [vec![name.as_str()], vec![name.as_str(), "x"]] {
            let want = d.cmd(&args);
            let got = p.cmd(&args);
            let refused = got.contains("is not supported by redis-proxy");
            if !refused
                && (want.starts_with("-ERR wrong number of arguments")
                    || want.starts_with("-ERR unknown subcommand"))
            {
                assert_eq!(got, want, "{args:?}");
                compared += 1;
            }
            assert_eq!(p.cmd(&["PING"]), "+PONG\r\n", "after {args:?}");
        }
    }
    assert!(compared > 150, "only {compared} arity errors compared");
}
