//! Access tokens for accounts, refreshed safely.
//!
//! amoCRM's refresh tokens are single use: the first refresh revokes the old
//! token, and a second refresh with it fails with "Token has been revoked",
//! which would force the account to reinstall. So a refresh happens only
//! under a row lock on the account's token (`select ... for update`), after
//! re-reading the row, only if the token is still due, and the new pair is
//! stored in the same transaction. Two processes that need a token at once
//! make exactly one refresh: the second waits on the lock, re-reads, and
//! finds a fresh token.

mod refresh;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    accounts::{self, token_context, AccountStatus},
    amocrm::{budget::Slot, AmoApi, AmoError, TokenSet},
    backoff::Backoff,
    crypto::Cipher,
};

/// Refresh this long before the access token expires (or a quarter of its
/// lifetime before, when that is shorter).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(10 * 60);
/// Refresh any token not refreshed for this long, so that idle accounts keep
/// a live refresh token (amoCRM lets one die after 3 months unused).
pub const KEEP_ALIVE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The account is not active (reauth_required, disconnected, unknown):
    /// no call must be made for it.
    #[error("account {0} is not active")]
    NotActive(i64),
    /// amoCRM refused the refresh token for good; the account is now
    /// `reauth_required`.
    #[error("amoCRM revoked the account's grant: {0}")]
    Revoked(String),
    /// amoCRM could not be asked (timeouts, 5xx, 429); try again later.
    #[error("token refresh failed for now: {0}")]
    Transient(AmoError),
    /// amoCRM refused the refresh in a way that does not mean the grant is
    /// dead (an odd answer): the status stays.
    #[error("token refresh refused: {0}")]
    Refused(AmoError),
    /// amoCRM refuses the integration itself (its client id, secret or
    /// redirect URI): refreshes of every account of that integration wait
    /// (see `fault`). The text starts with the integration's section.
    #[error(
        "amoCRM refuses the integration itself ({0}): check that section's client_id, \
         client_secret and redirect_uri; refreshes of its accounts wait"
    )]
    IntegrationRefused(String),
    #[error("a stored token cannot be read: {0}")]
    Key(#[from] crate::crypto::CryptoError),
    #[error("the database is unavailable: {0}")]
    Database(#[from] sqlx::Error),
}

/// The failure of a call made through [`TokenStore::call`], or of work
/// around it.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Amo(#[from] AmoError),
    #[error("the database is unavailable: {0}")]
    Database(#[from] sqlx::Error),
}

/// Why a refresh is asked for.
#[derive(Debug, Clone)]
pub enum RefreshReason {
    /// The token expires within the margin (or already has).
    Expiring,
    /// amoCRM answered 401 to this access token.
    Rejected(SecretString),
    /// The token was not refreshed for [`KEEP_ALIVE_AFTER`].
    KeepAlive,
}

struct TokenRow {
    domain: String,
    status: AccountStatus,
    access_token: Vec<u8>,
    refresh_token: Vec<u8>,
    expires_at: DateTime<Utc>,
    refreshed_at: DateTime<Utc>,
}

/// Hands out access tokens. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TokenStore {
    pool: PgPool,
    cipher: Cipher,
    api: AmoApi,
    /// Refreshes in flight, each in its own task (see [`TokenStore::refresh`]).
    refreshes: TaskTracker,
    /// A refresh holds a connection of the main pool across its call to
    /// amoCRM (the row lock that makes it single): at most
    /// [`REFRESHES_AT_ONCE`] do at a time, so that hundreds of delivery
    /// turns whose tokens ran out together cannot take every connection
    /// while they wait on amoCRM.
    refreshing: Arc<Semaphore>,
}

/// Token refreshes one process runs at the same time.
const REFRESHES_AT_ONCE: usize = 8;

impl TokenStore {
    pub fn new(pool: PgPool, cipher: Cipher, api: AmoApi) -> Self {
        TokenStore {
            pool,
            cipher,
            api,
            refreshes: TaskTracker::new(),
            refreshing: Arc::new(Semaphore::new(REFRESHES_AT_ONCE)),
        }
    }

    /// Waits, at most `within`, for the refreshes in flight to commit their
    /// new tokens (at shutdown). Returns whether they all did.
    pub async fn finish_refreshes(&self, within: Duration) -> bool {
        self.refreshes.close();
        tokio::time::timeout(within, self.refreshes.wait())
            .await
            .is_ok()
    }

    /// A usable access token for the account, refreshed first when it is
    /// due.
    pub async fn access_token(&self, account_id: i64) -> Result<SecretString, TokenError> {
        let row = self
            .read(&mut *self.pool.acquire().await?, account_id, false)
            .await?;
        if is_due(&row, &RefreshReason::Expiring, Utc::now()) {
            return self.refresh(account_id, RefreshReason::Expiring).await;
        }
        self.open(account_id, "access_token", &row.access_token)
    }

