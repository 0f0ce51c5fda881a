//! Client authentication (--requirepass) and HELLO, compared with what a
//! real redis-server with the same password answers.
mod common;

use common::*;
use std::time::Duration;

/// Replies of `script` on `c`, one per command.
fn run(c: &mut Raw, script: &[&[&str]]) -> Vec<Reply> {
    script.iter().map(|args| c.cmd(args)).collect()
}

#[test]
fn requirepass_behaves_like_redis_server() {
    let reference = RedisServer::start_with(&["--requirepass", "secret"]);
    let backend = RedisServer::start();
    let proxy = Proxy::start(
        backend.port(),
        &["--requirepass", "secret", "--threads", "1"],
    );

    let script: &[&[&str]] = &[
        &["GET", "k"],
        &["PING"],
        &["SET", "k", "v"],
        &["AUTH", "wrong"],
        &["AUTH", "default", "wrong"],
        &["AUTH", "nobody", "secret"],
        &["HELLO", "2"],
        &["HELLO", "2", "AUTH", "default", "wrong"],
        &["GET", "k"],
        &["AUTH", "secret"],
        &["GET", "k"],
        &["SET", "k", "v"],
        &["GET", "k"],
        &["AUTH", "default", "secret"],
        &["AUTH", "wrong"],
        &["GET", "k"],
    ];
    let want = run(&mut Raw::connect(reference.port()), script);
    let got = run(&mut proxy.connect(), script);
    for (i, args) in script.iter().enumerate() {
        if args[0] == "HELLO" && want[i].is_error() {
            // The wording of HELLO's NOAUTH text differs between redis
            // versions; the error code must match.
            let code = |r: &Reply| {
                r.error_text()
                    .map(|e| e.split(' ').next().unwrap().to_string())
            };
            assert_eq!(
                code(&got[i]),
                code(&want[i]),
                "step {i}: {args:?}: {:?}",
                got[i]
            );
            continue;
        }
        assert_eq!(got[i], want[i], "step {i}: {args:?}");
    }
    // The value really went to the backend.
    assert_eq!(backend.cmd(&["GET", "k"]), Reply::bulk("v"));

    // QUIT is allowed before AUTH.
    let mut c = proxy.connect();
    assert_eq!(c.cmd(&["QUIT"]), Reply::ok());
    c.expect_closed();
}

#[test]
fn auth_arity_like_redis_server() {
    let reference = RedisServer::start_with(&["--requirepass", "secret"]);
    let backend = RedisServer::start();
    let proxy = Proxy::start(backend.port(), &["--requirepass", "secret"]);
    for args in [&["AUTH"][..], &["AUTH", "a", "b", "c"][..]] {
        let want = Raw::connect(reference.port()).cmd(args);
        assert_eq!(proxy.connect().cmd(args), want, "{args:?}");
    }
}

#[test]
fn auth_without_requirepass_like_redis_server() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &[]);
    let mut d = redis.connect();
    let mut p = proxy.connect();
    for args in [
        &["AUTH", "whatever"][..],
        &["AUTH", "default", "whatever"][..],
        &["AUTH", "nobody", "whatever"][..],
    ] {
        assert_eq!(p.cmd(args), d.cmd(args), "{args:?}");
    }
    assert_eq!(p.cmd(&["PING"]), Reply::pong());
}

#[track_caller]
fn assert_hello_resp2(r: &Reply) {
    let Reply::Array(Some(items)) = r else {
        panic!("HELLO: expected a RESP2 array, got {r:?}");
    };
    assert!(items.len() % 2 == 0, "HELLO: odd number of items: {r:?}");
    let proto = items
        .chunks(2)
        .find(|kv| kv[0] == Reply::bulk("proto"))
        .unwrap_or_else(|| panic!("HELLO: no proto field: {r:?}"));
    assert_eq!(proto[1], Reply::Int(2), "HELLO must report RESP2");
}

