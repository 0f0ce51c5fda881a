//! Logs: text or JSON lines on stderr, the shard's id on a shard's events, the level rule
//! (--log-level given explicitly wins over RUST_LOG, which wins over the default), and never a
//! password, whatever is logged.
mod common;

use common::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Runs a proxy with `args`/`env` until it is up and has logged every line of `until`, then
/// stops it: its whole log.
fn run_and_stop(
    redis: &RedisServer,
    args: &[&str],
    env: &[(&str, &str)],
    until: &[&str],
) -> String {
    let mut proxy = Proxy::start_env(redis.port(), args, env);
    for needle in until {
        proxy.wait_log(needle, WAIT);
    }
    proxy.signal("TERM");
    assert!(proxy.wait_exit(WAIT).is_some(), "did not exit on SIGTERM");
    proxy.log_contents()
}

#[test]
fn text_lines_carry_the_shard_id() {
    let redis = RedisServer::start();
    let connected = ["shard 0: connected", "shard 1: connected"];
    let log = run_and_stop(&redis, &["--threads", "2"], &[], &connected);
    for id in 0..2 {
        let needle = format!(" INFO shard{{id={id}}}: shard {id}: connected to Redis");
        assert!(log.contains(&needle), "{needle:?} not in:\n{log}");
    }
    let start = log.lines().find(|l| l.contains(" listening on ")).unwrap();
    assert!(start.contains(" INFO redis-proxy "), "{start}");
    assert!(log.contains(" INFO bye"), "{log}");
}

#[test]
fn json_lines_are_objects_with_the_shard_id() {
    let redis = RedisServer::start();
    let connected = ["shard 0: connected", "shard 1: connected"];
    let args = ["--threads", "2", "--log-format", "json"];
    let log = run_and_stop(&redis, &args, &[], &connected);
    for line in log.lines() {
        assert!(
            line.starts_with("{\"timestamp\":") && line.ends_with('}'),
            "not a JSON line: {line}"
        );
    }
    for id in 0..2 {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("shard {id}: connected to Redis")))
            .unwrap_or_else(|| panic!("no connect line for shard {id}:\n{log}"));
        assert!(line.contains(r#""level":"INFO""#), "{line}");
        assert!(
            line.contains(&format!(r#""span":{{"id":{id},"name":"shard"}}"#)),
            "{line}"
        );
    }
}

#[test]
fn level_rule_flag_then_rust_log_then_info() {
    let redis = RedisServer::start();
    let infos = |log: &str| log.lines().filter(|l| l.contains(" INFO ")).count();
    // RUST_LOG alone applies.
    let log = run_and_stop(&redis, &["--threads", "1"], &[("RUST_LOG", "warn")], &[]);
    assert_eq!(infos(&log), 0, "RUST_LOG=warn ignored:\n{log}");
    // An explicit level wins over RUST_LOG: as a flag, a variable or a file key.
    let log = run_and_stop(
        &redis,
        &["--threads", "1", "--log-level", "info"],
        &[("RUST_LOG", "warn")],
        &[],
    );
    assert!(infos(&log) > 0, "--log-level info lost to RUST_LOG:\n{log}");
    let log = run_and_stop(
        &redis,
        &["--threads", "1"],
        &[("RUST_LOG", "info"), ("REDIS_PROXY_LOG_LEVEL", "error")],
        &[],
    );
    assert_eq!(
        infos(&log),
        0,
        "REDIS_PROXY_LOG_LEVEL lost to RUST_LOG:\n{log}"
    );
    let file = TempFile::new("level.toml", "log-level = \"error\"\n");
    let log = run_and_stop(
        &redis,
        &["--threads", "1", "--config", file.path()],
        &[("RUST_LOG", "info")],
        &[],
    );
    assert_eq!(
        infos(&log),
        0,
        "log-level in the file lost to RUST_LOG:\n{log}"
    );
    // Neither: info. (The start and shutdown lines are info, and both precede the exit.)
    let log = run_and_stop(&redis, &["--threads", "1"], &[], &[]);
    assert!(infos(&log) > 0, "{log}");
}

#[test]
fn passwords_never_logged_in_either_format() {
    const BACKEND_PW: &str = "backend-s3cret";
    const CLIENT_PW: &str = "client-s3cret";
    const NEW_PW: &str = "newclient-s3cret";
    let mut redis = RedisServer::start_with(&["--requirepass", BACKEND_PW]);
    for format in ["text", "json"] {
        let url = format!("redis://default:{BACKEND_PW}@127.0.0.1:{}", redis.port());
        let file = TempFile::new(
            "secrets.toml",
            &format!("redis = \"{url}\"\nrequirepass = \"{CLIENT_PW}\"\nthreads = 1\n"),
        );
        // Configured through the file only: a --redis flag would outrank its URL.
        let mut proxy = Proxy::start_env_only(&[
            ("REDIS_PROXY_CONFIG", file.path()),
            ("REDIS_PROXY_LOG_FORMAT", format),
        ]);
        proxy.wait_log("connected to Redis", WAIT);
        let mut c = proxy.connect();
        assert_err_prefix(&c.cmd(&["AUTH", "wrong"]), "WRONGPASS");
        assert_eq!(c.cmd(&["AUTH", CLIENT_PW]), Reply::ok());
        assert_eq!(c.cmd(&["SET", "k", "v"]), Reply::ok());
        // Backend lost and back; a reload with a live and a restart-only secret change.
        redis.restart();
        proxy.wait_log("reconnected to Redis", WAIT);
        let other = format!(
            "redis://default:other-{BACKEND_PW}@127.0.0.1:{}",
            redis.port()
        );
        file.write(&format!(
            "redis = \"{other}\"\nrequirepass = \"{NEW_PW}\"\nthreads = 1\n"
        ));
        proxy.signal("HUP");
        proxy.wait_log("requirepass now in effect", WAIT);
        proxy.signal("TERM");
        assert!(proxy.wait_exit(WAIT).is_some());
        let log = proxy.log_contents();
        assert!(log.contains("redis changed"), "{log}");
        assert!(log.contains(":***@127.0.0.1"), "{log}");
        for pw in [BACKEND_PW, CLIENT_PW, NEW_PW] {
            assert!(!log.contains(pw), "{format}: {pw} in the log:\n{log}");
        }
    }
}
