//! The per-account request budget, shared by every process through
//! PostgreSQL: at most `requests_per_second` calls to one account host in
//! any window of a second (plus a margin for network jitter), counting every
//! call (notes, users, pipelines, token refreshes, installs).
//!
//! A sliding log of the last N call times per host, in one row locked for
//! the moment of the check. This is exact across processes, where an
//! in-process limiter (governor) would only see its own calls.
//!
//! Rows are made only for the hosts of known accounts: a call to any other
//! host (an install's exchange for a host that is not an account yet) is
//! bounded by the install gate instead (`install/gate.rs`), so that forged
//! installs naming made-up hosts leave no rows behind. The same table keeps
//! the install gate's global rate under a name no host can have.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// A window a little longer than a second: the network may bring two
/// requests closer together than they left, and a call leaves up to
/// [`LATE_AT_MOST`] after its slot's time without the slot being moved.
/// 25 ms of margin caps a saturated account at 1/1.025 = 97.6% of the
/// limit. Before slots were moved to when their call left (see
/// [`Slot::leaving`]), the margin had to cover the slot's own commit and
/// the time to the send as well: with both cores saturated a 25 ms margin
/// let 8 requests reach one account within a second (docs/benchmark.md).
const WINDOW: Duration = Duration::from_millis(1025);

/// A call that leaves later than this after its slot was checked moves its
/// slot to when it left.
const LATE_AT_MOST: Duration = Duration::from_millis(5);

/// The longest a call waits for a slot before it gives up (and is retried
/// later like any passing failure): no wait for a budget is unbounded.
pub const WAIT_AT_MOST: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("the request budget could not be checked: {0}")]
    Database(#[from] sqlx::Error),
    #[error("no request slot was free within {0:?}")]
    Timeout(Duration),
}

#[derive(Clone, Debug)]
pub struct Budget {
    pool: PgPool,
    per_second: usize,
    /// Account budgets count only known accounts' hosts; the install
    /// gate's single row is always counted.
    known_hosts_only: bool,
}

impl Budget {
    /// The per-account budget: `per_second` calls to one account host.
    pub fn new(pool: PgPool, per_second: u32) -> Self {
        Budget {
            pool,
            per_second: per_second.max(1) as usize,
            known_hosts_only: true,
        }
    }

    /// A budget for names that are not account hosts (the install gate's
    /// global rate).
    pub fn global(pool: PgPool, per_second: u32) -> Self {
        Budget {
            known_hosts_only: false,
            ..Budget::new(pool, per_second)
        }
    }

    /// Waits until a call to `domain` fits the budget, and takes the slot;
    /// gives up after [`WAIT_AT_MOST`].
    pub async fn acquire(&self, domain: &str) -> Result<Slot, BudgetError> {
        self.acquire_within(domain, WAIT_AT_MOST).await
    }

