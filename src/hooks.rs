//! amoCRM's web-hook bodies: `application/x-www-form-urlencoded` with
//! PHP-style nested keys (`leads[add][0][custom_fields][0][values][0][value]`),
//! in the API v2 shape, every value a string. Parsed with `serde_qs` in form
//! mode into typed structs, then turned into one [`HookEvent`] per entity.

use serde::{Deserialize, Serialize};

/// What a card is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Lead,
    Contact,
    Company,
}

impl EntityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Lead => "lead",
            EntityKind::Contact => "contact",
            EntityKind::Company => "company",
        }
    }

    pub fn parse(text: &str) -> Option<EntityKind> {
        match text {
            "lead" => Some(EntityKind::Lead),
            "contact" => Some(EntityKind::Contact),
            "company" => Some(EntityKind::Company),
            _ => None,
        }
    }

    /// The API path segment: `/api/v4/{plural}/notes`.
    pub fn plural(self) -> &'static str {
        match self {
            EntityKind::Lead => "leads",
            EntityKind::Contact => "contacts",
            EntityKind::Company => "companies",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Add,
    /// `update`, and the narrower `status` and `responsible` hooks: each
    /// carries the entity's full snapshot, so all read as an update.
    Update,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Update => "update",
        }
    }
}

/// A custom field as the hook shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldValue {
    pub id: String,
    pub name: String,
    /// Values in order; enum fields give their text here too.
    pub values: Vec<String>,
}

/// The state of a card as one hook shows it: what the note is built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Snapshot {
    pub name: String,
    pub price: Option<String>,
    pub status_id: Option<i64>,
    pub old_status_id: Option<i64>,
    pub pipeline_id: Option<i64>,
    pub old_pipeline_id: Option<i64>,
    pub responsible_user_id: Option<i64>,
    pub old_responsible_user_id: Option<i64>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
    pub custom_fields: Vec<FieldValue>,
}

/// One added or changed card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEvent {
    pub entity: EntityKind,
    pub action: Action,
    pub entity_id: i64,
    /// `updated_at` (else `last_modified`, else `created_at`): with the
    /// entity and action, the key that makes a re-sent hook a duplicate.
    pub changed_at: i64,
    pub snapshot: Snapshot,
}

