//! A round: the claimed events' notes rendered once (see `render`), then
//! sent by kind.

use std::collections::HashMap;

use super::{gate::RoundSlot, AccountRef, Claimed, Next, Worker, BATCH};
use crate::amocrm::hooks::EntityKind;

impl Worker {
    /// Renders, checks and sends one round of claimed events. `slot` is
    /// the round's place in the gate, given back while a call to amoCRM is
    /// slow (see `gate.rs`).
    pub(super) async fn round(
        &self,
        account: &AccountRef,
        mut events: Vec<Claimed>,
        slot: &mut RoundSlot<'_>,
    ) -> anyhow::Result<Next> {
        if events.iter().any(|e| e.note_text.is_none()) {
            let known = match self.prepare(account, &events, slot).await? {
                Ok(known) => known,
                Err(next) => return Ok(next),
            };
            self.render(account, &mut events, known).await?;
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
                match slot
                    .away(self.already_delivered(account, kind, &check))
                    .await
                {
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
                if let Next::Later = self.send(account, kind, chunk, slot).await? {
                    unsent.retain(|id| !chunk_ids.contains(id));
                    self.requeue(&unsent).await?;
                    return Ok(Next::Later);
                }
                unsent.retain(|id| !chunk_ids.contains(id));
            }
        }
        Ok(Next::Continue)
    }
}
