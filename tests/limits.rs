//! Client limits with real connections: --max-clients, --max-request-bytes,
//! --client-output-limit, --client-idle-timeout.
mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

const MAX_CLIENTS_ERR: &str = "ERR max number of clients reached";
const TOO_LARGE_ERR: &str = "ERR Protocol error: request larger than --max-request-bytes";

/// A new connection's answer to PING: `Ok(reply)`, or the I/O error.
fn ping_new(proxy: &Proxy) -> (Raw, std::io::Result<Reply>) {
    let mut c = proxy.connect();
    c.set_read_timeout(Duration::from_secs(3));
    let r = c
        .try_send(&encode(&["PING"]))
        .and_then(|_| c.try_read_reply());
    (c, r)
}

#[track_caller]
fn assert_refused(proxy: &Proxy, what: &str) {
    let (mut c, r) = ping_new(proxy);
    match r {
        Ok(Reply::Error(e)) if e == MAX_CLIENTS_ERR => {}
        other => panic!("{what}: expected -{MAX_CLIENTS_ERR}, got {other:?}"),
    }
    c.expect_closed_within(Duration::from_secs(3));
}

#[test]
fn max_clients() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2", "--max-clients", "3"]);
    let mut clients: Vec<Raw> = (0..3)
        .map(|i| {
            let (c, r) = ping_new(&proxy);
            assert_eq!(r.ok(), Some(Reply::pong()), "client {i} of 3");
            c
        })
        .collect();
    // The 4th is told why, then closed; refusals do not use up slots.
    for i in 0..3 {
        assert_refused(&proxy, &format!("client 4 (attempt {i})"));
    }
    for c in clients.iter_mut() {
        assert_eq!(
            c.cmd(&["SET", "k", "v"]),
            Reply::ok(),
            "admitted clients keep working"
        );
    }

    // One leaves: a new client gets its slot (freed asynchronously: poll).
    drop(clients.remove(0));
    let mut newcomer = None;
    let ok = wait_until(Duration::from_secs(5), || match ping_new(&proxy) {
        (c, Ok(r)) if r == Reply::pong() => {
            newcomer = Some(c);
            true
        }
        (_, Ok(Reply::Error(e))) if e == MAX_CLIENTS_ERR => {
            thread::sleep(Duration::from_millis(50));
            false
        }
        (_, other) => panic!("unexpected answer to a new client: {other:?}"),
    });
    assert!(ok, "no slot freed after a client left");
    let mut newcomer = newcomer.unwrap();
    assert_eq!(newcomer.cmd(&["GET", "k"]), Reply::bulk("v"));
    // Full again.
    assert_refused(&proxy, "client 4 after the newcomer");

    // A client closed by QUIT frees its slot too.
    assert_eq!(newcomer.cmd(&["QUIT"]), Reply::ok());
    newcomer.expect_closed();
    let ok = wait_until(Duration::from_secs(5), || {
        let (c, r) = ping_new(&proxy);
        let admitted = r.ok() == Some(Reply::pong());
        if admitted {
            clients.push(c);
        }
        admitted
    });
    assert!(ok, "no slot freed after QUIT");
    assert_refused(&proxy, "client 4 at the end");
}

const MAX_REQUEST_ARGS: &[&str] = &["--threads", "2", "--max-request-bytes", "4096"];

/// Sends `bytes` (which may be refused part way) and expects the too-large error, then EOF.
#[track_caller]
fn assert_too_large(proxy: &Proxy, bytes: &[u8], what: &str) {
    let mut c = proxy.connect();
    c.set_read_timeout(Duration::from_secs(3));
    let start = Instant::now();
    // The proxy may close before taking everything: a failed write is fine.
    let _ = c.try_send(bytes);
    match c.try_read_reply() {
        Ok(Reply::Error(e)) => assert_eq!(e, TOO_LARGE_ERR, "{what}"),
        other => panic!("{what}: expected -{TOO_LARGE_ERR}, got {other:?}"),
    }
    c.expect_closed_within(Duration::from_secs(3));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{what}: refusing took {:?}",
        start.elapsed()
    );
}

