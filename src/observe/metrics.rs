//! `/metrics`: every shard's block rendered in Prometheus's text exposition format 0.0.4.
//! Process-wide series are sums over shards; per-shard ones carry a `shard` label.

use super::stats::{self, Histogram, ShardStats, BUCKETS_US, CLASSES, SOURCES};
use std::fmt::Write;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The whole exposition, from the blocks as they are now.
pub fn render() -> String {
    let shards = stats::shards();
    let mut o = String::with_capacity(16 * 1024);
    let sum = |f: &dyn Fn(&ShardStats) -> u64| shards.iter().map(|s| f(s)).sum::<u64>();

    if let Some(p) = stats::process() {
        head(
            &mut o,
            "info",
            "gauge",
            "Build and runtime of this process (value 1).",
        );
        let _ = writeln!(
            o,
            "redis_proxy_info{{version=\"{}\",io_driver=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            p.driver
        );
        head(&mut o, "shards", "gauge", "Shards (pinned threads).");
        let _ = writeln!(o, "redis_proxy_shards {}", p.shards);
    }

    head(
        &mut o,
        "client_connections",
        "gauge",
        "Client connections open now.",
    );
    single(&mut o, "client_connections", sum(&|s| s.connections.get()));
    head(
        &mut o,
        "client_connections_accepted_total",
        "counter",
        "Client connections accepted.",
    );
    single(
        &mut o,
        "client_connections_accepted_total",
        sum(&|s| s.accepted.get()),
    );
    head(
        &mut o,
        "client_connections_rejected_total",
        "counter",
        "Client connections refused at accept, by cause.",
    );
    let _ = writeln!(
        o,
        "redis_proxy_client_connections_rejected_total{{cause=\"max_clients\"}} {}",
        sum(&|s| s.rejected_max_clients.get())
    );

    head(
        &mut o,
        "requests_total",
        "counter",
        "Client requests, by what the proxy did with them.",
    );
    for c in CLASSES {
        let n = sum(&|s| s.requests[c as usize].get());
        let _ = writeln!(
            o,
            "redis_proxy_requests_total{{class=\"{}\"}} {n}",
            c.as_str()
        );
    }
    head(
        &mut o,
        "request_duration_seconds",
        "histogram",
        "Time from reading a request to its reply being ready, by class (see README).",
    );
    for c in CLASSES {
        let label = format!("class=\"{}\"", c.as_str());
        let hs: Vec<&Histogram> = shards.iter().map(|s| &s.latency[c as usize]).collect();
        histogram(&mut o, "request_duration_seconds", &label, &hs);
    }

    let per_shard =
        |o: &mut String, name: &str, kind: &str, help: &str, f: &dyn Fn(&ShardStats) -> u64| {
            head(o, name, kind, help);
            for s in &shards {
                let _ = writeln!(o, "redis_proxy_{name}{{shard=\"{}\"}} {}", s.id, f(s));
            }
        };
    per_shard(
        &mut o,
        "backend_up",
        "gauge",
        "1 while the shard's shared backend connection is up.",
        &|s| s.backend_up.get(),
    );
    per_shard(
        &mut o,
        "backend_reconnects_total",
        "counter",
        "Reconnections of the shard's long-lived backend connections.",
        &|s| s.reconnects.get(),
    );
    per_shard(
        &mut o,
        "backend_timeouts_total",
        "counter",
        "Backend connections reset because Redis did not reply within --backend-timeout.",
        &|s| s.timeouts.get(),
    );
    per_shard(
        &mut o,
        "backend_in_flight_requests",
        "gauge",
        "Requests sent or queued to Redis and not yet answered.",
        &|s| s.in_flight.get(),
    );
    head(
        &mut o,
        "backend_round_trip_seconds",
        "histogram",
        "Requests on the shared backend connections: from the client input that queued them to Redis's reply.",
    );
    for s in &shards {
        histogram(
            &mut o,
            "backend_round_trip_seconds",
            &format!("shard=\"{}\"", s.id),
            &[&s.rtt],
        );
    }

    head(&mut o, "cache_entries", "gauge", "Entries in the cache.");
    single(&mut o, "cache_entries", sum(&|s| s.cache_entries.get()));
    head(
        &mut o,
        "cache_bytes",
        "gauge",
        "Bytes of keys and replies held by the cache.",
    );
    single(&mut o, "cache_bytes", sum(&|s| s.cache_bytes.get()));
    head(
        &mut o,
        "cache_evictions_total",
        "counter",
        "Entries evicted to make room (LRU).",
    );
    single(&mut o, "cache_evictions_total", sum(&|s| s.evictions.get()));
    head(
        &mut o,
        "cache_expirations_total",
        "counter",
        "Entries dropped at their deadline.",
    );
    single(
        &mut o,
        "cache_expirations_total",
        sum(&|s| s.expirations.get()),
    );
    head(
        &mut o,
        "cache_invalidations_total",
        "counter",
        "Entries dropped because their key changed, by source.",
    );
    for (i, src) in SOURCES.iter().enumerate() {
        let n = sum(&|s| s.invalidations[i].get());
        let _ = writeln!(
            o,
            "redis_proxy_cache_invalidations_total{{source=\"{src}\"}} {n}"
        );
    }

    head(
        &mut o,
        "pinned_connections",
        "gauge",
        "Dedicated backend connections in use by clients.",
    );
    single(&mut o, "pinned_connections", sum(&|s| s.pinned.get()));
    head(
        &mut o,
        "subscriber_connections",
        "gauge",
        "Client connections in subscriber mode.",
    );
    single(
        &mut o,
        "subscriber_connections",
        sum(&|s| s.subscribers.get()),
    );
    o
}

fn head(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP redis_proxy_{name} {help}");
    let _ = writeln!(o, "# TYPE redis_proxy_{name} {kind}");
}

fn single(o: &mut String, name: &str, v: u64) {
    let _ = writeln!(o, "redis_proxy_{name} {v}");
}

/// Buckets summed over `hs`, made cumulative as Prometheus wants them.
fn histogram(o: &mut String, name: &str, label: &str, hs: &[&Histogram]) {
    let mut total = 0u64;
    for (i, le) in BUCKETS_US
        .iter()
        .map(|&us| seconds(us))
        .chain(std::iter::once("+Inf".to_string()))
        .enumerate()
    {
        total += hs.iter().map(|h| h.buckets[i].get()).sum::<u64>();
        let _ = writeln!(
            o,
            "redis_proxy_{name}_bucket{{{label},le=\"{le}\"}} {total}"
        );
    }
    let sum_us: u64 = hs.iter().map(|h| h.sum_us.get()).sum();
    let _ = writeln!(o, "redis_proxy_{name}_sum{{{label}}} {}", seconds(sum_us));
    let _ = writeln!(o, "redis_proxy_{name}_count{{{label}}} {total}");
}

fn seconds(us: u64) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

/// Whether every shard's shared backend connection is up; otherwise why not.
pub fn readiness() -> Result<(), String> {
    let shards = stats::shards();
    let expected = stats::process().map_or(usize::MAX, |p| p.shards);
    if shards.len() < expected {
        return Err(format!("{} of {expected} shards started", shards.len()));
    }
    let mut why = String::new();
    for s in &shards {
        if s.backend_up.get() == 0 {
            let err = s.backend_error.lock().unwrap_or_else(|e| e.into_inner());
            let err = if err.is_empty() {
                "connecting"
            } else {
                err.as_str()
            };
            let _ = writeln!(why, "shard {}: backend not up: {err}", s.id);
        }
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(why)
    }
}
