//! The admin endpoint (`--admin`): /healthz, /readyz following the backend, /metrics parsed by
//! Prometheus's own parser (prometheus_client; promtool too where installed) and counters
//! moving with the traffic that should move them.

mod common;

use common::{free_port, wait_until, Proxy, Raw, RedisServer, Reply};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// `(status, body)` of one HTTP request to the admin port.
fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the admin port");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read the response");
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {resp:?}"));
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

fn get(port: u16, path: &str) -> (u16, String) {
    http(port, "GET", path)
}

fn start(redis: &RedisServer, extra: &[&str]) -> (Proxy, u16) {
    let admin = free_port();
    let addr = format!("127.0.0.1:{admin}");
    let mut args = vec!["--admin", addr.as_str()];
    args.extend_from_slice(extra);
    let proxy = Proxy::start(redis.port(), &args);
    (proxy, admin)
}

/// The venv of the client-library tests, with prometheus_client in it.
fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("bash")
        .arg(root.join("tests/clients/run.sh"))
        .args(["--install-only", "redis-py"])
        .status()
        .expect("run tests/clients/run.sh");
    assert!(status.success(), "installing the test venv failed");
    root.join("target/client-venv/bin/python")
}

fn run_with_input(cmd: &mut Command, input: &str) -> (bool, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn checker");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Every sample of a scrape, as `name{k=v,...}` -> value, read by prometheus_client's parser.
struct Scraper {
    port: u16,
    python: PathBuf,
}

impl Scraper {
    fn scrape(&self) -> HashMap<String, f64> {
        let (status, text) = get(self.port, "/metrics");
        assert_eq!(status, 200, "{text}");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/prom_parse.py");
        let (ok, out) = run_with_input(Command::new(&self.python).arg(script), &text);
        assert!(ok, "prometheus_client refused /metrics: {out}\n{text}");
        out.lines()
            .map(|l| {
                let mut f = l.split('\t');
                let (name, labels, value) =
                    (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
                (format!("{name}{{{labels}}}"), value.parse().unwrap())
            })
            .collect()
    }

    fn value(&self, series: &str) -> f64 {
        *self
            .scrape()
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in /metrics"))
    }

    /// Waits until `series` reaches `want` (gauges are published on the shard's tick).
    fn wait_for(&self, series: &str, want: f64) {
        let mut last = f64::NAN;
        let ok = wait_until(WAIT, || {
            last = self.value(series);
            last == want
        });
        assert!(ok, "{series} stayed {last}, expected {want}");
    }
}

#[test]
fn health_readiness_and_routes() {
    let redis = RedisServer::start();
    let (_proxy, admin) = start(&redis, &["--threads", "2"]);
    assert_eq!(get(admin, "/healthz"), (200, "ok\n".into()));
    assert!(wait_until(WAIT, || get(admin, "/readyz").0 == 200));
    assert_eq!(get(admin, "/readyz?verbose=1").1, "ready\n");
    assert_eq!(get(admin, "/nope").0, 404);
    assert_eq!(get(admin, "/").0, 404);
    assert_eq!(http(admin, "POST", "/metrics").0, 405);
    // Not HTTP at all: refused, and the endpoint keeps serving.
    let mut s = TcpStream::connect(("127.0.0.1", admin)).unwrap();
    s.write_all(b"\x00\x01garbage\r\n\r\n").unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp:?}");
    assert_eq!(get(admin, "/healthz").0, 200);
}

#[test]
fn readyz_follows_the_backend() {
    let mut redis = RedisServer::start();
    let (proxy, admin) = start(&redis, &["--threads", "2"]);
    let scraper = Scraper {
        port: admin,
        python: python(),
    };
    assert!(wait_until(WAIT, || get(admin, "/readyz").0 == 200));
    scraper.wait_for("redis_proxy_backend_up{shard=0}", 1.0);
    redis.kill();
    let mut last = (0, String::new());
    let down = wait_until(WAIT, || {
        last = get(admin, "/readyz");
        // Each shard notices on its own tick.
        last.0 == 503 && (0..2).all(|i| last.1.contains(&format!("shard {i}: backend not up")))
    });
    assert!(down, "readyz stayed {last:?} with Redis killed");
    // Alive all the same, and it says so.
    assert_eq!(get(admin, "/healthz").0, 200);
    assert_eq!(scraper.value("redis_proxy_backend_up{shard=1}"), 0.0);
    redis.restart();
    assert!(wait_until(WAIT, || get(admin, "/readyz").0 == 200));
    assert!(scraper.value("redis_proxy_backend_reconnects_total{shard=0}") >= 1.0);
    let mut c = proxy.connect();
    assert_eq!(c.cmd(&["SET", "k", "v"]), Reply::ok());
}

#[test]
fn counters_move_with_traffic() {
    let redis = RedisServer::start();
    let (proxy, admin) = start(&redis, &["--threads", "1", "--max-clients", "2"]);
    let scraper = Scraper {
        port: admin,
        python: python(),
    };
    assert!(wait_until(WAIT, || get(admin, "/readyz").0 == 200));
    let before = scraper.scrape();
    let delta = |after: &HashMap<String, f64>, s: &str| {
        after.get(s).unwrap_or_else(|| panic!("no {s}")) - before.get(s).copied().unwrap_or(0.0)
    };
    let req = |class: &str| format!("redis_proxy_requests_total{{class={class}}}");

    let mut c = proxy.connect();
    assert_eq!(c.cmd(&["SET", "k", "v"]), Reply::ok()); // forwarded
    assert_eq!(c.cmd(&["GET", "k"]), Reply::bulk("v")); // miss
    scraper.wait_for("redis_proxy_cache_entries{}", 1.0);
    assert_eq!(c.cmd(&["GET", "k"]), Reply::bulk("v")); // hit
    assert_eq!(c.cmd(&["PING"]), Reply::pong()); // local
    assert!(c.cmd(&["READONLY"]).is_error()); // refused
    assert!(c.cmd(&["MULTI", "x"]).is_error()); // error (arity, answered by the proxy)
    let after = scraper.scrape();
    for (class, n) in [
        ("hit", 1.0),
        ("miss", 1.0),
        ("forwarded", 1.0),
        ("local", 1.0),
        ("refused", 1.0),
        ("error", 1.0),
    ] {
        assert_eq!(delta(&after, &req(class)), n, "requests {class}");
        let count = format!("redis_proxy_request_duration_seconds_count{{class={class}}}");
        assert_eq!(delta(&after, &count), n, "latency observations {class}");
    }
    // SET and the miss's GET + PTTL went over the shared connection.
    let rtt = "redis_proxy_backend_round_trip_seconds_count{shard=0}";
    assert_eq!(delta(&after, rtt), 3.0);
    assert_eq!(after["redis_proxy_client_connections{}"], 1.0);
    assert!(after["redis_proxy_cache_bytes{}"] >= 8.0); // "k" + "$1\r\nv\r\n"

    // Invalidations by source: a write through the proxy, Redis's push for a write made
    // straight to Redis, and a flush.
    let inv = |src: &str| format!("redis_proxy_cache_invalidations_total{{source={src}}}");
    assert_eq!(c.cmd(&["SET", "k", "w"]), Reply::ok());
    assert_eq!(delta(&scraper.scrape(), &inv("write")), 1.0);
    assert_eq!(c.cmd(&["GET", "k"]), Reply::bulk("w"));
    redis.cmd(&["SET", "k", "x"]);
    let mut seen = (0.0, 0.0);
    let pushed = wait_until(WAIT, || {
        let now = scraper.scrape();
        seen = (delta(&now, &inv("push")), delta(&now, &inv("write")));
        seen.0 == 1.0
    });
    assert!(pushed, "push, write invalidations: {seen:?}");
    assert_eq!(c.cmd(&["GET", "k"]), Reply::bulk("x"));
    assert_eq!(c.cmd(&["GET", "other"]), Reply::nil());
    scraper.wait_for("redis_proxy_cache_entries{}", 2.0);
    assert_eq!(c.cmd(&["FLUSHALL"]), Reply::ok());
    assert_eq!(delta(&scraper.scrape(), &inv("flush")), 2.0);
    scraper.wait_for("redis_proxy_cache_entries{}", 0.0);

    // A subscriber, until it leaves.
    let mut sub = Raw::connect(proxy.port());
    sub.send_cmd(&["SUBSCRIBE", "ch"]);
    assert!(matches!(sub.read_reply(), Reply::Array(_)));
    scraper.wait_for("redis_proxy_subscriber_connections{}", 1.0);
    drop(sub);
    scraper.wait_for("redis_proxy_subscriber_connections{}", 0.0);

    // Connections: a second client is accepted, a third refused (--max-clients 2); with the
    // subscriber, three were accepted.
    let _second = proxy.connect();
    scraper.wait_for("redis_proxy_client_connections{}", 2.0);
    let mut third = Raw::connect(proxy.port());
    assert!(third.read_reply().is_error());
    let rejected = "redis_proxy_client_connections_rejected_total{cause=max_clients}";
    assert!(wait_until(WAIT, || delta(&scraper.scrape(), rejected) == 1.0));
    assert_eq!(
        delta(
            &scraper.scrape(),
            "redis_proxy_client_connections_accepted_total{}"
        ),
        3.0
    );

    // A pinned client (WATCH holds a dedicated connection).
    assert_eq!(c.cmd(&["WATCH", "k"]), Reply::ok());
    scraper.wait_for("redis_proxy_pinned_connections{}", 1.0);
    assert_eq!(c.cmd(&["UNWATCH"]), Reply::ok());
    assert_eq!(c.cmd(&["PING"]), Reply::pong());
    scraper.wait_for("redis_proxy_pinned_connections{}", 0.0);
}

/// promtool's own lint, where it is installed (Debian's `prometheus` package).
#[test]
fn promtool_accepts_metrics() {
    if Command::new("promtool").arg("--version").output().is_err() {
        eprintln!("promtool not installed: check skipped (prometheus_client checks /metrics)");
        return;
    }
    let redis = RedisServer::start();
    let (proxy, admin) = start(&redis, &[]);
    assert!(wait_until(WAIT, || get(admin, "/readyz").0 == 200));
    let mut c = proxy.connect();
    c.cmd(&["SET", "k", "v"]);
    c.cmd(&["GET", "k"]);
    let (_, text) = get(admin, "/metrics");
    let (ok, out) = run_with_input(Command::new("promtool").args(["check", "metrics"]), &text);
    assert!(ok, "promtool check metrics: {out}\n{text}");
}

/// Requests from the HTTP front-end count as RESP ones do.
#[test]
fn http_requests_are_counted() {
    let redis = RedisServer::start();
    let web = free_port();
    let web_addr = format!("127.0.0.1:{web}");
    let (proxy, admin) = start(&redis, &["--threads", "1", "--http", &web_addr]);
    let scraper = Scraper {
        port: admin,
        python: python(),
    };
    assert!(wait_until(WAIT, || get(admin, "/readyz").0 == 200));
    assert_eq!(proxy.connect().cmd(&["SET", "k", "v"]), Reply::ok());
    let before = scraper.scrape();
    let delta = |s: &str| {
        let after = scraper.scrape();
        after.get(s).copied().unwrap_or(0.0) - before.get(s).copied().unwrap_or(0.0)
    };
    let req = |class: &str| format!("redis_proxy_requests_total{{class={class}}}");
    assert_eq!(get(web, "/k"), (200, "v".into())); // miss
    scraper.wait_for("redis_proxy_cache_entries{}", 1.0);
    assert_eq!(get(web, "/k"), (200, "v".into())); // hit
    assert_eq!(http(web, "POST", "/k").0, 405); // error
    assert_eq!(delta(&req("miss")), 1.0);
    assert_eq!(delta(&req("hit")), 1.0);
    assert_eq!(delta(&req("error")), 1.0);
    assert_eq!(delta(&req("local")), 0.0);
}
