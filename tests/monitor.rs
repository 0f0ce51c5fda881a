//! MONITOR on a connection of its own: the client sees what reaches Redis, and its monitor
//! connection goes when it does.
mod common;
#[path = "common/frames.rs"]
mod frames;

use common::{wait_until, Proxy, RedisServer};
use frames::Wire;
use std::time::Duration;

fn monitors(redis: &RedisServer) -> usize {
    let list = Wire::connect(redis.port()).cmd(&["CLIENT", "LIST"]);
    list.matches("cmd=monitor").count()
}

#[test]
fn monitor_streams_and_ends_with_its_client() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    let mut m = Wire::connect(proxy.port());
    assert_eq!(m.cmd(&["MONITOR"]), "+OK\r\n");
    let mut b = Wire::connect(proxy.port());
    assert_eq!(b.cmd(&["SET", "watched-key", "v1"]), "+OK\r\n");
    let mut seen = String::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            seen = String::from_utf8_lossy(&m.frame()).into_owned();
            seen.contains("\"SET\" \"watched-key\" \"v1\"")
        }),
        "{seen}"
    );
    assert_eq!(monitors(&redis), 1);
    drop(m);
    assert!(
        wait_until(Duration::from_secs(5), || monitors(&redis) == 0),
        "the monitor connection outlived its client"
    );
}
