//! The shard thread's microsecond clock for latency metrics. It is read from the OS once per
//! batch of client input (with the shard's millisecond clock) and once per read from a
//! backend connection, never per request: a pipeline of 100 hits costs one clock read.

use std::cell::Cell;

thread_local! {
    static LAST_US: Cell<u64> = const { Cell::new(0) };
}

/// Microseconds since the process's epoch, read now; kept as this thread's latest reading.
#[inline]
pub fn refresh() -> u64 {
    set(crate::registry::EPOCH.elapsed())
}

/// Records a reading the caller already took (the shard's batch clock).
#[inline]
pub fn set(since_epoch: std::time::Duration) -> u64 {
    let us = since_epoch.as_micros() as u64;
    LAST_US.with(|c| c.set(us));
    us
}

/// This thread's latest reading, without asking the OS.
#[inline]
pub fn last_us() -> u64 {
    LAST_US.with(|c| c.get())
}
