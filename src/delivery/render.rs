//! Rendering a round's notes: what amohook knows of each card (its last
//! seen state; for a card seen for the first time, amoCRM's events of the
//! change), the names the notes need, then each note rendered once, with
//! the cards' last seen state moved forward in the same transaction.

use std::collections::{HashMap, HashSet};

use chrono_tz::Tz;
use sqlx::types::Json;

use super::{gate::RoundSlot, retry::stops_the_account, AccountRef, Claimed, Next, Worker};
use crate::{
    account_settings::{
        apply::{next_state, Note, Skipped},
        store::InForce,
    },
    amocrm::{
        directory::{self, Directory, Needs},
        events::{self, CardChange},
        hooks::{Action, EntityKind, Snapshot},
    },
    notes::{History, Said, Words},
};

type Card = (EntityKind, i64);

/// What a round's notes are rendered from.
pub(super) struct Known {
    dir: Directory,
    /// Each card's last seen state, its time, and what notes said of it.
    states: HashMap<Card, (i64, Snapshot, Said)>,
    /// For updates of cards seen for the first time: amoCRM's events of
    /// the change, or `None` when they could not be asked.
    events: HashMap<Card, Option<Vec<CardChange>>>,
    /// The account's settings each event follows.
    settings: InForce,
}

impl Worker {
    /// Loads what the notes of `events` are rendered from. `Err(next)` when
    /// the account cannot be called at all (the events wait).
    pub(super) async fn prepare(
        &self,
        account: &AccountRef,
        events: &[Claimed],
        slot: &mut RoundSlot<'_>,
    ) -> anyhow::Result<Result<Known, Next>> {
        let ids: Vec<i64> = events.iter().map(|e| e.event_id).collect();
        let todo: Vec<&Claimed> = events.iter().filter(|e| e.note_text.is_none()).collect();
        let states = self.states(account.account_id, &todo).await?;

        // Updates of cards with no full state, the first of each card in
        // the round (later ones follow the state the first leaves).
        let mut full: HashSet<Card> = states
            .iter()
            .filter(|(_, (_, s, _))| !s.partial)
            .map(|(k, _)| *k)
            .collect();
        let mut first_seen: HashMap<EntityKind, Vec<(i64, i64)>> = HashMap::new();
        for e in &todo {
            let card = (e.entity_type, e.entity_id);
            if e.action == Action::Update && !full.contains(&card) {
                first_seen
                    .entry(e.entity_type)
                    .or_default()
                    .push((e.entity_id, e.changed_at));
            }
            if !e.snapshot.0.partial {
                full.insert(card);
            }
        }
        let mut card_events = HashMap::new();
        for (kind, cards) in first_seen {
            let found = slot
                .away(events::changes(
                    &self.api,
                    &self.tokens,
                    account.account_id,
                    &account.domain,
                    kind,
                    &cards,
                ))
                .await;
            let mut found = match found {
                Ok(found) => Some(found),
                Err(e) if stops_the_account(&e) => {
                    return Ok(Err(self.failed_call(account, &ids, e).await?));
                }
                Err(e) => {
                    // The notes say the cards changed, and list only what
                    // the hooks themselves show.
                    tracing::warn!(error = %e, "amoCRM's events unavailable; notes list no changes");
                    self.record(account.account_id, 0, Some(&e.to_string()))
                        .await?;
                    None
                }
            };
            for (id, _) in cards {
                let changes = found.as_mut().map(|f| f.remove(&id).unwrap_or_default());
                card_events.insert((kind, id), changes);
            }
        }

        let settings = match todo.iter().map(|e| e.received_at).min() {
            Some(since) if account.settings_version > 0 => {
                InForce::load(&self.pool, account.account_id, since).await?
            }
            _ => InForce::default(),
        };
        let mut dir = directory::load(&self.pool, account.account_id).await?;
        let mut needs = needs_of(&todo, &card_events);
        if settings.names_authors() {
            needs.users.extend(
                todo.iter()
                    .filter_map(|e| e.snapshot.0.modified_user_id)
                    .filter(|u| *u != 0),
            );
        }
        if let Err(e) = slot
            .away(directory::refresh_for(
                &self.pool,
                &self.api,
                &self.tokens,
                account.account_id,
                &account.domain,
                &mut dir,
                &needs,
            ))
            .await
        {
            if stops_the_account(&e) {
                // Sending would fail the same way.
                return Ok(Err(self.failed_call(account, &ids, e).await?));
            }
            // Names are a nicety: the notes show ids and values as they came.
            tracing::warn!(error = %e, "account directory unavailable; notes name ids");
            self.record(account.account_id, 0, Some(&e.to_string()))
                .await?;
        }
        Ok(Ok(Known {
            dir,
            states,
            events: card_events,
            settings,
        }))
    }

