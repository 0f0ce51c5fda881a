//! SIGHUP: the config file is read again; live settings take effect in the running process,
//! restart-only ones are logged, and a bad file is refused with the running configuration kept.
mod common;

use common::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
const RELOADED: &str = "configuration reloaded";

/// Sends SIGHUP and waits for the `n`th log line containing `needle` (reload lines repeat).
fn hup_and_wait(proxy: &Proxy, needle: &str) -> String {
    let before = proxy.log_contents().matches(needle).count();
    proxy.signal("HUP");
    let mut log = String::new();
    let seen = wait_until(WAIT, || {
        log = proxy.log_contents();
        log.matches(needle).count() > before
    });
    assert!(seen, "no new {needle:?} line after SIGHUP; log:\n{log}");
    log
}

fn start(redis: &RedisServer, file: &TempFile) -> Proxy {
    let proxy = Proxy::start(redis.port(), &["--config", file.path()]);
    proxy.wait_log("listening on", WAIT);
    proxy
}

#[test]
fn expire_applies_to_entries_cached_after_the_reload() {
    let redis = RedisServer::start();
    // No tracking: only --expire bounds how long a value written straight to Redis stays stale.
    let file = TempFile::new(
        "expire.toml",
        "threads = 1\ninvalidation = \"off\"\nexpire = \"10m\"\n",
    );
    let proxy = start(&redis, &file);
    let mut p = proxy.connect();
    redis.cmd(&["SET", "old", "v1"]);
    assert_eq!(p.cmd(&["GET", "old"]), Reply::bulk("v1"));
    file.write("threads = 1\ninvalidation = \"off\"\nexpire = \"200ms\"\n");
    let log = hup_and_wait(&proxy, RELOADED);
    assert!(log.contains("expire now in effect"), "{log}");
    redis.cmd(&["SET", "new", "v1"]);
    assert_eq!(p.cmd(&["GET", "new"]), Reply::bulk("v1"));
    redis.cmd(&["SET", "new", "v2"]);
    redis.cmd(&["SET", "old", "v2"]);
    let mut last = Reply::nil();
    let fresh = wait_until(WAIT, || {
        last = p.cmd(&["GET", "new"]);
        last == Reply::bulk("v2")
    });
    assert!(
        fresh,
        "entry cached after the reload outlived expire = 200ms: {last:?}"
    );
    // Entries cached before keep the lifetime they were given.
    assert_eq!(p.cmd(&["GET", "old"]), Reply::bulk("v1"));
}

#[test]
fn requirepass_changes_for_new_authentications() {
    let redis = RedisServer::start();
    let file = TempFile::new("pass.toml", "threads = 2\nrequirepass = \"first-pw\"\n");
    let proxy = start(&redis, &file);
    let mut before = proxy.connect();
    assert_eq!(before.cmd(&["AUTH", "first-pw"]), Reply::ok());
    file.write("threads = 2\nrequirepass = \"second-pw\"\n");
    let log = hup_and_wait(&proxy, RELOADED);
    assert!(log.contains("requirepass now in effect"), "{log}");
    // Every shard has it: several connections land on both.
    for _ in 0..8 {
        let mut c = proxy.connect();
        assert_err_prefix(&c.cmd(&["GET", "k"]), "NOAUTH");
        assert_err_prefix(&c.cmd(&["AUTH", "first-pw"]), "WRONGPASS");
        assert_eq!(c.cmd(&["AUTH", "second-pw"]), Reply::ok());
        assert_eq!(c.cmd(&["SET", "k", "v"]), Reply::ok());
    }
    // As with redis-server's CONFIG SET requirepass, connections already in stay in.
    assert_eq!(before.cmd(&["GET", "k"]), Reply::bulk("v"));
    // Removing the password opens the door.
    file.write("threads = 2\n");
    hup_and_wait(&proxy, RELOADED);
    assert_eq!(proxy.connect().cmd(&["GET", "k"]), Reply::bulk("v"));
    let log = proxy.log_contents();
    for pw in ["first-pw", "second-pw"] {
        assert!(!log.contains(pw), "password in the log:\n{log}");
    }
}

#[test]
fn max_clients_changes_live() {
    let redis = RedisServer::start();
    let file = TempFile::new("clients.toml", "threads = 1\nmax-clients = 100\n");
    let proxy = start(&redis, &file);
    let mut held: Vec<Raw> = (0..3).map(|_| proxy.connect()).collect();
    for c in &mut held {
        assert_eq!(c.cmd(&["PING"]), Reply::pong());
    }
    file.write("threads = 1\nmax-clients = 3\n");
    let log = hup_and_wait(&proxy, RELOADED);
    assert!(log.contains("max-clients now in effect"), "{log}");
    let mut extra = proxy.connect();
    assert_err_prefix(&extra.cmd(&["PING"]), "ERR max number of clients reached");
    proxy.wait_log("limit hit: max-clients", WAIT);
    // Raised again: room for more.
    file.write("threads = 1\nmax-clients = 10\n");
    hup_and_wait(&proxy, RELOADED);
    assert_eq!(proxy.connect().cmd(&["PING"]), Reply::pong());
}

