//! How many rounds work the database at once while intake is busy.
//!
//! While intake is busy (see `hooks_in_flight.rs`) a round starts only
//! when fewer than the gate's limit are under way: a note costs PostgreSQL
//! about three times what storing its hook does (the claim, the render,
//! the marks), and in the benchmark delivery running free beside a burst
//! of hooks took two thirds of the intake's throughput. Counting turns
//! instead would not do: with many accounts receiving hooks, every turn is
//! already running when intake gets busy, and each goes on round after
//! round.
//!
//! A round whose call to amoCRM takes longer than [`SLOW_CALL`] gives its
//! place back while it waits (see [`RoundSlot::away`]): a slow or hung
//! amoCRM holds no place for long, and the accounts waiting on it cannot
//! keep other accounts' rounds out.

use std::{
    future::Future,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use tokio::sync::Notify;

use crate::hooks_in_flight::HooksInFlight;

/// A call to amoCRM that has not answered by then gives its round's place
/// back: amoCRM normally answers well under it.
pub(super) const SLOW_CALL: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub(super) struct RoundGate {
    /// Rounds under way.
    working: AtomicUsize,
    /// How many may be while intake is busy.
    limit: usize,
    left: Notify,
}

/// A round's place in the gate, given back when the round ends or a call
/// of it is slow.
#[must_use]
pub(super) struct RoundSlot<'a> {
    gate: &'a RoundGate,
    held: bool,
}

impl RoundGate {
    pub(super) fn new(limit: usize) -> Self {
        RoundGate {
            working: AtomicUsize::new(0),
            limit: limit.max(1),
            left: Notify::new(),
        }
    }

    /// Waits until a round may work the database: at once while intake is
    /// calm, else when a place is free or intake calms down.
    pub(super) async fn enter(&self, hooks: &HooksInFlight) -> RoundSlot<'_> {
        loop {
            let left = self.left.notified();
            let admitted = if hooks.busy() {
                self.working
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < self.limit).then_some(n + 1)
                    })
                    .is_ok()
            } else {
                self.working.fetch_add(1, Ordering::AcqRel);
                true
            };
            if admitted {
                return RoundSlot {
                    gate: self,
                    held: true,
                };
            }
            metrics::counter!("amohook_delivery_yields_total").increment(1);
            tokio::select! {
                _ = left => {}
                _ = hooks.calm() => {}
            }
        }
    }
}

impl RoundSlot<'_> {
    /// Runs a call to amoCRM; if it has not answered within [`SLOW_CALL`],
    /// the place is given back while it goes on (the round then goes on
    /// without one).
    pub(super) async fn away<F: Future>(&mut self, call: F) -> F::Output {
        if !self.held {
            return call.await;
        }
        tokio::pin!(call);
        tokio::select! {
            answer = &mut call => return answer,
            _ = tokio::time::sleep(SLOW_CALL) => {}
        }
        self.leave();
        call.await
    }

    /// Gives the place back; later calls do nothing.
    fn leave(&mut self) {
        if std::mem::take(&mut self.held) {
            self.gate.working.fetch_sub(1, Ordering::AcqRel);
            self.gate.left.notify_one();
        }
    }
}

impl Drop for RoundSlot<'_> {
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;
    use crate::hooks_in_flight::BUSY;

    #[tokio::test]
    async fn while_busy_rounds_wait_for_a_place_and_calls_give_it_back() {
        let hooks = Arc::new(HooksInFlight::default());
        let gate = RoundGate::new(2);
        let short = Duration::from_millis(50);

        // Calm: no limit.
        let calm: Vec<_> = futures_util::future::join_all((0..5).map(|_| gate.enter(&hooks))).await;
        drop(calm);

        let _busy: Vec<_> = (0..BUSY).map(|i| hooks.enter(i as i64)).collect();
        let mut first = gate.enter(&hooks).await;
        let _second = gate.enter(&hooks).await;
        assert!(
            tokio::time::timeout(short, gate.enter(&hooks))
                .await
                .is_err(),
            "a third round waits while two work the database"
        );
        // A quick call keeps the place.
        first.away(async {}).await;
        assert!(tokio::time::timeout(short, gate.enter(&hooks))
            .await
            .is_err());
        // A slow call gives it back while it waits, once.
        let waiting = gate.enter(&hooks);
        tokio::pin!(waiting);
        let slow = first.away(tokio::time::sleep(SLOW_CALL * 2));
        let third = tokio::select! {
            _ = slow => panic!("the slow call ended before its place was taken"),
            third = &mut waiting => third,
        };
        first.away(tokio::time::sleep(SLOW_CALL * 2)).await;
        assert!(
            tokio::time::timeout(short, gate.enter(&hooks))
                .await
                .is_err(),
            "a round gives its place back once"
        );
        drop(third);
        let _fourth = tokio::time::timeout(short, gate.enter(&hooks))
            .await
            .expect("a round that ends gives its place back");
    }

    #[tokio::test]
    async fn waiting_rounds_go_when_intake_calms_down() {
        let hooks = Arc::new(HooksInFlight::default());
        let gate = RoundGate::new(1);
        let busy: Vec<_> = (0..BUSY).map(|i| hooks.enter(i as i64)).collect();
        let _held = gate.enter(&hooks).await;
        let waiting = gate.enter(&hooks);
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut waiting)
                .await
                .is_err()
        );
        drop(busy);
        let _in = tokio::time::timeout(crate::hooks_in_flight::CALM_AFTER * 4, waiting)
            .await
            .expect("calm intake lets every round in");
    }
}
