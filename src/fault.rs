//! A refusal of the integration itself. When amoCRM's token endpoint
//! blames the client (a wrong secret, a redirect URI that no longer
//! matches after a configuration change), every account's refresh would
//! fail the same way: the refreshes pause for all accounts, with one clear
//! error in the log and on the status page, and one probe goes through
//! every [`PROBE_EVERY`]. Accounts keep their status and tokens; a refresh
//! that works clears the fault, and so does a restart (the configuration
//! may have been fixed).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

pub const PROBE_EVERY: Duration = Duration::from_secs(300);

/// The fault, while there is one.
#[derive(Debug, Clone)]
pub struct Fault {
    pub error: String,
    pub since: DateTime<Utc>,
}

/// Whether refreshes wait: a fault whose next probe is not due. Taking
/// the probe moves the next one forward, so one process probes at a time.
pub async fn holds_refreshes(pool: &PgPool) -> sqlx::Result<Option<String>> {
    let probe = sqlx::query_scalar!(
        "update integration_fault set retry_at = now() + $1::interval
         where retry_at <= now() returning error",
        // `as _`: an interval (see tokens.rs).
        chrono::Duration::from_std(PROBE_EVERY).expect("small") as _,
    )
    .fetch_optional(pool)
    .await?;
    if probe.is_some() {
        return Ok(None);
    }
    sqlx::query_scalar!("select error from integration_fault")
        .fetch_optional(pool)
        .await
}

pub async fn record(pool: &PgPool, error: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into integration_fault (error, retry_at) values ($1, now() + $2::interval)
         on conflict (one) do update set error = excluded.error, retry_at = excluded.retry_at",
        error,
        chrono::Duration::from_std(PROBE_EVERY).expect("small") as _,
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn clear(pool: &PgPool) -> sqlx::Result<()> {
    sqlx::query!("delete from integration_fault")
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn current(pool: &PgPool) -> sqlx::Result<Option<Fault>> {
    sqlx::query_as!(Fault, "select error, since from integration_fault")
        .fetch_optional(pool)
        .await
}
