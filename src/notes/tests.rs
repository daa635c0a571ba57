use super::*;
use crate::{amocrm::directory::Pipeline, amocrm::hooks::FieldValue};

fn dir() -> Directory {
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
    d
}

fn lead() -> Snapshot {
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
            values: vec!["Тюмень".into()],
        }],
        ..Snapshot::default()
    }
}

const MSK: Tz = chrono_tz::Europe::Moscow;

#[test]
fn added_lead_in_russian_matches_the_example() {
    let text = added(
        Lang::Ru,
        EntityKind::Lead,
        35168771,
        &lead(),
        &dir(),
        MSK,
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
    cur.custom_fields[0].values = vec!["Тюмень".into()];
    let mut prev = lead();
    prev.custom_fields.clear();
    let changes = diff(EntityKind::Lead, Some(&prev), &cur, &dir());
    let text = changed(
        Lang::Ru,
        EntityKind::Lead,
        1,
        &cur,
        &changes,
        MSK,
        1712332931,
    );
    assert_eq!(
        text,
        "Изменена сделка «Заказ #87856»: Бюджет: 1000 → 2500; Этап: Новая → Переговоры; \
         Город доставки: — → Тюмень. Изменена: 05.04.2024 19:02:11"
    );
}

#[test]
fn unchanged_fields_are_not_listed_and_no_change_is_empty() {
    assert!(diff(EntityKind::Lead, Some(&lead()), &lead(), &dir()).is_empty());
    let mut cur = lead();
    cur.responsible_user_id = Some(2);
    let changes = diff(EntityKind::Lead, Some(&lead()), &cur, &dir());
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].old.as_deref(), changes[0].new.as_str()),
        (Some("Иван Петров"), "Мария Иванова")
    );
}

#[test]
fn pipeline_change_names_the_pipeline_and_the_stage() {
    let mut cur = lead();
    cur.pipeline_id = Some(7);
    cur.status_id = Some(70);
    let changes = diff(EntityKind::Lead, Some(&lead()), &cur, &dir());
    let text = changed(
        Lang::En,
        EntityKind::Lead,
        1,
        &cur,
        &changes,
        MSK,
        1712332931,
    );
    assert_eq!(
        text,
        "Lead changed: “Заказ #87856”: Stage: Новая → Первичный контакт; Pipeline: Продажи → Опт. Changed: 05.04.2024 19:02:11"
    );
}

#[test]
fn first_update_lists_current_values_as_new() {
    let mut cur = lead();
    cur.old_status_id = Some(2);
    cur.custom_fields.push(FieldValue {
        id: "9".into(),
        name: "Теги".into(),
        values: vec!["a".into(), "b".into()],
    });
    cur.custom_fields.push(FieldValue {
        id: "10".into(),
        name: "Пусто".into(),
        values: vec![],
    });
    let changes = diff(EntityKind::Lead, None, &cur, &dir());
    let text = changed(
        Lang::Ru,
        EntityKind::Lead,
        1,
        &cur,
        &changes,
        MSK,
        1712332931,
    );
    assert_eq!(
        text,
        "Изменена сделка «Заказ #87856»: Бюджет: 1000; Этап: Переговоры → Новая; Ответственный: Иван Петров; \
         Город доставки: Тюмень; Теги: a, b. Изменена: 05.04.2024 19:02:11"
    );
}

#[test]
fn cleared_fields_and_unknown_ids_read_sensibly() {
    let mut cur = lead();
    cur.custom_fields.clear();
    cur.responsible_user_id = Some(555);
    cur.status_id = Some(999);
    let changes = diff(EntityKind::Lead, Some(&lead()), &cur, &dir());
    let text = changed(
        Lang::Ru,
        EntityKind::Lead,
        1,
        &cur,
        &changes,
        MSK,
        1712332931,
    );
    assert!(text.contains("Этап: Новая → 999"), "{text}");
    assert!(text.contains("Ответственный: Иван Петров → 555"), "{text}");
    assert!(text.contains("Город доставки: Тюмень → —"), "{text}");
}

#[test]
fn contacts_and_companies_use_their_own_words() {
    let snap = Snapshot {
        name: "Tom & \"Jerry\" 🚀".into(),
        responsible_user_id: Some(555),
        created_at: Some(1712331728),
        ..Snapshot::default()
    };
    assert_eq!(
        added(Lang::Ru, EntityKind::Contact, 5, &snap, &dir(), MSK, 0),
        "Создан контакт «Tom & \"Jerry\" 🚀». Ответственный: 555. Добавлен: 05.04.2024 18:42:08"
    );
    assert_eq!(
        added(
            Lang::En,
            EntityKind::Company,
            5,
            &snap,
            &dir(),
            chrono_tz::UTC,
            0
        ),
        "Company added: “Tom & \"Jerry\" 🚀”. Responsible: 555. Added: 05.04.2024 15:42:08"
    );
    let unnamed = Snapshot {
        created_at: Some(0),
        ..Snapshot::default()
    };
    assert_eq!(
        added(
            Lang::Ru,
            EntityKind::Company,
            77,
            &unnamed,
            &dir(),
            chrono_tz::UTC,
            0
        ),
        "Создана компания #77. Ответственный: —. Добавлена: 01.01.1970 00:00:00"
    );
}

#[test]
fn language_follows_the_account_domain() {
    assert_eq!(Lang::for_domain("acme.amocrm.ru"), Lang::Ru);
    assert_eq!(Lang::for_domain("acme.kommo.com"), Lang::En);
    assert_eq!(Lang::for_domain("acme.amocrm.com"), Lang::En);
}
