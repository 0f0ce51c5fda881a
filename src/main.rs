//! Entry point: parse and check the configuration, start one shard per thread, wait for
//! SIGINT/SIGTERM, then stop the shards and exit 0.

use clap::Parser;
use redis_proxy::config::Config;
use redis_proxy::{log, shard};
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    // Policy: a panic is a bug that may have left a shard's state inconsistent; abort so a
    // supervisor (systemd, Docker, Kubernetes) restarts a clean process, rather than keep
    // serving with one core's clients silently dropped.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("redis-proxy: fatal: {info}");
        std::process::abort();
    }));
    let mut cfg = Config::parse();
    if let Err(e) = cfg.validate().and_then(|_| cfg.prepare()) {
        eprintln!("redis-proxy: {e}");
        return ExitCode::from(2);
    }
    match run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("redis-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cfg: Config) -> Result<(), String> {
    let redis_addr = cfg.redis.resolve()?;
    let mut listen = cfg.listen_addr()?;
    // Bind once without SO_REUSEPORT: fails if another process (even another redis-proxy, whose
    // listeners use SO_REUSEPORT) owns the port, instead of silently sharing its connections.
    // It also turns port 0 into a concrete port that every shard then binds.
    {
        let probe =
            TcpListener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        listen = probe.local_addr().map_err(|e| e.to_string())?;
    }
    let threads = cfg.threads();
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| e.to_string())?;
    }
    if !listen.ip().is_loopback() && cfg.requirepass.is_none() {
        log!(
            warn,
            "*** listening on {listen}, which is not a loopback address, WITHOUT --requirepass: \
             anyone who can reach this port can read and write your Redis data. Set \
             --requirepass-file, or bind 127.0.0.1 ***"
        );
    }
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cfg = Arc::new(cfg);
    let (tx, rx) = std::sync::mpsc::channel();
    let common = shard::Common {
        cfg: cfg.clone(),
        listen,
        redis_addr,
        stop: stop.clone(),
        connections,
        ready: tx,
    };
    let mut handles = Vec::with_capacity(threads);
    for id in 0..threads {
        let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
        let h = shard::spawn(id, core, common.clone())
            .map_err(|e| format!("cannot start shard {id}: {e}"))?;
        handles.push(h);
    }
    let mut driver = "";
    for _ in 0..threads {
        match rx.recv() {
            Ok(Ok(d)) => driver = d,
            Ok(Err(e)) => {
                stop.store(true, Ordering::SeqCst);
                return Err(e);
            }
            Err(_) => return Err("a shard exited during start-up".into()),
        }
    }
    redis_proxy::observe::stats::set_process(redis_proxy::observe::stats::Process {
        shards: threads,
        driver,
    });
    if let Some(addr) = cfg.admin {
        let bound = redis_proxy::observe::admin::start(addr).map_err(|e| {
            stop.store(true, Ordering::SeqCst);
            format!("cannot serve --admin on {addr}: {e}")
        })?;
        log!(
            info,
            "admin endpoint on http://{bound} (/metrics, /healthz, /readyz)"
        );
    }
    log!(
        info,
        "redis-proxy {} listening on {listen}, {threads} shard(s) on {driver}, Redis at {}, cache {} keys, expire {}",
        env!("CARGO_PKG_VERSION"),
        cfg.redis,
        cfg.capacity,
        humantime::format_duration(cfg.expire)
    );
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
    log!(
        info,
        "shutting down: no new connections, finishing replies in flight"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    for h in handles {
        while !h.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if h.is_finished() {
            let _ = h.join();
        }
    }
    log!(info, "bye");
    Ok(())
}
