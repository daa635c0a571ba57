//! The refresh itself: one at a time per account under the row lock, in a
//! task of its own that finishes even when its caller stops waiting, and the
//! pair amoCRM gave stored again on fresh connections when the first store
//! fails.

use backon::Retryable as _;
use chrono::Utc;
use secrecy::SecretString;
use tracing::Instrument as _;

use super::*;

impl TokenStore {
    /// Refreshes the account's token if, after taking the lock and reading
    /// it again, it is still due for `reason`. Returns the access token to
    /// use from now on. Transient failures are tried twice more.
    #[tracing::instrument(skip_all, fields(account.id = account_id, reason = reason_name(&reason)))]
    pub async fn refresh(
        &self,
        account_id: i64,
        reason: RefreshReason,
    ) -> Result<SecretString, TokenError> {
        // amoCRM's refresh token is single use: once amoCRM has answered,
        // only the pair it gave is valid, so the call and the commit must
        // finish even when the caller stops waiting (a request's timeout, a
        // shutdown). They run in a task of their own that the caller awaits;
        // shutdown waits for these tasks (`finish_refreshes`).
        let store = self.clone();
        let task = self.refreshes.spawn(
            async move {
                let domain = store
                    .read(&mut *store.pool.acquire().await?, account_id, false)
                    .await?
                    .domain;
                let attempt = || store.refresh_once(account_id, &domain, &reason);
                attempt
                    .retry(Backoff::REFRESH.retries(2))
                    .when(|e| matches!(e, TokenError::Transient(_)))
                    .await
            }
            .in_current_span(),
        );
        // The task is never aborted; a panic in it is this caller's panic.
        task.await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// One refresh: the budget slot first, then the row lock, the call and
    /// the commit of the new pair, so that no lock is held while waiting for
    /// anything but amoCRM's answer.
    async fn refresh_once(
        &self,
        account_id: i64,
        domain: &str,
        reason: &RefreshReason,
    ) -> Result<SecretString, TokenError> {
        let _turn = self
            .refreshing
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let slot = self
            .api
            .take_slot(domain)
            .await
            .map_err(TokenError::Transient)?;
        let mut tx = self.pool.begin().await?;
        // Waiting for another process's refresh is bounded by its HTTP
        // timeout; this bound keeps a stuck lock from hanging a worker.
        sqlx::query!("set local lock_timeout = '60s'")
            .execute(&mut *tx)
            .await?;
        let row = self.read(&mut tx, account_id, true).await?;
        if !is_due(&row, reason, Utc::now()) {
            // Someone else refreshed while we waited for the lock.
            return self.open(account_id, "access_token", &row.access_token);
        }
        if let RefreshReason::Rejected(rejected) = reason {
            let current = self.open(account_id, "access_token", &row.access_token)?;
            if current.expose_secret() != rejected.expose_secret() {
                return Ok(current);
            }
        }
        let integration = self.api.integrations().for_host(&row.domain).name;
        if let Some(error) = crate::fault::holds_refreshes(&self.pool, integration).await? {
            return Err(TokenError::IntegrationRefused(format!(
                "{integration}: {error}"
            )));
        }
        let refresh_token = self.open(account_id, "refresh_token", &row.refresh_token)?;
        let result = match self
            .api
            .refresh_token(&row.domain, &refresh_token, slot)
            .await
        {
            // A renamed account's old host refuses: follow the account to
            // its new host and refresh there, once (amocrm::rename).
            Err(e) if e.may_be_renamed() && !e.blames_the_client() => {
                let access = self.open(account_id, "access_token", &row.access_token)?;
                let moved = match crate::amocrm::rename::api_domain(&access) {
                    Some(api_domain) => {
                        self.api
                            .current_host(account_id, &api_domain, &refresh_token)
                            .await
                    }
                    None => None,
                };
                // A renamed account stays with the integration that holds
                // its grant.
                let integrations = self.api.integrations();
                match moved
                    .filter(|host| *host != row.domain && integrations.same(host, &row.domain))
                {
                    Some(host) => {
                        accounts::move_host(&mut tx, account_id, &host).await?;
                        tracing::warn!(from = %row.domain, to = %host, "the account renamed its subdomain; following it");
                        metrics::counter!("amohook_account_renames_total").increment(1);
                        // The new host has no budget row yet: the account
                        // moves to it in this transaction.
                        self.api
                            .refresh_token(&host, &refresh_token, Slot::unbudgeted())
                            .await
                    }
                    None => Err(e),
                }
            }
            other => other,
        };
        match result {
            Ok(tokens) => {
                metrics::counter!("amohook_token_refreshes_total", "result" => "ok", "integration" => integration).increment(1);
                // amoCRM has revoked the old refresh token: this pair is the
                // account's only one, and must land whatever the database
                // does at this moment.
                let stored = match accounts::store_tokens(
                    &mut tx,
                    &self.cipher,
                    account_id,
                    &tokens,
                )
                .await
                {
                    Ok(()) => tx.commit().await,
                    Err(e) => {
                        // Gives the row lock back before storing again.
                        let _ = tx.rollback().await;
                        Err(e)
                    }
                };
                if let Err(e) = stored {
                    tracing::error!(error = %e, "the new token pair was not stored; storing it again");
                    self.store_again(account_id, &tokens).await?;
                }
                crate::fault::clear(&self.pool, integration).await?;
                tracing::info!("access token refreshed");
                Ok(tokens.access_token)
            }
            Err(e) if e.is_dead_grant() => {
                metrics::counter!("amohook_token_refreshes_total", "result" => "revoked", "integration" => integration)
                    .increment(1);
                let reason = e.to_string();
                accounts::mark_reauth_required(&mut tx, account_id, &reason).await?;
                tx.commit().await?;
                tracing::warn!(error = %reason, "refresh token refused; account needs a new install");
                Err(TokenError::Revoked(reason))
            }
            Err(e) if e.is_transient() => {
                metrics::counter!("amohook_token_refreshes_total", "result" => "transient", "integration" => integration)
                    .increment(1);
                tracing::warn!(error = %e, "token refresh failed, will retry later");
                Err(TokenError::Transient(e))
            }
            Err(e) if e.blames_the_client() => {
                metrics::counter!("amohook_token_refreshes_total", "result" => "client_refused", "integration" => integration)
                    .increment(1);
                // Every account would fail the same way: one fault for the
                // integration, no account marked.
                let error = e.to_string();
                crate::fault::record(&self.pool, integration, &error).await?;
                tracing::error!(integration, error = %error, "amoCRM refuses the integration itself; refreshes of its accounts wait");
                Err(TokenError::IntegrationRefused(format!(
                    "{integration}: {error}"
                )))
            }
            Err(e) => {
                metrics::counter!("amohook_token_refreshes_total", "result" => "refused", "integration" => integration)
                    .increment(1);
                // An odd answer: the account's grant may be fine, so its
                // status stays.
                tracing::error!(error = %e, "token refresh refused");
                Err(TokenError::Refused(e))
            }
        }
    }

    /// Stores a pair amoCRM gave after the first store failed, on fresh
    /// connections until it lands (`db::until_stored`). The row lock was
    /// lost with the failed transaction: a refresh elsewhere may have sent
    /// the revoked token meanwhile and marked the account for a new
    /// install, which the pair stored now undoes.
    async fn store_again(&self, account_id: i64, tokens: &TokenSet) -> sqlx::Result<()> {
        crate::db::until_stored("token_pair", || async {
            let mut tx = self.pool.begin().await?;
            // The failed transaction's lock, if its connection broke, goes
            // when PostgreSQL notices: this attempt waits a little, the
            // next one again.
            sqlx::query!("set local lock_timeout = '5s'")
                .execute(&mut *tx)
                .await?;
            sqlx::query!(
                "select account_id from account_tokens where account_id = $1 for update",
                account_id
            )
            .fetch_optional(&mut *tx)
            .await?;
            accounts::store_tokens(&mut tx, &self.cipher, account_id, tokens).await?;
            sqlx::query!(
                "update accounts set status = 'active', status_reason = null, updated_at = now()
                 where account_id = $1 and status = 'reauth_required'",
                account_id
            )
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        })
        .await
    }
}

fn reason_name(reason: &RefreshReason) -> &'static str {
    match reason {
        RefreshReason::Expiring => "expiring",
        RefreshReason::Rejected(_) => "rejected",
        RefreshReason::KeepAlive => "keep_alive",
    }
}
