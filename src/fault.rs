//! A refusal of an integration itself. When amoCRM's token endpoint
//! blames the client (a wrong secret, a redirect URI that no longer
//! matches after a configuration change), every account of that
//! integration would fail the same way: their refreshes pause, with one
//! clear error in the log and on the status page, and one probe goes
//! through every [`PROBE_EVERY`]. Accounts keep their status and tokens; a
//! refresh that works clears the fault, and so does a restart (the
//! configuration may have been fixed). The other platform's integration
//! (see `platform.rs`) is not affected.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

pub const PROBE_EVERY: Duration = Duration::from_secs(300);

/// A fault, while there is one.
#[derive(Debug, Clone)]
pub struct Fault {
    /// `amocrm` or `kommo`: the integration refused.
    pub integration: String,
    pub error: String,
    pub since: DateTime<Utc>,
}

/// Whether `integration`'s refreshes wait: a fault whose next probe is not
/// due. Taking the probe moves the next one forward, so one process probes
/// at a time.
pub async fn holds_refreshes(pool: &PgPool, integration: &str) -> sqlx::Result<Option<String>> {
    let probe = sqlx::query_scalar!(
        "update integration_fault set retry_at = now() + $2::interval
         where integration = $1 and retry_at <= now() returning error",
        integration,
        // `as _`: an interval (see tokens/mod.rs).
        chrono::Duration::from_std(PROBE_EVERY).expect("small") as _,
    )
    .fetch_optional(pool)
    .await?;
    if probe.is_some() {
        return Ok(None);
    }
    sqlx::query_scalar!(
        "select error from integration_fault where integration = $1",
        integration
    )
    .fetch_optional(pool)
    .await
}

pub async fn record(pool: &PgPool, integration: &str, error: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into integration_fault (integration, error, retry_at)
         values ($1, $2, now() + $3::interval)
         on conflict (integration) do update
             set error = excluded.error, retry_at = excluded.retry_at",
        integration,
        error,
        chrono::Duration::from_std(PROBE_EVERY).expect("small") as _,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Clears `integration`'s fault (a refresh worked).
pub async fn clear(pool: &PgPool, integration: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "delete from integration_fault where integration = $1",
        integration
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Clears every fault (a start: the configuration may have been fixed).
pub async fn clear_all(pool: &PgPool) -> sqlx::Result<()> {
    sqlx::query!("delete from integration_fault")
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn current(pool: &PgPool) -> sqlx::Result<Vec<Fault>> {
    sqlx::query_as!(
        Fault,
        "select integration, error, since from integration_fault order by integration"
    )
    .fetch_all(pool)
    .await
}
