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
fn hello_negotiates_resp2_only() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &[]);
    let mut p = proxy.connect();
    assert_hello_resp2(&p.cmd(&["HELLO"]));
    assert_hello_resp2(&p.cmd(&["HELLO", "2"]));
    assert_hello_resp2(&p.cmd(&["hello", "2", "SETNAME", "me"]));
    // RESP3 refused the way RESP3-capable clients understand as "use RESP2".
    assert_err_prefix(&p.cmd(&["HELLO", "3"]), "NOPROTO");
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
