//! The uninstall hook, believed only when amoCRM confirms it.
//!
//! The hook's signature is HMAC-SHA256 of `client_uuid|account_id`: no
//! time, no nonce, the same value forever, so anyone who once saw an
//! uninstall URL (a proxy's log) could replay it. amoCRM revokes an
//! account's tokens when the integration is removed, so a real uninstall
//! shows at once as a dead grant: the account's grant is checked with an
//! API call (on 401, one refresh), and only amoCRM refusing the grant
//! disconnects the account and erases its tokens. A live grant changes
//! nothing (logged, counted, shown on the account's page); when amoCRM
//! cannot be asked, or answers ambiguously, the check is repeated with
//! back-off and the tokens are kept meanwhile.
//!
//! Nothing is destroyed without that confirmation, whatever the account's
//! status: an account that must install again (its refresh token was
//! refused) cannot be asked, so a call for it is recorded and nothing else;
//! its events wait for a new install as before. And a call is checked at
//! most once in [`CHECK_EVERY`] per account: a replay within it only makes
//! sure a check is scheduled, so a flood of replays costs the account one
//! request of its budget in a few minutes.

use std::time::Duration;

use sqlx::PgPool;

use crate::{
    accounts::{self, AccountStatus},
    amocrm::{AmoApi, AmoError},
    backoff::Backoff,
    tokens::{CallError, TokenError, TokenStore},
};

/// At most one confirmation per account in this long.
pub const CHECK_EVERY: Duration = Duration::from_secs(5 * 60);

/// What an uninstall call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The grant is dead (or the account was not connected): disconnected.
    Disconnected { known: bool },
    /// amoCRM still accepts the grant: nothing changed.
    StillGranted,
    /// amoCRM could not be asked, answered ambiguously, or was asked a
    /// moment ago: checked again later, tokens kept.
    WillCheck,
    /// The account is not connected (it must install again): the call is
    /// recorded, nothing is changed.
    Recorded,
}

enum Grant {
    Alive,
    Dead,
    Unknown,
}

async fn grant(tokens: &TokenStore, api: &AmoApi, account_id: i64, domain: &str) -> Grant {
    match tokens
        .call(account_id, |token| async move {
            api.account(domain, &token).await
        })
        .await
    {
        Ok(_) => Grant::Alive,
        // amoCRM refused the refresh token just now: the grant is gone.
        Err(CallError::Token(TokenError::Revoked(_))) => Grant::Dead,
        // A 401 after a refresh that succeeded is not a dead grant (the
        // refresh proved it alive); nor is an account whose status changed
        // meanwhile. Asked again later.
        Err(CallError::Amo(AmoError::Unauthorized(_))) | Err(_) => Grant::Unknown,
    }
}

/// Handles a correctly signed uninstall call for `account_id`: checks it
/// with amoCRM unless it did so within [`CHECK_EVERY`], in which case a
/// check is scheduled for when that time is up.
pub async fn handle_call(
    pool: &PgPool,
    tokens: &TokenStore,
    api: &AmoApi,
    account_id: i64,
) -> sqlx::Result<Outcome> {
    let recently = sqlx::query_scalar!(
        "update accounts set
             uninstall_check_at = least(uninstall_check_at, uninstall_checked_at + $2::interval)
         where account_id = $1 and status = 'active'
           and uninstall_checked_at > now() - $2::interval
         returning account_id",
        account_id,
        // `as _`: an interval (see tokens/mod.rs).
        chrono::Duration::from_std(CHECK_EVERY).expect("small") as _,
    )
    .fetch_optional(pool)
    .await?;
    if recently.is_some() {
        // A check ran a moment ago: scheduled (above: no later than its
        // time is up; below: when none was due), not sent now.
        sqlx::query!(
            "update accounts set uninstall_check_at = uninstall_checked_at + $2::interval
             where account_id = $1 and uninstall_check_at is null",
            account_id,
            chrono::Duration::from_std(CHECK_EVERY).expect("small") as _,
        )
        .execute(pool)
        .await?;
        metrics::counter!("amohook_uninstall_calls_total", "result" => "deferred").increment(1);
        return Ok(Outcome::WillCheck);
    }
    handle(pool, tokens, api, account_id).await
}

