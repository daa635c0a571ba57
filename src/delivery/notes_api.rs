//! Sending a batch of notes, and looking up notes that may already exist
//! after an uncertain send (the calls themselves are in `amocrm::notes`).

use chrono::Utc;

use super::{claim::claim_ttl, gate::RoundSlot, AccountRef, Claimed, Next, Worker, LOOKUP_PAGES};
use crate::{
    amocrm::{
        hooks::EntityKind,
        notes::{self, NewNote},
        AmoError,
    },
    tokens::CallError,
};

impl Worker {
    /// Sends one batch of notes for cards of one kind.
    pub(super) async fn send(
        &self,
        account: &AccountRef,
        kind: EntityKind,
        chunk: &[Claimed],
        slot: &mut RoundSlot<'_>,
    ) -> anyhow::Result<Next> {
        let ids: Vec<i64> = chunk.iter().map(|e| e.event_id).collect();
        if !self.renew(account.account_id).await? {
            self.requeue(&ids).await?;
            return Ok(Next::Later);
        }
        // Notes rendered in this round carry their mark already (`render`).
        if !chunk.iter().all(|e| e.marked) {
            sqlx::query!(
                "update hook_events set maybe_sent = true, sent_at = coalesce(sent_at, now()),
                     locked_until = now() + $2, locked_by = $3
                 where event_id = any($1)",
                &ids,
                // `as _`: an interval (see `renew_claims`).
                claim_ttl() as _,
                &self.owner,
            )
            .execute(&self.pool)
            .await?;
        }
        let notes: Vec<NewNote> = chunk
            .iter()
            .map(|e| NewNote {
                entity_id: e.entity_id,
                text: e.note_text.as_deref().unwrap_or_default(),
                request_id: e.event_id.to_string(),
            })
            .collect();
        let result = slot
            .away(self.tokens.call(account.account_id, |token| {
                let notes = &notes;
                async move {
                    self.api
                        .add_notes(&account.domain, &token, kind, notes)
                        .await
                }
            }))
            .await;
        match result {
            Ok(by_request) => {
                let done: Vec<(i64, Option<i64>)> = ids
                    .iter()
                    .map(|id| (*id, by_request.get(&id.to_string()).copied()))
                    .collect();
                self.mark_delivered(account.account_id, &done).await?;
                if account.paused {
                    sqlx::query!(
                        "update accounts set paused_until = null, pause_reason = null
                         where account_id = $1 and paused_until is not null",
                        account.account_id,
                    )
                    .execute(&self.pool)
                    .await?;
                }
                tracing::debug!(notes = ids.len(), kind = kind.as_str(), "notes delivered");
                Ok(Next::Continue)
            }
            Err(CallError::Amo(AmoError::Refused {
                status: 400,
                problem,
            })) => {
                // A validation error names the notes amoCRM refused (by our
                // request_id, or by position); those fail, the rest go again.
                let named = notes::refused_notes(&problem, &ids);
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
                    sqlx::query!(
                        "update hook_events set state = 'pending', maybe_sent = false, locked_until = null,
                             next_attempt_at = now()
                         where event_id = any($1)",
                        &rest,
                    )
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
                    sqlx::query!(
                        "update hook_events set maybe_sent = false where event_id = any($1)",
                        &ids,
                    )
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
            let since = since.timestamp();
            let cards: Vec<i64> = chunk.iter().map(|e| e.entity_id).collect();
            let mut existing = Vec::new();
            for page in 1..=LOOKUP_PAGES + 1 {
                if page > LOOKUP_PAGES {
                    // Not proved absent: better a late note than a second one.
                    return Err(CallError::Amo(AmoError::Unexpected(format!(
                        "more than {} notes to look through",
                        LOOKUP_PAGES as usize * notes::PAGE
                    ))));
                }
                let (found, more) = self
                    .tokens
                    .call(account.account_id, |token| {
                        let cards = &cards;
                        async move {
                            self.api
                                .common_notes(&account.domain, &token, kind, cards, since, page)
                                .await
                        }
                    })
                    .await?;
                existing.extend(found);
                if !more {
                    break;
                }
            }
            for event in chunk {
                let text = event.note_text.as_deref();
                if let Some(note) = existing
                    .iter()
                    .find(|n| n.entity_id == Some(event.entity_id) && n.text.as_deref() == text)
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
