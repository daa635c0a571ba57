//! The account page's sandbox panel (`amohook sandbox` only): save a card
//! in the simulated amoCRM account (which sends its web-hook to the
//! account's hook URL), see the notes the simulated amoCRM holds card by
//! card, switch faults on, and open the account's own page from amoCRM's
//! widget settings. The sandbox gives the application this panel and its
//! routes (`startup::Application::with_extension`); `serve` has neither
//! and answers 404 for the routes.

use std::{collections::BTreeMap, sync::Arc};

use amocrm_sim::{CardEdit, Entity, SimCard};
use askama::Template;
use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::post,
    Extension, Form, Router,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{
    words::{Words, EN, RU},
    FaultSwitch, Sandbox,
};
use crate::{
    http::{
        admin::{page_form, Admin},
        error::{AppError, PageError},
        i18n::{self, Texts},
        AccountPanel, AppState,
    },
    stats,
};

/// The panel's routes, each with the sandbox at hand.
pub fn router(sandbox: Arc<Sandbox>) -> Router<AppState> {
    Router::new()
        .route("/status/accounts/{id}/sandbox/card", post(save_card))
        .route("/status/accounts/{id}/sandbox/fault", post(switch_fault))
        .layer(Extension(sandbox))
}

fn words(t: &Texts) -> &'static Words {
    if t.lang == "ru" {
        &RU
    } else {
        &EN
    }
}

fn entity_index(entity: Entity) -> usize {
    match entity {
        Entity::Lead => 0,
        Entity::Contact => 1,
        Entity::Company => 2,
    }
}

pub(crate) struct Choice {
    pub(crate) value: String,
    pub(crate) label: String,
}

pub(crate) struct NoteView {
    pub(crate) rel: String,
    pub(crate) abs: String,
    pub(crate) text: String,
}

pub(crate) struct CardView {
    pub(crate) kind: &'static str,
    pub(crate) title: String,
    pub(crate) notes: Vec<NoteView>,
}

/// The panel of one account's page.
#[derive(Template)]
#[template(path = "sandbox_panel.html")]
pub(crate) struct Panel {
    pub(crate) account_id: i64,
    pub(crate) csrf: String,
    pub(crate) w: &'static Words,
    pub(crate) choices: Vec<Choice>,
    pub(crate) users: Vec<Choice>,
    pub(crate) stages: Vec<Choice>,
    pub(crate) cards: Vec<CardView>,
    pub(crate) fault: Option<String>,
    pub(crate) switches: Vec<Choice>,
    /// The simulated amoCRM's widget settings for the account's first
    /// user, an administrator.
    pub(crate) widget_frame: String,
}

impl Panel {
    pub(crate) fn new(
        sandbox: &Sandbox,
        account_id: i64,
        domain: &str,
        csrf: &str,
        t: &Texts,
    ) -> Panel {
        let w = words(t);
        let sim = sandbox.simulator();
        let account = sim.account(domain);
        let cards = sim.cards(domain);
        let title = |card: &SimCard| {
            let kind = w.entity[entity_index(card.entity)];
            if card.name.is_empty() {
                format!("{kind} #{}", card.id)
            } else {
                format!("{kind} #{} «{}»", card.id, card.name)
            }
        };
        let mut choices: Vec<Choice> = Entity::ALL
            .into_iter()
            .map(|e| Choice {
                value: format!("new-{}", e.as_str()),
                label: w.new[entity_index(e)].to_owned(),
            })
            .collect();
        choices.extend(cards.iter().map(|card| Choice {
            value: format!("{}-{}", card.entity.as_str(), card.id),
            label: format!("{}: {}", w.change, title(card)),
        }));
        let users = account
            .iter()
            .flat_map(|a| &a.users)
            .map(|(id, name)| Choice {
                value: id.to_string(),
                label: name.clone(),
            })
            .collect();
        let stages = account
            .iter()
            .flat_map(|a| &a.pipelines)
            .flat_map(|(_, pipeline, statuses)| {
                statuses.iter().map(move |(id, name)| Choice {
                    value: id.to_string(),
                    label: format!("{pipeline} / {name}"),
                })
            })
            .collect();
        // Notes by card, in the card's feed order (oldest first).
        let mut notes: BTreeMap<(String, i64), Vec<NoteView>> = BTreeMap::new();
        let now = Utc::now();
        for note in sim.notes().into_iter().filter(|n| n.domain == domain) {
            let at = DateTime::from_timestamp(note.updated_at, 0);
            notes
                .entry((note.entity_type.clone(), note.entity_id))
                .or_default()
                .push(NoteView {
                    rel: t.relative(at, now),
                    abs: i18n::absolute(at),
                    text: note.text,
                });
        }
        let mut views: Vec<CardView> = cards
            .iter()
            .map(|card| CardView {
                kind: card.entity.as_str(),
                title: title(card),
                notes: notes
                    .remove(&(card.entity.plural().to_owned(), card.id))
                    .unwrap_or_default(),
            })
            .collect();
        // Notes on cards the panel did not make (hooks sent by other means).
        views.extend(notes.into_iter().map(|((plural, id), notes)| {
            let entity = Entity::ALL
                .into_iter()
                .find(|e| e.plural() == plural)
                .unwrap_or(Entity::Lead);
            CardView {
                kind: entity.as_str(),
                title: format!("{} #{id}", w.entity[entity_index(entity)]),
                notes,
            }
        }));
        let fault = match sim.held(domain) {
            Some((status, left)) => Some(format!(
                "{status}: {} s {}",
                left.as_secs() + 1,
                if t.lang == "ru" { "ещё" } else { "more" }
            )),
            None => match sim.faults_waiting(domain) {
                0 => None,
                n => Some(format!(
                    "502 × {n} ({})",
                    if t.lang == "ru" {
                        "следующие запросы"
                    } else {
                        "next calls"
                    }
                )),
            },
        };
        let switches = FaultSwitch::ALL
            .into_iter()
            .zip(w.switches)
            .map(|(f, label)| Choice {
                value: f.as_str().to_owned(),
                label: label.to_owned(),
            })
            .collect();
        Panel {
            account_id,
            csrf: csrf.to_owned(),
            w,
            choices,
            users,
            stages,
            cards: views,
            fault,
            switches,
            widget_frame: sim.widget_frame_url(
                domain,
                account
                    .as_ref()
                    .and_then(|a| a.users.first())
                    .map_or(0, |u| u.0),
                true,
                t.lang,
            ),
        }
    }
}

