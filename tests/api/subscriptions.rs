//! An account's web-hook, read back from amoCRM: amoCRM switches a hook off
//! after many failed answers (or on an IP block) and sends nothing more
//! until it is saved again; the status page must say so within the hour,
//! and one click must bring it back.

use crate::admin::{admin_app, csrf_of, TOKEN};
use crate::helpers::TestApp;

const DOMAIN: &str = "hooked.amocrm.ru";
const ID: i64 = 43_000_001;

async fn make_due(app: &TestApp) {
    sqlx::query("update accounts set webhook_checked_at = now() - interval '1 hour'")
        .execute(&app.pool)
        .await
        .unwrap();
}

/// The calls amoCRM saw at its webhooks endpoint, as "METHOD".
fn webhook_calls(app: &TestApp) -> Vec<String> {
    app.fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v4/webhooks")
        .map(|r| r.method.to_string())
        .collect()
}

#[tokio::test]
async fn a_hook_amocrm_switched_off_shows_within_the_hour_and_one_click_brings_it_back() {
    let app = admin_app().await;
    let key = app.connected(DOMAIN, ID).await;
    // Read back and confirmed at the install: not due again for the hour.
    assert_eq!(
        app.admin_json(&format!("/api/accounts/{ID}")).await["webhook_state"],
        "subscribed"
    );
    assert_eq!(
        app.state
            .installer
            .check_hooks_due(&app.state.tokens, 10)
            .await
            .unwrap(),
        0
    );

    app.fake.disable_webhooks(DOMAIN);
    make_due(&app).await;
    assert_eq!(
        app.state
            .installer
            .check_hooks_due(&app.state.tokens, 10)
            .await
            .unwrap(),
        1
    );
    let account = app.admin_json(&format!("/api/accounts/{ID}")).await;
    assert_eq!(account["webhook_state"], "switched_off");
    assert_eq!(account["webhooks_subscribed"], false);
    let page = app
        .admin_get(&format!("/status/accounts/{ID}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("amoCRM switched this hook off"), "{page}");
    let table = app.admin_get("/status").await.text().await.unwrap();
    assert!(table.contains("amoCRM switched this hook off"));
    let metrics = app.admin_get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"amohook_accounts_by_hook_state{state="switched_off"} 1"#),
        "{metrics}"
    );

    // One click: read, delete, create, read again.
    let before = webhook_calls(&app).len();
    let csrf = csrf_of(&app, ID).await;
    let clicked = app
        .http
        .post(app.url(&format!("/status/accounts/{ID}/resubscribe")))
        .bearer_auth(TOKEN)
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(clicked.status(), 303);
    assert_eq!(
        webhook_calls(&app)[before..],
        ["GET", "DELETE", "POST", "GET"]
    );
    let hooks = app.fake.webhooks();
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].1["disabled"], false);
    assert!(hooks[0].1["destination"].as_str().unwrap().ends_with(&key));
    let page = app
        .admin_get(&format!("/status/accounts/{ID}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains("amoCRM switched this hook off"));
    assert_eq!(
        app.admin_json(&format!("/api/accounts/{ID}")).await["webhook_state"],
        "subscribed"
    );
}

#[tokio::test]
async fn a_missing_hook_is_found_and_subscribed_again_through_the_api() {
    let app = admin_app().await;
    app.connected(DOMAIN, ID).await;
    app.fake.remove_webhooks(DOMAIN);
    let post = |action: &'static str| {
        let app = &app;
        async move {
            app.http
                .post(app.url(&format!("/api/accounts/{ID}/{action}")))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap()
        }
    };
    let checked = post("check-hook").await;
    assert_eq!(checked.status(), 200);
    assert!(checked.text().await.unwrap().contains("missing"));
    let page = app
        .admin_get(&format!("/status/accounts/{ID}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("hook missing in amoCRM"));
    // Nothing to delete: a missing hook is created straight away.
    let before = webhook_calls(&app).len();
    assert_eq!(post("resubscribe").await.status(), 200);
    assert_eq!(webhook_calls(&app)[before..], ["GET", "POST", "GET"]);
    let checked = post("check-hook").await;
    assert!(checked.text().await.unwrap().contains("subscribed"));
}

/// A subscription amoCRM answers but does not list switched on is not
/// taken for done: here the first read misses the switched-off hook (a 204
/// once), so it is not deleted, and amoCRM answers the POST for it without
/// switching it back on; the read after says so.
#[tokio::test]
async fn a_subscription_amocrm_does_not_list_switched_on_is_not_taken_for_done() {
    let app = TestApp::spawn().await;
    app.account(DOMAIN, ID);
    assert_eq!(app.install(DOMAIN).await.status(), 200);
    app.fake.disable_webhooks(DOMAIN);
    app.fake.fail_next(
        DOMAIN,
        "/api/v4/webhooks",
        amocrm_sim::Fault::AfterWork(204),
        1,
    );
    let refused = app
        .state
        .installer
        .resubscribe(&app.state.tokens, ID)
        .await
        .unwrap()
        .expect("not confirmed");
    assert!(
        refused.contains("does not list it switched on"),
        "{refused}"
    );
    let account: (bool, String) = sqlx::query_as(
        "select webhooks_subscribed, webhook_state from accounts where account_id = $1",
    )
    .bind(ID)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(account, (false, "refused".to_owned()));
    // The next try reads it, deletes it and makes it anew.
    assert_eq!(
        app.state
            .installer
            .resubscribe(&app.state.tokens, ID)
            .await
            .unwrap(),
        None
    );
    assert_eq!(app.fake.webhooks()[0].1["disabled"], false);
}

/// 402 is amoCRM's answer when the account's paid period lapsed (reads
/// still work): the page says so, and each hourly check asks again until
/// the subscription holds.
#[tokio::test]
async fn a_subscription_refused_for_a_lapsed_paid_period_is_asked_for_again_hourly() {
    let app = TestApp::spawn().await;
    app.account(DOMAIN, ID);
    app.fake.fail_next(
        DOMAIN,
        "/api/v4/webhooks",
        amocrm_sim::Fault::Problem {
            status: 402,
            hint: "Payment Required".into(),
        },
        1,
    );
    let page = app.install(DOMAIN).await;
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("paid period has lapsed"));
    assert!(app.fake.webhooks().is_empty());
    make_due(&app).await;
    assert_eq!(
        app.state
            .installer
            .check_hooks_due(&app.state.tokens, 10)
            .await
            .unwrap(),
        1
    );
    let state: String =
        sqlx::query_scalar("select webhook_state from accounts where account_id = $1")
            .bind(ID)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(state, "subscribed");
    assert_eq!(app.fake.webhooks().len(), 1);
}

/// Notes refused with 402 wait and are tried again, and say why.
#[tokio::test]
async fn notes_refused_for_a_lapsed_paid_period_wait_and_say_why() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    app.fake.fail_next(
        DOMAIN,
        "/api/v4/leads/notes",
        amocrm_sim::Fault::Status(402),
        1,
    );
    let hook = crate::helpers::lead_hook(ID, "add", 1, "x", 1, &[]);
    assert_eq!(app.post_hook(&key, hook).await.status(), 200);
    app.state.worker.drain().await.unwrap();
    let events = app.events().await;
    assert_eq!(events[0].2, "pending");
    assert!(
        events[0]
            .3
            .as_deref()
            .unwrap()
            .contains("paid period has lapsed"),
        "{events:?}"
    );
    app.make_due().await;
    app.state.worker.drain().await.unwrap();
    assert_eq!(app.fake.notes().len(), 1);
}
