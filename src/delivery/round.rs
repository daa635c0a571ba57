//! A round: the claimed events' notes rendered once (with the card's last
//! seen state moved forward in the same transaction), then sent by kind.

use std::collections::HashMap;

use chrono_tz::Tz;
use sqlx::types::Json;

use super::{retry::stops_the_account, AccountRef, Claimed, Next, Worker, BATCH};
use crate::{
    amocrm::directory::{self, Directory, Needs},
    amocrm::hooks::{Action, EntityKind, Snapshot},
    notes::{self, Lang},
};

impl Worker {
    /// Renders, checks and sends one round of claimed events.
    pub(super) async fn round(
        &self,
        account: &AccountRef,
        mut events: Vec<Claimed>,
    ) -> anyhow::Result<Next> {
        let ids: Vec<i64> = events.iter().map(|e| e.event_id).collect();
        if events.iter().any(|e| e.note_text.is_none()) {
            let mut dir = directory::load(&self.pool, account.account_id).await?;
            let needs = needs_of(events.iter().filter(|e| e.note_text.is_none()));
            if let Err(e) = directory::refresh_for(
                &self.pool,
                &self.api,
                &self.tokens,
                account.account_id,
                &account.domain,
                &mut dir,
                &needs,
            )
            .await
            {
                if stops_the_account(&e) {
                    // Sending would fail the same way.
                    return self.failed_call(account, &ids, e).await;
                }
                // Names are a nicety: the notes show ids instead.
                tracing::warn!(error = %e, "users or pipelines unavailable; notes name ids");
                self.record(account.account_id, 0, Some(&e.to_string()))
                    .await?;
            }
            self.render(account, &mut events, &dir).await?;
        }

        // Skipped events are finished; what is left has a text to deliver.
        events.retain(|e| e.note_text.is_some());
        let mut by_kind: HashMap<EntityKind, Vec<Claimed>> = HashMap::new();
        for event in events {
            by_kind.entry(event.entity_type).or_default().push(event);
        }
        let mut kinds: Vec<_> = by_kind.into_iter().collect();
        kinds.sort_by_key(|(k, _)| k.as_str());
        let mut unsent: Vec<i64> = kinds
            .iter()
            .flat_map(|(_, v)| v.iter().map(|e| e.event_id))
            .collect();
        for (kind, events) in kinds {
            let mut to_send = Vec::new();
            let (check, fresh): (Vec<_>, Vec<_>) = events.into_iter().partition(|e| e.maybe_sent);
            if !check.is_empty() {
                match self.already_delivered(account, kind, &check).await {
                    Ok(found) => {
                        self.mark_delivered(account.account_id, &found).await?;
                        let found_ids: Vec<i64> = found.iter().map(|(id, _)| *id).collect();
                        unsent.retain(|id| !found_ids.contains(id));
                        to_send.extend(
                            check
                                .into_iter()
                                .filter(|e| !found_ids.contains(&e.event_id)),
                        );
                    }
                    Err(e) => {
                        self.requeue(&unsent).await?;
                        let check_ids: Vec<i64> = check.iter().map(|e| e.event_id).collect();
                        return self.failed_call(account, &check_ids, e).await;
                    }
                }
            }
            to_send.extend(fresh);
            for chunk in to_send.chunks(BATCH) {
                let chunk_ids: Vec<i64> = chunk.iter().map(|e| e.event_id).collect();
                if let Next::Later = self.send(account, kind, chunk).await? {
                    unsent.retain(|id| !chunk_ids.contains(id));
                    self.requeue(&unsent).await?;
                    return Ok(Next::Later);
                }
                unsent.retain(|id| !chunk_ids.contains(id));
            }
        }
        Ok(Next::Continue)
    }

