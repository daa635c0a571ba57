//! amoCRM's web-hook bodies: `application/x-www-form-urlencoded` with
//! PHP-style nested keys (`leads[add][0][custom_fields][0][values][0][value]`),
//! in the API v2 shape, every value a string. Parsed with `serde_qs` in form
//! mode into typed structs, then turned into one [`HookEvent`] per entity.

use serde::{Deserialize, Serialize};

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
    /// Values whose shape the parser does not know (a map where a string
    /// belongs, a number that is not one): left out, the rest of the hook
    /// kept.
    pub skipped_fields: u32,
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

/// A value of the shape `T`, or `Odd` when the body has something else
/// there. amoCRM punishes refused hooks (it switches the hook off), so a
/// field the parser cannot read loses that field, not the hook.
///
/// This relies on serde_qs parsing the whole body into a tree before
/// deserializing: a value that fails to deserialize is an owned subtree, and
/// its siblings are read as if it were absent (the unit tests hold this).
#[derive(Debug)]
enum Lenient<T> {
    Ok(T),
    Odd,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(T::deserialize(d).map_or(Lenient::Odd, Lenient::Ok))
    }
}

/// A string value: PostgreSQL cannot store NUL in text or jsonb, so NUL
/// characters are removed (nothing else is changed). A key given twice
/// becomes a sequence in serde_qs; the last value wins, as in PHP.
#[derive(Debug, Default)]
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Shape {
            One(String),
            Many(Vec<String>),
        }
        let text = match Shape::deserialize(d)? {
            Shape::One(s) => s,
            Shape::Many(list) => list.into_iter().next_back().unwrap_or_default(),
        };
        Ok(Text(if text.contains('\0') {
            text.replace('\0', "")
        } else {
            text
        }))
    }
}

/// Optional fields of the body, each read leniently.
type Field<T> = Option<Lenient<T>>;

#[derive(Debug, Default, Deserialize)]
struct RawHook {
    #[serde(default)]
    account: Field<RawAccount>,
    #[serde(default)]
    leads: Field<RawActions>,
    #[serde(default)]
    contacts: Field<RawActions>,
    #[serde(default)]
    companies: Field<RawActions>,
}

#[derive(Debug, Default, Deserialize)]
struct RawAccount {
    #[serde(default)]
    id: Field<Text>,
    #[serde(default)]
    subdomain: Field<Text>,
}

#[derive(Debug, Default, Deserialize)]
struct RawActions {
    #[serde(default)]
    add: Field<List<Lenient<RawEntity>>>,
    #[serde(default)]
    update: Field<List<Lenient<RawEntity>>>,
    #[serde(default)]
    status: Field<List<Lenient<RawEntity>>>,
    #[serde(default)]
    responsible: Field<List<Lenient<RawEntity>>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawEntity {
    #[serde(default)]
    id: Field<Text>,
    #[serde(default)]
    name: Field<Text>,
    #[serde(default)]
    price: Field<Text>,
    #[serde(default)]
    status_id: Field<Text>,
    #[serde(default)]
    old_status_id: Field<Text>,
    #[serde(default)]
    pipeline_id: Field<Text>,
    #[serde(default)]
    old_pipeline_id: Field<Text>,
    #[serde(default)]
    responsible_user_id: Field<Text>,
    #[serde(default)]
    old_responsible_user_id: Field<Text>,
    #[serde(default)]
    created_at: Field<Text>,
    #[serde(default)]
    date_create: Field<Text>,
    #[serde(default)]
    updated_at: Field<Text>,
    #[serde(default)]
    last_modified: Field<Text>,
    #[serde(default, rename = "type")]
    kind: Field<Text>,
    #[serde(default)]
    custom_fields: Field<List<Lenient<RawField>>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawField {
    #[serde(default)]
    id: Field<Text>,
    #[serde(default)]
    name: Field<Text>,
    #[serde(default)]
    code: Field<Text>,
    #[serde(default)]
    values: Field<List<Lenient<RawValue>>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawValue {
    /// `values[0]=1537920000`: date fields come without a `[value]` key.
    Plain(Text),
    Item {
        #[serde(default)]
        value: Field<Text>,
        #[serde(default, rename = "enum")]
        enum_id: Field<Text>,
    },
}

/// Counts what was left out while the raw body is turned into events.
#[derive(Default)]
struct Reader {
    skipped: u32,
}

impl Reader {
    /// The value of a field that was present and readable.
    fn take<T>(&mut self, field: Field<T>) -> Option<T> {
        match field? {
            Lenient::Ok(value) => Some(value),
            Lenient::Odd => {
                self.skipped += 1;
                None
            }
        }
    }

    fn text(&mut self, field: Field<Text>) -> Option<String> {
        self.take(field).map(|t| t.0)
    }

    /// A number that may be absent or empty; one that is not a number is
    /// left out (and counted).
    fn number(&mut self, field: Field<Text>) -> Option<i64> {
        let text = self.text(field)?;
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        match text.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                self.skipped += 1;
                None
            }
        }
    }

    fn list<T>(&mut self, field: Field<List<Lenient<T>>>) -> Vec<T> {
        let items = self.take(field).unwrap_or_default();
        items
            .into_values()
            .filter_map(|item| self.take(Some(item)))
            .collect()
    }
}

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
    let text = text.replace("%5b", "%5B").replace("%5d", "%5D");
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
            (actions.status, Action::Update),
            (actions.responsible, Action::Update),
        ] {
            for entity in reader.list(list) {
                let event = event(&mut reader, entity, default_kind, action, received_at)?;
                hook.events.push(event);
            }
        }
    }
    hook.skipped_fields = reader.skipped;
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
    let changed_at = updated_at
        .or(last_modified)
        .or(created_at)
        .unwrap_or(received_at);
    let custom_fields = reader
        .list(raw.custom_fields)
        .into_iter()
        .filter_map(|f| {
            let id = reader.text(f.id).filter(|s| !s.is_empty())?;
            let name = reader
                .text(f.name)
                .filter(|s| !s.trim().is_empty())
                .or(reader.text(f.code))
                .unwrap_or_else(|| format!("#{id}"));
            let values = reader
                .list(f.values)
                .into_iter()
                .filter_map(|v| match v {
                    RawValue::Plain(s) => Some(s.0),
                    RawValue::Item { value, enum_id } => {
                        reader.text(value).or(reader.text(enum_id))
                    }
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
            name: reader.text(raw.name).unwrap_or_default(),
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

#[cfg(test)]
mod tests;
