//! The accounts table of the status page and the admin API: its filters,
//! sorts and pages, one SQL text for its rows, and the totals above it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AssertSqlSafe, PgPool};

use crate::platform::Platform;

/// A status filter of the accounts table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusFilter {
    Active,
    ReauthRequired,
    Disconnected,
    Paused,
}

impl StatusFilter {
    pub const ALL: [StatusFilter; 4] = [
        StatusFilter::Active,
        StatusFilter::Paused,
        StatusFilter::ReauthRequired,
        StatusFilter::Disconnected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StatusFilter::Active => "active",
            StatusFilter::ReauthRequired => "reauth_required",
            StatusFilter::Disconnected => "disconnected",
            StatusFilter::Paused => "paused",
        }
    }

    fn condition(self) -> &'static str {
        match self {
            StatusFilter::Active => "a.status = 'active' and not a.manual_pause and (a.paused_until is null or a.paused_until <= now())",
            StatusFilter::Paused => "a.status = 'active' and (a.manual_pause or a.paused_until > now())",
            StatusFilter::ReauthRequired => "a.status = 'reauth_required'",
            StatusFilter::Disconnected => "a.status = 'disconnected'",
        }
    }
}

/// The platform filter's condition (see `platform.rs`: Kommo's hosts are
/// under kommo.com and amocrm.com).
fn platform_condition(platform: Platform) -> &'static str {
    match platform {
        Platform::Kommo => "(a.domain like '%.kommo.com' or a.domain like '%.amocrm.com')",
        Platform::Amocrm => "not (a.domain like '%.kommo.com' or a.domain like '%.amocrm.com')",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SQL names every parent domain `Platform::of_host` counts as
    /// Kommo's: the filter and the column say what the code says.
    #[test]
    fn the_platform_sql_names_every_kommo_domain() {
        for domain in crate::platform::KOMMO_DOMAINS {
            let like = format!("a.domain like '%.{domain}'");
            assert!(
                platform_condition(Platform::Kommo).contains(&like),
                "{domain}"
            );
            assert!(
                platform_condition(Platform::Amocrm).contains(&like),
                "{domain}"
            );
            assert!(ROW_SQL.contains(&like), "{domain}");
        }
    }
}

/// Columns the table sorts by: the name in links, the column in a row.
pub const SORTS: &[(&str, &str)] = &[
    ("domain", "domain"),
    ("account_id", "account_id"),
    ("status", "display_status"),
    ("connected_at", "connected_at"),
    ("token_expires", "token_expires_at"),
    ("hooks_24h", "hooks_24h"),
    ("hooks_total", "hooks_total"),
    ("delivered", "delivered"),
    ("pending", "pending"),
    ("failed", "failed"),
    ("last_hook_at", "last_hook_at"),
];

pub const PAGE_SIZE: i64 = 50;

#[derive(Debug, Clone)]
pub struct ListQuery {
    pub status: Option<StatusFilter>,
    pub platform: Option<Platform>,
    pub sort: &'static str,
    pub descending: bool,
    pub page: i64,
}

impl ListQuery {
    /// Reads the query string's words, falling back to defaults for
    /// anything unknown (a bad link shows the first page, not an error).
    pub fn parse(
        status: Option<&str>,
        platform: Option<&str>,
        sort: Option<&str>,
        dir: Option<&str>,
        page: Option<&str>,
    ) -> ListQuery {
        ListQuery {
            status: status.and_then(|s| StatusFilter::ALL.into_iter().find(|f| f.as_str() == s)),
            platform: platform.and_then(Platform::parse),
            sort: sort
                .and_then(|s| SORTS.iter().find(|(name, _)| *name == s))
                .map(|(name, _)| *name)
                .unwrap_or("domain"),
            descending: dir == Some("desc"),
            page: page
                .and_then(|p| p.parse().ok())
                .filter(|p| *p >= 1)
                .unwrap_or(1)
                .min(100_000),
        }
    }
}

/// One row of the accounts table.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AccountRow {
    pub account_id: i64,
    pub domain: String,
    /// `amocrm` or `kommo`, by the host (see `platform.rs`).
    pub platform: String,
    pub name: String,
    /// active, paused, reauth_required or disconnected.
    pub display_status: String,
    pub status_reason: Option<String>,
    pub pause_reason: Option<String>,
    pub paused_until: Option<DateTime<Utc>>,
    pub manual_pause: bool,
    pub webhooks_subscribed: bool,
    pub webhooks_error: Option<String>,
    /// What amoCRM said when last asked: subscribed, switched_off, missing
    /// or refused (see `install::subscription`).
    pub webhook_state: Option<String>,
    pub webhook_checked_at: Option<DateTime<Utc>>,
    /// The notes' language: ru, en, es, pt (the account's settings, else
    /// the installer's); null: by the domain.
    pub note_lang: Option<String>,
    pub timezone: Option<String>,
    pub connected_at: DateTime<Utc>,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub hooks_24h: i64,
    pub hooks_total: i64,
    pub delivered: i64,
    pub pending: i64,
    pub failed: i64,
    pub last_hook_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

