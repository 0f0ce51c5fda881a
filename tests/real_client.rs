//! A real client library (the `redis` crate, sync API) through the proxy.
mod common;

use common::*;
use redis::Commands;
use std::collections::HashMap;

fn client(proxy: &Proxy) -> redis::Connection {
    let client = redis::Client::open(format!("redis://{}/", proxy.addr())).expect("client");
    let con = client
        .get_connection_with_timeout(std::time::Duration::from_secs(5))
        .expect("connect through proxy");
    con.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    con
}

#[test]
fn strings_counters_and_mget() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    let mut con = client(&proxy);

    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let () = con.set("greeting", "hello").unwrap();
    let v: String = con.get("greeting").unwrap();
    assert_eq!(v, "hello");
    let v: String = con.get("greeting").unwrap();
    assert_eq!(v, "hello");
    let missing: Option<String> = con.get("missing").unwrap();
    assert_eq!(missing, None);

    let () = con.set("greeting", "bye").unwrap();
    let v: String = con.get("greeting").unwrap();
    assert_eq!(v, "bye", "read-your-writes through a real client");

    let n: i64 = con.incr("counter", 1).unwrap();
    assert_eq!(n, 1);
    let n: i64 = con.incr("counter", 41).unwrap();
    assert_eq!(n, 42);
    let n: i64 = con.get("counter").unwrap();
    assert_eq!(n, 42);

    let () = con.mset(&[("m1", "a"), ("m2", "b")]).unwrap();
    let vals: Vec<Option<String>> = con.mget(&["m1", "missing", "m2"]).unwrap();
    assert_eq!(vals, vec![Some("a".into()), None, Some("b".into())]);

    let bytes: Vec<u8> = (0..=255u8).collect();
    let () = con.set("bin", &bytes[..]).unwrap();
    let back: Vec<u8> = con.get("bin").unwrap();
    assert_eq!(back, bytes);
    let back: Vec<u8> = con.get("bin").unwrap();
    assert_eq!(back, bytes);

    let deleted: i64 = con.del("greeting").unwrap();
    assert_eq!(deleted, 1);
    let gone: Option<String> = con.get("greeting").unwrap();
    assert_eq!(gone, None);

    // Error replies surface as errors, and the connection keeps working.
    let err = con.incr::<_, _, i64>("m1", 1).unwrap_err();
    assert_eq!(err.kind(), redis::ErrorKind::ResponseError, "{err}");
    let v: String = con.get("m1").unwrap();
    assert_eq!(v, "a");

    // Direct check on redis.
    let mut d = redis.connect();
    assert_eq!(d.cmd(&["GET", "counter"]), Reply::bulk("42"));
}

#[test]
fn hashes_and_lists() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    let mut con = client(&proxy);

    let () = con
        .hset_multiple("h", &[("f1", "v1"), ("f2", "v2")])
        .unwrap();
    let f1: String = con.hget("h", "f1").unwrap();
    assert_eq!(f1, "v1");
    let all: HashMap<String, String> = con.hgetall("h").unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all["f2"], "v2");
    let n: i64 = con.hincr("h", "n", 5).unwrap();
    assert_eq!(n, 5);

    let len: i64 = con.rpush("l", &["a", "b", "c"]).unwrap();
    assert_eq!(len, 3);
    let items: Vec<String> = con.lrange("l", 0, -1).unwrap();
    assert_eq!(items, vec!["a", "b", "c"]);
}

#[test]
fn pipelines() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    let mut con = client(&proxy);

    let (a, b, missing, n): (String, String, Option<String>, i64) = redis::pipe()
        .cmd("SET")
        .arg("pa")
        .arg("1")
        .ignore()
        .cmd("SET")
        .arg("pb")
        .arg("2")
        .ignore()
        .cmd("GET")
        .arg("pa")
        .cmd("GET")
        .arg("pb")
        .cmd("GET")
        .arg("pmissing")
        .cmd("INCR")
        .arg("pn")
        .query(&mut con)
        .unwrap();
    assert_eq!((a.as_str(), b.as_str(), missing, n), ("1", "2", None, 1));

    // A bigger pipeline of interleaved writes and (cached) reads.
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.cmd("SET")
            .arg(format!("pk:{}", i % 10))
            .arg(i)
            .ignore();
        pipe.cmd("GET").arg(format!("pk:{}", i % 10));
        pipe.cmd("GET").arg("pa");
    }
    let results: Vec<String> = pipe.query(&mut con).unwrap();
    assert_eq!(results.len(), 2000);
    for i in 0..1000 {
        assert_eq!(results[2 * i], i.to_string(), "GET after SET #{i}");
        assert_eq!(results[2 * i + 1], "1");
    }
}