/// Checks an uninstall of `account_id` with amoCRM now.
pub async fn handle(
    pool: &PgPool,
    tokens: &TokenStore,
    api: &AmoApi,
    account_id: i64,
) -> sqlx::Result<Outcome> {
    let account = accounts::find(&mut *pool.acquire().await?, account_id).await?;
    let Some(account) = account else {
        return Ok(Outcome::Disconnected { known: false });
    };
    match account.status {
        AccountStatus::Active => {}
        AccountStatus::Disconnected => return Ok(Outcome::Disconnected { known: true }),
        AccountStatus::ReauthRequired => {
            // Its grant cannot be asked about: nothing is erased or dropped
            // on an unconfirmed word.
            crate::stats::record(
                pool,
                account_id,
                0,
                Some("an uninstall call arrived while the account must install again: nothing was changed"),
            )
            .await?;
            settle(pool, account_id, Outcome::Recorded).await?;
            metrics::counter!("amohook_uninstall_calls_total", "result" => "recorded").increment(1);
            return Ok(Outcome::Recorded);
        }
    }
    sqlx::query!(
        "update accounts set uninstall_checked_at = now() where account_id = $1",
        account_id
    )
    .execute(pool)
    .await?;
    let outcome = match grant(tokens, api, account_id, &account.domain).await {
        Grant::Dead => {
            accounts::disconnect(pool, account_id).await?;
            Outcome::Disconnected { known: true }
        }
        Grant::Alive => {
            tracing::warn!(
                account.id = account_id,
                "uninstall call not confirmed: amoCRM still accepts the grant; nothing changed"
            );
            crate::stats::record(
                pool,
                account_id,
                0,
                Some("an uninstall call arrived, but amoCRM still accepts the grant: nothing was changed"),
            )
            .await?;
            Outcome::StillGranted
        }
        Grant::Unknown => Outcome::WillCheck,
    };
    settle(pool, account_id, outcome).await?;
    metrics::counter!("amohook_uninstall_calls_total", "result" => outcome.label()).increment(1);
    Ok(outcome)
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Disconnected { .. } => "disconnected",
            Outcome::StillGranted => "still_granted",
            Outcome::WillCheck => "will_check",
            Outcome::Recorded => "recorded",
        }
    }
}

/// Schedules the next check (with back-off) or clears it.
async fn settle(pool: &PgPool, account_id: i64, outcome: Outcome) -> sqlx::Result<()> {
    if outcome == Outcome::WillCheck {
        let checks = sqlx::query_scalar!(
            "select uninstall_checks from accounts where account_id = $1",
            account_id
        )
        .fetch_one(pool)
        .await?;
        let wait = Backoff::UNINSTALL_CHECK.delay(u32::try_from(checks).unwrap_or(0));
        sqlx::query!(
            "update accounts set uninstall_check_at = now() + make_interval(secs => $2),
                 uninstall_checks = uninstall_checks + 1
             where account_id = $1",
            account_id,
            wait.as_secs_f64(),
        )
        .execute(pool)
        .await?;
    } else {
        sqlx::query!(
            "update accounts set uninstall_check_at = null, uninstall_checks = 0
             where account_id = $1",
            account_id
        )
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Checks again the uninstall calls amoCRM could not confirm yet. Returns
/// how many were settled.
pub async fn check_due(pool: &PgPool, tokens: &TokenStore, api: &AmoApi) -> sqlx::Result<usize> {
    let due = sqlx::query_scalar!(
        "select account_id from accounts where uninstall_check_at <= now()
         order by uninstall_check_at limit 50"
    )
    .fetch_all(pool)
    .await?;
    let mut settled = 0;
    for account_id in due {
        if handle(pool, tokens, api, account_id).await? != Outcome::WillCheck {
            settled += 1;
        }
    }
    Ok(settled)
}
