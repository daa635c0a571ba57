//! The delivery worker: turns stored hook events into notes.
//!
//! - An account is worked on by one process at a time: a lease on its row
//!   (claimed with `for update skip locked`, dropped when done, and taken
//!   over by another process when it runs out).
//! - Its due events are claimed with `for update skip locked` into state
//!   `sending` with their own lock, so that even a process that lost its
//!   account lease cannot have an event sent twice at once.
//! - Leases and locks are short ([`CLAIM_TTL`]) and kept alive by the
//!   process's heartbeat: a process that dies leaves nothing locked for
//!   longer than that.
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

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rand::Rng as _;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use sqlx::{types::Json, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    amocrm::{AmoApi, AmoError},
    directory::{self, Directory, Needs},
    hooks::{Action, EntityKind, Snapshot},
    notes::{self, Lang},
    tokens::{CallError, TokenError, TokenStore},
};

/// How long an account lease or an event lock lasts without a heartbeat.
pub const CLAIM_TTL: Duration = Duration::from_secs(15);
/// How often a process renews its claims: three beats per [`CLAIM_TTL`].
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Pages of notes read at most when looking for a note that may exist.
const LOOKUP_PAGES: u32 = 20;
/// Notes per page of that lookup: amoCRM's maximum.
const LOOKUP_LIMIT: usize = 250;
/// Events claimed per round (two full batches).
const ROUND: i64 = 100;
/// Notes per request: amoCRM's batch limit.
pub const BATCH: usize = 50;
/// Rounds per account lease before others get their turn.
const ROUNDS_PER_TURN: usize = 10;
/// A failing event is retried at least this long before it counts as failed.
const RETRY_FOR: &str = "24 hours";
/// An account amoCRM blocks (HTML 403) rests this long.
const BLOCK_PAUSE: Duration = Duration::from_secs(10 * 60);
/// Idle workers look for due retries this often.
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, sqlx::FromRow)]
struct AccountRef {
    account_id: i64,
    domain: String,
    status: String,
    timezone: Option<String>,
}

#[derive(Debug, sqlx::FromRow)]
struct Claimed {
    event_id: i64,
    entity_type: String,
    entity_id: i64,
    action: String,
    changed_at: i64,
    snapshot: Json<Snapshot>,
    note_text: Option<String>,
    maybe_sent: bool,
    sent_at: Option<DateTime<Utc>>,
}

impl Claimed {
    fn kind(&self) -> EntityKind {
        EntityKind::parse(&self.entity_type).unwrap_or(EntityKind::Lead)
    }
}

/// Why a round stopped early.
enum Stop {
    /// Come back later (rate limit, outage, paused, not active).
    Later,
}

