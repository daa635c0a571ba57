//! The account page's sandbox panel (`amohook sandbox` only): save a card
//! in the simulated amoCRM account (which sends its web-hook to the
//! account's hook URL), see the notes the simulated amoCRM holds card by
//! card, and switch faults on. The routes below are mounted by
//! `http::router` only when the application has a sandbox; `serve` answers
//! 404 for them.

use std::collections::BTreeMap;

use amocrm_sim::{CardEdit, Entity, SimCard};
use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::post,
    Form, Router,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use super::{cross_site, csrf_token, Admin};
use crate::{
    http::{
        error::{AppError, PageError},
        i18n::{self, Texts},
        AppState,
    },
    sandbox::{FaultSwitch, Sandbox},
    stats,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/status/accounts/{id}/sandbox/card", post(save_card))
        .route("/status/accounts/{id}/sandbox/fault", post(switch_fault))
}

/// The panel's words.
pub(super) struct Words {
    pub heading: &'static str,
    pub intro: &'static str,
    pub change_title: &'static str,
    pub card: &'static str,
    pub name: &'static str,
    pub price: &'static str,
    pub stage: &'static str,
    pub responsible: &'static str,
    pub unchanged: &'static str,
    pub leads_only: &'static str,
    pub save: &'static str,
    pub notes_title: &'static str,
    pub no_notes: &'static str,
    pub reload: &'static str,
    pub faults_title: &'static str,
    pub faults_hint: &'static str,
    pub no_fault: &'static str,
    pub new: [&'static str; 3],
    pub change: &'static str,
    pub entity: [&'static str; 3],
    pub switches: [&'static str; 5],
    pub widget_title: &'static str,
    pub widget_hint: &'static str,
    pub widget_open: &'static str,
}

const EN: Words = Words {
    heading: "Sandbox: the simulated amoCRM account",
    intro: "What you save here is saved in the simulated amoCRM, which then sends amoCRM's \
            web-hook to this account's hook URL, exactly as amoCRM does.",
    change_title: "Add or change a card",
    card: "Card",
    name: "Name",
    price: "Budget",
    stage: "Stage",
    responsible: "Responsible",
    unchanged: "(as it is)",
    leads_only: "leads only",
    save: "Save in amoCRM",
    notes_title: "Notes in amoCRM",
    no_notes: "No notes yet. amohook writes one for every change it receives.",
    reload: "Reload",
    faults_title: "Faults of the simulated amoCRM",
    faults_hint: "Then save a card and watch the events: a 429 is tried again in 1 to 3 s; \
                  5xx answers and outages back off from 5 s; a revoked grant turns the account \
                  to “needs reinstall” at its next call, and the Install button at the top \
                  installs it again.",
    no_fault: "None: the simulated amoCRM answers normally (at most 7 calls a second).",
    new: ["New lead", "New contact", "New company"],
    change: "Change",
    entity: ["Lead", "Contact", "Company"],
    switches: [
        "429 Too Many Requests for 10 s",
        "502 for the next 2 calls",
        "Outage: 503 for 30 s",
        "Revoke the grant",
        "Clear faults",
    ],
    widget_title: "The account's own page",
    widget_hint: "What the account's administrator sees in amoCRM: the widget's settings \
                  (amohook's own script.js, as `amohook widget` packs it) ask amohook for the \
                  account's page with amoCRM's signed token. Open the link it gives to choose \
                  what the notes say, preview them and save.",
    widget_open: "Open amoCRM's widget settings",
};

const RU: Words = Words {
    heading: "Песочница: имитация аккаунта amoCRM",
    intro: "То, что вы сохраните здесь, сохраняется в имитации amoCRM, и она отправляет \
            веб-хук amoCRM на адрес хука этого аккаунта, как это делает amoCRM.",
    change_title: "Добавить или изменить карточку",
    card: "Карточка",
    name: "Название",
    price: "Бюджет",
    stage: "Этап",
    responsible: "Ответственный",
    unchanged: "(как есть)",
    leads_only: "только для сделок",
    save: "Сохранить в amoCRM",
    notes_title: "Примечания в amoCRM",
    no_notes: "Примечаний пока нет. amohook пишет одно на каждое полученное изменение.",
    reload: "Обновить",
    faults_title: "Сбои имитации amoCRM",
    faults_hint: "Затем сохраните карточку и следите за событиями: на 429 запрос повторяется \
                  через 1–3 с; на 5xx и при недоступности — с нарастающей паузой от 5 с; после \
                  отзыва доступа аккаунт при следующем обращении станет «нужна переустановка», \
                  а кнопка установки вверху установит его снова.",
    no_fault: "Нет: имитация amoCRM отвечает как обычно (не больше 7 запросов в секунду).",
    new: ["Новая сделка", "Новый контакт", "Новая компания"],
    change: "Изменить",
    entity: ["Сделка", "Контакт", "Компания"],
    switches: [
        "429 Too Many Requests на 10 с",
        "502 на 2 следующих запроса",
        "Недоступность: 503 на 30 с",
        "Отозвать доступ",
        "Убрать сбои",
    ],
    widget_title: "Собственная страница аккаунта",
    widget_hint: "То, что видит администратор аккаунта в amoCRM: настройки виджета (собственный \
                  script.js amohook, как его упаковывает `amohook widget`) запрашивают у amohook \
                  страницу аккаунта с подписанным токеном amoCRM. Откройте выданную ссылку, чтобы \
                  выбрать, что пишут примечания, посмотреть их и сохранить.",
    widget_open: "Открыть настройки виджета в amoCRM",
};

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

pub(super) struct Choice {
    pub(super) value: String,
    pub(super) label: String,
}

pub(super) struct NoteView {
    pub(super) rel: String,
    pub(super) abs: String,
    pub(super) text: String,
}

pub(super) struct CardView {
    pub(super) kind: &'static str,
    pub(super) title: String,
    pub(super) notes: Vec<NoteView>,
}

/// The panel of one account's page.
pub(super) struct Panel {
    pub(super) w: &'static Words,
    pub(super) choices: Vec<Choice>,
    pub(super) users: Vec<Choice>,
    pub(super) stages: Vec<Choice>,
    pub(super) cards: Vec<CardView>,
    pub(super) fault: Option<String>,
    pub(super) switches: Vec<Choice>,
    /// The simulated amoCRM's widget settings for the account's first
    /// user, an administrator.
    pub(super) widget_frame: String,
}

impl Panel {
    pub(super) fn new(sandbox: &Sandbox, domain: &str, t: &Texts) -> Panel {
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

/// The forms carry the account page's CSRF token; cross-site posts are
/// refused.
fn guard(state: &AppState, headers: &HeaderMap, id: i64, csrf: &str) -> Result<(), PageError> {
    let expected = csrf_token(state, id);
    if cross_site(headers) || !bool::from(csrf.as_bytes().ct_eq(expected.as_bytes())) {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "This form was not sent from the status page.",
        )
        .into());
    }
    Ok(())
}

/// The sandbox and the simulated account's host of account `id`.
async fn sandbox_of(state: &AppState, id: i64) -> Result<(&Sandbox, String), PageError> {
    // The routes exist only with a sandbox; without one this is a bug.
    let sandbox = state.sandbox.as_deref().ok_or_else(|| {
        AppError::internal(anyhow::anyhow!("sandbox routes mounted without a sandbox"))
    })?;
    let row = stats::one(&state.pool, id)
        .await?
        .ok_or_else(|| AppError::not_found("No such account."))?;
    Ok((sandbox, row.domain))
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
pub(super) struct CardForm {
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
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<CardForm>,
) -> Result<Response, PageError> {
    guard(&state, &headers, id, &form.csrf)?;
    let (sandbox, domain) = sandbox_of(&state, id).await?;
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
pub(super) struct FaultForm {
    csrf: String,
    fault: String,
}

async fn switch_fault(
    _: Admin,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<FaultForm>,
) -> Result<Response, PageError> {
    guard(&state, &headers, id, &form.csrf)?;
    let (sandbox, domain) = sandbox_of(&state, id).await?;
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
