//! INFO through the proxy: Redis's sections plus `# Proxy`; `INFO proxy` answered by the
//! proxy alone; other sections as Redis sends them; the reply's type (bulk string for RESP2,
//! verbatim string for RESP3) as redis-server's.
mod common;
#[path = "common/frames.rs"]
mod frames;

use common::{wait_until, Proxy, RedisServer};
use frames::Wire;
use std::time::Duration;

/// The text of a bulk or verbatim string frame, and its type byte.
fn text(frame: &[u8]) -> (u8, String) {
    let start = frame.windows(2).position(|w| w == b"\r\n").expect("header") + 2;
    let mut body = &frame[start..frame.len() - 2];
    let len: usize = std::str::from_utf8(&frame[1..start - 2])
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        len,
        body.len(),
        "declared length of {:?}",
        String::from_utf8_lossy(frame)
    );
    if frame[0] == b'=' {
        body = body.strip_prefix(b"txt:").expect("verbatim format txt");
    }
    (frame[0], String::from_utf8(body.to_vec()).unwrap())
}

fn info(w: &mut Wire, args: &[&str]) -> (u8, String) {
    let mut cmd = vec!["INFO"];
    cmd.extend_from_slice(args);
    w.send(&cmd);
    text(&w.frame())
}

fn field(section: &str, name: &str) -> String {
    section
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {section}"))
        .to_string()
}

fn sections(text: &str) -> Vec<&str> {
    text.lines().filter_map(|l| l.strip_prefix("# ")).collect()
}

#[test]
fn proxy_section_in_each_protocol() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut direct = Wire::connect(redis.port());
    // The backend's status is published on the shard's tick.
    let mut w = Wire::connect(proxy.port());
    let up = wait_until(Duration::from_secs(5), || {
        field(&info(&mut w, &["proxy"]).1, "backend_status") == "up"
    });
    assert!(up);
    for resp3 in [false, true] {
        let mut w = Wire::connect(proxy.port());
        if resp3 {
            w.cmd(&["HELLO", "3"]);
            direct.cmd(&["HELLO", "3"]);
        }
        // Redis's own reply type, for INFO and for a section it has.
        let (want, _) = info(&mut direct, &[]);
        assert_eq!(want, if resp3 { b'=' } else { b'$' });

        // INFO proxy: the proxy's section only, without asking Redis.
        let calls = redis.cmdstat_calls("info");
        let (kind, p) = info(&mut w, &["proxy"]);
        assert_eq!(kind, want, "INFO proxy's type (resp3: {resp3})");
        assert_eq!(sections(&p), ["Proxy"], "{p}");
        assert!(p.starts_with("# Proxy\r\n") && p.ends_with("\r\n"), "{p:?}");
        assert_eq!(field(&p, "shards"), "1");
        assert_eq!(field(&p, "proxy_version"), env!("CARGO_PKG_VERSION"));
        assert!(["io_uring", "epoll"].contains(&field(&p, "io_driver").as_str()));
        assert_eq!(field(&p, "backend_status"), "up");
        assert_eq!(sections(&info(&mut w, &["PROXY"]).1), ["Proxy"]);
        // cmdstat_calls itself ran one INFO; the proxy's ran none.
        assert_eq!(redis.cmdstat_calls("info"), calls + 1);

        // Default, all, everything: Redis's sections, then the proxy's.
        for args in [
            &[][..],
            &["default"],
            &["all"],
            &["everything"],
            &["server", "proxy"],
        ] {
            let (kind, t) = info(&mut w, args);
            assert_eq!(kind, want, "INFO {args:?}");
            let s = sections(&t);
            assert_eq!(s.first(), Some(&"Server"), "INFO {args:?}: {s:?}");
            assert_eq!(s.last(), Some(&"Proxy"), "INFO {args:?}: {s:?}");
            assert!(
                t.contains("\r\n\r\n# Proxy\r\n"),
                "blank line before # Proxy"
            );
            assert!(t.ends_with("\r\n") && !t.ends_with("\r\n\r\n"));
        }
        // Other sections: Redis's alone, with Redis's type.
        let (kind, t) = info(&mut w, &["server"]);
        assert_eq!((kind, sections(&t)), (want, vec!["Server"]));
        let (kind, t) = info(&mut w, &["keyspace"]);
        assert_eq!((kind, sections(&t)), (want, vec!["Keyspace"]));
    }
}

#[test]
fn proxy_section_counts() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut w = Wire::connect(proxy.port());
    w.cmd(&["SET", "k", "v"]);
    w.cmd(&["GET", "k"]); // miss
    let mut p = String::new();
    // The cache's gauges are published on the shard's tick.
    let filled = wait_until(Duration::from_secs(5), || {
        p = info(&mut w, &["proxy"]).1;
        field(&p, "cache_entries") == "1"
    });
    assert!(filled, "{p}");
    w.cmd(&["GET", "k"]); // hit
    w.cmd(&["GET", "k"]); // hit
    w.cmd(&["GET", "k"]); // hit
    let p = info(&mut w, &["proxy"]).1;
    assert_eq!(field(&p, "cache_hits"), "3");
    assert_eq!(field(&p, "cache_misses"), "1");
    assert_eq!(field(&p, "cache_hit_ratio"), "0.7500");
    assert_eq!(field(&p, "connected_clients"), "1");
    assert!(field(&p, "cache_memory_bytes").parse::<u64>().unwrap() >= 8);
    // Redis down: said so, and INFO proxy still answers.
    drop(redis);
    let down = wait_until(Duration::from_secs(5), || {
        field(&info(&mut w, &["proxy"]).1, "backend_status") == "down"
    });
    assert!(down);
}
