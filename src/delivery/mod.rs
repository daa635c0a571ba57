//! Delivery: stored hook events become notes in amoCRM.
//!
//! The path of one event: `claim` (an account lease, then its due events),
//! `round` (render the notes, moving each card's last seen state forward),
//! `notes_api` (look up what may exist, send in batches), `retry` (what a
//! failure means for the events and the account).
//!
//!
//! - An account is worked on by one process at a time: a lease on its row
//!   (claimed with `for update skip locked`, dropped when done, and taken
//!   over by another process when it runs out).
//! - Its due events are claimed with `for update skip locked` into state
//!   `sending` with their own lock, so that even a process that lost its
//!   account lease cannot have an event sent twice at once.
//! - Leases and locks are short ([`CLAIM_TTL`]) and kept alive by the
//!   process's heartbeat: a process that dies leaves nothing locked for
//!   longer than that. The heartbeat renews only the locks of events a
//!   round is working on (`InHand`): a round that fails half-way gives its
//!   events back, and if even that fails their locks run out, instead of
//!   being renewed for as long as the process lives.
//! - A note's text is rendered once, in the same transaction that moves the
//!   card's last seen state forward; retries send exactly that text.
//! - Before a request that may already have reached amoCRM is repeated (a
//!   crash mid-send, a timeout, a 5xx), the card's notes are looked up and a
//!   note with the same text counts as delivered. The mark that asks for the
//!   lookup (`maybe_sent`) is set before every send and cleared only when
//!   the note is delivered, or when a lookup proved it absent and the send
//!   that followed was refused outright.
//! - A failed directory call (users, pipelines) costs only names: the notes
//!   show ids instead.
//! - Calls wait for the shared per-account budget (see `budget.rs`).
//! - Account turns run as tasks, up to `worker.concurrency` at once, started
//!   by one dispatcher that claims due accounts in batches (see
//!   [`Worker::run`]): a slow or hung amoCRM holds only its own account's
//!   turn.
//! - NOTIFY on every stored hook wakes the dispatcher (see `listen.rs`); a
//!   one-second poll picks up retries whose time has come.

mod claim;
mod gate;
mod notes_api;
mod render;
mod retry;
mod round;

use std::{
    collections::HashSet,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use futures_util::FutureExt as _;
use sqlx::{types::Json, PgPool};
use tokio::{sync::Notify, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    accounts::AccountStatus,
    amocrm::hooks::{Action, EntityKind, Snapshot},
    amocrm::AmoApi,
    hooks_in_flight::HooksInFlight,
    tokens::TokenStore,
};
use gate::RoundGate;

/// How long an account lease or an event lock lasts without a heartbeat.
pub const CLAIM_TTL: Duration = Duration::from_secs(15);
/// How often a process renews its claims: three beats per [`CLAIM_TTL`].
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Pages of notes read at most when looking for a note that may exist.
const LOOKUP_PAGES: u32 = 20;
/// Events claimed per round (two full batches).
const ROUND: i64 = 100;
/// Notes per request: amoCRM's batch limit.
pub const BATCH: usize = 50;
/// Rounds under way at once while intake is busy (see `gate.rs`). Two
/// gave intake 0.67 × pgbench in the benchmark, one 0.84–0.88 ×.
const BUSY_ROUNDS: usize = 1;
/// Rounds per account lease before others get their turn.
const ROUNDS_PER_TURN: usize = 10;
/// A failing event is retried at least this long before it counts as failed.
const RETRY_FOR: Duration = Duration::from_secs(24 * 60 * 60);
/// An account amoCRM blocks (HTML 403) rests this long.
const BLOCK_PAUSE: Duration = Duration::from_secs(10 * 60);
/// An idle dispatcher looks for due retries this often.
const POLL: Duration = Duration::from_secs(1);
/// While intake is busy, accounts are claimed at most this often.
const BUSY_CLAIM_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug)]
struct AccountRef {
    account_id: i64,
    domain: String,
    status: AccountStatus,
    timezone: Option<String>,
    /// `ru`, `en`, `es` or `pt`; unset: by the domain (`notes::Lang`).
    note_lang: Option<String>,
    /// The account's latest settings version; 0: it never saved any.
    settings_version: i32,
    /// A pause had been set (and has run out): the first delivered note
    /// clears it.
    paused: bool,
}

#[derive(Debug)]
struct Claimed {
    event_id: i64,
    entity_type: EntityKind,
    entity_id: i64,
    action: Action,
    changed_at: i64,
    snapshot: Json<Snapshot>,
    /// When it was stored: it follows the settings in force then.
    received_at: DateTime<Utc>,
    note_text: Option<String>,
    maybe_sent: bool,
    sent_at: Option<DateTime<Utc>>,
    /// Its `maybe_sent` mark was stored with its note text, in this round:
    /// the send need not store it again. (In memory `maybe_sent` stays as
    /// claimed: a note rendered just now was never sent, so it is not
    /// looked up.)
    marked: bool,
}

/// What a round leaves for the account's turn.
enum Next {
    /// Go on with the next round.
    Continue,
    /// Stop this turn and come back later (rate limit, outage, paused, not
    /// active).
    Later,
}

pub struct Worker {
    pool: PgPool,
    api: AmoApi,
    tokens: TokenStore,
    owner: String,
    fallback_tz: Tz,
    wake: Notify,
    /// The events this process's rounds are working on.
    in_hand: Mutex<HashSet<i64>>,
    /// This process's hooks in flight: while there are many, fewer rounds
    /// work the database at once (see `gate.rs`).
    hooks: Arc<HooksInFlight>,
    gate: RoundGate,
}

/// A round's claimed events, in hand until dropped.
struct InHand<'a> {
    worker: &'a Worker,
    ids: Vec<i64>,
}

