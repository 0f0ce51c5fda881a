//! Real client libraries at their DEFAULT settings against the proxy: redis-py 8 and node-redis 6
//! (both open with HELLO 3) and ioredis 5 (RESP2). `tests/clients/run.sh` installs them (a venv
//! under target/ and `npm ci` in tests/clients, under a lock, so these tests may run at once) and
//! runs one check script per library; see the scripts for the list of checks.
//!
//! Each library runs twice, every check both times: straight at redis-server (`DIRECT=1`, to
//! show that the checks themselves are right) and through the proxy.
mod common;

use common::clients::run_checks;
use common::*;

fn through_proxy(lib: &str) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    // Every check, SELECT per connection and CLIENT SETNAME/GETNAME included (no SKIP_PENDING:
    // it was needed only while the proxy refused those two).
    let env = [
        ("PROXY_PORT", proxy.port().to_string()),
        ("REDIS_PORT", redis.port().to_string()),
    ];
    run_checks(lib, &env);
    assert_eq!(
        proxy.connect().cmd(&["PING"]),
        Reply::pong(),
        "proxy still answers after the {lib} checks"
    );
}

fn against_redis_server(lib: &str) {
    let redis = RedisServer::start();
    let env = [
        ("REDIS_PORT", redis.port().to_string()),
        ("DIRECT", "1".to_string()),
    ];
    run_checks(lib, &env);
}

#[test]
fn redis_py_through_proxy() {
    through_proxy("redis-py");
}

#[test]
fn node_redis_through_proxy() {
    through_proxy("node-redis");
}

#[test]
fn ioredis_through_proxy() {
    through_proxy("ioredis");
}

#[test]
fn redis_py_against_redis_server() {
    against_redis_server("redis-py");
}

#[test]
fn node_redis_against_redis_server() {
    against_redis_server("node-redis");
}

#[test]
fn ioredis_against_redis_server() {
    against_redis_server("ioredis");
}
