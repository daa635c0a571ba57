//! Delivering: stored events become notes in the right cards.

use amocrm_sim::SimAccount;

use crate::delivery_rounds::event_reaches;
use crate::helpers::{form, lead_hook, TestApp};

const DOMAIN: &str = "notes.amocrm.ru";
const ID: i64 = 35_000_001;

#[tokio::test]
async fn an_added_lead_gets_a_note_with_name_responsible_and_time() {
    let app = TestApp::spawn().await;
    let key = app.connected(DOMAIN, ID).await;
    let body = lead_hook(ID, "add", 501, "Заказ #87856", 1_712_331_728, &[]);
    assert_eq!(app.post_hook(&key, body).await.status(), 200);
    let notes = app.wait_for_notes(DOMAIN, 1).await;
    assert_eq!(notes[0].entity_type, "leads");
    assert_eq!(notes[0].entity_id, 501);
    assert_eq!(
        notes[0].text,
        "Создана сделка «Заказ #87856». Ответственный: Иван Петров. Добавлена: 05.04.2024 18:42:08"
    );
    // The note reaches amoCRM before its event is marked delivered.
    let delivered = event_reaches(&app, 501, |state, _| state == "delivered").await;
    assert!(delivered, "the event is marked delivered");
    let note_id: Option<i64> = sqlx::query_scalar("select note_id from hook_events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(note_id, Some(notes[0].id));
}

#[tokio::test]
async fn a_changed_lead_gets_a_note_naming_each_changed_field() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    let field = |v: &'static str| -> [(&'static str, &'static str); 3] {
        [
            ("custom_fields][0][id", "77"),
            ("custom_fields][0][name", "Город доставки"),
            ("custom_fields][0][values][0][value", v),
        ]
    };
    let add = lead_hook(ID, "add", 502, "Заказ", 1_712_331_728, &field("Тюмень"));
    assert_eq!(app.post_hook(&key, add).await.status(), 200);
    app.state.worker.drain().await.unwrap();
    let update = lead_hook(
        ID,
        "update",
        502,
        "Заказ",
        1_712_332_931,
        &[
            ("price", "2500"),
            ("status_id", "2"),
            ("old_status_id", "1"),
            ("custom_fields][0][id", "77"),
            ("custom_fields][0][name", "Город доставки"),
            ("custom_fields][0][values][0][value", "Омск"),
        ],
    )
    // The helper's own price and status come first; the later pair wins in
    // PHP and in amohook alike, so drop the defaults.
    .replace("leads%5Bupdate%5D%5B0%5D%5Bprice%5D=1000&", "")
    .replace("leads%5Bupdate%5D%5B0%5D%5Bstatus_id%5D=1&", "");
    assert_eq!(app.post_hook(&key, update).await.status(), 200);
    app.state.worker.drain().await.unwrap();
    let notes = app.fake.notes();
    assert_eq!(notes.len(), 2);
    assert_eq!(
        notes[1].text,
        "Изменена сделка «Заказ»: Бюджет: 1000 ₽ → 2500 ₽; Этап: Новая → Переговоры; Город доставки: Тюмень → Омск. \
         Изменена: 05.04.2024 19:02:11"
    );
}

#[tokio::test]
async fn an_update_that_changes_nothing_visible_adds_no_note() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    app.post_hook(&key, lead_hook(ID, "update", 503, "Same", 100, &[]))
        .await;
    app.post_hook(&key, lead_hook(ID, "update", 503, "Same", 200, &[]))
        .await;
    app.state.worker.drain().await.unwrap();
    let notes = app.fake.notes();
    assert_eq!(
        notes.len(),
        1,
        "the first update of an unseen card is noted"
    );
    // amoCRM's events name no change: the note says the card changed and
    // invents no list.
    assert_eq!(
        notes[0].text,
        "Изменена сделка «Same». Изменена: 01.01.1970 03:01:40"
    );
    let events = app.events().await;
    assert_eq!(events[1].2, "skipped");
    assert_eq!(events[1].3.as_deref(), Some("nothing visible changed"));
}