    /// Renders the notes of events that have none yet, and moves each card's
    /// last seen state forward, in one transaction.
    pub(super) async fn render(
        &self,
        account: &AccountRef,
        events: &mut [Claimed],
        dir: &Directory,
    ) -> anyhow::Result<()> {
        let tz = account
            .timezone
            .as_deref()
            .and_then(|t| t.parse::<Tz>().ok())
            .unwrap_or(self.fallback_tz);
        let lang = Lang::for_domain(&account.domain);
        let mut tx = self.pool.begin().await?;

        // The last seen state of every card in the round, in one query.
        let (types, ids): (Vec<&str>, Vec<i64>) = events
            .iter()
            .filter(|e| e.note_text.is_none())
            .map(|e| (e.entity_type.as_str(), e.entity_id))
            .unzip();
        let rows = sqlx::query!(
            r#"select s.entity_type as "entity_type: EntityKind", s.entity_id, s.changed_at,
                      s.snapshot as "snapshot: Json<Snapshot>"
               from entity_states s
               join unnest($2::text[], $3::bigint[]) as k(entity_type, entity_id)
                 on s.entity_type = k.entity_type and s.entity_id = k.entity_id
               where s.account_id = $1"#,
            account.account_id,
            // `as _`: text[] bound from `&str`s, which the macro's type check does
            // not know (it names `String`).
            &types as _,
            &ids,
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut states: HashMap<(EntityKind, i64), (i64, Snapshot)> = rows
            .into_iter()
            .map(|r| ((r.entity_type, r.entity_id), (r.changed_at, r.snapshot.0)))
            .collect();

        // Render in order, moving each card's state forward in memory.
        let mut changed_cards: Vec<(EntityKind, i64)> = Vec::new();
        let (mut note_ids, mut note_texts) = (Vec::new(), Vec::new());
        let (mut skipped_ids, mut skipped_reasons) = (Vec::new(), Vec::new());
        for event in events.iter_mut().filter(|e| e.note_text.is_none()) {
            let key = (event.entity_type, event.entity_id);
            let prev = states.get(&key);
            let cur = &event.snapshot.0;
            let newer = prev.is_none_or(|(at, _)| event.changed_at >= *at);
            let kind = event.entity_type;
            let outcome: Result<String, &str> = match event.action {
                Action::Add => Ok(notes::added(
                    lang,
                    kind,
                    event.entity_id,
                    cur,
                    dir,
                    tz,
                    event.changed_at,
                )),
                _ if !newer => Err("superseded: a newer change of this card was already handled"),
                _ => {
                    let changes = notes::diff(kind, prev.map(|(_, s)| s), cur, dir);
                    if changes.is_empty() {
                        Err("nothing visible changed")
                    } else {
                        Ok(notes::changed(
                            lang,
                            kind,
                            event.entity_id,
                            cur,
                            &changes,
                            tz,
                            event.changed_at,
                        ))
                    }
                }
            };
            if newer {
                states.insert(key, (event.changed_at, cur.clone()));
                if !changed_cards.contains(&key) {
                    changed_cards.push(key);
                }
            }
            match outcome {
                Ok(text) => {
                    note_ids.push(event.event_id);
                    note_texts.push(text.clone());
                    event.note_text = Some(text);
                }
                Err(reason) => {
                    skipped_ids.push(event.event_id);
                    skipped_reasons.push(reason);
                }
            }
        }

        // Write it all back in three statements.
        let (mut c_types, mut c_ids, mut c_ats, mut c_snaps) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for key in &changed_cards {
            if let Some((at, snap)) = states.get(key) {
                c_types.push(key.0.as_str());
                c_ids.push(key.1);
                c_ats.push(*at);
                c_snaps.push(Json(snap.clone()));
            }
        }
        sqlx::query!(
            "insert into entity_states (account_id, entity_type, entity_id, changed_at, snapshot)
             select $1, * from unnest($2::text[], $3::bigint[], $4::bigint[], $5::jsonb[])
             on conflict (account_id, entity_type, entity_id) do update
             set changed_at = excluded.changed_at, snapshot = excluded.snapshot
             where entity_states.changed_at <= excluded.changed_at",
            account.account_id,
            // `as _`: text[] from `&str`s and jsonb[] from `Json`s (see above).
            &c_types as _,
            &c_ids,
            &c_ats,
            &c_snaps as _,
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "update hook_events e set note_text = n.text
             from unnest($1::bigint[], $2::text[]) as n(event_id, text)
             where e.event_id = n.event_id",
            &note_ids,
            &note_texts,
        )
        .execute(&mut *tx)
        .await?;
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
        tx.commit().await?;
        Ok(())
    }
}

fn needs_of<'a>(events: impl Iterator<Item = &'a Claimed>) -> Needs {
    let mut needs = Needs::default();
    for e in events {
        let s = &e.snapshot.0;
        needs.users.extend(s.responsible_user_id);
        needs.users.extend(s.old_responsible_user_id);
        if e.entity_type == EntityKind::Lead && e.action != Action::Add {
            needs.statuses.insert((s.pipeline_id, s.status_id));
            if s.old_status_id.is_some() || s.old_pipeline_id.is_some() {
                needs
                    .statuses
                    .insert((s.old_pipeline_id.or(s.pipeline_id), s.old_status_id));
            }
        }
    }
    needs
}
