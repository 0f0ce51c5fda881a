//! Logging through `tracing` to stderr, as text or JSON lines, with a filter SIGHUP can change.
//! Events from a shard's thread carry its id (the `shard` span, entered for the thread's life).
//! Never given credentials: the Redis target is logged through `RedisTarget`'s `Display`, which
//! masks the password, and the client password is never logged.

use crate::config::{Config, LogFormat};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Changes the filter of the running subscriber.
pub struct Logs {
    handle: reload::Handle<EnvFilter, Registry>,
}

/// The filter `cfg` asks for, and how to describe it. The rule: --log-level given explicitly
/// (flag, variable or file key) wins; otherwise RUST_LOG when set and valid; otherwise `info`.
pub fn filter_for(cfg: &Config) -> (EnvFilter, String) {
    if !cfg.log_level_explicit {
        if let Ok(spec) = std::env::var(EnvFilter::DEFAULT_ENV) {
            if let Ok(f) = EnvFilter::builder().parse(&spec) {
                return (f, format!("RUST_LOG={spec}"));
            }
        }
    }
    let level = cfg.log_level.as_str();
    (EnvFilter::new(level), level.to_string())
}

/// Installs the process's subscriber. Call once, before anything logs.
pub fn init(cfg: &Config) -> Logs {
    let (filter, _) = filter_for(cfg);
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let registry = tracing_subscriber::registry().with(filter);
    match cfg.log_format {
        LogFormat::Text => registry.with(fmt.with_target(false)).init(),
        LogFormat::Json => registry
            .with(fmt.json().with_current_span(true).with_span_list(false))
            .init(),
    }
    if !cfg.log_level_explicit {
        if let Ok(spec) = std::env::var(EnvFilter::DEFAULT_ENV) {
            if let Err(e) = EnvFilter::builder().parse(&spec) {
                tracing::warn!("RUST_LOG ignored ({e}); logging at info");
            }
        }
    }
    Logs { handle }
}

impl Logs {
    /// Applies `cfg`'s filter (SIGHUP); returns its description when it changed.
    pub fn apply(&self, cfg: &Config, before: &str) -> Option<String> {
        let (filter, desc) = filter_for(cfg);
        if desc == before {
            return None;
        }
        match self.handle.reload(filter) {
            Ok(()) => Some(desc),
            Err(e) => {
                tracing::error!("cannot change the log level: {e}");
                None
            }
        }
    }
}

/// Logs a limit being hit at most once per `EVERY` per thread and kind, so a flood of refused
/// clients cannot flood the log; the line says how many were not logged.
pub fn limit_hit(kind: &'static str, detail: std::fmt::Arguments<'_>) {
    use std::cell::RefCell;
    use std::time::{Duration, Instant};
    const EVERY: Duration = Duration::from_secs(10);
    thread_local! {
        static LAST: RefCell<Vec<(&'static str, Instant, u64)>> = const { RefCell::new(Vec::new()) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        let now = Instant::now();
        match last.iter_mut().find(|(k, _, _)| *k == kind) {
            Some((_, at, quiet)) if now.duration_since(*at) < EVERY => *quiet += 1,
            Some((_, at, quiet)) => {
                let n = std::mem::take(quiet);
                *at = now;
                tracing::warn!(limit = kind, suppressed = n, "limit hit: {kind}: {detail}");
            }
            None => {
                last.push((kind, now, 0));
                tracing::warn!(limit = kind, "limit hit: {kind}: {detail}");
            }
        }
    });
}
