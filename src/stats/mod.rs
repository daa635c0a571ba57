//! Per-account figures for the status page and the admin API.
//!
//! Hook receipts are counted in memory and written once a second (one row
//! per account and hour), so that a burst of hooks for one account does not
//! queue on one counter row inside the hook's transaction. A crash loses at
//! most a second of these counts, never a hook.

use std::{collections::HashMap, sync::Mutex};

use chrono::{DateTime, DurationRound as _, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::{
    amocrm::hooks::{Action, EntityKind},
    inbox::EventState,
};

mod table;

pub use table::{list, one, totals, AccountRow, ListQuery, StatusFilter, Totals, PAGE_SIZE, SORTS};

#[derive(Debug, Default)]
pub struct Receipts {
    pending: Mutex<HashMap<i64, (i64, DateTime<Utc>)>>,
}

impl Receipts {
    /// Counts one hook answered 200 for the account.
    pub fn record(&self, account_id: i64) {
        let mut pending = self.pending.lock().expect("not poisoned");
        let entry = pending.entry(account_id).or_insert((0, Utc::now()));
        entry.0 += 1;
        entry.1 = Utc::now();
    }

    /// Writes the counts gathered since the last flush.
    pub async fn flush(&self, pool: &PgPool) -> sqlx::Result<()> {
        let batch: Vec<(i64, (i64, DateTime<Utc>))> =
            self.pending.lock().expect("not poisoned").drain().collect();
        if batch.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = batch.iter().map(|(id, _)| *id).collect();
        let counts: Vec<i64> = batch.iter().map(|(_, (n, _))| *n).collect();
        let lasts: Vec<DateTime<Utc>> = batch.iter().map(|(_, (_, at))| *at).collect();
        let hours: Vec<DateTime<Utc>> = lasts
            .iter()
            .map(|at| at.duration_trunc(chrono::Duration::hours(1)).unwrap_or(*at))
            .collect();
        let result = async {
            let mut tx = pool.begin().await?;
            sqlx::query!(
                "insert into account_stats (account_id, hooks_received, last_hook_at)
                 select * from unnest($1::bigint[], $2::bigint[], $3::timestamptz[])
                 on conflict (account_id) do update set
                     hooks_received = account_stats.hooks_received + excluded.hooks_received,
                     last_hook_at = greatest(account_stats.last_hook_at, excluded.last_hook_at)",
                &ids,
                &counts,
                &lasts,
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query!(
                "insert into hook_hourly (account_id, hour, received)
                 select * from unnest($1::bigint[], $2::timestamptz[], $3::bigint[])
                 on conflict (account_id, hour) do update set
                     received = hook_hourly.received + excluded.received",
                &ids,
                &hours,
                &counts,
            )
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        }
        .await;
        if result.is_err() {
            // Keep the counts for the next flush.
            let mut pending = self.pending.lock().expect("not poisoned");
            for (id, (n, at)) in batch {
                let entry = pending.entry(id).or_insert((0, at));
                entry.0 += n;
            }
        }
        result
    }
}

/// Deletes the hourly hook counts older than the status page shows (it
/// reads the last 24 hours). Run hourly with the other maintenance: the
/// table's key starts with the account, so this is a scan of the whole
/// table, which once a second (with every flush) cost PostgreSQL more than
/// the counts themselves.
pub async fn prune_hourly(pool: &PgPool) -> sqlx::Result<u64> {
    Ok(
        sqlx::query!("delete from hook_hourly where hour < now() - interval '2 days'")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

/// Adds delivered notes to an account's figures and, when given, records
/// its last error (shown on the status page).
pub async fn record(
    pool: &PgPool,
    account_id: i64,
    delivered: i64,
    error: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into account_stats (account_id, notes_delivered, last_error, last_error_at)
             values ($1, $2, $3, case when $3::text is null then null else now() end)
             on conflict (account_id) do update set
                 notes_delivered = account_stats.notes_delivered + excluded.notes_delivered,
                 last_error = coalesce(excluded.last_error, account_stats.last_error),
                 last_error_at = coalesce(excluded.last_error_at, account_stats.last_error_at)",
        account_id,
        delivered,
        error.map(|e| e.chars().take(300).collect::<String>()),
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// An event as the account page and the API show it.
#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    pub event_id: i64,
    pub entity_type: EntityKind,
    pub entity_id: i64,
    pub action: Action,
    pub state: EventState,
    pub attempts: i32,
    pub received_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub note_text: Option<String>,
}

/// The newest events of an account, optionally of one state.
pub async fn events(
    pool: &PgPool,
    account_id: i64,
    state: Option<EventState>,
    limit: i64,
) -> sqlx::Result<Vec<EventRow>> {
    sqlx::query_as!(
        EventRow,
        r#"select event_id, entity_type as "entity_type: EntityKind", entity_id,
                  action as "action: Action", state as "state: EventState", attempts,
                  received_at, finished_at, next_attempt_at, last_error, note_text
           from hook_events
           where account_id = $1 and ($2::text is null or state = $2)
           order by received_at desc, event_id desc
           limit $3"#,
        account_id,
        state.map(EventState::as_str),
        limit.clamp(1, 500),
    )
    .fetch_all(pool)
    .await
}