#[test]
fn max_request_bytes_allows_commands_within_the_limit() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), MAX_REQUEST_ARGS);
    let mut c = proxy.connect();
    let v3k = "x".repeat(3000);
    assert_eq!(c.cmd(&["SET", "small", &v3k]), Reply::ok());
    assert_eq!(c.cmd(&["GET", "small"]), Reply::bulk(&v3k));
    // The limit is per command, not per pipeline: 500 pipelined commands (~20 KB) are fine.
    let mut bytes = Vec::new();
    for i in 0..500 {
        bytes.extend(encode(&["ECHO", &format!("pipelined-{i:08}")]));
    }
    assert!(bytes.len() > 4 * 4096);
    c.send(&bytes);
    for i in 0..500 {
        assert_eq!(c.read_reply(), Reply::bulk(format!("pipelined-{i:08}")));
    }
    // Also when the client trickles a command within the limit in small pieces.
    let cmd = encode(&["SET", "trickled", &v3k]);
    for chunk in cmd.chunks(700) {
        c.send(chunk);
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(c.read_reply(), Reply::ok());
    assert_eq!(c.cmd(&["GET", "trickled"]), Reply::bulk(&v3k));
}

#[test]
fn max_request_bytes_refuses_a_whole_large_command() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), MAX_REQUEST_ARGS);
    let mut good = proxy.connect();
    assert_eq!(good.cmd(&["SET", "k", "v"]), Reply::ok());
    // A 10 KB SET written at once (it reaches the proxy in one read, complete).
    let big = encode(&["SET", "big", &"y".repeat(10 * 1024)]);
    assert_too_large(&proxy, &big, "10 KB SET sent at once");
    assert_eq!(
        redis.cmd(&["EXISTS", "big"]),
        Reply::Int(0),
        "the 10 KB SET must not reach Redis"
    );
    assert_eq!(
        good.cmd(&["GET", "k"]),
        Reply::bulk("v"),
        "others unaffected"
    );
}

#[test]
fn max_request_bytes_refuses_large_headers_before_the_payload() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), MAX_REQUEST_ARGS);
    let mut good = proxy.connect();
    assert_eq!(good.cmd(&["SET", "k", "v"]), Reply::ok());
    // A huge declared bulk is refused from its header alone.
    assert_too_large(&proxy, b"*1\r\n$100000000\r\n", "$100000000 header");
    // Same for a SET whose value header announces 10 KB.
    assert_too_large(
        &proxy,
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10240\r\n",
        "$10240 value header",
    );
    // A 10 KB SET trickled in 1 KB pieces: refused by the time the limit is passed.
    let mut c = proxy.connect();
    c.set_read_timeout(Duration::from_secs(3));
    let cmd = encode(&["SET", "trickled-big", &"z".repeat(10 * 1024)]);
    for chunk in cmd.chunks(1024) {
        if c.try_send(chunk).is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    match c.try_read_reply() {
        Ok(Reply::Error(e)) => assert_eq!(e, TOO_LARGE_ERR),
        other => panic!("trickled 10 KB SET: expected -{TOO_LARGE_ERR}, got {other:?}"),
    }
    c.expect_closed_within(Duration::from_secs(3));
    // An inline command line that never ends.
    assert_too_large(
        &proxy,
        "a".repeat(8192).as_bytes(),
        "8 KB unterminated inline",
    );
    assert_eq!(redis.cmd(&["EXISTS", "trickled-big"]), Reply::Int(0));
    assert_eq!(
        good.cmd(&["GET", "k"]),
        Reply::bulk("v"),
        "others unaffected"
    );
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in proc status")
}

/// Drains `s` until EOF/reset (true) or until `timeout` passes with the connection open (false).
/// Returns (closed, bytes read).
fn drain(s: &mut TcpStream, timeout: Duration) -> (bool, usize) {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return (true, total),
            Ok(n) => total += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (true, total),
        }
    }
    (false, total)
}

