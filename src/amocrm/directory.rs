//! What an account calls things, cached in PostgreSQL: its users and
//! pipelines (so notes name the responsible user and the lead's stage), its
//! custom field definitions and its settings (so values read in the
//! account's words: dates in its format, choices by name, money in its
//! currency).
//!
//! Each part is refreshed when a note needs an id it does not know (at most
//! once a minute, so a deleted user does not cost a call per note) and after
//! a day in any case. amoCRM lists users to administrators only: when it
//! refuses, notes show the numeric id and the list is asked again a day
//! later.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::{
    amocrm::{hooks::EntityKind, AccountInfo, AmoApi, AmoError},
    tokens::{CallError, TokenStore},
};

const RETRY_UNKNOWN_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(1);
const MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::days(1);

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Pipeline {
    pub name: String,
    pub statuses: BTreeMap<i64, String>,
}

/// A custom field's definition.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FieldDef {
    pub name: String,
    /// amoCRM's field type: `text`, `date`, `select`, `multitext`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Choice id → its text (for phones and e-mails: `WORK`, `MOB`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub enums: BTreeMap<i64, String>,
    /// A monetary field's own currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// The account's settings that values are written with.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    pub currency: Option<String>,
    pub currency_symbol: Option<String>,
    pub short_date_pattern: Option<String>,
    pub short_time_pattern: Option<String>,
}

impl Settings {
    pub fn of(info: &AccountInfo) -> Settings {
        let (short_date_pattern, short_time_pattern) = info.date_patterns();
        let given = |v: &Option<String>| v.clone().filter(|c| !c.is_empty());
        Settings {
            currency: given(&info.currency),
            currency_symbol: given(&info.currency_symbol),
            short_date_pattern,
            short_time_pattern,
        }
    }
}

/// One entity's field definitions, by id, and when they were fetched.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KindFields {
    pub fetched_at: DateTime<Utc>,
    pub defs: BTreeMap<i64, FieldDef>,
}

/// Field definitions by entity (`leads`, `contacts`, `companies`).
pub type Fields = BTreeMap<String, KindFields>;

#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub users: BTreeMap<i64, String>,
    pub users_forbidden: bool,
    users_fetched_at: Option<DateTime<Utc>>,
    pub pipelines: BTreeMap<i64, Pipeline>,
    pipelines_fetched_at: Option<DateTime<Utc>>,
    pub fields: Fields,
    pub settings: Settings,
    settings_fetched_at: Option<DateTime<Utc>>,
}

impl Directory {
    pub fn field(&self, kind: EntityKind, id: i64) -> Option<&FieldDef> {
        self.fields.get(kind.plural())?.defs.get(&id)
    }

    pub fn user(&self, id: i64) -> Option<&str> {
        self.users.get(&id).map(String::as_str)
    }

    pub fn pipeline(&self, id: i64) -> Option<&str> {
        self.pipelines.get(&id).map(|p| p.name.as_str())
    }

    /// A status's name: within its pipeline, else any pipeline (the closing
    /// statuses 142 and 143 are shared by all).
    pub fn status(&self, pipeline_id: Option<i64>, status_id: i64) -> Option<&str> {
        pipeline_id
            .and_then(|p| self.pipelines.get(&p))
            .and_then(|p| p.statuses.get(&status_id))
            .or_else(|| {
                self.pipelines
                    .values()
                    .find_map(|p| p.statuses.get(&status_id))
            })
            .map(String::as_str)
    }
}

/// What the notes of a round will need to name.
#[derive(Debug, Default)]
pub struct Needs {
    pub users: HashSet<i64>,
    /// (pipeline, status) pairs; a pipeline alone is (pipeline, None).
    pub statuses: HashSet<(Option<i64>, Option<i64>)>,
    /// Custom fields whose values are shown: (entity, field id).
    pub fields: HashSet<(EntityKind, i64)>,
    /// Whether money or dates are shown (the account's currency and date
    /// format).
    pub settings: bool,
}

