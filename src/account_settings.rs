//! What an account chooses of its notes: which cards and changes give a
//! note, the filters, the language and its own templates. Stored versioned
//! ([`store`]); an event follows the version in force when it was stored,
//! so a note already rendered keeps its text and a change of settings
//! applies to the hooks that arrive after it.
//!
//! The defaults are amohook's behaviour before settings existed: every
//! card, every change, the built-in wording.

use serde::{Deserialize, Serialize};

use crate::{
    amocrm::hooks::{Action, EntityKind, Snapshot},
    notes::{template::Template, Change, Lang},
};

pub mod apply;
pub mod preview;
pub mod store;

/// The most pipelines, stages and fields a filter names.
pub const MAX_LIST: usize = 200;
/// The longest field name a filter takes.
pub const MAX_NAME: usize = 200;

/// An account's note settings. Every field has its default, so a stored
/// version written before a field existed reads with today's behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoteSettings {
    /// Which cards give notes.
    pub leads: bool,
    pub contacts: bool,
    pub companies: bool,
    /// Which changes give notes: an added card; a change of its name,
    /// budget or fields; a stage move; a new responsible user.
    pub added: bool,
    pub changed: bool,
    pub stage: bool,
    pub responsible: bool,
    /// Only leads in these pipelines, at these stages (empty: all).
    /// Contacts and companies have no pipeline: these do not apply.
    pub pipelines: Vec<i64>,
    pub stages: Vec<i64>,
    /// No note for what amoCRM credits to user 0: robots, forms, the API.
    pub skip_robots: bool,
    /// Only when one of these fields changed (names as the account shows
    /// them, or custom field ids; empty: any).
    pub only_fields: Vec<String>,
    /// The notes' language; unset: the installer's, else the domain's.
    pub lang: Option<String>,
    /// The account's own wording of an added card's note and of a change
    /// note (`notes::template`); unset: the built-in sentences.
    pub added_template: Option<String>,
    pub changed_template: Option<String>,
}

impl Default for NoteSettings {
    fn default() -> Self {
        NoteSettings {
            leads: true,
            contacts: true,
            companies: true,
            added: true,
            changed: true,
            stage: true,
            responsible: true,
            pipelines: Vec::new(),
            stages: Vec::new(),
            skip_robots: false,
            only_fields: Vec::new(),
            lang: None,
            added_template: None,
            changed_template: None,
        }
    }
}

/// Why settings cannot be saved, naming the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("{which} template: {error}")]
    Template {
        which: &'static str,
        error: crate::notes::template::TemplateError,
    },
    #[error("unknown language {0:?}: use ru, en, es or pt")]
    Lang(String),
    #[error("{0}: at most {MAX_LIST} entries")]
    TooMany(&'static str),
    #[error("a field name is empty or longer than {MAX_NAME} characters")]
    FieldName,
    #[error("{0} must be positive ids")]
    Ids(&'static str),
}

/// Why an event gives no note: the filter that stopped it. `label` is the
/// metric's `filter` label and the stored reason's first word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtered {
    /// Notes of this kind of card are off.
    Entity,
    /// Notes of this kind of change are off.
    Action,
    Pipeline,
    Stage,
    Robot,
    Fields,
}

impl Filtered {
    pub const ALL: [Filtered; 6] = [
        Filtered::Entity,
        Filtered::Action,
        Filtered::Pipeline,
        Filtered::Stage,
        Filtered::Robot,
        Filtered::Fields,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Filtered::Entity => "entity",
            Filtered::Action => "action",
            Filtered::Pipeline => "pipeline",
            Filtered::Stage => "stage",
            Filtered::Robot => "robot",
            Filtered::Fields => "fields",
        }
    }

    /// The reason kept with the skipped event.
    pub fn reason(self) -> &'static str {
        match self {
            Filtered::Entity => "filtered: the account's settings turn notes of these cards off",
            Filtered::Action => "filtered: the account's settings turn notes of this change off",
            Filtered::Pipeline => "filtered: the lead is outside the account's chosen pipelines",
            Filtered::Stage => "filtered: the lead is outside the account's chosen stages",
            Filtered::Robot => "filtered: made by a robot or the API, which the account skips",
            Filtered::Fields => "filtered: none of the account's chosen fields changed",
        }
    }
}

