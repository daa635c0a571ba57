//! An account's page: its facts, recent events and action forms.

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
    Form,
};
use chrono::Utc;
use serde::Deserialize;

use super::{act, csrf_token, page_form, status_page::RowView, Admin};
use crate::{
    account_settings::store,
    http::{
        error::{AppError, PageError},
        i18n::{self, Texts},
        pages::Page,
        AppState,
    },
    inbox::EventState,
    stats::{self, EventRow},
};

pub(super) struct EventView {
    event_id: i64,
    card: String,
    action: String,
    state: String,
    attempts: i32,
    received_rel: String,
    received_abs: String,
    finished_rel: String,
    finished_abs: String,
    text: String,
}

#[derive(Template)]
#[template(path = "account.html")]
pub(super) struct AccountPage {
    t: &'static Texts,
    row: RowView,
    /// The note language's choices, the account's marked.
    languages: Vec<LangChoice>,
    subscribed: bool,
    /// `switched_off` and `missing` show as a badge.
    hook_state: String,
    hook_checked: String,
    hook_checked_abs: String,
    timezone: String,
    manual_pause: bool,
    paused_until: String,
    events: Vec<EventView>,
    csrf: String,
    done: Option<String>,
    /// `{public_url}/install` (for the account's platform), for an account
    /// that must install again.
    install_url: String,
    installs: Vec<super::status_page::InstallLink>,
    /// `amohook sandbox` only: the simulated account's panel, as HTML.
    sandbox: Option<String>,
}

pub(super) struct LangChoice {
    value: &'static str,
    label: String,
    selected: bool,
}

/// `auto` (the installer's language, else the domain's, naming the one it
/// gives) and the four; `chosen` is the settings' own choice.
fn lang_choices(chosen: Option<&str>, default: crate::notes::Lang, t: &Texts) -> Vec<LangChoice> {
    std::iter::once(LangChoice {
        value: "auto",
        label: format!("{} ({})", t.by_domain, default.name()),
        selected: chosen.is_none(),
    })
    .chain(crate::notes::Lang::ALL.into_iter().map(|lang| LangChoice {
        value: lang.as_str(),
        label: lang.name().to_owned(),
        selected: chosen == Some(lang.as_str()),
    }))
    .collect()
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct Done {
    done: Option<String>,
}

pub(super) async fn account_page(
    _: Admin,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    let t = i18n::texts(&headers);
    let row = stats::one(&state.pool, id)
        .await?
        .ok_or_else(|| AppError::not_found("No such account."))?;
    let settings = store::current(&state.pool, id)
        .await?
        .ok_or_else(|| AppError::not_found("No such account."))?;
    let events = stats::events(&state.pool, id, None, 100).await?;
    let now = Utc::now();
    let events = events
        .iter()
        .map(|e: &EventRow| EventView {
            event_id: e.event_id,
            card: format!("{} #{}", e.entity_type.as_str(), e.entity_id),
            action: e.action.as_str().to_owned(),
            state: e.state.as_str().to_owned(),
            attempts: e.attempts,
            received_rel: t.relative(Some(e.received_at), now),
            received_abs: i18n::absolute(Some(e.received_at)),
            finished_rel: if e.finished_at.is_some() {
                t.relative(e.finished_at, now)
            } else {
                String::new()
            },
            finished_abs: i18n::absolute(e.finished_at),
            text: match e.state {
                EventState::Delivered | EventState::Pending | EventState::Sending
                    if e.last_error.is_none() =>
                {
                    e.note_text.clone().unwrap_or_default()
                }
                _ => e
                    .last_error
                    .clone()
                    .or_else(|| e.note_text.clone())
                    .unwrap_or_default(),
            },
        })
        .collect();
    let page = AccountPage {
        t,
        languages: lang_choices(
            settings.settings.lang.as_deref(),
            crate::notes::Lang::of_account(settings.installer_lang.as_deref(), &row.domain),
            t,
        ),
        subscribed: row.webhooks_subscribed,
        hook_state: row.webhook_state.clone().unwrap_or_default(),
        hook_checked: if row.webhook_checked_at.is_some() {
            t.relative(row.webhook_checked_at, now)
        } else {
            String::new()
        },
        hook_checked_abs: i18n::absolute(row.webhook_checked_at),
        timezone: row.timezone.clone().unwrap_or_else(|| "—".into()),
        manual_pause: row.manual_pause,
        paused_until: if row.paused_until.is_some_and(|p| p > now) {
            i18n::absolute(row.paused_until)
        } else {
            String::new()
        },
        row: RowView::new(&row, t),
        events,
        csrf: csrf_token(&state, id),
        done: done.done.filter(|d| d.len() < 100),
        install_url: reinstall_url(&state, &row.domain),
        installs: super::status_page::install_links(&state, t),
        sandbox: state
            .panel
            .as_deref()
            .map(|panel| panel.render(id, &row.domain, &csrf_token(&state, id), t.lang)),
    };
    Ok(Page(StatusCode::OK, page).into_response())
}

#[derive(Debug, Deserialize)]
pub(super) struct ActionForm {
    csrf: String,
    /// The language form's choice.
    lang: Option<String>,
}

pub(super) async fn account_action_form(
    _: Admin,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(i64, String)>,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    page_form(&state, &headers, id, &form.csrf)?;
    let message = act(&state, id, &action, form.lang.as_deref()).await?;
    Ok(Redirect::to(&format!(
        "/status/accounts/{id}?done={}",
        url::form_urlencoded::byte_serialize(message.as_bytes()).collect::<String>()
    ))
    .into_response())
}

/// Where an account's administrator installs it again: the install page of
/// its platform's integration.
fn reinstall_url(state: &AppState, domain: &str) -> String {
    let platform = crate::platform::Platform::of_host(domain);
    let base = format!("{}/install", state.settings.http.public_url);
    if state.api.integrations().kommo.is_some() {
        format!("{base}?platform={}", platform.as_str())
    } else {
        base
    }
}
