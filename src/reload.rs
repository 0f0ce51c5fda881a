//! SIGHUP: re-read the configuration (the same flags and environment, the file anew) and apply
//! what can change live; log every other difference as needing a restart. A configuration that
//! does not load is refused, and the running one kept.

use crate::config::effective::{settings, Setting};
use crate::config::live::{Board, Live, LIVE_KEYS};
use crate::config::{load, LoadError, Loaded};
use crate::log::Logs;
use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// Longest the reload waits for every shard to take up new settings (they do on their next
/// tick, every 50 ms) before saying it is done.
const APPLY_WAIT: Duration = Duration::from_secs(2);

pub struct Reloader {
    args: Vec<OsString>,
    /// The settings as started: restart-only differences are measured against them.
    started: Vec<Setting>,
    logs: Logs,
    /// The log filter in force, as `log::filter_for` describes it.
    filter: String,
}

impl Reloader {
    pub fn new(args: Vec<OsString>, loaded: &Loaded, logs: Logs) -> Self {
        Reloader {
            args,
            started: settings(loaded),
            logs,
            filter: crate::log::filter_for(&loaded.cfg).1,
        }
    }

    pub fn reload(&mut self, board: &Board, stop: &AtomicBool) {
        let new = match load(&self.args) {
            Ok(l) => l,
            Err(e) => {
                let why = match e {
                    LoadError::Invalid(why) => why,
                    LoadError::Clap(e) => e.render().to_string().trim().to_string(),
                };
                error!(
                    reason = %why,
                    "SIGHUP: configuration refused, running configuration kept: {why}"
                );
                return;
            }
        };
        let mut changed: Vec<&str> = Vec::new();
        for s in settings(&new) {
            let Some(old) = self.started.iter().find(|o| o.key == s.key) else {
                continue;
            };
            if old.raw == s.raw || LIVE_KEYS.contains(&s.key.as_str()) {
                continue;
            }
            let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".into());
            warn!(
                key = %s.key,
                "SIGHUP: {} changed ({} -> {}): needs a restart; still running with {}",
                s.key,
                show(&old.value),
                show(&s.value),
                show(&old.value)
            );
        }
        if let Some(desc) = self.logs.apply(&new.cfg, &self.filter) {
            self.filter = desc;
            changed.push("log-level");
        }
        let live = Live::of(&new.cfg);
        let live_changes = board.current().changes(&live);
        changed.extend(&live_changes);
        if !live_changes.is_empty() {
            let generation = board.publish(live);
            let deadline = Instant::now() + APPLY_WAIT;
            while !board.all_applied(generation)
                && Instant::now() < deadline
                && !stop.load(Ordering::Relaxed)
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if changed.is_empty() {
            info!("SIGHUP: configuration reloaded, nothing live changed");
        } else {
            let list = changed.join(", ");
            info!("SIGHUP: configuration reloaded: {list} now in effect");
        }
    }
}