    /// Waits at most `within` for a slot.
    pub async fn acquire_within(
        &self,
        domain: &str,
        within: Duration,
    ) -> Result<Slot, BudgetError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.try_acquire(domain).await? {
                Check::Taken(slot) => return Ok(slot),
                Check::Wait(wait) => {
                    if tokio::time::Instant::now() + wait > deadline {
                        return Err(BudgetError::Timeout(within));
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Waits until a call to `domain` would fit the budget, without taking
    /// a slot: for a call that must keep the host's pace but must not be
    /// charged to it unless it proves real (an install's code exchange,
    /// which anyone can send naming any account; counted afterwards with
    /// [`Budget::count_calls`] when it succeeds). Gives up after `within`.
    pub async fn wait_for_room(&self, domain: &str, within: Duration) -> Result<(), BudgetError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let row = sqlx::query!(
                r#"select recent, clock_timestamp() as "now!" from api_budget where domain = $1"#,
                domain
            )
            .fetch_optional(&self.pool)
            .await?;
            let Some(row) = row else { return Ok(()) };
            let window = chrono::Duration::from_std(WINDOW).expect("small");
            let mut recent: Vec<DateTime<Utc>> = row
                .recent
                .into_iter()
                .filter(|t| *t > row.now - window)
                .collect();
            if recent.len() < self.per_second {
                return Ok(());
            }
            recent.sort();
            let oldest = recent[recent.len() - self.per_second];
            let wait = (oldest + window - row.now)
                .to_std()
                .unwrap_or_default()
                .max(Duration::from_millis(5));
            if tokio::time::Instant::now() + wait > deadline {
                return Err(BudgetError::Timeout(within));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Counts `calls` made to `domain` just now without a slot (an install's
    /// exchange and account call, made before the host was an account's),
    /// so that the calls that follow at once keep the host's limit.
    pub async fn count_calls(&self, domain: &str, calls: usize) -> sqlx::Result<()> {
        sqlx::query!(
            "insert into api_budget (domain, recent)
             select $1, array_fill(clock_timestamp(), array[$2::int])
             where exists (select 1 from accounts where domain = $1)
             on conflict (domain) do update set recent = api_budget.recent || excluded.recent",
            domain,
            calls as i32,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes a slot now, or says how long to wait for one.
    pub async fn try_acquire(&self, domain: &str) -> sqlx::Result<Check> {
        let mut tx = self.pool.begin().await?;
        // Before the database reads its clock: the time from here to the
        // send bounds how late the call leaves.
        let checked = std::time::Instant::now();
        let row = sqlx::query!(
            r#"select recent, clock_timestamp() as "now!" from api_budget where domain = $1 for update"#,
            domain
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let made = sqlx::query!(
                "insert into api_budget (domain)
                 select $1 where not $2 or exists (select 1 from accounts where domain = $1)
                 on conflict do nothing",
                domain,
                self.known_hosts_only,
            )
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            if made.rows_affected() == 0 {
                // Made by a concurrent call, or not an account's host.
                let exists = sqlx::query_scalar!(
                    r#"select exists (select 1 from api_budget where domain = $1) as "e!""#,
                    domain
                )
                .fetch_one(&self.pool)
                .await?;
                if !exists {
                    return Ok(Check::Taken(Slot::unbudgeted()));
                }
            }
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
            return Ok(Check::Wait(wait.max(Duration::from_millis(5))));
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
        Ok(Check::Taken(Slot {
            taken: Some(Taken {
                budget: self.clone(),
                domain: domain.to_owned(),
                at: now,
                checked,
            }),
        }))
    }

    /// Moves one of `domain`'s slots from `from` to `to`.
    async fn move_slot(
        &self,
        domain: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> sqlx::Result<()> {
        sqlx::query!(
            "update api_budget set recent = array_replace(recent, $2, $3) where domain = $1",
            domain,
            from,
            to,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// The outcome of one look at a budget.
#[derive(Debug)]
pub enum Check {
    Taken(Slot),
    /// No slot is free for this long.
    Wait(Duration),
}

/// A slot taken for one call. The budget counts the call at the moment the
/// database checked it; the call leaves after the slot's commit and the
/// request's making, which under load can take longer than the window's
/// margin. [`Slot::leaving`], run as the call leaves, moves a late slot to
/// when the call left, so that the calls after it keep their distance from
/// it and not from an earlier time.
#[derive(Debug)]
#[must_use = "a slot is spent by `leaving` as its call leaves"]
pub struct Slot {
    /// None when the host has no budget (not an account's).
    taken: Option<Taken>,
}

#[derive(Debug)]
struct Taken {
    budget: Budget,
    domain: String,
    /// The database's time of the check, as counted.
    at: DateTime<Utc>,
    /// This process's time just before the check: `at` is later.
    checked: std::time::Instant,
}

impl Slot {
    /// A slot of no budget (an API without one).
    pub fn unbudgeted() -> Self {
        Slot { taken: None }
    }

    /// To run as the call leaves (joined with the send): when it leaves
    /// more than [`LATE_AT_MOST`] after the check, moves the slot to no
    /// earlier than now. A failure to move it is logged, not the call's.
    pub async fn leaving(self) {
        let Some(taken) = self.taken else { return };
        let late = taken.checked.elapsed();
        if late <= LATE_AT_MOST {
            return;
        }
        metrics::counter!("amohook_budget_slots_moved_total").increment(1);
        let to = taken.at + chrono::Duration::from_std(late.min(WAIT_AT_MOST)).expect("small");
        if let Err(e) = taken.budget.move_slot(&taken.domain, taken.at, to).await {
            tracing::warn!(error = %e, "a late call's budget slot could not be moved");
        }
    }
}
