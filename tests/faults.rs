//! Faults under load: many concurrent pipelined clients while Redis is killed and restarted,
//! frozen (SIGSTOP) and thawed, while clients vanish mid-pipeline or trickle bytes. Every reply
//! is checked against the request it answers: values encode their key, so a reply that belongs
//! to another request (or a missing or duplicated reply, which shifts every later one) is caught.
mod common;

use common::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Proxy flags of the load tests: short timeouts so faults show up fast.
const FAULT_ARGS: &[&str] = &[
    "--threads",
    "2",
    "--backend-timeout",
    "1s",
    "--connect-timeout",
    "300ms",
    "--expire",
    "1h",
];
const LOADERS: usize = 8;
const PIPELINE: usize = 50;
/// Keys per loader thread.
const KEYS: u64 = 64;

/// One request of a pipeline, as the checker needs to know it.
enum Req {
    /// `SET key:<t>:<key> val:<t>:<key>:<n>`
    Set { key: u64, n: u64 },
    /// `GET key:<t>:<key>`; `max_n`: the newest value number issued before this GET.
    Get { key: u64, max_n: u64 },
    /// `INCR counter:<t>`
    Incr,
    /// `ECHO echo:<t>:<n>`
    Echo { n: u64 },
}

fn key_name(t: usize, key: u64) -> String {
    format!("key:{t}:{key}")
}

fn value_of(t: usize, key: u64, n: u64) -> String {
    format!("val:{t}:{key}:{n}")
}

/// Shared between the test's main thread and the loaders.
#[derive(Default)]
struct Control {
    stop: AtomicBool,
    /// Set (for good) just before a fault is injected: from then on data may be lost and
    /// requests may fail, so only the "never another request's reply" checks apply.
    faulted: AtomicBool,
    /// Pipelines each loader completed without an error reply, so far.
    clean: Vec<AtomicU64>,
    /// Error replies, and backend timeouts among them, over all loaders so far.
    errors: AtomicU64,
    timeouts: AtomicU64,
}

/// What one pipeline of one loader saw.
struct PipelineLog {
    sent: Instant,
    done: Instant,
    errors: usize,
}

#[derive(Default)]
struct LoaderResult {
    pipelines: Vec<PipelineLog>,
    replies: u64,
    errors: u64,
    timeouts: u64,
    /// Longest single wait for one reply.
    max_wait: Duration,
    problems: Vec<String>,
}

impl LoaderResult {
    fn problem(&mut self, p: String) {
        if self.problems.len() < 20 {
            self.problems.push(p);
        }
    }
}

/// A pipelined client that checks every reply. Runs until `ctl.stop`.
struct Loader {
    t: usize,
    rng: Rng,
    /// Next value number.
    n: u64,
    /// Every (key, n) this loader has sent a SET for.
    issued: HashSet<(u64, u64)>,
    /// The last value of each key that Redis acknowledged (+OK).
    acked: HashMap<u64, u64>,
    /// The counter as of the last INCR reply.
    counter: i64,
}

impl Loader {
    fn new(t: usize) -> Self {
        Loader {
            t,
            rng: Rng::new(0x9e37_79b9 + t as u64 * 7919),
            n: 0,
            issued: HashSet::new(),
            acked: HashMap::new(),
            counter: 0,
        }
    }

    fn build(&mut self) -> (Vec<u8>, Vec<Req>) {
        let t = self.t;
        let mut bytes = Vec::with_capacity(PIPELINE * 48);
        let mut reqs = Vec::with_capacity(PIPELINE);
        for _ in 0..PIPELINE {
            let key = self.rng.below(KEYS);
            match self.rng.below(10) {
                0..=2 => {
                    self.n += 1;
                    let n = self.n;
                    self.issued.insert((key, n));
                    bytes.extend(encode(&["SET", &key_name(t, key), &value_of(t, key, n)]));
                    reqs.push(Req::Set { key, n });
                }
                3..=6 => {
                    bytes.extend(encode(&["GET", &key_name(t, key)]));
                    reqs.push(Req::Get { key, max_n: self.n });
                }
                7 => {
                    bytes.extend(encode(&["INCR", &format!("counter:{t}")]));
                    reqs.push(Req::Incr);
                }
                _ => {
                    self.n += 1;
                    bytes.extend(encode(&["ECHO", &format!("echo:{t}:{}", self.n)]));
                    reqs.push(Req::Echo { n: self.n });
                }
            }
        }
        (bytes, reqs)
    }