    /// Runs one amoCRM call for the account with a valid token. A 401 leads
    /// to one refresh (under the lock) and one retry with the new token.
    pub async fn call<T, F, Fut>(&self, account_id: i64, f: F) -> Result<T, CallError>
    where
        F: Fn(SecretString) -> Fut,
        Fut: std::future::Future<Output = Result<T, AmoError>>,
    {
        let token = self.access_token(account_id).await?;
        match f(token.clone()).await {
            Err(AmoError::Unauthorized(_)) => {
                tracing::info!(
                    account.id = account_id,
                    "amoCRM answered 401; refreshing once"
                );
                let token = self
                    .refresh(account_id, RefreshReason::Rejected(token))
                    .await?;
                Ok(f(token).await?)
            }
            other => Ok(other?),
        }
    }

    /// `GET path` of the account's API, as [`TokenStore::call`] makes it;
    /// amoCRM's 204 ("nothing found") is `None`.
    pub async fn get<T: serde::de::DeserializeOwned>(
        &self,
        api: &crate::amocrm::AmoApi,
        account_id: i64,
        domain: &str,
        path: &str,
    ) -> Result<Option<T>, CallError> {
        self.call(account_id, |token| async move {
            api.call(domain, &token, reqwest::Method::GET, path, None::<&()>)
                .await
        })
        .await
    }

    /// Refreshes every active token that has not been refreshed for
    /// [`KEEP_ALIVE_AFTER`]. Returns how many were refreshed.
    pub async fn keep_alive(&self, shutdown: &CancellationToken) -> anyhow::Result<usize> {
        let stale = sqlx::query_scalar!(
            "select t.account_id from account_tokens t join accounts a using (account_id)
             where a.status = 'active' and t.refreshed_at < now() - $1::interval
             order by t.refreshed_at limit 500",
            // `as _`: an interval. chrono's Duration encodes as one, but the macro's
            // type check knows only PgInterval for it.
            chrono::Duration::from_std(KEEP_ALIVE_AFTER)? as _,
        )
        .fetch_all(&self.pool)
        .await?;
        let mut refreshed = 0;
        for account_id in stale {
            // A shutdown is not held up by the rest of the list (a refresh
            // already started finishes: see `refresh`).
            if shutdown.is_cancelled() {
                break;
            }
            match self.refresh(account_id, RefreshReason::KeepAlive).await {
                Ok(_) => refreshed += 1,
                Err(e) => {
                    tracing::warn!(account.id = account_id, error = %e, "keep-alive refresh failed")
                }
            }
        }
        Ok(refreshed)
    }

    async fn read(
        &self,
        db: &mut sqlx::PgConnection,
        account_id: i64,
        lock: bool,
    ) -> Result<TokenRow, TokenError> {
        let row = if lock {
            sqlx::query_as!(
                TokenRow,
                r#"select a.domain, a.status as "status: AccountStatus", t.access_token,
                          t.refresh_token, t.expires_at, t.refreshed_at
                   from account_tokens t join accounts a using (account_id)
                   where t.account_id = $1 for update of t"#,
                account_id
            )
            .fetch_optional(db)
            .await?
        } else {
            sqlx::query_as!(
                TokenRow,
                r#"select a.domain, a.status as "status: AccountStatus", t.access_token,
                          t.refresh_token, t.expires_at, t.refreshed_at
                   from account_tokens t join accounts a using (account_id)
                   where t.account_id = $1"#,
                account_id
            )
            .fetch_optional(db)
            .await?
        };
        match row {
            Some(row) if row.status == AccountStatus::Active => Ok(row),
            _ => Err(TokenError::NotActive(account_id)),
        }
    }

    fn open(
        &self,
        account_id: i64,
        column: &str,
        sealed: &[u8],
    ) -> Result<SecretString, TokenError> {
        Ok(self
            .cipher
            .decrypt(sealed, &token_context(account_id, column))?)
    }
}

fn is_due(row: &TokenRow, reason: &RefreshReason, now: DateTime<Utc>) -> bool {
    // The margin is at most a quarter of the token's lifetime, so that a
    // short-lived token (as in tests and drills) is refreshed once per
    // lifetime rather than on every use.
    let lifetime = row.expires_at - row.refreshed_at;
    let margin = chrono::Duration::from_std(REFRESH_MARGIN)
        .expect("small")
        .min(lifetime / 4);
    let keep_alive = chrono::Duration::from_std(KEEP_ALIVE_AFTER).expect("small");
    match reason {
        RefreshReason::Expiring => row.expires_at <= now + margin,
        // Whether the rejected token is still the stored one is checked by
        // the caller after decrypting.
        RefreshReason::Rejected(_) => true,
        RefreshReason::KeepAlive => row.refreshed_at <= now - keep_alive,
    }
}
