//! The install flow: states for browser installs, the code exchange, the
//! account upsert, the web-hook subscription, and the retry of widget
//! installs that arrive without a browser.

use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

use crate::{
    accounts::{self, Account},
    amocrm::{
        directory::{self, Settings},
        AmoApi, AmoError, TokenSet, WEBHOOK_EVENTS,
    },
    backoff::Backoff,
    crypto::{self, Cipher},
};

/// How long a state from GET /install stays usable.
pub const STATE_TTL: Duration = Duration::from_secs(15 * 60);
/// amoCRM's authorization codes live 20 minutes.
pub const CODE_TTL: Duration = Duration::from_secs(20 * 60);

/// Checks that `referer` is an account host directly under one of the
/// allowed domains (`acme.amocrm.ru`), and returns it lowercased.
///
/// The referer decides where the client secret is sent, so anything else is
/// refused: other hosts, look-alikes (`amocrm.ru.evil.com`), nested hosts
/// (`a.b.amocrm.ru`), ports, paths, user info, schemes.
pub fn account_host(referer: &str, allowed_domains: &[String]) -> Option<String> {
    let host = referer.trim().to_ascii_lowercase();
    let (label, parent) = host.split_once('.')?;
    let label_ok = !label.is_empty()
        && label.len() <= 63
        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !label.starts_with('-')
        && !label.ends_with('-');
    (label_ok && allowed_domains.iter().any(|d| d == parent)).then_some(host)
}

/// A new single-use state for GET /install.
pub async fn new_state(pool: &PgPool) -> sqlx::Result<String> {
    let state = crypto::random_token(24);
    sqlx::query!(
        "insert into oauth_states (state, expires_at) values ($1, now() + $2)",
        &state,
        // `as _`: an interval. chrono's Duration encodes as one, but the macro's
        // type check knows only PgInterval for it.
        chrono::Duration::from_std(STATE_TTL).expect("small") as _,
    )
    .execute(pool)
    .await?;
    Ok(state)
}

