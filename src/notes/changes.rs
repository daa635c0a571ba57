//! What changed: from the hook's own facts first (`old_status_id`,
//! `old_pipeline_id`, `old_responsible_user_id`), then from the card's last
//! state as amohook saw it, and for a card seen for the first time from
//! amoCRM's events of that change. Nothing is listed that none of these
//! shows.
//!
//! A stage move or a responsible change is left out only when a note
//! already said it ([`Said`]), not when the stored state already shows the
//! new value: a first-seen update whose note could list nothing stores the
//! new stage, and the status hook of that very move, arriving next, must
//! still be noted. And since `old_status_id` persists on later hooks of a
//! card (Kommo's own examples show it on a responsible hook where the stage
//! did not move), a move taken from it for a card seen for the first time
//! is written only when amoCRM's events confirm it.

mod from_events;

use from_events::with_events;

use serde::{Deserialize, Serialize};

use super::{words::Words, Change, EMPTY};
use crate::amocrm::{
    events::CardChange,
    hooks::{Action, EntityKind, Snapshot},
};

/// What amohook's notes have said of a card so far: the stage and the
/// responsible user its latest notes named (`entity_states.said`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Said {
    #[serde(default)]
    pub pipeline: Option<i64>,
    #[serde(default)]
    pub status: Option<i64>,
    #[serde(default)]
    pub responsible: Option<i64>,
}

impl Said {
    /// As if a note had said `snap`'s stage and responsible (what the
    /// migration assumes of cards noted before this was kept).
    pub fn of(snap: &Snapshot) -> Said {
        Said {
            pipeline: snap.pipeline_id,
            status: snap.status_id,
            responsible: snap.responsible_user_id,
        }
    }

    /// After a note about `cur`: an added card's note names its
    /// responsible; a change note what it lists.
    pub fn after(mut self, action: Action, changes: &[Change], cur: &Snapshot) -> Said {
        let listed = |key| changes.iter().any(|c| c.key == key);
        if action == Action::Add || listed("responsible") {
            self.responsible = cur.responsible_user_id.or(self.responsible);
        }
        if listed("status") {
            self.status = cur.status_id.or(self.status);
            self.pipeline = cur.pipeline_id.or(self.pipeline);
        }
        self
    }

    fn stage(&self) -> Option<Stage> {
        Some(Stage {
            pipeline: self.pipeline,
            status: self.status?,
        })
    }
}

/// What amohook knows of a card before this hook.
#[derive(Debug, Clone, Copy)]
pub enum History<'a> {
    /// Its last full state.
    Known(&'a Snapshot),
    /// No full state: the card existed before the install, or only a short
    /// digital-pipeline body was seen (`partial`, which still tells the
    /// stage and responsible). `events` are amoCRM's events of this change;
    /// `None` when they could not be asked (no rights, an error).
    New {
        partial: Option<&'a Snapshot>,
        events: Option<&'a [CardChange]>,
    },
}

impl<'a> History<'a> {
    /// From the card's last seen state (`prev`): known when it is full,
    /// else new, with amoCRM's `events` of the change when they were asked.
    pub fn of(prev: Option<&'a Snapshot>, events: Option<&'a [CardChange]>) -> History<'a> {
        match prev {
            Some(prev) if !prev.partial => History::Known(prev),
            partial => History::New { partial, events },
        }
    }
}

