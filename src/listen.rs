//! One LISTEN connection per process, for the two things PostgreSQL
//! announces: a stored hook (wakes the delivery dispatcher at once instead of at
//! its next poll) and a changed account (the hook-key cache forgets it).

use std::sync::Arc;

use sqlx::{postgres::PgListener, PgPool};
use tokio_util::sync::CancellationToken;

use crate::{accounts::keys::KeyCache, backoff::Backoff, delivery::Worker, inbox::EVENTS};

/// Signalled with the account id by a trigger on `accounts` (see the
/// migration `isolation`).
pub const ACCOUNTS: &str = "amohook_accounts";

/// Listens until `shutdown`, reconnecting after a lost connection. While
/// not connected the cache is bypassed and delivery polls.
pub async fn run(
    pool: PgPool,
    cache: Arc<KeyCache>,
    worker: Arc<Worker>,
    shutdown: CancellationToken,
) {
    let mut failures = 0;
    loop {
        let session = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen_all([EVENTS, ACCOUNTS]).await?;
            cache.set_live(true);
            failures = 0;
            // `try_recv` says when the connection was lost (sqlx would
            // reconnect silently in `recv`, and the announcements sent
            // meanwhile would be lost without a word).
            while let Some(notification) = listener.try_recv().await? {
                if notification.channel() == ACCOUNTS {
                    if let Ok(account_id) = notification.payload().parse() {
                        cache.forget(account_id);
                    }
                } else {
                    worker.wake();
                }
            }
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            result = session => {
                cache.set_live(false);
                match result {
                    Ok(()) => tracing::warn!("the listening connection was lost; reconnecting"),
                    Err(e) => tracing::warn!(error = %e, "listening for announcements failed; retrying"),
                }
            }
        }
        failures += 1;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(Backoff::RECONNECT.delay(failures)) => {}
        }
    }
    cache.set_live(false);
}