impl Drop for InHand<'_> {
    fn drop(&mut self) {
        let mut in_hand = self.worker.in_hand.lock().expect("not poisoned");
        for id in &self.ids {
            in_hand.remove(id);
        }
    }
}

impl Worker {
    pub fn new(pool: PgPool, api: AmoApi, tokens: TokenStore, fallback_tz: Tz) -> Self {
        Worker {
            pool,
            api,
            tokens,
            owner: crate::crypto::random_token(12),
            fallback_tz,
            wake: Notify::new(),
            in_hand: Mutex::new(HashSet::new()),
            hooks: Arc::default(),
            gate: RoundGate::new(BUSY_ROUNDS),
        }
    }

    /// Lets only a few rounds work the database at once while `hooks` says
    /// intake is busy (see `gate.rs`). Without it (a worker on its own, in
    /// tests and tools) delivery never steps back.
    pub fn yielding_to(mut self, hooks: Arc<HooksInFlight>) -> Self {
        self.hooks = hooks;
        self
    }

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

    /// Marks a round's events as in hand until the guard is dropped.
    fn hold(&self, events: &[Claimed]) -> InHand<'_> {
        let ids: Vec<i64> = events.iter().map(|e| e.event_id).collect();
        self.in_hand
            .lock()
            .expect("not poisoned")
            .extend(ids.iter().copied());
        InHand { worker: self, ids }
    }

    /// Wakes the dispatcher (a hook was stored). Announcements that come
    /// while it is claiming are kept as one, so a burst of hooks costs one
    /// more claim, not one each.
    pub fn wake(&self) {
        self.wake.notify_one();
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

    /// Claims one account with due events and works on it. False when no
    /// account had anything due.
    pub async fn work_once(&self) -> anyhow::Result<bool> {
        let Some(account) = self.claim_accounts(1).await?.pop() else {
            return Ok(false);
        };
        self.work_on(account, &CancellationToken::new()).await?;
        Ok(true)
    }

    /// Serves a leased account, then gives its lease back (also when the
    /// turn failed).
    async fn work_on(&self, account: AccountRef, stop: &CancellationToken) -> anyhow::Result<()> {
        let span = tracing::info_span!("deliver", account.id = account.account_id);
        let result = supervised(tracing::Instrument::instrument(
            self.serve_account(&account, stop),
            span,
        ))
        .await;
        sqlx::query!(
            "update accounts set lease_owner = null, lease_until = null
             where account_id = $1 and lease_owner = $2",
            account.account_id,
            &self.owner,
        )
        .execute(&self.pool)
        .await?;
        result
    }

    /// Works until nothing is due for any account. For tests and tools.
    pub async fn drain(&self) -> anyhow::Result<()> {
        while self.work_once().await? {}
        Ok(())
    }

    async fn serve_account(
        &self,
        account: &AccountRef,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        if account.status == AccountStatus::Disconnected {
            let dropped = sqlx::query!(
                "update hook_events set state = 'dropped', last_error = 'account disconnected',
                     finished_at = now(), locked_until = null
                 where account_id = $1 and state in ('pending', 'sending')",
                account.account_id,
            )
            .execute(&self.pool)
            .await?
            .rows_affected();
            tracing::info!(dropped, "events of a disconnected account dropped");
            return Ok(());
        }
        for round in 0..ROUNDS_PER_TURN {
            // The claim has just set the lease; later rounds renew it.
            if round > 0 && !self.renew(account.account_id).await? {
                tracing::warn!("account lease lost; leaving the account to its new owner");
                return Ok(());
            }
            let mut slot = tokio::select! {
                slot = self.gate.enter(&self.hooks) => slot,
                _ = stop.cancelled() => return Ok(()),
            };
            let events = self.claim_events(account.account_id).await?;
            if events.is_empty() {
                return Ok(());
            }
            // A short round took every due event: the turn ends after it
            // instead of asking again for nothing. Hooks stored meanwhile
            // are claimed when the turn ends (see `run`).
            let last = (events.len() as i64) < ROUND;
            let hand = self.hold(&events);
            match self.round(account, events, &mut slot).await {
                Ok(Next::Continue) if !last && !stop.is_cancelled() => {}
                Ok(_) => return Ok(()),
                Err(e) => {
                    // What the round did not finish is due again at once
                    // (a note that may have been sent keeps its mark, and
                    // is looked up first).
                    if let Err(requeue) = self.requeue(&hand.ids).await {
                        tracing::warn!(error = %requeue, "events of a failed round not given back; their locks run out");
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

/// A turn's work, with a panic (a bug) turned into the turn's error: it
/// ends this turn only, and the caller gives the lease back all the same.
/// Unwind safety: nothing shared is left half-changed in memory; the events
/// in hand leave `in_hand` as they unwind.
/// (Not an async fn: the turn's future is large, and an async fn would
/// hold a second copy of it; a test thread's stack overflowed on that in
/// debug builds.)
fn supervised(
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

/// Queues an account's failed events again, from their first attempt, and
/// wakes delivery; returns how many.
pub async fn requeue_failed(pool: &PgPool, account_id: i64) -> sqlx::Result<u64> {
    let retried = sqlx::query!(
        "update hook_events set state = 'pending', attempts = 0, first_failure_at = null,
             next_attempt_at = now(), finished_at = null, last_error = null
         where account_id = $1 and state = 'failed'",
        account_id,
    )
    .execute(pool)
    .await?
    .rows_affected();
    // Delivery also finds them on its next pass without the wake-up.
    let _ = sqlx::query!(
        "select pg_notify($1, $2)",
        crate::inbox::EVENTS,
        account_id.to_string(),
    )
    .execute(pool)
    .await;
    Ok(retried)
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
