//! Delivering through each of amoCRM's answers: 401, 400 naming a note, 429,
//! an HTML 403, an account that must reinstall; and the wake-up and user
//! cache around them.

use crate::helpers::{lead_hook, TestApp};
use amocrm_sim::{Fault, SimAccount};
use std::time::Duration;

use crate::delivery_faults::*;

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