pub struct Worker {
    pool: PgPool,
    api: AmoApi,
    tokens: TokenStore,
    owner: String,
    fallback_tz: Tz,
    wake: Notify,
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
        }
    }

    /// Runs `concurrency` delivery loops until `shutdown`, then gives up
    /// this process's leases so another process can go on at once.
    pub async fn run(self: Arc<Self>, concurrency: usize, shutdown: CancellationToken) {
        if concurrency == 0 {
            return;
        }
        let heartbeat = tokio::spawn(self.clone().heartbeat(shutdown.clone()));
        let mut loops = Vec::new();
        for _ in 0..concurrency {
            let worker = self.clone();
            let stop = shutdown.clone();
            loops.push(tokio::spawn(
                async move { worker.delivery_loop(stop).await },
            ));
        }
        for handle in loops {
            let _ = handle.await;
        }
        heartbeat.abort();
        if let Err(e) = sqlx::query(
            "update accounts set lease_owner = null, lease_until = null where lease_owner = $1",
        )
        .bind(&self.owner)
        .execute(&self.pool)
        .await
        {
            tracing::warn!(error = %e, "could not release account leases");
        }
    }

    async fn delivery_loop(&self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
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

    /// Wakes the idle delivery loops (a hook was stored).
    pub fn wake(&self) {
        self.wake.notify_waiters();
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

    /// Pushes every lease and lock this process holds [`CLAIM_TTL`] ahead.
    pub async fn renew_claims(&self) -> sqlx::Result<()> {
        let ttl = claim_ttl();
        sqlx::query("update accounts set lease_until = now() + $2 where lease_owner = $1")
            .bind(&self.owner)
            .bind(ttl)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "update hook_events set locked_until = now() + $2
             where locked_by = $1 and state = 'sending'",
        )
        .bind(&self.owner)
        .bind(ttl)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Claims one account with due events and works on it. False when no
    /// account had anything due.
    pub async fn work_once(&self) -> anyhow::Result<bool> {
        let Some(account) = self.claim_account().await? else {
            return Ok(false);
        };
        let span = tracing::info_span!("deliver", account.id = account.account_id);
        let result = tracing::Instrument::instrument(self.serve_account(&account), span).await;
        sqlx::query(
            "update accounts set lease_owner = null, lease_until = null
             where account_id = $1 and lease_owner = $2",
        )
        .bind(account.account_id)
        .bind(&self.owner)
        .execute(&self.pool)
        .await?;
        result.map(|_| true)
    }

    /// Works until nothing is due for any account. For tests and tools.
    pub async fn drain(&self) -> anyhow::Result<()> {
        while self.work_once().await? {}
        Ok(())
    }

    async fn claim_account(&self) -> sqlx::Result<Option<AccountRef>> {
        sqlx::query_as(
            "with candidate as (
                 select a.account_id from accounts a
                 where a.status in ('active', 'disconnected')
                   and not a.manual_pause
                   and (a.paused_until is null or a.paused_until <= now())
                   and (a.lease_until is null or a.lease_until < now())
                   and exists (
                       select 1 from hook_events e
                       where e.account_id = a.account_id
                         and ((e.state = 'pending' and e.next_attempt_at <= now())
                              or (e.state = 'sending' and e.locked_until < now())))
                 order by a.last_served_at nulls first
                 limit 1
                 for update skip locked)
             update accounts a
             set lease_owner = $1, lease_until = now() + $2, last_served_at = now()
             from candidate where a.account_id = candidate.account_id
             returning a.account_id, a.domain, a.status, a.timezone",
        )
        .bind(&self.owner)
        .bind(claim_ttl())
        .fetch_optional(&self.pool)
        .await
    }

    /// Extends this process's lease on the account; false when it was lost.
    async fn renew(&self, account_id: i64) -> sqlx::Result<bool> {
        let renewed = sqlx::query(
            "update accounts set lease_until = now() + $3
             where account_id = $1 and lease_owner = $2",
        )
        .bind(account_id)
        .bind(&self.owner)
        .bind(claim_ttl())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(renewed == 1)
    }

    async fn serve_account(&self, account: &AccountRef) -> anyhow::Result<()> {
        if account.status == "disconnected" {
            let dropped = sqlx::query(
                "update hook_events set state = 'dropped', last_error = 'account disconnected',
                     finished_at = now(), locked_until = null
                 where account_id = $1 and state in ('pending', 'sending')",
            )
            .bind(account.account_id)
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
            if let Err(Stop::Later) = self.round(account, events).await? {
                return Ok(());
            }
        }
        Ok(())
    }

    async fn claim_events(&self, account_id: i64) -> sqlx::Result<Vec<Claimed>> {
        let mut events: Vec<Claimed> = sqlx::query_as(
            "with due as (
                 select event_id from hook_events
                 where account_id = $1
                   and ((state = 'pending' and next_attempt_at <= now())
                        or (state = 'sending' and locked_until < now()))
                 order by changed_at, event_id
                 limit $2
                 for update skip locked)
             update hook_events e set state = 'sending', locked_until = now() + $3, locked_by = $4
             from due where e.event_id = due.event_id
             returning e.event_id, e.entity_type, e.entity_id, e.action, e.changed_at, e.snapshot,
                       e.note_text, e.maybe_sent, e.sent_at",
        )
        .bind(account_id)
        .bind(ROUND)
        .bind(claim_ttl())
        .bind(&self.owner)
        .fetch_all(&self.pool)
        .await?;
        events.sort_by_key(|e| (e.changed_at, e.event_id));
        Ok(events)
    }

    /// Renders, checks and sends one round of claimed events.
    async fn round(
        &self,
        account: &AccountRef,
        mut events: Vec<Claimed>,
    ) -> anyhow::Result<Result<(), Stop>> {
        let ids: Vec<i64> = events.iter().map(|e| e.event_id).collect();
        if events.iter().any(|e| e.note_text.is_none()) {
            let mut dir = directory::load(&self.pool, account.account_id).await?;
            let needs = needs_of(events.iter().filter(|e| e.note_text.is_none()));
            if let Err(e) = directory::refresh_for(
                &self.pool,
                &self.api,
                &self.tokens,
                account.account_id,
                &account.domain,
                &mut dir,
                &needs,
            )
            .await
            {
                if stops_the_account(&e) {
                    // Sending would fail the same way.
                    return self.failed_call(account, &ids, e).await.map(Err);
                }
                // Names are a nicety: the notes show ids instead.
                tracing::warn!(error = %e, "users or pipelines unavailable; notes name ids");
                self.record(account.account_id, 0, Some(&e.to_string()))
                    .await?;
            }
            self.render(account, &mut events, &dir).await?;
        }

        // Skipped events are finished; what is left has a text to deliver.
        events.retain(|e| e.note_text.is_some());
        let mut by_kind: HashMap<EntityKind, Vec<Claimed>> = HashMap::new();
        for event in events {
            by_kind.entry(event.kind()).or_default().push(event);
        }
        let mut kinds: Vec<_> = by_kind.into_iter().collect();
        kinds.sort_by_key(|(k, _)| k.as_str());
        let mut unsent: Vec<i64> = kinds
            .iter()
            .flat_map(|(_, v)| v.iter().map(|e| e.event_id))
            .collect();
        for (kind, events) in kinds {
            let mut to_send = Vec::new();
            let (check, fresh): (Vec<_>, Vec<_>) = events.into_iter().partition(|e| e.maybe_sent);
            if !check.is_empty() {
                match self.already_delivered(account, kind, &check).await {
                    Ok(found) => {
                        self.mark_delivered(account.account_id, &found).await?;
                        let found_ids: Vec<i64> = found.iter().map(|(id, _)| *id).collect();
                        unsent.retain(|id| !found_ids.contains(id));
                        to_send.extend(
                            check
                                .into_iter()
                                .filter(|e| !found_ids.contains(&e.event_id)),
                        );
                    }
                    Err(e) => {
                        self.requeue(&unsent).await?;
                        let check_ids: Vec<i64> = check.iter().map(|e| e.event_id).collect();
                        return self.failed_call(account, &check_ids, e).await.map(Err);
                    }
                }
            }
            to_send.extend(fresh);
            for chunk in to_send.chunks(BATCH) {
                let chunk_ids: Vec<i64> = chunk.iter().map(|e| e.event_id).collect();
                if let Err(stop) = self.send(account, kind, chunk).await? {
                    unsent.retain(|id| !chunk_ids.contains(id));
                    self.requeue(&unsent).await?;
                    return Ok(Err(stop));
                }
                unsent.retain(|id| !chunk_ids.contains(id));
            }
        }
        Ok(Ok(()))
    }

    /// Renders the notes of events that have none yet, and moves each card's
    /// last seen state forward, in one transaction.
    async fn render(
        &self,
        account: &AccountRef,
        events: &mut [Claimed],
        dir: &Directory,
    ) -> anyhow::Result<()> {
        let tz = account
            .timezone
            .as_deref()
            .and_then(|t| t.parse::<Tz>().ok())
            .unwrap_or(self.fallback_tz);
        let lang = Lang::for_domain(&account.domain);
        let mut tx = self.pool.begin().await?;

        // The last seen state of every card in the round, in one query.
        let (types, ids): (Vec<String>, Vec<i64>) = events
            .iter()
            .filter(|e| e.note_text.is_none())
            .map(|e| (e.entity_type.clone(), e.entity_id))
            .unzip();
        let rows: Vec<(String, i64, i64, Json<Snapshot>)> = sqlx::query_as(
            "select s.entity_type, s.entity_id, s.changed_at, s.snapshot
             from entity_states s
             join unnest($2::text[], $3::bigint[]) as k(entity_type, entity_id)
               on s.entity_type = k.entity_type and s.entity_id = k.entity_id
             where s.account_id = $1",
        )
        .bind(account.account_id)
        .bind(&types)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let mut states: HashMap<(String, i64), (i64, Snapshot)> = rows
            .into_iter()
            .map(|(t, id, at, snap)| ((t, id), (at, snap.0)))
            .collect();

        // Render in order, moving each card's state forward in memory.
        let mut changed_cards: Vec<(String, i64)> = Vec::new();
        let (mut note_ids, mut note_texts) = (Vec::new(), Vec::new());
        let (mut skipped_ids, mut skipped_reasons) = (Vec::new(), Vec::new());
        for event in events.iter_mut().filter(|e| e.note_text.is_none()) {
            let key = (event.entity_type.clone(), event.entity_id);
            let prev = states.get(&key);
            let cur = &event.snapshot.0;
            let newer = prev.is_none_or(|(at, _)| event.changed_at >= *at);
            let kind = event.kind();
            let outcome: Result<String, &str> = match event.action.as_str() {
                "add" => Ok(notes::added(
                    lang,
                    kind,
                    event.entity_id,
                    cur,
                    dir,
                    tz,
                    event.changed_at,
                )),
                _ if !newer => Err("superseded: a newer change of this card was already handled"),
                _ => {
                    let changes = notes::diff(kind, prev.map(|(_, s)| s), cur, dir);
                    if changes.is_empty() {
                        Err("nothing visible changed")
                    } else {
                        Ok(notes::changed(
                            lang,
                            kind,
                            event.entity_id,
                            cur,
                            &changes,
                            tz,
                            event.changed_at,
                        ))
                    }
                }
            };
            if newer {
                states.insert(key.clone(), (event.changed_at, cur.clone()));
                if !changed_cards.contains(&key) {
                    changed_cards.push(key);
                }
            }
            match outcome {
                Ok(text) => {
                    note_ids.push(event.event_id);
                    note_texts.push(text.clone());
                    event.note_text = Some(text);
                }
                Err(reason) => {
                    skipped_ids.push(event.event_id);
                    skipped_reasons.push(reason);
                }
            }
        }

        // Write it all back in three statements.
        let (mut c_types, mut c_ids, mut c_ats, mut c_snaps) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for key in &changed_cards {
            if let Some((at, snap)) = states.get(key) {
                c_types.push(key.0.clone());
                c_ids.push(key.1);
                c_ats.push(*at);
                c_snaps.push(Json(snap.clone()));
            }
        }
        sqlx::query(
            "insert into entity_states (account_id, entity_type, entity_id, changed_at, snapshot)
             select $1, * from unnest($2::text[], $3::bigint[], $4::bigint[], $5::jsonb[])
             on conflict (account_id, entity_type, entity_id) do update
             set changed_at = excluded.changed_at, snapshot = excluded.snapshot
             where entity_states.changed_at <= excluded.changed_at",
        )
        .bind(account.account_id)
        .bind(&c_types)
        .bind(&c_ids)
        .bind(&c_ats)
        .bind(&c_snaps)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "update hook_events e set note_text = n.text
             from unnest($1::bigint[], $2::text[]) as n(event_id, text)
             where e.event_id = n.event_id",
        )
        .bind(&note_ids)
        .bind(&note_texts)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "update hook_events e set state = 'skipped', last_error = n.reason, finished_at = now(),
                 locked_until = null
             from unnest($1::bigint[], $2::text[]) as n(event_id, reason)
             where e.event_id = n.event_id",
        )
        .bind(&skipped_ids)
        .bind(&skipped_reasons)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sends one batch of notes for cards of one kind.
    async fn send(
        &self,
        account: &AccountRef,
        kind: EntityKind,
        chunk: &[Claimed],
    ) -> anyhow::Result<Result<(), Stop>> {
        let ids: Vec<i64> = chunk.iter().map(|e| e.event_id).collect();
        if !self.renew(account.account_id).await? {
            self.requeue(&ids).await?;
            return Ok(Err(Stop::Later));
        }
        sqlx::query(
            "update hook_events set maybe_sent = true, sent_at = coalesce(sent_at, now()),
                 locked_until = now() + $2, locked_by = $3
             where event_id = any($1)",
        )
        .bind(&ids)
        .bind(claim_ttl())
        .bind(&self.owner)
        .execute(&self.pool)
        .await?;
        let body: Vec<serde_json::Value> = chunk
            .iter()
            .map(|e| {
                json!({
                    "entity_id": e.entity_id,
                    "note_type": "common",
                    "params": { "text": e.note_text },
                    "request_id": e.event_id.to_string(),
                })
            })
            .collect();
        let path = format!("/api/v4/{}/notes", kind.plural());
        let result: Result<Option<NotesAnswer>, CallError> = self
            .tokens
            .call(account.account_id, |token| {
                let (body, path) = (&body, &path);
                async move {
                    self.api
                        .call(&account.domain, &token, Method::POST, path, Some(body))
                        .await
                }
            })
            .await;
        match result {
            Ok(answer) => {
                let by_request: HashMap<String, i64> = answer
                    .map(|a| a.embedded.notes)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|n| {
                        let rid = match n.request_id? {
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        };
                        Some((rid, n.id))
                    })
                    .collect();
                let done: Vec<(i64, Option<i64>)> = ids
                    .iter()
                    .map(|id| (*id, by_request.get(&id.to_string()).copied()))
                    .collect();
                self.mark_delivered(account.account_id, &done).await?;
                sqlx::query(
                    "update accounts set paused_until = null, pause_reason = null
                     where account_id = $1 and paused_until is not null",
                )
                .bind(account.account_id)
                .execute(&self.pool)
                .await?;
                tracing::debug!(notes = ids.len(), kind = kind.as_str(), "notes delivered");
                Ok(Ok(()))
            }
            Err(CallError::Amo(AmoError::Refused {
                status: 400,
                problem,
            })) => {
                // A validation error names the notes amoCRM refused (by our
                // request_id, or by position); those fail, the rest go again.
                let named = refused_notes(&problem, &ids);
                if named.is_empty() {
                    self.fail(
                        account.account_id,
                        &ids,
                        &format!("amoCRM refused the notes (400): {problem}"),
                    )
                    .await?;
                } else {
                    for (id, reason) in &named {
                        self.fail(
                            account.account_id,
                            &[*id],
                            &format!("amoCRM refused the note (400): {reason}"),
                        )
                        .await?;
                    }
                    let rest: Vec<i64> = ids
                        .iter()
                        .copied()
                        .filter(|id| !named.iter().any(|(n, _)| n == id))
                        .collect();
                    sqlx::query(
                        "update hook_events set state = 'pending', maybe_sent = false, locked_until = null,
                             next_attempt_at = now()
                         where event_id = any($1)",
                    )
                    .bind(&rest)
                    .execute(&self.pool)
                    .await?;
                }
                Ok(Ok(()))
            }
            Err(e) => {
                if refused_outright(&e) {
                    // Nothing of this request was created, and before it
                    // each note was either never sent or proved absent by
                    // this round's lookup.
                    sqlx::query(
                        "update hook_events set maybe_sent = false where event_id = any($1)",
                    )
                    .bind(&ids)
                    .execute(&self.pool)
                    .await?;
                }
                self.failed_call(account, &ids, e).await.map(Err)
            }
        }
    }

    /// Records a failed call for `ids` and decides when to come back.
    async fn failed_call(
        &self,
        account: &AccountRef,
        ids: &[i64],
        error: CallError,
    ) -> anyhow::Result<Stop> {
        let text = error.to_string();
        match &error {
            CallError::Amo(AmoError::RateLimited) => {
                // amoCRM sends no Retry-After: one to three seconds, jittered
                // so that workers do not come back in step.
                let wait = rand::thread_rng().gen_range(1000..3000);
                sqlx::query(
                    "update hook_events set state = 'pending', locked_until = null,
                         last_error = $2, next_attempt_at = now() + make_interval(secs => $3::float8 / 1000)
                     where event_id = any($1)",
                )
                .bind(ids)
                .bind(&text)
                .bind(wait as f64)
                .execute(&self.pool)
                .await?;
                tracing::warn!("amoCRM answered 429; waiting");
            }
            CallError::Amo(AmoError::Blocked) => {
                sqlx::query(
                    "update accounts set paused_until = now() + $2, pause_reason = $3 where account_id = $1",
                )
                .bind(account.account_id)
                .bind(chrono::Duration::from_std(BLOCK_PAUSE).expect("small"))
                .bind("amoCRM blocked access (HTML 403)")
                .execute(&self.pool)
                .await?;
                sqlx::query(
                    "update hook_events set state = 'pending', locked_until = null,
                         last_error = $2, next_attempt_at = now() + $3
                     where event_id = any($1)",
                )
                .bind(ids)
                .bind(&text)
                .bind(chrono::Duration::from_std(BLOCK_PAUSE).expect("small"))
                .execute(&self.pool)
                .await?;
                self.record(account.account_id, 0, Some(&text)).await?;
                tracing::warn!("amoCRM blocked the account; pausing its delivery");
            }
            CallError::Token(TokenError::NotActive(_) | TokenError::Revoked(_)) => {
                // Waits for a new install; the account is no longer claimed.
                self.requeue(ids).await?;
            }
            CallError::Amo(AmoError::Refused { status, .. })
                if *status != 404 && *status != 402 =>
            {
                self.fail(account.account_id, ids, &text).await?;
            }
            _ => {
                // Timeouts, dropped connections and 5xx may have reached
                // amoCRM: `maybe_sent` stays as the send left it, so the
                // next try looks first.
                self.back_off(ids, &text).await?;
                self.record(account.account_id, 0, Some(&text)).await?;
                tracing::warn!(error = %text, "delivery failed; backing off");
            }
        }
        Ok(Stop::Later)
    }

    /// Exponential backoff from 5 s up to 15 min (jittered); after
    /// [`RETRY_FOR`] of failures the event is failed.
    async fn back_off(&self, ids: &[i64], error: &str) -> sqlx::Result<()> {
        sqlx::query(&format!(
            "update hook_events set
                 state = case when first_failure_at < now() - interval '{RETRY_FOR}' then 'failed' else 'pending' end,
                 finished_at = case when first_failure_at < now() - interval '{RETRY_FOR}' then now() end,
                 attempts = attempts + 1,
                 first_failure_at = coalesce(first_failure_at, now()),
                 next_attempt_at = now() + least(interval '15 minutes',
                     interval '5 seconds' * power(2, least(attempts, 12))) * (0.8 + random() * 0.4),
                 last_error = $2, locked_until = null
             where event_id = any($1)"
        ))
        .bind(ids)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Adds to the account's figures for the status page.
    async fn record(
        &self,
        account_id: i64,
        delivered: i64,
        error: Option<&str>,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "insert into account_stats (account_id, notes_delivered, last_error, last_error_at)
             values ($1, $2, $3, case when $3::text is null then null else now() end)
             on conflict (account_id) do update set
                 notes_delivered = account_stats.notes_delivered + excluded.notes_delivered,
                 last_error = coalesce(excluded.last_error, account_stats.last_error),
                 last_error_at = coalesce(excluded.last_error_at, account_stats.last_error_at)",
        )
        .bind(account_id)
        .bind(delivered)
        .bind(error.map(|e| e.chars().take(300).collect::<String>()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn fail(&self, account_id: i64, ids: &[i64], reason: &str) -> sqlx::Result<()> {
        metrics::counter!("amohook_notes_failed_total").increment(ids.len() as u64);
        self.record(account_id, 0, Some(reason)).await?;
        sqlx::query(
            "update hook_events set state = 'failed', last_error = $2, finished_at = now(),
                 locked_until = null, attempts = attempts + 1
             where event_id = any($1)",
        )
        .bind(ids)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        tracing::warn!(events = ids.len(), reason, "notes failed");
        Ok(())
    }

    /// Gives claimed events back untouched, due now.
    async fn requeue(&self, ids: &[i64]) -> sqlx::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "update hook_events set state = 'pending', locked_until = null
             where event_id = any($1) and state = 'sending'",
        )
        .bind(ids)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn mark_delivered(
        &self,
        account_id: i64,
        done: &[(i64, Option<i64>)],
    ) -> sqlx::Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        metrics::counter!("amohook_notes_delivered_total").increment(done.len() as u64);
        self.record(account_id, done.len() as i64, None).await?;
        let (ids, note_ids): (Vec<i64>, Vec<Option<i64>>) = done.iter().copied().unzip();
        sqlx::query(
            "update hook_events e set state = 'delivered', note_id = d.note_id, finished_at = now(),
                 locked_until = null, maybe_sent = false, last_error = null
             from unnest($1::bigint[], $2::bigint[]) as d(event_id, note_id)
             where e.event_id = d.event_id",
        )
        .bind(&ids)
        .bind(&note_ids)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// For events whose note may already exist: the ones amoCRM has, found
    /// by card and exact text.
    async fn already_delivered(
        &self,
        account: &AccountRef,
        kind: EntityKind,
        events: &[Claimed],
    ) -> Result<Vec<(i64, Option<i64>)>, CallError> {
        let mut found = Vec::new();
        // amoCRM filters by at most 10 entity ids per request.
        for chunk in events.chunks(10) {
            let since = chunk
                .iter()
                .filter_map(|e| e.sent_at)
                .min()
                .unwrap_or_else(Utc::now)
                - chrono::Duration::minutes(5);
            // The filters as amoCRM documents them (developers.kommo.com,
            // "notes by entity"; the SDK's NotesFilter): note_type and
            // entity_id are arrays, updated_at a range, at most 250 a page.
            let mut query = format!(
                "filter[note_type][]=common&filter[updated_at][from]={}&limit={LOOKUP_LIMIT}",
                since.timestamp()
            );
            for e in chunk {
                query.push_str(&format!("&filter[entity_id][]={}", e.entity_id));
            }
            let mut existing = Vec::new();
            for page in 1..=LOOKUP_PAGES + 1 {
                if page > LOOKUP_PAGES {
                    // Not proved absent: better a late note than a second one.
                    return Err(CallError::Amo(AmoError::Unexpected(format!(
                        "more than {} notes to look through",
                        LOOKUP_PAGES as usize * LOOKUP_LIMIT
                    ))));
                }
                let path = format!("/api/v4/{}/notes?{query}&page={page}", kind.plural());
                let answer: Option<NotesAnswer> = self
                    .tokens
                    .call(account.account_id, |token| {
                        let path = &path;
                        async move {
                            self.api
                                .call(&account.domain, &token, Method::GET, path, None::<&()>)
                                .await
                        }
                    })
                    .await?;
                // 204 (no content) is amoCRM's empty page.
                let notes = answer.map(|a| a.embedded.notes).unwrap_or_default();
                let last = notes.len() < LOOKUP_LIMIT;
                existing.extend(notes);
                if last {
                    break;
                }
            }
            for event in chunk {
                let text = event.note_text.as_deref();
                if let Some(note) = existing
                    .iter()
                    .find(|n| n.entity_id == Some(event.entity_id) && n.text() == text)
                {
                    tracing::info!(
                        event.id = event.event_id,
                        "note already in amoCRM; not sending it again"
                    );
                    found.push((event.event_id, Some(note.id)));
                }
            }
        }
        Ok(found)
    }
}

/// A failure that stops every call to the account for now: the rate limit,
/// a block, or no usable token.
fn stops_the_account(error: &CallError) -> bool {
    matches!(
        error,
        CallError::Amo(AmoError::RateLimited | AmoError::Blocked)
            | CallError::Token(TokenError::NotActive(_) | TokenError::Revoked(_))
    )
}

/// An answer that says amoCRM created nothing: a 429, a block, a refusal,
/// or a token that could not be had (before the request, or after its 401).
/// Timeouts, 5xx and odd 2xx answers may hide created notes.
fn refused_outright(error: &CallError) -> bool {
    matches!(
        error,
        CallError::Token(_)
            | CallError::Amo(
                AmoError::RateLimited
                    | AmoError::Blocked
                    | AmoError::Refused { .. }
                    | AmoError::Unauthorized(_)
            )
    )
}

fn claim_ttl() -> chrono::Duration {
    chrono::Duration::from_std(CLAIM_TTL).expect("small")
}

fn needs_of<'a>(events: impl Iterator<Item = &'a Claimed>) -> Needs {
    let mut needs = Needs::default();
    for e in events {
        let s = &e.snapshot.0;
        needs.users.extend(s.responsible_user_id);
        needs.users.extend(s.old_responsible_user_id);
        if e.kind() == EntityKind::Lead && e.action != Action::Add.as_str() {
            needs.statuses.insert((s.pipeline_id, s.status_id));
            if s.old_status_id.is_some() || s.old_pipeline_id.is_some() {
                needs
                    .statuses
                    .insert((s.old_pipeline_id.or(s.pipeline_id), s.old_status_id));
            }
        }
    }
    needs
}

