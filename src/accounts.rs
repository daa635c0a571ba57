//! Connected amoCRM accounts: storage and status.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::{
    amocrm::{AccountInfo, TokenSet},
    crypto::{self, Cipher},
};

/// Where an account stands. Only `active` accounts get calls. Stored as
/// text; an unknown stored value is an error when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    /// The refresh token is dead (revoked, reused, expired): someone in the
    /// account has to install the integration again.
    ReauthRequired,
    /// The account uninstalled the integration; its tokens are erased.
    Disconnected,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::ReauthRequired => "reauth_required",
            AccountStatus::Disconnected => "disconnected",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Account {
    pub account_id: i64,
    pub domain: String,
    pub subdomain: String,
    pub name: String,
    pub timezone: Option<String>,
    pub status: AccountStatus,
    pub status_reason: Option<String>,
    pub webhooks_subscribed: bool,
    pub webhooks_error: Option<String>,
    pub installed_at: DateTime<Utc>,
    pub connected_at: DateTime<Utc>,
    pub disconnected_at: Option<DateTime<Utc>>,
}

pub fn hook_key_context(account_id: i64) -> String {
    format!("account:{account_id}:hook_key")
}

pub fn token_context(account_id: i64, column: &str) -> String {
    format!("account:{account_id}:{column}")
}

/// A checked query for the [`Account`] of `accounts` rows matching `$cond`
/// (the column list written once; sqlx takes literals joined with `+`).
macro_rules! select_account {
    ($cond:tt, $($arg:expr),*) => {
        sqlx::query_as!(
            Account,
            r#"select account_id, domain, subdomain, name, timezone, status as "status: AccountStatus",
                   status_reason, webhooks_subscribed, webhooks_error, installed_at, connected_at,
                   disconnected_at
               from accounts "# + $cond,
            $($arg),*
        )
    };
}

pub mod keys;

pub async fn find(db: &mut PgConnection, account_id: i64) -> sqlx::Result<Option<Account>> {
    select_account!("where account_id = $1", account_id)
        .fetch_optional(db)
        .await
}

/// The host of an account, if it is known.
pub async fn domain_of(db: &PgPool, account_id: i64) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        "select domain from accounts where account_id = $1",
        account_id
    )
    .fetch_optional(db)
    .await
}

/// The account's hook key, decrypted.
pub async fn hook_key(
    db: &PgPool,
    cipher: &Cipher,
    account_id: i64,
) -> anyhow::Result<SecretString> {
    let sealed = sqlx::query_scalar!(
        "select hook_key from accounts where account_id = $1",
        account_id
    )
    .fetch_one(db)
    .await?;
    Ok(cipher.decrypt(&sealed, &hook_key_context(account_id))?)
}

/// Inserts a newly installed account, or brings a known one back to
/// `active` (a reinstall): its history and its hook key stay, so hook URLs
/// that were added by hand keep working.
pub async fn upsert_installed(
    tx: &mut Transaction<'_, Postgres>,
    cipher: &Cipher,
    info: &AccountInfo,
    domain: &str,
    tokens: &TokenSet,
) -> anyhow::Result<Account> {
    let candidate_key = crypto::random_token(24);
    let subdomain = if info.subdomain.is_empty() {
        domain.split('.').next().unwrap_or_default()
    } else {
        &info.subdomain
    };
    let account = sqlx::query_as!(
        Account,
        r#"insert into accounts (account_id, domain, subdomain, name, timezone, hook_key_sha256, hook_key)
           values ($1, $2, $3, $4, $5, $6, $7)
           on conflict (account_id) do update set
               domain = excluded.domain,
               subdomain = excluded.subdomain,
               name = excluded.name,
               timezone = coalesce(excluded.timezone, accounts.timezone),
               status = 'active',
               status_reason = null,
               connected_at = now(),
               disconnected_at = null,
               updated_at = now()
           returning account_id, domain, subdomain, name, timezone,
               status as "status: AccountStatus", status_reason, webhooks_subscribed,
               webhooks_error, installed_at, connected_at, disconnected_at"#,
        info.id,
        domain,
        subdomain,
        &info.name,
        info.timezone(),
        crypto::sha256_hex(&candidate_key),
        cipher.encrypt(&candidate_key, &hook_key_context(info.id)),
    )
    .fetch_one(&mut **tx)
    .await?;
    store_tokens(tx, cipher, info.id, tokens).await?;
    Ok(account)
}

