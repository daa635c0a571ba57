//! What a note would say under some settings, rendered from one of the
//! account's own stored events: the settings' live preview. Nothing is
//! sent or stored; the names come from the account's directory as
//! delivery last left it.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use sqlx::{types::Json, PgPool};

use super::{
    apply::{next_state, Note},
    NoteSettings,
};
use crate::{
    amocrm::{
        directory,
        hooks::{Action, EntityKind, Snapshot},
    },
    notes::{History, Said, Words},
};

/// The preview of one event's note.
#[derive(Debug, Serialize)]
pub struct Preview {
    pub event_id: i64,
    pub entity_type: EntityKind,
    pub entity_id: i64,
    pub action: Action,
    pub received_at: DateTime<Utc>,
    /// The note's text, or None when the settings give no note.
    pub note: Option<String>,
    /// Why there would be no note (a filter's reason among them).
    pub skipped: Option<&'static str>,
}

/// The note of the account's event `event_id` (else its latest one) under
/// `settings`, read against the card's event before it. None when the
/// account has no such event (or does not exist).
pub async fn preview(
    pool: &PgPool,
    account_id: i64,
    event_id: Option<i64>,
    settings: &NoteSettings,
    fallback_tz: Tz,
) -> sqlx::Result<Option<Preview>> {
    let Some(account) = sqlx::query!(
        "select domain, timezone, note_lang from accounts where account_id = $1",
        account_id,
    )
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let Some(event) = sqlx::query!(
        r#"select event_id, entity_type as "entity_type: EntityKind", entity_id,
                  action as "action: Action", changed_at,
                  snapshot as "snapshot: Json<Snapshot>", received_at
           from hook_events
           where account_id = $1 and ($2::bigint is null or event_id = $2)
           order by received_at desc, event_id desc
           limit 1"#,
        account_id,
        event_id,
    )
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let prev = sqlx::query_scalar!(
        r#"select snapshot as "snapshot: Json<Snapshot>"
           from hook_events
           where account_id = $1 and entity_type = $2 and entity_id = $3 and event_id < $4
           order by event_id desc
           limit 1"#,
        account_id,
        event.entity_type.as_str(),
        event.entity_id,
        event.event_id,
    )
    .fetch_optional(pool)
    .await?
    .map(|s| s.0);

    let dir = directory::load(pool, account_id).await?;
    let words = Words {
        lang: settings.lang(account.note_lang.as_deref(), &account.domain),
        tz: account
            .timezone
            .as_deref()
            .and_then(|t| t.parse().ok())
            .unwrap_or(fallback_tz),
        dir: &dir,
    };
    let cur = &event.snapshot.0;
    let prev = prev.as_ref();
    let state = next_state(prev, cur);
    let note = Note {
        words: &words,
        settings,
        domain: &account.domain,
        kind: event.entity_type,
        id: event.entity_id,
        at: event.changed_at,
        cur,
        state: &state,
    };
    // As delivery would read it, had this event been the card's next one.
    let history = History::of(prev, None);
    let (outcome, _) = note.write(event.action, history, Said::default(), prev);
    let (note, skipped) = match outcome {
        Ok(text) => (Some(text), None),
        Err(skipped) => (None, Some(skipped.reason())),
    };
    Ok(Some(Preview {
        event_id: event.event_id,
        entity_type: event.entity_type,
        entity_id: event.entity_id,
        action: event.action,
        received_at: event.received_at,
        note,
        skipped,
    }))
}
