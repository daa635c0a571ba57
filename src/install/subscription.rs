//! An account's web-hook subscription: made so that it is sure to hold,
//! and read back from amoCRM, since amoCRM switches a hook off after more
//! than 100 failed answers in 2 hours, or on an IP block (Kommo's
//! webhooks-general page; ../shared/reference/amocrm-api.md §0b), and then
//! sends nothing until the hook is saved again: without a look, such an
//! account would seem healthy while its notes had stopped for good.

use std::time::Duration;

use futures_util::StreamExt as _;
use secrecy::{ExposeSecret, SecretString};

use super::Installer;
use crate::{
    accounts,
    amocrm::{AmoApi, AmoError, WEBHOOK_EVENTS},
    tokens::{CallError, TokenStore},
};

/// Each active account's subscription is read back this often. A little
/// under the hour, so that a hook switched off shows within an hour.
pub const CHECK_EVERY: Duration = Duration::from_secs(55 * 60);
/// Accounts checked at once by one process.
const CHECKS_AT_ONCE: usize = 8;

/// Where an account's subscription stands (`accounts.webhook_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookState {
    /// amoCRM has the hook's URL, switched on.
    Subscribed,
    /// amoCRM has it, switched off.
    SwitchedOff,
    /// amoCRM has no hook with the account's URL.
    Missing,
    /// amoCRM refused to subscribe it (asked again at each check).
    Refused,
}

impl HookState {
    pub fn as_str(self) -> &'static str {
        match self {
            HookState::Subscribed => "subscribed",
            HookState::SwitchedOff => "switched_off",
            HookState::Missing => "missing",
            HookState::Refused => "refused",
        }
    }

    /// What the account's page says, and what a refused subscription would.
    fn error(self) -> Option<&'static str> {
        match self {
            HookState::Subscribed | HookState::Refused => None,
            HookState::SwitchedOff => Some(
                "amoCRM switched this hook off (after many failed answers, or an IP block) and \
                 sends nothing to it: subscribe it again",
            ),
            HookState::Missing => {
                Some("amoCRM has no hook for this account's URL (deleted?): subscribe it again")
            }
        }
    }
}

