//! Configuration: `redis://` targets (credentials, db), environment
//! variables, and invalid settings rejected at start-up.
mod common;

use common::*;
use std::time::Duration;

#[test]
fn redis_url_selects_db() {
    let redis = RedisServer::start();
    let proxy = Proxy::start_with(
        &format!("redis://127.0.0.1:{}/3", redis.port()),
        &["--threads", "2"],
        &[],
    );
    let mut p = proxy.connect();
    assert_eq!(p.cmd(&["SET", "k", "in-db-3"]), Reply::ok());
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("in-db-3"));
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("in-db-3"));
    let mut d = redis.connect();
    assert_eq!(d.cmd(&["GET", "k"]), Reply::nil(), "must not land in db 0");
    assert_eq!(d.cmd(&["SELECT", "3"]), Reply::ok());
    assert_eq!(d.cmd(&["GET", "k"]), Reply::bulk("in-db-3"));
    // Coherence works in that db too.
    assert_eq!(d.cmd(&["SET", "k", "changed"]), Reply::ok());
    let mut last = Reply::nil();
    let ok = wait_until(Duration::from_secs(2), || {
        last = p.cmd(&["GET", "k"]);
        last == Reply::bulk("changed")
    });
    assert!(ok, "external write in db 3 never seen; last {last:?}");
}

#[test]
fn redis_url_with_password() {
    let redis = RedisServer::start_with(&["--requirepass", "backend-pw"]);
    let proxy = Proxy::start_with(
        &format!("redis://:backend-pw@127.0.0.1:{}", redis.port()),
        &["--threads", "1"],
        &[],
    );
    let mut p = proxy.connect();
    assert_eq!(p.cmd(&["SET", "k", "v"]), Reply::ok());
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    assert_eq!(redis.cmd(&["GET", "k"]), Reply::bulk("v"));
}

#[test]
fn redis_url_with_acl_user() {
    let redis = RedisServer::start();
    assert_eq!(
        redis.cmd(&[
            "ACL",
            "SETUSER",
            "proxyuser",
            "on",
            ">userpw",
            "~*",
            "&*",
            "+@all"
        ]),
        Reply::ok()
    );
    assert_eq!(
        redis.cmd(&["ACL", "SETUSER", "default", "off"]),
        Reply::ok()
    );
    let proxy = Proxy::start_with(
        &format!("redis://proxyuser:userpw@127.0.0.1:{}/", redis.port()),
        &["--threads", "1"],
        &[],
    );
    let mut p = proxy.connect();
    assert_eq!(p.cmd(&["SET", "k", "v"]), Reply::ok());
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
}

#[test]
fn wrong_backend_password_gives_errors_not_hangs() {
    let redis = RedisServer::start_with(&["--requirepass", "right"]);
    let proxy = Proxy::start_with(
        &format!("redis://:wrong@127.0.0.1:{}", redis.port()),
        &["--threads", "1", "--connect-timeout", "500ms"],
        &[],
    );
    let mut p = proxy.connect();
    let start = std::time::Instant::now();
    assert_err_prefix(&p.cmd(&["GET", "k"]), "ERR");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(p.cmd(&["PING"]), Reply::pong());
}

#[test]
fn configured_from_environment_only() {
    let redis = RedisServer::start();
    let redis_addr = redis.addr();
    let proxy = Proxy::start_env_only(&[
        ("REDIS_PROXY_REDIS", redis_addr.as_str()),
        ("REDIS_PROXY_THREADS", "1"),
        ("REDIS_PROXY_CAPACITY", "0"),
        ("REDIS_PROXY_EXPIRE", "2m"),
        ("REDIS_PROXY_CONNECT_TIMEOUT", "500ms"),
        ("REDIS_PROXY_REDIS_OPS_LIMIT", "16"),
    ]);
    let mut p = proxy.connect();
    assert_eq!(p.cmd(&["SET", "k", "v"]), Reply::ok());
    let n0 = redis.cmdstat_calls("get");
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    assert_eq!(
        redis.cmdstat_calls("get"),
        n0 + 2,
        "REDIS_PROXY_CAPACITY=0 ignored"
    );
}

#[test]
fn flags_override_environment() {
    let redis = RedisServer::start();
    let proxy = Proxy::start_env(
        redis.port(),
        &["--capacity", "100", "--threads", "1"],
        &[("REDIS_PROXY_CAPACITY", "0")],
    );
    let mut p = proxy.connect();
    assert_eq!(p.cmd(&["SET", "k", "v"]), Reply::ok());
    let n0 = redis.cmdstat_calls("get");
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    assert_eq!(
        redis.cmdstat_calls("get"),
        n0 + 1,
        "--capacity must win over the env var"
    );
}

#[test]
fn invalid_settings_exit_nonzero_quickly() {
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let base = ["--listen", listen.as_str(), "--redis", "127.0.0.1:1"];
    let cases: &[&[&str]] = &[
        &["--threads", "0"],
        &["--capacity", "lots"],
        &["--expire", "soon"],
        &["--connect-timeout", "0s"],
        &["--redis-ops-limit", "0"],
        &["--no-such-flag"],
        &["--listen", "not an address"],
        &["--redis", "redis://"],
    ];
    for extra in cases {
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(extra);
        let (status, stderr) = Proxy::run_to_exit(&args, &[], Duration::from_secs(5));
        assert!(!status.success(), "{extra:?} accepted (stderr: {stderr})");
        assert!(!stderr.trim().is_empty(), "{extra:?}: no message on stderr");
    }
    let (status, _) = Proxy::run_to_exit(&["--help"], &[], Duration::from_secs(5));
    assert!(status.success());
    let (status, stderr) = Proxy::run_to_exit(
        &["--listen", &listen, "--redis", "127.0.0.1:1"],
        &[("REDIS_PROXY_THREADS", "zero")],
        Duration::from_secs(5),
    );
    assert!(!status.success(), "bad env var accepted: {stderr}");
}

#[test]
fn redis_unreachable_at_startup_then_appears() {
    // The proxy starts (and answers locally) even if redis is not up yet.
    let port = free_port();
    let proxy = Proxy::start(port, &["--threads", "1", "--connect-timeout", "300ms"]);
    let mut p = proxy.connect();
    assert_eq!(p.cmd(&["PING"]), Reply::pong());
    assert_err_prefix(&p.cmd(&["GET", "k"]), "ERR backend");
    // Bring redis up on that port.
    let redis = RedisServer::start_on_port(port);
    let mut last = Reply::nil();
    let ok = wait_until(Duration::from_secs(5), || {
        last = p.cmd(&["SET", "k", "v"]);
        last == Reply::ok()
    });
    assert!(ok, "never recovered once redis came up; last {last:?}");
    assert_eq!(redis.cmd(&["GET", "k"]), Reply::bulk("v"));
}
