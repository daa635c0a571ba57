//! What notes say of values: by field type, dates sent as day.month.year text,
//! the account's date pattern.

use super::tests::*;
use super::*;
use crate::amocrm::hooks::FieldItem;

#[test]
fn values_are_written_by_their_field_type() {
    let dir = dir();
    let ru = words(Lang::Ru, &dir);
    let en = words(Lang::En, &dir);
    let lead = |id: &str, values: Vec<FieldItem>| field(id, "", values);
    let choice = |value: &str, enum_id| FieldItem::Choice {
        value: value.into(),
        enum_id,
    };
    // 1673560800 is 13.01.2023 01:00 in Moscow.
    assert_eq!(
        ru.field(EntityKind::Lead, &lead("501", vec!["1673560800".into()])),
        "13.01.2023"
    );
    assert_eq!(
        ru.field(EntityKind::Lead, &lead("505", vec!["1673560800".into()])),
        "13.01.2023 01:00"
    );
    assert_eq!(
        ru.field(EntityKind::Lead, &lead("502", vec!["1".into()])),
        "да"
    );
    assert_eq!(
        en.field(EntityKind::Lead, &lead("502", vec!["0".into()])),
        "no"
    );
    assert_eq!(
        ru.field(EntityKind::Lead, &lead("503", vec![choice("", 9002)])),
        "Звонок"
    );
    assert_eq!(
        ru.field(
            EntityKind::Lead,
            &lead("504", vec![choice("Доставка", 9101), choice("", 9102)])
        ),
        "Доставка, Сборка"
    );
    assert_eq!(
        ru.field(EntityKind::Lead, &lead("506", vec!["150".into()])),
        "150 USD"
    );
    let contact = |id: &str, values: Vec<FieldItem>| field(id, "", values);
    assert_eq!(
        ru.field(
            EntityKind::Contact,
            &contact(
                "601",
                vec![
                    choice("+7 999 000-00-00", 7002),
                    choice("+7 495 000-00-00", 7001)
                ]
            )
        ),
        "+7 999 000-00-00 (мобильный), +7 495 000-00-00 (рабочий)"
    );
    assert_eq!(
        en.field(
            EntityKind::Contact,
            &contact("601", vec![choice("+1 555", 7002)])
        ),
        "+1 555 (mobile)"
    );
    // A birthday has no year.
    assert_eq!(
        ru.field(
            EntityKind::Contact,
            &contact("602", vec!["1673560800".into()])
        ),
        "13 января"
    );
    assert_eq!(
        en.field(
            EntityKind::Contact,
            &contact("602", vec!["1673560800".into()])
        ),
        "January 13"
    );
    // Unknown types, unknown fields and values that are not what the type
    // says are shown as they came.
    assert_eq!(
        ru.field(EntityKind::Contact, &contact("603", vec!["x".into()])),
        "x"
    );
    assert_eq!(
        ru.field(EntityKind::Lead, &lead("999", vec!["1673560800".into()])),
        "1673560800"
    );
    assert_eq!(
        ru.field(EntityKind::Lead, &lead("501", vec!["завтра".into()])),
        "завтра"
    );
    // Field names come from the hook, else the definitions.
    assert_eq!(ru.field_name(EntityKind::Lead, "502", None), "Оплачено");
    assert_eq!(
        ru.field_name(EntityKind::Lead, "502", Some("Оплата")),
        "Оплата"
    );
    assert_eq!(ru.field_name(EntityKind::Lead, "77", None), "#77");
}

#[test]
fn dates_sent_as_day_month_year_text_are_read_as_dates() {
    let mut dir = dir();
    let ru = words(Lang::Ru, &dir);
    let contact = |id: &str, values: Vec<FieldItem>| field(id, "", values);
    // Kommo's own example of a birthday (N16 in the reference).
    assert_eq!(
        ru.field(
            EntityKind::Contact,
            &contact("602", vec!["12.01.1980".into()])
        ),
        "12 января"
    );
    assert_eq!(
        words(Lang::En, &dir).field(
            EntityKind::Contact,
            &contact("602", vec!["12.01.1980".into()])
        ),
        "January 12"
    );
    assert_eq!(
        ru.field(EntityKind::Lead, &contact("501", vec!["15.06.2016".into()])),
        "15.06.2016"
    );
    // In the account's own date pattern, a date field with time included.
    dir.settings.short_date_pattern = Some("m/d/Y".into());
    let en = words(Lang::En, &dir);
    assert_eq!(
        en.field(EntityKind::Lead, &contact("501", vec!["15.06.2016".into()])),
        "06/15/2016"
    );
    assert_eq!(
        en.field(EntityKind::Lead, &contact("505", vec!["15.06.2016".into()])),
        "06/15/2016"
    );
    // Not a date: as it came.
    assert_eq!(
        en.field(EntityKind::Lead, &contact("501", vec!["31.02.2016".into()])),
        "31.02.2016"
    );
}

#[test]
fn the_accounts_date_pattern_is_used() {
    let mut dir = dir();
    dir.settings.short_date_pattern = Some("m/d/Y".into());
    dir.settings.short_time_pattern = Some("g:i A".into());
    let w = words(Lang::En, &dir);
    let f = field("505", "", vec!["1673560800".into()]);
    assert_eq!(w.field(EntityKind::Lead, &f), "01/13/2023 1:00 AM");
}
