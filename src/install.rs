//! The install flow: states for browser installs, the code exchange, the
//! account upsert, the web-hook subscription, and the retry of widget
//! installs that arrive without a browser.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

pub use gate::{Gate, RATE_KEY as EXCHANGE_RATE_KEY};

use crate::{
    accounts::{self, Account},
    amocrm::{
        directory::{self, Settings},
        AmoApi, AmoError, TokenSet,
    },
    config::InstallSettings,
    crypto::Cipher,
};

/// How long a state from GET /install stays usable.
pub const STATE_TTL: Duration = Duration::from_secs(15 * 60);
/// amoCRM's authorization codes live 20 minutes.
pub const CODE_TTL: Duration = Duration::from_secs(20 * 60);
/// How long a browser install waits for a turn at the gate before the page
/// asks the user to try again.
const BROWSER_WAITS: Duration = Duration::from_secs(10);

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
    /// The install gate had no turn free in time (many installs at once, or
    /// a flood of forged ones): nothing was sent to amoCRM.
    #[error("too many installs at this moment")]
    Busy,
    /// The host left `install.codes_per_host` codes amoCRM did not refuse
    /// in the last 10 minutes: nothing was sent or stored.
    #[error("too many installs for this account in the last minutes")]
    HostLimit,
    /// The browser install's state was used before (a replayed callback).
    #[error("the install state was already used")]
    StateUsed,
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
    gate: Gate,
    limits: InstallSettings,
}

impl Installer {
    pub fn new(
        pool: PgPool,
        cipher: Cipher,
        api: AmoApi,
        public_url: String,
        limits: InstallSettings,
    ) -> Self {
        Installer {
            gate: Gate::new(pool.clone(), &limits),
            pool,
            cipher,
            api,
            public_url,
            limits,
        }
    }

    /// A browser install: exchanges the code, records the account and its
    /// tokens, and subscribes its web-hooks. `domain` must come from
    /// [`crate::platform::account_host`], and `state` have passed
    /// [`Installer::state_is_valid`]. The host's limit and a turn at the
    /// gate come before anything is written: a flood of forged callbacks
    /// (each with a state anyone can ask for) writes nothing past the gate's
    /// pace; then the state is used up, so that it works once.
    #[tracing::instrument(skip_all, fields(domain = %domain, account.id))]
    pub async fn complete(
        &self,
        domain: &str,
        code: &str,
        state: &str,
    ) -> Result<Installed, InstallError> {
        if hosts::at_limit(&self.pool, domain, self.limits.codes_per_host).await? {
            return Err(InstallError::HostLimit);
        }
        let Some(_turn) = self.gate.enter(BROWSER_WAITS).await? else {
            return Err(InstallError::Busy);
        };
        if !self.use_state(state, domain).await? {
            return Err(InstallError::StateUsed);
        }
        let tokens = match self.api.exchange_code(domain, code).await {
            Ok(tokens) => tokens,
            Err(e) => {
                let e = InstallError::from(e);
                if matches!(e, InstallError::Refused(_)) {
                    self.state_refused(state).await?;
                }
                return Err(e);
            }
        };
        self.finish(domain, tokens, 2).await
    }

