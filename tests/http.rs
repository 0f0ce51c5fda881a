//! The HTTP front-end (`--http`): GET/HEAD of keys from the same cache as RESP clients, with
//! the same single flight and coherence; status codes, auth, limits, keep-alive, pipelining.
//!
//! Single requests go through `curl`; pipelining, HTTP/1.0 and malformed input through a raw
//! TCP client. Backend GETs are counted with `INFO commandstats`: a hit never reaches Redis.
mod common;
#[path = "common/http.rs"]
mod http_client;

use common::*;
use http_client::{curl, Http};
use std::time::Duration;

/// Starts the proxy with `--http` on a free port and waits until every shard is connected to
/// Redis (so the first fill is not emptied by the handshake's cache reset).
fn start(redis: &RedisServer, args: &[&str]) -> (Proxy, u16) {
    start_with(&redis.addr(), args)
}

fn start_with(redis: &str, args: &[&str]) -> (Proxy, u16) {
    let http = free_port();
    let addr = format!("127.0.0.1:{http}");
    let mut all = vec!["--http", addr.as_str()];
    all.extend_from_slice(args);
    let proxy = Proxy::start_with(redis, &all, &[]);
    let threads: usize = args
        .windows(2)
        .find(|w| w[0] == "--threads")
        .map(|w| w[1].parse().unwrap())
        .expect("tests pass --threads");
    let mut log = String::new();
    let connected = wait_until(Duration::from_secs(5), || {
        log = proxy.log_contents();
        (0..threads).all(|i| log.contains(&format!("shard {i}: connected to Redis")))
    });
    assert!(connected, "shards not connected; log:\n{log}");
    (proxy, http)
}

fn url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

#[test]
fn hit_miss_not_found_and_head_share_the_resp_cache() {
    let redis = RedisServer::start();
    let (proxy, http) = start(&redis, &["--threads", "1"]);
    redis.cmd(&["SET", "greeting", "hello"]);

    let r = curl(&[&url(http, "/greeting")]);
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("content-length"), Some("5"));
    assert!(
        r.header("date").is_some_and(|d| d.ends_with(" GMT")),
        "{r:?}"
    );
    assert_eq!(redis.cmdstat_calls("get"), 1, "the miss fetched once");
    assert_eq!(curl(&[&url(http, "/greeting")]).text(), "hello");
    let mut resp = proxy.connect();
    assert_eq!(resp.cmd(&["GET", "greeting"]), Reply::bulk("hello"));
    assert_eq!(
        redis.cmdstat_calls("get"),
        1,
        "the HTTP and RESP reads after the fill were hits"
    );

    // A RESP fill serves HTTP too.
    redis.cmd(&["SET", "other", "v"]);
    assert_eq!(resp.cmd(&["GET", "other"]), Reply::bulk("v"));
    assert_eq!(curl(&[&url(http, "/other")]).text(), "v");
    assert_eq!(redis.cmdstat_calls("get"), 2);

    let r = curl(&[&url(http, "/absent")]);
    assert_eq!((r.status, r.body.len()), (404, 0));
    let r = curl(&["-I", &url(http, "/greeting")]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some("5"),
        "HEAD: the GET's length"
    );
    assert!(r.body.is_empty());
    assert_eq!(curl(&["-I", &url(http, "/absent")]).status, 404);
    // curl reads no body after HEAD; on a raw connection a stray body would show up as
    // garbage before the next response.
    let mut c = Http::connect(http);
    c.send(b"HEAD /greeting HTTP/1.1\r\nHost: t\r\n\r\n");
    c.send_get("/absent");
    let r = c.read(true);
    assert_eq!((r.status, r.header("content-length")), (200, Some("5")));
    assert_eq!(c.read(false).status, 404);
}

