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
//! hook counts once its key named an account: made-up keys do not; and an
//! account counts for at most [`ACCOUNT_SHARE`] of its hooks, so that one
//! account's flood cannot slow every account's notes alone), and
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
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

/// Hooks in flight from which intake counts as busy.
pub const BUSY: usize = 8;
/// Hooks of one account that count towards [`BUSY`], at most: it takes
/// two accounts to make intake busy.
pub const ACCOUNT_SHARE: usize = BUSY / 2;
/// Bytes of large hook bodies (over [`LARGE_BODY`]) one account may have
/// in flight at once, beyond its first hook: only a flood of the largest
/// bodies gets here, and its parsing and storing then cost at most about
/// one body's work at a time. Measured: 4 connections posting 920 KB hooks
/// of 20,000 cards kept another account's hooks at p50 116 ms (2 ms alone).
pub const ACCOUNT_BYTES: usize = 1024 * 1024;
/// Bodies up to this size are never refused, however many of one account
/// are in flight: real hooks are a few KB (a lead with many custom fields,
/// 2 to 10 KB), and a burst of them (a mass edit) must all be stored. Their
/// share of the committer is kept by its turns (see `inbox/`).
pub const LARGE_BODY: usize = 32 * 1024;
/// Intake counts as busy until this long after a hook last arrived to or
/// left [`BUSY`] in flight: the count swings from one moment to the next, and a
/// dispatcher that looked at it between two answers would not wait.
pub const CALM_AFTER: Duration = Duration::from_millis(200);

/// The count of hooks in flight in this process. Cheap to share.
#[derive(Debug)]
pub struct HooksInFlight {
    /// Hooks in flight, each account's counted up to [`ACCOUNT_SHARE`].
    count: AtomicUsize,
    /// Hooks in flight by account.
    by_account: Mutex<HashMap<i64, Share>>,
    started: Instant,
    /// When a hook last arrived to or left a busy intake: milliseconds
    /// since `started`, plus one (0: never).
    last_busy_ms: AtomicU64,
}

impl Default for HooksInFlight {
    fn default() -> Self {
        HooksInFlight {
            count: AtomicUsize::new(0),
            by_account: Mutex::default(),
            started: Instant::now(),
            last_busy_ms: AtomicU64::new(0),
        }
    }
}

/// One hook in flight; the count goes down when it is dropped.
#[must_use]
pub struct InFlight {
    hooks: Arc<HooksInFlight>,
    account_id: i64,
    bytes: usize,
}

/// An account's hooks in flight.
#[derive(Debug, Default)]
struct Share {
    hooks: usize,
    bytes: usize,
}

/// Refused by [`HooksInFlight::try_enter`]: the account has its share of
/// intake in flight already.
#[derive(Debug, PartialEq, Eq)]
pub struct OverShare;

impl Drop for InFlight {
    fn drop(&mut self) {
        let hooks = &self.hooks;
        let counted = {
            let mut by_account = hooks.by_account.lock().expect("not poisoned");
            let share = by_account.entry(self.account_id).or_default();
            let counted = share.hooks <= ACCOUNT_SHARE;
            share.hooks = share.hooks.saturating_sub(1);
            share.bytes = share.bytes.saturating_sub(self.bytes);
            if share.hooks == 0 {
                by_account.remove(&self.account_id);
            }
            counted
        };
        // Leaving a busy intake counts as busy too: when a commit answers
        // many hooks at once the count drops to nothing for the moment
        // their senders take to send the next ones, and that moment is
        // when the commit's announcements wake the delivery dispatcher.
        if counted && hooks.count.fetch_sub(1, Ordering::AcqRel) >= BUSY {
            hooks.mark_busy();
        }
    }
}

impl HooksInFlight {
    /// Counts a hook of `account_id` with a body of `bytes` until the
    /// returned guard is dropped; refused when the body is large, the
    /// account already has hooks in flight, and this one would take its
    /// large bodies past [`ACCOUNT_BYTES`]. An account may always have one
    /// hook in flight, whatever its size.
    pub fn try_enter(
        self: &Arc<Self>,
        account_id: i64,
        bytes: usize,
    ) -> Result<InFlight, OverShare> {
        let bytes = if bytes > LARGE_BODY { bytes } else { 0 };
        let counted = {
            let mut by_account = self.by_account.lock().expect("not poisoned");
            let share = by_account.entry(account_id).or_default();
            if share.hooks > 0 && share.bytes + bytes > ACCOUNT_BYTES {
                return Err(OverShare);
            }
            share.hooks += 1;
            share.bytes += bytes;
            share.hooks <= ACCOUNT_SHARE
        };
        if counted && self.count.fetch_add(1, Ordering::AcqRel) + 1 >= BUSY {
            self.mark_busy();
        }
        Ok(InFlight {
            hooks: self.clone(),
            account_id,
            bytes,
        })
    }

    /// Counts a hook of `account_id` with an empty body (never refused).
    #[cfg(test)]
    pub fn enter(self: &Arc<Self>, account_id: i64) -> InFlight {
        self.try_enter(account_id, 0)
            .expect("an empty body is never over the share")
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
        let mut held: Vec<InFlight> = (0..BUSY - 1).map(|i| hooks.enter(i as i64)).collect();
        assert!(!hooks.busy(), "fewer than BUSY in flight");
        tokio::time::timeout(Duration::from_millis(50), hooks.calm())
            .await
            .expect("calm below BUSY");

        held.push(hooks.enter(BUSY as i64));
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
        let _one = hooks.enter(1);
        assert!(!hooks.busy());
    }

    #[test]
    fn an_account_past_its_share_of_bytes_is_refused_others_are_not() {
        let hooks = Arc::new(HooksInFlight::default());
        let large = LARGE_BODY + 1;
        let first = hooks
            .try_enter(1, ACCOUNT_BYTES * 2)
            .expect("a first hook, however big");
        assert_eq!(hooks.try_enter(1, large).err(), Some(OverShare));
        let other = hooks
            .try_enter(2, ACCOUNT_BYTES - 10)
            .expect("another account's");
        drop(first);
        let again = hooks
            .try_enter(1, ACCOUNT_BYTES - large)
            .expect("room again once it left");
        let _up_to = hooks.try_enter(1, large).expect("up to the share");
        assert_eq!(hooks.try_enter(1, large).err(), Some(OverShare));
        // Bodies up to LARGE_BODY are taken however many are in flight:
        // a burst of real hooks.
        let small: Vec<_> = (0..5000)
            .map(|_| hooks.try_enter(1, LARGE_BODY).unwrap())
            .collect();
        assert_eq!(small.len(), 5000);
        drop((again, other));
    }

    #[tokio::test]
    async fn one_account_alone_never_makes_intake_busy() {
        let hooks = Arc::new(HooksInFlight::default());
        let flood: Vec<InFlight> = (0..BUSY * 10).map(|_| hooks.enter(1)).collect();
        assert!(!hooks.busy(), "one account's {} hooks", flood.len());
        // A second account with its share makes it busy...
        let second: Vec<InFlight> = (0..ACCOUNT_SHARE).map(|_| hooks.enter(2)).collect();
        assert!(hooks.busy());
        // ... and when the flood's hooks leave, their count goes with them.
        drop(flood);
        drop(second);
        tokio::time::sleep(CALM_AFTER + CALM_AFTER / 2).await;
        assert!(!hooks.busy());
        let again: Vec<InFlight> = (0..BUSY - 1).map(|i| hooks.enter(i as i64)).collect();
        assert!(
            !hooks.busy(),
            "the count went back to nothing: {}",
            again.len()
        );
    }
}
