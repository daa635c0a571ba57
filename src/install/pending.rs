//! Widget installs: amoCRM calls the redirect URI once, without a browser,
//! and waits 3 seconds. The code is kept (sealed) and the install retried
//! in the background until the code expires; the tokens are sealed into
//! the same row the moment the code is exchanged, so a retry never spends
//! the code twice.

use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use super::{hosts, InstallError, Installed, Installer, CODE_TTL};
use crate::{amocrm::TokenSet, backoff::Backoff, crypto};

/// What became of a widget install's code when it arrived.
#[derive(Debug)]
pub enum Remembered {
    /// Stored; to be tried now.
    New(i64),
    /// This very code came before (a replay): it is not exchanged again.
    Seen(PendingInstall),
    /// The host left `install.codes_per_host` codes amoCRM did not refuse
    /// in the last 10 minutes.
    HostLimit,
    /// `install.waiting_max` installs are waiting already, and none of them
    /// is of a host that left more codes than this one.
    QueueFull,
}

/// The advisory lock that makes widget codes weigh against the limits one
/// at a time (an arbitrary number, amohook's only advisory lock).
const REMEMBER_LOCK: i64 = 0x616d_6f68_6f6f_6b01;
/// How long one round of background retries may work, so that the
/// background loop (hook counts, shutdown) stays responsive.
const RETRY_ROUND: Duration = Duration::from_secs(5);

impl Installer {
    /// Keeps a widget install's code so that it can be retried until it
    /// expires, and holds it for `hold` so the caller may try it right away.
    /// A code seen before, a host at its limit, or a full queue with no
    /// room for this host (see `hosts.rs`) store nothing.
    pub async fn remember(
        &self,
        domain: &str,
        code: &str,
        hold: Duration,
    ) -> sqlx::Result<Remembered> {
        let code_sha256 = crypto::sha256_hex(code);
        let mut tx = self.pool.begin().await?;
        // Widget codes are weighed against the limits one at a time, so that
        // the counts hold exactly under a flood (a few index reads each).
        sqlx::query!("select pg_advisory_xact_lock($1)", REMEMBER_LOCK)
            .execute(&mut *tx)
            .await?;
        let seen = sqlx::query_as!(
            PendingInstall,
            "select install_id, referer, state, attempts, account_id, last_error, received_at
             from pending_installs where code_sha256 = $1",
            &code_sha256
        )
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = if let Some(seen) = seen {
            Remembered::Seen(seen)
        } else if hosts::unrefused_codes(&mut tx, domain).await?
            >= i64::from(self.limits.codes_per_host)
        {
            Remembered::HostLimit
        } else if self.queue_full(&mut tx).await? && !hosts::make_room(&mut tx, domain).await? {
            Remembered::QueueFull
        } else {
            // The row id is not known before the insert, so the code is
            // sealed with the referer as context; the id is bound in
            // `claim_due`.
            let install_id = sqlx::query_scalar!(
                "insert into pending_installs (referer, code, code_sha256, expires_at, locked_until)
                 values ($1, $2, $3, now() + $4, now() + $5)
                 returning install_id",
                domain,
                self.cipher.encrypt(code, &code_context(domain)),
                &code_sha256,
                chrono::Duration::from_std(CODE_TTL).expect("small") as _,
                chrono::Duration::from_std(hold).expect("small") as _,
            )
            .fetch_one(&mut *tx)
            .await?;
            Remembered::New(install_id)
        };
        tx.commit().await?;
        let result = match &outcome {
            Remembered::New(_) => "stored",
            Remembered::Seen(_) => "seen_before",
            Remembered::HostLimit => "host_limit",
            Remembered::QueueFull => "queue_full",
        };
        metrics::counter!("amohook_widget_installs_total", "result" => result).increment(1);
        Ok(outcome)
    }

    async fn queue_full(&self, db: &mut sqlx::PgConnection) -> sqlx::Result<bool> {
        let waiting = sqlx::query_scalar!(
            r#"select count(*) as "n!" from pending_installs where state = 'pending'"#
        )
        .fetch_one(db)
        .await?;
        Ok(waiting >= i64::from(self.limits.waiting_max))
    }