/// Hands the SQL of the accounts table's rows to a macro, so that the text is
/// written once: `with_row_sql!(m!(before) (after))` is
/// `m!(before "select ..." after)`. The checked queries below splice it into
/// their literal text (sqlx's macros take literals joined with `+`), and
/// [`ROW_SQL`] is the same text for the query that must be built at run time.
macro_rules! with_row_sql {
    ($($m:ident)::+ ! ($($before:tt)*) ($($after:tt)*)) => {
        $($m)::+!($($before)* "
    select a.account_id, a.domain,
           case when a.domain like '%.kommo.com' or a.domain like '%.amocrm.com' then 'kommo'
                else 'amocrm' end as platform,
           a.name,
           case when a.status = 'active' and (a.manual_pause or a.paused_until > now()) then 'paused'
                else a.status end as display_status,
           a.status_reason, a.pause_reason, a.paused_until, a.manual_pause,
           a.webhooks_subscribed, a.webhooks_error, a.webhook_state, a.webhook_checked_at,
           coalesce((select st.settings->>'lang' from account_settings st
                     where st.account_id = a.account_id and st.version = a.settings_version),
                    a.note_lang) as note_lang,
           a.timezone, a.connected_at,
           t.expires_at as token_expires_at,
           coalesce(h.hooks_24h, 0)::bigint as hooks_24h,
           coalesce(s.hooks_received, 0) as hooks_total,
           coalesce(s.notes_delivered, 0) as delivered,
           coalesce(p.pending, 0)::bigint as pending,
           coalesce(f.failed, 0)::bigint as failed,
           s.last_hook_at, s.last_error, s.last_error_at
    from accounts a
    left join account_tokens t using (account_id)
    left join account_stats s using (account_id)
    left join (select account_id, sum(received) as hooks_24h from hook_hourly
               where hour > now() - interval '24 hours' group by account_id) h using (account_id)
    left join (select account_id, count(*) as pending from hook_events
               where state in ('pending', 'sending') group by account_id) p using (account_id)
    left join (select account_id, count(*) as failed from hook_events
               where state = 'failed' group by account_id) f using (account_id)" $($after)*)
    };
}

const ROW_SQL: &str = with_row_sql!(concat!()());

/// A page of accounts and how many match in all.
pub async fn list(pool: &PgPool, q: &ListQuery) -> sqlx::Result<(Vec<AccountRow>, i64)> {
    let conditions: Vec<&str> = q
        .status
        .map(StatusFilter::condition)
        .into_iter()
        .chain(q.platform.map(platform_condition))
        .collect();
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("where {}", conditions.join(" and "))
    };
    let column = SORTS
        .iter()
        .find(|(name, _)| *name == q.sort)
        .map(|(_, column)| *column)
        .unwrap_or("domain");
    let dir = if q.descending {
        "desc nulls last"
    } else {
        "asc nulls first"
    };
    // Built at run time: the filters, sort column and direction are picked
    // by the page's links (five status filters, three platform filters,
    // eleven columns, two directions). They
    // come from the fixed lists above, never from input.
    let sql = format!(
        "select * from ({ROW_SQL} {filter}) rows order by {column} {dir}, account_id limit $1 offset $2"
    );
    let rows = sqlx::query_as(AssertSqlSafe(sql))
        .bind(PAGE_SIZE)
        .bind((q.page - 1) * PAGE_SIZE)
        .fetch_all(pool)
        .await?;
    // Built at run time: it counts with the rows' own filter text.
    let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "select count(*) from accounts a {filter}"
    )))
    .fetch_one(pool)
    .await?;
    Ok((rows, total))
}

pub async fn one(pool: &PgPool, account_id: i64) -> sqlx::Result<Option<AccountRow>> {
    with_row_sql!(sqlx::query_as!(
        AccountRow,
        // The computed columns are never null (coalesce, case), which
        // PostgreSQL does not tell: they are marked with `!`.
        r#"select account_id, domain, platform as "platform!", name,
                  display_status as "display_status!",
                  status_reason, pause_reason, paused_until, manual_pause,
                  webhooks_subscribed, webhooks_error, webhook_state, webhook_checked_at,
                  note_lang, timezone, connected_at, token_expires_at, hooks_24h as "hooks_24h!", hooks_total as "hooks_total!",
                  delivered as "delivered!", pending as "pending!", failed as "failed!",
                  last_hook_at, last_error, last_error_at
           from ("# +
    ) (+ ") rows where account_id = $1", account_id))
    .fetch_optional(pool)
    .await
}

/// Figures over all accounts, for the top of the page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub accounts: i64,
    pub active: i64,
    pub paused: i64,
    pub reauth_required: i64,
    pub disconnected: i64,
    pub hooks_24h: i64,
    pub delivered: i64,
    pub pending: i64,
    pub failed: i64,
    /// Accounts on Kommo's hosts (kommo.com, amocrm.com); the rest are on
    /// amoCRM's.
    pub kommo: i64,
}

pub async fn totals(pool: &PgPool) -> sqlx::Result<Totals> {
    with_row_sql!(sqlx::query_as!(
        Totals,
        r#"select count(*) as "accounts!",
                  count(*) filter (where display_status = 'active') as "active!",
                  count(*) filter (where display_status = 'paused') as "paused!",
                  count(*) filter (where display_status = 'reauth_required') as "reauth_required!",
                  count(*) filter (where display_status = 'disconnected') as "disconnected!",
                  coalesce(sum(hooks_24h), 0)::bigint as "hooks_24h!",
                  coalesce(sum(delivered), 0)::bigint as "delivered!",
                  coalesce(sum(pending), 0)::bigint as "pending!",
                  coalesce(sum(failed), 0)::bigint as "failed!",
                  count(*) filter (where platform = 'kommo') as "kommo!"
           from ("# +
    ) (+ ") rows"))
    .fetch_one(pool)
    .await
}
