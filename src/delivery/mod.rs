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
//!   longer than that. The heartbeat renews only the lease of an account
//!   whose turn is under way and the locks of events a round is working on
//!   (`InHand`): a round that fails half-way gives its events back, a turn
//!   that ends gives its lease back, and if even that fails (the database
//!   gone at that moment) they run out, instead of being renewed for as
//!   long as the process lives.
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
mod dispatch;
mod gate;
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
use dispatch::supervised;
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
    /// The accounts whose turn is under way in this process: the only
    /// account leases the heartbeat renews. A lease whose give-back failed
    /// (the database gone at that moment) runs out instead of being kept
    /// for as long as the process lives.
    turns: Mutex<HashSet<i64>>,
    /// This process's hooks in flight: while there are many, fewer rounds
    /// work the database at once (see `gate.rs`).
    hooks: Arc<HooksInFlight>,
    gate: RoundGate,
}

/// Ids this process works on (a round's events, a turn's account), in
/// `set` until dropped: what the heartbeat keeps claimed.
struct InHand<'a> {
    set: &'a Mutex<HashSet<i64>>,
    ids: Vec<i64>,
}

impl<'a> InHand<'a> {
    fn new(set: &'a Mutex<HashSet<i64>>, ids: Vec<i64>) -> Self {
        set.lock()
            .expect("not poisoned")
            .extend(ids.iter().copied());
        InHand { set, ids }
    }
}

impl Drop for InHand<'_> {
    fn drop(&mut self) {
        let mut set = self.set.lock().expect("not poisoned");
        for id in &self.ids {
            set.remove(id);
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
            turns: Mutex::new(HashSet::new()),
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

    /// Marks a round's events as in hand until the guard is dropped.
    fn hold(&self, events: &[Claimed]) -> InHand<'_> {
        InHand::new(&self.in_hand, events.iter().map(|e| e.event_id).collect())
    }

    /// Wakes the dispatcher (a hook was stored). Announcements that come
    /// while it is claiming are kept as one, so a burst of hooks costs one
    /// more claim, not one each.
    pub fn wake(&self) {
        self.wake.notify_one();
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
        // The heartbeat keeps the lease while the turn lasts, and no longer.
        let _turn = InHand::new(&self.turns, vec![account.account_id]);
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
