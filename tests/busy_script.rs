//! A long script holds the shard's shared connection: the other clients get Redis's -BUSY at
//! once (not a timeout, and no reset), and SCRIPT KILL / FUNCTION KILL reach Redis.
mod common;
#[path = "common/frames.rs"]
mod frames;

use common::{wait_until, Proxy, RedisServer};
use frames::Wire;
use std::time::{Duration, Instant};

const BUSY: &str =
    "-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n";

#[test]
fn script_kill_reaches_redis_and_others_get_busy() {
    let redis = RedisServer::start_with(&["--busy-reply-threshold", "300"]);
    let proxy = Proxy::start(redis.port(), &["--threads", "1", "--backend-timeout", "1s"]);
    let mut runner = Wire::connect(proxy.port());
    let mut other = Wire::connect(proxy.port());
    assert_eq!(other.cmd(&["SET", "k", "v"]), "+OK\r\n");
    runner.send(&["EVAL", "while true do end", "0"]);
    assert!(wait_until(Duration::from_secs(5), || {
        Wire::connect(redis.port())
            .cmd(&["PING"])
            .starts_with("-BUSY")
    }));
    // Others get -BUSY promptly once Redis answers it, the backend timeout notwithstanding.
    let mut last = String::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            last = other.cmd(&["INCR", "n"]);
            last == BUSY
        }),
        "last reply {last:?}"
    );
    let start = Instant::now();
    assert_eq!(other.cmd(&["INCR", "n"]), BUSY);
    // PING, answered by the proxy, says so too once it knows.
    assert!(wait_until(Duration::from_secs(5), || other.cmd(&["PING"]) == BUSY));
    assert!(start.elapsed() < Duration::from_millis(500));
    // Well past --backend-timeout: still busy, not reset.
    std::thread::sleep(Duration::from_millis(1500)); // the thing under test: time passing
    assert_eq!(other.cmd(&["INCR", "n"]), BUSY);
    assert_eq!(other.cmd(&["SCRIPT", "KILL"]), "+OK\r\n");
    let killed = String::from_utf8_lossy(&runner.frame()).into_owned();
    assert!(
        killed.starts_with("-ERR") && killed.contains("killed"),
        "{killed}"
    );
    // Service is back, and the INCRs that got -BUSY never ran.
    assert_eq!(other.cmd(&["INCR", "n"]), ":1\r\n");
}

#[test]
fn function_kill_reaches_redis() {
    let redis = RedisServer::start_with(&["--busy-reply-threshold", "300"]);
    let proxy = Proxy::start(redis.port(), &["--threads", "1", "--backend-timeout", "1s"]);
    let mut p = Wire::connect(proxy.port());
    let lib = "#!lua name=spin\nredis.register_function('spin', function() while true do end end)";
    assert_eq!(p.cmd(&["FUNCTION", "LOAD", lib]), "$4\r\nspin\r\n");
    let mut runner = Wire::connect(proxy.port());
    runner.send(&["FCALL", "spin", "0"]);
    let mut last = String::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            last = p.cmd(&["FUNCTION", "KILL"]);
            last == "+OK\r\n"
        }),
        "{last}"
    );
    let killed = String::from_utf8_lossy(&runner.frame()).into_owned();
    assert!(
        killed.starts_with("-ERR") && killed.contains("killed"),
        "{killed}"
    );
    assert_eq!(p.cmd(&["PING"]), "+PONG\r\n");
    assert!(wait_until(Duration::from_secs(5), || p.cmd(&["GET", "x"]) == "$-1\r\n"));
}