    /// Checks `got` against `req`; `Err` describes a wrong reply. `strict`: no fault has
    /// happened, so the exact reply is required.
    fn check(&mut self, req: &Req, got: &Reply, strict: bool) -> Result<(), String> {
        let t = self.t;
        let backend_err =
            |got: &Reply| matches!(got, Reply::Error(e) if e.starts_with("ERR backend"));
        match *req {
            Req::Echo { n } => {
                let want = Reply::bulk(format!("echo:{t}:{n}"));
                if *got != want {
                    return Err(format!("ECHO: want {want:?}, got {got:?}"));
                }
            }
            Req::Set { key, n } => {
                if *got == Reply::ok() {
                    self.acked.insert(key, n);
                } else if strict || !backend_err(got) {
                    return Err(format!("SET {}: want +OK, got {got:?}", key_name(t, key)));
                }
            }
            Req::Incr => match got {
                Reply::Int(v) => {
                    if strict && *v != self.counter + 1 {
                        return Err(format!("INCR: want {}, got {v}", self.counter + 1));
                    }
                    if *v < 1 {
                        return Err(format!("INCR: got {v}"));
                    }
                    self.counter = *v;
                }
                other if !strict && backend_err(other) => {}
                other => return Err(format!("INCR: want an integer, got {other:?}")),
            },
            Req::Get { key, max_n } => {
                if strict {
                    let want = match self.acked.get(&key) {
                        Some(&n) => Reply::bulk(value_of(t, key, n)),
                        None => Reply::nil(),
                    };
                    if *got != want {
                        return Err(format!(
                            "GET {}: want {want:?}, got {got:?}",
                            key_name(t, key)
                        ));
                    }
                    return Ok(());
                }
                match got {
                    Reply::Bulk(None) => {}
                    Reply::Bulk(Some(v)) => {
                        // Must be a value this loader sent for this very key, before this GET.
                        let v = String::from_utf8_lossy(v);
                        let prefix = format!("val:{t}:{key}:");
                        let n = v.strip_prefix(&prefix).and_then(|n| n.parse::<u64>().ok());
                        match n {
                            Some(n) if n <= max_n && self.issued.contains(&(key, n)) => {}
                            _ => {
                                return Err(format!(
                                    "GET {}: got {v:?}, which no earlier SET of this key wrote",
                                    key_name(t, key)
                                ))
                            }
                        }
                    }
                    other if backend_err(other) => {}
                    other => {
                        return Err(format!(
                            "GET {}: want a value, nil or -ERR backend, got {other:?}",
                            key_name(t, key)
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    fn run(mut self, port: u16, ctl: Arc<Control>) -> LoaderResult {
        let mut res = LoaderResult::default();
        let mut c = Raw::connect(port);
        c.set_read_timeout(Duration::from_secs(8));
        let mut round = 0u64;
        'outer: while !ctl.stop.load(Ordering::Relaxed) {
            round += 1;
            let (bytes, reqs) = self.build();
            let sent = Instant::now();
            if let Err(e) = c.try_send(&bytes) {
                res.problem(format!("loader {}: pipeline {round}: write: {e}", self.t));
                break;
            }
            let mut got = Vec::with_capacity(reqs.len());
            for i in 0..reqs.len() {
                let start = Instant::now();
                match c.try_read_reply() {
                    Ok(r) => got.push(r),
                    Err(e) => {
                        res.problem(format!(
                            "loader {}: pipeline {round}: reply {i} of {}: {e} (after {:?})",
                            self.t,
                            reqs.len(),
                            start.elapsed()
                        ));
                        break 'outer;
                    }
                }
                res.max_wait = res.max_wait.max(start.elapsed());
            }
            let done = Instant::now();
            // Read after the replies: if no fault had begun by now, none touched them.
            let strict = !ctl.faulted.load(Ordering::SeqCst);
            let mut errors = 0;
            for (i, (req, r)) in reqs.iter().zip(&got).enumerate() {
                res.replies += 1;
                if let Reply::Error(e) = r {
                    errors += 1;
                    if e.starts_with("ERR backend timeout") {
                        res.timeouts += 1;
                        ctl.timeouts.fetch_add(1, Ordering::SeqCst);
                    }
                }
                if let Err(p) = self.check(req, r, strict) {
                    res.problem(format!(
                        "loader {}: pipeline {round}, reply {i} (strict: {strict}): {p}",
                        self.t
                    ));
                }
            }
            res.errors += errors as u64;
            res.pipelines.push(PipelineLog { sent, done, errors });
            if errors == 0 {
                ctl.clean[self.t].fetch_add(1, Ordering::SeqCst);
            }
            ctl.errors.fetch_add(errors as u64, Ordering::SeqCst);
        }
        // Nothing extra may follow: a duplicated reply would show up here instead of PONG.
        if res.problems.is_empty() {
            match c.cmd_checked(&["PING"]) {
                Ok(Reply::Simple(s)) if s == "PONG" => {}
                other => res.problem(format!("loader {}: final PING: {other:?}", self.t)),
            }
        }
        res
    }
}

trait CmdChecked {
    fn cmd_checked(&mut self, args: &[&str]) -> std::io::Result<Reply>;
}

impl CmdChecked for Raw {
    fn cmd_checked(&mut self, args: &[&str]) -> std::io::Result<Reply> {
        self.try_send(&encode(args))?;
        self.try_read_reply()
    }
}

struct Load {
    ctl: Arc<Control>,
    handles: Vec<thread::JoinHandle<LoaderResult>>,
}

impl Load {
    fn start(port: u16, n: usize) -> Load {
        let ctl = Arc::new(Control {
            clean: (0..n).map(|_| AtomicU64::new(0)).collect(),
            ..Control::default()
        });
        let handles = (0..n)
            .map(|t| {
                let ctl = ctl.clone();
                thread::spawn(move || Loader::new(t).run(port, ctl))
            })
            .collect();
        Load { ctl, handles }
    }

    fn fault(&self) {
        self.ctl.faulted.store(true, Ordering::SeqCst);
    }

    /// Waits until every loader has completed `n` more error-free pipelines than now.
    #[track_caller]
    fn wait_clean_pipelines(&self, n: u64, what: &str) {
        let base: Vec<u64> = self
            .ctl
            .clean
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .collect();
        let ok = wait_until(Duration::from_secs(20), || {
            self.ctl
                .clean
                .iter()
                .zip(&base)
                .all(|(c, b)| c.load(Ordering::SeqCst) >= b + n)
        });
        let now: Vec<u64> = self
            .ctl
            .clean
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .collect();
        assert!(
            ok,
            "{what}: not every loader completed {n} error-free pipelines in 20s (from {base:?} \
             to {now:?})"
        );
    }

    /// Waits until some loader has received an error reply (`timeouts`: a backend timeout).
    fn wait_errors(&self, timeouts: bool, timeout: Duration) -> bool {
        let counter = if timeouts {
            &self.ctl.timeouts
        } else {
            &self.ctl.errors
        };
        wait_until(timeout, || counter.load(Ordering::SeqCst) > 0)
    }

    fn finish(self) -> Vec<LoaderResult> {
        self.ctl.stop.store(true, Ordering::Relaxed);
        self.handles
            .into_iter()
            .map(|h| h.join().expect("loader thread panicked"))
            .collect()
    }
}

/// Fails with every problem any loader found.
fn assert_no_problems(results: &[LoaderResult]) {
    let problems: Vec<&String> = results.iter().flat_map(|r| &r.problems).collect();
    assert!(
        problems.is_empty(),
        "{} wrong replies, first ones:\n{}",
        problems.len(),
        problems
            .iter()
            .take(20)
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn summary(results: &[LoaderResult]) -> String {
    let replies: u64 = results.iter().map(|r| r.replies).sum();
    let errors: u64 = results.iter().map(|r| r.errors).sum();
    let timeouts: u64 = results.iter().map(|r| r.timeouts).sum();
    let max_wait = results.iter().map(|r| r.max_wait).max().unwrap_or_default();
    format!("{replies} replies, {errors} errors ({timeouts} backend timeouts), longest wait for one reply {max_wait:?}")
}

/// Every loader completed pipelines without a single error after `since` (service resumed).
fn assert_recovered(results: &[LoaderResult], since: Instant) {
    for (t, r) in results.iter().enumerate() {
        let clean_after = r
            .pipelines
            .iter()
            .filter(|p| p.sent > since && p.errors == 0)
            .count();
        assert!(
            clean_after > 0,
            "loader {t}: no error-free pipeline after the fault ended ({} pipelines in all)",
            r.pipelines.len()
        );
        let last = r.pipelines.last().expect("no pipeline at all");
        assert_eq!(
            last.errors, 0,
            "loader {t}: the last pipeline still had errors"
        );
    }
}

/// Polls `SET probe` on a fresh connection until it succeeds; the time it took.
fn time_to_recover(proxy: &Proxy, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut c = proxy.connect();
    c.set_read_timeout(Duration::from_secs(3));
    let mut last = None;
    while start.elapsed() < limit {
        match c.cmd_checked(&["SET", "probe", "1"]) {
            Ok(r) if r == Reply::ok() => return start.elapsed(),
            other => last = Some(other),
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("no recovery within {limit:?}; last reply {last:?}");
}

#[test]
fn redis_killed_and_restarted_under_load() {
    let mut redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), FAULT_ARGS);
    let load = Load::start(proxy.port(), LOADERS);
    load.wait_clean_pipelines(3, "before the fault");

    load.fault();
    redis.kill();
    // The outage is the thing under test: long enough for reconnection attempts to fail
    // (--connect-timeout 300ms), and until requests fail.
    thread::sleep(Duration::from_millis(500));
    assert!(
        load.wait_errors(false, Duration::from_secs(10)),
        "redis was down yet no request failed"
    );
    redis.restart();
    let restarted = Instant::now();
    let recovery = time_to_recover(&proxy, Duration::from_secs(5));
    load.wait_clean_pipelines(3, "after the restart");
    let results = load.finish();
    eprintln!(
        "kill/restart: {}; service back {recovery:?} after the restart",
        summary(&results)
    );

    assert_no_problems(&results);
    for (t, r) in results.iter().enumerate() {
        let before = r.pipelines.iter().filter(|p| p.done < restarted).count();
        assert!(before > 0, "loader {t} made no progress before the fault");
    }
    let errors: u64 = results.iter().map(|r| r.errors).sum();
    assert!(errors > 0, "redis was down for 0.5s yet no request failed");
    assert!(
        recovery < Duration::from_secs(2),
        "service took {recovery:?} to come back after the restart"
    );
    assert_recovered(&results, restarted + recovery);
}

#[test]
fn redis_frozen_under_load_times_out_and_resumes() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), FAULT_ARGS);
    let load = Load::start(proxy.port(), LOADERS);
    load.wait_clean_pipelines(3, "before the fault");

    load.fault();
    redis.stop();
    let frozen = Instant::now();
    // Frozen for longer than --backend-timeout (1s) is the thing under test: at least 2s, and
    // until requests time out.
    let timed_out = load.wait_errors(true, Duration::from_secs(10));
    thread::sleep(Duration::from_secs(2).saturating_sub(frozen.elapsed()));
    redis.cont();
    let thawed = Instant::now();
    let recovery = time_to_recover(&proxy, Duration::from_secs(5));
    load.wait_clean_pipelines(3, "after SIGCONT");
    let results = load.finish();
    eprintln!(
        "SIGSTOP 2s: {}; service back {recovery:?} after SIGCONT",
        summary(&results)
    );

    assert_no_problems(&results);
    let timeouts: u64 = results.iter().map(|r| r.timeouts).sum();
    assert!(
        timed_out && timeouts > 0,
        "redis was frozen for {:?} (> --backend-timeout 1s) yet no request got -ERR backend \
         timeout",
        thawed - frozen
    );
    for (t, r) in results.iter().enumerate() {
        assert!(
            r.max_wait < Duration::from_secs(3),
            "loader {t} waited {:?} for one reply (--backend-timeout is 1s)",
            r.max_wait
        );
    }
    assert!(
        recovery < Duration::from_secs(2),
        "service took {recovery:?} to resume after SIGCONT"
    );
    assert_recovered(&results, thawed + recovery);
}

#[test]
fn cache_hits_served_while_redis_is_dead() {
    let mut redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), FAULT_ARGS);
    let mut c = proxy.connect();
    assert_eq!(c.cmd(&["SET", "warm", "warm-value"]), Reply::ok());
    assert_eq!(c.cmd(&["GET", "warm"]), Reply::bulk("warm-value"));
    assert_eq!(c.cmd(&["GET", "warm"]), Reply::bulk("warm-value"));

    redis.kill();
    // Make sure the proxy noticed: a miss fails.
    let r = c.cmd(&["GET", "cold"]);
    assert_err_prefix(&r, "ERR backend");
    // Spread over ~1s: reconnection attempts fail meanwhile, the cache stays.
    for i in 0..100 {
        let start = Instant::now();
        let r = c.cmd(&["GET", "warm"]);
        assert_eq!(r, Reply::bulk("warm-value"), "hit #{i} while redis is dead");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "hit #{i} took {:?}",
            start.elapsed()
        );
        // Spreading the hits over time is the point: across failed reconnection attempts.
        if i % 10 == 0 {
            thread::sleep(Duration::from_millis(100));
        }
    }
    // Pipelined hits mixed with misses: in order, hits exact, misses errors.
    let mut bytes = Vec::new();
    for i in 0..100 {
        bytes.extend(encode(&["GET", "warm"]));
        bytes.extend(encode(&["GET", &format!("cold:{i}")]));
    }
    c.send(&bytes);
    for i in 0..100 {
        assert_eq!(
            c.read_reply(),
            Reply::bulk("warm-value"),
            "pipelined hit #{i}"
        );
        assert_err_prefix(&c.read_reply(), "ERR backend");
    }
}

#[test]
fn vanishing_clients_do_not_disturb_others() {
    let redis = RedisServer::start();
    // --max-clients also checks that the vanished clients' slots come back.
    let mut args = FAULT_ARGS.to_vec();
    args.extend(["--max-clients", "8"]);
    let proxy = Proxy::start(redis.port(), &args);
    let load = Load::start(proxy.port(), 1);
    let port = proxy.port();
    let vanisher = thread::spawn(move || {
        for round in 0..12 {
            let mut c = Raw::connect(port);
            let mut bytes = Vec::new();
            for i in 0..10_000 {
                match i % 4 {
                    0 => bytes.extend(encode(&["SET", &format!("v:{i}"), "x"])),
                    1 => bytes.extend(encode(&["GET", &format!("v:{}", i - 1)])),
                    2 => bytes.extend(encode(&["INCR", "vanish-counter"])),
                    _ => bytes.extend(encode(&["ECHO", "gone"])),
                }
            }
            // The proxy may already have refused us if a slot is still held: then the
            // write can fail; that is fine, the slot check below catches leaks.
            let _ = c.try_send(&bytes);
            if round % 2 == 1 {
                // Read a few replies first, then vanish.
                for _ in 0..10 {
                    if c.try_read_reply().is_err() {
                        break;
                    }
                }
            }
            drop(c);
            // Paces the rounds, so the loader runs between them.
            thread::sleep(Duration::from_millis(30));
        }
    });
    vanisher.join().unwrap();
    load.wait_clean_pipelines(3, "after the vanishing clients");
    let results = load.finish();
    eprintln!("vanishing clients: {}", summary(&results));
    assert_no_problems(&results);
    assert_eq!(results[0].errors, 0, "no fault, yet errors");
    assert!(results[0].pipelines.len() > 5, "the loader barely ran");

    // Every slot of --max-clients 8 is free again: 8 clients get in (the slots of the
    // vanished clients are given back asynchronously, so poll).
    let ok = wait_until(Duration::from_secs(5), || {
        let mut clients: Vec<Raw> = (0..8).map(|_| proxy.connect()).collect();
        clients
            .iter_mut()
            .all(|c| c.cmd_checked(&["PING"]).ok() == Some(Reply::pong()))
    });
    assert!(ok, "client slots leaked: 8 clients cannot connect at once");
}

#[test]
fn half_closed_client_gets_every_reply_then_eof() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), FAULT_ARGS);
    let mut c = proxy.connect();
    let mut bytes = Vec::new();
    let mut want = Vec::new();
    for i in 0..3000 {
        match i % 4 {
            0 => {
                bytes.extend(encode(&["SET", &format!("h:{i}"), &format!("hv:{i}")]));
                want.push(Reply::ok());
            }
            1 => {
                bytes.extend(encode(&["GET", &format!("h:{}", i - 1)]));
                want.push(Reply::bulk(format!("hv:{}", i - 1)));
            }
            2 => {
                bytes.extend(encode(&["INCR", "half"]));
                want.push(Reply::Int(i / 4 + 1));
            }
            _ => {
                bytes.extend(encode(&["ECHO", &format!("he:{i}")]));
                want.push(Reply::bulk(format!("he:{i}")));
            }
        }
    }
    c.send(&bytes);
    c.shutdown_write();
    for (i, w) in want.iter().enumerate() {
        let got = c
            .try_read_reply()
            .unwrap_or_else(|e| panic!("reply #{i} of {} after shutdown(Write): {e}", want.len()));
        assert_eq!(&got, w, "reply #{i}");
    }
    let rest = c.expect_closed_within(Duration::from_secs(3));
    assert!(
        rest.is_empty(),
        "extra bytes after the last reply: {rest:?}"
    );
}

