//! Criterion settings shared by the benches: short runs, so `cargo bench` stays within a few
//! minutes on a 2-core machine.

use criterion::Criterion;
use std::time::Duration;

pub fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}
