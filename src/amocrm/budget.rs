//! The per-account request budget, shared by every process through
//! PostgreSQL: at most `requests_per_second` calls to one account host in
//! any window of a second (plus a margin for network jitter), counting every
//! call (notes, users, pipelines, token refreshes, installs).
//!
//! A sliding log of the last N call times per host, in one row locked for
//! the moment of the check. This is exact across processes, where an
//! in-process limiter (governor) would only see its own calls.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// A window a little longer than a second: requests leave a few
/// milliseconds after their slot is taken and may arrive closer together.
const WINDOW: Duration = Duration::from_millis(1050);

#[derive(Clone, Debug)]
pub struct Budget {
    pool: PgPool,
    per_second: usize,
}

impl Budget {
    pub fn new(pool: PgPool, per_second: u32) -> Self {
        Budget {
            pool,
            per_second: per_second.max(1) as usize,
        }
    }

    /// Waits until a call to `domain` fits the budget, and takes the slot.
    pub async fn acquire(&self, domain: &str) -> sqlx::Result<()> {
        loop {
            match self.try_acquire(domain).await? {
                None => return Ok(()),
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// Takes a slot now, or says how long to wait for one.
    pub async fn try_acquire(&self, domain: &str) -> sqlx::Result<Option<Duration>> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query!(
            r#"select recent, clock_timestamp() as "now!" from api_budget where domain = $1 for update"#,
            domain
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            sqlx::query!(
                "insert into api_budget (domain) values ($1) on conflict do nothing",
                domain
            )
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Box::pin(self.try_acquire(domain)).await;
        };
        let window = chrono::Duration::from_std(WINDOW).expect("small");
        let now = row.now;
        let mut recent: Vec<DateTime<Utc>> = row
            .recent
            .into_iter()
            .filter(|t| *t > now - window)
            .collect();
        recent.sort();
        if recent.len() >= self.per_second {
            let oldest = recent[recent.len() - self.per_second];
            let wait = (oldest + window - now).to_std().unwrap_or_default();
            return Ok(Some(wait.max(Duration::from_millis(5))));
        }
        recent.push(now);
        sqlx::query!(
            "update api_budget set recent = $2 where domain = $1",
            domain,
            &recent,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(None)
    }
}