impl AccountPanel for Sandbox {
    fn render(&self, account_id: i64, domain: &str, csrf: &str, lang: &str) -> String {
        let panel = Panel::new(self, account_id, domain, csrf, i18n::by_lang(lang));
        panel.render().unwrap_or_else(|e| {
            // The template takes only strings and numbers: a bug, never input.
            tracing::error!(error = %e, "the sandbox panel failed to render");
            String::new()
        })
    }
}

/// The simulated account's host of account `id`.
async fn domain_of(state: &AppState, id: i64) -> Result<String, PageError> {
    let row = stats::one(&state.pool, id)
        .await?
        .ok_or_else(|| AppError::not_found("No such account."))?;
    Ok(row.domain)
}

fn back(id: i64, message: &str) -> Response {
    let message: String = message.chars().take(90).collect();
    Redirect::to(&format!(
        "/status/accounts/{id}?done={}#sandbox",
        url::form_urlencoded::byte_serialize(message.as_bytes()).collect::<String>()
    ))
    .into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct CardForm {
    csrf: String,
    /// `new-lead`, `new-contact`, `new-company`, or `{entity}-{id}`.
    card: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    price: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    responsible: String,
}

async fn save_card(
    _: Admin,
    State(state): State<AppState>,
    Extension(sandbox): Extension<Arc<Sandbox>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<CardForm>,
) -> Result<Response, PageError> {
    page_form(&state, &headers, id, &form.csrf)?;
    let domain = domain_of(&state, id).await?;
    let bad = |what: &str| AppError::new(StatusCode::BAD_REQUEST, format!("{what} is not valid."));
    let (entity, card) = match form.card.strip_prefix("new-") {
        Some(entity) => (entity, None),
        None => {
            let (entity, number) = form.card.split_once('-').ok_or_else(|| bad("The card"))?;
            let number = number.parse::<i64>().map_err(|_| bad("The card"))?;
            (entity, Some(number))
        }
    };
    let entity = Entity::parse(entity).ok_or_else(|| bad("The card"))?;
    let number = |text: &str, what: &str| -> Result<Option<i64>, AppError> {
        match text.trim() {
            "" => Ok(None),
            t => t.parse::<i64>().map(Some).map_err(|_| bad(what)),
        }
    };
    let edit = CardEdit {
        entity,
        id: card,
        name: Some(form.name.trim())
            .filter(|n| !n.is_empty())
            .map(|n| n.chars().take(255).collect()),
        responsible_user_id: number(&form.responsible, "The responsible user")?,
        price: number(&form.price, "The budget")?.filter(|p| *p >= 0),
        status_id: number(&form.status, "The stage")?,
    };
    let message = match sandbox.save_card(&domain, edit).await {
        Err(reason) => return Err(AppError::new(StatusCode::BAD_REQUEST, reason).into()),
        Ok(None) => "nothing changed, so amoCRM sent no web-hook".to_owned(),
        Ok(Some(saved)) => {
            let change = &saved.change;
            let what = format!(
                "{} #{} {}",
                change.card.entity.as_str(),
                change.card.id,
                if change.action == "add" {
                    "added"
                } else {
                    "changed"
                }
            );
            match saved.answers.as_slice() {
                [] => format!(
                    "{what}; no web-hook is subscribed for {}_{}, so none was sent",
                    change.action,
                    change.card.entity.as_str()
                ),
                answers => {
                    let answers: Vec<String> = answers
                        .iter()
                        .map(|a| match a {
                            Ok(status) => status.to_string(),
                            Err(e) => e.clone(),
                        })
                        .collect();
                    format!("{what}; its web-hook was answered {}", answers.join(", "))
                }
            }
        }
    };
    tracing::info!(account.id = id, "sandbox card saved");
    Ok(back(id, &message))
}

#[derive(Debug, Deserialize)]
pub(crate) struct FaultForm {
    csrf: String,
    fault: String,
}

async fn switch_fault(
    _: Admin,
    State(state): State<AppState>,
    Extension(sandbox): Extension<Arc<Sandbox>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<FaultForm>,
) -> Result<Response, PageError> {
    page_form(&state, &headers, id, &form.csrf)?;
    let domain = domain_of(&state, id).await?;
    let fault = FaultSwitch::parse(&form.fault)
        .ok_or_else(|| AppError::new(StatusCode::BAD_REQUEST, "No such fault."))?;
    sandbox.switch(&domain, fault);
    let message = match fault {
        FaultSwitch::RateLimited => "amoCRM answers 429 for 10 s",
        FaultSwitch::ServerErrors => "amoCRM answers 502 to the next 2 calls",
        FaultSwitch::Outage => "amoCRM answers 503 for 30 s",
        FaultSwitch::RevokedGrant => "the grant is revoked: the next call finds it dead",
        FaultSwitch::Clear => "faults cleared",
    };
    Ok(back(id, message))
}
