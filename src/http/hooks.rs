//! POST /hooks/{hook_key}: amoCRM's web-hooks, stored before they are
//! answered.
//!
//! The answer is 200 only once the hook's events are committed in
//! PostgreSQL; when the database cannot take them in time the answer is
//! 503, so that amoCRM sends the hook again; a hook whose content the
//! database refuses is 400 (a re-send would fail the same way). Nothing
//! after the commit can turn the answer into an error: amoCRM switches a
//! hook off after many failed answers.
//!
//! Intake has its own connections (`db::INTAKE_CONNECTIONS` to store,
//! `db::LOOKUP_CONNECTIONS` to find the account): nothing else the process
//! does, and no flood of lookups, can keep a hook from being stored.

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

use super::{error::AppError, AppState, Intake};
use crate::{
    accounts::{Account, AccountStatus},
    amocrm::hooks::{self, Hook},
    inbox::{EventState, Row, StoreError},
};

/// amoCRM waits 2 seconds; past this the answer is 503 instead.
const STORE_WITHIN: Duration = Duration::from_millis(1500);
/// Cards one hook may carry; more are refused with 413. A card as amoCRM
/// sends it carries at least the eight fields of its oldest captured shape
/// (id, name, responsible, creator, modifier, two times, type: 400 bytes
/// and more, encoded), so a body under the 1 MiB limit holds at most about
/// 2,600 real cards: this refuses no hook amoCRM can send, only bodies
/// made to be many rows (a 1 MiB body of bare ids is 37,000), so that one
/// request never asks the committer for more than this many rows.
pub const MAX_CARDS_PER_HOOK: usize = 5_000;

/// Bodies larger than this are parsed on a blocking thread: a 1 MiB body
/// takes tens of milliseconds to parse, which on a runtime thread would
/// hold up every other request it serves. Real hooks are a few KB.
const PARSE_INLINE_UP_TO: usize = 64 * 1024;

pub fn router() -> Router<AppState> {
    // With a trailing slash too: a Kommo integrator reports its UI asks
    // for one in a hook URL.
    Router::new()
        .route("/hooks/{hook_key}", post(receive))
        .route("/hooks/{hook_key}/", post(receive))
}

/// A refusal as JSON; see `error.rs`.
fn answer(status: StatusCode, message: &str) -> Response {
    AppError::new(status, message).into_response()
}

async fn receive(
    State(intake): State<Intake>,
    Path(hook_key): Path<String>,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let (response, result) =
        match tokio::time::timeout(STORE_WITHIN, answer_hook(&intake, &hook_key, body)).await {
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
async fn answer_hook(intake: &Intake, hook_key: &str, body: Bytes) -> (Response, &'static str) {
    if hook_key.len() > 128 {
        return (
            answer(StatusCode::NOT_FOUND, "unknown hook key"),
            "unknown_key",
        );
    }
    let account = match intake.accounts.account(&intake.lookups, hook_key).await {
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
    // Counted from here: only hooks of a known account make intake busy
    // (a flood to made-up keys must not slow every account's notes).
    let account_id = account.account_id;
    // One account's flood of the largest bodies is refused here, before
    // its parsing and storing take the machine from the other accounts
    // (see `hooks_in_flight.rs`); amoCRM sends a refused hook again.
    let Ok(_in_flight) = intake.in_flight.try_enter(account_id, body.len()) else {
        tracing::warn!(
            account.id = account_id,
            bytes = body.len(),
            "hook refused: this account has too many large hooks in flight"
        );
        return (
            answer(
                StatusCode::TOO_MANY_REQUESTS,
                "too many large hooks of this account at once, send again later",
            ),
            "over_share",
        );
    };
    let parsed = if body.len() > PARSE_INLINE_UP_TO {
        tokio::task::spawn_blocking(move || hooks::parse(&body))
            .await
            .unwrap_or_else(|_| {
                Err(hooks::HookError::Malformed(
                    "the body could not be read".into(),
                ))
            })
    } else {
        hooks::parse(&body)
    };
    let hook = match parsed {
        Ok(hook) => {
            if hook.skipped_fields > 0 {
                metrics::counter!("amohook_hook_fields_skipped_total")
                    .increment(u64::from(hook.skipped_fields));
                tracing::info!(
                    account.id = account_id,
                    skipped = hook.skipped_fields,
                    "hook fields of an unknown shape skipped"
                );
            }
            for part in &hook.ignored {
                metrics::counter!("amohook_hook_cards_ignored_total",
                    "entity" => part.entity, "action" => part.action)
                .increment(1);
            }
            hook
        }
        Err(e) => {
            tracing::warn!(account.id = account_id, error = %e, "hook refused: not a valid hook");
            return (answer(StatusCode::BAD_REQUEST, &e.to_string()), "invalid");
        }
    };
    let cards = hook.events.len() + hook.ignored.len();
    if cards > MAX_CARDS_PER_HOOK {
        tracing::warn!(
            account.id = account_id,
            cards,
            "hook refused: more cards than any amoCRM hook carries"
        );
        return (
            answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "{cards} cards in one hook: at most {MAX_CARDS_PER_HOOK} are taken (amoCRM's \
                     hooks carry far fewer)"
                ),
            ),
            "too_many_cards",
        );
    }
    if let Some(reason) = mismatch(&account, &hook) {
        tracing::warn!(
            account.id = account_id,
            reason,
            "hook refused: it names another account"
        );
        return (answer(StatusCode::FORBIDDEN, reason), "forbidden");
    }
    let events = hook.events.len();
    match store(intake, &account, hook).await {
        Ok(stored) => {
            tracing::debug!(account.id = account_id, events, stored, "hook stored");
            intake.receipts.record(account_id);
            let result = if stored == 0 && events > 0 {
                "duplicate"
            } else {
                "stored"
            };
            let body = json!({ "status": 200, "events": events, "stored": stored });
            ((StatusCode::OK, Json(body)).into_response(), result)
        }
        Err(StoreError::Rejected(reason)) => {
            tracing::warn!(account.id = account_id, error = %reason, "hook refused: the database cannot store it");
            (
                answer(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot be stored: {reason}"),
                ),
                "invalid",
            )
        }
        Err(e @ StoreError::Unavailable(_)) => {
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

/// Stores the hook's events (group commit, see `inbox/`); a change
/// already stored is skipped. Returns how many were new.
async fn store(intake: &Intake, account: &Account, hook: Hook) -> Result<u64, StoreError> {
    // A disconnected account's events are kept as a record, not delivered.
    let initial = match account.status {
        AccountStatus::Disconnected => EventState::Dropped,
        _ => EventState::Pending,
    };
    let rows = hook
        .events
        .into_iter()
        .map(|event| Row::new(account.account_id, event, initial))
        .collect();
    intake.inbox.store(rows).await
}
