//! A simulated account as amoCRM holds it (its users, pipelines, fields,
//! currency, language), and the notes written in it.

use std::time::Instant;

use crate::records::SimField;

#[derive(Debug, Clone)]
pub struct SimAccount {
    pub id: i64,
    pub name: String,
    pub timezone: String,
    /// Admin-only methods (webhooks, users) answer 403 when false.
    pub admin: bool,
    pub users: Vec<(i64, String)>,
    pub pipelines: Vec<SimPipeline>,
    /// Custom field definitions by entity (`leads`, `contacts`, `companies`).
    pub fields: Vec<(String, SimField)>,
    pub currency: String,
    pub currency_symbol: String,
    /// PHP date() patterns, as `datetime_settings` gives them.
    pub date_pattern: String,
    pub time_pattern: String,
    /// The `lang` of the account's users (the first of `users` is the one
    /// tokens speak for): None answers `ru` on amocrm.ru, `en` elsewhere.
    pub lang: Option<String>,
}

/// (pipeline id, name, [(status id, name)])
pub type SimPipeline = (i64, String, Vec<(i64, String)>);

impl SimAccount {
    /// An admin's account with two users and one pipeline.
    pub fn new(id: i64) -> Self {
        SimAccount {
            id,
            name: format!("Account {id}"),
            timezone: "Europe/Moscow".into(),
            admin: true,
            users: vec![(100, "Иван Петров".into()), (101, "Мария Иванова".into())],
            pipelines: vec![(
                10,
                "Продажи".into(),
                vec![
                    (1, "Новая".into()),
                    (2, "Переговоры".into()),
                    (142, "Успешно реализовано".into()),
                ],
            )],
            fields: Vec::new(),
            currency: "RUB".into(),
            currency_symbol: "₽".into(),
            date_pattern: "d.m.Y".into(),
            time_pattern: "H:i".into(),
            lang: None,
        }
    }
}

/// A note the simulator holds: what the card's feed shows.
#[derive(Debug, Clone)]
pub struct SimNote {
    pub id: i64,
    pub domain: String,
    /// `leads`, `contacts` or `companies`.
    pub entity_type: String,
    pub entity_id: i64,
    pub text: String,
    /// `common` for the notes amohook writes; tests add others.
    pub note_type: String,
    pub request_id: Option<String>,
    /// When the note was created.
    pub at: Instant,
    /// Unix seconds, what `filter[updated_at]` compares.
    pub updated_at: i64,
}