/// A parsed hook body.
#[derive(Debug, Default)]
pub struct Hook {
    pub account_id: Option<i64>,
    pub subdomain: Option<String>,
    pub events: Vec<HookEvent>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HookError {
    #[error("the body is not a form-encoded amoCRM hook: {0}")]
    Malformed(String),
    #[error("{0}")]
    Invalid(String),
}

/// `[0]`, `[1]`, ... read as a map from index to item: serde_qs refuses a
/// `Vec` whose indices have gaps, and a hook must not be refused for that.
type List<T> = std::collections::BTreeMap<u32, T>;

#[derive(Debug, Default, Deserialize)]
struct RawHook {
    #[serde(default)]
    account: RawAccount,
    #[serde(default)]
    leads: RawActions,
    #[serde(default)]
    contacts: RawActions,
    #[serde(default)]
    companies: RawActions,
}

#[derive(Debug, Default, Deserialize)]
struct RawAccount {
    id: Option<String>,
    subdomain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawActions {
    #[serde(default)]
    add: List<RawEntity>,
    #[serde(default)]
    update: List<RawEntity>,
    #[serde(default)]
    status: List<RawEntity>,
    #[serde(default)]
    responsible: List<RawEntity>,
}

#[derive(Debug, Default, Deserialize)]
struct RawEntity {
    id: Option<String>,
    name: Option<String>,
    price: Option<String>,
    status_id: Option<String>,
    old_status_id: Option<String>,
    pipeline_id: Option<String>,
    old_pipeline_id: Option<String>,
    responsible_user_id: Option<String>,
    old_responsible_user_id: Option<String>,
    created_at: Option<String>,
    date_create: Option<String>,
    updated_at: Option<String>,
    last_modified: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    custom_fields: List<RawField>,
}

#[derive(Debug, Default, Deserialize)]
struct RawField {
    id: Option<String>,
    name: Option<String>,
    code: Option<String>,
    #[serde(default)]
    values: List<RawValue>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawValue {
    /// `values[0]=1537920000`: date fields come without a `[value]` key.
    Plain(String),
    Item {
        value: Option<String>,
        #[serde(rename = "enum")]
        enum_id: Option<String>,
    },
}

/// Parses a hook body. Never panics; anything that is not a hook is an
/// error with a short reason.
pub fn parse(body: &[u8]) -> Result<Hook, HookError> {
    let text = std::str::from_utf8(body).map_err(|_| HookError::Malformed("not UTF-8".into()))?;
    // serde_qs's form mode decodes only upper-case %5B/%5D (serde_qs#176).
    let text = text.replace("%5b", "%5B").replace("%5d", "%5D");
    let raw: RawHook = serde_qs::Config::new()
        .max_depth(10)
        .use_form_encoding(true)
        .deserialize_str(&text)
        .map_err(|e| HookError::Malformed(short(&e.to_string())))?;

    // Every hook amoCRM sends names its account; a body that names none is
    // not a hook at all (whatever else it holds).
    if raw.account.id.is_none() && raw.account.subdomain.is_none() {
        return Err(HookError::Invalid(
            "no account[id] or account[subdomain]: not an amoCRM hook".into(),
        ));
    }
    let mut hook = Hook {
        account_id: raw
            .account
            .id
            .as_deref()
            .map(|id| number("account[id]", id))
            .transpose()?,
        subdomain: raw.account.subdomain.filter(|s| !s.is_empty()),
        events: Vec::new(),
    };
    for (actions, default_kind) in [
        (raw.leads, EntityKind::Lead),
        (raw.contacts, EntityKind::Contact),
        (raw.companies, EntityKind::Company),
    ] {
        for (list, action) in [
            (actions.add, Action::Add),
            (actions.update, Action::Update),
            (actions.status, Action::Update),
            (actions.responsible, Action::Update),
        ] {
            for entity in list.into_values() {
                hook.events.push(event(entity, default_kind, action)?);
            }
        }
    }
    Ok(hook)
}

fn event(raw: RawEntity, default_kind: EntityKind, action: Action) -> Result<HookEvent, HookError> {
    let entity = match (default_kind, raw.kind.as_deref()) {
        // Companies arrive as contacts[...][type]=company.
        (EntityKind::Contact, Some("company")) => EntityKind::Company,
        (kind, _) => kind,
    };
    let entity_id = number(
        "id",
        raw.id
            .as_deref()
            .ok_or_else(|| HookError::Invalid(format!("a {} without an id", entity.as_str())))?,
    )?;
    let opt = |name: &str, v: &Option<String>| -> Result<Option<i64>, HookError> {
        match v.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(text) => number(name, text).map(Some),
        }
    };
    let updated_at = opt("updated_at", &raw.updated_at)?;
    let last_modified = opt("last_modified", &raw.last_modified)?;
    let created_at = opt("created_at", &raw.created_at)?.or(opt("date_create", &raw.date_create)?);
    let changed_at = updated_at.or(last_modified).or(created_at).ok_or_else(|| {
        HookError::Invalid(format!("{} {entity_id} has no time", entity.as_str()))
    })?;
    let custom_fields = raw
        .custom_fields
        .into_values()
        .filter_map(|f| {
            let id = f.id.filter(|s| !s.is_empty())?;
            let name = f
                .name
                .filter(|s| !s.trim().is_empty())
                .or(f.code)
                .unwrap_or_else(|| format!("#{id}"));
            let values = f
                .values
                .into_values()
                .filter_map(|v| match v {
                    RawValue::Plain(s) => Some(s),
                    RawValue::Item { value, enum_id } => value.or(enum_id),
                })
                .filter(|v| !v.is_empty())
                .collect();
            Some(FieldValue { id, name, values })
        })
        .collect();
    Ok(HookEvent {
        entity,
        action,
        entity_id,
        changed_at,
        snapshot: Snapshot {
            name: raw.name.unwrap_or_default(),
            price: raw.price.filter(|p| !p.is_empty()),
            status_id: opt("status_id", &raw.status_id)?,
            old_status_id: opt("old_status_id", &raw.old_status_id)?,
            pipeline_id: opt("pipeline_id", &raw.pipeline_id)?,
            old_pipeline_id: opt("old_pipeline_id", &raw.old_pipeline_id)?,
            responsible_user_id: opt("responsible_user_id", &raw.responsible_user_id)?,
            old_responsible_user_id: opt("old_responsible_user_id", &raw.old_responsible_user_id)?,
            created_at,
            updated_at: updated_at.or(last_modified),
            custom_fields,
        },
    })
}

fn number(name: &str, text: &str) -> Result<i64, HookError> {
    text.trim()
        .parse()
        .map_err(|_| HookError::Invalid(format!("{name} is not a number: {}", short(text))))
}

fn short(text: &str) -> String {
    let mut out: String = text.chars().take(120).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;
