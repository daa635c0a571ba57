//! The directory's calls to amoCRM: users, pipelines, custom field
//! definitions and the account's settings.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{FieldDef, Pipeline};
use crate::{
    amocrm::{hooks::EntityKind, AmoApi, Links},
    tokens::{CallError, TokenStore},
};

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
    #[serde(default, rename = "_links")]
    links: Links,
}

#[derive(Deserialize, Default)]
struct UsersEmbedded {
    #[serde(default)]
    users: Vec<Named>,
}

pub(super) async fn users(
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
        let batch: UsersPage = tokens
            .get(api, account_id, domain, &path)
            .await?
            .unwrap_or_default();
        users.extend(batch.embedded.users.into_iter().map(|u| (u.id, u.name)));
        if !batch.links.has_next() {
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

pub(super) async fn pipelines(
    api: &AmoApi,
    tokens: &TokenStore,
    account_id: i64,
    domain: &str,
) -> Result<BTreeMap<i64, Pipeline>, CallError> {
    let page: Option<PipelinesPage> = tokens
        .get(api, account_id, domain, "/api/v4/leads/pipelines")
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

#[derive(Deserialize, Default)]
struct FieldsPage {
    #[serde(default, rename = "_embedded")]
    embedded: FieldsEmbedded,
    #[serde(default, rename = "_links")]
    links: Links,
}

#[derive(Deserialize, Default)]
struct FieldsEmbedded {
    #[serde(default)]
    custom_fields: Vec<RawField>,
}

#[derive(Deserialize)]
struct RawField {
    id: i64,
    #[serde(default)]
    name: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    enums: Option<Vec<RawEnum>>,
    #[serde(default)]
    currency: Option<String>,
}

#[derive(Deserialize)]
struct RawEnum {
    id: i64,
    #[serde(default)]
    value: String,
}

/// `GET /api/v4/{entity}/custom_fields`, every page, by `_links.next`:
/// amoCRM gives at most 50 fields a page whatever `limit` says ("Метод
/// возвращает до 50 полей за один запрос", its custom-fields page). The
/// official SDK's CustomFields service reads `_embedded.custom_fields`,
/// its fields `id, name, type, enums [{id, value, sort}]`, and `currency`
/// for monetary fields.
pub(super) async fn fields(
    api: &AmoApi,
    tokens: &TokenStore,
    account_id: i64,
    domain: &str,
    kind: EntityKind,
) -> Result<BTreeMap<i64, FieldDef>, CallError> {
    const PAGE: usize = 250;
    let mut fields = BTreeMap::new();
    // 50 pages of 50 fields: more than any account defines.
    for page in 1..=50 {
        let path = format!(
            "/api/v4/{}/custom_fields?limit={PAGE}&page={page}",
            kind.plural()
        );
        let batch: FieldsPage = tokens
            .get(api, account_id, domain, &path)
            .await?
            .unwrap_or_default();
        let more = batch.links.has_next();
        fields.extend(batch.embedded.custom_fields.into_iter().map(|f| {
            let enums = f
                .enums
                .unwrap_or_default()
                .into_iter()
                .map(|e| (e.id, e.value))
                .collect();
            let def = FieldDef {
                name: f.name,
                kind: f.kind,
                enums,
                currency: f.currency.filter(|c| !c.is_empty()),
            };
            (f.id, def)
        }));
        if !more {
            break;
        }
    }
    Ok(fields)
}
