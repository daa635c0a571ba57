//! Hooks being received right now, so that delivery can step back while
//! intake is busy.
//!
//! A hook's answer is due within amoCRM's two seconds, and amoCRM switches
//! a hook off after many slow or failed answers; a note may come a few
//! seconds later without harm. On a shared machine the two compete for the
//! same cores and the same PostgreSQL: in the benchmark (2 cores, 32
//! concurrent senders, 8 delivery loops) delivery's many small account
//! turns beside the ingest took about half of the CPU, and intake answered
//! 2,100–2,500 hooks a second instead of 4,500 with delivery off.
//!
//! So intake counts as busy while [`BUSY`] or more hooks are in flight (a
//! hook counts once its key named an account: made-up keys do not), and
//! for [`CALM_AFTER`] after a hook arrived to or left that many (the count
//! swings from one moment to the next); meanwhile only one delivery round
//! at a time is under way (see `delivery/gate.rs`): notes keep flowing, in
//! larger batches since events pile up meanwhile, and the other rounds
//! join in once intake is calm. Light load never gets there:
//! hooks in flight are the hook rate times the answer time (100 hooks a
//! second answered in 10 ms is one in flight). The count is per process: a
//! process that only delivers (`worker.concurrency` > 0 beside
//! intake-only processes) never waits.

use std::{
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

/// Hooks in flight from which intake counts as busy.
pub const BUSY: usize = 8;
/// Intake counts as busy until this long after a hook last arrived to or
/// left [`BUSY`] in flight: the count swings from one moment to the next, and a
/// dispatcher that looked at it between two answers would not wait.
pub const CALM_AFTER: Duration = Duration::from_millis(200);

/// The count of hooks in flight in this process. Cheap to share.
#[derive(Debug)]
pub struct HooksInFlight {
    count: AtomicUsize,
    started: Instant,
    /// When a hook last arrived to or left a busy intake: milliseconds
    /// since `started`, plus one (0: never).
    last_busy_ms: AtomicU64,
}

impl Default for HooksInFlight {
    fn default() -> Self {
        HooksInFlight {
            count: AtomicUsize::new(0),
            started: Instant::now(),
            last_busy_ms: AtomicU64::new(0),
        }
    }
}

/// One hook in flight; the count goes down when it is dropped.
#[must_use]
pub struct InFlight(Arc<HooksInFlight>);

impl Drop for InFlight {
    fn drop(&mut self) {
        // Leaving a busy intake counts as busy too: when a commit answers
        // many hooks at once the count drops to nothing for the moment
        // their senders take to send the next ones, and that moment is
        // when the commit's announcements wake the delivery dispatcher.
        if self.0.count.fetch_sub(1, Ordering::AcqRel) >= BUSY {
            self.0.mark_busy();
        }
    }
}

impl HooksInFlight {
    /// Counts a hook until the returned guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 >= BUSY {
            self.mark_busy();
        }
        InFlight(self.clone())
    }

    fn mark_busy(&self) {
        self.last_busy_ms
            .store(self.millis() + 1, Ordering::Release);
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// Whether [`BUSY`] hooks are in flight, or were when a hook arrived or
    /// left within the last [`CALM_AFTER`].
    pub fn busy(&self) -> bool {
        if self.count.load(Ordering::Acquire) >= BUSY {
            return true;
        }
        match self.last_busy_ms.load(Ordering::Acquire) {
            0 => false,
            at => self.millis() + 1 < at + CALM_AFTER.as_millis() as u64,
        }
    }

    /// Returns once intake is not busy.
    pub async fn calm(&self) {
        while self.busy() {
            tokio::time::sleep(CALM_AFTER / 4).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn busy_from_a_hook_among_many_until_calm_after() {
        let hooks = Arc::new(HooksInFlight::default());
        let mut held: Vec<InFlight> = (0..BUSY - 1).map(|_| hooks.enter()).collect();
        assert!(!hooks.busy(), "fewer than BUSY in flight");
        tokio::time::timeout(Duration::from_millis(50), hooks.calm())
            .await
            .expect("calm below BUSY");

        held.push(hooks.enter());
        assert!(hooks.busy());
        // Busy for as long as they stay in flight, however long.
        tokio::time::sleep(CALM_AFTER + CALM_AFTER / 2).await;
        assert!(hooks.busy(), "busy while BUSY hooks are in flight");
        // Every hook leaves at once (a commit answers them), long after the
        // last one arrived: busy stays for CALM_AFTER, then ends.
        held.clear();
        assert!(hooks.busy(), "busy right after a busy intake emptied");
        let waited = Instant::now();
        tokio::time::timeout(CALM_AFTER * 3, hooks.calm())
            .await
            .expect("calm after CALM_AFTER");
        assert!(waited.elapsed() >= CALM_AFTER - Duration::from_millis(20));
        assert!(!hooks.busy());
        // A hook arriving alone does not make intake busy.
        let _one = hooks.enter();
        assert!(!hooks.busy());
    }
}
