//! The account's API (`/api/v4/...`) and the token endpoint's dispatch:
//! what a request that passed the front door (`server.rs`) gets.

use std::collections::HashSet;
use std::time::Instant;

use axum::{
    body::Bytes,
    http::{header, HeaderMap, Method, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{json, Value};

use crate::{
    answers::{html, json_ok, problem, query_param, unix_now},
    oauth::{oauth_helpers, token_endpoint},
    records, Shared, SimNote, API_DOMAIN,
};

pub(crate) fn route(
    shared: &Shared,
    domain: &str,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let mut s = shared.lock().expect("simulator state");
    if domain == API_DOMAIN {
        return oauth_helpers(&s, method, path, headers);
    }
    if !s.accounts.contains_key(domain) {
        return html(404);
    }
    if path == "/oauth2/access_token" && method == Method::POST {
        return token_endpoint(&mut s, domain, headers, body);
    }
    // Everything else needs a live access token of this account.
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    match s.access.get(bearer) {
        Some((d, exp)) if d == domain && *exp > Instant::now() => {}
        _ => return problem(401, "Unauthorized", "Authorization is required", None),
    }
    let account = s.accounts[domain].clone();
    match (method.as_str(), path) {
        ("GET", "/api/v4/account") => json_ok(
            StatusCode::OK,
            json!({
                "id": account.id,
                "name": account.name,
                "subdomain": domain.split('.').next().unwrap_or_default(),
                "current_user_id": account.users.first().map(|u| u.0),
                "currency": account.currency, "currency_symbol": account.currency_symbol,
                "_embedded": {"datetime_settings": {
                    "date_pattern": format!("{} {}", account.date_pattern, account.time_pattern),
                    "short_date_pattern": account.date_pattern,
                    "short_time_pattern": account.time_pattern,
                    "date_format": account.date_pattern, "time_format": "H:i:s",
                    "timezone": account.timezone, "timezone_offset": "+03:00"
                }}
            }),
        ),
        ("POST", "/api/v4/webhooks") => {
            if !account.admin {
                return problem(403, "Forbidden", "Access denied", None);
            }
            let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let destination = request["destination"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if !destination.starts_with("http") {
                return problem(400, "Bad Request", "Request validation failed", None);
            }
            // A destination subscribed before is answered as it stands: its
            // settings are not replaced, and a hook switched off stays off
            // (no official text says a second POST replaces them, so the
            // simulator takes the case that hurts).
            if let Some((_, hook)) = s
                .webhooks
                .iter()
                .find(|(d, hook)| d == domain && hook["destination"] == destination.as_str())
            {
                return json_ok(StatusCode::OK, webhook_json(hook, account.id));
            }
            let mut hook = request.clone();
            hook["id"] = json!(s.webhooks.len() + 1);
            hook["disabled"] = json!(false);
            s.webhooks.push((domain.into(), hook.clone()));
            json_ok(StatusCode::OK, webhook_json(&hook, account.id))
        }
        ("GET", "/api/v4/webhooks") => {
            if !account.admin {
                return problem(403, "Forbidden", "Access denied", None);
            }
            let destination = query_param(query, "filter[destination]");
            let hooks: Vec<Value> = s
                .webhooks
                .iter()
                .filter(|(d, hook)| {
                    d == domain
                        && destination
                            .as_deref()
                            .is_none_or(|want| hook["destination"] == want)
                })
                .map(|(_, hook)| webhook_json(hook, account.id))
                .collect();
            if hooks.is_empty() {
                return StatusCode::NO_CONTENT.into_response();
            }
            json_ok(
                StatusCode::OK,
                json!({"_total_items": hooks.len(), "_embedded": {"webhooks": hooks}}),
            )
        }
        ("DELETE", "/api/v4/webhooks") => {
            if !account.admin {
                return problem(403, "Forbidden", "Access denied", None);
            }
            let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let destination = request["destination"].as_str().unwrap_or_default();
            let before = s.webhooks.len();
            s.webhooks
                .retain(|(d, hook)| !(d == domain && hook["destination"] == destination));
            if s.webhooks.len() == before {
                return problem(404, "Not Found", "Hook not found", None);
            }
            StatusCode::NO_CONTENT.into_response()
        }
        ("GET", "/api/v4/users") => {
            if !account.admin {
                return problem(403, "Forbidden", "Access denied", None);
            }
            let page: usize = query_param(query, "page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(1);
            let limit: usize = query_param(query, "limit")
                .and_then(|p| p.parse().ok())
                .unwrap_or(50);
            let all: Vec<Value> = account
                .users
                .iter()
                .map(|(id, name)| json!({"id": id, "name": name}))
                .collect();
            page_answer(domain, path, query, "users", all, page, limit)
        }
        ("GET", p) if p.starts_with("/api/v4/users/") => {
            // One user: admin-only too (developers.kommo.com users-list).
            if !account.admin {
                return problem(403, "Forbidden", "Access denied", None);
            }
            let id: Option<i64> = p.trim_start_matches("/api/v4/users/").parse().ok();
            let Some((id, name)) = account.users.iter().find(|u| Some(u.0) == id) else {
                return problem(404, "Not Found", "User not found", None);
            };
            let lang = account.lang.clone().unwrap_or_else(|| {
                if domain.ends_with(".amocrm.ru") {
                    "ru"
                } else {
                    "en"
                }
                .into()
            });
            json_ok(
                StatusCode::OK,
                json!({"id": id, "name": name, "email": format!("user{id}@example.test"),
                       "lang": lang, "rights": {"is_admin": true, "is_active": true}}),
            )
        }
        ("GET", "/api/v4/leads/pipelines") => {
            let pipelines: Vec<Value> = account
                .pipelines
                .iter()
                .map(|(id, name, statuses)| {
                    json!({"id": id, "name": name, "_embedded": {"statuses":
                        statuses.iter().map(|(sid, sname)| json!({"id": sid, "name": sname, "pipeline_id": id})).collect::<Vec<_>>()
                    }})
                })
                .collect();
            json_ok(
                StatusCode::OK,
                json!({"_total_items": pipelines.len(), "_embedded": {"pipelines": pipelines}}),
            )
        }
        ("GET", p) if p.ends_with("/custom_fields") => {
            let entity = p
                .trim_start_matches("/api/v4/")
                .trim_end_matches("/custom_fields");
            if !matches!(entity, "leads" | "contacts" | "companies") {
                return html(404);
            }
            let page: usize = query_param(query, "page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(1);
            let limit: usize = match query_param(query, "limit").map(|l| l.parse::<usize>()) {
                None => 50,
                Some(Ok(l @ 1..=250)) => l,
                Some(_) => return problem(400, "Bad Request", "limit must be from 1 to 250", None),
            };
            let all: Vec<Value> = account
                .fields
                .iter()
                .filter(|(e, _)| e == entity)
                .map(|(_, f)| f.json(entity))
                .collect();
            // "Метод возвращает до 50 полей за один запрос", whatever
            // `limit` says (amoCRM's custom-fields page).
            page_answer(
                domain,
                path,
                query,
                "custom_fields",
                all,
                page,
                limit.min(50),
            )
        }
        ("GET", "/api/v4/events") => {
            let max_limit = if domain.ends_with(".amocrm.ru") {
                100
            } else {
                250
            };
            let filter = match records::EventsFilter::parse(query.unwrap_or_default(), max_limit) {
                Ok(filter) => filter,
                Err(detail) => return problem(400, "Bad Request", &detail, None),
            };
            let all: Vec<Value> = s
                .events
                .iter()
                .filter(|(d, e)| d == domain && filter.matches(e))
                .enumerate()
                .map(|(i, (_, e))| e.json(i, account.id))
                .collect();
            page_answer(
                domain,
                path,
                query,
                "events",
                all,
                filter.page,
                filter.limit,
            )
        }
        ("POST", p) if p.ends_with("/notes") && entity_of(p).is_some() => {
            let entity_type = entity_of(p).unwrap_or_default().to_owned();
            let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(body) else {
                return problem(400, "Bad Request", "Request validation failed", None);
            };
            let refused: Vec<Value> = items
                .iter()
                .enumerate()
                .filter(|(_, item)| {
                    item["entity_id"].as_i64().is_none_or(|id| s.refused_entities.contains(&id))
                        || item["params"]["text"].as_str().is_none_or(str::is_empty)
                })
                .map(|(i, item)| json!({
                    "request_id": item["request_id"].as_str().map(str::to_owned).unwrap_or_else(|| i.to_string()),
                    "errors": [{"code": "NotFound", "path": "entity_id", "detail": "Entity not found"}]
                }))
                .collect();
            if !refused.is_empty() {
                let body = json!({"validation-errors": refused, "title": "Bad Request",
                    "type": "https://httpstatus.es/400", "status": 400, "detail": "Request validation failed"});
                return (
                    StatusCode::BAD_REQUEST,
                    [(header::CONTENT_TYPE, "application/problem+json")],
                    body.to_string(),
                )
                    .into_response();
            }
            let mut created = Vec::new();
            for item in items {
                s.counter += 1;
                let note = SimNote {
                    id: s.counter as i64,
                    domain: domain.into(),
                    entity_type: entity_type.clone(),
                    entity_id: item["entity_id"].as_i64().unwrap_or_default(),
                    text: item["params"]["text"].as_str().unwrap_or_default().into(),
                    note_type: item["note_type"].as_str().unwrap_or("common").into(),
                    request_id: item["request_id"].as_str().map(str::to_owned),
                    at: Instant::now(),
                    updated_at: unix_now(),
                };
                created.push(json!({"id": note.id, "entity_id": note.entity_id, "request_id": note.request_id,
                    "_links": {"self": {"href": format!("/api/v4/{entity_type}/notes/{}", note.id)}}}));
                s.notes.push(note);
            }
            json_ok(
                StatusCode::OK,
                json!({"_links": {}, "_embedded": {"notes": created}}),
            )
        }
        ("GET", p) if p.ends_with("/notes") && entity_of(p).is_some() => {
            let entity_type = entity_of(p).unwrap_or_default();
            let filter = match NotesFilter::parse(query.unwrap_or_default()) {
                Ok(filter) => filter,
                Err(detail) => return problem(400, "Bad Request", &detail, None),
            };
            let mut matching: Vec<&SimNote> = s
                .notes
                .iter()
                .filter(|n| n.domain == domain && n.entity_type == entity_type)
                .filter(|n| filter.matches(n))
                .collect();
            matching.sort_by_key(|n| n.id);
            let all: Vec<Value> = matching
                .into_iter()
                .map(|n| {
                    json!({"id": n.id, "entity_id": n.entity_id, "note_type": n.note_type,
                    "updated_at": n.updated_at, "params": {"text": n.text}})
                })
                .collect();
            page_answer(domain, path, query, "notes", all, filter.page, filter.limit)
        }
        _ => html(404),
    }
}

/// The query of `GET /api/v4/{entity}/notes`, checked like amoCRM documents
/// it (developers.kommo.com "notes by entity type"; the official SDK's
/// NotesFilter): `filter[entity_id][]` and `filter[note_type][]` are
/// arrays, `filter[updated_at]` a timestamp or a `[from]`/`[to]` range,
/// `limit` at most 250, `page` from 1. Anything else is refused, so a test
/// fails when amohook sends a form amoCRM does not document.
struct NotesFilter {
    entity_ids: HashSet<i64>,
    note_types: HashSet<String>,
    updated_from: Option<i64>,
    updated_to: Option<i64>,
    limit: usize,
    page: usize,
}

impl NotesFilter {
    fn parse(query: &str) -> Result<NotesFilter, String> {
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

    fn matches(&self, note: &SimNote) -> bool {
        (self.entity_ids.is_empty() || self.entity_ids.contains(&note.entity_id))
            && (self.note_types.is_empty() || self.note_types.contains(&note.note_type))
            && self.updated_from.is_none_or(|from| note.updated_at >= from)
            && self.updated_to.is_none_or(|to| note.updated_at <= to)
    }
}

/// Page `page` (from 1) of `limit` items as amoCRM answers a list: 204
/// when empty; else `_page`, `_embedded.{key}` and `_links` with `self`,
/// and `next` while more items follow (the link clients page by).
fn page_answer(
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
fn webhook_json(hook: &Value, account_id: i64) -> Value {
    json!({"id": hook["id"], "destination": hook["destination"], "account_id": account_id,
           "created_by": 0, "created_at": 1_575_539_157, "updated_at": 1_575_539_157,
           "disabled": hook["disabled"].as_bool().unwrap_or(false),
           "settings": hook["settings"], "sort": 1})
}

fn entity_of(path: &str) -> Option<&'static str> {
    match path {
        "/api/v4/leads/notes" => Some("leads"),
        "/api/v4/contacts/notes" => Some("contacts"),
        "/api/v4/companies/notes" => Some("companies"),
        _ => None,
    }
}
