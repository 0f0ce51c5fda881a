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
        (_, Ok(Reply::Error(e))) if e == MAX_CLIENTS_ERR => false,
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
        // Each piece in a read of its own: let the proxy take it before sending the next.
        assert!(wait_until(Duration::from_secs(5), || c.unread_by_peer() == 0));
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
        // Each piece in a read of its own (0 too once the proxy has closed).
        assert!(wait_until(Duration::from_secs(5), || c.unread_by_peer() == 0));
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

/// Whether the proxy still holds its end of the connection from `client_port` open: its socket
/// leaves ESTABLISHED as soon as the proxy shuts the connection down, whether or not the client
/// reads (a client that never reads would not see the end of the connection).
fn proxy_holds(proxy: &Proxy, client_port: u16) -> bool {
    tcp_queues(proxy.port(), client_port).is_some()
}

/// A 100 KB value, stored and cached (the clients below ask only for cache hits, which the
/// proxy answers at once, so what it holds depends on the client alone).
fn cached_big_value(redis: &RedisServer, proxy: &Proxy) -> String {
    let value = "v".repeat(100 * 1024);
    let mut c = proxy.connect();
    assert_eq!(c.cmd(&["SET", "big", &value]), Reply::ok());
    assert_eq!(c.cmd(&["GET", "big"]), Reply::bulk(&value));
    let gets = redis.cmdstat_calls("get");
    assert_eq!(c.cmd(&["GET", "big"]), Reply::bulk(&value));
    assert_eq!(redis.cmdstat_calls("get"), gets, "big should be cached");
    value
}

/// One read of at most `buf.len()` bytes from a stream of identical `reply`s, of which
/// `received` bytes came before; checks every byte.
fn read_replies(
    c: &mut TcpStream,
    buf: &mut [u8],
    reply: &[u8],
    received: &mut usize,
) -> std::io::Result<()> {
    let n = c.read(buf)?;
    if n == 0 {
        return Err(ErrorKind::UnexpectedEof.into());
    }
    for (i, &b) in buf[..n].iter().enumerate() {
        let at = *received + i;
        assert_eq!(
            b,
            reply[at % reply.len()],
            "byte {at}: not the reply asked for"
        );
    }
    *received += n;
    Ok(())
}