#[test]
fn bad_file_is_refused_and_the_running_configuration_kept() {
    let redis = RedisServer::start();
    let file = TempFile::new("keep.toml", "threads = 1\nrequirepass = \"kept-pw\"\n");
    let proxy = start(&redis, &file);
    for (bad, reason) in [
        (
            "threads = 1\nrequirepass = \"x\"\nno-such-key = 1\n",
            "'no-such-key': unknown key",
        ),
        (
            "threads = 1\nmax-clients = \"many\"\n",
            "'max-clients': expected an integer",
        ),
        (
            "threads = 1\nexpire = \"0s\"\n",
            "'expire': --expire must be positive",
        ),
        ("threads = [\n", "invalid TOML"),
    ] {
        file.write(bad);
        let log = hup_and_wait(&proxy, "configuration refused");
        let line = log
            .lines()
            .rfind(|l| l.contains("configuration refused"))
            .unwrap();
        assert!(
            line.contains(file.path()) && line.contains(reason),
            "{bad:?}: {line}"
        );
        let mut c = proxy.connect();
        assert_err_prefix(&c.cmd(&["AUTH", "x"]), "WRONGPASS");
        assert_eq!(c.cmd(&["AUTH", "kept-pw"]), Reply::ok());
        assert_eq!(c.cmd(&["PING"]), Reply::pong());
    }
    std::fs::remove_file(file.path()).unwrap();
    let log = hup_and_wait(&proxy, "configuration refused");
    assert!(log.contains("cannot read"), "{log}");
    assert_eq!(proxy.connect().cmd(&["AUTH", "kept-pw"]), Reply::ok());
}

#[test]
fn restart_only_changes_are_logged_not_applied() {
    let redis = RedisServer::start();
    let file = TempFile::new("restart.toml", "threads = 1\ncapacity = 1000\n");
    let proxy = start(&redis, &file);
    file.write("threads = 2\ncapacity = 0\nmax-clients = 50\n");
    let log = hup_and_wait(&proxy, RELOADED);
    for needle in [
        "capacity changed (1000 -> 0): needs a restart",
        "threads changed (1 -> 2): needs a restart",
        "max-clients now in effect",
    ] {
        assert!(log.contains(needle), "{needle:?} not in:\n{log}");
    }
    // Still caching: the capacity did not change.
    let mut p = proxy.connect();
    p.cmd(&["SET", "k", "v"]);
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    let n0 = redis.cmdstat_calls("get");
    assert_eq!(p.cmd(&["GET", "k"]), Reply::bulk("v"));
    assert_eq!(redis.cmdstat_calls("get"), n0, "capacity = 0 applied live");
}

#[test]
fn log_level_changes_live() {
    let redis = RedisServer::start();
    let file = TempFile::new("level.toml", "threads = 1\nlog-level = \"warn\"\n");
    let proxy = Proxy::start(redis.port(), &["--config", file.path()]);
    // At warn, a reload's own (info) line is not logged; a restart-only change (warn) is.
    file.write("threads = 1\nlog-level = \"warn\"\ncapacity = 5\n");
    let log = hup_and_wait(&proxy, "needs a restart");
    assert!(!log.contains(" INFO "), "info lines at warn:\n{log}");
    file.write("threads = 1\nlog-level = \"info\"\n");
    let log = hup_and_wait(&proxy, RELOADED);
    assert!(log.contains("log-level now in effect"), "{log}");
}

#[test]
fn password_file_rotates_without_a_config_file() {
    let redis = RedisServer::start();
    let pass = TempFile::new("pass", "rotated-1\n");
    let proxy = Proxy::start(
        redis.port(),
        &["--threads", "1", "--requirepass-file", pass.path()],
    );
    assert_eq!(proxy.connect().cmd(&["AUTH", "rotated-1"]), Reply::ok());
    pass.write("rotated-2\n");
    let log = hup_and_wait(&proxy, RELOADED);
    assert!(log.contains("requirepass now in effect"), "{log}");
    let mut c = proxy.connect();
    assert_err_prefix(&c.cmd(&["AUTH", "rotated-1"]), "WRONGPASS");
    assert_eq!(c.cmd(&["AUTH", "rotated-2"]), Reply::ok());
}