struct Row {
    users: sqlx::types::Json<BTreeMap<i64, String>>,
    users_fetched_at: Option<DateTime<Utc>>,
    users_forbidden: bool,
    pipelines: sqlx::types::Json<BTreeMap<i64, Pipeline>>,
    pipelines_fetched_at: Option<DateTime<Utc>>,
    fields: sqlx::types::Json<Fields>,
    settings: sqlx::types::Json<Settings>,
    settings_fetched_at: Option<DateTime<Utc>>,
}

pub async fn load(pool: &PgPool, account_id: i64) -> sqlx::Result<Directory> {
    let row = sqlx::query_as!(
        Row,
        r#"select users as "users: sqlx::types::Json<BTreeMap<i64, String>>", users_fetched_at,
                  users_forbidden,
                  pipelines as "pipelines: sqlx::types::Json<BTreeMap<i64, Pipeline>>",
                  pipelines_fetched_at,
                  fields as "fields: sqlx::types::Json<Fields>",
                  settings as "settings: sqlx::types::Json<Settings>",
                  settings_fetched_at
           from account_directory where account_id = $1"#,
        account_id
    )
    .fetch_optional(pool)
    .await?;
    Ok(row
        .map(|r| Directory {
            users: r.users.0,
            users_forbidden: r.users_forbidden,
            users_fetched_at: r.users_fetched_at,
            pipelines: r.pipelines.0,
            pipelines_fetched_at: r.pipelines_fetched_at,
            fields: r.fields.0,
            settings: r.settings.0,
            settings_fetched_at: r.settings_fetched_at,
        })
        .unwrap_or_default())
}

fn due(fetched_at: Option<DateTime<Utc>>, missing: bool, now: DateTime<Utc>) -> bool {
    match fetched_at {
        None => true,
        Some(at) => now - at > MAX_AGE || (missing && now - at > RETRY_UNKNOWN_AFTER),
    }
}