#[test]
fn slow_loris_does_not_delay_others() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), FAULT_ARGS);
    let port = proxy.port();
    // Several, so that both shards have one.
    let lorises: Vec<_> = (0..4)
        .map(|l| {
            thread::spawn(move || {
                let mut c = Raw::connect(port);
                let cmd = encode(&["SET", &format!("slow:{l}"), &format!("slow-value-{l}")]);
                // Trickling for seconds is the point.
                for b in &cmd {
                    c.send(&[*b]);
                    thread::sleep(Duration::from_millis(50));
                }
                assert_eq!(c.read_reply(), Reply::ok(), "loris {l}");
            })
        })
        .collect();

    let mut fast = proxy.connect();
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    let mut i = 0u64;
    while !lorises.iter().all(|h| h.is_finished()) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "slow clients did not finish"
        );
        let t = Instant::now();
        assert_eq!(
            fast.cmd(&["SET", &format!("fast:{i}"), &i.to_string()]),
            Reply::ok()
        );
        assert_eq!(
            fast.cmd(&["GET", &format!("fast:{i}")]),
            Reply::bulk(i.to_string())
        );
        worst = worst.max(t.elapsed());
        i += 1;
        // Pacing: many round trips while the slow clients trickle.
        thread::sleep(Duration::from_millis(5));
    }
    for h in lorises {
        h.join().expect("slow client failed");
    }
    eprintln!("slow loris: {i} fast round trips, worst {worst:?}");
    assert!(
        i > 20,
        "only {i} fast round trips while slow clients trickled"
    );
    assert!(
        worst < Duration::from_millis(500),
        "a fast client's SET+GET took {worst:?} while slow clients trickled"
    );
    for l in 0..4 {
        assert_eq!(
            fast.cmd(&["GET", &format!("slow:{l}")]),
            Reply::bulk(format!("slow-value-{l}"))
        );
    }
}