    /// Tries one remembered install and records the outcome, waiting at
    /// most `within` for a turn at the install gate. When no turn came, the
    /// install is put back, untouched, for the background retrier.
    pub async fn attempt(
        &self,
        install_id: i64,
        domain: &str,
        code: &SecretString,
        within: Duration,
    ) -> Result<Installed, InstallError> {
        let result = match self.stored_tokens(install_id).await? {
            // Exchanged on an earlier attempt: the code is spent.
            Some(tokens) => self.finish(domain, tokens, 1).await,
            None => {
                let Some(_turn) = self.gate.enter(within).await? else {
                    self.put_back(install_id).await?;
                    return Err(InstallError::Busy);
                };
                match self.api.exchange_code(domain, code.expose_secret()).await {
                    Ok(tokens) => {
                        self.store_tokens(install_id, &tokens).await?;
                        self.finish(domain, tokens, 2).await
                    }
                    Err(e) => Err(e.into()),
                }
            }
        };
        let (state, error, account_id) = match &result {
            Ok(done) => ("done", None, Some(done.account.account_id)),
            // A code amoCRM refused is never tried again: out of the queue,
            // its code erased; the row (its hash) stays so that a replay is
            // recognised, and counts against its host.
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
                 code = case when $2 = 'failed' then '\\x'::bytea else code end,
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

    /// Hands an install that got no turn back to the background retrier.
    async fn put_back(&self, install_id: i64) -> sqlx::Result<()> {
        sqlx::query!(
            "update pending_installs set locked_until = null, updated_at = now()
             where install_id = $1",
            install_id
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Seals an exchanged pair into the pending install, before any other
    /// call: the code cannot be exchanged twice.
    /// The code is spent once amoCRM answered: the pair is stored until it
    /// lands, whatever the database does at that moment
    /// (`db::until_stored`).
    async fn store_tokens(&self, install_id: i64, tokens: &TokenSet) -> sqlx::Result<()> {
        let expires_at = Utc::now()
            .timestamp()
            .saturating_add(i64::try_from(tokens.expires_in.as_secs()).unwrap_or(i64::MAX));
        let pair = serde_json::json!({
            "access_token": tokens.access_token.expose_secret(),
            "refresh_token": tokens.refresh_token.expose_secret(),
            "expires_at": expires_at,
        });
        let sealed = self
            .cipher
            .encrypt(&pair.to_string(), &tokens_context(install_id));
        crate::db::until_stored("widget_install_tokens", || async {
            sqlx::query!(
                // With its tokens the install no longer depends on the
                // code's 20 minutes: it is retried for a day.
                "update pending_installs set tokens = $2,
                     expires_at = greatest(expires_at, now() + interval '1 day')
                 where install_id = $1",
                install_id,
                &sealed,
            )
            .execute(&self.pool)
            .await
        })
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
            .decrypt(&sealed, &tokens_context(install_id))
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

    /// Retries the widget installs that are due: those whose exchange
    /// failed for a passing reason, and those that got no turn at the gate
    /// when they arrived. Each is claimed with a lease so that concurrent
    /// processes never spend one code twice. A round works for a few
    /// seconds at most. Returns how many completed.
    pub async fn retry_pending(&self) -> anyhow::Result<usize> {
        sqlx::query!(
            "update pending_installs set state = 'expired', tokens = null, updated_at = now()
             where state = 'pending' and expires_at <= now()"
        )
        .execute(&self.pool)
        .await?;
        let round_ends = tokio::time::Instant::now() + RETRY_ROUND;
        let mut completed = 0;
        while let Some((install_id, domain, code)) = self.claim_due().await? {
            let left = round_ends.saturating_duration_since(tokio::time::Instant::now());
            match self
                .attempt(install_id, &domain, &code, left.max(Duration::from_secs(1)))
                .await
            {
                Ok(_) => completed += 1,
                Err(InstallError::Busy) => break,
                Err(_) => {}
            }
            if tokio::time::Instant::now() >= round_ends {
                break;
            }
        }
        Ok(completed)
    }

    /// The next due install, leased. Hosts that left fewer codes lately go
    /// first (codes amoCRM refused count for nothing, see `hosts.rs`): a
    /// real install (one code) goes ahead of a host flooding codes.
    async fn claim_due(&self) -> anyhow::Result<Option<(i64, String, SecretString)>> {
        let row = sqlx::query!(
            "update pending_installs set locked_until = now() + interval '60 seconds'
             where install_id = (
                 select install_id from pending_installs p
                 where state = 'pending' and next_attempt_at <= now() and expires_at > now()
                   and (locked_until is null or locked_until < now())
                 order by (select count(*) from pending_installs o
                           where o.referer = p.referer and o.state <> 'failed'
                             and o.received_at > now() - make_interval(mins => $1)),
                          next_attempt_at
                 limit 1
                 for update of p skip locked)
             returning install_id, referer, code",
            hosts::WINDOW_MINUTES,
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let code = self
            .cipher
            .decrypt(&row.code, &code_context(&row.referer))?;
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

pub(crate) fn tokens_context(install_id: i64) -> String {
    format!("pending_install:{install_id}:tokens")
}

pub(crate) fn code_context(domain: &str) -> String {
    format!("pending_install:{domain}:code")
}
