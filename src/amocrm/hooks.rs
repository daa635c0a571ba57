//! amoCRM's web-hook bodies: `application/x-www-form-urlencoded` with
//! PHP-style nested keys (`leads[add][0][custom_fields][0][values][0][value]`),
//! in the API v2 shape, every value a string. Parsed with `serde_qs` in form
//! mode into typed structs, then turned into one [`HookEvent`] per entity.

use serde::{Deserialize, Serialize};

pub use ignored::Ignored;
pub use parse::{parse, parse_at, FUTURE_SKEW_SECONDS};

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

mod ignored;
mod parse;
mod raw;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_more;