#[tokio::test]
async fn an_older_update_arriving_late_does_not_roll_the_state_back() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    app.post_hook(&key, lead_hook(ID, "update", 504, "New name", 300, &[]))
        .await;
    app.state.worker.drain().await.unwrap();
    app.post_hook(&key, lead_hook(ID, "update", 504, "Old name", 200, &[]))
        .await;
    app.state.worker.drain().await.unwrap();
    let (at, name): (i64, String) = sqlx::query_as(
        "select changed_at, snapshot->>'name' from entity_states where entity_id = 504",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((at, name.as_str()), (300, "New name"));
    assert_eq!(app.events().await[1].2, "skipped");
    // The next real change is told against the newest state.
    app.post_hook(&key, lead_hook(ID, "update", 504, "Newest", 400, &[]))
        .await;
    app.state.worker.drain().await.unwrap();
    let notes = app.fake.notes();
    assert_eq!(notes.len(), 2);
    assert!(
        notes[1].text.contains("Название: New name → Newest"),
        "{}",
        notes[1].text
    );
}

#[tokio::test]
async fn a_card_time_far_in_the_future_does_not_silence_the_cards_later_changes() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    let now = chrono::Utc::now().timestamp();
    // A body that says the card changed in 2100.
    app.post_hook(
        &key,
        lead_hook(ID, "update", 505, "Future", 4_102_444_800, &[]),
    )
    .await;
    app.state.worker.drain().await.unwrap();
    let stored: i64 =
        sqlx::query_scalar("select changed_at from hook_events where entity_id = 505")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(stored <= chrono::Utc::now().timestamp() + 60, "{stored}");
    // The card's next change, minutes later, is noted against it.
    app.post_hook(
        &key,
        lead_hook(ID, "update", 505, "Present", now + 600, &[]),
    )
    .await;
    app.state.worker.drain().await.unwrap();
    let notes = app.fake.notes();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[1].text.contains("Название: Future → Present"),
        "{}",
        notes[1].text
    );
}

#[tokio::test]
async fn contacts_and_companies_get_their_notes_in_their_own_cards() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    let body = form(&[
        ("account[id]", "35000001"),
        ("contacts[add][0][id]", "601"),
        ("contacts[add][0][name]", "Абиба абибович"),
        ("contacts[add][0][responsible_user_id]", "101"),
        ("contacts[add][0][created_at]", "1712331728"),
        ("contacts[add][0][type]", "contact"),
        ("contacts[add][1][id]", "602"),
        ("contacts[add][1][name]", "ООО «Ромашка» & Co"),
        ("contacts[add][1][responsible_user_id]", "100"),
        ("contacts[add][1][created_at]", "1712331728"),
        ("contacts[add][1][type]", "company"),
        ("companies[update][0][id]", "603"),
        ("companies[update][0][name]", "ИП Иванов"),
        ("companies[update][0][responsible_user_id]", "100"),
        ("companies[update][0][updated_at]", "1712331728"),
        ("companies[update][0][old_responsible_user_id]", "101"),
        ("companies[update][0][custom_fields][0][id]", "9"),
        ("companies[update][0][custom_fields][0][name]", "Телефон"),
        (
            "companies[update][0][custom_fields][0][values][0][value]",
            "+7 999",
        ),
        (
            "companies[update][0][custom_fields][0][values][0][enum]",
            "718321",
        ),
        (
            "companies[update][0][custom_fields][0][values][1][value]",
            "+7 888",
        ),
    ]);
    // The company existed before the install: what changed comes from the
    // hook's old responsible and amoCRM's events (a second phone).
    app.fake.add_event(
        DOMAIN,
        amocrm_sim::SimEvent {
            entity_type: "company".into(),
            entity_id: 603,
            kind: "custom_field_9_value_changed".into(),
            created_at: 1712331728,
            value_before: serde_json::json!([{"custom_field_value": {"field_id": 9, "text": "+7 999", "enum_id": 718321}}]),
            value_after: serde_json::json!([
                {"custom_field_value": {"field_id": 9, "text": "+7 999", "enum_id": 718321}},
                {"custom_field_value": {"field_id": 9, "text": "+7 888"}}
            ]),
        },
    );
    assert_eq!(app.post_hook(&key, body).await.status(), 200);
    app.state.worker.drain().await.unwrap();
    let mut notes: Vec<_> = app
        .fake
        .notes()
        .into_iter()
        .map(|n| (n.entity_type, n.entity_id, n.text))
        .collect();
    notes.sort_by_key(|n| n.1);
    assert_eq!(
        notes,
        [
            ("contacts".into(), 601, "Создан контакт «Абиба абибович». Ответственный: Мария Иванова. Добавлен: 05.04.2024 18:42:08".into()),
            ("companies".into(), 602, "Создана компания «ООО «Ромашка» & Co». Ответственный: Иван Петров. Добавлена: 05.04.2024 18:42:08".into()),
            ("companies".into(), 603, "Изменена компания «ИП Иванов»: Ответственный: Мария Иванова → Иван Петров; Телефон: +7 999 → +7 999, +7 888. Изменена: 05.04.2024 18:42:08".into()),
        ]
    );
}

