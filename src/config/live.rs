//! Settings SIGHUP changes in a running proxy, published to the shards. Shards are `!Send` and
//! must not touch shared atomics per request: the main thread publishes a snapshot and bumps a
//! generation; each shard compares the generation once per tick and per accepted connection,
//! and on a change copies the snapshot into its own `Rc`.

use super::Config;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// What takes effect without a restart. Limits apply to connections accepted from then on,
/// except the idle timeout (every client) and --expire (every entry cached from then on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub expire: Duration,
    pub max_clients: usize,
    pub max_request_bytes: usize,
    pub client_output_limit: usize,
    pub client_idle_timeout: Duration,
    pub requirepass: Option<String>,
}

/// File keys whose change SIGHUP applies (the log level through its own handle).
pub const LIVE_KEYS: &[&str] = &[
    "expire",
    "max-clients",
    "max-request-bytes",
    "client-output-limit",
    "client-idle-timeout",
    "requirepass",
    "requirepass-file",
    "log-level",
];

impl Live {
    pub fn of(cfg: &Config) -> Self {
        Live {
            expire: cfg.expire,
            max_clients: cfg.max_clients,
            max_request_bytes: cfg.max_request_bytes,
            client_output_limit: cfg.client_output_limit,
            client_idle_timeout: cfg.client_idle_timeout,
            requirepass: cfg.requirepass.clone(),
        }
    }

    /// Names of the settings that differ, for the log (never their secret values).
    pub fn changes(&self, new: &Live) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut note = |differs: bool, name| {
            if differs {
                out.push(name)
            }
        };
        note(self.expire != new.expire, "expire");
        note(self.max_clients != new.max_clients, "max-clients");
        note(
            self.max_request_bytes != new.max_request_bytes,
            "max-request-bytes",
        );
        note(
            self.client_output_limit != new.client_output_limit,
            "client-output-limit",
        );
        note(
            self.client_idle_timeout != new.client_idle_timeout,
            "client-idle-timeout",
        );
        note(self.requirepass != new.requirepass, "requirepass");
        out
    }

    /// --expire in shard milliseconds.
    pub fn expire_ms(&self) -> u32 {
        self.expire.as_millis().min(u32::MAX as u128 / 2) as u32
    }
}

/// The published snapshot, its generation, and which generation each shard has applied.
pub struct Board {
    generation: AtomicU64,
    current: RwLock<Arc<Live>>,
    applied: Vec<AtomicU64>,
}

impl Board {
    pub fn new(live: Live, shards: usize) -> Self {
        Board {
            generation: AtomicU64::new(0),
            current: RwLock::new(Arc::new(live)),
            applied: (0..shards).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn current(&self) -> Arc<Live> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Publishes `live`; returns its generation.
    pub fn publish(&self, live: Live) -> u64 {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(live);
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Shard `id` runs with `generation` from now on.
    pub fn applied(&self, id: usize, generation: u64) {
        if let Some(a) = self.applied.get(id) {
            a.store(generation, Ordering::Release);
        }
    }

    /// Every shard runs with `generation` or later.
    pub fn all_applied(&self, generation: u64) -> bool {
        self.applied
            .iter()
            .all(|a| a.load(Ordering::Acquire) >= generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Live {
        Live {
            expire: Duration::from_secs(60),
            max_clients: 10,
            max_request_bytes: 1 << 20,
            client_output_limit: 1 << 20,
            client_idle_timeout: Duration::ZERO,
            requirepass: Some("old".into()),
        }
    }

    #[test]
    fn changes_name_the_settings_not_the_secrets() {
        let mut new = live();
        new.requirepass = Some("new".into());
        new.max_clients = 2;
        let c = live().changes(&new);
        assert_eq!(c, ["max-clients", "requirepass"]);
        assert!(live().changes(&live()).is_empty());
    }

    #[test]
    fn generations_and_acks() {
        let b = Board::new(live(), 2);
        assert_eq!(b.generation(), 0);
        let g = b.publish(Live {
            max_clients: 3,
            ..live()
        });
        assert_eq!((g, b.current().max_clients), (1, 3));
        assert!(!b.all_applied(g));
        b.applied(0, g);
        assert!(!b.all_applied(g));
        b.applied(1, g);
        assert!(b.all_applied(g));
    }
}