#[test]
fn hello_2_and_errors_as_redis_server() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &[]);
    let mut p = proxy.connect();
    assert_hello_resp2(&p.cmd(&["HELLO"]));
    assert_hello_resp2(&p.cmd(&["HELLO", "2"]));
    assert_hello_resp2(&p.cmd(&["hello", "2", "SETNAME", "me"]));
    // (HELLO 3 and RESP3 replies: tests/resp3_clients.rs.)
    // Like redis-server 7: other versions and garbage.
    let mut d = redis.connect();
    for args in [
        &["HELLO", "4"][..],
        &["HELLO", "1"][..],
        &["HELLO", "x"][..],
    ] {
        let got = p.cmd(args);
        let want = d.cmd(args);
        assert!(got.is_error(), "{args:?}: {got:?}");
        assert_eq!(got, want, "{args:?}");
    }
    // Still plain RESP2 afterwards.
    assert_eq!(p.cmd(&["SET", "k", "v"]), Reply::ok());
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    assert_eq!(p.cmd(&["GET", "nope"]), Reply::nil());
}

#[test]
fn hello_auth_with_requirepass() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--requirepass", "pw"]);
    let mut p = proxy.connect();
    assert_err_prefix(&p.cmd(&["GET", "k"]), "NOAUTH");
    assert_err_prefix(
        &p.cmd(&["HELLO", "2", "AUTH", "default", "bad"]),
        "WRONGPASS",
    );
    assert_err_prefix(&p.cmd(&["GET", "k"]), "NOAUTH");
    assert_hello_resp2(&p.cmd(&["HELLO", "2", "AUTH", "default", "pw"]));
    assert_eq!(p.cmd(&["GET", "k"]), Reply::nil());
    // Authentication is per connection.
    let mut q = proxy.connect();
    assert_err_prefix(&q.cmd(&["GET", "k"]), "NOAUTH");
}

#[test]
fn requirepass_from_file_and_env() {
    let redis = RedisServer::start();
    let path = std::env::temp_dir().join(format!(
        "redis-proxy-test-pass-{}-{}",
        std::process::id(),
        redis.port()
    ));
    std::fs::write(&path, "from-file\n").unwrap();
    let proxy = Proxy::start(
        redis.port(),
        &["--requirepass-file", path.to_str().unwrap()],
    );
    let mut p = proxy.connect();
    assert_err_prefix(&p.cmd(&["GET", "k"]), "NOAUTH");
    assert_err_prefix(&p.cmd(&["AUTH", "from-file\n"]), "WRONGPASS");
    assert_eq!(p.cmd(&["AUTH", "from-file"]), Reply::ok());
    assert_eq!(p.cmd(&["GET", "k"]), Reply::nil());
    drop(proxy);
    let _ = std::fs::remove_file(&path);

    let proxy = Proxy::start_env(
        redis.port(),
        &[],
        &[("REDIS_PROXY_REQUIREPASS", "from-env")],
    );
    let mut p = proxy.connect();
    assert_err_prefix(&p.cmd(&["GET", "k"]), "NOAUTH");
    assert_eq!(p.cmd(&["AUTH", "from-env"]), Reply::ok());
    assert_eq!(p.cmd(&["GET", "k"]), Reply::nil());
}

#[test]
fn real_client_with_password() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--requirepass", "s3cret"]);
    let timeout = Duration::from_secs(5);

    let good = redis::Client::open(format!("redis://:s3cret@{}/", proxy.addr())).unwrap();
    let mut con = good
        .get_connection_with_timeout(timeout)
        .expect("AUTH through the proxy");
    let () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(v, "v");

    let bad = redis::Client::open(format!("redis://:nope@{}/", proxy.addr())).unwrap();
    assert!(
        bad.get_connection_with_timeout(timeout).is_err(),
        "a wrong password must be rejected"
    );
}

// ---------------------------------------------------------------------------
// Backend credentials (--redis redis://[user]:password@host:port) and the
// warning for a non-loopback listener without --requirepass.
// ---------------------------------------------------------------------------

const BACKEND_PW: &str = "b4ckend-Pw-7f3a9c";
const WRONG_PW: &str = "Wr0ng-Pw-c41d2e";