/// What the note of an update says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Changes(Vec<Change>),
    /// The card changed, but what changed is not known: the note says so
    /// and lists nothing.
    Unlisted,
    /// No note; the reason is kept with the event.
    Skip(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stage {
    pipeline: Option<i64>,
    status: i64,
}

impl Stage {
    fn of(snap: &Snapshot) -> Option<Stage> {
        Some(Stage {
            pipeline: snap.pipeline_id,
            status: snap.status_id?,
        })
    }

    /// The same stage; a pipeline that one side does not name is taken to
    /// be the same.
    fn same(self, other: Stage) -> bool {
        self.status == other.status
            && (self.pipeline.is_none()
                || other.pipeline.is_none()
                || self.pipeline == other.pipeline)
    }
}

fn change(key: &'static str, old: Option<String>, new: String) -> Change {
    Change {
        key,
        field: String::new(),
        field_id: None,
        old,
        new,
    }
}

fn stage_change(w: &Words, old: Option<Stage>, new: Stage) -> Change {
    let moved_pipeline = old.is_some_and(|o| {
        o.pipeline.is_some() && new.pipeline.is_some() && o.pipeline != new.pipeline
    });
    change(
        "status",
        old.map(|o| w.stage(o.pipeline, o.status, moved_pipeline)),
        w.stage(new.pipeline, new.status, moved_pipeline),
    )
}

/// The stage move this hook shows. The hook's `old_status_id` (with
/// `old_pipeline_id`, else the same pipeline) is the old stage of this
/// change, noted unless a note already said the card is at the new stage
/// (a status hook and an update hook of one move both arrive when both are
/// subscribed). Without it, the move from the last stage amohook saw, when
/// there is one and no note said the new stage.
fn stage_move(
    w: &Words,
    prev: Option<&Snapshot>,
    said: &Said,
    cur: &Snapshot,
    new_only: bool,
) -> Option<Change> {
    let new = Stage::of(cur)?;
    if said.stage().is_some_and(|s| s.same(new)) {
        return None;
    }
    let old = match cur.old_status_id {
        Some(status) => Some(Stage {
            pipeline: cur.old_pipeline_id.or(cur.pipeline_id),
            status,
        }),
        None => prev.and_then(Stage::of),
    };
    match old {
        Some(old) if old.same(new) => None,
        None if !new_only => None,
        old => Some(stage_change(w, old, new)),
    }
}

/// The responsible change this hook shows, by the same rules as the stage.
fn responsible_move(
    w: &Words,
    prev: Option<&Snapshot>,
    said: &Said,
    cur: &Snapshot,
    new_only: bool,
) -> Option<Change> {
    let new = cur.responsible_user_id?;
    if said.responsible == Some(new) {
        return None;
    }
    match cur
        .old_responsible_user_id
        .or(prev.and_then(|p| p.responsible_user_id))
    {
        Some(old) if old == new => None,
        None if !new_only => None,
        old => Some(change(
            "responsible",
            old.map(|o| w.user(Some(o))),
            w.user(Some(new)),
        )),
    }
}

fn or_empty(s: &str) -> String {
    if s.trim().is_empty() {
        EMPTY.into()
    } else {
        s.to_owned()
    }
}

fn price(w: &Words, p: Option<&str>) -> String {
    w.money(p.filter(|p| !p.is_empty()).unwrap_or("0"), None)
}

/// The note's changes for a `status`, `responsible` or `update` hook;
/// `said` is what notes said of the card so far.
pub fn changes(
    w: &Words,
    kind: EntityKind,
    action: Action,
    history: History,
    said: &Said,
    cur: &Snapshot,
) -> Outcome {
    let prev = match history {
        History::Known(prev) => Some(prev),
        History::New { partial, .. } => partial,
    };
    let listed = |changes: Vec<Change>, reason| {
        if changes.is_empty() {
            Outcome::Skip(reason)
        } else {
            Outcome::Changes(changes)
        }
    };
    match action {
        // A status hook says the stage move, a responsible hook the
        // responsible change, and nothing else (their bodies may be short).
        Action::Status => listed(
            stage_move(w, prev, said, cur, true).into_iter().collect(),
            "the stage did not change, or its change was already noted",
        ),
        Action::Responsible => listed(
            responsible_move(w, prev, said, cur, true)
                .into_iter()
                .collect(),
            "the responsible user did not change, or the change was already noted",
        ),
        Action::Add | Action::Update => match history {
            History::Known(prev) => {
                listed(diff(w, kind, prev, said, cur), "nothing visible changed")
            }
            History::New { events, .. } => {
                let mut changes = Vec::new();
                if kind == EntityKind::Lead {
                    // `old_status_id` may be a move of an earlier change:
                    // only amoCRM's events of this change confirm it.
                    let confirmed = cur.old_status_id.is_none()
                        || events.is_some_and(|events| {
                            events.iter().any(|e| matches!(e, CardChange::Stage { .. }))
                        });
                    if confirmed {
                        changes.extend(stage_move(w, prev, said, cur, false));
                    }
                }
                changes.extend(responsible_move(w, prev, said, cur, false));
                match events {
                    Some(events) => changes = with_events(w, kind, cur, changes, events),
                    None if changes.is_empty() => return Outcome::Unlisted,
                    None => {}
                }
                if changes.is_empty() {
                    // amoCRM's events name no change amohook shows (a tag,
                    // a link): the card changed, and the note says only that.
                    Outcome::Unlisted
                } else {
                    Outcome::Changes(changes)
                }
            }
        },
    }
}

/// The visible differences between the card's last full state and `cur`.
fn diff(w: &Words, kind: EntityKind, prev: &Snapshot, said: &Said, cur: &Snapshot) -> Vec<Change> {
    let mut changes = Vec::new();
    if prev.name != cur.name {
        changes.push(change(
            "name",
            Some(or_empty(&prev.name)),
            or_empty(&cur.name),
        ));
    }
    if kind == EntityKind::Lead {
        let (old, new) = (
            price(w, prev.price.as_deref()),
            price(w, cur.price.as_deref()),
        );
        if old != new {
            changes.push(change("price", Some(old), new));
        }
        changes.extend(stage_move(w, Some(prev), said, cur, false));
    }
    changes.extend(responsible_move(w, Some(prev), said, cur, false));
    // Fields in the new state, then fields that disappeared (a hook leaves
    // out emptied fields).
    for field in &cur.custom_fields {
        let old = prev.custom_fields.iter().find(|f| f.id == field.id);
        let old_values = old.map(|f| f.values.as_slice()).unwrap_or_default();
        if !field.same_values(old_values) {
            changes.push(Change {
                key: "custom",
                field: w.field_name(kind, &field.id, Some(&field.name)),
                field_id: Some(field.id.clone()),
                old: Some(w.items(kind, &field.id, old_values)),
                new: w.field(kind, field),
            });
        }
    }
    for field in &prev.custom_fields {
        let gone = !cur.custom_fields.iter().any(|f| f.id == field.id);
        if gone && !field.values.is_empty() {
            changes.push(Change {
                key: "custom",
                field: w.field_name(kind, &field.id, Some(&field.name)),
                field_id: Some(field.id.clone()),
                old: Some(w.field(kind, field)),
                new: EMPTY.into(),
            });
        }
    }
    changes
}
