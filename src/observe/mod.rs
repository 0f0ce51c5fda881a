//! What the proxy tells operators about itself: per-shard counters ([`stats`]), summed when
//! read; the admin HTTP endpoint on its own thread ([`admin`]: /metrics, /healthz, /readyz) in
//! Prometheus's text format ([`metrics`]); the `# Proxy` section of `INFO` ([`info`]).

pub mod admin;
pub mod clock;
pub mod info;
pub mod metrics;
pub mod publish;
pub mod stats;
