//! The account's own page: what it shows, its form, and its words in the
//! browser's language (see `texts.rs`).

use askama::Template;
use axum::http::HeaderMap;
use chrono::Utc;
use serde::Deserialize;

use super::{
    texts::{self, MyTexts},
    wrong::Wrong,
    AppState,
};
use crate::{
    account_settings::{preview::Preview, store, NoteSettings},
    amocrm::directory,
    http::{error::AppError, i18n},
    inbox::EventState,
    notes::Lang,
    platform::Platform,
    stats,
    tenant::{self, Session},
};

/// The settings form as posted: checkboxes are present when ticked; ids
/// and field names are lists in text.
#[derive(Debug, Deserialize)]
pub struct SettingsForm {
    pub csrf: String,
    /// The version the form was opened on: saving over a newer one is a
    /// conflict, not a silent overwrite.
    pub version: i32,
    #[serde(default)]
    leads: Option<String>,
    #[serde(default)]
    contacts: Option<String>,
    #[serde(default)]
    companies: Option<String>,
    #[serde(default)]
    added: Option<String>,
    #[serde(default)]
    changed: Option<String>,
    #[serde(default)]
    stage: Option<String>,
    #[serde(default)]
    responsible: Option<String>,
    #[serde(default)]
    skip_robots: Option<String>,
    #[serde(default)]
    pipelines: String,
    #[serde(default)]
    stages: String,
    #[serde(default)]
    only_fields: String,
    #[serde(default)]
    lang: String,
    #[serde(default)]
    added_template: String,
    #[serde(default)]
    changed_template: String,
}

fn ids(setting: &'static str, text: &str) -> Result<Vec<i64>, Wrong> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<i64>().map_err(|_| Wrong::NotAnId {
                setting,
                word: part.to_owned(),
            })
        })
        .collect()
}

impl SettingsForm {
    /// The settings as the form gives them, checked as they are stored.
    pub fn settings(&self) -> Result<NoteSettings, Wrong> {
        let on = |field: &Option<String>| field.is_some();
        let text = |t: &str| (!t.trim().is_empty()).then(|| t.replace("\r\n", "\n"));
        NoteSettings {
            leads: on(&self.leads),
            contacts: on(&self.contacts),
            companies: on(&self.companies),
            added: on(&self.added),
            changed: on(&self.changed),
            stage: on(&self.stage),
            responsible: on(&self.responsible),
            skip_robots: on(&self.skip_robots),
            pipelines: ids("pipelines", &self.pipelines)?,
            stages: ids("stages", &self.stages)?,
            only_fields: self.only_fields.lines().map(str::to_owned).collect(),
            lang: text(&self.lang),
            added_template: text(&self.added_template),
            changed_template: text(&self.changed_template),
        }
        .checked()
        .map_err(Wrong::Invalid)
    }
}

/// The form's fields as shown.
pub struct FormView {
    version: i32,
    leads: bool,
    contacts: bool,
    companies: bool,
    added: bool,
    changed: bool,
    stage: bool,
    responsible: bool,
    skip_robots: bool,
    pipelines: String,
    stages: String,
    only_fields: String,
    lang: String,
    added_template: String,
    changed_template: String,
}

impl FormView {
    fn of(version: i32, s: &NoteSettings) -> FormView {
        let join = |list: &[i64]| {
            list.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        FormView {
            version,
            leads: s.leads,
            contacts: s.contacts,
            companies: s.companies,
            added: s.added,
            changed: s.changed,
            stage: s.stage,
            responsible: s.responsible,
            skip_robots: s.skip_robots,
            pipelines: join(&s.pipelines),
            stages: join(&s.stages),
            only_fields: s.only_fields.join("\n"),
            lang: s.lang.clone().unwrap_or_default(),
            added_template: s.added_template.clone().unwrap_or_default(),
            changed_template: s.changed_template.clone().unwrap_or_default(),
        }
    }

    fn posted(f: &SettingsForm) -> FormView {
        FormView {
            version: f.version,
            leads: f.leads.is_some(),
            contacts: f.contacts.is_some(),
            companies: f.companies.is_some(),
            added: f.added.is_some(),
            changed: f.changed.is_some(),
            stage: f.stage.is_some(),
            responsible: f.responsible.is_some(),
            skip_robots: f.skip_robots.is_some(),
            pipelines: f.pipelines.clone(),
            stages: f.stages.clone(),
            only_fields: f.only_fields.clone(),
            lang: f.lang.clone(),
            added_template: f.added_template.clone(),
            changed_template: f.changed_template.clone(),
        }
    }
}

pub struct LangOption {
    value: &'static str,
    label: String,
}

pub struct NoteRow {
    card: String,
    /// For the row's class.
    state: &'static str,
    state_word: &'static str,
    when: String,
    when_abs: String,
    text: String,
}

/// A pipeline with its stages, by id.
pub struct PipelineView {
    id: i64,
    name: String,
    stages: Vec<(i64, String)>,
}

pub struct PreviewView {
    card: String,
    note: Option<String>,
    skipped: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "my.html")]
