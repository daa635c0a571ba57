//! amoCRM's notes API: sending a batch, and looking up notes that may
//! already exist after an uncertain send.

use std::collections::HashMap;

use chrono::Utc;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::{claim::claim_ttl, AccountRef, Claimed, Next, Worker, LOOKUP_LIMIT, LOOKUP_PAGES};
use crate::{amocrm::AmoError, hooks::EntityKind, tokens::CallError};

impl Worker {
    /// Sends one batch of notes for cards of one kind.
    pub(super) async fn send(
        &self,
        account: &AccountRef,
        kind: EntityKind,
        chunk: &[Claimed],
    ) -> anyhow::Result<Next> {
        let ids: Vec<i64> = chunk.iter().map(|e| e.event_id).collect();
        if !self.renew(account.account_id).await? {
            self.requeue(&ids).await?;
            return Ok(Next::Later);
        }
        sqlx::query(
            "update hook_events set maybe_sent = true, sent_at = coalesce(sent_at, now()),
                 locked_until = now() + $2, locked_by = $3
             where event_id = any($1)",
        )
        .bind(&ids)
        .bind(claim_ttl())
        .bind(&self.owner)
        .execute(&self.pool)
        .await?;
        let body: Vec<serde_json::Value> = chunk
            .iter()
            .map(|e| {
                json!({
                    "entity_id": e.entity_id,
                    "note_type": "common",
                    "params": { "text": e.note_text },
                    "request_id": e.event_id.to_string(),
                })
            })
            .collect();
        let path = format!("/api/v4/{}/notes", kind.plural());
        let result: Result<Option<NotesAnswer>, CallError> = self
            .tokens
            .call(account.account_id, |token| {
                let (body, path) = (&body, &path);
                async move {
                    self.api
                        .call(&account.domain, &token, Method::POST, path, Some(body))
                        .await
                }
            })
            .await;
        match result {
            Ok(answer) => {
                let by_request: HashMap<String, i64> = answer
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
                    .collect();
                let done: Vec<(i64, Option<i64>)> = ids
                    .iter()
                    .map(|id| (*id, by_request.get(&id.to_string()).copied()))
                    .collect();
                self.mark_delivered(account.account_id, &done).await?;
                sqlx::query(
                    "update accounts set paused_until = null, pause_reason = null
                     where account_id = $1 and paused_until is not null",
                )
                .bind(account.account_id)
                .execute(&self.pool)
                .await?;
                tracing::debug!(notes = ids.len(), kind = kind.as_str(), "notes delivered");
                Ok(Next::Continue)
            }
            Err(CallError::Amo(AmoError::Refused {
                status: 400,
                problem,
            })) => {
                // A validation error names the notes amoCRM refused (by our
                // request_id, or by position); those fail, the rest go again.
                let named = refused_notes(&problem, &ids);
                if named.is_empty() {
                    self.fail(
                        account.account_id,
                        &ids,
                        &format!("amoCRM refused the notes (400): {problem}"),
                    )
                    .await?;
                } else {
                    for (id, reason) in &named {
                        self.fail(
                            account.account_id,
                            &[*id],
                            &format!("amoCRM refused the note (400): {reason}"),
                        )
                        .await?;
                    }
                    let rest: Vec<i64> = ids
                        .iter()
                        .copied()
                        .filter(|id| !named.iter().any(|(n, _)| n == id))
                        .collect();
                    sqlx::query(
                        "update hook_events set state = 'pending', maybe_sent = false, locked_until = null,
                             next_attempt_at = now()
                         where event_id = any($1)",
                    )
                    .bind(&rest)
                    .execute(&self.pool)
                    .await?;
                }
                Ok(Next::Continue)
            }
            Err(e) => {
                if refused_outright(&e) {
                    // Nothing of this request was created, and before it
                    // each note was either never sent or proved absent by
                    // this round's lookup.
                    sqlx::query(
                        "update hook_events set maybe_sent = false where event_id = any($1)",
                    )
                    .bind(&ids)
                    .execute(&self.pool)
                    .await?;
                }
                self.failed_call(account, &ids, e).await
            }
        }
    }

    /// For events whose note may already exist: the ones amoCRM has, found
    /// by card and exact text.
    pub(super) async fn already_delivered(
        &self,
        account: &AccountRef,
        kind: EntityKind,
        events: &[Claimed],
    ) -> Result<Vec<(i64, Option<i64>)>, CallError> {
        let mut found = Vec::new();
        // amoCRM filters by at most 10 entity ids per request.
        for chunk in events.chunks(10) {
            let since = chunk
                .iter()
                .filter_map(|e| e.sent_at)
                .min()
                .unwrap_or_else(Utc::now)
                - chrono::Duration::minutes(5);
            // The filters as amoCRM documents them (developers.kommo.com,
            // "notes by entity"; the SDK's NotesFilter): note_type and
            // entity_id are arrays, updated_at a range, at most 250 a page.
            let mut query = format!(
                "filter[note_type][]=common&filter[updated_at][from]={}&limit={LOOKUP_LIMIT}",
                since.timestamp()
            );
            for e in chunk {
                query.push_str(&format!("&filter[entity_id][]={}", e.entity_id));
            }
            let mut existing = Vec::new();
            for page in 1..=LOOKUP_PAGES + 1 {
                if page > LOOKUP_PAGES {
                    // Not proved absent: better a late note than a second one.
                    return Err(CallError::Amo(AmoError::Unexpected(format!(
                        "more than {} notes to look through",
                        LOOKUP_PAGES as usize * LOOKUP_LIMIT
                    ))));
                }
                let path = format!("/api/v4/{}/notes?{query}&page={page}", kind.plural());
                let answer: Option<NotesAnswer> = self
                    .tokens
                    .call(account.account_id, |token| {
                        let path = &path;
                        async move {
                            self.api
                                .call(&account.domain, &token, Method::GET, path, None::<&()>)
                                .await
                        }
                    })
                    .await?;
                // 204 (no content) is amoCRM's empty page.
                let notes = answer.map(|a| a.embedded.notes).unwrap_or_default();
                let last = notes.len() < LOOKUP_LIMIT;
                existing.extend(notes);
                if last {
                    break;
                }
            }
            for event in chunk {
                let text = event.note_text.as_deref();
                if let Some(note) = existing
                    .iter()
                    .find(|n| n.entity_id == Some(event.entity_id) && n.text() == text)
                {
                    tracing::info!(
                        event.id = event.event_id,
                        "note already in amoCRM; not sending it again"
                    );
                    found.push((event.event_id, Some(note.id)));
                }
            }
        }
        Ok(found)
    }
}

/// An answer that says amoCRM created nothing: a 429, a block, a refusal,
/// or a token that could not be had (before the request, or after its 401).
/// Timeouts, 5xx and odd 2xx answers may hide created notes.
pub(super) fn refused_outright(error: &CallError) -> bool {
    matches!(
        error,
        CallError::Token(_)
            | CallError::Amo(
                AmoError::RateLimited
                    | AmoError::Blocked
                    | AmoError::Refused { .. }
                    | AmoError::Unauthorized(_)
                    | AmoError::Budget(_)
            )
    )
}

/// The notes a 400 names: `validation-errors[].request_id` is our event id
/// (or, when amoCRM counts instead, the position in the batch).
fn refused_notes(problem: &crate::amocrm::Problem, ids: &[i64]) -> Vec<(i64, String)> {
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

impl NoteItem {
    fn text(&self) -> Option<&str> {
        self.params.as_ref()?.get("text")?.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amocrm::Problem;

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