impl NoteSettings {
    /// Checks every setting; the templates are parsed as the notes will be.
    pub fn validate(&self) -> Result<(), Invalid> {
        for (which, text) in [
            ("added", &self.added_template),
            ("changed", &self.changed_template),
        ] {
            if let Some(text) = text {
                Template::parse(text).map_err(|error| Invalid::Template { which, error })?;
            }
        }
        if let Some(lang) = &self.lang {
            if Lang::parse(lang).is_none_or(|l| l.as_str() != lang) {
                return Err(Invalid::Lang(lang.clone()));
            }
        }
        for (name, list) in [("pipelines", &self.pipelines), ("stages", &self.stages)] {
            if list.len() > MAX_LIST {
                return Err(Invalid::TooMany(name));
            }
            if list.iter().any(|id| *id <= 0) {
                return Err(Invalid::Ids(name));
            }
        }
        if self.only_fields.len() > MAX_LIST {
            return Err(Invalid::TooMany("only_fields"));
        }
        if self
            .only_fields
            .iter()
            .any(|f| f.trim().is_empty() || f.chars().count() > MAX_NAME)
        {
            return Err(Invalid::FieldName);
        }
        Ok(())
    }

    /// Empty templates and lists as unset, names trimmed: what is stored.
    pub fn normalized(mut self) -> NoteSettings {
        for t in [&mut self.added_template, &mut self.changed_template] {
            if t.as_deref().is_some_and(|t| t.trim().is_empty()) {
                *t = None;
            }
        }
        if self
            .lang
            .as_deref()
            .is_some_and(|l| l.is_empty() || l == "auto")
        {
            self.lang = None;
        }
        self.only_fields = self
            .only_fields
            .iter()
            .map(|f| f.trim().to_owned())
            .filter(|f| !f.is_empty())
            .collect();
        self.pipelines.sort_unstable();
        self.pipelines.dedup();
        self.stages.sort_unstable();
        self.stages.dedup();
        self
    }

    /// The settings as they are stored (normalized), when every setting
    /// can work.
    pub fn checked(self) -> Result<NoteSettings, Invalid> {
        let settings = self.normalized();
        settings.validate()?;
        Ok(settings)
    }

    /// The language the notes take: this setting, else the installer's
    /// (`accounts.note_lang`), else the domain's.
    pub fn lang(&self, installer: Option<&str>, domain: &str) -> Lang {
        self.lang
            .as_deref()
            .and_then(Lang::parse)
            .unwrap_or_else(|| Lang::of_account(installer, domain))
    }

    pub fn added_template(&self) -> Option<Template> {
        self.added_template
            .as_deref()
            .and_then(|t| Template::parse(t).ok())
    }

    pub fn changed_template(&self) -> Option<Template> {
        self.changed_template
            .as_deref()
            .and_then(|t| Template::parse(t).ok())
    }

    /// Whether the card may give a note at all, before what changed is
    /// known: its kind, who made the change, and (for leads) where the
    /// lead is after it (`state`: the card as amohook now knows it).
    pub fn admits(
        &self,
        kind: EntityKind,
        action: Action,
        cur: &Snapshot,
        state: &Snapshot,
    ) -> Result<(), Filtered> {
        let on = match kind {
            EntityKind::Lead => self.leads,
            EntityKind::Contact => self.contacts,
            EntityKind::Company => self.companies,
        };
        if !on {
            return Err(Filtered::Entity);
        }
        if action == Action::Add && !self.added {
            return Err(Filtered::Action);
        }
        if self.skip_robots && cur.modified_user_id == Some(0) {
            return Err(Filtered::Robot);
        }
        if kind == EntityKind::Lead {
            let within = |list: &[i64], id: Option<i64>| {
                list.is_empty() || id.is_some_and(|id| list.contains(&id))
            };
            if !within(&self.pipelines, state.pipeline_id) {
                return Err(Filtered::Pipeline);
            }
            if !within(&self.stages, state.status_id) {
                return Err(Filtered::Stage);
            }
        }
        Ok(())
    }

    /// Of a change note's list, what the settings keep: stage moves,
    /// responsible changes and the other fields each by their switch, and
    /// nothing unless a chosen field is among them.
    pub fn keep(
        &self,
        changes: Vec<Change>,
        label: impl Fn(&Change) -> String,
    ) -> Result<Vec<Change>, Filtered> {
        if !self.only_fields.is_empty() {
            let chosen = |c: &Change| {
                let shown = label(c).to_lowercase();
                self.only_fields.iter().any(|f| {
                    f.to_lowercase() == shown || f == c.key || Some(f) == c.field_id.as_ref()
                })
            };
            if !changes.iter().any(chosen) {
                return Err(Filtered::Fields);
            }
        }
        let kept: Vec<Change> = changes
            .into_iter()
            .filter(|c| match c.key {
                "status" => self.stage,
                "responsible" => self.responsible,
                _ => self.changed,
            })
            .collect();
        if kept.is_empty() {
            return Err(Filtered::Action);
        }
        Ok(kept)
    }

    /// A change whose fields are not known ("the card changed") is a
    /// change of its fields; with chosen fields, it cannot show one of them.
    pub fn keeps_unlisted(&self) -> Result<(), Filtered> {
        if !self.changed {
            Err(Filtered::Action)
        } else if !self.only_fields.is_empty() {
            Err(Filtered::Fields)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
