//! POST /hooks/{hook_key}: amoCRM's web-hooks, stored before they are
//! answered.
//!
//! The answer is 200 only once the hook's events are committed in
//! PostgreSQL; when the database cannot take them in time the answer is
//! 503, so that amoCRM sends the hook again. Nothing after the commit can
//! turn the answer into an error: amoCRM switches a hook off after 100
//! failed answers in two hours.

use std::time::Duration;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use serde_json::json;

use super::AppState;
use crate::{
    accounts::{Account, AccountStatus},
    hooks::{self, Hook},
    worker::CHANNEL,
};

/// amoCRM waits 2 seconds; past this the answer is 503 instead.
const STORE_WITHIN: Duration = Duration::from_millis(1500);

pub fn router() -> Router<AppState> {
    Router::new().route("/hooks/{hook_key}", post(receive))
}

fn answer(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "status": status.as_u16(), "message": message })),
    )
        .into_response()
}

async fn receive(
    State(state): State<AppState>,
    Path(hook_key): Path<String>,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let (response, result) =
        match tokio::time::timeout(STORE_WITHIN, answer_hook(&state, &hook_key, &body)).await {
            Ok(done) => done,
            Err(_) => {
                tracing::error!("hook not stored in time: database too slow");
                (not_stored(), "unavailable")
            }
        };
    metrics::counter!("amohook_hooks_received_total", "result" => result).increment(1);
    metrics::histogram!("amohook_hook_answer_seconds").record(started.elapsed().as_secs_f64());
    response
}

fn not_stored() -> Response {
    answer(
        StatusCode::SERVICE_UNAVAILABLE,
        "not stored, send again later",
    )
}

/// The answer, and a word for the metrics.
async fn answer_hook(state: &AppState, hook_key: &str, body: &[u8]) -> (Response, &'static str) {
    if hook_key.len() > 128 {
        return (
            answer(StatusCode::NOT_FOUND, "unknown hook key"),
            "unknown_key",
        );
    }
    let account = match state.hook_accounts.account(&state.pool, hook_key).await {
        Ok(Some(account)) => account,
        Ok(None) => {
            return (
                answer(StatusCode::NOT_FOUND, "unknown hook key"),
                "unknown_key",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "hook not stored: database unavailable");
            return (not_stored(), "unavailable");
        }
    };
    let account_id = account.account_id;
    let hook = match hooks::parse(body) {
        Ok(hook) => hook,
        Err(e) => {
            tracing::warn!(account.id = account_id, error = %e, "hook refused: not a valid hook");
            return (answer(StatusCode::BAD_REQUEST, &e.to_string()), "invalid");
        }
    };
    if let Some(reason) = mismatch(&account, &hook) {
        tracing::warn!(
            account.id = account_id,
            reason,
            "hook refused: it names another account"
        );
        return (answer(StatusCode::FORBIDDEN, reason), "forbidden");
    }
    match store(state, &account, &hook).await {
        Ok(stored) => {
            tracing::debug!(
                account.id = account_id,
                events = hook.events.len(),
                stored,
                "hook stored"
            );
            state.receipts.record(account_id);
            let result = if stored == 0 && !hook.events.is_empty() {
                "duplicate"
            } else {
                "stored"
            };
            let body = json!({ "status": 200, "events": hook.events.len(), "stored": stored });
            ((StatusCode::OK, Json(body)).into_response(), result)
        }
        Err(e) => {
            tracing::error!(account.id = account_id, error = %e, "hook not stored: database unavailable");
            (not_stored(), "unavailable")
        }
    }
}

/// The body must be about the hook key's account.
fn mismatch(account: &Account, hook: &Hook) -> Option<&'static str> {
    match (hook.account_id, hook.subdomain.as_deref()) {
        (Some(id), _) if id != account.account_id => Some("account[id] is not this hook's account"),
        (None, Some(sub)) if !sub.eq_ignore_ascii_case(&account.subdomain) => {
            Some("account[subdomain] is not this hook's account")
        }
        _ => None,
    }
}

/// Stores the hook's events in one transaction; a change already stored is
/// skipped. Returns how many were new.
async fn store(state: &AppState, account: &Account, hook: &Hook) -> sqlx::Result<u64> {
    if hook.events.is_empty() {
        return Ok(0);
    }
    let n = hook.events.len();
    let (mut kinds, mut ids, mut actions, mut times, mut snapshots) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for e in &hook.events {
        kinds.push(e.entity.as_str());
        ids.push(e.entity_id);
        actions.push(e.action.as_str());
        times.push(e.changed_at);
        snapshots.push(sqlx::types::Json(&e.snapshot));
    }
    // A disconnected account's events are kept as a record, not delivered.
    let (initial, note) = match account.status {
        AccountStatus::Disconnected => ("dropped", Some("account disconnected")),
        _ => ("pending", None),
    };
    // One statement, so one round trip and one commit: the insert, and a
    // NOTIFY (delivered on commit, waking the workers of every process)
    // when something new was stored for delivery.
    let (stored, _woke): (i64, i64) = sqlx::query_as(
        "with stored as (
             insert into hook_events (account_id, entity_type, entity_id, action, changed_at, snapshot,
                                      state, last_error, finished_at)
             select $1, t.kind, t.id, t.action, t.at, t.snapshot, $7, $8,
                    case when $7 = 'dropped' then now() end
             from unnest($2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::jsonb[])
                  as t(kind, id, action, at, snapshot)
             on conflict (account_id, entity_type, entity_id, action, changed_at) do nothing
             returning 1),
         woke as (
             select pg_notify($9, $1::text) where $7 = 'pending' and exists (select 1 from stored))
         select (select count(*) from stored), (select count(*) from woke)",
    )
    .bind(account.account_id)
    .bind(&kinds)
    .bind(&ids)
    .bind(&actions)
    .bind(&times)
    .bind(&snapshots)
    .bind(initial)
    .bind(note)
    .bind(CHANNEL)
    .fetch_one(&state.pool)
    .await?;
    let stored = stored as u64;
    Ok(stored)
}
