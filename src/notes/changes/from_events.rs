//! A card seen for the first time: its note's changes from the hook's own
//! facts and from amoCRM's events of that change.

use super::*;

/// The hook's own facts, then what amoCRM's events add: name, budget,
/// fields, and the stage or responsible where the hook had no old value.
pub(super) fn with_events(
    w: &Words,
    kind: EntityKind,
    cur: &Snapshot,
    mut changes: Vec<Change>,
    events: &[CardChange],
) -> Vec<Change> {
    let has = |changes: &[Change], key: &str| changes.iter().any(|c| c.key == key);
    for event in events {
        match event {
            CardChange::Name { before, after } => {
                changes.push(change(
                    "name",
                    Some(or_empty(before.as_deref().unwrap_or_default())),
                    or_empty(after.as_deref().unwrap_or(&cur.name)),
                ));
            }
            CardChange::Sale { before, after } if kind == EntityKind::Lead => {
                changes.push(change(
                    "price",
                    Some(price(w, before.as_deref())),
                    price(w, after.as_deref().or(cur.price.as_deref())),
                ));
            }
            CardChange::Stage { before, after } if kind == EntityKind::Lead => {
                if has(&changes, "status") {
                    continue;
                }
                let as_stage = |s: &(Option<i64>, i64)| Stage {
                    pipeline: s.0,
                    status: s.1,
                };
                if let Some(new) = after.as_ref().map(as_stage).or_else(|| Stage::of(cur)) {
                    changes.push(stage_change(w, before.as_ref().map(as_stage), new));
                }
            }
            CardChange::Responsible { before, after } => {
                if has(&changes, "responsible") {
                    continue;
                }
                changes.push(change(
                    "responsible",
                    Some(w.user(*before)),
                    w.user(after.or(cur.responsible_user_id)),
                ));
            }
            CardChange::Field {
                field_id,
                before,
                after,
            } => {
                let id = field_id.to_string();
                let given = cur
                    .custom_fields
                    .iter()
                    .find(|f| f.id == id)
                    .map(|f| f.name.as_str());
                changes.push(Change {
                    key: "custom",
                    field: w.field_name(kind, &id, given),
                    field_id: Some(id.clone()),
                    old: Some(w.items(kind, &id, before)),
                    new: w.items(kind, &id, after),
                });
            }
            CardChange::Sale { .. } | CardChange::Stage { .. } => {}
        }
    }
    changes
}