#[test]
fn backend_password_from_url() {
    let mut redis = RedisServer::start_with(&["--requirepass", BACKEND_PW]);
    for (i, url) in [
        format!("redis://:{BACKEND_PW}@127.0.0.1:{}", redis.port()),
        format!("redis://default:{BACKEND_PW}@127.0.0.1:{}/", redis.port()),
    ]
    .iter()
    .enumerate()
    {
        let proxy = Proxy::start_with(url, &["--threads", "2"], &[]);
        let mut p = proxy.connect();
        assert_eq!(p.cmd(&["SET", "k", "through-auth"]), Reply::ok(), "{url}");
        assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("through-auth"));
        assert_eq!(p.cmd(&["INCR", &format!("n{i}")]), Reply::Int(1));
        assert_eq!(redis.cmd(&["GET", "k"]), Reply::bulk("through-auth"));
        let log = proxy.log_contents();
        assert!(!log.contains(BACKEND_PW), "password in the log:\n{log}");
    }

    // Re-authenticates after Redis restarts.
    let url = format!("redis://:{BACKEND_PW}@127.0.0.1:{}", redis.port());
    let proxy = Proxy::start_with(&url, &["--threads", "1", "--connect-timeout", "500ms"], &[]);
    let mut p = proxy.connect();
    assert_eq!(p.cmd(&["SET", "a", "1"]), Reply::ok());
    redis.restart();
    let ok = wait_until(Duration::from_secs(5), || {
        let r = p.cmd(&["SET", "a", "2"]);
        if r != Reply::ok() {
            assert_err_prefix(&r, "ERR backend");
        }
        r == Reply::ok()
    });
    assert!(
        ok,
        "no recovery after a restart of a password-protected Redis"
    );
    assert_eq!(redis.cmd(&["GET", "a"]), Reply::bulk("2"));
}

#[test]
fn wrong_backend_password_is_never_shown() {
    let redis = RedisServer::start_with(&["--requirepass", BACKEND_PW]);
    let url = format!("redis://:{WRONG_PW}@127.0.0.1:{}", redis.port());
    let proxy = Proxy::start_with(&url, &["--threads", "2", "--connect-timeout", "300ms"], &[]);
    let mut replies = Vec::new();
    let mut d = redis.connect();
    let mut connections = || -> u64 {
        match d.cmd(&["INFO", "stats"]) {
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(&b)
                .lines()
                .find_map(|l| l.strip_prefix("total_connections_received:"))
                .and_then(|n| n.trim().parse().ok())
                .expect("total_connections_received in INFO stats"),
            other => panic!("INFO stats: {other:?}"),
        }
    };
    // A few rounds, across reconnection attempts, on a few connections.
    for round in 0..5 {
        let attempts = connections();
        let mut p = proxy.connect();
        for args in [
            &["GET", "k"][..],
            &["SET", "k", "v"][..],
            &["INCR", "n"][..],
            &["MGET", "a", "b"][..],
            &["DEL", "k"][..],
        ] {
            let r = p.cmd(args);
            replies.push(format!("round {round} {args:?}: {r:?}"));
            assert_err_prefix(&r, "ERR backend");
            let text = r.error_text().unwrap().to_ascii_lowercase();
            assert!(
                text.contains("auth"),
                "the error should say authentication failed: {r:?}"
            );
        }
        // The next round after the proxy tried to connect again.
        let retried = wait_until(Duration::from_secs(5), || connections() > attempts);
        assert!(
            retried,
            "round {round}: the proxy stopped trying to connect"
        );
    }
    assert_eq!(proxy.connect().cmd(&["PING"]), Reply::pong());
    let log = proxy.log_contents();
    for r in &replies {
        assert!(!r.contains(WRONG_PW), "password in a reply: {r}");
    }
    assert!(!log.contains(WRONG_PW), "password in the log:\n{log}");
    assert!(
        log.to_ascii_lowercase().contains("auth"),
        "the log should say why Redis is unavailable:\n{log}"
    );

    // The same, configured through the environment.
    let proxy = Proxy::start_env_only(&[
        ("REDIS_PROXY_REDIS", url.as_str()),
        ("REDIS_PROXY_THREADS", "1"),
    ]);
    let r = proxy.connect().cmd(&["GET", "k"]);
    assert_err_prefix(&r, "ERR backend");
    assert!(
        !format!("{r:?}").contains(WRONG_PW),
        "password in a reply: {r:?}"
    );
    let log = proxy.log_contents();
    assert!(!log.contains(WRONG_PW), "password in the log:\n{log}");
}

