//! Deletes finished events past the retention age, in small batches so that
//! no long lock holds up hooks or delivery.

use sqlx::PgPool;

const BATCH: i64 = 5000;

/// Deletes finished events older than `days` days; returns how many.
pub async fn prune_events(pool: &PgPool, days: u32) -> sqlx::Result<u64> {
    if days == 0 {
        return Ok(0);
    }
    let mut deleted = 0;
    loop {
        let n = sqlx::query!(
            "delete from hook_events where event_id in (
                 select event_id from hook_events
                 where state in ('delivered', 'skipped', 'dropped', 'failed')
                   and coalesce(finished_at, received_at) < now() - make_interval(days => $1)
                 limit $2)",
            days as i32,
            BATCH,
        )
        .execute(pool)
        .await?
        .rows_affected();
        deleted += n;
        if n < BATCH as u64 {
            return Ok(deleted);
        }
    }
}
