//! What one account host may leave: the per-host limit of install codes,
//! counted over both paths (widget codes and browser installs), and the
//! room a host with few codes is given in a full widget queue.
//!
//! Codes amoCRM refused count for nothing: anyone can send made-up codes
//! naming a real account, and five of them every ten minutes would
//! otherwise lock that account's real install out (of the limit, of room in
//! the queue, of its place in the retrier's order). What bounds refused
//! codes is the install gate's global rate; what a host is measured by is
//! the codes it left that are waiting or were exchanged.

use sqlx::{PgConnection, PgPool};

/// The window of the per-host limit, and of the retrier's order.
pub(super) const WINDOW_MINUTES: i32 = 10;

/// Codes the host left in the window that amoCRM did not refuse: widget
/// codes not failed, and browser installs whose state was used.
pub(super) async fn unrefused_codes(db: &mut PgConnection, domain: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"select (select count(*) from pending_installs
                   where referer = $1 and state <> 'failed'
                     and received_at > now() - make_interval(mins => $2))
                + (select count(*) from oauth_states
                   where referer = $1 and not refused
                     and used_at > now() - make_interval(mins => $2)) as "n!""#,
        domain,
        WINDOW_MINUTES,
    )
    .fetch_one(db)
    .await
}

/// Whether `domain` is at its limit of `limit` codes.
pub(super) async fn at_limit(db: &PgPool, domain: &str, limit: u32) -> sqlx::Result<bool> {
    let codes = unrefused_codes(&mut *db.acquire().await?, domain).await?;
    Ok(codes >= i64::from(limit))
}

/// Makes room in a full widget queue for one code of `domain`: removes the
/// newest waiting code of the host that left the most codes in the window,
/// when that host left more than `domain` will have with this one. A lone
/// code (perhaps a real install) is never pushed out by another lone code;
/// a flood spread over hosts of one code each is bounded by
/// `install.waiting_max` and answered 503 (docs/security.md). A code whose
/// exchange is under way is not removed. Returns whether room was made.
pub(super) async fn make_room(db: &mut PgConnection, domain: &str) -> sqlx::Result<bool> {
    let evicted = sqlx::query_scalar!(
        "with hosts as (
             select referer, count(*) as codes from pending_installs
             where received_at > now() - make_interval(mins => $2) and state <> 'failed'
             group by referer
         ), victim as (
             select p.install_id from pending_installs p join hosts h using (referer)
             where p.state = 'pending' and (p.locked_until is null or p.locked_until < now())
               and h.codes > 1 + coalesce((select codes from hosts where referer = $1), 0)
             order by h.codes desc, p.received_at desc
             limit 1
             for update of p skip locked
         )
         delete from pending_installs where install_id = (select install_id from victim)
         returning referer",
        domain,
        WINDOW_MINUTES,
    )
    .fetch_optional(db)
    .await?;
    if let Some(victim) = &evicted {
        tracing::warn!(
            domain,
            evicted_host = victim,
            "widget queue full: a code of a host that left many made room"
        );
        metrics::counter!("amohook_widget_installs_evicted_total").increment(1);
    }
    Ok(evicted.is_some())
}
