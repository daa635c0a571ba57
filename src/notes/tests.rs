use super::*;
use crate::amocrm::{
    directory::{Directory, FieldDef, KindFields, Pipeline, Settings},
    events::CardChange,
    hooks::{Action, FieldItem, FieldValue},
};
use std::collections::BTreeMap;

pub(crate) fn dir() -> Directory {
    let mut d = Directory::default();
    d.users.insert(9750914, "Иван Петров".into());
    d.users.insert(2, "Мария Иванова".into());
    d.pipelines.insert(
        5723341,
        Pipeline {
            name: "Продажи".into(),
            statuses: [
                (1, "Новая".into()),
                (2, "Переговоры".into()),
                (142, "Успешно".into()),
            ]
            .into(),
        },
    );
    d.pipelines.insert(
        7,
        Pipeline {
            name: "Опт".into(),
            statuses: [(70, "Первичный контакт".into())].into(),
        },
    );
    d.settings = Settings {
        currency: Some("RUB".into()),
        currency_symbol: Some("₽".into()),
        short_date_pattern: Some("d.m.Y".into()),
        short_time_pattern: Some("H:i".into()),
    };
    let def = |name: &str, kind: &str, enums: &[(i64, &str)]| FieldDef {
        name: name.into(),
        kind: kind.into(),
        enums: enums.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        currency: None,
    };
    let kind = |defs: BTreeMap<i64, FieldDef>| KindFields {
        fetched_at: chrono::Utc::now(),
        defs,
    };
    d.fields.insert(
        "leads".into(),
        kind(
            [
                (1425011, def("Город доставки", "text", &[])),
                (501, def("Дата доставки", "date", &[])),
                (502, def("Оплачено", "checkbox", &[])),
                (
                    503,
                    def("Источник", "select", &[(9001, "Сайт"), (9002, "Звонок")]),
                ),
                (
                    504,
                    def(
                        "Услуги",
                        "multiselect",
                        &[(9101, "Доставка"), (9102, "Сборка")],
                    ),
                ),
                (505, def("Визит", "date_time", &[])),
                (
                    506,
                    FieldDef {
                        currency: Some("USD".into()),
                        ..def("Предоплата", "monetary", &[])
                    },
                ),
            ]
            .into(),
        ),
    );
    d.fields.insert(
        "contacts".into(),
        kind(
            [
                (
                    601,
                    def("Телефон", "multitext", &[(7001, "WORK"), (7002, "MOB")]),
                ),
                (602, def("День рождения", "birthday", &[])),
                (603, def("Рейтинг", "smart_address_v9", &[])),
            ]
            .into(),
        ),
    );
    d
}

pub(crate) fn words(lang: Lang, dir: &Directory) -> Words<'_> {
    Words { lang, tz: MSK, dir }
}

pub(crate) fn field(id: &str, name: &str, values: Vec<FieldItem>) -> FieldValue {
    FieldValue {
        id: id.into(),
        name: name.into(),
        code: None,
        values,
    }
}

/// The note for an update of `cur` after `prev`, whose stage and
/// responsible a note already said (as for every card noted before notes
/// kept what they said).
pub(crate) fn update_note(lang: Lang, action: Action, prev: History, cur: &Snapshot) -> String {
    let said = match prev {
        History::Known(prev) => Said::of(prev),
        History::New { partial, .. } => partial.map(Said::of).unwrap_or_default(),
    };
    update_note_said(lang, action, prev, &said, cur)
}

/// The note for an update of `cur` after `prev`, notes having said `said`.
pub(crate) fn update_note_said(
    lang: Lang,
    action: Action,
    prev: History,
    said: &Said,
    cur: &Snapshot,
) -> String {
    let dir = dir();
    let w = words(lang, &dir);
    match changes(&w, EntityKind::Lead, action, prev, said, cur) {
        Outcome::Changes(c) => changed(&w, EntityKind::Lead, 1, cur, &c, 1712332931),
        Outcome::Unlisted => changed(&w, EntityKind::Lead, 1, cur, &[], 1712332931),
        Outcome::Skip(reason) => format!("skipped: {reason}"),
    }
}

pub(crate) fn lead() -> Snapshot {
    Snapshot {
        name: "Заказ #87856".into(),
        price: Some("1000".into()),
        status_id: Some(1),
        pipeline_id: Some(5723341),
        responsible_user_id: Some(9750914),
        created_at: Some(1712331728),
        updated_at: Some(1712331728),
        custom_fields: vec![FieldValue {
            id: "1425011".into(),
            name: "Город доставки".into(),
            code: None,
            values: vec!["Тюмень".into()],
        }],
        ..Snapshot::default()
    }
}

