//! What a failed call means for the events and the account: wait, back
//! off, pause, fail; and the figures kept for the status page.

use std::time::Duration;

use super::{AccountRef, Next, Worker, BLOCK_PAUSE, RETRY_FOR};
use crate::{
    amocrm::AmoError,
    backoff::Backoff,
    tokens::{CallError, TokenError},
};

impl Worker {
    /// Records a failed call for `ids` and decides when to come back.
    pub(super) async fn failed_call(
        &self,
        account: &AccountRef,
        ids: &[i64],
        error: CallError,
    ) -> anyhow::Result<Next> {
        let text = match &error {
            // Payment Required: the account's paid period lapsed. Reads
            // still work; notes wait and are tried again with back-off.
            CallError::Amo(AmoError::Refused { status: 402, .. }) => format!(
                "{error}: the account's paid period has lapsed; its notes wait and are tried again"
            ),
            _ => error.to_string(),
        };
        match &error {
            CallError::Amo(AmoError::RateLimited)
            | CallError::Token(TokenError::IntegrationRefused(_)) => {
                // amoCRM sends no Retry-After. A refused integration waits
                // for its next probe; neither counts as a failed attempt.
                let wait = match &error {
                    CallError::Amo(_) => Backoff::RATE_LIMITED.delay(0).as_millis(),
                    _ => crate::fault::PROBE_EVERY.as_millis(),
                };
                sqlx::query!(
                    "update hook_events set state = 'pending', locked_until = null,
                         last_error = $2, next_attempt_at = now() + make_interval(secs => $3::float8 / 1000)
                     where event_id = any($1)",
                    ids,
                    &text,
                    wait as f64,
                )
                .execute(&self.pool)
                .await?;
                tracing::warn!(error = %text, "waiting: amoCRM answered 429 or refuses the integration");
            }
            CallError::Amo(AmoError::Blocked) => {
                sqlx::query!(
                    "update accounts set paused_until = now() + $2, pause_reason = $3 where account_id = $1",
                    account.account_id,
                    // `as _`: an interval. chrono's Duration encodes as one, but the macro's
                    // type check knows only PgInterval for it.
                    chrono::Duration::from_std(BLOCK_PAUSE).expect("small") as _,
                    "amoCRM blocked access (HTML 403)",
                )
                .execute(&self.pool)
                .await?;
                sqlx::query!(
                    "update hook_events set state = 'pending', locked_until = null,
                         last_error = $2, next_attempt_at = now() + $3
                     where event_id = any($1)",
                    ids,
                    &text,
                    chrono::Duration::from_std(BLOCK_PAUSE).expect("small") as _,
                )
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
                let wait = self.back_off(ids, &text).await?;
                if matches!(error, CallError::Amo(AmoError::Transport(_))) {
                    // No answer in time (or no connection): the account's
                    // amoCRM is slow or unreachable. The whole account
                    // rests as long as these events do, so that its next
                    // hooks do not start turns that would wait the same
                    // deadline; the first delivered note ends the pause.
                    sqlx::query!(
                        "update accounts set paused_until = now() + make_interval(secs => $2),
                             pause_reason = $3
                         where account_id = $1",
                        account.account_id,
                        wait.as_secs_f64(),
                        &text,
                    )
                    .execute(&self.pool)
                    .await?;
                }
                self.record(account.account_id, 0, Some(&text)).await?;
                tracing::warn!(error = %text, "delivery failed; backing off");
            }
        }
        Ok(Next::Later)
    }

    /// [`Backoff::DELIVERY`] from each event's stored attempt count; after
    /// [`RETRY_FOR`] of failures the event is failed. Returns the shortest
    /// of the waits.
    pub(super) async fn back_off(&self, ids: &[i64], error: &str) -> sqlx::Result<Duration> {
        let attempts = sqlx::query!(
            "select event_id, attempts from hook_events where event_id = any($1)",
            ids,
        )
        .fetch_all(&self.pool)
        .await?;
        let (ids, waits): (Vec<i64>, Vec<f64>) = attempts
            .into_iter()
            .map(|row| {
                let wait = Backoff::DELIVERY.delay(u32::try_from(row.attempts).unwrap_or(0));
                (row.event_id, wait.as_secs_f64())
            })
            .unzip();
        let shortest = waits.iter().copied().fold(f64::INFINITY, f64::min);
        sqlx::query!(
            "update hook_events e set
                 state = case when first_failure_at < now() - $4::interval then 'failed' else 'pending' end,
                 finished_at = case when first_failure_at < now() - $4::interval then now() end,
                 attempts = attempts + 1,
                 first_failure_at = coalesce(first_failure_at, now()),
                 next_attempt_at = now() + make_interval(secs => w.wait),
                 last_error = $3, locked_until = null
             from unnest($1::bigint[], $2::float8[]) as w(event_id, wait)
             where e.event_id = w.event_id",
            &ids,
            &waits,
            error,
            chrono::Duration::from_std(RETRY_FOR).expect("small") as _,
        )
        .execute(&self.pool)
        .await?;
        Ok(if shortest.is_finite() {
            Duration::from_secs_f64(shortest)
        } else {
            Duration::ZERO
        })
    }

    /// Adds to the account's figures for the status page.
    pub(super) async fn record(
        &self,
        account_id: i64,
        delivered: i64,
        error: Option<&str>,
    ) -> sqlx::Result<()> {
        crate::stats::record(&self.pool, account_id, delivered, error).await
    }

    pub(super) async fn fail(
        &self,
        account_id: i64,
        ids: &[i64],
        reason: &str,
    ) -> sqlx::Result<()> {
        metrics::counter!("amohook_notes_failed_total").increment(ids.len() as u64);
        self.record(account_id, 0, Some(reason)).await?;
        sqlx::query!(
            "update hook_events set state = 'failed', last_error = $2, finished_at = now(),
                 locked_until = null, attempts = attempts + 1
             where event_id = any($1)",
            ids,
            reason,
        )
        .execute(&self.pool)
        .await?;
        tracing::warn!(events = ids.len(), reason, "notes failed");
        Ok(())
    }

    pub(super) async fn mark_delivered(
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
        sqlx::query!(
            "update hook_events e set state = 'delivered', note_id = d.note_id, finished_at = now(),
                 locked_until = null, maybe_sent = false, last_error = null
             from unnest($1::bigint[], $2::bigint[]) as d(event_id, note_id)
             where e.event_id = d.event_id",
            &ids,
            // Elements may be null (amoCRM did not name the note): the
            // macro's check knows only arrays of non-null values.
            &note_ids as _,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// A failure that stops every call to the account for now: the rate limit,
/// a block, no usable token, or no answer in time (the next call would
/// wait the same deadline).
pub(super) fn stops_the_account(error: &CallError) -> bool {
    matches!(
        error,
        CallError::Amo(AmoError::RateLimited | AmoError::Blocked | AmoError::Transport(_))
            | CallError::Token(
                TokenError::NotActive(_)
                    | TokenError::Revoked(_)
                    | TokenError::IntegrationRefused(_)
            )
    )
}