#[tokio::test]
async fn kommo_accounts_get_english_notes_in_their_time_zone() {
    let app = TestApp::spawn_without_worker().await;
    app.fake.add_account(
        "acme.kommo.com",
        SimAccount {
            timezone: "America/Sao_Paulo".into(),
            ..SimAccount::new(ID)
        },
    );
    assert_eq!(app.install("acme.kommo.com").await.status(), 200);
    let key = app.hook_key(ID).await;
    app.post_hook(&key, lead_hook(ID, "add", 1, "Order", 1_712_331_728, &[]))
        .await;
    app.state.worker.drain().await.unwrap();
    assert_eq!(
        app.fake.notes()[0].text,
        "Lead added: “Order”. Responsible: Иван Петров. Added: 05.04.2024 12:42:08"
    );
}

#[tokio::test]
async fn when_amocrm_refuses_the_users_list_the_note_shows_the_id() {
    let app = TestApp::spawn_without_worker().await;
    app.fake.add_account(
        DOMAIN,
        SimAccount {
            admin: false,
            ..SimAccount::new(ID)
        },
    );
    assert_eq!(app.install(DOMAIN).await.status(), 200);
    let key = app.hook_key(ID).await;
    app.post_hook(&key, lead_hook(ID, "add", 1, "X", 1_712_331_728, &[]))
        .await;
    app.state.worker.drain().await.unwrap();
    assert!(
        app.fake.notes()[0].text.contains("Ответственный: 100."),
        "{}",
        app.fake.notes()[0].text
    );
}

#[tokio::test]
async fn notes_never_cross_accounts() {
    let app = TestApp::spawn().await;
    let key_a = app.connected("a.amocrm.ru", 36_000_001).await;
    let key_b = app.connected("b.amocrm.ru", 36_000_002).await;
    assert_eq!(
        app.post_hook(&key_a, lead_hook(36_000_001, "add", 1, "A", 1, &[]))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.post_hook(&key_b, lead_hook(36_000_002, "add", 2, "B", 1, &[]))
            .await
            .status(),
        200
    );
    // A's key with B's body is refused outright.
    assert_eq!(
        app.post_hook(&key_a, lead_hook(36_000_002, "add", 3, "B", 1, &[]))
            .await
            .status(),
        403
    );
    app.wait_for_notes("a.amocrm.ru", 1).await;
    app.wait_for_notes("b.amocrm.ru", 1).await;
    let notes = app.fake.notes();
    assert_eq!(notes.len(), 2);
    for note in notes {
        let expected = if note.entity_id == 1 {
            "a.amocrm.ru"
        } else {
            "b.amocrm.ru"
        };
        assert_eq!(note.domain, expected);
    }
}
