//! More bodies amoCRM really sends (see real_bodies.rs): first-seen
//! updates, stages, phones, bodies about nothing.

use amocrm_sim::Fault;

use crate::helpers::{form, TestApp};

use crate::real_bodies::*;

#[tokio::test]
async fn without_events_a_first_seen_update_lists_only_the_hooks_facts() {
    let (app, key) = app_with(RU).await;
    // No rights to the events (a problem+json 403, not a block).
    let refused = Fault::Problem {
        status: 403,
        hint: "Access denied".into(),
    };
    app.fake.fail_next(RU, "/api/v4/events", refused.clone(), 1);
    app.fake.fail_next(RU, "/api/v4/events", refused, 1);
    // A stage move of a card seen for the first time: `old_status_id`
    // persists on a card's later hooks, so without amoCRM's events it is
    // not written; the note says the card changed.
    let moved = encode(
        full_update("1", "59936202", "59936198", "1695482894", &[]),
        RU,
    );
    let notes = notes_after(&app, &key, moved).await;
    assert_eq!(
        notes,
        ["Изменена сделка «Сделка по оптовому заказу». Изменена: 23.09.2023 18:28:14"]
    );
    // Then the status and responsible hooks of that very change (as a real
    // account sends them after the update): the stored state already shows
    // the new stage and responsible, but no note said them, so both are
    // noted.
    let status = |action: &str, extra: &[(&str, &str)]| {
        let mut pairs = full_update("1", "59936202", "59936198", "1695482894", extra);
        for (k, _) in pairs.iter_mut() {
            *k = k.replace("[update]", &format!("[{action}]"));
        }
        encode(pairs, RU)
    };
    let notes = notes_after(&app, &key, status("status", &[])).await;
    assert_eq!(
        notes[1],
        "Изменена сделка «Сделка по оптовому заказу»: Этап: Первичный контакт → Счёт выставлен. \
         Изменена: 23.09.2023 18:28:14"
    );
    let notes = notes_after(
        &app,
        &key,
        status("responsible", &[("old_responsible_user_id", "100")]),
    )
    .await;
    assert_eq!(
        notes[2],
        "Изменена сделка «Сделка по оптовому заказу»: Ответственный: Иван Петров → Анна Смирнова. \
         Изменена: 23.09.2023 18:28:14"
    );
    // A later update still carrying the old stage: the move is not said
    // twice; its own change is.
    let later = encode(
        full_update("1", "59936202", "59936198", "1695483000", &[])
            .into_iter()
            .map(|(k, v)| {
                if k.ends_with("[price]") {
                    (k, "50000".into())
                } else {
                    (k, v)
                }
            })
            .collect(),
        RU,
    );
    let notes = notes_after(&app, &key, later).await;
    assert_eq!(
        notes[3],
        "Изменена сделка «Сделка по оптовому заказу»: Бюджет: 45000 ₽ → 50000 ₽. \
         Изменена: 23.09.2023 18:30:00"
    );
    // Nothing the hook can tell: the note says the card changed.
    let other = encode(
        full_update("2", "59936202", "59936202", "1695482894", &[]),
        RU,
    );
    let notes = notes_after(&app, &key, other).await;
    assert_eq!(
        notes[4],
        "Изменена сделка «Сделка по оптовому заказу». Изменена: 23.09.2023 18:28:14"
    );
}

#[tokio::test]
async fn the_hooks_old_stage_wins_over_a_stale_state_and_a_move_is_noted_once() {
    let (app, key) = app_with(RU).await;
    notes_after(
        &app,
        &key,
        encode(
            full_update("7", "59936198", "59936198", "1695480000", &[]),
            RU,
        ),
    )
    .await;
    // A hook was missed (the lead went to stage 142 and back to 59936202
    // meanwhile); this one says 142 → 59936202.
    let update = encode(full_update("7", "59936202", "142", "1695482894", &[]), RU);
    let notes = notes_after(&app, &key, update).await;
    assert_eq!(
        notes.last().unwrap(),
        "Изменена сделка «Сделка по оптовому заказу»: Этап: Успешно реализовано → Счёт выставлен. \
         Изменена: 23.09.2023 18:28:14"
    );
    // The digital pipeline's hook of the same move arrives too: no second note.
    let stage = body(
        &[
            ("leads[status][0][id]", "7"),
            ("leads[status][0][status_id]", "59936202"),
            ("leads[status][0][pipeline_id]", "7173574"),
            ("leads[status][0][old_status_id]", "142"),
            ("leads[status][0][old_pipeline_id]", "7173574"),
        ],
        RU,
    );
    let before = notes.len();
    let notes = notes_after(&app, &key, stage).await;
    assert_eq!(notes.len(), before, "{notes:?}");
}