    /// The last seen state of every card of `events`, in one query.
    async fn states(
        &self,
        account_id: i64,
        events: &[&Claimed],
    ) -> sqlx::Result<HashMap<Card, (i64, Snapshot, Said)>> {
        let (types, ids): (Vec<&str>, Vec<i64>) = events
            .iter()
            .map(|e| (e.entity_type.as_str(), e.entity_id))
            .unzip();
        let rows = sqlx::query!(
            r#"select s.entity_type as "entity_type: EntityKind", s.entity_id, s.changed_at,
                      s.snapshot as "snapshot: Json<Snapshot>", s.said as "said: Json<Said>"
               from entity_states s
               join unnest($2::text[], $3::bigint[]) as k(entity_type, entity_id)
                 on s.entity_type = k.entity_type and s.entity_id = k.entity_id
               where s.account_id = $1"#,
            account_id,
            // `as _`: text[] bound from `&str`s, which the macro's type check
            // does not know (it names `String`).
            &types as _,
            &ids,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let said = r.said.map(|s| s.0).unwrap_or_default();
                (
                    (r.entity_type, r.entity_id),
                    (r.changed_at, r.snapshot.0, said),
                )
            })
            .collect())
    }

    /// Renders the notes of events that have none yet, and moves each card's
    /// last seen state forward, in one transaction. The account's lease
    /// keeps other processes off these cards meanwhile.
    pub(super) async fn render(
        &self,
        account: &AccountRef,
        events: &mut [Claimed],
        known: Known,
    ) -> anyhow::Result<()> {
        let Known {
            dir,
            mut states,
            events: card_events,
            settings,
        } = known;
        let tz = account
            .timezone
            .as_deref()
            .and_then(|t| t.parse::<Tz>().ok())
            .unwrap_or(self.fallback_tz);

        // Render in order, moving each card's state forward in memory.
        let mut changed_cards: Vec<Card> = Vec::new();
        let (mut note_ids, mut note_texts) = (Vec::new(), Vec::new());
        let (mut skipped_ids, mut skipped_reasons) = (Vec::new(), Vec::new());
        for event in events.iter_mut().filter(|e| e.note_text.is_none()) {
            let chosen = settings.at(event.received_at);
            let words = Words {
                lang: chosen.lang(account.note_lang.as_deref(), &account.domain),
                tz,
                dir: &dir,
            };
            let key = (event.entity_type, event.entity_id);
            let prev = states.get(&key).map(|(_, s, _)| s);
            let said = states
                .get(&key)
                .map(|(_, _, said)| *said)
                .unwrap_or_default();
            let cur = &event.snapshot.0;
            let newer = states
                .get(&key)
                .is_none_or(|(at, _, _)| event.changed_at >= *at);
            let next = next_state(prev, cur);
            let note = Note {
                words: &words,
                settings: chosen,
                domain: &account.domain,
                kind: event.entity_type,
                id: event.entity_id,
                at: event.changed_at,
                cur,
                state: &next,
            };
            // What the note says, and what notes have said of the card after it.
            let (outcome, said_now) = if !newer && event.action != Action::Add {
                (
                    Err(Skipped::Reason(
                        "superseded: a newer change of this card was already handled",
                    )),
                    said,
                )
            } else {
                let events = card_events.get(&key).and_then(|e| e.as_deref());
                let history = History::of(prev, events);
                note.write(event.action, history, said, prev)
            };
            if newer {
                states.insert(key, (event.changed_at, next, said_now));
                if !changed_cards.contains(&key) {
                    changed_cards.push(key);
                }
            }
            match outcome {
                Ok(text) => {
                    note_ids.push(event.event_id);
                    note_texts.push(text.clone());
                    event.note_text = Some(text);
                    event.marked = true;
                }
                Err(skipped) => {
                    if let Skipped::Filtered(filter) = skipped {
                        metrics::counter!("amohook_events_filtered_total", "filter" => filter.label())
                            .increment(1);
                    }
                    skipped_ids.push(event.event_id);
                    skipped_reasons.push(skipped.reason());
                }
            }
        }

        // Write it all back in three statements.
        let (mut c_types, mut c_ids, mut c_ats, mut c_snaps, mut c_said) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for key in &changed_cards {
            if let Some((at, snap, said)) = states.get(key) {
                c_types.push(key.0.as_str());
                c_ids.push(key.1);
                c_ats.push(*at);
                c_snaps.push(Json(snap.clone()));
                c_said.push(Json(*said));
            }
        }
        // Each note's text and its `maybe_sent` mark (it is sent next) in
        // one write: the send that follows does not write the row again
        // before its request (see `notes_api::send`).
        let mut tx = self.pool.begin().await?;
        if !c_ids.is_empty() {
            sqlx::query!(
                "insert into entity_states (account_id, entity_type, entity_id, changed_at, snapshot, said)
                 select $1, * from unnest($2::text[], $3::bigint[], $4::bigint[], $5::jsonb[], $6::jsonb[])
                 on conflict (account_id, entity_type, entity_id) do update
                 set changed_at = excluded.changed_at, snapshot = excluded.snapshot,
                     said = excluded.said
                 where entity_states.changed_at <= excluded.changed_at",
                account.account_id,
                // `as _`: text[] from `&str`s and jsonb[] from `Json`s (see above).
                &c_types as _,
                &c_ids,
                &c_ats,
                &c_snaps as _,
                &c_said as _,
            )
            .execute(&mut *tx)
            .await?;
        }
        if !note_ids.is_empty() {
            sqlx::query!(
                "update hook_events e set note_text = n.text, maybe_sent = true,
                     sent_at = coalesce(e.sent_at, now())
                 from unnest($1::bigint[], $2::text[]) as n(event_id, text)
                 where e.event_id = n.event_id",
                &note_ids,
                &note_texts,
            )
            .execute(&mut *tx)
            .await?;
        }
        if !skipped_ids.is_empty() {
            sqlx::query!(
                "update hook_events e set state = 'skipped', last_error = n.reason, finished_at = now(),
                     locked_until = null
                 from unnest($1::bigint[], $2::text[]) as n(event_id, reason)
                 where e.event_id = n.event_id",
                &skipped_ids,
                &skipped_reasons as _,
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// What the round's notes will name: users, stages and custom fields.
fn needs_of(events: &[&Claimed], card_events: &HashMap<Card, Option<Vec<CardChange>>>) -> Needs {
    let mut needs = Needs::default();
    for e in events {
        let s = &e.snapshot.0;
        needs.settings |= e.entity_type == EntityKind::Lead || !s.custom_fields.is_empty();
        needs
            .users
            .extend(s.responsible_user_id.filter(|u| *u != 0));
        needs
            .users
            .extend(s.old_responsible_user_id.filter(|u| *u != 0));
        if e.entity_type == EntityKind::Lead && e.action != Action::Add {
            needs.statuses.insert((s.pipeline_id, s.status_id));
            if s.old_status_id.is_some() || s.old_pipeline_id.is_some() {
                needs
                    .statuses
                    .insert((s.old_pipeline_id.or(s.pipeline_id), s.old_status_id));
            }
        }
        needs.fields.extend(
            s.custom_fields
                .iter()
                .filter_map(|f| f.id.parse().ok())
                .map(|id| (e.entity_type, id)),
        );
    }
    for ((kind, _), changes) in card_events {
        for change in changes.iter().flatten() {
            match change {
                CardChange::Responsible { before, after } => {
                    needs
                        .users
                        .extend(before.iter().chain(after).filter(|u| **u != 0));
                }
                CardChange::Stage { before, after } => {
                    for (p, s) in before.iter().chain(after) {
                        needs.statuses.insert((*p, Some(*s)));
                    }
                }
                CardChange::Field { field_id, .. } => {
                    needs.fields.insert((*kind, *field_id));
                    needs.settings = true;
                }
                CardChange::Name { .. } | CardChange::Sale { .. } => {}
            }
        }
    }
    needs
}
