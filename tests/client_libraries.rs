//! Real client libraries at their DEFAULT settings against the proxy: redis-py 8 and node-redis 6
//! (both open with HELLO 3) and ioredis 5 (RESP2). `tests/clients/run.sh` installs them (a venv
//! under target/ and `npm ci` in tests/clients, under a lock, so these tests may run at once) and
//! runs one check script per library; see the scripts for the list of checks.
//!
//! Each library runs twice, every check both times: straight at redis-server (`DIRECT=1`, to
//! show that the checks themselves are right) and through the proxy.
mod common;

use common::*;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Room for a first install on a fresh machine (pip, npm) plus the checks (a few seconds each).
const RUN_TIMEOUT: Duration = Duration::from_secs(900);

/// Runs `bash tests/clients/run.sh <lib>` with exactly the given check variables; panics with
/// everything it printed unless it exits 0 (the harness adds the proxy's log).
fn run_checks(lib: &str, env: &[(&str, String)]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("bash");
    cmd.arg(root.join("tests/clients/run.sh"))
        .arg(lib)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a run that overstays can be stopped whole.
        .process_group(0);
    for var in ["PROXY_PORT", "REDIS_PORT", "DIRECT", "SKIP_PENDING"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let mut child = cmd.spawn().expect("spawn bash tests/clients/run.sh");
    let pgid = child.id();

    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });

    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait run.sh") {
            break Some(status);
        }
        if start.elapsed() >= RUN_TIMEOUT {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .status();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let elapsed = start.elapsed();
    let report = format!(
        "--- run.sh {lib} output ---\n{out}--- stderr ---\n{err}--- ({:.1} s, env {env:?})",
        elapsed.as_secs_f64()
    );
    match status {
        None => panic!("{lib}: run.sh still running after {RUN_TIMEOUT:?}: stopped\n{report}"),
        Some(s) if !s.success() => panic!("{lib}: client checks failed ({s})\n{report}"),
        Some(_) => println!("{report}"), // shown with --nocapture
    }
}

fn through_proxy(lib: &str) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    // Every check, SELECT per connection and CLIENT SETNAME/GETNAME included (no SKIP_PENDING:
    // it was needed only while the proxy refused those two).
    let env = [
        ("PROXY_PORT", proxy.port().to_string()),
        ("REDIS_PORT", redis.port().to_string()),
    ];
    run_checks(lib, &env);
    assert_eq!(
        proxy.connect().cmd(&["PING"]),
        Reply::pong(),
        "proxy still answers after the {lib} checks"
    );
}

fn against_redis_server(lib: &str) {
    let redis = RedisServer::start();
    let env = [
        ("REDIS_PORT", redis.port().to_string()),
        ("DIRECT", "1".to_string()),
    ];
    run_checks(lib, &env);
}

#[test]
fn redis_py_through_proxy() {
    through_proxy("redis-py");
}

#[test]
fn node_redis_through_proxy() {
    through_proxy("node-redis");
}

#[test]
fn ioredis_through_proxy() {
    through_proxy("ioredis");
}

#[test]
fn redis_py_against_redis_server() {
    against_redis_server("redis-py");
}

#[test]
fn node_redis_against_redis_server() {
    against_redis_server("node-redis");
}

#[test]
fn ioredis_against_redis_server() {
    against_redis_server("ioredis");
}
