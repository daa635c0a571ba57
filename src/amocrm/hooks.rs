//! amoCRM's web-hook bodies: `application/x-www-form-urlencoded` with
//! PHP-style nested keys (`leads[add][0][custom_fields][0][values][0][value]`),
//! in the API v2 shape, every value a string. Parsed with `serde_qs` in form
//! mode into typed structs, then turned into one [`HookEvent`] per entity.

use serde::{Deserialize, Serialize};

pub use ignored::Ignored;
use raw::{RawEntity, RawHook, RawItem, RawValue, Reader};

/// What a card is. Stored as text (`lead`, `contact`, `company`); any other
/// stored value is an error when read, never a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
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

    /// The API path segment: `/api/v4/{plural}/notes`.
    pub fn plural(self) -> &'static str {
        match self {
            EntityKind::Lead => "leads",
            EntityKind::Contact => "contacts",
            EntityKind::Company => "companies",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Action {
    Add,
    /// `update`: the card's full state after any change.
    Update,
    /// `leads[status]`: a lead moved to another stage. The digital
    /// pipeline's "send a web-hook" action sends this with only the ids
    /// (`id`, `status_id`, `pipeline_id`, `old_status_id`,
    /// `old_pipeline_id`); its note says the stage change and nothing else.
    Status,
    /// `*[responsible]`: the responsible user changed; its note says that.
    Responsible,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Update => "update",
            Action::Status => "status",
            Action::Responsible => "responsible",
        }
    }
}

/// One value of a custom field: its text, and for select, multiselect,
/// radio and multitext (phone, e-mail) fields the id of its choice
/// (`values[N][enum]`). Stored snapshots from before the choice was kept
/// hold the text alone, which reads as `Text`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldItem {
    Text(String),
    Choice {
        value: String,
        #[serde(rename = "enum")]
        enum_id: i64,
    },
}

impl FieldItem {
    pub fn text(&self) -> &str {
        match self {
            FieldItem::Text(t) | FieldItem::Choice { value: t, .. } => t,
        }
    }

    pub fn enum_id(&self) -> Option<i64> {
        match self {
            FieldItem::Text(_) => None,
            FieldItem::Choice { enum_id, .. } => Some(*enum_id),
        }
    }
}

impl From<&str> for FieldItem {
    fn from(text: &str) -> Self {
        FieldItem::Text(text.to_owned())
    }
}

/// A custom field as the hook shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldValue {
    pub id: String,
    pub name: String,
    /// `PHONE`, `EMAIL`, `POSITION`, ... for the account's built-in fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Values in order. Date fields give a Unix time as their text.
    pub values: Vec<FieldItem>,
}

impl FieldValue {
    /// Whether two hooks show the same value (texts in order; a choice id
    /// alone does not make a difference, so snapshots stored before ids were
    /// kept compare equal to new ones).
    pub fn same_values(&self, other: &[FieldItem]) -> bool {
        self.values.len() == other.len()
            && self
                .values
                .iter()
                .zip(other)
                .all(|(a, b)| a.text() == b.text())
    }
}

/// The state of a card as one hook shows it: what the note is built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Snapshot {
    /// True when the body named the card but did not describe it (no
    /// `name`): the digital pipeline's short bodies. Such a snapshot says
    /// nothing about the card's name, budget or fields.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
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
    /// Who made the change: a user's id, or 0 for amoCRM itself (robots,
    /// forms, the API). Left out of the stored JSON when the body has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_user_id: Option<i64>,
}

