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
//! - NOTIFY on every stored hook wakes idle workers (see `listen.rs`); a
//!   one-second poll picks up retries whose time has come.

mod claim;
mod notes_api;
mod render;
mod retry;
mod round;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sqlx::{types::Json, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    accounts::AccountStatus,
    amocrm::hooks::{Action, EntityKind, Snapshot},
    amocrm::AmoApi,
    hooks_in_flight::HooksInFlight,
    tokens::TokenStore,
};

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
/// Rounds per account lease before others get their turn.
const ROUNDS_PER_TURN: usize = 10;
/// A failing event is retried at least this long before it counts as failed.
const RETRY_FOR: Duration = Duration::from_secs(24 * 60 * 60);
/// An account amoCRM blocks (HTML 403) rests this long.
const BLOCK_PAUSE: Duration = Duration::from_secs(10 * 60);
/// Idle workers look for due retries this often.
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct AccountRef {
    account_id: i64,
    domain: String,
    status: AccountStatus,
    timezone: Option<String>,
}

#[derive(Debug)]
struct Claimed {
    event_id: i64,
    entity_type: EntityKind,
    entity_id: i64,
    action: Action,
    changed_at: i64,
    snapshot: Json<Snapshot>,
    note_text: Option<String>,
    maybe_sent: bool,
    sent_at: Option<DateTime<Utc>>,
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
    /// This process's hooks in flight: while there are many, three quarters
    /// of the delivery loops wait (see `hooks_in_flight.rs`).
    hooks: Arc<HooksInFlight>,
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
        }
    }

    /// Makes three quarters of the delivery loops wait while `hooks` says
    /// intake is busy. Without it (a worker on its own, in tests and tools)
    /// no loop waits.
    pub fn yielding_to(mut self, hooks: Arc<HooksInFlight>) -> Self {
        self.hooks = hooks;
        self
    }

    /// Runs `concurrency` delivery loops until `shutdown`, then gives up
    /// this process's leases so another process can go on at once.
    pub async fn run(self: Arc<Self>, concurrency: usize, shutdown: CancellationToken) {
        if concurrency == 0 {
            return;
        }
        let heartbeat = tokio::spawn(self.clone().heartbeat(shutdown.clone()));
        let mut loops = Vec::new();
        for index in 0..concurrency {
            let worker = self.clone();
            let stop = shutdown.clone();
            // A quarter of the loops (at least one) never step back for
            // intake: notes keep flowing.
            let yields = index >= (concurrency / 4).max(1);
            loops.push(tokio::spawn(async move {
                worker.delivery_loop(yields, stop).await
            }));
        }
        for handle in loops {
            let _ = handle.await;
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

    async fn delivery_loop(&self, yields: bool, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            if yields && self.hooks.busy() {
                metrics::counter!("amohook_delivery_yields_total").increment(1);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = self.hooks.calm() => {}
                }
            }
            // A stop signal lets the current account's round finish: its
            // events are claimed and would otherwise wait for their lock.
            match self.work_once().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "delivery round failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
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

    /// Wakes one delivery loop (a hook was stored): one announcement needs
    /// one claim, and waking every idle loop made each of them run the
    /// claim query for nothing. When every loop is busy the wake-up waits
    /// for the first one to finish, so a hook stored meanwhile is not left
    /// to the next poll.
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
        let Some(account) = self.claim_account().await? else {
            return Ok(false);
        };
        let span = tracing::info_span!("deliver", account.id = account.account_id);
        let result = tracing::Instrument::instrument(self.serve_account(&account), span).await;
        sqlx::query!(
            "update accounts set lease_owner = null, lease_until = null
             where account_id = $1 and lease_owner = $2",
            account.account_id,
            &self.owner,
        )
        .execute(&self.pool)
        .await?;
        result.map(|_| true)
    }

    /// Works until nothing is due for any account. For tests and tools.
    pub async fn drain(&self) -> anyhow::Result<()> {
        while self.work_once().await? {}
        Ok(())
    }

    async fn serve_account(&self, account: &AccountRef) -> anyhow::Result<()> {
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
        for _ in 0..ROUNDS_PER_TURN {
            if !self.renew(account.account_id).await? {
                tracing::warn!("account lease lost; leaving the account to its new owner");
                return Ok(());
            }
            let events = self.claim_events(account.account_id).await?;
            if events.is_empty() {
                return Ok(());
            }
            let hand = self.hold(&events);
            match self.round(account, events).await {
                Ok(Next::Continue) => {}
                Ok(Next::Later) => return Ok(()),
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
