//! The account's API (`/api/v4/...`) and the token endpoint's dispatch:
//! what a request that passed the front door (`server.rs`) gets.

mod lists;

use lists::{entity_of, page_answer, webhook_json, NotesFilter};

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