/// Writes a token pair, encrypted, replacing the previous one.
pub async fn store_tokens(
    db: &mut PgConnection,
    cipher: &Cipher,
    account_id: i64,
    tokens: &TokenSet,
) -> sqlx::Result<()> {
    let expires_in =
        chrono::Duration::from_std(tokens.expires_in).unwrap_or_else(|_| chrono::Duration::days(1));
    sqlx::query!(
        "insert into account_tokens (account_id, access_token, refresh_token, expires_at, refreshed_at)
         values ($1, $2, $3, now() + $4, now())
         on conflict (account_id) do update set
             access_token = excluded.access_token,
             refresh_token = excluded.refresh_token,
             expires_at = excluded.expires_at,
             refreshed_at = excluded.refreshed_at",
        account_id,
        cipher.encrypt(
            tokens.access_token.expose_secret(),
            &token_context(account_id, "access_token"),
        ),
        cipher.encrypt(
            tokens.refresh_token.expose_secret(),
            &token_context(account_id, "refresh_token"),
        ),
        // `as _`: an interval. chrono's Duration encodes as one, but the
        // macro's type check knows only PgInterval for it.
        expires_in as _,
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn set_webhooks_result(
    db: &PgPool,
    account_id: i64,
    error: Option<&str>,
) -> sqlx::Result<()> {
    // On success the account is subscribed to today's events; a refusal
    // leaves what it was subscribed to before.
    let events = webhook_events();
    sqlx::query!(
        "update accounts set webhooks_subscribed = $2, webhooks_error = $3,
             webhooks_events = case when $2 then $4 else webhooks_events end,
             webhook_state = case when $2 then 'subscribed' else 'refused' end,
             webhook_checked_at = now(), updated_at = now()
         where account_id = $1",
        account_id,
        error.is_none(),
        error,
        &events,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Sets the language of the account's notes; `None`: by its domain.
pub async fn set_note_lang(
    db: &PgPool,
    account_id: i64,
    lang: Option<crate::notes::Lang>,
) -> sqlx::Result<bool> {
    let updated = sqlx::query!(
        "update accounts set note_lang = $2, updated_at = now() where account_id = $1",
        account_id,
        lang.map(crate::notes::Lang::as_str),
    )
    .execute(db)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Today's web-hook events, as the `text[]` stored in `webhooks_events`.
fn webhook_events() -> Vec<String> {
    crate::amocrm::WEBHOOK_EVENTS
        .iter()
        .map(|e| (*e).to_owned())
        .collect()
}

/// Active accounts subscribed without some of today's web-hook events
/// (installed before companies were asked for), at most `limit`. One whose
/// new subscription is refused is left to its administrator (the account
/// page shows the reason and a button to try again).
pub async fn outdated_subscriptions(db: &PgPool, limit: i64) -> sqlx::Result<Vec<i64>> {
    let events = webhook_events();
    sqlx::query_scalar!(
        "select account_id from accounts
         where status = 'active' and webhooks_subscribed and not webhooks_events @> $1
         order by account_id limit $2",
        &events,
        limit,
    )
    .fetch_all(db)
    .await
}

/// Moves an account to the host amoCRM now names for it (a renamed
/// subdomain), in the refresh's transaction.
pub async fn move_host(
    tx: &mut Transaction<'_, Postgres>,
    account_id: i64,
    host: &str,
) -> sqlx::Result<()> {
    let subdomain = host.split('.').next().unwrap_or(host);
    sqlx::query!(
        "update accounts set domain = $2, subdomain = $3, updated_at = now() where account_id = $1",
        account_id,
        host,
        subdomain,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks an account as needing a new install; its tokens are kept.
pub async fn mark_reauth_required(
    tx: &mut Transaction<'_, Postgres>,
    account_id: i64,
    reason: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "update accounts set status = 'reauth_required', status_reason = $2, updated_at = now()
         where account_id = $1 and status = 'active'",
        account_id,
        reason,
    )
    .execute(&mut **tx)
    .await?;
    // The tokens stay (sealed) for diagnosis: nothing uses the tokens of an
    // account that is not active, and a new install replaces them.
    Ok(())
}

/// The uninstall hook: the account is disconnected and its tokens erased.
/// Returns false when the account is unknown.
pub async fn disconnect(pool: &PgPool, account_id: i64) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let updated = sqlx::query!(
        "update accounts set status = 'disconnected', status_reason = 'uninstalled in amoCRM',
             disconnected_at = coalesce(disconnected_at, now()), updated_at = now()
         where account_id = $1",
        account_id,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query!(
        "delete from account_tokens where account_id = $1",
        account_id
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(updated > 0)
}