/// A client that pipelines far more than the output limit and reads slowly but steadily is
/// paused (the proxy stops taking its requests), never dropped, and gets every reply.
#[test]
fn slow_reader_is_paused_not_dropped() {
    const LIMIT: usize = 256 * 1024;
    // Longer than the proxy's 2 s limit for a client that reads nothing at all.
    const PAUSED_ENOUGH: Duration = Duration::from_secs(5);
    // Asked for beyond what socket buffers and the limit can hold.
    const UNREAD: usize = 16 << 20;
    let redis = RedisServer::start();
    let proxy = Proxy::start(
        redis.port(),
        &[
            "--threads",
            "1",
            "--client-output-limit",
            &LIMIT.to_string(),
        ],
    );
    let value = cached_big_value(&redis, &proxy);
    // Every reply is this; the byte stream is checked against it as it arrives.
    let reply = encode_reply(&Reply::bulk(&value));
    let get = encode(&["GET", "big"]);

    let mut c = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let port = c.local_addr().unwrap().port();
    let start = Instant::now();
    let (mut sent, mut received) = (0, 0);
    let mut chunk = vec![0u8; 64 * 1024];
    let dropped = |e: std::io::Error, what: &str, received: usize, sent: usize| -> ! {
        panic!(
            "slow reader dropped after {:?} ({what}), at byte {received} of {}: {e}",
            start.elapsed(),
            sent * reply.len()
        )
    };
    let rss_before = rss_kib(proxy.pid());
    let mut rss_peak = rss_before;
    let mut paused_since: Option<Instant> = None;
    let mut paused_for = Duration::ZERO;
    while paused_for < PAUSED_ENOUGH {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the slow reader was never kept paused for {PAUSED_ENOUGH:?} (or socket buffers \
             are larger than this test expects)"
        );
        // Reply bytes asked for but not yet handed to the kernel by the proxy. It may hold up
        // to the limit in its queue plus a batch of at most the limit in its writer; anything
        // beyond that it has not produced: it stopped taking this client's requests.
        let (_, unread) = tcp_queues(port, proxy.port()).unwrap_or_default();
        let (unsent, _) = tcp_queues(proxy.port(), port).unwrap_or_default();
        let in_kernel = (unread + unsent) as usize;
        let not_written = (sent * reply.len() - received).saturating_sub(in_kernel);
        if not_written > 2 * LIMIT {
            paused_for = paused_since.get_or_insert_with(Instant::now).elapsed();
        } else {
            paused_since = None;
        }
        rss_peak = rss_peak.max(rss_kib(proxy.pid()));
        // Keep well over that pipelined, so the proxy stays paused while this client reads.
        while sent * reply.len() - received < in_kernel + 2 * LIMIT + UNREAD {
            c.write_all(&get.repeat(10)).unwrap();
            sent += 10;
        }
        read_replies(&mut c, &mut chunk[..16 * 1024], &reply, &mut received)
            .unwrap_or_else(|e| dropped(e, "reading slowly", received, sent));
        // Reading slowly (at most 200 KB/s), but steadily, is the point.
        thread::sleep(Duration::from_millis(80));
    }
    // Paused, so the replies asked for were not produced ahead of the reader.
    assert!(
        rss_peak - rss_before < (UNREAD as u64 / 1024) / 2,
        "proxy RSS grew from {rss_before} to {rss_peak} KiB while a client left {} MB of \
         replies unread",
        UNREAD >> 20
    );
    // The rest, as fast as it comes.
    while received < sent * reply.len() {
        let max = (sent * reply.len() - received).min(chunk.len());
        read_replies(&mut c, &mut chunk[..max], &reply, &mut received)
            .unwrap_or_else(|e| dropped(e, "reading fast", received, sent));
    }
    c.write_all(&encode(&["PING"])).unwrap();
    let mut pong = [0u8; 7];
    c.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"+PONG\r\n", "nothing extra, still served");
    eprintln!(
        "slow reader: {sent} replies, paused for {paused_for:?}, in {:?}; RSS {rss_before} KiB \
         before, peak {rss_peak} KiB",
        start.elapsed()
    );
}

/// Cache hits queued behind a request that waits for Redis are unsent replies like any other:
/// they pause the client at half the limit too, rather than pile up past the limit and get a
/// client that reads its replies dropped.
#[test]
fn hits_behind_a_forwarded_request_pause_the_client() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(
        redis.port(),
        &["--threads", "1", "--client-output-limit", "1048576"],
    );
    let value = cached_big_value(&redis, &proxy);
    // 10 MB of replies, ten times the limit, each hit behind an INCR.
    const N: i64 = 100;
    let mut bytes = Vec::new();
    for _ in 0..N {
        bytes.extend(encode(&["INCR", "n"]));
        bytes.extend(encode(&["GET", "big"]));
    }
    let mut c = proxy.connect();
    c.send(&bytes);
    for i in 1..=N {
        for want in [Reply::Int(i), Reply::bulk(&value)] {
            let got = c.try_read_reply().unwrap_or_else(|e| {
                panic!("dropped at pair {i} of {N}, though reading its replies: {e}")
            });
            assert_eq!(got, want, "pair {i}");
        }
    }
    assert_eq!(c.cmd(&["PING"]), Reply::pong());
}

