//! A shard's gauges, and the counters its cache and backend connections keep themselves,
//! copied into its block once per tick (50 ms): nothing per request.

use crate::backend::Status;
use crate::shard::Shard;

pub fn publish(shard: &Shard) {
    let s = &shard.stats;
    let counts = {
        let cache = shard.cache.borrow();
        s.cache_entries.set(cache.len() as u64);
        cache.counts()
    };
    s.cache_bytes.set(counts.bytes as u64);
    s.evictions.set(counts.evictions);
    s.expirations.set(counts.expirations);
    s.pinned.set(shard.pool.in_use() as u64);
    // Long-lived connections only: a dedicated one's counts would vanish with it.
    let (mut reconnects, mut timeouts, mut in_flight) = (0, 0, 0);
    shard.each_long_lived(|c| {
        let st = c.st.borrow();
        reconnects += st.reconnects;
        timeouts += st.timeouts;
        in_flight += st.waiters.len() as u64;
    });
    shard.pool.each(|c| in_flight += c.in_flight() as u64);
    s.reconnects.set(reconnects);
    s.timeouts.set(timeouts);
    s.in_flight.set(in_flight);
    let st = shard.shared.st.borrow();
    let up = st.status == Status::Up;
    // The reason is a string behind a lock: touched only while down or on the way up.
    if !up || s.backend_up.get() == 0 {
        let mut why = s.backend_error.lock().unwrap_or_else(|e| e.into_inner());
        if up {
            why.clear();
        } else if *why != st.last_error {
            why.clone_from(&st.last_error);
        }
    }
    s.backend_up.set(up as u64);
}
