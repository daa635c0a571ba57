//! Custom fields as amoCRM sends them (see real_bodies.rs): dates without a
//! value, choices by name, fields past the first fifty of the list.

use crate::helpers::TestApp;
use amocrm_sim::SimField;

use crate::real_bodies::*;

#[tokio::test]
async fn dates_without_value_read_as_dates_and_choices_by_name() {
    let (app, key) = app_with(RU).await;
    let add = encode(
        full_update("601", "59936198", "59936198", "1695482894", &[])
            .into_iter()
            .map(|(k, v)| (k.replace("[update]", "[add]"), v))
            .filter(|(k, _)| !k.contains("old_status_id"))
            .collect(),
        RU,
    );
    notes_after(&app, &key, add).await;
    // The date moves by a day and the card is paid.
    let update = encode(
        full_update(
            "601",
            "59936198",
            "59936198",
            "1695483000",
            &[
                ("custom_fields][0][values][0", "1673647200"),
                ("custom_fields][2][id", "1402698"),
                ("custom_fields][2][name", "Оплачено"),
                ("custom_fields][2][values][0][value", "1"),
            ],
        ),
        RU,
    );
    let notes = notes_after(&app, &key, update).await;
    assert_eq!(
        notes[1],
        "Изменена сделка «Сделка по оптовому заказу»: Дата доставки: 13.01.2023 → 14.01.2023; \
         Оплачено: — → да. Изменена: 23.09.2023 18:30:00"
    );
}

/// amoCRM gives at most 50 custom fields a page whatever `limit` says: an
/// account with 120 lead fields, whose date and checkbox fields come on the
/// third page, still gets them read as a date and a yes/no.
#[tokio::test]
async fn fields_past_the_first_fifty_are_read_by_their_type() {
    let mut many = account(ID);
    let known = std::mem::take(&mut many.fields);
    many.fields = (0..118)
        .map(|i| {
            (
                "leads".into(),
                SimField::new(2_000_000 + i, &format!("Поле {i}"), "text"),
            )
        })
        .chain(known)
        .collect();
    assert!(many.fields.iter().filter(|(e, _)| e == "leads").count() >= 120);
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected_as(RU, many).await;
    let add = encode(
        full_update("602", "59936198", "59936198", "1695482894", &[])
            .into_iter()
            .map(|(k, v)| (k.replace("[update]", "[add]"), v))
            .filter(|(k, _)| !k.contains("old_status_id"))
            .collect(),
        RU,
    );
    notes_after(&app, &key, add).await;
    let update = encode(
        full_update(
            "602",
            "59936198",
            "59936198",
            "1695483000",
            &[
                ("custom_fields][0][values][0", "1673647200"),
                ("custom_fields][2][id", "1402698"),
                ("custom_fields][2][name", "Оплачено"),
                ("custom_fields][2][values][0][value", "1"),
            ],
        ),
        RU,
    );
    let notes = notes_after(&app, &key, update).await;
    assert!(
        notes[1].contains("Дата доставки: 13.01.2023 → 14.01.2023; Оплачено: — → да."),
        "{}",
        notes[1]
    );
    // Three pages of 50, by the pages' own links.
    let pages = app
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v4/leads/custom_fields")
        .count();
    assert_eq!(pages, 3);
}