pub(crate) const MSK: Tz = chrono_tz::Europe::Moscow;

#[test]
fn added_lead_in_russian_matches_the_example() {
    let dir = dir();
    let text = added(
        &words(Lang::Ru, &dir),
        EntityKind::Lead,
        35168771,
        &lead(),
        0,
    );
    assert_eq!(
        text,
        "Создана сделка «Заказ #87856». Ответственный: Иван Петров. Добавлена: 05.04.2024 18:42:08"
    );
}

#[test]
fn changed_lead_in_russian_matches_the_example() {
    let mut cur = lead();
    cur.price = Some("2500".into());
    cur.status_id = Some(2);
    let mut prev = lead();
    prev.custom_fields.clear();
    assert_eq!(
        update_note(Lang::Ru, Action::Update, History::Known(&prev), &cur),
        "Изменена сделка «Заказ #87856»: Бюджет: 1000 ₽ → 2500 ₽; Этап: Новая → Переговоры; \
         Город доставки: — → Тюмень. Изменена: 05.04.2024 19:02:11"
    );
}

#[test]
fn unchanged_fields_are_not_listed_and_no_change_is_skipped() {
    assert_eq!(
        update_note(Lang::Ru, Action::Update, History::Known(&lead()), &lead()),
        "skipped: nothing visible changed"
    );
    let mut cur = lead();
    cur.responsible_user_id = Some(2);
    assert_eq!(
        update_note(Lang::Ru, Action::Update, History::Known(&lead()), &cur),
        "Изменена сделка «Заказ #87856»: Ответственный: Иван Петров → Мария Иванова. \
         Изменена: 05.04.2024 19:02:11"
    );
}

#[test]
fn a_pipeline_change_names_pipeline_and_stage_on_both_sides() {
    let mut cur = lead();
    cur.pipeline_id = Some(7);
    cur.status_id = Some(70);
    assert_eq!(
        update_note(Lang::En, Action::Update, History::Known(&lead()), &cur),
        "Lead changed: “Заказ #87856”: Stage: Продажи / Новая → Опт / Первичный контакт. \
         Changed: 05.04.2024 19:02:11"
    );
}

#[test]
fn cleared_fields_and_unknown_ids_read_sensibly() {
    let mut cur = lead();
    cur.custom_fields.clear();
    cur.responsible_user_id = Some(555);
    cur.status_id = Some(999);
    let text = update_note(Lang::Ru, Action::Update, History::Known(&lead()), &cur);
    assert!(text.contains("Этап: Новая → 999"), "{text}");
    assert!(text.contains("Ответственный: Иван Петров → 555"), "{text}");
    assert!(text.contains("Город доставки: Тюмень → —"), "{text}");
}

#[test]
fn the_hooks_own_old_values_win_over_the_stored_state() {
    // amohook last saw the lead in stage 1 (a hook was missed since); this
    // hook says the lead moved from 2 to 142.
    let mut cur = lead();
    cur.status_id = Some(142);
    cur.old_status_id = Some(2);
    cur.responsible_user_id = Some(2);
    cur.old_responsible_user_id = Some(555);
    assert_eq!(
        update_note(Lang::Ru, Action::Update, History::Known(&lead()), &cur),
        "Изменена сделка «Заказ #87856»: Этап: Переговоры → Успешно; \
         Ответственный: 555 → Мария Иванова. Изменена: 05.04.2024 19:02:11"
    );
}

#[test]
fn a_move_already_seen_is_not_repeated() {
    // The status hook of this move came first and was noted; the update
    // hook of the same move says nothing new about the stage.
    let mut seen = lead();
    seen.status_id = Some(2);
    let mut cur = seen.clone();
    cur.old_status_id = Some(1);
    assert_eq!(
        update_note(Lang::Ru, Action::Update, History::Known(&seen), &cur),
        "skipped: nothing visible changed"
    );
}

#[test]
fn unassigned_reads_not_assigned() {
    let mut cur = lead();
    cur.responsible_user_id = Some(9750914);
    let mut prev = lead();
    prev.responsible_user_id = Some(0);
    assert_eq!(
        update_note(Lang::Ru, Action::Update, History::Known(&prev), &cur),
        "Изменена сделка «Заказ #87856»: Ответственный: не назначен → Иван Петров. \
         Изменена: 05.04.2024 19:02:11"
    );
    let unassigned = Snapshot {
        name: "Заявка с сайта".into(),
        responsible_user_id: Some(0),
        created_at: Some(1712331728),
        ..Snapshot::default()
    };
    let dir = dir();
    assert_eq!(
        added(&words(Lang::En, &dir), EntityKind::Lead, 5, &unassigned, 0),
        "Lead added: “Заявка с сайта”. Responsible: not assigned. Added: 05.04.2024 18:42:08"
    );
}

