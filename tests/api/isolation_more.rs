//! One account can never hurt another, continued: exactly-once sends and
//! lookups, names that cost no notes, fields of unknown shapes.

use amocrm_sim::Fault;

use crate::helpers::{lead_hook, TestApp};

use crate::isolation::*;

#[tokio::test]
async fn two_changes_in_one_second_are_two_notes_and_a_resend_is_none() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(CLEAN.0, CLEAN.1).await;
    let add = lead_hook(CLEAN.1, "add", 7, "Заказ", 1_712_331_728, &[]);
    assert_eq!(app.post_hook(&key, add).await.status(), 200);
    app.state.worker.drain().await.unwrap();
    // A person changes the budget and, in the same second, a robot renames.
    let at = 1_712_331_800;
    let budget =
        lead_hook(CLEAN.1, "update", 7, "Заказ", at, &[]).replace("price%5D=1000", "price%5D=2500");
    let rename = lead_hook(CLEAN.1, "update", 7, "Заказ 2", at, &[])
        .replace("price%5D=1000", "price%5D=2500");
    for body in [&budget, &rename, &rename] {
        assert_eq!(app.post_hook(&key, body.clone()).await.status(), 200);
    }
    app.state.worker.drain().await.unwrap();
    let texts: Vec<String> = app.fake.notes().into_iter().map(|n| n.text).collect();
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(texts[1].contains("Бюджет: 1000 ₽ → 2500 ₽"), "{texts:?}");
    assert!(texts[2].contains("Название: Заказ → Заказ 2"), "{texts:?}");
}

/// Sends one note whose answer is lost (created, then 502), so that the
/// event is marked "may already be sent".
pub(crate) async fn lost_answer(app: &TestApp, key: &str) {
    app.fake
        .fail_next(CLEAN.0, "/api/v4/leads/notes", Fault::AfterWork(502), 1);
    app.post_hook(key, lead_hook(CLEAN.1, "add", 5, "x", 1, &[]))
        .await;
    app.state.worker.drain().await.unwrap();
    assert_eq!(ours(app), 1);
    assert_eq!(event_states(app, CLEAN.1).await, ["pending"]);
}

/// Notes amohook created (people's notes have no request id).
pub(crate) fn ours(app: &TestApp) -> usize {
    app.fake
        .notes()
        .iter()
        .filter(|n| n.request_id.is_some())
        .count()
}

#[tokio::test]
async fn after_an_uncertain_send_no_failure_of_the_lookup_leads_to_a_second_note() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(CLEAN.0, CLEAN.1).await;
    lost_answer(&app, &key).await;
    // Each following attempt fails in another way before it could send
    // (a 400 fails the event; it is put back as an admin retry would);
    // the last one goes through.
    for fault in [Some(429), Some(403), Some(500), Some(400), None] {
        if let Some(status) = fault {
            app.fake
                .fail_next(CLEAN.0, "/api/v4/leads/notes", Fault::Status(status), 1);
        }
        app.make_due().await;
        sqlx::query("update hook_events set state = 'pending' where state = 'failed'")
            .execute(&app.pool)
            .await
            .unwrap();
        app.state.worker.drain().await.unwrap();
        assert_eq!(app.fake.notes().len(), 1, "after {fault:?}");
    }
    assert_eq!(app.fake.notes().len(), 1);
    assert_eq!(event_states(&app, CLEAN.1).await, ["delivered"]);
    let posts = app
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v4/leads/notes")
        .count();
    assert_eq!(posts, 1, "the note was posted once");
}

#[tokio::test]
async fn an_admin_retry_looks_before_it_sends_again() {
    let app = TestApp::spawn_with(|env| {
        env.insert(
            "AMOHOOK_ADMIN__TOKEN".into(),
            "an-admin-token-0123456789".into(),
        );
        env.insert("AMOHOOK_WORKER__CONCURRENCY".into(), "0".into());
    })
    .await;
    let key = app.connected(CLEAN.0, CLEAN.1).await;
    lost_answer(&app, &key).await;
    // Its retries ran out (a day of 5xx, say) and it was marked failed.
    sqlx::query("update hook_events set state = 'failed', finished_at = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    let retried = app
        .http
        .post(app.url(&format!("/api/accounts/{}/retry", CLEAN.1)))
        .bearer_auth("an-admin-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), 200);
    app.state.worker.drain().await.unwrap();
    assert_eq!(event_states(&app, CLEAN.1).await, ["delivered"]);
    assert_eq!(app.fake.notes().len(), 1);
}

#[tokio::test]
async fn the_lookup_reads_every_page_with_the_documented_filters() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(CLEAN.0, CLEAN.1).await;
    // The card is busy: 300 notes by people, one of them a service note.
    for i in 0..300 {
        let kind = if i == 0 { "service_message" } else { "common" };
        app.fake
            .add_note(CLEAN.0, "leads", 5, kind, &format!("by a person {i}"));
    }
    lost_answer(&app, &key).await;
    app.make_due().await;
    app.state.worker.drain().await.unwrap();
    assert_eq!(event_states(&app, CLEAN.1).await, ["delivered"]);
    assert_eq!(ours(&app), 1);
    let lookups: Vec<String> = app
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v4/leads/notes")
        .map(|r| r.query)
        .collect();
    // The fake refuses undocumented forms with 400; these were answered.
    assert_eq!(lookups.len(), 2, "{lookups:?}");
    assert!(
        lookups[0].contains("filter[note_type][]=common"),
        "{lookups:?}"
    );
    assert!(lookups[1].contains("page=2"), "{lookups:?}");
}

#[tokio::test]
async fn a_failed_users_list_costs_names_not_notes() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(CLEAN.0, CLEAN.1).await;
    app.fake
        .fail_next(CLEAN.0, "/api/v4/users", Fault::Status(500), 10);
    app.post_hook(&key, lead_hook(CLEAN.1, "add", 1, "x", 1, &[]))
        .await;
    app.state.worker.drain().await.unwrap();
    let notes = app.fake.notes();
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].text.contains("Ответственный: 100."),
        "{}",
        notes[0].text
    );
    assert_eq!(event_states(&app, CLEAN.1).await, ["delivered"]);
}

#[tokio::test]
async fn a_field_of_an_unknown_shape_loses_the_field_not_the_hook() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(CLEAN.0, CLEAN.1).await;
    let body = lead_hook(
        CLEAN.1,
        "add",
        1,
        "x",
        1,
        &[("old_status_id", "soon"), ("tags][0", "a")],
    ) + "&leads%5Badd%5D%5B0%5D%5Bcustom_fields%5D%5B0%5D%5Bvalues%5D=flat";
    let response = app.post_hook(&key, body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(event_states(&app, CLEAN.1).await, ["pending"]);
}
