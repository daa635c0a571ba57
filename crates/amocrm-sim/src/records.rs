//! The account's records beyond notes: custom field definitions
//! (`GET /api/v4/{entity}/custom_fields`) and events (`GET /api/v4/events`),
//! each checked like amoCRM documents it.

use std::collections::HashSet;

use serde_json::{json, Value};

/// A custom field definition: (id, name, type, [(choice id, text)]).
#[derive(Debug, Clone)]
pub struct SimField {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub enums: Vec<(i64, String)>,
    /// A monetary field's currency.
    pub currency: Option<String>,
}

impl SimField {
    pub fn new(id: i64, name: &str, kind: &str) -> Self {
        SimField {
            id,
            name: name.into(),
            kind: kind.into(),
            enums: Vec::new(),
            currency: None,
        }
    }

    pub fn with_enums(mut self, enums: &[(i64, &str)]) -> Self {
        self.enums = enums.iter().map(|(i, v)| (*i, (*v).to_owned())).collect();
        self
    }

    pub(crate) fn json(&self, entity: &str) -> Value {
        let mut field = json!({
            "id": self.id, "name": self.name, "type": self.kind, "code": null, "sort": 500,
            "entity_type": entity, "is_api_only": false, "is_deletable": true,
        });
        if !self.enums.is_empty() {
            field["enums"] = self
                .enums
                .iter()
                .enumerate()
                .map(|(i, (id, value))| json!({"id": id, "value": value, "sort": i}))
                .collect();
        } else {
            field["enums"] = Value::Null;
        }
        if let Some(c) = &self.currency {
            field["currency"] = json!(c);
        }
        field
    }
}

/// An event in a card's history, as `GET /api/v4/events` lists it.
#[derive(Debug, Clone)]
pub struct SimEvent {
    /// `lead`, `contact`, `company`.
    pub entity_type: String,
    pub entity_id: i64,
    pub kind: String,
    pub created_at: i64,
    pub value_before: Value,
    pub value_after: Value,
}

impl SimEvent {
    pub(crate) fn json(&self, id: usize, account_id: i64) -> Value {
        json!({
            "id": format!("01ev{id:022}"), "type": self.kind, "entity_id": self.entity_id,
            "entity_type": self.entity_type, "created_by": 100, "created_at": self.created_at,
            "value_after": self.value_after, "value_before": self.value_before,
            "account_id": account_id, "_links": {"self": {"href": "/api/v4/events"}},
        })
    }
}

/// A query parameter that must be a number.
pub(crate) fn number(k: &str, v: &str) -> Result<i64, String> {
    v.parse().map_err(|_| format!("{k} is not a number"))
}

/// `filter[...]`, `limit` and `page` of `GET /api/v4/events`, checked as
/// amoCRM documents them (developers.kommo.com events-list; amocrm.ru's
/// events page): `filter[entity]` one entity when ids are given,
/// `filter[entity_id]` at most 10, `limit` at most 100 on amocrm.ru and 250
/// on Kommo. Anything else is refused, so a test fails when amohook sends
/// a form amoCRM does not document.
pub(crate) struct EventsFilter {
    entities: HashSet<String>,
    ids: HashSet<i64>,
    types: HashSet<String>,
    from: Option<i64>,
    to: Option<i64>,
    pub(crate) limit: usize,
    pub(crate) page: usize,
}

impl EventsFilter {
    pub(crate) fn parse(query: &str, max_limit: usize) -> Result<EventsFilter, String> {
        let mut f = EventsFilter {
            entities: HashSet::new(),
            ids: HashSet::new(),
            types: HashSet::new(),
            from: None,
            to: None,
            limit: 50,
            page: 1,
        };
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "filter[entity]" | "filter[entity][]" => {
                    for e in v.split(',') {
                        if !matches!(e, "lead" | "contact" | "company" | "customer" | "task")
                            && !e.starts_with("catalog_")
                        {
                            return Err(format!("unknown entity {e}"));
                        }
                        f.entities.insert(e.to_owned());
                    }
                }
                "filter[entity_id]" | "filter[entity_id][]" => {
                    for id in v.split(',') {
                        f.ids.insert(number(&k, id)?);
                    }
                }
                "filter[type]" | "filter[type][]" => {
                    f.types.extend(v.split(',').map(str::to_owned));
                }
                "filter[created_at][from]" => f.from = Some(number(&k, &v)?),
                "filter[created_at][to]" => f.to = Some(number(&k, &v)?),
                "limit" => match number(&k, &v)? {
                    n if n >= 1 && n as usize <= max_limit => f.limit = n as usize,
                    _ => return Err(format!("limit must be from 1 to {max_limit}")),
                },
                "page" => match number(&k, &v)? {
                    n @ 1.. => f.page = n as usize,
                    _ => return Err("page must be 1 or more".into()),
                },
                other => return Err(format!("unknown parameter {other}")),
            }
        }
        if f.ids.len() > 10 {
            return Err("filter[entity_id] takes at most 10 ids".into());
        }
        if !f.ids.is_empty() && f.entities.len() != 1 {
            return Err("filter[entity_id] needs exactly one filter[entity]".into());
        }
        Ok(f)
    }

    pub(crate) fn matches(&self, e: &SimEvent) -> bool {
        (self.entities.is_empty() || self.entities.contains(&e.entity_type))
            && (self.ids.is_empty() || self.ids.contains(&e.entity_id))
            && (self.types.is_empty() || self.types.contains(&e.kind))
            && self.from.is_none_or(|from| e.created_at >= from)
            && self.to.is_none_or(|to| e.created_at <= to)
    }
}
