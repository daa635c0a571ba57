//! What notes say, continued: first-seen updates, moves no note said, words
//! per card kind and language.

use super::*;
use crate::amocrm::hooks::{Action, FieldItem};

use super::tests::*;

#[test]
fn without_events_a_first_seen_update_invents_nothing() {
    let cur = lead();
    let unavailable = History::New {
        partial: None,
        events: None,
    };
    assert_eq!(
        update_note(Lang::Ru, Action::Update, unavailable, &cur),
        "Изменена сделка «Заказ #87856». Изменена: 05.04.2024 19:02:11"
    );
    assert_eq!(
        update_note(Lang::En, Action::Update, unavailable, &cur),
        "Lead changed: “Заказ #87856”. Changed: 05.04.2024 19:02:11"
    );
    // Events that name nothing amohook shows: the same.
    let none = History::New {
        partial: None,
        events: Some(&[]),
    };
    assert_eq!(
        update_note(Lang::Ru, Action::Update, none, &cur),
        "Изменена сделка «Заказ #87856». Изменена: 05.04.2024 19:02:11"
    );
    // The hook's old stage of a card seen for the first time is not
    // written unconfirmed (it may be an earlier change's); the old
    // responsible is this change's.
    let mut moved = lead();
    moved.old_status_id = Some(2);
    assert_eq!(
        update_note(Lang::Ru, Action::Update, unavailable, &moved),
        "Изменена сделка «Заказ #87856». Изменена: 05.04.2024 19:02:11"
    );
    moved.old_responsible_user_id = Some(2);
    assert_eq!(
        update_note(Lang::Ru, Action::Update, unavailable, &moved),
        "Изменена сделка «Заказ #87856»: Ответственный: Мария Иванова → Иван Петров. \
         Изменена: 05.04.2024 19:02:11"
    );
}

/// The real sequence: a first-seen update whose note could list nothing
/// (it stored the new stage and responsible), then the status hook and the
/// responsible hook of that very change. Neither move was said by a note:
/// both are noted, though the stored state already shows them.
#[test]
fn moves_no_note_said_are_noted_though_the_stored_state_shows_them() {
    let mut stored = lead();
    stored.status_id = Some(2);
    stored.responsible_user_id = Some(2);
    let nothing = Said::default();
    let mut status = stored.clone();
    status.old_status_id = Some(1);
    assert_eq!(
        update_note_said(
            Lang::Ru,
            Action::Status,
            History::Known(&stored),
            &nothing,
            &status
        ),
        "Изменена сделка «Заказ #87856»: Этап: Новая → Переговоры. Изменена: 05.04.2024 19:02:11"
    );
    let mut responsible = stored.clone();
    responsible.old_responsible_user_id = Some(9750914);
    assert_eq!(
        update_note_said(
            Lang::Ru,
            Action::Responsible,
            History::Known(&stored),
            &nothing,
            &responsible
        ),
        "Изменена сделка «Заказ #87856»: Ответственный: Иван Петров → Мария Иванова. \
         Изменена: 05.04.2024 19:02:11"
    );
    // Once a note said them, the same facts again are not repeated.
    let said = Said::default()
        .after(
            Action::Status,
            &[Change {
                key: "status",
                field: String::new(),
                field_id: None,
                old: None,
                new: String::new(),
            }],
            &status,
        )
        .after(
            Action::Responsible,
            &[Change {
                key: "responsible",
                field: String::new(),
                field_id: None,
                old: None,
                new: String::new(),
            }],
            &responsible,
        );
    assert_eq!(said.status, Some(2));
    assert_eq!(said.responsible, Some(2));
    assert!(update_note_said(
        Lang::Ru,
        Action::Status,
        History::Known(&stored),
        &said,
        &status
    )
    .starts_with("skipped"));
    // A later hook of the card still carrying `old_status_id` (Kommo's
    // examples show it persist): the stage is not repeated, the new change
    // is noted.
    let mut later = status.clone();
    later.price = Some("2000".into());
    assert_eq!(
        update_note_said(
            Lang::Ru,
            Action::Update,
            History::Known(&stored),
            &said,
            &later
        ),
        "Изменена сделка «Заказ #87856»: Бюджет: 1000 ₽ → 2000 ₽. Изменена: 05.04.2024 19:02:11"
    );
}

