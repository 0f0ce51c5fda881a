//! Configuration: `redis://` targets (credentials, db), environment
//! variables, the `--config` file and its precedence, `--check-config`, and
//! invalid settings rejected at start-up.
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

const TIMEOUT: Duration = Duration::from_secs(10);

/// `--check-config` with `args`/`env`: (exit code, stdout, stderr).
fn check(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut all = vec!["--check-config"];
    all.extend_from_slice(args);
    let (status, out, err) = Proxy::run_capture(&all, env, TIMEOUT);
    (status.code(), out, err)
}

/// The `key = value  # source` line --check-config printed for `key`.
fn setting(out: &str, key: &str) -> (String, String) {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")) || l.starts_with(&format!("# {key} (")))
        .unwrap_or_else(|| panic!("no {key} in:\n{out}"));
    let (value, source) = line.rsplit_once('#').expect("a source comment");
    let value = value.trim().split_once(" = ").map_or("", |(_, v)| v);
    (value.to_string(), source.trim().to_string())
}

#[test]
fn check_config_prints_defaults() {
    let (code, out, err) = check(&[], &[]);
    assert_eq!(code, Some(0), "stderr: {err}");
    for (key, value) in [
        ("listen", "\"127.0.0.1:6380\""),
        ("capacity", "10000"),
        ("expire", "\"5m\""),
        ("max-clients", "10000"),
        ("invalidation", "\"tracking\""),
        ("log-level", "\"info\""),
        ("log-format", "\"text\""),
    ] {
        assert_eq!(
            setting(&out, key),
            (value.into(), "default".into()),
            "{key}"
        );
    }
    assert_eq!(setting(&out, "threads").1, "default");
    assert!(out.contains("# threads (unset)"), "{out}");
    assert!(out.trim_end().ends_with("configuration OK"), "{out}");
}

#[test]
fn precedence_flags_env_file_defaults() {
    let file = TempFile::new(
        "precedence.toml",
        "capacity = 111\nexpire = \"3m\"\nmax-clients = 333\nlog-format = \"json\"\n",
    );
    let (code, out, err) = check(
        &["--config", file.path(), "--capacity", "1"],
        &[("REDIS_PROXY_CAPACITY", "2"), ("REDIS_PROXY_EXPIRE", "2m")],
    );
    assert_eq!(code, Some(0), "stderr: {err}");
    assert_eq!(setting(&out, "capacity"), ("1".into(), "flag".into()));
    assert_eq!(setting(&out, "expire"), ("\"2m\"".into(), "env".into()));
    assert_eq!(setting(&out, "max-clients"), ("333".into(), "file".into()));
    assert_eq!(
        setting(&out, "log-format"),
        ("\"json\"".into(), "file".into())
    );
    assert_eq!(
        setting(&out, "backend-timeout"),
        ("\"5s\"".into(), "default".into())
    );
    // The file named by the environment instead of a flag.
    let path = file.path().to_string();
    let (code, out, _) = check(&[], &[("REDIS_PROXY_CONFIG", &path)]);
    assert_eq!(code, Some(0));
    assert_eq!(setting(&out, "capacity"), ("111".into(), "file".into()));
}

#[test]
fn config_file_drives_the_running_proxy() {
    let redis = RedisServer::start();
    let file = TempFile::new(
        "running.toml",
        "capacity = 0\nthreads = 1\nconnect-timeout = \"500ms\"\n",
    );
    let proxy = Proxy::start(redis.port(), &["--config", file.path()]);
    let mut p = proxy.connect();
    assert_eq!(p.cmd(&["SET", "k", "v"]), Reply::ok());
    let n0 = redis.cmdstat_calls("get");
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    assert_eq!(redis.cmdstat_calls("get"), n0 + 2, "capacity = 0 ignored");
}

