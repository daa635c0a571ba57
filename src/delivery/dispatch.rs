//! The dispatcher: claims due accounts in batches and runs each account's
//! turn as a task of its own, keeps this process's claims alive, and turns a
//! turn's panic into that turn's error.

use std::{panic::AssertUnwindSafe, sync::Arc};

use futures_util::FutureExt as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::*;

impl Worker {
    /// Delivers until `shutdown`, with at most `turns` account turns in
    /// flight, then gives up this process's leases so another process can
    /// go on at once.
    ///
    /// One dispatcher claims due accounts in batches, as many as there are
    /// free turns, and runs each account's turn as a task of its own: a
    /// turn mostly waits on amoCRM, so waiting costs a task, not one of a
    /// few loops, and an account whose amoCRM is slow or hung holds only
    /// its own turn (its calls end at the client's deadlines, see
    /// `amocrm::AmoApi`). A turn that ends wakes the dispatcher: hooks of
    /// an account stored while its turn was ending are claimed then,
    /// not at the next poll.
    ///
    /// While intake is busy (see `hooks_in_flight.rs`) turns start as
    /// before, but only [`BUSY_ROUNDS`] of their rounds are under way at
    /// once (see `gate.rs`): notes keep flowing, in larger batches since
    /// events pile up meanwhile.
    pub async fn run(self: Arc<Self>, turns: usize, shutdown: CancellationToken) {
        if turns == 0 {
            return;
        }
        let heartbeat = tokio::spawn(self.clone().heartbeat(shutdown.clone()));
        let mut running: JoinSet<()> = JoinSet::new();
        while !shutdown.is_cancelled() {
            while let Some(ended) = running.try_join_next() {
                turn_ended(ended);
            }
            let free = turns.saturating_sub(running.len());
            let mut claimed = 0;
            if free > 0 {
                match self.claim_accounts(free).await {
                    Ok(accounts) => {
                        claimed = accounts.len();
                        for account in accounts {
                            let worker = self.clone();
                            let stop = shutdown.clone();
                            running.spawn(async move { worker.turn(account, &stop).await });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming accounts failed"),
                }
            }
            metrics::gauge!("amohook_delivery_turns").set(running.len() as f64);
            if self.hooks.busy() {
                // Intake is busy: every stored hook announces itself, and a
                // claim on each announcement would cost PostgreSQL more than
                // the hooks' own statements, while only one round at a time
                // goes on anyway (see `gate.rs`). Accounts are claimed at
                // most every BUSY_CLAIM_EVERY meanwhile.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(BUSY_CLAIM_EVERY) => {}
                }
                continue;
            }
            if claimed == free && free > 0 {
                // Every free turn found an account: more may be due.
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                Some(ended) = running.join_next() => turn_ended(ended),
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        // A stop lets each turn finish its round (see `serve_account`):
        // its events are claimed and would otherwise wait for their lock.
        while let Some(ended) = running.join_next().await {
            turn_ended(ended);
        }
        heartbeat.abort();
        if let Err(e) = sqlx::query!(
            "update accounts set lease_owner = null, lease_until = null where lease_owner = $1",
            &self.owner,
        )
        .execute(&self.pool)
        .await
        {
            tracing::warn!(error = %e, "could not release account leases");
        }
    }

    /// One account's turn: its rounds, then its lease given back.
    async fn turn(&self, account: AccountRef, stop: &CancellationToken) {
        if let Err(e) = self.work_on(account, stop).await {
            tracing::warn!(error = %e, "delivery round failed");
        }
    }

    /// Keeps this process's claims alive while it runs. When the process
    /// dies they run out within [`CLAIM_TTL`] and another process (or this
    /// one, restarted) takes over.
    async fn heartbeat(self: Arc<Self>, shutdown: CancellationToken) {
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = beat.tick() => {}
            }
            if let Err(e) = self.renew_claims().await {
                tracing::warn!(error = %e, "renewing this process's claims failed");
            }
        }
    }
}

/// A turn's work, with a panic (a bug) turned into the turn's error: it
/// ends this turn only, and the caller gives the lease back all the same.
/// Unwind safety: nothing shared is left half-changed in memory; the events
/// in hand leave `in_hand` as they unwind.
/// (Not an async fn: the turn's future is large, and an async fn would
/// hold a second copy of it; a test thread's stack overflowed on that in
/// debug builds.)
pub(super) fn supervised(
    turn: impl std::future::Future<Output = anyhow::Result<()>>,
) -> impl std::future::Future<Output = anyhow::Result<()>> {
    AssertUnwindSafe(turn)
        .catch_unwind()
        .map(|caught| caught.unwrap_or_else(|_| Err(anyhow::anyhow!("the delivery turn panicked"))))
}

/// Logs a turn that did not end by itself (a panic past `work_on`'s own
/// catch: its account's lease runs out within [`CLAIM_TTL`]).
fn turn_ended(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended {
        if e.is_panic() {
            tracing::error!("a delivery turn panicked; its account's lease runs out");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_in_a_turn_is_the_turns_error_not_the_workers() {
        let error = supervised(async { panic!("a bug in a round") })
            .await
            .unwrap_err();
        assert!(error.to_string().contains("panicked"), "{error}");
        assert!(supervised(async { Ok(()) }).await.is_ok());
        let failed = supervised(async { Err(anyhow::anyhow!("amoCRM refused")) }).await;
        assert_eq!(failed.unwrap_err().to_string(), "amoCRM refused");
    }
}