#[test]
fn client_output_limit() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(
        redis.port(),
        &["--threads", "2", "--client-output-limit", "1048576"],
    );
    let value = "v".repeat(100 * 1024);
    let mut good = proxy.connect();
    assert_eq!(good.cmd(&["SET", "big", &value]), Reply::ok());
    assert_eq!(good.cmd(&["GET", "big"]), Reply::bulk(&value));
    let rss_before = rss_kib(proxy.pid());

    // Clients that ask for 2000 x 100 KB (200 MB each) and never read.
    const HOGS: usize = 6;
    const GETS: usize = 2000;
    let request = encode(&["GET", "big"]).repeat(GETS);
    let mut hogs: Vec<TcpStream> = (0..HOGS)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
            s.set_write_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            s
        })
        .collect();
    for s in hogs.iter_mut() {
        // The proxy may stop reading (or close) before taking it all: that is the point.
        let _ = s.write_all(&request);
    }

    // Meanwhile other clients are served normally, and the proxy's memory stays bounded.
    // The proxy stops reading a hog at half the limit and drops it once it has read nothing
    // for 2 s, so keep the hogs silent for longer than that.
    let mut peak = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(5000) {
        peak = peak.max(rss_kib(proxy.pid()));
        let t = Instant::now();
        assert_eq!(good.cmd(&["GET", "big"]), Reply::bulk(&value));
        assert_eq!(good.cmd(&["PING"]), Reply::pong());
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "a well-behaved client waited {:?}",
            t.elapsed()
        );
        thread::sleep(Duration::from_millis(50));
    }
    eprintln!("client output limit: RSS {rss_before} KiB before, peak {peak} KiB with {HOGS} hogs");
    assert!(
        peak < 200 * 1024,
        "proxy RSS reached {peak} KiB with {HOGS} clients not reading"
    );

    // Each hog was disconnected: what it can still read is a small part of the 200 MB asked
    // for (what sat in socket buffers), then the end of the connection.
    for (i, s) in hogs.iter_mut().enumerate() {
        let (closed, read) = drain(s, Duration::from_secs(5));
        assert!(closed, "hog {i} still connected ({read} bytes read)");
        assert!(
            read < GETS * value.len() / 4,
            "hog {i} received {read} bytes: not cut off"
        );
    }

    // A client that reads its replies is not limited by the total it receives, only by what
    // it leaves unread: 30 x (8 pipelined GETs of 100 KB) = 24 MB.
    let mut reader = proxy.connect();
    for round in 0..30 {
        let mut bytes = Vec::new();
        for _ in 0..8 {
            bytes.extend(encode(&["GET", "big"]));
        }
        reader.send(&bytes);
        for i in 0..8 {
            assert_eq!(
                reader.read_reply(),
                Reply::bulk(&value),
                "round {round}, GET {i}"
            );
        }
    }
    assert_eq!(good.cmd(&["PING"]), Reply::pong());
}

#[test]
fn client_idle_timeout() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(
        redis.port(),
        &["--threads", "2", "--client-idle-timeout", "300ms"],
    );
    let mut idle = proxy.connect();
    assert_eq!(idle.cmd(&["PING"]), Reply::pong());
    let mut silent = proxy.connect(); // never sends anything
    let mut active = proxy.connect();
    let start = Instant::now();

    // The active client sends something every 100ms for 2.5s and is never closed.
    let mut closed_at = [None, None];
    while start.elapsed() < Duration::from_millis(2500) {
        let r = active
            .try_send(&encode(&["PING"]))
            .and_then(|_| active.try_read_reply());
        assert_eq!(
            r.ok(),
            Some(Reply::pong()),
            "active client closed after {:?}",
            start.elapsed()
        );
        for (i, c) in [&mut idle, &mut silent].into_iter().enumerate() {
            if closed_at[i].is_none() {
                c.set_read_timeout(Duration::from_millis(1));
                match c.try_read_reply() {
                    Err(e) if e.kind() == ErrorKind::TimedOut => {}
                    Err(_) => closed_at[i] = Some(start.elapsed()),
                    Ok(r) => panic!("idle client got an unsolicited reply {r:?}"),
                }
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    // Closed within 300ms + the proxy's 1s check period + scheduling slack.
    for (i, name) in ["idle", "silent (never sent anything)"].iter().enumerate() {
        let at = closed_at[i].unwrap_or_else(|| panic!("{name} client not closed after 2.5s"));
        eprintln!("{name} client closed after {at:?}");
        assert!(
            at >= Duration::from_millis(250),
            "{name} client closed too early, after {at:?}"
        );
        // 300ms, plus up to 1s until the proxy's next idle check, plus slack.
        assert!(
            at <= Duration::from_millis(2000),
            "{name} client closed only after {at:?}"
        );
    }
    idle.set_read_timeout(Duration::from_secs(1));
    assert!(idle
        .try_send(&encode(&["PING"]))
        .and_then(|_| idle.try_read_reply())
        .is_err());
    // New clients are still welcome.
    assert_eq!(proxy.connect().cmd(&["PING"]), Reply::pong());
}
