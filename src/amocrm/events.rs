//! amoCRM's Events API (`GET /api/v4/events`): what changed in a card, with
//! the value before and after. Asked for cards amohook sees for the first
//! time, whose hook shows the card's state but not what changed.
//!
//! Facts, and where they come from:
//! - filters (developers.kommo.com/reference/events-list, amocrm.ru
//!   developers "events"): `filter[entity]` one of `lead, contact, company`;
//!   `filter[entity_id][]` at most 10 ids and only with exactly one entity;
//!   `filter[created_at][from|to]` Unix seconds; `limit` at most 100 on
//!   amocrm.ru (250 on Kommo), `page` from 1; nothing found is 204. The
//!   documented array form (`[]`) is sent; the official SDK's EventsFilter
//!   sends the same filters comma-joined, and amoCRM takes both.
//! - `filter[type]` is not sent: field changes have a type per field
//!   (`custom_field_{ID}_value_changed`, beside the generic
//!   `custom_field_value_changed`), so the types are picked here.
//! - values (the official events-list example; SDK EventModel reads
//!   `value_before`/`value_after` as arrays): `lead_status_changed` →
//!   `[{"lead_status": {"id", "pipeline_id"}}]`; `entity_responsible_changed`
//!   → `[{"responsible_user": {"id"}}]`; `name_field_changed` →
//!   `[{"name_field_value": {"name"}}]` and `sale_field_changed` →
//!   `[{"sale_field_value": {"sale"}}]` (seen in public clients, not in an
//!   official example); custom fields → one `{"custom_field_value":
//!   {"field_id", "enum_id", "text"}}` per value, `[]` when cleared. Every
//!   inner key is read as optional.
//! - rights: "available for all account users; the data depends on the
//!   user's rights for the entity". A refusal is an error like any other.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::Value;

use crate::{
    amocrm::{
        hooks::{EntityKind, FieldItem},
        AmoApi,
    },
    tokens::{CallError, TokenStore},
};

/// Events at most this long before the hook's time belong to its change
/// (a save makes its events in the same second; the margin covers robots
/// acting on the save). Earlier events are older changes, never noted.
const BEFORE: i64 = 10;
/// amoCRM may write an event a moment after the card's `updated_at`.
const AFTER: i64 = 2;
/// amocrm.ru's maximum (Kommo allows 250).
const LIMIT: usize = 100;
/// amoCRM's maximum of `filter[entity_id]`.
const IDS_PER_CALL: usize = 10;
const MAX_PAGES: usize = 5;

/// One change of a card, as its events tell it (earliest before, latest
/// after, when one thing changed several times).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardChange {
    Name {
        before: Option<String>,
        after: Option<String>,
    },
    Sale {
        before: Option<String>,
        after: Option<String>,
    },
    /// (pipeline, status)
    Stage {
        before: Option<(Option<i64>, i64)>,
        after: Option<(Option<i64>, i64)>,
    },
    Responsible {
        before: Option<i64>,
        after: Option<i64>,
    },
    Field {
        field_id: i64,
        before: Vec<FieldItem>,
        after: Vec<FieldItem>,
    },
}

#[derive(Deserialize, Default)]
struct Page {
    #[serde(default, rename = "_embedded")]
    embedded: Embedded,
    #[serde(default, rename = "_links")]
    links: super::Links,
}

#[derive(Deserialize, Default)]
struct Embedded {
    #[serde(default)]
    events: Vec<Event>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    entity_id: i64,
    #[serde(default)]
    created_at: i64,
    #[serde(default)]
    value_before: Value,
    #[serde(default)]
    value_after: Value,
}

/// What changed in each card of `cards` (card id, time of its hook), by
/// card id. Cards with no events of a kind amohook shows are absent.
pub async fn changes(
    api: &AmoApi,
    tokens: &TokenStore,
    account_id: i64,
    domain: &str,
    kind: EntityKind,
    cards: &[(i64, i64)],
) -> Result<HashMap<i64, Vec<CardChange>>, CallError> {
    let mut found: HashMap<i64, Vec<CardChange>> = HashMap::new();
    for chunk in cards.chunks(IDS_PER_CALL) {
        let from = chunk.iter().map(|c| c.1).min().unwrap_or_default() - BEFORE;
        let to = chunk.iter().map(|c| c.1).max().unwrap_or_default() + AFTER;
        let mut events = Vec::new();
        for page in 1..=MAX_PAGES {
            let path = query(kind, chunk, from, to, page);
            let batch: Page = tokens
                .get(api, account_id, domain, &path)
                .await?
                .unwrap_or_default();
            events.extend(batch.embedded.events);
            if !batch.links.has_next() {
                break;
            }
        }
        for &(card, at) in chunk {
            let mut mine: Vec<&Event> = events
                .iter()
                .filter(|e| {
                    e.entity_id == card && (at - BEFORE..=at + AFTER).contains(&e.created_at)
                })
                .collect();
            mine.sort_by_key(|e| e.created_at);
            let changes = merge(mine.into_iter().filter_map(read));
            if !changes.is_empty() {
                found.insert(card, changes);
            }
        }
    }
    Ok(found)
}

