//! Lists as amoCRM answers them: the notes query checked as documented,
//! pages with `_links`, web-hook subscriptions as the API shows them.

use std::collections::HashSet;

use super::*;

/// The query of `GET /api/v4/{entity}/notes`, checked like amoCRM documents
/// it (developers.kommo.com "notes by entity type"; the official SDK's
/// NotesFilter): `filter[entity_id][]` and `filter[note_type][]` are
/// arrays, `filter[updated_at]` a timestamp or a `[from]`/`[to]` range,
/// `limit` at most 250, `page` from 1. Anything else is refused, so a test
/// fails when amohook sends a form amoCRM does not document.
pub(super) struct NotesFilter {
    entity_ids: HashSet<i64>,
    note_types: HashSet<String>,
    updated_from: Option<i64>,
    updated_to: Option<i64>,
    pub(super) limit: usize,
    pub(super) page: usize,
}

impl NotesFilter {
    pub(super) fn parse(query: &str) -> Result<NotesFilter, String> {
        let mut filter = NotesFilter {
            entity_ids: HashSet::new(),
            note_types: HashSet::new(),
            updated_from: None,
            updated_to: None,
            limit: 50,
            page: 1,
        };
        use records::number;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "filter[entity_id][]" | "filter[entity_id]" => {
                    filter.entity_ids.insert(number(&k, &v)?);
                }
                "filter[note_type][]" => {
                    filter.note_types.insert(v.into_owned());
                }
                "filter[updated_at][from]" => filter.updated_from = Some(number(&k, &v)?),
                "filter[updated_at][to]" => filter.updated_to = Some(number(&k, &v)?),
                "filter[updated_at]" => {
                    let at = number(&k, &v)?;
                    filter.updated_from = Some(at);
                    filter.updated_to = Some(at);
                }
                "limit" => match number(&k, &v)? {
                    n @ 1..=250 => filter.limit = n as usize,
                    _ => return Err("limit must be from 1 to 250".into()),
                },
                "page" => match number(&k, &v)? {
                    n @ 1.. => filter.page = n as usize,
                    _ => return Err("page must be 1 or more".into()),
                },
                other => return Err(format!("unknown parameter {other}")),
            }
        }
        Ok(filter)
    }

    pub(super) fn matches(&self, note: &SimNote) -> bool {
        (self.entity_ids.is_empty() || self.entity_ids.contains(&note.entity_id))
            && (self.note_types.is_empty() || self.note_types.contains(&note.note_type))
            && self.updated_from.is_none_or(|from| note.updated_at >= from)
            && self.updated_to.is_none_or(|to| note.updated_at <= to)
    }
}

/// Page `page` (from 1) of `limit` items as amoCRM answers a list: 204
/// when empty; else `_page`, `_embedded.{key}` and `_links` with `self`,
/// and `next` while more items follow (the link clients page by).
pub(super) fn page_answer(
    domain: &str,
    path: &str,
    query: Option<&str>,
    key: &str,
    all: Vec<Value>,
    page: usize,
    limit: usize,
) -> Response {
    let limit = limit.max(1);
    let start = page.saturating_sub(1).saturating_mul(limit);
    let more = all.len() > start.saturating_add(limit);
    let items: Vec<Value> = all.into_iter().skip(start).take(limit).collect();
    if items.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let href = |page: usize| {
        let mut pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .into_owned()
                .filter(|(k, _)| k != "page")
                .collect();
        pairs.push(("page".into(), page.to_string()));
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        json!({"href": format!("https://{domain}{path}?{query}")})
    };
    let mut links = json!({"self": href(page)});
    if more {
        links["next"] = href(page + 1);
    }
    let mut embedded = serde_json::Map::new();
    embedded.insert(key.to_owned(), Value::Array(items));
    json_ok(
        StatusCode::OK,
        json!({"_page": page, "_links": links, "_embedded": embedded}),
    )
}

/// A subscription as `GET /api/v4/webhooks` shows it (amocrm.ru
/// webhooks-api: id, destination, disabled, settings, sort, ...).
pub(super) fn webhook_json(hook: &Value, account_id: i64) -> Value {
    json!({"id": hook["id"], "destination": hook["destination"], "account_id": account_id,
           "created_by": 0, "created_at": 1_575_539_157, "updated_at": 1_575_539_157,
           "disabled": hook["disabled"].as_bool().unwrap_or(false),
           "settings": hook["settings"], "sort": 1})
}

pub(super) fn entity_of(path: &str) -> Option<&'static str> {
    match path {
        "/api/v4/leads/notes" => Some("leads"),
        "/api/v4/contacts/notes" => Some("contacts"),
        "/api/v4/companies/notes" => Some("companies"),
        _ => None,
    }
}
