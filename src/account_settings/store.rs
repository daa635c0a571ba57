//! Settings in PostgreSQL: each save a new version, the account's row
//! naming the latest (and serializing saves).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{types::Json, PgPool};

use super::{Invalid, NoteSettings};

/// One saved version.
#[derive(Debug, Clone, Serialize)]
pub struct Version {
    pub version: i32,
    pub saved_at: Option<DateTime<Utc>>,
    pub saved_by: String,
    pub settings: NoteSettings,
    /// The installing user's language (`accounts.note_lang`): the notes'
    /// language while the settings name none.
    #[serde(skip)]
    pub installer_lang: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// Someone saved since the form was opened.
    #[error("the settings were changed meanwhile (now version {0}): reload and try again")]
    Conflict(i32),
    #[error("no such account")]
    NoAccount,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The account's latest settings (version 0: the defaults); None for an
/// unknown account.
pub async fn current(pool: &PgPool, account_id: i64) -> sqlx::Result<Option<Version>> {
    let row = sqlx::query!(
        r#"select a.settings_version, a.note_lang, s.settings as "settings?: Json<NoteSettings>",
                  s.saved_at as "saved_at?", s.saved_by as "saved_by?"
           from accounts a
           left join account_settings s
             on s.account_id = a.account_id and s.version = a.settings_version
           where a.account_id = $1"#,
        account_id,
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| Version {
        version: r.settings_version,
        saved_at: r.saved_at,
        saved_by: r.saved_by.unwrap_or_default(),
        settings: r.settings.map(|s| s.0).unwrap_or_default(),
        installer_lang: r.note_lang,
    }))
}

/// Saves `settings` as the account's next version, when the latest is
/// still `expected` (a form's or a client's; None: whatever it is).
pub async fn save(
    pool: &PgPool,
    account_id: i64,
    settings: NoteSettings,
    saved_by: &str,
    expected: Option<i32>,
) -> Result<i32, SaveError> {
    let settings = settings.checked()?;
    let mut tx = pool.begin().await?;
    let latest = sqlx::query_scalar!(
        "select settings_version from accounts where account_id = $1 for update",
        account_id,
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(SaveError::NoAccount)?;
    if expected.is_some_and(|e| e != latest) {
        return Err(SaveError::Conflict(latest));
    }
    let version = latest + 1;
    sqlx::query!(
        "insert into account_settings (account_id, version, settings, saved_by)
         values ($1, $2, $3, $4)",
        account_id,
        version,
        Json(&settings) as _,
        saved_by,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "update accounts set settings_version = $2, updated_at = now() where account_id = $1",
        account_id,
        version,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(version)
}

/// The versions an account's events stored since `since` follow: the one
/// in force then, and every later one.
#[derive(Debug, Default)]
pub struct InForce {
    /// Oldest first.
    versions: Vec<(DateTime<Utc>, NoteSettings)>,
    defaults: NoteSettings,
}

impl InForce {
    pub async fn load(
        pool: &PgPool,
        account_id: i64,
        since: DateTime<Utc>,
    ) -> sqlx::Result<InForce> {
        let rows = sqlx::query!(
            r#"select saved_at, settings as "settings: Json<NoteSettings>"
               from account_settings
               where account_id = $1
                 and version >= coalesce((select max(version) from account_settings
                                          where account_id = $1 and saved_at <= $2), 1)
               order by version"#,
            account_id,
            since,
        )
        .fetch_all(pool)
        .await?;
        Ok(InForce {
            versions: rows
                .into_iter()
                .map(|r| (r.saved_at, r.settings.0))
                .collect(),
            defaults: NoteSettings::default(),
        })
    }

    /// Whether a template in force names who made a change (`{author}`):
    /// then the round's notes need those users' names too.
    pub fn names_authors(&self) -> bool {
        self.versions.iter().any(|(_, s)| {
            [&s.added_template, &s.changed_template]
                .into_iter()
                .flatten()
                .any(|t| t.contains("{author}"))
        })
    }

    /// The settings of an event stored at `received_at`.
    pub fn at(&self, received_at: DateTime<Utc>) -> &NoteSettings {
        self.versions
            .iter()
            .rev()
            .find(|(saved_at, _)| *saved_at <= received_at)
            .map(|(_, s)| s)
            .unwrap_or(&self.defaults)
    }
}

/// How many of the account's kept events each filter skipped (every
/// filter named, 0 included). Events are kept for `retention.days`.
pub async fn filtered_counts(
    pool: &PgPool,
    account_id: i64,
) -> sqlx::Result<std::collections::BTreeMap<&'static str, i64>> {
    let rows = sqlx::query!(
        r#"select last_error as "reason!", count(*) as "count!"
           from hook_events
           where account_id = $1 and state = 'skipped' and last_error like 'filtered:%'
           group by last_error"#,
        account_id,
    )
    .fetch_all(pool)
    .await?;
    Ok(super::Filtered::ALL
        .iter()
        .map(|f| {
            let n = rows
                .iter()
                .filter(|r| r.reason == f.reason())
                .map(|r| r.count)
                .sum();
            (f.label(), n)
        })
        .collect())
}
