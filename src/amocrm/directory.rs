//! An account's users and pipelines, cached in PostgreSQL, so notes can name
//! the responsible user and the lead's stage.
//!
//! The cache is refreshed when a note needs an id it does not know (at most
//! once a minute, so a deleted user does not cost a call per note) and after
//! a day in any case. amoCRM lists users to administrators only: when it
//! refuses, notes show the numeric id and the list is asked again a day
//! later.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::{
    amocrm::{AmoApi, AmoError},
    tokens::{CallError, TokenStore},
};

const RETRY_UNKNOWN_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(1);
const MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::days(1);

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Pipeline {
    pub name: String,
    pub statuses: BTreeMap<i64, String>,
}

#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub users: BTreeMap<i64, String>,
    pub users_forbidden: bool,
    users_fetched_at: Option<DateTime<Utc>>,
    pub pipelines: BTreeMap<i64, Pipeline>,
    pipelines_fetched_at: Option<DateTime<Utc>>,
}

impl Directory {
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
}

struct Row {
    users: sqlx::types::Json<BTreeMap<i64, String>>,
    users_fetched_at: Option<DateTime<Utc>>,
    users_forbidden: bool,
    pipelines: sqlx::types::Json<BTreeMap<i64, Pipeline>>,
    pipelines_fetched_at: Option<DateTime<Utc>>,
}

pub async fn load(pool: &PgPool, account_id: i64) -> sqlx::Result<Directory> {
    let row = sqlx::query_as!(
        Row,
        r#"select users as "users: sqlx::types::Json<BTreeMap<i64, String>>", users_fetched_at,
                  users_forbidden,
                  pipelines as "pipelines: sqlx::types::Json<BTreeMap<i64, Pipeline>>",
                  pipelines_fetched_at
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
/// when old), and stores it. A failure leaves the cache as it was and is
/// returned; the delivery round then names ids instead (see
/// `delivery::round`), unless the account cannot be called at all.
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
    if users_due {
        match fetch_users(api, tokens, account_id, domain).await {
            Ok(users) => {
                dir.users = users;
                dir.users_forbidden = false;
            }
            Err(CallError::Amo(AmoError::Refused { status: 403, .. })) => {
                dir.users_forbidden = true;
            }
            Err(e) => return Err(e),
        }
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

    let missing_status = needs.statuses.iter().any(|(p, s)| match (p, s) {
        (Some(p), None) => dir.pipeline(*p).is_none(),
        (p, Some(s)) => dir.status(*p, *s).is_none(),
        (None, None) => false,
    });
    if !needs.statuses.is_empty() && due(dir.pipelines_fetched_at, missing_status, now) {
        dir.pipelines = fetch_pipelines(api, tokens, account_id, domain).await?;
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
    Ok(())
}

#[derive(Deserialize)]
struct Named {
    id: i64,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize, Default)]
struct UsersPage {
    #[serde(default, rename = "_embedded")]
    embedded: UsersEmbedded,
}

#[derive(Deserialize, Default)]
struct UsersEmbedded {
    #[serde(default)]
    users: Vec<Named>,
}

async fn fetch_users(
    api: &AmoApi,
    tokens: &TokenStore,
    account_id: i64,
    domain: &str,
) -> Result<BTreeMap<i64, String>, CallError> {
    const PAGE: usize = 250;
    let mut users = BTreeMap::new();
    // 20 pages of 250: more users than any amoCRM account has.
    for page in 1..=20 {
        let path = format!("/api/v4/users?limit={PAGE}&page={page}");
        let batch: Option<UsersPage> = tokens
            .call(account_id, |token| {
                let path = path.clone();
                async move {
                    api.call(domain, &token, Method::GET, &path, None::<&()>)
                        .await
                }
            })
            .await?;
        let list = batch.unwrap_or_default().embedded.users;
        let last = list.len() < PAGE;
        users.extend(list.into_iter().map(|u| (u.id, u.name)));
        if last {
            break;
        }
    }
    Ok(users)
}

#[derive(Deserialize, Default)]
struct PipelinesPage {
    #[serde(default, rename = "_embedded")]
    embedded: PipelinesEmbedded,
}

#[derive(Deserialize, Default)]
struct PipelinesEmbedded {
    #[serde(default)]
    pipelines: Vec<RawPipeline>,
}

#[derive(Deserialize)]
struct RawPipeline {
    id: i64,
    #[serde(default)]
    name: String,
    #[serde(default, rename = "_embedded")]
    embedded: RawStatuses,
}

#[derive(Deserialize, Default)]
struct RawStatuses {
    #[serde(default)]
    statuses: Vec<Named>,
}

async fn fetch_pipelines(
    api: &AmoApi,
    tokens: &TokenStore,
    account_id: i64,
    domain: &str,
) -> Result<BTreeMap<i64, Pipeline>, CallError> {
    let page: Option<PipelinesPage> = tokens
        .call(account_id, |token| async move {
            api.call(
                domain,
                &token,
                Method::GET,
                "/api/v4/leads/pipelines",
                None::<&()>,
            )
            .await
        })
        .await?;
    Ok(page
        .unwrap_or_default()
        .embedded
        .pipelines
        .into_iter()
        .map(|p| {
            let statuses = p
                .embedded
                .statuses
                .into_iter()
                .map(|s| (s.id, s.name))
                .collect();
            (
                p.id,
                Pipeline {
                    name: p.name,
                    statuses,
                },
            )
        })
        .collect())
}
