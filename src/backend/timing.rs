//! Round-trip timing of a connection's requests, for the metrics: the FIFO of replies makes
//! a timestamp per run of requests queued together enough (no timestamp per request).

use std::collections::VecDeque;

/// Runs of requests queued at the same instant: `(end, us)` covers the requests numbered
/// below `end` since the last reset, queued at `us` (the shard's batch clock).
#[derive(Default)]
pub struct Timing {
    runs: VecDeque<(u64, u64)>,
    /// Replies read since the last reset (or the connection's failure).
    answered: u64,
}

impl Timing {
    /// Every request queued so far and not yet marked was queued at `us`.
    pub(crate) fn mark(&mut self, in_flight: usize, us: u64) {
        let end = self.answered + in_flight as u64;
        if self.runs.back().is_none_or(|&(e, _)| e < end) {
            self.runs.push_back((end, us));
        }
    }

    /// The reply to the oldest request was read at `now_us`: how long it took.
    pub fn answered(&mut self, now_us: u64) -> Option<u64> {
        let i = self.answered;
        self.answered += 1;
        while let Some(&(end, us)) = self.runs.front() {
            if i < end {
                return Some(now_us.saturating_sub(us));
            }
            self.runs.pop_front();
        }
        None
    }

    /// Every waiter was failed: numbering starts again.
    pub fn reset(&mut self) {
        self.runs.clear();
        self.answered = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::Timing;

    #[test]
    fn each_reply_gets_the_time_of_its_run() {
        let mut t = Timing::default();
        t.mark(2, 10); // two requests queued at 10
        t.mark(2, 15); // nothing new: no run
        t.mark(3, 20); // a third at 20
        assert_eq!(t.answered(30), Some(20));
        assert_eq!(t.answered(31), Some(21));
        assert_eq!(t.answered(32), Some(12));
        assert_eq!(t.answered(33), None); // never marked
        t.reset();
        t.mark(1, 40);
        assert_eq!(t.answered(45), Some(5));
    }
}