#[tokio::test]
async fn a_contact_update_reads_phones_with_their_type_in_both_languages() {
    for (domain, expected) in [
        (
            RU,
            "Изменён контакт «Абиба абибович»: Телефон: 333 (рабочий) → 333 (рабочий), 8 999 (мобильный); \
             День рождения: — → 13 января. Изменён: 26.05.2025 23:56:39",
        ),
        (
            KOMMO,
            "Contact changed: “Абиба абибович”: Телефон: 333 (work) → 333 (work), 8 999 (mobile); \
             День рождения: — → January 13. Changed: 26.05.2025 23:56:39",
        ),
    ] {
        let app = TestApp::spawn_without_worker().await;
        let key = app.connected_as(domain, account(ID)).await;
        // Capture B of the reference: a contact update as curl sends it.
        let contact = |extra: &[(&str, &str)]| {
            let mut pairs = vec![
                ("contacts[update][0][id]", "37054081"),
                ("contacts[update][0][name]", "Абиба абибович"),
                ("contacts[update][0][responsible_user_id]", "100"),
                ("contacts[update][0][date_create]", "1748289231"),
                ("contacts[update][0][last_modified]", "1748292937"),
                ("contacts[update][0][custom_fields][0][id]", "735649"),
                ("contacts[update][0][custom_fields][0][name]", "Телефон"),
                ("contacts[update][0][custom_fields][0][values][0][value]", "333"),
                ("contacts[update][0][custom_fields][0][values][0][enum]", "718321"),
                ("contacts[update][0][custom_fields][0][code]", "PHONE"),
                ("contacts[update][0][old_responsible_user_id]", "100"),
                ("contacts[update][0][created_at]", "1748289231"),
                ("contacts[update][0][updated_at]", "1748292937"),
                ("contacts[update][0][type]", "contact"),
            ];
            pairs.extend_from_slice(extra);
            body(&pairs, domain)
        };
        notes_after(&app, &key, contact(&[])).await;
        let notes = notes_after(
            &app,
            &key,
            contact(&[
                ("contacts[update][0][custom_fields][0][values][1][value]", "8 999"),
                ("contacts[update][0][custom_fields][0][values][1][enum]", "718323"),
                ("contacts[update][0][custom_fields][1][id]", "735651"),
                ("contacts[update][0][custom_fields][1][name]", "День рождения"),
                ("contacts[update][0][custom_fields][1][values][0]", "1673560800"),
            ])
            .replace("1748292937", "1748292999"),
        )
        .await;
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert_eq!(notes[1], expected);
    }
}

#[tokio::test]
async fn bodies_about_nothing_amohook_notes_are_answered_200_and_note_nothing() {
    let (app, key) = app_with(KOMMO).await;
    for entity in [
        form(&[
            ("leads[delete][0][id]", "1"),
            ("leads[delete][0][status_id]", "143"),
            ("account[id]", &ID.to_string()),
        ]),
        form(&[
            ("contacts[restore][0][id]", "2"),
            ("account[id]", &ID.to_string()),
        ]),
        form(&[
            ("unsorted[add][0][uid]", "9f8e"),
            ("unsorted[add][0][source]", "form"),
            ("account[id]", &ID.to_string()),
        ]),
        form(&[
            ("message[add][0][id]", "m1"),
            ("message[add][0][text]", "hi"),
            ("account[id]", &ID.to_string()),
        ]),
        form(&[
            ("leads[note][0][note][element_id]", "5"),
            ("leads[note][0][note][text]", "x"),
            ("account[id]", &ID.to_string()),
        ]),
    ] {
        assert_eq!(app.post_hook(&key, entity).await.status(), 200);
    }
    app.state.worker.drain().await.unwrap();
    assert!(app.fake.notes().is_empty());
}
