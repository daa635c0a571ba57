//! amoCRM's notes API: `POST /api/v4/{entity}/notes` (a JSON array, each
//! note with our `request_id`, echoed back) and
//! `GET /api/v4/{entity}/notes` with the filters amoCRM documents
//! (developers.kommo.com, "notes by entity type"; the official SDK's
//! NotesFilter): `filter[note_type][]` and `filter[entity_id][]` are arrays
//! (at most 10 ids), `filter[updated_at][from]` a timestamp, `limit` at most
//! 250, `page` from 1, and 204 for an empty page.

use std::collections::HashMap;

use reqwest::Method;
use secrecy::SecretString;
use serde::Deserialize;

use super::{hooks::EntityKind, AmoApi, AmoError, Problem};

/// Notes a page of the lookup holds at most.
pub const PAGE: usize = 250;

/// A common (text) note to add to a card.
#[derive(Debug)]
pub struct NewNote<'a> {
    pub entity_id: i64,
    pub text: &'a str,
    /// Echoed back by amoCRM, so each created note is matched to its event.
    pub request_id: String,
}

/// A note as the lookup returns it.
#[derive(Debug)]
pub struct FoundNote {
    pub id: i64,
    pub entity_id: Option<i64>,
    pub text: Option<String>,
}

impl AmoApi {
    /// Adds common notes to cards of one kind in one request. Returns the
    /// created notes' ids by our request id.
    pub async fn add_notes(
        &self,
        domain: &str,
        token: &SecretString,
        kind: EntityKind,
        notes: &[NewNote<'_>],
    ) -> Result<HashMap<String, i64>, AmoError> {
        let body: Vec<serde_json::Value> = notes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "entity_id": n.entity_id,
                    "note_type": "common",
                    "params": { "text": n.text },
                    "request_id": n.request_id,
                })
            })
            .collect();
        let path = format!("/api/v4/{}/notes", kind.plural());
        let answer: Option<NotesAnswer> = self
            .call(domain, token, Method::POST, &path, Some(&body))
            .await?;
        Ok(answer
            .map(|a| a.embedded.notes)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| {
                let rid = match n.request_id? {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                Some((rid, n.id))
            })
            .collect())
    }

    /// One page (from 1) of the common notes of these cards updated since
    /// `since` (unix seconds), and whether amoCRM links a next page.
    pub async fn common_notes(
        &self,
        domain: &str,
        token: &SecretString,
        kind: EntityKind,
        entity_ids: &[i64],
        since: i64,
        page: u32,
    ) -> Result<(Vec<FoundNote>, bool), AmoError> {
        let mut path = format!(
            "/api/v4/{}/notes?filter[note_type][]=common&filter[updated_at][from]={since}&limit={PAGE}&page={page}",
            kind.plural()
        );
        for id in entity_ids {
            path.push_str(&format!("&filter[entity_id][]={id}"));
        }
        let answer: NotesAnswer = self
            .call::<Option<NotesAnswer>, _>(domain, token, Method::GET, &path, None::<&()>)
            .await?
            .unwrap_or_default();
        let more = answer.links.has_next();
        let notes = answer
            .embedded
            .notes
            .into_iter()
            .map(|n| FoundNote {
                id: n.id,
                entity_id: n.entity_id,
                text: n
                    .params
                    .as_ref()
                    .and_then(|p| p.get("text"))
                    .and_then(|t| t.as_str())
                    .map(str::to_owned),
            })
            .collect();
        Ok((notes, more))
    }
}

/// The notes a 400 names: `validation-errors[].request_id` is our event id
/// (or, when amoCRM counts instead, the position in the batch).
pub fn refused_notes(problem: &Problem, ids: &[i64]) -> Vec<(i64, String)> {
    let Some(serde_json::Value::Array(items)) = &problem.validation_errors else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let rid = match &item["request_id"] {
                serde_json::Value::String(s) => s.parse::<i64>().ok()?,
                serde_json::Value::Number(n) => n.as_i64()?,
                _ => return None,
            };
            let id = if ids.contains(&rid) {
                rid
            } else {
                *ids.get(usize::try_from(rid).ok()?)?
            };
            let reason = item["errors"]
                .as_array()
                .map(|errors| {
                    errors
                        .iter()
                        .map(|e| {
                            format!(
                                "{} {}",
                                e["path"].as_str().unwrap_or_default(),
                                e["detail"].as_str().unwrap_or_default()
                            )
                            .trim()
                            .to_owned()
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            Some((id, reason))
        })
        .collect()
}

#[derive(Debug, Deserialize, Default)]
struct NotesAnswer {
    #[serde(default, rename = "_embedded")]
    embedded: NotesEmbedded,
    #[serde(default, rename = "_links")]
    links: super::Links,
}

#[derive(Debug, Deserialize, Default)]
struct NotesEmbedded {
    #[serde(default)]
    notes: Vec<NoteItem>,
}

#[derive(Debug, Deserialize)]
struct NoteItem {
    id: i64,
    #[serde(default)]
    entity_id: Option<i64>,
    /// Our request id echoed back (a string; a number is read too).
    #[serde(default)]
    request_id: Option<serde_json::Value>,
    #[serde(default)]
    params: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validation_error_names_notes_by_request_id_or_position() {
        let problem = Problem::parse(
            br#"{"validation-errors":[{"request_id":"702","errors":[{"code":"NotSupportedChoice","path":"entity_id","detail":"Entity not found"}]},{"request_id":"0","errors":[]}],"title":"Bad Request","status":400}"#,
        );
        let named = refused_notes(&problem, &[701, 702, 703]);
        assert_eq!(
            named,
            vec![
                (702, "entity_id Entity not found".into()),
                (701, String::new())
            ]
        );
        assert!(refused_notes(&Problem::default(), &[1]).is_empty());
    }
}