/// Uses up a state. False when it is unknown, used or expired.
pub async fn take_state(pool: &PgPool, state: &str) -> sqlx::Result<bool> {
    let taken = sqlx::query!(
        "update oauth_states set used_at = now()
         where state = $1 and used_at is null and expires_at > now()",
        state,
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(taken == 1)
}

/// Why an install did not complete.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// amoCRM refused the code or a call (bad or expired code, wrong client).
    #[error("amoCRM refused: {0}")]
    Refused(AmoError),
    /// amoCRM could not be reached or answered 5xx; the same code may work
    /// on a later try.
    #[error("amoCRM did not answer: {0}")]
    Unavailable(AmoError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<AmoError> for InstallError {
    fn from(e: AmoError) -> Self {
        if e.is_transient() {
            InstallError::Unavailable(e)
        } else {
            InstallError::Refused(e)
        }
    }
}

impl From<sqlx::Error> for InstallError {
    fn from(e: sqlx::Error) -> Self {
        InstallError::Internal(e.into())
    }
}

/// A finished install.
#[derive(Debug)]
pub struct Installed {
    pub account: Account,
    pub reinstall: bool,
    /// `{public_url}/hooks/{hook_key}`: a secret; shown once on the result
    /// page so it can be added by hand when the subscription was refused.
    pub hook_url: SecretString,
    /// None when subscribed; otherwise amoCRM's reason.
    pub webhooks_error: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Installer {
    pool: PgPool,
    cipher: Cipher,
    api: AmoApi,
    public_url: String,
}

impl Installer {
    pub fn new(pool: PgPool, cipher: Cipher, api: AmoApi, public_url: String) -> Self {
        Installer {
            pool,
            cipher,
            api,
            public_url,
        }
    }

    /// Exchanges the code, records the account and its tokens, and
    /// subscribes its web-hooks. `domain` must come from [`account_host`].
    #[tracing::instrument(skip_all, fields(domain = %domain, account.id))]
    pub async fn complete(&self, domain: &str, code: &str) -> Result<Installed, InstallError> {
        let tokens = self.api.exchange_code(domain, code).await?;
        self.finish(domain, tokens).await
    }

    /// The install after the exchange: the account, its tokens, its hooks.
    #[tracing::instrument(skip_all, fields(domain = %domain, account.id))]
    async fn finish(&self, domain: &str, tokens: TokenSet) -> Result<Installed, InstallError> {
        let info = self.api.account(domain, &tokens.access_token).await?;
        tracing::Span::current().record("account.id", info.id);

        let mut tx = self.pool.begin().await?;
        let reinstall = accounts::find(&mut tx, info.id).await?.is_some();
        let account =
            accounts::upsert_installed(&mut tx, &self.cipher, &info, domain, &tokens).await?;
        // The account's currency and date format, for its notes.
        directory::store_settings(&mut *tx, account.account_id, &Settings::of(&info)).await?;
        tx.commit().await?;
        let hook_url = self.hook_url(account.account_id).await?;

        let webhooks_error = match self
            .api
            .subscribe_webhooks(
                domain,
                &tokens.access_token,
                hook_url.expose_secret(),
                WEBHOOK_EVENTS,
            )
            .await
        {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(error = %e, "web-hook subscription refused; the hook URL must be added by hand");
                Some(subscription_error_text(&e))
            }
        };
        accounts::set_webhooks_result(&self.pool, account.account_id, webhooks_error.as_deref())
            .await?;
        tracing::info!(reinstall, "account connected");
        let account = accounts::find(&mut *self.pool.acquire().await?, account.account_id)
            .await?
            .unwrap_or(account);
        Ok(Installed {
            account,
            reinstall,
            hook_url,
            webhooks_error,
        })
    }

    /// `{public_url}/hooks/{hook_key}`: the account's secret hook URL.
    async fn hook_url(&self, account_id: i64) -> anyhow::Result<SecretString> {
        let hook_key = accounts::hook_key(&self.pool, &self.cipher, account_id).await?;
        Ok(SecretString::from(format!(
            "{}/hooks/{}",
            self.public_url,
            hook_key.expose_secret()
        )))
    }

    /// Subscribes the account's web-hooks again (after an administrator
    /// fixed rights or the plan) and records the outcome. Returns amoCRM's
    /// refusal in words, or None when subscribed.
    pub async fn resubscribe(
        &self,
        tokens: &crate::tokens::TokenStore,
        account_id: i64,
    ) -> anyhow::Result<Option<String>> {
        let account = accounts::find(&mut *self.pool.acquire().await?, account_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("unknown account"))?;
        let hook_url = self.hook_url(account_id).await?;
        let result = tokens
            .call(account_id, |token| {
                let (api, destination, domain) =
                    (&self.api, hook_url.expose_secret(), &account.domain);
                async move {
                    api.subscribe_webhooks(domain, &token, destination, WEBHOOK_EVENTS)
                        .await
                }
            })
            .await;
        let error = match result {
            Ok(()) => None,
            Err(crate::tokens::CallError::Amo(e)) => Some(subscription_error_text(&e)),
            Err(e) => Some(format!("the account cannot be called: {e}")),
        };
        accounts::set_webhooks_result(&self.pool, account_id, error.as_deref()).await?;
        Ok(error)
    }

    /// Gives the account a new hook key and subscribes its new URL; the old
    /// key keeps working for `grace` (amoCRM may still re-send to it), and
    /// the old URL's subscription is removed (best effort: after the grace
    /// it answers 404 anyway). Returns amoCRM's refusal of the new
    /// subscription in words, or None.
    pub async fn rotate_hook_key(
        &self,
        tokens: &crate::tokens::TokenStore,
        account_id: i64,
        grace: Duration,
    ) -> anyhow::Result<Option<String>> {
        let (old, _) =
            accounts::rotate_hook_key(&self.pool, &self.cipher, account_id, grace).await?;
        tracing::info!(account.id = account_id, "hook key rotated");
        let refused = self.resubscribe(tokens, account_id).await?;
        if refused.is_none() {
            let old_url = format!("{}/hooks/{}", self.public_url, old.expose_secret());
            let domain = accounts::find(&mut *self.pool.acquire().await?, account_id)
                .await?
                .map(|a| a.domain)
                .unwrap_or_default();
            let removed = tokens
                .call(account_id, |token| {
                    let (api, domain, old_url) = (&self.api, &domain, &old_url);
                    async move { api.unsubscribe_webhook(domain, &token, old_url).await }
                })
                .await;
            if let Err(e) = removed {
                tracing::warn!(account.id = account_id, error = %e, "the old hook URL could not be unsubscribed");
            }
        }
        Ok(refused)
    }

    /// Subscribes again, once, the accounts installed before amohook asked
    /// for today's web-hook events (companies). Returns how many were
    /// subscribed.
    pub async fn resubscribe_outdated(
        &self,
        tokens: &crate::tokens::TokenStore,
    ) -> anyhow::Result<usize> {
        let mut done = 0;
        for account_id in accounts::outdated_subscriptions(&self.pool, 50).await? {
            match self.resubscribe(tokens, account_id).await? {
                None => done += 1,
                Some(error) => tracing::warn!(
                    account.id = account_id,
                    error,
                    "subscribing to company web-hooks refused"
                ),
            }
        }
        Ok(done)
    }

    /// Keeps a widget install's code so that it can be retried until it
    /// expires, and holds it for `hold` so the caller may try it right away.
    pub async fn remember(&self, domain: &str, code: &str, hold: Duration) -> sqlx::Result<i64> {
        // The row id is not known before the insert, so the code is sealed
        // with the referer as context; the id is bound in `claim_due`.
        sqlx::query_scalar!(
            "insert into pending_installs (referer, code, expires_at, locked_until)
             values ($1, $2, now() + $3, now() + $4) returning install_id",
            domain,
            self.cipher.encrypt(code, &pending_context(domain)),
            chrono::Duration::from_std(CODE_TTL).expect("small") as _,
            chrono::Duration::from_std(hold).expect("small") as _,
        )
        .fetch_one(&self.pool)
        .await
    }

    /// Tries one remembered install and records the outcome.
    pub async fn attempt(
        &self,
        install_id: i64,
        domain: &str,
        code: &SecretString,
    ) -> Result<Installed, InstallError> {
        let result = match self.stored_tokens(install_id).await? {
            // Exchanged on an earlier attempt: the code is spent.
            Some(tokens) => self.finish(domain, tokens).await,
            None => match self.api.exchange_code(domain, code.expose_secret()).await {
                Ok(tokens) => {
                    self.store_tokens(install_id, &tokens).await?;
                    self.finish(domain, tokens).await
                }
                Err(e) => Err(e.into()),
            },
        };
        let (state, error, account_id) = match &result {
            Ok(done) => ("done", None, Some(done.account.account_id)),
            Err(InstallError::Refused(e)) => ("failed", Some(e.to_string()), None),
            Err(e) => ("pending", Some(e.to_string()), None),
        };
        let attempts = sqlx::query_scalar!(
            "select attempts from pending_installs where install_id = $1",
            install_id
        )
        .fetch_one(&self.pool)
        .await?;
        let wait = Backoff::INSTALL.delay(u32::try_from(attempts).unwrap_or(0));
        sqlx::query!(
            "update pending_installs set
                 state = case when $2 = 'pending' and expires_at <= now() then 'expired' else $2 end,
                 attempts = attempts + 1,
                 last_error = $3,
                 account_id = $4,
                 tokens = case when $2 = 'pending' and expires_at > now() then tokens end,
                 next_attempt_at = now() + make_interval(secs => $5),
                 locked_until = null,
                 updated_at = now()
             where install_id = $1",
            install_id,
            state,
            error,
            account_id,
            wait.as_secs_f64(),
        )
        .execute(&self.pool)
        .await?;
        result
    }

    /// Seals an exchanged pair into the pending install, before any other
    /// call: the code cannot be exchanged twice.
    async fn store_tokens(&self, install_id: i64, tokens: &TokenSet) -> sqlx::Result<()> {
        let expires_at = Utc::now().timestamp() + tokens.expires_in.as_secs() as i64;
        let pair = serde_json::json!({
            "access_token": tokens.access_token.expose_secret(),
            "refresh_token": tokens.refresh_token.expose_secret(),
            "expires_at": expires_at,
        });
        sqlx::query!(
            // With its tokens the install no longer depends on the code's
            // 20 minutes: it is retried for a day.
            "update pending_installs set tokens = $2,
                 expires_at = greatest(expires_at, now() + interval '1 day')
             where install_id = $1",
            install_id,
            self.cipher
                .encrypt(&pair.to_string(), &pending_tokens_context(install_id)),
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The pair an earlier attempt of this install exchanged, if any.
    async fn stored_tokens(&self, install_id: i64) -> Result<Option<TokenSet>, InstallError> {
        let sealed = sqlx::query_scalar!(
            "select tokens from pending_installs where install_id = $1",
            install_id
        )
        .fetch_one(&self.pool)
        .await?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let pair = self
            .cipher
            .decrypt(&sealed, &pending_tokens_context(install_id))
            .map_err(anyhow::Error::from)?;
        #[derive(serde::Deserialize)]
        struct Pair {
            access_token: String,
            refresh_token: String,
            expires_at: i64,
        }
        let pair: Pair = serde_json::from_str(pair.expose_secret()).map_err(anyhow::Error::from)?;
        let left = (pair.expires_at - Utc::now().timestamp()).max(0);
        Ok(Some(TokenSet {
            access_token: SecretString::from(pair.access_token),
            refresh_token: SecretString::from(pair.refresh_token),
            expires_in: Duration::from_secs(left as u64),
        }))
    }

    /// Retries the widget installs whose exchange failed for a passing
    /// reason. Each is claimed with a lease so that concurrent processes
    /// never spend one code twice. Returns how many completed.
    pub async fn retry_pending(&self) -> anyhow::Result<usize> {
        sqlx::query!(
            "update pending_installs set state = 'expired', tokens = null, updated_at = now()
             where state = 'pending' and expires_at <= now()"
        )
        .execute(&self.pool)
        .await?;
        let mut completed = 0;
        while let Some((install_id, domain, code)) = self.claim_due().await? {
            if self.attempt(install_id, &domain, &code).await.is_ok() {
                completed += 1;
            }
        }
        Ok(completed)
    }

    async fn claim_due(&self) -> anyhow::Result<Option<(i64, String, SecretString)>> {
        let row = sqlx::query!(
            "update pending_installs set locked_until = now() + interval '60 seconds'
             where install_id = (
                 select install_id from pending_installs
                 where state = 'pending' and next_attempt_at <= now() and expires_at > now()
                   and (locked_until is null or locked_until < now())
                 order by next_attempt_at
                 limit 1
                 for update skip locked)
             returning install_id, referer, code"
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let code = self
            .cipher
            .decrypt(&row.code, &pending_context(&row.referer))?;
        Ok(Some((row.install_id, row.referer, code)))
    }

    /// Drops used and expired states and finished install records.
    pub async fn prune(&self) -> sqlx::Result<()> {
        sqlx::query!("delete from oauth_states where expires_at < now() - interval '1 day'")
            .execute(&self.pool)
            .await?;
        // Codes are useless once expired; the rows stay a week for support.
        sqlx::query!(
            "update pending_installs set code = '\\x'::bytea, tokens = null
             where state <> 'pending' and (octet_length(code) > 0 or tokens is not null)"
        )
        .execute(&self.pool)
        .await?;
        sqlx::query!("delete from pending_installs where updated_at < now() - interval '7 days'")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn pending(&self, install_id: i64) -> sqlx::Result<Option<PendingInstall>> {
        sqlx::query_as!(
            PendingInstall,
            "select install_id, referer, state, attempts, account_id, last_error, received_at
             from pending_installs where install_id = $1",
            install_id
        )
        .fetch_optional(&self.pool)
        .await
    }
}

#[derive(Debug)]
pub struct PendingInstall {
    pub install_id: i64,
    pub referer: String,
    pub state: String,
    pub attempts: i32,
    pub account_id: Option<i64>,
    pub last_error: Option<String>,
    pub received_at: DateTime<Utc>,
}

fn pending_tokens_context(install_id: i64) -> String {
    format!("pending_install:{install_id}:tokens")
}

fn pending_context(domain: &str) -> String {
    format!("pending_install:{domain}:code")
}

fn subscription_error_text(e: &AmoError) -> String {
    match e {
        AmoError::Refused { status: 403, .. } => {
            "amoCRM refused to subscribe the web-hooks (403): the installing user is not an \
             administrator of the account"
                .into()
        }
        AmoError::Refused { status: 402, .. } => {
            "amoCRM refused to subscribe the web-hooks (402): the account's plan does not allow \
             web-hooks through the API"
                .into()
        }
        other => format!("amoCRM did not subscribe the web-hooks: {other}"),
    }
}

#[cfg(test)]
mod tests;