impl Snapshot {
    /// Removes NUL characters from every text (PostgreSQL stores none, and
    /// `json` would keep them as `\u0000`, which no `jsonb` later takes).
    /// The parser already leaves none; this holds for snapshots made
    /// otherwise too. Cheap: a scan, and a copy only where one is found.
    pub fn without_nul(&mut self) {
        fn clean(text: &mut String) {
            if text.contains('\0') {
                text.retain(|c| c != '\0');
            }
        }
        clean(&mut self.name);
        self.price.iter_mut().for_each(clean);
        for field in &mut self.custom_fields {
            clean(&mut field.id);
            clean(&mut field.name);
            field.code.iter_mut().for_each(clean);
            for item in &mut field.values {
                match item {
                    FieldItem::Text(t) | FieldItem::Choice { value: t, .. } => clean(t),
                }
            }
        }
    }
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
    /// Values whose shape the parser does not know (a map where a string
    /// belongs, a number that is not one): left out, the rest of the hook
    /// kept.
    pub skipped_fields: u32,
    /// Cards under entities or actions amohook makes no note of
    /// (`leads[delete]`, `contacts[restore]`, `unsorted[add]`,
    /// `message[add]`, `leads[note]`, ...): answered 200 and counted.
    pub ignored: Vec<Ignored>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HookError {
    #[error("the body is not a form-encoded amoCRM hook: {0}")]
    Malformed(String),
    #[error("{0}")]
    Invalid(String),
}

/// How far ahead of the receipt a card's time may be (amoCRM's clock and
/// ours differ by seconds, not minutes); later times count as this.
pub const FUTURE_SKEW_SECONDS: i64 = 60;

/// Parses a hook body. Never panics; anything that is not a hook is an
/// error with a short reason. An entity without a time of its own (amoCRM's
/// digital-pipeline hooks send none) takes the current time.
pub fn parse(body: &[u8]) -> Result<Hook, HookError> {
    parse_at(body, chrono::Utc::now().timestamp())
}

/// [`parse`], with `received_at` (unix seconds) as the time of entities
/// that give none.
pub fn parse_at(body: &[u8], received_at: i64) -> Result<Hook, HookError> {
    let text = std::str::from_utf8(body).map_err(|_| HookError::Malformed("not UTF-8".into()))?;
    // serde_qs's form mode decodes only upper-case %5B/%5D (serde_qs#176).
    // amoCRM sends upper case: the body is copied only when it has any.
    let text = if text.contains("%5b") || text.contains("%5d") {
        std::borrow::Cow::Owned(text.replace("%5b", "%5B").replace("%5d", "%5D"))
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    let raw: RawHook = serde_qs::Config::new()
        .max_depth(10)
        .use_form_encoding(true)
        .deserialize_str(&text)
        .map_err(|e| HookError::Malformed(short(&e.to_string())))?;

    let mut reader = Reader::default();
    let account = reader.take(raw.account).unwrap_or_default();
    let account_id = reader.text(account.id);
    let subdomain = reader.text(account.subdomain);
    // Every hook amoCRM sends names its account; a body that names none is
    // not a hook at all (whatever else it holds).
    if account_id.is_none() && subdomain.is_none() {
        return Err(HookError::Invalid(
            "no account[id] or account[subdomain]: not an amoCRM hook".into(),
        ));
    }
    let mut hook = Hook {
        account_id: account_id
            .as_deref()
            .map(|id| positive_id("account[id]", id))
            .transpose()?,
        subdomain: subdomain.filter(|s| !s.is_empty()),
        ..Hook::default()
    };
    for (actions, default_kind) in [
        (raw.leads, EntityKind::Lead),
        (raw.contacts, EntityKind::Contact),
        (raw.companies, EntityKind::Company),
    ] {
        let Some(actions) = reader.take(actions) else {
            continue;
        };
        for (list, action) in [
            (actions.add, Action::Add),
            (actions.update, Action::Update),
            (actions.status, Action::Status),
            (actions.responsible, Action::Responsible),
        ] {
            for entity in reader.list(list) {
                let event = event(&mut reader, entity, default_kind, action, received_at)?;
                hook.events.push(event);
            }
        }
    }
    hook.skipped_fields = reader.skipped;
    hook.ignored = ignored::cards(&text);
    Ok(hook)
}

fn event(
    reader: &mut Reader,
    raw: RawEntity,
    default_kind: EntityKind,
    action: Action,
    received_at: i64,
) -> Result<HookEvent, HookError> {
    let entity = match (default_kind, reader.text(raw.kind).as_deref()) {
        // Companies arrive as contacts[...][type]=company.
        (EntityKind::Contact, Some("company")) => EntityKind::Company,
        (kind, _) => kind,
    };
    // Without its id a card cannot be named: the one thing a hook is
    // refused for.
    let id = reader
        .text(raw.id)
        .ok_or_else(|| HookError::Invalid(format!("a {} without an id", entity.as_str())))?;
    let entity_id = positive_id("id", &id)?;
    let updated_at = reader.number(raw.updated_at);
    let last_modified = reader.number(raw.last_modified);
    let created_at = reader
        .number(raw.created_at)
        .or(reader.number(raw.date_create));
    // A time far ahead of ours would order every later change of the card
    // before this one, and so silence it: no card changes in the future.
    let changed_at = updated_at
        .or(last_modified)
        .or(created_at)
        .unwrap_or(received_at)
        .min(received_at.saturating_add(FUTURE_SKEW_SECONDS));
    let custom_fields = reader
        .list(raw.custom_fields)
        .into_iter()
        .filter_map(|f| {
            let id = reader.text(f.id).filter(|s| !s.is_empty())?;
            let code = reader.text(f.code).filter(|c| !c.is_empty());
            let name = reader
                .text(f.name)
                .filter(|s| !s.trim().is_empty())
                .or(code.clone())
                .unwrap_or_else(|| format!("#{id}"));
            let values = reader.take(f.values).map(|v| v.0).unwrap_or_default();
            let values = reader
                .items(values)
                .into_iter()
                .map(|v| match v {
                    RawValue::Plain(s) => FieldItem::Text(s.0),
                    RawValue::Item(RawItem { value, enum_id }) => {
                        let value = reader.take(value).map(|v| v.0).unwrap_or_default();
                        match reader.number(enum_id) {
                            Some(enum_id) => FieldItem::Choice { value, enum_id },
                            None => FieldItem::Text(value),
                        }
                    }
                })
                .filter(|v| !v.text().is_empty() || v.enum_id().is_some())
                .collect();
            Some(FieldValue {
                id,
                name,
                code,
                values,
            })
        })
        .collect();
    let name = reader.text(raw.name);
    Ok(HookEvent {
        entity,
        action,
        entity_id,
        changed_at,
        snapshot: Snapshot {
            partial: name.is_none(),
            name: name.unwrap_or_default(),
            price: reader.text(raw.price).filter(|p| !p.is_empty()),
            status_id: reader.number(raw.status_id),
            old_status_id: reader.number(raw.old_status_id),
            pipeline_id: reader.number(raw.pipeline_id),
            old_pipeline_id: reader.number(raw.old_pipeline_id),
            responsible_user_id: reader.number(raw.responsible_user_id),
            old_responsible_user_id: reader.number(raw.old_responsible_user_id),
            created_at,
            updated_at: updated_at.or(last_modified),
            custom_fields,
            modified_user_id: reader.number(raw.modified_user_id),
        },
    })
}

/// Account and card ids are positive integers; anything else cannot name a
/// card, and amoCRM must not be asked about it.
fn positive_id(name: &str, text: &str) -> Result<i64, HookError> {
    match text.trim().parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        Ok(_) => Err(HookError::Invalid(format!(
            "{name} must be a positive number: {}",
            short(text)
        ))),
        Err(_) => Err(HookError::Invalid(format!(
            "{name} is not a number: {}",
            short(text)
        ))),
    }
}

fn short(text: &str) -> String {
    let mut out: String = text.chars().take(120).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

mod ignored;
mod raw;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_more;