#[test]
fn config_file_rejections_name_file_key_and_reason() {
    let cases: &[(&str, &str, &str)] = &[
        ("capcity = 5", "'capcity'", "unknown key"),
        (
            "max_clients = 5",
            "'max_clients'",
            "did you mean 'max-clients'",
        ),
        ("config = \"other.toml\"", "'config'", "unknown key"),
        (
            "capacity = \"lots\"",
            "'capacity'",
            "expected an integer, got string",
        ),
        ("expire = 300", "'expire'", "expected a string, got integer"),
        (
            "listen = true",
            "'listen'",
            "expected a string, got boolean",
        ),
        ("expire = \"soon\"", "'expire'", "invalid value 'soon'"),
        (
            "invalidation = \"sometimes\"",
            "'invalidation'",
            "invalid value",
        ),
        ("log-level = \"loud\"", "'log-level'", "invalid value"),
        ("threads = 0", "'threads'", "--threads must be at least 1"),
        ("expire = \"30days\"", "'expire'", "at most 20 days"),
        ("max-clients = -1", "'max-clients'", "invalid value '-1'"),
        ("capacity = [", "invalid TOML", "line 1"),
    ];
    for (text, what, why) in cases {
        let file = TempFile::new("bad.toml", text);
        for args in [
            vec!["--config", file.path(), "--check-config"],
            vec!["--config", file.path(), "--listen", "127.0.0.1:0"],
        ] {
            let (status, out, err) = Proxy::run_capture(&args, &[], TIMEOUT);
            assert_eq!(status.code(), Some(2), "{text:?} {args:?}: {err}");
            assert!(out.is_empty(), "{text:?}: printed a configuration: {out}");
            for needle in [file.path(), what, why] {
                assert!(err.contains(needle), "{text:?}: {needle:?} not in {err:?}");
            }
        }
    }
    let (code, _, err) = check(&["--config", "/nonexistent/redis-proxy.toml"], &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("/nonexistent/redis-proxy.toml: cannot read"),
        "{err}"
    );
    // A value the file would refuse is fine when a flag overrides it... only if the file's
    // value is valid itself: the whole file is checked.
    let file = TempFile::new("overridden.toml", "capacity = \"lots\"");
    let (code, _, err) = check(&["--config", file.path(), "--capacity", "5"], &[]);
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn check_config_exits_2_on_bad_flags_and_env() {
    let (code, out, err) = check(&["--threads", "0"], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(err.contains("--threads must be at least 1"), "{err}");
    let (code, _, err) = check(&[], &[("REDIS_PROXY_EXPIRE", "soon")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("soon"), "{err}");
}

#[test]
fn check_config_masks_secrets() {
    const BACKEND_PW: &str = "backend-hunter2";
    const CLIENT_PW: &str = "client-hunter2";
    let url = format!("redis://bob:{BACKEND_PW}@127.0.0.1:6379/2");
    let file = TempFile::new(
        "secrets.toml",
        &format!("redis = \"{url}\"\nrequirepass = \"{CLIENT_PW}\"\n"),
    );
    let from_flags = ["--redis", url.as_str(), "--requirepass", CLIENT_PW];
    let from_env = [
        ("REDIS_PROXY_REDIS", url.as_str()),
        ("REDIS_PROXY_REQUIREPASS", CLIENT_PW),
    ];
    for (args, env) in [
        (vec!["--config", file.path()], vec![]),
        (from_flags.to_vec(), vec![]),
        (vec![], from_env.to_vec()),
    ] {
        let (code, out, err) = check(&args, &env);
        assert_eq!(code, Some(0), "{err}");
        for pw in [BACKEND_PW, CLIENT_PW] {
            assert!(
                !out.contains(pw) && !err.contains(pw),
                "secret shown:\n{out}{err}"
            );
        }
        assert_eq!(
            setting(&out, "redis").0,
            "\"redis://bob:***@127.0.0.1:6379/2\""
        );
        assert_eq!(setting(&out, "requirepass").0, "\"***\"");
    }
}

#[test]
fn docker_example_config_is_valid() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docker/config/redis-proxy.toml"
    );
    let (code, out, err) = check(&["--config", path], &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(setting(&out, "capacity").1, "file");
}
