//! Delivering: stored events become notes in the right cards.

use amocrm_sim::{Fault, SimAccount};
use std::time::Duration;

use amohook::delivery::Worker;

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

#[tokio::test]
async fn four_hundred_hooks_in_two_seconds_land_batched_within_the_budget() {
    let app = TestApp::spawn().await;
    // The fake enforces amoCRM's limit: over 7 a second it answers 429.
    app.fake.set_rate_limit(7);
    let key = app.connected(DOMAIN, ID).await;
    let mut sends = Vec::new();
    for i in 0..400i64 {
        let body = lead_hook(
            ID,
            "add",
            10_000 + i,
            &format!("Lead {i}"),
            1_712_331_728,
            &[],
        );
        let http = app.http.clone();
        let url = app.url(&format!("/hooks/{key}"));
        sends.push(tokio::spawn(async move {
            http.post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for send in sends {
        assert_eq!(send.await.unwrap(), 200);
    }
    let notes = app.wait_for_notes(DOMAIN, 400).await;
    let mut ids: Vec<i64> = notes.iter().map(|n| n.entity_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 400, "every note once");
    assert_eq!(app.fake.count_status(DOMAIN, 429), 0, "no 429");
    assert!(
        app.fake.max_per_second(DOMAIN) <= 7,
        "at most 7 calls in any second: {}",
        app.fake.max_per_second(DOMAIN)
    );
    let posts = app
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v4/leads/notes")
        .count();
    assert!(
        posts <= 400 / 50 + 8,
        "notes go in batches of up to 50: {posts} requests"
    );
}

/// A budget slot is counted when the database checks it, and its call
/// leaves after the slot's commit. When that commit is slow (here: 300 ms,
/// once), the call leaves late and the calls a second after its slot would
/// reach amoCRM less than a second after it: the late slot is moved to
/// when its call left.
#[tokio::test]
async fn a_call_that_leaves_late_keeps_the_budget() {
    let app = TestApp::spawn_without_worker().await;
    app.fake.set_rate_limit(7);
    let key = app.connected(DOMAIN, ID).await;
    for i in 0..400i64 {
        let body = lead_hook(ID, "add", 20_000 + i, "Lead", 1_712_331_728, &[]);
        assert_eq!(app.post_hook(&key, body).await.status(), 200);
    }
    // The first budget commit from here on takes 300 ms.
    for statement in [
        "create sequence budget_commits",
        "create function slow_commit() returns trigger language plpgsql as $$
         begin
             if nextval('budget_commits') = 1 then
                 perform pg_sleep(0.3);
             end if;
             return null;
         end $$",
        "create constraint trigger slow_commit after update on api_budget
         deferrable initially deferred
         for each row execute function slow_commit()",
    ] {
        sqlx::query(statement).execute(&app.pool).await.unwrap();
    }
    app.state.worker.drain().await.unwrap();
    assert_eq!(app.fake.count_status(DOMAIN, 429), 0, "no 429");
    assert!(
        app.fake.max_per_second(DOMAIN) <= 7,
        "at most 7 calls in any second: {}",
        app.fake.max_per_second(DOMAIN)
    );
    let slowed: i64 = sqlx::query_scalar("select last_value from budget_commits")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(slowed >= 8, "the budget was saturated: {slowed} commits");
    assert_eq!(app.fake.notes().len(), 400, "every note");
}

#[tokio::test]
async fn an_outage_of_amocrm_delays_notes_and_loses_none() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    for i in 0..5 {
        app.post_hook(&key, lead_hook(ID, "add", 700 + i, "x", 1, &[]))
            .await;
    }
    app.fake
        .fail_next(DOMAIN, "/api/v4/leads/notes", Fault::Status(503), 2);
    app.state.worker.drain().await.unwrap();
    assert!(app.fake.notes().is_empty());
    let (attempts, next_in, error): (i32, f64, String) = sqlx::query_as(
        "select max(attempts), extract(epoch from min(next_attempt_at) - now())::float8, max(last_error)
         from hook_events",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(attempts, 1);
    assert!(
        (1.0..10.0).contains(&next_in),
        "first retry within seconds: {next_in}"
    );
    assert!(error.contains("503"));
    app.make_due().await;
    app.state.worker.drain().await.unwrap();
    let next_in: f64 = sqlx::query_scalar(
        "select extract(epoch from min(next_attempt_at) - now())::float8 from hook_events",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(next_in > 6.0, "the backoff grows: {next_in}");
    app.make_due().await;
    app.state.worker.drain().await.unwrap();
    let notes = app.fake.notes();
    assert_eq!(notes.len(), 5, "every note once after recovery");
    assert!(app.events().await.iter().all(|e| e.2 == "delivered"));
}

#[tokio::test]
async fn events_are_failed_only_after_a_day_of_retries() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    app.post_hook(&key, lead_hook(ID, "add", 1, "x", 1, &[]))
        .await;
    app.fake
        .fail_next(DOMAIN, "/api/v4/leads/notes", Fault::Status(500), 2);
    app.state.worker.drain().await.unwrap();
    sqlx::query("update hook_events set first_failure_at = now() - interval '23 hours'")
        .execute(&app.pool)
        .await
        .unwrap();
    app.make_due().await;
    app.state.worker.drain().await.unwrap();
    assert_eq!(
        app.events().await[0].2,
        "pending",
        "still retried after 23 hours"
    );
    app.fake
        .fail_next(DOMAIN, "/api/v4/leads/notes", Fault::Status(500), 1);
    sqlx::query("update hook_events set first_failure_at = now() - interval '25 hours'")
        .execute(&app.pool)
        .await
        .unwrap();
    app.make_due().await;
    app.state.worker.drain().await.unwrap();
    assert_eq!(app.events().await[0].2, "failed");
}

#[tokio::test]
async fn a_lost_answer_is_not_sent_twice() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    for i in 0..3 {
        app.post_hook(&key, lead_hook(ID, "add", 800 + i, "x", 1, &[]))
            .await;
    }
    // amoCRM creates the notes but the answer is a 502.
    app.fake
        .fail_next(DOMAIN, "/api/v4/leads/notes", Fault::AfterWork(502), 1);
    app.state.worker.drain().await.unwrap();
    assert_eq!(app.fake.notes().len(), 3);
    app.make_due().await;
    app.state.worker.drain().await.unwrap();
    assert_eq!(app.fake.notes().len(), 3, "found by text, not sent again");
    assert!(app.events().await.iter().all(|e| e.2 == "delivered"));
    let lookups = app
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v4/leads/notes")
        .count();
    assert_eq!(
        lookups,
        1,
        "{:?}",
        app.fake
            .requests()
            .iter()
            .map(|r| (r.method.clone(), r.path.clone(), r.status))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_worker_killed_mid_batch_is_finished_by_another_process_without_duplicates() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    for i in 0..60 {
        app.post_hook(
            &key,
            lead_hook(ID, "add", 900 + i, &format!("L{i}"), 1, &[]),
        )
        .await;
    }
    // Process A: its own pool and worker. amoCRM takes the first batch, and
    // A is killed before the answer arrives.
    let pool_a = sqlx::PgPool::connect(&app.db.url).await.unwrap();
    let api = (*app.state.api).clone();
    let tokens =
        amohook::tokens::TokenStore::new(pool_a.clone(), (*app.state.cipher).clone(), api.clone());
    let a = Worker::new(pool_a, api, tokens, chrono_tz::Europe::Moscow);
    app.fake.fail_next(
        DOMAIN,
        "/api/v4/leads/notes",
        Fault::WorkThenDelay(Duration::from_secs(30)),
        1,
    );
    let running = tokio::spawn(async move { a.drain().await });
    for _ in 0..100 {
        if !app.fake.notes().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.abort();
    assert_eq!(app.fake.notes().len(), 50, "the first batch reached amoCRM");
    // A's leases run out...
    sqlx::query("update accounts set lease_until = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query(
        "update hook_events set locked_until = now() - interval '1 second' where state = 'sending'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    // ...and process B finishes the work.
    app.state.worker.drain().await.unwrap();
    let notes = app.fake.notes();
    let mut ids: Vec<i64> = notes.iter().map(|n| n.entity_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(notes.len(), 60, "no duplicate note");
    assert_eq!(ids.len(), 60, "no note lost");
    assert!(app.events().await.iter().all(|e| e.2 == "delivered"));
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_the_note_is_sent() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    app.post_hook(&key, lead_hook(ID, "add", 1, "x", 1, &[]))
        .await;
    app.fake.expire_access_tokens(DOMAIN);
    app.state.worker.drain().await.unwrap();
    assert_eq!(app.fake.notes().len(), 1);
    assert_eq!(app.fake.refreshes(DOMAIN), 1);
    assert_eq!(app.fake.refresh_reuses(), 0);
}

#[tokio::test]
async fn a_400_naming_one_note_fails_that_note_and_delivers_the_rest() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    app.fake.refuse_notes_for(1002);
    for id in [1001, 1002, 1003] {
        app.post_hook(&key, lead_hook(ID, "add", id, "x", 1, &[]))
            .await;
    }
    app.state.worker.drain().await.unwrap();
    let mut delivered: Vec<i64> = app.fake.notes().iter().map(|n| n.entity_id).collect();
    delivered.sort();
    assert_eq!(delivered, [1001, 1003]);
    let events = app.events().await;
    let refused = events.iter().find(|e| e.1 == 1002).unwrap();
    assert_eq!(refused.2, "failed");
    assert!(
        refused.3.as_deref().unwrap().contains("Entity not found"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_429_waits_briefly_and_then_delivers() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    app.post_hook(&key, lead_hook(ID, "add", 1, "x", 1, &[]))
        .await;
    app.fake
        .fail_next(DOMAIN, "/api/v4/leads/notes", Fault::Status(429), 1);
    app.state.worker.drain().await.unwrap();
    let next_in: f64 = sqlx::query_scalar(
        "select extract(epoch from next_attempt_at - now())::float8 from hook_events",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!((0.5..3.5).contains(&next_in), "{next_in}");
    tokio::time::sleep(Duration::from_secs_f64(next_in + 0.1)).await;
    app.state.worker.drain().await.unwrap();
    assert_eq!(app.fake.notes().len(), 1);
}

#[tokio::test]
async fn an_html_403_pauses_the_account() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    app.post_hook(&key, lead_hook(ID, "add", 1, "x", 1, &[]))
        .await;
    app.fake
        .fail_next(DOMAIN, "/api/v4/leads/notes", Fault::Status(403), 1);
    app.state.worker.drain().await.unwrap();
    let (paused_for, reason): (f64, String) = sqlx::query_as(
        "select extract(epoch from paused_until - now())::float8, pause_reason from accounts",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(paused_for > 60.0, "paused for minutes: {paused_for}");
    assert!(reason.contains("blocked"));
    // Nothing is sent while paused, even when events are due.
    sqlx::query("update hook_events set next_attempt_at = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    app.state.worker.drain().await.unwrap();
    assert!(app.fake.notes().is_empty());
    app.make_due().await;
    app.state.worker.drain().await.unwrap();
    assert_eq!(app.fake.notes().len(), 1);
}

#[tokio::test]
async fn events_of_an_account_that_must_reinstall_wait_for_it() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    app.fake.revoke_refresh_tokens(DOMAIN);
    sqlx::query("update account_tokens set expires_at = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    app.post_hook(&key, lead_hook(ID, "add", 1, "x", 1, &[]))
        .await;
    app.state.worker.drain().await.unwrap();
    assert_eq!(
        app.account_status(ID).await.as_deref(),
        Some("reauth_required")
    );
    assert_eq!(app.events().await[0].2, "pending");
    // Reinstalled: the waiting note goes out.
    assert_eq!(app.install(DOMAIN).await.status(), 200);
    app.state.worker.drain().await.unwrap();
    assert_eq!(app.fake.notes().len(), 1);
}

#[tokio::test]
async fn a_stored_hook_wakes_the_workers_of_every_process() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    let mut listener = sqlx::postgres::PgListener::connect(&app.db.url)
        .await
        .unwrap();
    listener.listen(amohook::inbox::EVENTS).await.unwrap();
    app.post_hook(&key, lead_hook(ID, "add", 1, "x", 1, &[]))
        .await;
    let notification = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(notification.payload(), ID.to_string());
    // A re-sent hook stores nothing and wakes nobody.
    app.post_hook(&key, lead_hook(ID, "add", 1, "x", 1, &[]))
        .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), listener.recv())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_user_added_later_is_named_once_the_cache_learns_of_them() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    app.post_hook(&key, lead_hook(ID, "add", 1, "x", 1, &[]))
        .await;
    app.state.worker.drain().await.unwrap();
    let user_lists = || {
        app.fake
            .requests()
            .iter()
            .filter(|r| r.path == "/api/v4/users")
            .count()
    };
    assert_eq!(user_lists(), 1);
    // A card of someone the cache has not seen, right away: no new list
    // within a minute of the last one...
    app.fake.add_account(
        DOMAIN,
        SimAccount {
            users: vec![(100, "Иван Петров".into()), (555, "Новый Сотрудник".into())],
            ..SimAccount::new(ID)
        },
    );
    app.post_hook(
        &key,
        lead_hook(ID, "add", 2, "y", 1, &[("responsible_user_id", "555")])
            .replace("responsible_user_id%5D=100&", ""),
    )
    .await;
    app.state.worker.drain().await.unwrap();
    assert_eq!(user_lists(), 1);
    assert!(
        app.fake.notes()[1].text.contains("Ответственный: 555."),
        "{}",
        app.fake.notes()[1].text
    );
    // ...and after it, the unknown id makes the list be read again.
    sqlx::query("update account_directory set users_fetched_at = now() - interval '2 minutes'")
        .execute(&app.pool)
        .await
        .unwrap();
    app.post_hook(
        &key,
        lead_hook(ID, "add", 3, "z", 1, &[("responsible_user_id", "555")])
            .replace("responsible_user_id%5D=100&", ""),
    )
    .await;
    app.state.worker.drain().await.unwrap();
    assert_eq!(user_lists(), 2);
    assert!(
        app.fake.notes()[2]
            .text
            .contains("Ответственный: Новый Сотрудник."),
        "{}",
        app.fake.notes()[2].text
    );
}

/// Both pools keep PostgreSQL's generic plans (planning every statement of
/// the main pool for its parameters spent 40% of delivery's statement time
/// on planning; docs/scaling.md), except the account claim: it is planned
/// for its parameters on every run, since a generic plan made while the
/// tables were empty made it read every due event once per account (9.5 s
/// a claim with 10,000 accounts).
#[tokio::test]
async fn only_the_account_claim_is_planned_for_its_parameters_every_time() {
    let app = TestApp::spawn_without_worker().await;
    let settings = crate::helpers::settings_from(crate::helpers::base_env(&app.db.url, &app.fake));
    let pools = amohook::db::connect(&settings.database).await.unwrap();
    for (pool, name) in [(&pools.main, "main"), (&pools.intake, "intake")] {
        let mut conn = pool.acquire().await.unwrap();
        // PostgreSQL tries a generic plan after the fifth run.
        for account_id in 0..8_i64 {
            sqlx::query("select count(*) from hook_events where account_id = $1")
                .bind(account_id)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        }
        let (generic, custom): (i64, i64) = sqlx::query_as(
            "select generic_plans, custom_plans from pg_prepared_statements
             where statement = 'select count(*) from hook_events where account_id = $1'",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert!(
            generic > 0,
            "{name}: {generic} generic, {custom} custom plans"
        );
    }

    // A worker on one connection: its prepared statements tell every run.
    let key = app.connected(DOMAIN, ID).await;
    let one = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&app.db.url)
        .await
        .unwrap();
    let worker = Worker::new(
        one.clone(),
        (*app.state.api).clone(),
        (*app.state.tokens).clone(),
        chrono_tz::Europe::Moscow,
    );
    for n in 0..8_i64 {
        let body = lead_hook(ID, "add", 600 + n, "Заказ", 1_712_331_728 + n, &[]);
        assert_eq!(app.post_hook(&key, body).await.status(), 200);
        worker.drain().await.unwrap();
        // Within the account's budget: no round waits for it.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.fake.notes().len(), 8);
    let plans: Vec<(String, i64, i64)> =
        sqlx::query_as("select statement, generic_plans, custom_plans from pg_prepared_statements")
            .fetch_all(&one)
            .await
            .unwrap();
    let plans_of = |start: &str| {
        plans
            .iter()
            .find(|(s, ..)| s.trim_start().starts_with(start))
            .map(|(_, generic, custom)| (*generic, *custom))
            .unwrap_or_else(|| panic!("no statement starting {start:?}: {plans:?}"))
    };
    let (generic, custom) = plans_of("with candidate as");
    assert!(
        generic == 0 && custom >= 8,
        "the account claim: {generic} generic, {custom} custom plans"
    );
    // Run with it, before it, on every claim.
    let (generic, custom) = plans_of("with recursive waiting");
    assert!(
        generic > 0,
        "the list of waiting accounts: {generic} generic, {custom} custom plans"
    );
}

/// Makes PostgreSQL fail every update of `entity_id`'s events that matches
/// `when` (a condition on `old` and `new`): a database failure in the middle
/// of a round, as a deadlock makes one.
async fn fail_updates_of(app: &TestApp, entity_id: i64, when: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "create function fail_round() returns trigger language plpgsql as $$
         begin
             if old.entity_id = {entity_id} and {when} then
                 raise exception 'the database failed this statement';
             end if;
             return new;
         end $$"
    )))
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "create trigger fail_round before update on hook_events
         for each row execute function fail_round()",
    )
    .execute(&app.pool)
    .await
    .unwrap();
}

/// Polls the state and owner of `entity_id`'s event until `seen` holds
/// them (10 s at most); whether it did.
async fn event_reaches(
    app: &TestApp,
    entity_id: i64,
    seen: impl Fn(&str, Option<&str>) -> bool,
) -> bool {
    for _ in 0..100 {
        let (state, owner): (String, Option<String>) =
            sqlx::query_as("select state, locked_by from hook_events where entity_id = $1")
                .bind(entity_id)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        if seen(&state, owner.as_deref()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn stop_failing(app: &TestApp) {
    sqlx::query("drop trigger fail_round on hook_events")
        .execute(&app.pool)
        .await
        .unwrap();
}

/// A round that fails half-way (here: rendering its notes) gives its events
/// back at once, instead of leaving them claimed while the process renews
/// their locks forever (the benchmark's hang: a deadlock failed a round,
/// and its events never got their notes).
#[tokio::test]
async fn a_round_that_fails_gives_its_events_back() {
    let app = TestApp::spawn().await;
    let key = app.connected(DOMAIN, ID).await;
    fail_updates_of(&app, 601, "new.note_text is distinct from old.note_text").await;
    let body = lead_hook(ID, "add", 601, "Сделка 601", 1_712_331_728, &[]);
    assert_eq!(app.post_hook(&key, body).await.status(), 200);

    // Claimed (it has an owner), failed, and given back: due again.
    let given_back = event_reaches(&app, 601, |state, owner| {
        state == "pending" && owner.is_some()
    })
    .await;
    assert!(given_back, "the failed round's event is pending again");
    assert!(app.fake.notes().is_empty());

    stop_failing(&app).await;
    let notes = app.wait_for_notes(DOMAIN, 1).await;
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].entity_id, 601);
}

/// When even giving the events back fails, their locks run out (no process
/// renews the lock of an event no round is working on), and the events are
/// delivered once the database works again.
#[tokio::test]
async fn events_a_failed_round_could_not_give_back_are_delivered_after_their_lock() {
    let app = TestApp::spawn().await;
    let key = app.connected(DOMAIN, ID).await;
    // Every update of the event once claimed fails: rendering, giving it
    // back, and renewing its lock.
    fail_updates_of(&app, 602, "old.state = 'sending'").await;
    let body = lead_hook(ID, "add", 602, "Сделка 602", 1_712_331_728, &[]);
    assert_eq!(app.post_hook(&key, body).await.status(), 200);
    assert!(event_reaches(&app, 602, |state, _| state == "sending").await);
    // The round fails at once; stop failing after it did.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_failing(&app).await;

    // The lock (15 s) runs out and the event is claimed again.
    let notes = app.wait_for_notes(DOMAIN, 1).await;
    assert_eq!(notes[0].entity_id, 602);
    let delivered = event_reaches(&app, 602, |state, _| state == "delivered").await;
    assert!(delivered, "the event is marked delivered");
}

/// One account due among many idle ones (the one just served, working off
/// its backlog): the claim looks at the due account's events, not at every
/// account. Walking every account in service order cost 21 ms a claim with
/// 10,000 accounts, on every turn.
#[tokio::test]
async fn a_claim_among_idle_accounts_reads_only_the_due_ones() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    sqlx::query(
        "insert into accounts (account_id, domain, subdomain, hook_key_sha256, hook_key, last_served_at)
         select i, 'idle' || i || '.amocrm.ru', 'idle' || i, 'idle' || i, decode('00', 'hex'),
                now() - interval '1 hour'
         from generate_series(1, 2000) i",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("update accounts set last_served_at = now() where account_id = $1")
        .bind(ID)
        .execute(&app.pool)
        .await
        .unwrap();
    // A backlog over every account, analyzed while pending, then worked
    // off: PostgreSQL's statistics still say many events are due (as
    // after the benchmark's ingest), which made the claim walk accounts.
    for statement in [
        "insert into hook_events (account_id, entity_type, entity_id, action, changed_at, snapshot)
         select 1 + i % 2000, 'lead', i, 'add', 1, '{}' from generate_series(1, 4000) i",
        "analyze hook_events",
        "update hook_events set state = 'delivered', finished_at = now()",
    ] {
        sqlx::query(statement).execute(&app.pool).await.unwrap();
    }
    let body = lead_hook(ID, "add", 801, "Сделка 801", 1_712_331_728, &[]);
    assert_eq!(app.post_hook(&key, body).await.status(), 200);

    // A worker on connections of its own: closing them makes PostgreSQL
    // count their index scans.
    let settings = crate::helpers::settings_from(crate::helpers::base_env(&app.db.url, &app.fake));
    let pools = amohook::db::connect(&settings.database).await.unwrap();
    let scans = || async {
        sqlx::query_scalar::<_, i64>(
            "select idx_scan from pg_stat_user_indexes where indexrelname = 'hook_events_due'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap()
    };
    let before = scans().await;
    let worker = Worker::new(
        pools.main.clone(),
        (*app.state.api).clone(),
        (*app.state.tokens).clone(),
        chrono_tz::UTC,
    );
    assert!(worker.work_once().await.unwrap(), "the account was served");
    assert_eq!(app.fake.notes().len(), 1);
    pools.main.close().await;
    pools.intake.close().await;
    // A closed connection's counts arrive as its server process ends.
    let mut most = 0;
    for _ in 0..20 {
        most = most.max(scans().await - before);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        most < 100,
        "{most} scans of the due-events index for one account's turn"
    );
}

/// While many hooks are in flight, one delivery round at a time is under
/// way: intake's answers come first on a shared machine. Once the hooks
/// calm down, rounds run up to the limit of turns again.
#[tokio::test]
async fn delivery_steps_back_while_many_hooks_are_in_flight() {
    use amohook::hooks_in_flight::CALM_AFTER;
    use std::sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    };
    use std::time::Instant;

    const BUSY_ID: i64 = 36_100_000;
    const BUSY_TOO: i64 = 36_100_001;
    // 8 turns at most.
    let app = TestApp::spawn_with(|env| {
        env.insert("AMOHOOK_WORKER__CONCURRENCY".into(), "8".into());
    })
    .await;
    let quiet: Vec<(String, i64)> = (1..=8)
        .map(|n| (format!("quiet{n}.amocrm.ru"), 36_000_000 + n))
        .collect();
    let mut keys = Vec::new();
    for (domain, id) in &quiet {
        keys.push(app.connected(domain, *id).await);
    }
    // The busy accounts' hooks take a while to store (20 ms a row) and 12
    // senders keep sending them: intake stays busy (it takes two accounts,
    // see `hooks_in_flight::ACCOUNT_SHARE`). Their own events wait
    // (paused), so that the turns are the quiet accounts' only.
    let busy_keys = [
        app.connected("busy.amocrm.ru", BUSY_ID).await,
        app.connected("busy2.amocrm.ru", BUSY_TOO).await,
    ];
    sqlx::query("update accounts set manual_pause = true where account_id in ($1, $2)")
        .bind(BUSY_ID)
        .bind(BUSY_TOO)
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query(
        "create function slow_busy_hooks() returns trigger language plpgsql as $$
         begin
             if new.account_id in (36100000, 36100001) then perform pg_sleep(0.02); end if;
             return new;
         end $$",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "create trigger slow_busy_hooks before insert on hook_events
         for each row execute function slow_busy_hooks()",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for sender in 0..12i64 {
        let (account, key) = if sender % 2 == 0 {
            (BUSY_ID, &busy_keys[0])
        } else {
            (BUSY_TOO, &busy_keys[1])
        };
        let (http, url, stop) = (
            app.http.clone(),
            app.url(&format!("/hooks/{key}")),
            stop.clone(),
        );
        senders.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = lead_hook(account, "add", sender * 100_000 + n, "Busy", 1, &[]);
                let _ = http
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await;
            }
        }));
    }
    let in_flight = app.state.intake.in_flight.clone();
    for _ in 0..100 {
        if in_flight.busy() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(in_flight.busy(), "12 slow senders make intake busy");

    // Every request to amoCRM takes 300 ms: a turn has one under way at a
    // time, so note requests that arrive close together come from as many
    // turns.
    app.fake.set_latency(Duration::from_millis(300));
    let note_posts = || -> Vec<Instant> {
        let mut at: Vec<_> = app
            .fake
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == "/api/v4/leads/notes")
            .filter(|r| quiet.iter().any(|(d, _)| *d == r.domain))
            .map(|r| r.at)
            .collect();
        at.sort();
        at
    };
    // The most note requests that arrived within 200 ms of one another.
    let most_at_once = |at: &[Instant]| amocrm_sim::most_within(at, Duration::from_millis(200));
    // One hook for each quiet account, sent together: they are stored in
    // one commit, whose announcements wake the dispatcher at once.
    let sends = quiet.iter().zip(&keys).map(|((_, id), key)| {
        app.post_hook(key, lead_hook(*id, "add", 700, "Lead", 1_712_331_728, &[]))
    });
    for answer in futures_util::future::join_all(sends).await {
        assert_eq!(answer.status(), 200);
    }
    for (domain, _) in &quiet {
        app.wait_for_notes(domain, 1).await;
    }
    assert!(in_flight.busy(), "intake was busy throughout");
    let busy_posts = note_posts();
    assert_eq!(busy_posts.len(), 8, "one note request per quiet account");
    assert!(
        most_at_once(&busy_posts) <= 1,
        "while intake is busy, one round at a time: {} note requests at once",
        most_at_once(&busy_posts)
    );

    // Intake calms down: rounds run up to the limit of turns again.
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
    tokio::time::sleep(CALM_AFTER * 2).await;
    assert!(!in_flight.busy(), "calm once the senders stopped");
    // Sent one after another: eight at once would make intake busy again.
    for ((_, id), key) in quiet.iter().zip(&keys) {
        let body = lead_hook(*id, "add", 701, "Lead", 1_712_331_728, &[]);
        assert_eq!(app.post_hook(key, body).await.status(), 200);
    }
    for (domain, _) in &quiet {
        app.wait_for_notes(domain, 2).await;
    }
    let calm_posts = note_posts().split_off(8);
    assert!(
        most_at_once(&calm_posts) > 2,
        "once intake is calm, more than two turns deliver: {}",
        most_at_once(&calm_posts)
    );
}