#[test]
fn malformed_backend_url_error_hides_the_password() {
    // A typo elsewhere in the URL must not print the password in the start-up error.
    for url in [
        format!("redis://:{WRONG_PW}@127.0.0.1:99999"),
        format!("redis://:{WRONG_PW}@127.0.0.1:6379/notadb"),
        format!("rediss://:{WRONG_PW}@127.0.0.1:6379"),
    ] {
        let (status, stderr) = Proxy::run_to_exit(&["--redis", &url], &[], Duration::from_secs(10));
        assert!(!status.success(), "{url}: accepted");
        assert!(
            !stderr.contains(WRONG_PW),
            "password in the start-up error: {stderr}"
        );
        let (status, stderr) = Proxy::run_to_exit(
            &[],
            &[("REDIS_PROXY_REDIS", url.as_str())],
            Duration::from_secs(10),
        );
        assert!(!status.success(), "{url} (env): accepted");
        assert!(
            !stderr.contains(WRONG_PW),
            "password in the start-up error: {stderr}"
        );
    }
}

/// Runs the proxy binary with exactly `args`, waits until 127.0.0.1:`port` answers PING
/// (+PONG or -NOAUTH), returns it and its stderr log path.
fn spawn_listening(args: &[&str], port: u16) -> (std::process::Child, std::path::PathBuf) {
    use std::io::{Read, Write};
    let log = std::env::temp_dir().join(format!(
        "redis-proxy-auth-test-{}-{port}.log",
        std::process::id()
    ));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_redis-proxy"))
        .args(args)
        .env_remove("REDIS_PROXY_REQUIREPASS")
        .env_remove("REDIS_PROXY_REQUIREPASS_FILE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn redis-proxy");
    let ready = wait_until(Duration::from_secs(10), || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "proxy exited: {status:?}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 64];
        s.write_all(b"PING\r\n").is_ok()
            && matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
    });
    if !ready {
        let _ = child.kill();
        let _ = child.wait();
        panic!("proxy not ready on port {port}");
    }
    (child, log)
}

fn stop_child(mut child: std::process::Child, log: &std::path::Path) -> String {
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let _ = std::fs::remove_file(log);
    text
}

#[test]
fn non_loopback_listener_without_password_warns() {
    let redis = RedisServer::start();
    let backend = redis.addr();

    // 0.0.0.0 without --requirepass: a loud warning naming the fix.
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let (child, log) = spawn_listening(&["--listen", &listen, "--redis", &backend], port);
    let mut c = Raw::connect(port);
    assert_eq!(c.cmd(&["SET", "k", "v"]), Reply::ok());
    drop(c);
    let text = stop_child(child, &log);
    let warning = text
        .lines()
        .find(|l| l.contains("WARN") && l.contains("requirepass"))
        .unwrap_or_else(|| panic!("no WARN line mentioning requirepass:\n{text}"));
    assert!(
        warning.contains("0.0.0.0"),
        "the warning should name the address: {warning}"
    );

    // With --requirepass: no such warning.
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let (child, log) = spawn_listening(
        &[
            "--listen",
            &listen,
            "--redis",
            &backend,
            "--requirepass",
            "pw",
        ],
        port,
    );
    let mut c = Raw::connect(port);
    assert_err_prefix(&c.cmd(&["GET", "k"]), "NOAUTH");
    assert_eq!(c.cmd(&["AUTH", "pw"]), Reply::ok());
    assert_eq!(c.cmd(&["GET", "k"]), Reply::bulk("v"));
    drop(c);
    let text = stop_child(child, &log);
    assert!(
        !text
            .lines()
            .any(|l| l.contains("WARN") && l.contains("requirepass")),
        "warning despite --requirepass:\n{text}"
    );
    assert!(
        !text.contains("pw\n") && !text.contains("\"pw\""),
        "client password in the log:\n{text}"
    );

    // Loopback without a password: no warning (the default, safe setup).
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (child, log) = spawn_listening(&["--listen", &listen, "--redis", &backend], port);
    let text = stop_child(child, &log);
    assert!(
        !text
            .lines()
            .any(|l| l.contains("WARN") && l.contains("requirepass")),
        "warning for a loopback listener:\n{text}"
    );
}