#[test]
fn contacts_and_companies_use_their_own_words() {
    let snap = Snapshot {
        name: "Tom & \"Jerry\" 🚀".into(),
        responsible_user_id: Some(555),
        created_at: Some(1712331728),
        ..Snapshot::default()
    };
    let dir = dir();
    assert_eq!(
        added(&words(Lang::Ru, &dir), EntityKind::Contact, 5, &snap, 0),
        "Создан контакт «Tom & \"Jerry\" 🚀». Ответственный: 555. Добавлен: 05.04.2024 18:42:08"
    );
    let utc = Words {
        lang: Lang::En,
        tz: chrono_tz::UTC,
        dir: &dir,
    };
    assert_eq!(
        added(&utc, EntityKind::Company, 5, &snap, 0),
        "Company added: “Tom & \"Jerry\" 🚀”. Responsible: 555. Added: 05.04.2024 15:42:08"
    );
    // A short body names no responsible user: the note names none.
    let unnamed = Snapshot {
        partial: true,
        created_at: Some(0),
        ..Snapshot::default()
    };
    let utc_ru = Words {
        lang: Lang::Ru,
        tz: chrono_tz::UTC,
        dir: &dir,
    };
    assert_eq!(
        added(&utc_ru, EntityKind::Company, 77, &unnamed, 0),
        "Создана компания #77. Добавлена: 01.01.1970 00:00:00"
    );
}

#[test]
fn language_follows_the_account_domain() {
    assert_eq!(Lang::for_domain("acme.amocrm.ru"), Lang::Ru);
    assert_eq!(Lang::for_domain("acme.kommo.com"), Lang::En);
    assert_eq!(Lang::for_domain("acme.amocrm.com"), Lang::En);
}

#[test]
fn notes_read_in_spanish_and_portuguese() {
    let dir = dir();
    let added_in = |lang, kind, snap: &Snapshot| added(&words(lang, &dir), kind, 5, snap, 0);
    assert_eq!(
        added_in(Lang::Es, EntityKind::Lead, &lead()),
        "Lead creado: «Заказ #87856». Responsable: Иван Петров. Creado: 05.04.2024 18:42:08"
    );
    assert_eq!(
        added_in(Lang::Pt, EntityKind::Lead, &lead()),
        "Lead criado: “Заказ #87856”. Responsável: Иван Петров. Criado em: 05.04.2024 18:42:08"
    );
    let nobody = Snapshot {
        name: "Acme".into(),
        responsible_user_id: Some(0),
        created_at: Some(1712331728),
        ..Snapshot::default()
    };
    assert_eq!(
        added_in(Lang::Es, EntityKind::Company, &nobody),
        "Empresa creada: «Acme». Responsable: sin asignar. Creada: 05.04.2024 18:42:08"
    );
    assert_eq!(
        added_in(Lang::Pt, EntityKind::Contact, &nobody),
        "Contato criado: “Acme”. Responsável: não atribuído. Criado em: 05.04.2024 18:42:08"
    );
    let mut cur = lead();
    cur.price = Some("2500".into());
    cur.status_id = Some(2);
    cur.responsible_user_id = Some(2);
    cur.custom_fields.push(field("502", "", vec!["1".into()]));
    assert_eq!(
        update_note(Lang::Es, Action::Update, History::Known(&lead()), &cur),
        "Lead modificado: «Заказ #87856»: Venta: 1000 ₽ → 2500 ₽; Etapa: Новая → Переговоры; \
         Responsable: Иван Петров → Мария Иванова; Оплачено: — → sí. Modificado: 05.04.2024 19:02:11"
    );
    assert_eq!(
        update_note(Lang::Pt, Action::Update, History::Known(&lead()), &cur),
        "Lead alterado: “Заказ #87856”: Venda: 1000 ₽ → 2500 ₽; Etapa: Новая → Переговоры; \
         Responsável: Иван Петров → Мария Иванова; Оплачено: — → sim. Alterado em: 05.04.2024 19:02:11"
    );
    // Value words: yes/no, phone types, birthdays.
    let contact = |id: &str, values: Vec<FieldItem>| field(id, "", values);
    let choice = |value: &str, enum_id| FieldItem::Choice {
        value: value.into(),
        enum_id,
    };
    for (lang, no, phone, birthday) in [
        (
            Lang::Es,
            "no",
            "+1 555 (móvil), +1 556 (trabajo)",
            "13 de enero",
        ),
        (
            Lang::Pt,
            "não",
            "+1 555 (celular), +1 556 (trabalho)",
            "13 de janeiro",
        ),
    ] {
        let w = words(lang, &dir);
        assert_eq!(
            w.field(EntityKind::Lead, &contact("502", vec!["0".into()])),
            no
        );
        assert_eq!(
            w.field(
                EntityKind::Contact,
                &contact("601", vec![choice("+1 555", 7002), choice("+1 556", 7001)])
            ),
            phone
        );
        assert_eq!(
            w.field(
                EntityKind::Contact,
                &contact("602", vec!["1673560800".into()])
            ),
            birthday
        );
    }
}