/// Fetches what `needs` names and the cache does not know (or all of it,
/// when old), and stores it. The parts due are asked of amoCRM at the same
/// time (each call takes its slot of the account's budget, so a first note
/// waits for one round trip, not one per part). A failure leaves its part
/// of the cache as it was; the first failure is returned once every part
/// has answered, and the delivery round then names ids and shows values as
/// they came (see `delivery::round`), unless the account cannot be called
/// at all.
pub async fn refresh_for(
    pool: &PgPool,
    api: &AmoApi,
    tokens: &TokenStore,
    account_id: i64,
    domain: &str,
    dir: &mut Directory,
    needs: &Needs,
) -> Result<(), CallError> {
    let now = Utc::now();
    let missing_user = needs.users.iter().any(|id| !dir.users.contains_key(id));
    let users_due = !needs.users.is_empty()
        && due(
            dir.users_fetched_at,
            missing_user && !dir.users_forbidden,
            now,
        );
    let missing_status = needs.statuses.iter().any(|(p, s)| match (p, s) {
        (Some(p), None) => dir.pipeline(*p).is_none(),
        (p, Some(s)) => dir.status(*p, *s).is_none(),
        (None, None) => false,
    });
    let pipelines_due =
        !needs.statuses.is_empty() && due(dir.pipelines_fetched_at, missing_status, now);
    // Field definitions, each entity's only when its fields are shown.
    let fields_due: Vec<EntityKind> = [EntityKind::Lead, EntityKind::Contact, EntityKind::Company]
        .into_iter()
        .filter(|kind| {
            let wanted: Vec<i64> = needs
                .fields
                .iter()
                .filter(|(k, _)| k == kind)
                .map(|(_, id)| *id)
                .collect();
            if wanted.is_empty() {
                return false;
            }
            let known = dir.fields.get(kind.plural());
            let missing = wanted
                .iter()
                .any(|id| known.is_none_or(|k| !k.defs.contains_key(id)));
            due(known.map(|k| k.fetched_at), missing, now)
        })
        .collect();
    // The account's currency and date format (also written at install).
    let settings_due = needs.settings && due(dir.settings_fetched_at, false, now);

    let (users, pipelines, fields, info) = tokio::join!(
        async {
            if users_due {
                Some(fetch::users(api, tokens, account_id, domain).await)
            } else {
                None
            }
        },
        async {
            if pipelines_due {
                Some(fetch::pipelines(api, tokens, account_id, domain).await)
            } else {
                None
            }
        },
        futures_util::future::join_all(fields_due.iter().map(|kind| async move {
            (
                *kind,
                fetch::fields(api, tokens, account_id, domain, *kind).await,
            )
        })),
        async {
            if settings_due {
                Some(
                    tokens
                        .call(account_id, |token| async move {
                            api.account(domain, &token).await
                        })
                        .await,
                )
            } else {
                None
            }
        },
    );

    let mut failed: Option<CallError> = None;
    let mut keep = |e: CallError| {
        failed.get_or_insert(e);
    };
    if let Some(users) = users {
        let answered = match users {
            Ok(users) => {
                dir.users = users;
                dir.users_forbidden = false;
                true
            }
            Err(CallError::Amo(AmoError::Refused { status: 403, .. })) => {
                dir.users_forbidden = true;
                true
            }
            Err(e) => {
                keep(e);
                false
            }
        };
        if answered {
            dir.users_fetched_at = Some(now);
            sqlx::query!(
                "insert into account_directory (account_id, users, users_fetched_at, users_forbidden)
                 values ($1, $2, $3, $4)
                 on conflict (account_id) do update set users = excluded.users,
                     users_fetched_at = excluded.users_fetched_at, users_forbidden = excluded.users_forbidden",
                account_id,
                // `as _`: jsonb from `Json`; the macro's type check names only
                // `JsonValue`.
                sqlx::types::Json(&dir.users) as _,
                now,
                dir.users_forbidden,
            )
            .execute(pool)
            .await?;
        }
    }
    match pipelines {
        Some(Ok(pipelines)) => {
            dir.pipelines = pipelines;
            dir.pipelines_fetched_at = Some(now);
            sqlx::query!(
                "insert into account_directory (account_id, pipelines, pipelines_fetched_at)
                 values ($1, $2, $3)
                 on conflict (account_id) do update set pipelines = excluded.pipelines,
                     pipelines_fetched_at = excluded.pipelines_fetched_at",
                account_id,
                sqlx::types::Json(&dir.pipelines) as _,
                now,
            )
            .execute(pool)
            .await?;
        }
        Some(Err(e)) => keep(e),
        None => {}
    }
    for (kind, defs) in fields {
        let defs = match defs {
            Ok(defs) => defs,
            Err(e) => {
                keep(e);
                continue;
            }
        };
        let fetched = KindFields {
            fetched_at: now,
            defs,
        };
        sqlx::query!(
            "insert into account_directory (account_id, fields)
             values ($1, jsonb_build_object($2::text, $3::jsonb))
             on conflict (account_id) do update
             set fields = account_directory.fields || excluded.fields",
            account_id,
            kind.plural(),
            sqlx::types::Json(&fetched) as _,
        )
        .execute(pool)
        .await?;
        dir.fields.insert(kind.plural().to_owned(), fetched);
    }
    match info {
        Some(Ok(info)) => {
            dir.settings = Settings::of(&info);
            dir.settings_fetched_at = Some(now);
            store_settings(pool, account_id, &dir.settings).await?;
        }
        Some(Err(e)) => keep(e),
        None => {}
    }
    failed.map_or(Ok(()), Err)
}

/// Records the account's settings as `GET /api/v4/account` gave them.
pub async fn store_settings<'e>(
    db: impl sqlx::PgExecutor<'e>,
    account_id: i64,
    settings: &Settings,
) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into account_directory (account_id, settings, settings_fetched_at)
         values ($1, $2, now())
         on conflict (account_id) do update
         set settings = excluded.settings, settings_fetched_at = excluded.settings_fetched_at",
        account_id,
        sqlx::types::Json(settings) as _,
    )
    .execute(db)
    .await?;
    Ok(())
}

mod fetch;