/// Subscribes `destination` to `WEBHOOK_EVENTS` so that it is sure to hold:
/// reads what amoCRM has for it, deletes it when there is one (a 404 is
/// done), creates it, and reads again to confirm it is there and switched
/// on. No official text says that a second POST for a destination replaces
/// its settings or switches it back on, so nothing relies on it.
pub(crate) async fn subscribe(
    api: &AmoApi,
    domain: &str,
    token: &SecretString,
    destination: &str,
) -> Result<(), AmoError> {
    if !api.webhooks(domain, token, destination).await?.is_empty() {
        match api.unsubscribe_webhook(domain, token, destination).await {
            Ok(()) | Err(AmoError::Refused { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
    }
    api.subscribe_webhooks(domain, token, destination, WEBHOOK_EVENTS)
        .await?;
    let now = api.webhooks(domain, token, destination).await?;
    if now.iter().any(|hook| {
        !hook.disabled
            && WEBHOOK_EVENTS
                .iter()
                .all(|e| hook.settings.iter().any(|s| s == e))
    }) {
        Ok(())
    } else {
        Err(AmoError::Unexpected(
            "amoCRM answered the subscription, but does not list it switched on".into(),
        ))
    }
}

/// amoCRM's refusal of a subscription, in words for the account's page.
pub(super) fn error_text(e: &AmoError) -> String {
    match e {
        AmoError::Refused { status: 403, .. } => {
            "amoCRM refused to subscribe the web-hooks (403): the installing user is not an \
             administrator of the account"
                .into()
        }
        // 402 Payment Required: the account's paid period lapsed (reads
        // still work); a plan without API web-hooks may answer so too.
        AmoError::Refused { status: 402, .. } => {
            "amoCRM refused to subscribe the web-hooks (402): the account's paid period has \
             lapsed, or its plan does not allow web-hooks through the API; amohook tries again \
             every hour"
                .into()
        }
        other => format!("amoCRM did not subscribe the web-hooks: {other}"),
    }
}

impl Installer {
    /// Subscribes the account's web-hooks again (after an administrator
    /// fixed rights or the plan, or amoCRM switched the hook off) and
    /// records the outcome. Returns amoCRM's refusal in words, or None when
    /// subscribed.
    pub async fn resubscribe(
        &self,
        tokens: &TokenStore,
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
                async move { subscribe(api, domain, &token, destination).await }
            })
            .await;
        let error = match result {
            Ok(()) => None,
            Err(CallError::Amo(e)) => Some(error_text(&e)),
            Err(e) => Some(format!("the account cannot be called: {e}")),
        };
        accounts::set_webhooks_result(&self.pool, account_id, error.as_deref()).await?;
        Ok(error)
    }

    /// Reads the account's subscription back from amoCRM and records what
    /// it found.
    pub async fn check_hook(
        &self,
        tokens: &TokenStore,
        account_id: i64,
    ) -> Result<HookState, CallError> {
        let domain = accounts::domain_of(&self.pool, account_id)
            .await?
            .unwrap_or_default();
        let hook_url = self
            .hook_url(account_id)
            .await
            .map_err(|e| CallError::Amo(AmoError::Unexpected(e.to_string())))?;
        let found = tokens
            .call(account_id, |token| {
                let (api, destination, domain) = (&self.api, hook_url.expose_secret(), &domain);
                async move { api.webhooks(domain, &token, destination).await }
            })
            .await;
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                metrics::counter!("amohook_hook_checks_total", "result" => "failed").increment(1);
                return Err(e);
            }
        };
        // A subscription amoCRM refused (a lapsed paid period, rights) is
        // asked for again at each check until it holds or is made by hand.
        let refused_before = sqlx::query_scalar!(
            "select webhook_state = 'refused' from accounts where account_id = $1",
            account_id
        )
        .fetch_one(&self.pool)
        .await?
        .unwrap_or(false);
        if found.is_empty() && refused_before {
            let subscribed = self
                .resubscribe(tokens, account_id)
                .await
                .map_err(|e| CallError::Amo(AmoError::Unexpected(e.to_string())))?
                .is_none();
            let result = if subscribed {
                "resubscribed"
            } else {
                "still_refused"
            };
            metrics::counter!("amohook_hook_checks_total", "result" => result).increment(1);
            return Ok(if subscribed {
                HookState::Subscribed
            } else {
                HookState::Refused
            });
        }
        let state = if found.iter().any(|h| !h.disabled) {
            HookState::Subscribed
        } else if found.is_empty() {
            HookState::Missing
        } else {
            HookState::SwitchedOff
        };
        // What amoCRM lists is what the account is subscribed to: an
        // outdated event list is then subscribed again by the maintenance.
        let events: Vec<String> = found
            .iter()
            .filter(|h| !h.disabled)
            .flat_map(|h| h.settings.iter().cloned())
            .collect();
        sqlx::query!(
            "update accounts set webhook_state = $2, webhook_checked_at = now(),
                 webhooks_subscribed = $3, webhooks_error = $4,
                 webhooks_events = case when $3 then $5 else webhooks_events end
             where account_id = $1",
            account_id,
            state.as_str(),
            state == HookState::Subscribed,
            state.error(),
            &events,
        )
        .execute(&self.pool)
        .await?;
        metrics::counter!("amohook_hook_checks_total", "result" => state.as_str()).increment(1);
        if state != HookState::Subscribed {
            tracing::warn!(
                account.id = account_id,
                state = state.as_str(),
                "the account's web-hook is not on in amoCRM"
            );
        }
        Ok(state)
    }

    /// Checks the subscriptions of up to `limit` active accounts not read
    /// back for [`CHECK_EVERY`], [`CHECKS_AT_ONCE`] at a time; each is
    /// claimed first (its check time set), so processes share the work.
    /// Returns how many were checked.
    pub async fn check_hooks_due(&self, tokens: &TokenStore, limit: i64) -> sqlx::Result<usize> {
        let due = sqlx::query_scalar!(
            "update accounts set webhook_checked_at = now()
             where account_id in (
                 select account_id from accounts
                 where status = 'active'
                   and (webhook_checked_at is null or webhook_checked_at < now() - $1::interval)
                 order by webhook_checked_at nulls first
                 limit $2
                 for update skip locked)
             returning account_id",
            // `as _`: an interval (see tokens/mod.rs).
            chrono::Duration::from_std(CHECK_EVERY).expect("small") as _,
            limit,
        )
        .fetch_all(&self.pool)
        .await?;
        let checked = due.len();
        futures_util::stream::iter(due)
            .for_each_concurrent(CHECKS_AT_ONCE, |account_id| async move {
                if let Err(e) = self.check_hook(tokens, account_id).await {
                    tracing::warn!(account.id = account_id, error = %e, "reading the web-hook back failed");
                }
            })
            .await;
        Ok(checked)
    }
}
