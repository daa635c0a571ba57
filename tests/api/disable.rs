use hmac::{Hmac, KeyInit as _, Mac};
use sha2::Sha256;

use amocrm_sim::Fault;

use crate::helpers::{lead_hook, TestApp, CLIENT_ID, CLIENT_SECRET};

const DOMAIN: &str = "gone.amocrm.ru";
const ID: i64 = 33_000_001;

fn sign(client_uuid: &str, account_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(CLIENT_SECRET.as_bytes()).unwrap();
    mac.update(format!("{client_uuid}|{account_id}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

async fn tokens_left(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from account_tokens where account_id = $1")
        .bind(ID)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_signed_uninstall_disconnects_the_account_and_erases_its_tokens() {
    let app = TestApp::spawn().await;
    app.account(DOMAIN, ID);
    assert_eq!(app.install(DOMAIN).await.status(), 200);
    // The account removes the integration: amoCRM revokes its tokens, then
    // calls the uninstall hook.
    app.fake.uninstall(DOMAIN);
    let response = uninstall_call(&app).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.account_status(ID).await.as_deref(),
        Some("disconnected")
    );
    assert_eq!(tokens_left(&app).await, 0);
    let seen = app.fake.requests().len();
    assert!(app.state.tokens.access_token(ID).await.is_err());
    assert_eq!(
        app.fake.requests().len(),
        seen,
        "nothing more is sent for it"
    );
}

#[tokio::test]
async fn a_signed_uninstall_also_works_as_a_form_post() {
    let app = TestApp::spawn().await;
    app.account(DOMAIN, ID);
    assert_eq!(app.install(DOMAIN).await.status(), 200);
    app.fake.uninstall(DOMAIN);
    let id = ID.to_string();
    let response = app
        .http
        .post(app.url("/oauth/disable"))
        .form(&[
            ("account_id", id.as_str()),
            ("client_uuid", CLIENT_ID),
            ("signature", &sign(CLIENT_ID, &id)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.account_status(ID).await.as_deref(),
        Some("disconnected")
    );
}

#[tokio::test]
async fn a_wrong_signature_gets_401_and_changes_nothing() {
    let app = TestApp::spawn().await;
    app.account(DOMAIN, ID);
    assert_eq!(app.install(DOMAIN).await.status(), 200);
    let id = ID.to_string();
    let other = (ID + 1).to_string();
    let mut forged = sign(CLIENT_ID, &id);
    forged.replace_range(0..2, if forged.starts_with("00") { "11" } else { "00" });
    for (client_uuid, signature) in [
        (CLIENT_ID, forged.clone()),
        (CLIENT_ID, sign(CLIENT_ID, &other)),
        (CLIENT_ID, String::new()),
        (CLIENT_ID, "not-hex".into()),
        ("another-client", sign("another-client", &id)),
    ] {
        let response = app
            .http
            .post(app.url("/oauth/disable"))
            .query(&[
                ("account_id", id.as_str()),
                ("client_uuid", client_uuid),
                ("signature", &signature),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{client_uuid} {signature}");
    }
    assert_eq!(app.account_status(ID).await.as_deref(), Some("active"));
    assert_eq!(tokens_left(&app).await, 1);
}

async fn uninstall_call(app: &TestApp) -> reqwest::Response {
    let id = ID.to_string();
    app.http
        .get(app.url("/oauth/disable"))
        .query(&[
            ("account_id", id.as_str()),
            ("client_uuid", CLIENT_ID),
            ("signature", &sign(CLIENT_ID, &id)),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_replayed_uninstall_of_a_live_grant_changes_nothing() {
    let app = TestApp::spawn().await;
    app.account(DOMAIN, ID);
    assert_eq!(app.install(DOMAIN).await.status(), 200);
    // Someone who saw the (never-changing) uninstall URL in a log calls it;
    // the account never removed the integration.
    let response = uninstall_call(&app).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["message"], "not confirmed: the grant is alive");
    assert_eq!(app.account_status(ID).await.as_deref(), Some("active"));
    assert_eq!(tokens_left(&app).await, 1);
    // amohook asked amoCRM rather than believe it.
    assert!(app
        .fake
        .requests()
        .iter()
        .any(|r| r.path == "/api/v4/account"));
    // The account's page says what happened.
    let error: Option<String> =
        sqlx::query_scalar("select last_error from account_stats where account_id = $1")
            .bind(ID)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(error.unwrap().contains("uninstall call arrived"));
}

#[tokio::test]
async fn an_uninstall_amocrm_cannot_confirm_yet_is_checked_again_keeping_the_tokens() {
    let app = TestApp::spawn().await;
    app.account(DOMAIN, ID);
    assert_eq!(app.install(DOMAIN).await.status(), 200);
    app.fake.uninstall(DOMAIN);
    app.fake.set_outage(Some(503));
    assert_eq!(uninstall_call(&app).await.status(), 200);
    assert_eq!(app.account_status(ID).await.as_deref(), Some("active"));
    assert_eq!(tokens_left(&app).await, 1, "kept until amoCRM answers");
    let scheduled: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select uninstall_check_at from accounts where account_id = $1")
            .bind(ID)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(scheduled.is_some());
    // amoCRM answers again: the check is repeated and confirms.
    app.fake.set_outage(None);
    sqlx::query("update accounts set uninstall_check_at = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    let settled = amohook::uninstall::check_due(&app.pool, &app.state.tokens, &app.state.api)
        .await
        .unwrap();
    assert_eq!(settled, 1);
    assert_eq!(
        app.account_status(ID).await.as_deref(),
        Some("disconnected")
    );
    assert_eq!(tokens_left(&app).await, 0);
}

/// An account whose refresh token amoCRM refused cannot be asked about its
/// grant: a (replayed) uninstall call for it erases nothing and drops
/// nothing; a new install brings it and its waiting events back.
#[tokio::test]
async fn an_uninstall_call_for_an_account_that_must_reinstall_changes_nothing() {
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
    let response = uninstall_call(&app).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().starts_with("recorded"),
        "{body}"
    );
    assert_eq!(
        app.account_status(ID).await.as_deref(),
        Some("reauth_required")
    );
    assert_eq!(tokens_left(&app).await, 1);
    app.state.worker.drain().await.unwrap();
    assert_eq!(app.events().await[0].2, "pending");
    assert_eq!(app.install(DOMAIN).await.status(), 200);
    app.state.worker.drain().await.unwrap();
    assert_eq!(app.fake.notes().len(), 1);
}

/// The signature never changes, so a replay can come any number of times:
/// amoCRM is asked once, and the rest only make sure a check is scheduled
/// for when the few minutes are up.
#[tokio::test]
async fn a_flood_of_replayed_uninstall_calls_asks_amocrm_once() {
    let app = TestApp::spawn().await;
    app.account(DOMAIN, ID);
    assert_eq!(app.install(DOMAIN).await.status(), 200);
    let asked = || {
        app.fake
            .requests()
            .iter()
            .filter(|r| r.path == "/api/v4/account")
            .count()
    };
    let before = asked();
    for _ in 0..10 {
        assert_eq!(uninstall_call(&app).await.status(), 200);
    }
    assert_eq!(asked() - before, 1);
    assert_eq!(app.account_status(ID).await.as_deref(), Some("active"));
    let (checked, next): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as(
            "select uninstall_checked_at, uninstall_check_at from accounts where account_id = $1",
        )
        .bind(ID)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(next - checked, chrono::Duration::minutes(5));
    // A real uninstall among the replays is confirmed by that check.
    app.fake.uninstall(DOMAIN);
    sqlx::query("update accounts set uninstall_check_at = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    amohook::uninstall::check_due(&app.pool, &app.state.tokens, &app.state.api)
        .await
        .unwrap();
    assert_eq!(
        app.account_status(ID).await.as_deref(),
        Some("disconnected")
    );
}

/// A 401 after a refresh that succeeded is not a dead grant (the refresh
/// proved it alive): the account keeps its tokens and is asked again.
#[tokio::test]
async fn a_401_after_a_successful_refresh_disconnects_nothing() {
    let app = TestApp::spawn().await;
    app.account(DOMAIN, ID);
    assert_eq!(app.install(DOMAIN).await.status(), 200);
    app.fake
        .fail_next(DOMAIN, "/api/v4/account", Fault::Status(401), 2);
    let response = uninstall_call(&app).await;
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["message"], "to be confirmed with amoCRM");
    assert_eq!(app.fake.refreshes(DOMAIN), 1, "the token was refreshed");
    assert_eq!(app.account_status(ID).await.as_deref(), Some("active"));
    assert_eq!(tokens_left(&app).await, 1);
}