/// Clients that pipeline 200 MB of replies each and never read are paused, then dropped
/// after the proxy's 2 s limit; meanwhile others are served and memory stays bounded.
#[test]
fn client_never_reading_is_dropped() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(
        redis.port(),
        &["--threads", "1", "--client-output-limit", "1048576"],
    );
    let value = cached_big_value(&redis, &proxy);
    let mut good = proxy.connect();
    let rss_before = rss_kib(proxy.pid());

    const HOGS: usize = 6;
    const GETS: usize = 2000;
    let request = encode(&["GET", "big"]).repeat(GETS);
    let connected_at = Instant::now();
    let mut hogs: Vec<TcpStream> = (0..HOGS)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
            s.set_write_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            s
        })
        .collect();
    let hog_ports: Vec<u16> = hogs
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    for s in hogs.iter_mut() {
        // The proxy stops reading (or closes) before taking it all: that is the point.
        let _ = s.write_all(&request);
    }

    // Until every hog is dropped, others are served normally and memory stays bounded.
    let mut peak = 0;
    let mut dropped_after = [None; HOGS];
    let mut good_worst = Duration::ZERO;
    while dropped_after.iter().any(Option::is_none) {
        let now = connected_at.elapsed();
        assert!(
            now < Duration::from_secs(20),
            "hogs still connected after {now:?}: {dropped_after:?}"
        );
        for (i, &port) in hog_ports.iter().enumerate() {
            if dropped_after[i].is_none() && !proxy_holds(&proxy, port) {
                dropped_after[i] = Some(now);
            }
        }
        peak = peak.max(rss_kib(proxy.pid()));
        let t = Instant::now();
        assert_eq!(good.cmd(&["GET", "big"]), Reply::bulk(&value));
        assert_eq!(good.cmd(&["PING"]), Reply::pong());
        good_worst = good_worst.max(t.elapsed());
        // Pace the well-behaved client; it only samples the proxy's state.
        thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "never reading: RSS {rss_before} KiB before, peak {peak} KiB with {HOGS} hogs; dropped \
         after {dropped_after:?}; a well-behaved client waited at most {good_worst:?}"
    );
    assert!(
        good_worst < Duration::from_secs(1),
        "a well-behaved client waited {good_worst:?}"
    );
    assert!(
        peak < 200 * 1024,
        "proxy RSS reached {peak} KiB with {HOGS} clients not reading"
    );
    // Paused first: a hog's 2 s cannot have run out before it connected plus 2 s.
    for (i, after) in dropped_after.iter().enumerate() {
        let after = after.unwrap();
        assert!(
            after >= Duration::from_millis(1900),
            "hog {i} dropped {after:?} after connecting: not paused first"
        );
    }

    // What a hog can still read is a small part of the 200 MB asked for (what sat in socket
    // buffers), then the end of the connection.
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
        reader.send(&encode(&["GET", "big"]).repeat(8));
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
    // The proxy's idea of each client's last activity comes after these instants.
    let idle_since = Instant::now();
    assert_eq!(idle.cmd(&["PING"]), Reply::pong());
    let silent_since = Instant::now();
    let mut silent = proxy.connect(); // never sends anything
    let mut active = proxy.connect();
    let start = Instant::now();

    // The active client sends something every 100ms, for at least 2.5s and until the others
    // are closed, and is never closed.
    let mut closed_at = [None, None];
    while start.elapsed() < Duration::from_millis(2500) || closed_at.iter().any(Option::is_none) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "idle clients not closed after 10s: {closed_at:?}"
        );
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
                    Err(_) => closed_at[i] = Some(Instant::now()),
                    Ok(r) => panic!("idle client got an unsolicited reply {r:?}"),
                }
            }
        }
        // The active client's pace: well within the 300ms timeout.
        thread::sleep(Duration::from_millis(100));
    }
    for (i, (name, since)) in [
        ("idle", idle_since),
        ("silent (never sent anything)", silent_since),
    ]
    .into_iter()
    .enumerate()
    {
        let at = closed_at[i].unwrap() - since;
        eprintln!("{name} client closed after {at:?}");
        // 300ms, less up to one tick (50ms) of the shard's clock.
        assert!(
            at >= Duration::from_millis(250),
            "{name} client closed too early, after {at:?}"
        );
        // 300ms, plus up to 1s until the proxy's next idle check, plus slack.
        assert!(
            at <= Duration::from_millis(3000),
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
