//! Applying an account's settings to one event: its filters, then its
//! template or the built-in wording. Delivery renders each note with it,
//! and the settings' preview shows what a note would say.

use super::{Filtered, NoteSettings};
use crate::{
    amocrm::hooks::{Action, EntityKind, Snapshot},
    notes::{self, History, Outcome, Said, Words},
};

/// Why an event gives no note.
pub enum Skipped {
    Reason(&'static str),
    Filtered(Filtered),
}

impl Skipped {
    pub fn reason(&self) -> &'static str {
        match self {
            Skipped::Reason(r) => r,
            Skipped::Filtered(f) => f.reason(),
        }
    }
}

/// One event's note, as the account's settings have it.
pub struct Note<'a> {
    pub words: &'a Words<'a>,
    pub settings: &'a NoteSettings,
    pub domain: &'a str,
    pub kind: EntityKind,
    pub id: i64,
    pub at: i64,
    /// The card as the hook shows it.
    pub cur: &'a Snapshot,
    /// The card as amohook knows it after the hook.
    pub state: &'a Snapshot,
}

impl Note<'_> {
    /// The note's text (or why there is none), and what notes have said of
    /// the card after it. `prev` is the card's last seen state.
    pub fn write(
        &self,
        action: Action,
        history: History,
        said: Said,
        prev: Option<&Snapshot>,
    ) -> (Result<String, Skipped>, Said) {
        let (w, cur) = (self.words, self.cur);
        if let Err(filter) = self.settings.admits(self.kind, action, cur, self.state) {
            return (Err(Skipped::Filtered(filter)), said);
        }
        if action == Action::Add {
            let at = cur.created_at.unwrap_or(self.at);
            let text = self
                .settings
                .added_template()
                .and_then(|t| notes::by_template(w, &t, &self.card(cur), &[], at))
                .unwrap_or_else(|| notes::added(w, self.kind, self.id, cur, self.at));
            return (Ok(text), said.after(Action::Add, &[], cur));
        }
        // A short body names no card: the note uses the name amohook last saw.
        let named;
        let shown = match prev {
            Some(prev) if cur.partial => {
                named = Snapshot {
                    name: prev.name.clone(),
                    ..cur.clone()
                };
                &named
            }
            _ => cur,
        };
        let changes = match notes::changes(w, self.kind, action, history, &said, cur) {
            Outcome::Changes(changes) => {
                match self
                    .settings
                    .keep(changes, |c| notes::label(w, c).to_owned())
                {
                    Ok(kept) => kept,
                    Err(filter) => return (Err(Skipped::Filtered(filter)), said),
                }
            }
            Outcome::Unlisted => match self.settings.keeps_unlisted() {
                Ok(()) => Vec::new(),
                Err(filter) => return (Err(Skipped::Filtered(filter)), said),
            },
            Outcome::Skip(reason) => return (Err(Skipped::Reason(reason)), said),
        };
        let text = self
            .settings
            .changed_template()
            .and_then(|t| notes::by_template(w, &t, &self.card(shown), &changes, self.at))
            .unwrap_or_else(|| notes::changed(w, self.kind, self.id, shown, &changes, self.at));
        (Ok(text), said.after(action, &changes, cur))
    }

    fn card<'s>(&'s self, snap: &'s Snapshot) -> notes::Card<'s> {
        notes::Card {
            kind: self.kind,
            id: self.id,
            snap,
            responsible: self.state.responsible_user_id,
            domain: self.domain,
        }
    }
}

/// The card's state after a hook: a full body is the card's state; a short
/// one (the digital pipeline's) moves only the stage and responsible it
/// names, and stays short while amohook has no full state.
pub fn next_state(prev: Option<&Snapshot>, cur: &Snapshot) -> Snapshot {
    if !cur.partial {
        return cur.clone();
    }
    let mut next = prev.cloned().unwrap_or_else(|| Snapshot {
        partial: true,
        ..Snapshot::default()
    });
    if cur.status_id.is_some() {
        next.status_id = cur.status_id;
        next.pipeline_id = cur.pipeline_id.or(next.pipeline_id);
    }
    if cur.responsible_user_id.is_some() {
        next.responsible_user_id = cur.responsible_user_id;
    }
    // The hook's own old values describe this change, not the card.
    next.old_status_id = None;
    next.old_pipeline_id = None;
    next.old_responsible_user_id = None;
    next
}