/// Percent-encodes every byte but unreserved ones (RFC 3986).
fn encode(key: &[u8]) -> String {
    key.iter()
        .map(|&b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn keys_are_percent_decoded_and_may_hold_any_byte() {
    let redis = RedisServer::start();
    let (_proxy, http) = start(&redis, &["--threads", "1"]);
    let key: &[u8] = b"\x00\xff a/b?c&d+e%\r\n";
    let value: &[u8] = b"\x00\x01\xfe\xffbinary\r\n";
    let set = redis.connect().cmd(&[&b"SET"[..], key, value]);
    assert_eq!(set, Reply::ok());
    let r = curl(&[&url(http, &format!("/{}", encode(key)))]);
    assert_eq!((r.status, r.body.as_slice()), (200, value));
    let r = curl(&[&url(http, &format!("/get?key={}", encode(key)))]);
    assert_eq!((r.status, r.body.as_slice()), (200, value));

    // In the query form `+` is a space (a form value); in the path it is itself.
    redis.cmd(&["SET", "a b", "space"]);
    redis.cmd(&["SET", "a+b", "plus"]);
    assert_eq!(curl(&[&url(http, "/get?key=a+b")]).text(), "space");
    assert_eq!(curl(&[&url(http, "/a+b")]).text(), "plus");
    assert_eq!(curl(&[&url(http, "/a%20b")]).text(), "space");
    // `/get` is the query form; the key "get" is reached through it.
    redis.cmd(&["SET", "get", "the key named get"]);
    assert_eq!(
        curl(&[&url(http, "/get?key=get")]).text(),
        "the key named get"
    );
    // The empty key, and a query string after /<key> (ignored).
    redis.cmd(&["SET", "", "empty"]);
    assert_eq!(curl(&[&url(http, "/get?key=")]).text(), "empty");
    assert_eq!(curl(&[&url(http, "/a%20b?nocache=1")]).text(), "space");

    for bad in ["/a%zz", "/a%2", "/", "/get", "/get?k=1"] {
        let r = curl(&[&url(http, bad)]);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
}

#[test]
fn other_methods_malformed_requests_and_bodies() {
    let redis = RedisServer::start();
    let (proxy, http) = start(&redis, &["--threads", "1"]);
    redis.cmd(&["SET", "k", "v"]);

    let r = curl(&["-X", "POST", "-d", "x=1", &url(http, "/k")]);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert_eq!(curl(&["-X", "DELETE", &url(http, "/k")]).status, 405);

    // A body after a request is skipped, and the connection goes on.
    let mut c = Http::connect(http);
    c.send(b"PUT /k HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloGET /k HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read(false).status, 405);
    assert_eq!(c.read(false).body, b"v");
    // No Host in HTTP/1.1: 400, and the connection goes on (the request was well framed).
    c.send(b"GET /k HTTP/1.1\r\n\r\n");
    assert_eq!(c.read(false).status, 400);
    assert_eq!(c.get("/k").body, b"v");
    // A chunked body cannot be skipped without decoding it: answered, then closed.
    c.send(
        b"POST /k HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    let r = c.read(false);
    assert_eq!((r.status, r.header("connection")), (405, Some("close")));
    assert!(c.closed_within(Duration::from_secs(5)));

    // Unparseable heads: 400 and the connection closes.
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /k HTTP/2.0\r\nHost: t\r\n\r\n",
        b"GET /k HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
        b"GET /k HTTP/1.1\r\nBad Header: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    ] {
        let mut c = Http::connect(http);
        c.send(bad);
        let r = c.read(false);
        assert_eq!(r.status, 400, "{bad:?}: {}", r.text());
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.closed_within(Duration::from_secs(5)), "{bad:?}");
    }

    // Random bytes: never a crash; the proxy keeps serving.
    let mut rng = Rng::new(11);
    for _ in 0..50 {
        let mut c = Http::connect(http);
        let len = 1 + rng.below(300) as usize;
        // Not all blank lines, which are skipped before a request and answered with nothing.
        let junk: Vec<u8> = std::iter::once(b'X')
            .chain((0..len).map(|_| rng.below(256) as u8))
            .collect();
        c.send(&junk);
        c.send(b"\r\n\r\n");
        let r = c.try_read(false);
        assert!(
            r.as_ref()
                .is_none_or(|r| r.status == 400 || r.status == 405),
            "{r:?}"
        );
    }
    assert_eq!(curl(&[&url(http, "/k")]).text(), "v");
    assert_eq!(proxy.connect().cmd(&["PING"]), Reply::pong());
}

#[test]
fn absurd_lengths_get_414_or_431() {
    let redis = RedisServer::start();
    let (_proxy, http) = start(&redis, &["--threads", "1", "--max-request-bytes", "1024"]);
    redis.cmd(&["SET", "k", "v"]);

    let mut c = Http::connect(http);
    c.send(format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(5000)).as_bytes());
    let r = c.read(false);
    assert_eq!((r.status, r.header("connection")), (414, Some("close")));
    assert!(c.closed_within(Duration::from_secs(5)));

    let mut c = Http::connect(http);
    c.send(
        format!(
            "GET /k HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
            "b".repeat(5000)
        )
        .as_bytes(),
    );
    assert_eq!(c.read(false).status, 431);
    assert!(c.closed_within(Duration::from_secs(5)));

    let many = "X-A: b\r\n".repeat(100);
    let mut c = Http::connect(http);
    c.send(format!("GET /k HTTP/1.1\r\nHost: t\r\n{many}\r\n").as_bytes());
    assert_eq!(c.read(false).status, 431, "too many header lines");

    // Under the limit, all is well.
    assert_eq!(Http::connect(http).get("/k").body, b"v");
}

#[test]
fn requirepass_needs_a_bearer_token() {
    let redis = RedisServer::start();
    let (_proxy, http) = start(&redis, &["--threads", "1", "--requirepass", "s3cret"]);
    redis.cmd(&["SET", "k", "v"]);

    let r = curl(&[&url(http, "/k")]);
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Bearer")));
    for wrong in ["Bearer s3cre", "Bearer s3cret2", "Basic czNjcmV0", "s3cret"] {
        let h = format!("Authorization: {wrong}");
        assert_eq!(curl(&["-H", &h, &url(http, "/k")]).status, 401, "{wrong}");
    }
    let r = curl(&["-H", "Authorization: Bearer s3cret", &url(http, "/k")]);
    assert_eq!((r.status, r.text().as_str()), (200, "v"));
    let r = curl(&["-I", "-H", "Authorization: bearer s3cret", &url(http, "/k")]);
    assert_eq!(r.status, 200);
    // 401 keeps the connection: the client may retry with credentials.
    let mut c = Http::connect(http);
    assert_eq!(c.get("/k").status, 401);
    c.send(b"GET /k HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer s3cret\r\n\r\n");
    assert_eq!(c.read(false).body, b"v");
}

#[test]
fn redis_down_misses_get_503_and_hits_are_still_served() {
    let mut redis = RedisServer::start();
    let (_proxy, http) = start(&redis, &["--threads", "1"]);
    redis.cmd(&["SET", "warm", "cached"]);
    assert_eq!(curl(&[&url(http, "/warm")]).text(), "cached");
    redis.kill();

    let mut last = None;
    let refused = wait_until(Duration::from_secs(10), || {
        let r = curl(&[&url(http, "/cold")]);
        let done = r.status == 503;
        last = Some(r);
        done
    });
    let r = last.unwrap();
    assert!(refused, "a miss with Redis down: {r:?}");
    assert!(
        r.text().contains("backend"),
        "the cause is in the body: {}",
        r.text()
    );
    let r = curl(&[&url(http, "/warm")]);
    assert_eq!((r.status, r.text().as_str()), (200, "cached"));
}

#[test]
fn wrongtype_is_409_with_redis_message() {
    let redis = RedisServer::start();
    let (_proxy, http) = start(&redis, &["--threads", "1"]);
    redis.cmd(&["LPUSH", "list", "x"]);
    let direct = redis.cmd(&["GET", "list"]);
    let msg = direct
        .error_text()
        .expect("Redis's WRONGTYPE error")
        .to_string();
    assert!(msg.starts_with("WRONGTYPE"), "{msg}");
    let r = curl(&[&url(http, "/list")]);
    assert_eq!(r.status, 409);
    assert_eq!(r.text(), format!("{msg}\n"));
}

/// Redis frozen while a pipeline waits on a miss: once it resumes, every response comes in
/// request order, the hits and local answers behind the miss included.
#[test]
fn pipelined_responses_keep_request_order() {
    let redis = RedisServer::start();
    let (_proxy, http) = start(&redis, &["--threads", "1"]);
    redis.cmd(&["SET", "hot", "h"]);
    redis.cmd(&["SET", "cold", "c"]);
    let mut c = Http::connect(http);
    assert_eq!(c.get("/hot").body, b"h");

    redis.stop();
    let pipeline = "GET /cold HTTP/1.1\r\nHost: t\r\n\r\n\
                    GET /hot HTTP/1.1\r\nHost: t\r\n\r\n\
                    HEAD /hot HTTP/1.1\r\nHost: t\r\n\r\n\
                    DELETE /hot HTTP/1.1\r\nHost: t\r\n\r\n\
                    GET /hot HTTP/1.1\r\nHost: t\r\n\r\n";
    c.send(pipeline.as_bytes());
    let local = c.stream.local_addr().unwrap().port();
    // The proxy has read the whole pipeline before Redis can answer the miss.
    let taken = wait_until(Duration::from_secs(5), || {
        tcp_queues(local, http).unwrap_or_default().0 == 0
            && tcp_queues(http, local).unwrap_or_default().1 == 0
    });
    redis.cont();
    assert!(taken, "the proxy did not read the pipeline");
    let got: Vec<(u16, Vec<u8>)> = [false, false, true, false, false]
        .into_iter()
        .map(|head| {
            let r = c.read(head);
            (r.status, r.body)
        })
        .collect();
    let want: Vec<(u16, Vec<u8>)> = vec![
        (200, b"c".to_vec()),
        (200, b"h".to_vec()),
        (200, vec![]),
        (405, b"use GET or HEAD\n".to_vec()),
        (200, b"h".to_vec()),
    ];
    assert_eq!(got, want);

    // A long pipeline mixing misses, hits and 404s on one connection.
    for i in 0..100 {
        redis.cmd(&["SET", &format!("p{i}"), &format!("value-{i}")]);
    }
    let mut batch = String::new();
    for round in 0..2 {
        for i in 0..150 {
            let _ = round;
            batch.push_str(&format!("GET /p{i} HTTP/1.1\r\nHost: t\r\n\r\n"));
        }
    }
    c.send(batch.as_bytes());
    for _round in 0..2 {
        for i in 0..150 {
            let r = c.read(false);
            if i < 100 {
                assert_eq!((r.status, r.text()), (200, format!("value-{i}")));
            } else {
                assert_eq!(r.status, 404, "p{i}");
            }
        }
    }
}

#[test]
fn http10_closes_unless_keep_alive_and_connection_close_is_obeyed() {
    let redis = RedisServer::start();
    let (_proxy, http) = start(&redis, &["--threads", "1"]);
    redis.cmd(&["SET", "k", "v"]);

    let mut c = Http::connect(http);
    c.send(b"GET /k HTTP/1.0\r\n\r\n");
    let r = c.read(false);
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert!(c.closed_within(Duration::from_secs(5)));

    let mut c = Http::connect(http);
    c.send(b"GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read(false);
    assert_eq!(r.header("connection"), Some("keep-alive"));
    c.send(b"GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.read(false).body, b"v");

    // HTTP/1.1 keeps the connection by default; `Connection: close` ends it after that
    // response, and what was pipelined behind it is not answered.
    let mut c = Http::connect(http);
    assert_eq!(c.get("/k").header("connection"), None);
    assert_eq!(c.get("/k").body, b"v");
    c.send(b"GET /k HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /k HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read(false);
    assert_eq!(
        (r.body.as_slice(), r.header("connection")),
        (&b"v"[..], Some("close"))
    );
    assert!(c.closed_within(Duration::from_secs(5)));
}

#[test]
fn writes_through_resp_or_straight_to_redis_reach_http_readers() {
    let redis = RedisServer::start();
    let (proxy, http) = start(&redis, &["--threads", "2"]);
    redis.cmd(&["SET", "k", "v1"]);
    // Connections spread over both shards; warm every one of them.
    let mut conns: Vec<Http> = (0..16).map(|_| Http::connect(http)).collect();
    for c in conns.iter_mut() {
        assert_eq!(c.get("/k").body, b"v1");
        assert_eq!(c.get("/k").body, b"v1");
    }
    // Through the proxy's RESP side: evicted before the write is sent, on that shard;
    // through Redis's tracking push on the other.
    assert_eq!(proxy.connect().cmd(&["SET", "k", "v2"]), Reply::ok());
    for c in conns.iter_mut() {
        assert!(
            wait_until(Duration::from_secs(5), || c.get("/k").body == b"v2"),
            "an HTTP reader kept the old value after a write through the proxy"
        );
    }
    // Straight to Redis: CLIENT TRACKING invalidates every shard.
    redis.cmd(&["SET", "k", "v3"]);
    for c in conns.iter_mut() {
        assert!(
            wait_until(Duration::from_secs(5), || c.get("/k").body == b"v3"),
            "an HTTP reader kept the old value after a write straight to Redis"
        );
    }
    redis.cmd(&["DEL", "k"]);
    for c in conns.iter_mut() {
        assert!(wait_until(Duration::from_secs(5), || c.get("/k").status == 404));
    }
}

/// A RESP GET and an HTTP GET of the same missing key on one shard share one fetch.
#[test]
fn single_flight_is_shared_with_resp_clients() {
    let redis = RedisServer::start();
    let (proxy, http) = start(&redis, &["--threads", "1"]);
    redis.cmd(&["SET", "sf", "once"]);
    let before = redis.cmdstat_calls("get");
    let mut resp = proxy.connect();
    let mut c = Http::connect(http);
    redis.stop();
    resp.send_cmd(&["GET", "sf"]);
    c.send_get("/sf");
    c.send_get("/sf");
    let local = c.stream.local_addr().unwrap().port();
    let taken = wait_until(Duration::from_secs(5), || {
        resp.unread_by_peer() == 0
            && tcp_queues(local, http).unwrap_or_default().0 == 0
            && tcp_queues(http, local).unwrap_or_default().1 == 0
    });
    redis.cont();
    assert!(taken, "the proxy did not read the requests");
    assert_eq!(resp.read_reply(), Reply::bulk("once"));
    assert_eq!(c.read(false).body, b"once");
    assert_eq!(c.read(false).body, b"once");
    assert_eq!(
        redis.cmdstat_calls("get") - before,
        1,
        "one backend GET for three readers"
    );
}

#[test]
fn the_redis_url_db_is_the_one_served() {
    let redis = RedisServer::start();
    redis.cmd(&["SET", "k", "db0"]);
    let mut c = redis.connect();
    assert_eq!(c.cmd(&["SELECT", "3"]), Reply::ok());
    assert_eq!(c.cmd(&["SET", "k", "db3"]), Reply::ok());
    let (_proxy, http) = start_with(&format!("redis://{}/3", redis.addr()), &["--threads", "1"]);
    assert_eq!(curl(&[&url(http, "/k")]).text(), "db3");
    assert_eq!(c.cmd(&["SET", "k", "db3-new"]), Reply::ok());
    assert!(wait_until(Duration::from_secs(5), || {
        curl(&[&url(http, "/k")]).text() == "db3-new"
    }));
}

#[test]
fn max_clients_counts_both_protocols_and_idle_clients_are_closed() {
    let redis = RedisServer::start();
    let (proxy, http) = start(
        &redis,
        &[
            "--threads",
            "1",
            "--max-clients",
            "2",
            "--client-idle-timeout",
            "300ms",
        ],
    );
    redis.cmd(&["SET", "k", "v"]);
    let mut resp = proxy.connect();
    assert_eq!(resp.cmd(&["PING"]), Reply::pong());
    let mut a = Http::connect(http);
    assert_eq!(a.get("/k").body, b"v");
    let mut b = Http::connect(http);
    let r = b.read(false);
    assert_eq!((r.status, r.header("connection")), (503, Some("close")));
    assert!(r.text().contains("max number of clients"));
    // Idle: closed by --client-idle-timeout, which frees the slots.
    assert!(
        a.closed_within(Duration::from_secs(5)),
        "idle HTTP client kept"
    );
    let mut c = Http::connect(http);
    assert_eq!(c.get("/k").body, b"v");
}

/// A pipeline of hits answered within one read outgrows a small --client-output-limit: the
/// proxy pauses mid-batch while the client reads, instead of dropping it.
#[test]
fn a_pipeline_of_hits_pauses_at_the_output_limit() {
    let redis = RedisServer::start();
    let (_proxy, http) = start(&redis, &["--threads", "1", "--client-output-limit", "4096"]);
    let value = "x".repeat(300);
    redis.cmd(&["SET", "big", &value]);
    let mut c = Http::connect(http);
    assert_eq!(c.get("/big").text(), value);
    c.send(
        "GET /big HTTP/1.1\r\nHost: t\r\n\r\n"
            .repeat(300)
            .as_bytes(),
    );
    for i in 0..300 {
        let r = c.try_read(false);
        assert!(
            r.as_ref().is_some_and(|r| r.text() == value),
            "response {i}: {r:?}"
        );
    }
}

/// An HTTP port owned by another process, or the RESP port itself, is refused at start-up
/// rather than shared through SO_REUSEPORT.
#[test]
fn http_address_taken_or_same_as_listen_is_refused() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let (status, err) = Proxy::run_to_exit(
        &["--listen", &listen, "--http", &addr],
        &[],
        Duration::from_secs(10),
    );
    assert!(!status.success());
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    let (status, err) = Proxy::run_to_exit(
        &["--listen", &listen, "--http", &listen],
        &[],
        Duration::from_secs(10),
    );
    assert!(!status.success());
    assert!(err.contains("must be different"), "{err}");
}

/// SIGTERM with a miss in flight: the response still arrives, then the connection closes and
/// the proxy exits 0.
#[test]
fn shutdown_answers_requests_already_read() {
    let redis = RedisServer::start();
    let (mut proxy, http) = start(&redis, &["--threads", "1"]);
    redis.cmd(&["SET", "k", "v"]);
    let mut c = Http::connect(http);
    redis.stop();
    c.send_get("/k");
    let local = c.stream.local_addr().unwrap().port();
    let taken = wait_until(Duration::from_secs(5), || {
        tcp_queues(local, http).unwrap_or_default().0 == 0
            && tcp_queues(http, local).unwrap_or_default().1 == 0
    });
    proxy.signal("TERM");
    // Shutdown has begun once the listener is gone; only then may Redis answer.
    let stopped = wait_until(Duration::from_secs(5), || {
        std::net::TcpStream::connect(("127.0.0.1", http)).is_err()
    });
    redis.cont();
    assert!(taken, "the proxy did not read the request");
    assert!(stopped, "the proxy kept accepting after SIGTERM");
    let r = c.read(false);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"v"[..]));
    assert!(c.closed_within(Duration::from_secs(5)));
    // Promptly: within the 3 s grace for clients that read nothing, not at the 5 s deadline
    // for shards that never finish (an accept loop that missed the shutdown).
    let status = proxy
        .wait_exit(Duration::from_secs(3))
        .expect("proxy exits promptly");
    assert!(status.success(), "{status:?}");
}

/// The password SIGHUP installs applies to the very next HTTP request, on a connection that
/// was already open (each request carries its credentials).
#[test]
fn sighup_password_rotation_applies_to_the_next_request() {
    let redis = RedisServer::start();
    let file = TempFile::new("http-pass.toml", "requirepass = \"first-pw\"\n");
    let (proxy, http) = start(&redis, &["--threads", "1", "--config", file.path()]);
    redis.cmd(&["SET", "k", "v"]);
    let bearer = |c: &mut Http, pw: &str| {
        c.send(
            format!("GET /k HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {pw}\r\n\r\n").as_bytes(),
        );
        c.read(false).status
    };
    let mut c = Http::connect(http);
    assert_eq!(bearer(&mut c, "first-pw"), 200);
    file.write("requirepass = \"second-pw\"\n");
    let before = proxy
        .log_contents()
        .matches("requirepass now in effect")
        .count();
    proxy.signal("HUP");
    assert!(wait_until(Duration::from_secs(10), || {
        proxy
            .log_contents()
            .matches("requirepass now in effect")
            .count()
            > before
    }));
    assert_eq!(bearer(&mut c, "first-pw"), 401);
    assert_eq!(bearer(&mut c, "second-pw"), 200);
}