fn query(kind: EntityKind, cards: &[(i64, i64)], from: i64, to: i64, page: usize) -> String {
    let mut path = format!(
        "/api/v4/events?filter[entity]={}&filter[created_at][from]={from}&filter[created_at][to]={to}&limit={LIMIT}&page={page}",
        kind.as_str()
    );
    for (id, _) in cards {
        path.push_str(&format!("&filter[entity_id][]={id}"));
    }
    path
}

/// The key one thing's changes are merged under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Name,
    Sale,
    Stage,
    Responsible,
    Field(i64),
}

fn key(change: &CardChange) -> Key {
    match change {
        CardChange::Name { .. } => Key::Name,
        CardChange::Sale { .. } => Key::Sale,
        CardChange::Stage { .. } => Key::Stage,
        CardChange::Responsible { .. } => Key::Responsible,
        CardChange::Field { field_id, .. } => Key::Field(*field_id),
    }
}

/// One change per thing, in the order things first changed: the first
/// event's before, the last event's after; a thing changed and changed back
/// is left out.
fn merge(changes: impl Iterator<Item = CardChange>) -> Vec<CardChange> {
    let mut order: Vec<Key> = Vec::new();
    let mut merged: BTreeMap<Key, CardChange> = BTreeMap::new();
    for change in changes {
        let k = key(&change);
        match merged.get_mut(&k) {
            None => {
                order.push(k);
                merged.insert(k, change);
            }
            Some(first) => match (first, change) {
                (CardChange::Name { after, .. }, CardChange::Name { after: a, .. })
                | (CardChange::Sale { after, .. }, CardChange::Sale { after: a, .. }) => *after = a,
                (CardChange::Stage { after, .. }, CardChange::Stage { after: a, .. }) => *after = a,
                (
                    CardChange::Responsible { after, .. },
                    CardChange::Responsible { after: a, .. },
                ) => *after = a,
                (CardChange::Field { after, .. }, CardChange::Field { after: a, .. }) => *after = a,
                _ => {}
            },
        }
    }
    order
        .into_iter()
        .filter_map(|k| merged.remove(&k))
        .filter(|c| match c {
            CardChange::Name { before, after } | CardChange::Sale { before, after } => {
                before != after
            }
            CardChange::Stage { before, after } => before != after,
            CardChange::Responsible { before, after } => before != after,
            CardChange::Field { before, after, .. } => before != after,
        })
        .collect()
}

/// The first value object of a `value_before`/`value_after` array, by key.
fn first<'a>(values: &'a Value, key: &str) -> Option<&'a Value> {
    values.as_array()?.iter().find_map(|v| v.get(key))
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn stage(values: &Value) -> Option<(Option<i64>, i64)> {
    let s = first(values, "lead_status")?;
    Some((number(s.get("pipeline_id")), number(s.get("id"))?))
}

fn items(values: &Value) -> Vec<FieldItem> {
    let Some(list) = values.as_array() else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|v| v.get("custom_field_value"))
        .map(|v| {
            let value = text(v.get("text")).unwrap_or_default();
            match number(v.get("enum_id")) {
                Some(enum_id) => FieldItem::Choice { value, enum_id },
                None => FieldItem::Text(value),
            }
        })
        .collect()
}

/// The custom field an event is about: `custom_field_{ID}_value_changed`,
/// or the generic type with the id in its values.
fn field_id(event: &Event) -> Option<i64> {
    if let Some(id) = event
        .kind
        .strip_prefix("custom_field_")
        .and_then(|rest| rest.strip_suffix("_value_changed"))
        .and_then(|id| id.parse().ok())
    {
        return Some(id);
    }
    if event.kind != "custom_field_value_changed" {
        return None;
    }
    [&event.value_after, &event.value_before]
        .into_iter()
        .find_map(|values| number(first(values, "custom_field_value")?.get("field_id")))
}

fn read(event: &Event) -> Option<CardChange> {
    let (before, after) = (&event.value_before, &event.value_after);
    Some(match event.kind.as_str() {
        "name_field_changed" => CardChange::Name {
            before: text(first(before, "name_field_value").and_then(|v| v.get("name"))),
            after: text(first(after, "name_field_value").and_then(|v| v.get("name"))),
        },
        "sale_field_changed" => CardChange::Sale {
            before: text(first(before, "sale_field_value").and_then(|v| v.get("sale"))),
            after: text(first(after, "sale_field_value").and_then(|v| v.get("sale"))),
        },
        "lead_status_changed" => CardChange::Stage {
            before: stage(before),
            after: stage(after),
        },
        "entity_responsible_changed" => CardChange::Responsible {
            before: number(first(before, "responsible_user").and_then(|v| v.get("id"))),
            after: number(first(after, "responsible_user").and_then(|v| v.get("id"))),
        },
        _ => CardChange::Field {
            field_id: field_id(event)?,
            before: items(before),
            after: items(after),
        },
    })
}

#[cfg(test)]
mod tests;