    /// The install after the exchange: the account, its tokens, its hooks.
    /// `calls` is how many calls this attempt made to the host so far,
    /// counting the account call (2 with the exchange, 1 without).
    #[tracing::instrument(skip_all, fields(domain = %domain, account.id))]
    async fn finish(
        &self,
        domain: &str,
        tokens: TokenSet,
        calls: usize,
    ) -> Result<Installed, InstallError> {
        let info = self.api.account(domain, &tokens.access_token).await?;
        tracing::Span::current().record("account.id", info.id);

        // The code is spent: the pair amoCRM gave lands whatever the
        // database does at this moment (`db::until_stored`).
        let (account, reinstall) = crate::db::until_stored("installed_account", || async {
            let mut tx = self.pool.begin().await?;
            let reinstall = accounts::find(&mut tx, info.id).await?.is_some();
            let account =
                accounts::upsert_installed(&mut tx, &self.cipher, &info, domain, &tokens).await?;
            // The account's currency and date format, for its notes.
            directory::store_settings(&mut *tx, account.account_id, &Settings::of(&info)).await?;
            tx.commit().await?;
            anyhow::Ok((account, reinstall))
        })
        .await?;
        // The calls that took no slot count now, before the subscription
        // and the first notes: the exchange (it never takes one), and the
        // account call of a host that had no budget while it was unknown.
        let unbudgeted = if reinstall { calls - 1 } else { calls };
        if unbudgeted > 0 {
            self.api.count_calls(domain, unbudgeted).await?;
        }
        if !reinstall {
            self.take_installers_language(domain, &tokens, &info)
                .await?;
        }
        let hook_url = self.hook_url(account.account_id).await?;

        let webhooks_error = match subscription::subscribe(
            &self.api,
            domain,
            &tokens.access_token,
            hook_url.expose_secret(),
        )
        .await
        {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(error = %e, "web-hook subscription refused; the hook URL must be added by hand");
                Some(subscription::error_text(&e))
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
        Ok(SecretString::from(self.url_of(&hook_key)))
    }

    /// Gives the account a new hook key. The new key works from before its
    /// URL is subscribed (a hook amoCRM sends there at once is stored), and
    /// becomes the account's key only once amoCRM accepted the
    /// subscription: when amoCRM refuses, nothing changes and the refusal
    /// is returned in words. The replaced key keeps working for `grace`
    /// (amoCRM may still re-send to it), each rotated key for its own
    /// grace; its URL is unsubscribed (best effort: while both URLs are
    /// subscribed amoCRM sends every hook to both, and the second copy is
    /// a duplicate).
    pub async fn rotate_hook_key(
        &self,
        tokens: &crate::tokens::TokenStore,
        account_id: i64,
        grace: Duration,
    ) -> anyhow::Result<Option<String>> {
        let account = accounts::find(&mut *self.pool.acquire().await?, account_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("unknown account"))?;
        let new = accounts::keys::add_candidate(&self.pool, account_id).await?;
        let new_url = self.url_of(&new);
        let subscribed = tokens
            .call(account_id, |token| {
                let (api, destination, domain) = (&self.api, &new_url, &account.domain);
                async move { subscription::subscribe(api, domain, &token, destination).await }
            })
            .await;
        if let Err(e) = subscribed {
            accounts::keys::drop_candidate(&self.pool, &new).await?;
            tracing::warn!(account.id = account_id, error = %e, "hook key not rotated: the new URL was not subscribed");
            return Ok(Some(match e {
                crate::tokens::CallError::Amo(e) => subscription::error_text(&e),
                e => format!("the account cannot be called: {e}"),
            }));
        }
        let old =
            accounts::keys::make_current(&self.pool, &self.cipher, account_id, &new, grace).await?;
        accounts::set_webhooks_result(&self.pool, account_id, None).await?;
        tracing::info!(account.id = account_id, "hook key rotated");
        let old_url = self.url_of(&old);
        let removed = tokens
            .call(account_id, |token| {
                let (api, domain, old_url) = (&self.api, &account.domain, &old_url);
                async move { api.unsubscribe_webhook(domain, &token, old_url).await }
            })
            .await;
        if let Err(e) = removed {
            tracing::warn!(account.id = account_id, error = %e, "the old hook URL could not be unsubscribed");
        }
        Ok(None)
    }

    /// A new account's notes take the language of the user who installed
    /// amohook (`lang` of `GET /api/v4/users/{id}`: an admin-only method,
    /// and the installer is an admin to subscribe web-hooks anyway). When
    /// amoCRM does not say, the account's domain decides.
    async fn take_installers_language(
        &self,
        domain: &str,
        tokens: &TokenSet,
        info: &crate::amocrm::AccountInfo,
    ) -> sqlx::Result<()> {
        #[derive(serde::Deserialize)]
        struct User {
            #[serde(default)]
            lang: Option<String>,
        }
        let Some(user_id) = info.current_user_id else {
            return Ok(());
        };
        let path = format!("/api/v4/users/{user_id}");
        let user: Result<Option<User>, AmoError> = self
            .api
            .call(
                domain,
                &tokens.access_token,
                reqwest::Method::GET,
                &path,
                None::<&()>,
            )
            .await;
        let lang = match user {
            Ok(user) => user
                .and_then(|u| u.lang)
                .and_then(|lang| crate::notes::Lang::parse(&lang)),
            Err(e) => {
                tracing::info!(error = %e, "the installing user's language was not read; notes follow the domain");
                None
            }
        };
        if let Some(lang) = lang {
            accounts::set_note_lang(&self.pool, info.id, Some(lang)).await?;
        }
        Ok(())
    }

    /// `{public_url}/hooks/{key}`.
    fn url_of(&self, key: &SecretString) -> String {
        format!("{}/hooks/{}", self.public_url, key.expose_secret())
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
}

mod gate;
mod hosts;
mod pending;
mod states;
pub mod subscription;
pub(crate) use pending::{code_context, tokens_context};
pub use pending::{PendingInstall, Remembered};

#[cfg(test)]
mod tests;