/// A digital-pipeline status body: ids only.
pub(crate) fn pipeline_status(old: (i64, i64), new: (i64, i64)) -> Snapshot {
    Snapshot {
        partial: true,
        pipeline_id: Some(new.0),
        status_id: Some(new.1),
        old_pipeline_id: Some(old.0),
        old_status_id: Some(old.1),
        ..Snapshot::default()
    }
}

#[test]
fn a_digital_pipeline_status_body_is_a_stage_change_note() {
    let new = History::New {
        partial: None,
        events: None,
    };
    let cur = pipeline_status((5723341, 1), (5723341, 2));
    assert_eq!(
        update_note(Lang::Ru, Action::Status, new, &cur),
        "Изменена сделка #1: Этап: Новая → Переговоры. Изменена: 05.04.2024 19:02:11"
    );
    let cur = pipeline_status((5723341, 1), (7, 70));
    assert_eq!(
        update_note(Lang::En, Action::Status, new, &cur),
        "Lead changed: #1: Stage: Продажи / Новая → Опт / Первичный контакт. Changed: 05.04.2024 19:02:11"
    );
    // Known card: only the stage, even though the short body has no name
    // and no fields.
    let cur = pipeline_status((5723341, 1), (5723341, 142));
    assert_eq!(
        update_note(Lang::Ru, Action::Status, History::Known(&lead()), &cur),
        "Изменена сделка #1: Этап: Новая → Успешно. Изменена: 05.04.2024 19:02:11"
    );
    // Already at that stage: not noted twice.
    let mut there = lead();
    there.status_id = Some(142);
    assert!(
        update_note(Lang::Ru, Action::Status, History::Known(&there), &cur).starts_with("skipped")
    );
}

#[test]
fn a_responsible_hook_notes_the_responsible_change_only() {
    let mut cur = lead();
    cur.name = "Новое имя".into();
    cur.responsible_user_id = Some(2);
    cur.old_responsible_user_id = Some(9750914);
    let new = History::New {
        partial: None,
        events: None,
    };
    assert_eq!(
        update_note(Lang::Ru, Action::Responsible, new, &cur),
        "Изменена сделка «Новое имя»: Ответственный: Иван Петров → Мария Иванова. \
         Изменена: 05.04.2024 19:02:11"
    );
}

#[test]
fn a_first_seen_update_lists_what_the_events_say_not_every_field() {
    // A lead that existed before the install moves to the next stage: the
    // hook shows all 1 + 2 fields, the events the one change.
    let mut cur = lead();
    cur.status_id = Some(2);
    cur.old_status_id = Some(1);
    cur.custom_fields
        .push(field("501", "Дата доставки", vec!["1673560800".into()]));
    let events = [CardChange::Field {
        field_id: 502,
        before: vec![],
        after: vec!["1".into()],
    }];
    let history = History::New {
        partial: None,
        events: Some(&events),
    };
    // The hook's old stage may be an earlier change's (`old_status_id`
    // persists on a card's later hooks): no stage event, no stage move.
    assert_eq!(
        update_note(Lang::Ru, Action::Update, history, &cur),
        "Изменена сделка «Заказ #87856»: Оплачено: — → да. Изменена: 05.04.2024 19:02:11"
    );
    // The events of the stage move confirm it, and are not listed twice.
    let events = [
        CardChange::Stage {
            before: Some((Some(5723341), 1)),
            after: Some((Some(5723341), 2)),
        },
        CardChange::Name {
            before: Some("Заказ".into()),
            after: Some("Заказ #87856".into()),
        },
        CardChange::Sale {
            before: Some("0".into()),
            after: Some("1000".into()),
        },
        CardChange::Responsible {
            before: Some(0),
            after: Some(9750914),
        },
    ];
    let history = History::New {
        partial: None,
        events: Some(&events),
    };
    assert_eq!(
        update_note(Lang::En, Action::Update, history, &cur),
        "Lead changed: “Заказ #87856”: Stage: Новая → Переговоры; Name: Заказ → Заказ #87856; \
         Budget: 0 ₽ → 1000 ₽; Responsible: not assigned → Иван Петров. Changed: 05.04.2024 19:02:11"
    );
}