/// The notes a 400 names: `validation-errors[].request_id` is our event id
/// (or, when amoCRM counts instead, the position in the batch).
fn refused_notes(problem: &crate::amocrm::Problem, ids: &[i64]) -> Vec<(i64, String)> {
    let Some(serde_json::Value::Array(items)) = &problem.validation_errors else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let rid = match &item["request_id"] {
                serde_json::Value::String(s) => s.parse::<i64>().ok()?,
                serde_json::Value::Number(n) => n.as_i64()?,
                _ => return None,
            };
            let id = if ids.contains(&rid) {
                rid
            } else {
                *ids.get(usize::try_from(rid).ok()?)?
            };
            let reason = item["errors"]
                .as_array()
                .map(|errors| {
                    errors
                        .iter()
                        .map(|e| {
                            format!(
                                "{} {}",
                                e["path"].as_str().unwrap_or_default(),
                                e["detail"].as_str().unwrap_or_default()
                            )
                            .trim()
                            .to_owned()
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            Some((id, reason))
        })
        .collect()
}

#[derive(Debug, Deserialize, Default)]
struct NotesAnswer {
    #[serde(default, rename = "_embedded")]
    embedded: NotesEmbedded,
}

#[derive(Debug, Deserialize, Default)]
struct NotesEmbedded {
    #[serde(default)]
    notes: Vec<NoteItem>,
}

#[derive(Debug, Deserialize)]
struct NoteItem {
    id: i64,
    #[serde(default)]
    entity_id: Option<i64>,
    /// Our request id echoed back (a string; a number is read too).
    #[serde(default)]
    request_id: Option<serde_json::Value>,
    #[serde(default)]
    params: Option<serde_json::Value>,
}

impl NoteItem {
    fn text(&self) -> Option<&str> {
        self.params.as_ref()?.get("text")?.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amocrm::Problem;

    #[test]
    fn a_validation_error_names_notes_by_request_id_or_position() {
        let problem = Problem::parse(
            br#"{"validation-errors":[{"request_id":"702","errors":[{"code":"NotSupportedChoice","path":"entity_id","detail":"Entity not found"}]},{"request_id":"0","errors":[]}],"title":"Bad Request","status":400}"#,
        );
        let named = refused_notes(&problem, &[701, 702, 703]);
        assert_eq!(
            named,
            vec![
                (702, "entity_id Entity not found".into()),
                (701, String::new())
            ]
        );
        assert!(refused_notes(&Problem::default(), &[1]).is_empty());
    }
}