pub struct MyPage {
    pub t: &'static MyTexts,
    domain: String,
    csrf: String,
    /// The web-hook's state in words, and whether it needs attention.
    hook_line: String,
    hook_alert: bool,
    no_event: String,
    /// The account's pipelines as amohook last read them (notes name
    /// stages by them), for the filters' ids.
    pipelines: Vec<PipelineView>,
    last_hook: String,
    delivered: i64,
    pending: i64,
    failed: i64,
    form: FormView,
    languages: Vec<LangOption>,
    message: Option<String>,
    error: Option<String>,
    preview: Option<Option<PreviewView>>,
    notes: Vec<NoteRow>,
}

impl MyPage {
    pub async fn load(
        state: &AppState,
        headers: &HeaderMap,
        session: &Session,
    ) -> Result<MyPage, AppError> {
        let t = texts::pick(headers);
        let id = session.account_id;
        let row = stats::one(&state.pool, id)
            .await?
            .filter(|row| row.display_status != "disconnected")
            .ok_or_else(|| AppError::not_found("This account is not connected to amohook."))?;
        let current = store::current(&state.pool, id)
            .await?
            .ok_or_else(|| AppError::not_found("This account is not connected to amohook."))?;
        let default = Lang::of_account(current.installer_lang.as_deref(), &row.domain);
        let languages = std::iter::once(LangOption {
            value: "",
            label: format!("{} ({})", t.default, default.name()),
        })
        .chain(Lang::ALL.into_iter().map(|l| LangOption {
            value: l.as_str(),
            label: l.name().to_owned(),
        }))
        .collect();
        let now = Utc::now();
        let notes = stats::events(&state.pool, id, None, 30)
            .await?
            .into_iter()
            .map(|e| NoteRow {
                card: format!("{} #{}", t.kind(e.entity_type), e.entity_id),
                state: e.state.as_str(),
                state_word: t.state(e.state),
                when: t.time.relative(Some(e.received_at), now),
                when_abs: i18n::absolute(Some(e.received_at)),
                text: match e.state {
                    EventState::Delivered | EventState::Pending | EventState::Sending
                        if e.last_error.is_none() =>
                    {
                        e.note_text.unwrap_or_default()
                    }
                    _ => e.last_error.or(e.note_text).unwrap_or_default(),
                },
            })
            .collect();
        let platform = Platform::of_host(&row.domain).title();
        let pipelines = directory::load(&state.pool, id)
            .await?
            .pipelines
            .into_iter()
            .map(|(id, p)| PipelineView {
                id,
                name: p.name,
                stages: p.statuses.into_iter().collect(),
            })
            .collect();
        let (hook_line, hook_alert) = match row.webhook_state.as_deref() {
            Some("switched_off") => (t.switched_off, true),
            Some("missing") => (t.missing, true),
            _ if row.webhooks_subscribed => (t.subscribed, false),
            _ => (t.not_subscribed, false),
        };
        Ok(MyPage {
            t,
            domain: row.domain.clone(),
            csrf: tenant::csrf(&state.cipher, session),
            hook_line: hook_line.replace("{platform}", platform),
            hook_alert,
            no_event: t.no_event.replace("{platform}", platform),
            pipelines,
            last_hook: t.time.relative(row.last_hook_at, now),
            delivered: row.delivered,
            pending: row.pending,
            failed: row.failed,
            form: FormView::of(current.version, &current.settings),
            languages,
            message: None,
            error: None,
            preview: None,
            notes,
        })
    }

    pub fn with_form(mut self, form: &SettingsForm) -> MyPage {
        self.form = FormView::posted(form);
        self
    }

    pub fn with_message(mut self, message: &str) -> MyPage {
        self.message = Some(message.to_owned());
        self
    }

    pub fn with_error(mut self, error: String) -> MyPage {
        self.error = Some(error);
        self
    }

    pub fn with_preview(mut self, shown: Option<Preview>) -> MyPage {
        self.preview = Some(shown.map(|p| PreviewView {
            card: format!(
                "{} #{} ({})",
                self.t.kind(p.entity_type),
                p.entity_id,
                p.action.as_str()
            ),
            note: p.note,
            skipped: p.skipped,
        }));
        self
    }
}
