//! Entry point: load and check the configuration (flags, environment, --config file), start one
//! shard per thread, reload on SIGHUP, wait for SIGINT/SIGTERM, then stop the shards and exit 0.

use redis_proxy::config::live::{Board, Live};
use redis_proxy::config::{self, effective, LoadError};
use redis_proxy::{log, reload, shard};
use std::ffi::OsString;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

fn main() -> ExitCode {
    // Policy: a panic is a bug that may have left a shard's state inconsistent; abort so a
    // supervisor (systemd, Docker, Kubernetes) restarts a clean process, rather than keep
    // serving with one core's clients silently dropped.
    std::panic::set_hook(Box::new(|info| {
        if tracing::dispatcher::has_been_set() {
            tracing::error!("fatal: {info}");
        } else {
            eprintln!("redis-proxy: fatal: {info}");
        }
        std::process::abort();
    }));
    let args: Vec<OsString> = std::env::args_os().collect();
    let loaded = match config::load(&args) {
        Ok(l) => l,
        Err(LoadError::Clap(e)) => e.exit(),
        Err(LoadError::Invalid(why)) => {
            eprintln!("redis-proxy: {why}");
            return ExitCode::from(2);
        }
    };
    if loaded.cfg.check_config {
        print!("{}", effective::render(&loaded));
        println!("# configuration OK");
        return ExitCode::SUCCESS;
    }
    let logs = log::init(&loaded.cfg);
    let reloader = reload::Reloader::new(args, &loaded, logs);
    match run(loaded.cfg, reloader) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cfg: config::Config, mut reloader: reload::Reloader) -> Result<(), String> {
    let cluster = redis_proxy::cluster::detect::detect(&cfg)?.map(Arc::new);
    let redis_addr = match &cluster {
        Some(c) => c.home,
        None => cfg.redis.resolve()?,
    };
    let mut listen = cfg.listen_addr()?;
    // Bind once without SO_REUSEPORT: fails if another process (even another redis-proxy, whose
    // listeners use SO_REUSEPORT) owns the port, instead of silently sharing its connections.
    // It also turns port 0 into a concrete port that every shard then binds.
    {
        let probe =
            TcpListener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        listen = probe.local_addr().map_err(|e| e.to_string())?;
    }
    // The same for --http.
    let http = match cfg.http_addr()? {
        Some(addr) => {
            let probe =
                TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            Some(probe.local_addr().map_err(|e| e.to_string())?)
        }
        None => None,
    };
    if http == Some(listen) {
        return Err("--http and --listen must be different addresses".into());
    }
    let threads = cfg.threads();
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| e.to_string())?;
    }
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .map_err(|e| e.to_string())?;
    let exposed = [Some(listen), http]
        .into_iter()
        .flatten()
        .find(|a| !a.ip().is_loopback());
    if let (Some(addr), None) = (exposed, &cfg.requirepass) {
        warn!(
            "*** listening on {addr}, which is not a loopback address, WITHOUT --requirepass: \
             anyone who can reach this port can read and write your Redis data. Set \
             --requirepass-file, or bind 127.0.0.1 ***"
        );
    }
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let board = Arc::new(Board::new(Live::of(&cfg), threads));
    let cfg = Arc::new(cfg);
    let (tx, rx) = std::sync::mpsc::channel();
    let common = shard::Common {
        cfg: cfg.clone(),
        listen,
        http,
        redis_addr,
        stop: stop.clone(),
        connections,
        board: board.clone(),
        ready: tx,
        cluster: cluster.clone(),
    };
    let admin = match cfg.admin {
        Some(addr) => Some(
            redis_proxy::observe::admin::bind(addr)
                .map_err(|e| format!("cannot serve --admin on {addr}: {e}"))?,
        ),
        None => None,
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
    if let Some(listener) = admin {
        let bound = redis_proxy::observe::admin::serve(listener).map_err(|e| {
            stop.store(true, Ordering::SeqCst);
            format!("cannot start the admin endpoint: {e}")
        })?;
        info!("admin endpoint on http://{bound} (/metrics, /healthz, /readyz)");
    }
    info!(
        "redis-proxy {} listening on {listen}, {threads} shard(s) on {driver}, Redis at {}, cache {} keys, expire {}",
        env!("CARGO_PKG_VERSION"),
        cfg.redis,
        cfg.capacity,
        humantime::format_duration(cfg.expire)
    );
    if let Some(http) = http {
        info!("HTTP GETs served on {http}");
    }
    if let Some(c) = &cluster {
        info!(
            "Redis Cluster mode: {} slot ranges, reads from {:?}, slot map reloaded every {}",
            c.topology.ranges.len(),
            cfg.read_from,
            humantime::format_duration(cfg.slots_reload_interval)
        );
    }
    while !stop.load(Ordering::SeqCst) {
        if hup.swap(false, Ordering::SeqCst) {
            reloader.reload(&board, &stop);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    info!("shutting down: no new connections, finishing replies in flight");
    let deadline = Instant::now() + Duration::from_secs(5);
    for h in handles {
        while !h.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if h.is_finished() {
            let _ = h.join();
        }
    }
    info!("bye");
    Ok(())
}
