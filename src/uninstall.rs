//! The uninstall hook, believed only when amoCRM confirms it.
//!
//! The hook's signature is HMAC-SHA256 of `client_uuid|account_id`: no
//! time, no nonce, the same value forever, so anyone who once saw an
//! uninstall URL (a proxy's log) could replay it. amoCRM revokes an
//! account's tokens when the integration is removed, so a real uninstall
//! shows at once as a dead grant: the account's grant is checked with an
//! API call (on 401, one refresh), and only a dead grant disconnects the
//! account and erases its tokens. A live grant changes nothing (logged,
//! counted, shown on the account's page); when amoCRM cannot be asked, the
//! check is repeated with back-off and the tokens are kept meanwhile.

use sqlx::PgPool;

use crate::{
    accounts::{self, AccountStatus},
    amocrm::{AmoApi, AmoError},
    backoff::Backoff,
    tokens::{CallError, TokenError, TokenStore},
};

/// What an uninstall call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The grant is dead (or the account was not connected): disconnected.
    Disconnected { known: bool },
    /// amoCRM still accepts the grant: nothing changed.
    StillGranted,
    /// amoCRM could not be asked: checked again later, tokens kept.
    WillCheck,
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
        Err(CallError::Token(TokenError::Revoked(_) | TokenError::NotActive(_)))
        | Err(CallError::Amo(AmoError::Unauthorized(_))) => Grant::Dead,
        Err(_) => Grant::Unknown,
    }
}

/// Handles a correctly signed uninstall call for `account_id`.
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
    if account.status != AccountStatus::Active {
        accounts::disconnect(pool, account_id).await?;
        return Ok(Outcome::Disconnected { known: true });
    }
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
