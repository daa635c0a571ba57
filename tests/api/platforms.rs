//! amoCRM and Kommo side by side: two integrations in one deployment, each
//! account served by its own platform's integration (see src/platform.rs).
//! The fake, like the real platforms, accepts a platform's codes and
//! refresh tokens only with that platform's client.

use hmac::{Hmac, KeyInit as _, Mac};
use sha2::Sha256;

use crate::helpers::{lead_hook, TestApp, CLIENT_ID, CLIENT_SECRET};

const KOMMO_ID: &str = "7c1d2e3f-kommo-4a5b-8c9d-0e1f2a3b4c5d";
const KOMMO_SECRET: &str = "kommo-client-secret-plugh-9876543210";
const RU: &str = "ivanov.amocrm.ru";
const RU_ID: i64 = 38_000_001;
const KOMMO: &str = "smith.kommo.com";
const KOMMO_ACCOUNT: i64 = 38_000_002;

/// A deployment with both integrations; the fake knows Kommo's client.
async fn both() -> TestApp {
    let app = TestApp::spawn_with(|env| {
        env.insert("AMOHOOK_KOMMO__CLIENT_ID".into(), KOMMO_ID.into());
        env.insert("AMOHOOK_KOMMO__CLIENT_SECRET".into(), KOMMO_SECRET.into());
    })
    .await;
    app.fake.register_kommo_client(KOMMO_ID, KOMMO_SECRET);
    app
}

fn sign(secret: &str, client_uuid: &str, account_id: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{client_uuid}|{account_id}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

async fn uninstall(app: &TestApp, client_uuid: &str, secret: &str, id: i64) -> u16 {
    let id_text = id.to_string();
    app.http
        .get(app.url("/oauth/disable"))
        .query(&[
            ("account_id", id_text.as_str()),
            ("client_uuid", client_uuid),
            ("signature", &sign(secret, client_uuid, id)),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn grant_page(response: &reqwest::Response) -> (String, String) {
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let client_id = location
        .query_pairs()
        .find(|(k, _)| k == "client_id")
        .unwrap()
        .1
        .into_owned();
    (location.host_str().unwrap().to_owned(), client_id)
}

/// Token requests the fake saw for `domain`, with the client id they sent.
fn token_clients(app: &TestApp, domain: &str) -> Vec<String> {
    app.token_requests()
        .iter()
        .filter(|r| r.domain == domain)
        .map(|r| {
            url::form_urlencoded::parse(r.body.as_bytes())
                .find(|(k, _)| k == "client_id")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn install_sends_the_browser_to_each_platforms_grant_page() {
    let app = both().await;
    let amocrm = app.get("/install").await;
    assert_eq!(amocrm.status(), 303);
    assert_eq!(
        grant_page(&amocrm),
        ("www.amocrm.ru".into(), CLIENT_ID.into())
    );
    let amocrm = app.get("/install?platform=amocrm").await;
    assert_eq!(
        grant_page(&amocrm),
        ("www.amocrm.ru".into(), CLIENT_ID.into())
    );
    let kommo = app.get("/install?platform=kommo").await;
    assert_eq!(kommo.status(), 303);
    assert_eq!(
        grant_page(&kommo),
        ("www.kommo.com".into(), KOMMO_ID.into())
    );
    assert_eq!(app.get("/install?platform=bitrix").await.status(), 400);

    // One integration: no Kommo grant page to send anyone to.
    let single = TestApp::spawn().await;
    assert_eq!(single.get("/install?platform=kommo").await.status(), 404);
    assert_eq!(single.get("/install").await.status(), 303);
}

#[tokio::test]
async fn each_platform_installs_refreshes_and_gets_notes_through_its_own_integration() {
    let app = both().await;
    let ru_key = app.connected(RU, RU_ID).await;
    // A Kommo account by a widget install, with Kommo's client id.
    app.account(KOMMO, KOMMO_ACCOUNT);
    let code = app.fake.issue_code(KOMMO);
    let widget = app
        .callback(&[
            ("code", &code),
            ("referer", KOMMO),
            ("from_widget", "1"),
            ("client_id", KOMMO_ID),
        ])
        .await;
    assert_eq!(widget.status(), 200);
    let kommo_key = app.hook_key(KOMMO_ACCOUNT).await;
    assert_eq!(token_clients(&app, RU), [CLIENT_ID]);
    assert_eq!(token_clients(&app, KOMMO), [KOMMO_ID]);

    // Both refresh, each with its own client.
    app.fake.expire_access_tokens(RU);
    app.fake.expire_access_tokens(KOMMO);
    for (key, id, name) in [
        (&ru_key, RU_ID, "Сделка"),
        (&kommo_key, KOMMO_ACCOUNT, "Deal"),
    ] {
        let body = lead_hook(id, "add", 501, name, 1_712_331_728, &[]);
        assert_eq!(app.post_hook(key, body).await.status(), 200);
    }
    let ru_notes = app.wait_for_notes(RU, 1).await;
    let kommo_notes = app.wait_for_notes(KOMMO, 1).await;
    assert!(ru_notes[0].text.contains("Сделка"), "{}", ru_notes[0].text);
    assert!(
        ru_notes[0].text.contains("Ответственный"),
        "{}",
        ru_notes[0].text
    );
    assert!(
        kommo_notes[0].text.contains("Responsible"),
        "{}",
        kommo_notes[0].text
    );
    assert_eq!(app.fake.refreshes(RU), 1);
    assert_eq!(app.fake.refreshes(KOMMO), 1);
    assert_eq!(token_clients(&app, RU), [CLIENT_ID, CLIENT_ID]);
    assert_eq!(token_clients(&app, KOMMO), [KOMMO_ID, KOMMO_ID]);
}

#[tokio::test]
async fn an_install_for_the_other_platforms_integration_is_refused_before_anything_is_sent() {
    let app = both().await;
    app.account(KOMMO, KOMMO_ACCOUNT);
    let code = app.fake.issue_code(KOMMO);
    // amoCRM's client id on a Kommo host: meant for another integration.
    let response = app
        .callback(&[
            ("code", &code),
            ("referer", KOMMO),
            ("from_widget", "1"),
            ("client_id", CLIENT_ID),
        ])
        .await;
    assert_eq!(response.status(), 400);
    assert!(token_clients(&app, KOMMO).is_empty());
}

#[tokio::test]
async fn an_uninstall_is_believed_only_from_the_accounts_own_integration() {
    let app = both().await;
    app.connected(RU, RU_ID).await;
    app.connected(KOMMO, KOMMO_ACCOUNT).await;
    app.fake.uninstall(RU);
    app.fake.uninstall(KOMMO);
    // Signed with the other platform's secret: 401.
    assert_eq!(
        uninstall(&app, KOMMO_ID, CLIENT_SECRET, KOMMO_ACCOUNT).await,
        401
    );
    assert_eq!(uninstall(&app, CLIENT_ID, KOMMO_SECRET, RU_ID).await, 401);
    // Rightly signed, but by the other integration: 401.
    assert_eq!(
        uninstall(&app, CLIENT_ID, CLIENT_SECRET, KOMMO_ACCOUNT).await,
        401
    );
    assert_eq!(uninstall(&app, KOMMO_ID, KOMMO_SECRET, RU_ID).await, 401);
    assert_eq!(app.account_status(RU_ID).await.as_deref(), Some("active"));
    assert_eq!(
        app.account_status(KOMMO_ACCOUNT).await.as_deref(),
        Some("active")
    );
    // Each by its own: disconnected.
    assert_eq!(
        uninstall(&app, KOMMO_ID, KOMMO_SECRET, KOMMO_ACCOUNT).await,
        200
    );
    assert_eq!(uninstall(&app, CLIENT_ID, CLIENT_SECRET, RU_ID).await, 200);
    assert_eq!(
        app.account_status(RU_ID).await.as_deref(),
        Some("disconnected")
    );
    assert_eq!(
        app.account_status(KOMMO_ACCOUNT).await.as_deref(),
        Some("disconnected")
    );
}

#[tokio::test]
async fn a_refusal_of_one_integration_pauses_only_its_own_accounts() {
    let app = both().await;
    app.connected(RU, RU_ID).await;
    app.connected(KOMMO, KOMMO_ACCOUNT).await;
    // Kommo now knows the integration by another secret (rotated there,
    // not here): its refreshes are refused as a wrong client.
    app.fake.register_kommo_client(KOMMO_ID, "rotated-in-kommo");
    // Both accounts' tokens are due.
    sqlx::query("update account_tokens set expires_at = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    let kommo = app.state.tokens.access_token(KOMMO_ACCOUNT).await;
    assert!(
        matches!(&kommo, Err(amohook::tokens::TokenError::IntegrationRefused(e)) if e.starts_with("kommo")),
        "{kommo:?}"
    );
    assert!(app.state.tokens.access_token(RU_ID).await.is_ok());
    let faults = amohook::fault::current(&app.pool).await.unwrap();
    assert_eq!(faults.len(), 1);
    assert_eq!(faults[0].integration, "kommo");
    // Nobody is marked for reinstall.
    assert_eq!(
        app.account_status(KOMMO_ACCOUNT).await.as_deref(),
        Some("active")
    );
}

#[tokio::test]
async fn with_one_integration_every_host_is_served_by_it() {
    // The deployment as before Kommo had its own section: amocrm.* holds
    // the integration and serves amoCRM and Kommo hosts alike.
    let app = TestApp::spawn().await;
    app.connected(RU, RU_ID).await;
    app.connected(KOMMO, KOMMO_ACCOUNT).await;
    assert_eq!(token_clients(&app, RU), [CLIENT_ID]);
    assert_eq!(token_clients(&app, KOMMO), [CLIENT_ID]);
    assert_eq!(
        uninstall(&app, CLIENT_ID, CLIENT_SECRET, KOMMO_ACCOUNT).await,
        200
    );
}

#[tokio::test]
async fn the_status_page_shows_and_filters_platforms_and_installs_on_each() {
    const TOKEN: &str = "platforms-admin-token-0123456789";
    let app = TestApp::spawn_with(|env| {
        env.insert("AMOHOOK_KOMMO__CLIENT_ID".into(), KOMMO_ID.into());
        env.insert("AMOHOOK_KOMMO__CLIENT_SECRET".into(), KOMMO_SECRET.into());
        env.insert("AMOHOOK_ADMIN__TOKEN".into(), TOKEN.into());
    })
    .await;
    app.fake.register_kommo_client(KOMMO_ID, KOMMO_SECRET);
    app.connected(RU, RU_ID).await;
    app.connected(KOMMO, KOMMO_ACCOUNT).await;
    let get = |path: &'static str| {
        let app = &app;
        async move { app.get_with_token(path, TOKEN).await.text().await.unwrap() }
    };
    let page = get("/status").await;
    assert!(page.contains("href=\"/install?platform=amocrm\""), "{page}");
    assert!(page.contains("href=\"/install?platform=kommo\""), "{page}");
    assert!(
        page.contains("<small class=\"platform\">Kommo</small>"),
        "{page}"
    );
    assert!(
        page.contains("<small class=\"platform\">amoCRM</small>"),
        "{page}"
    );
    let kommo_only = get("/status?platform=kommo").await;
    assert!(kommo_only.contains(KOMMO) && !kommo_only.contains(RU));
    let amocrm_only = get("/status?platform=amocrm").await;
    assert!(amocrm_only.contains(RU) && !amocrm_only.contains(KOMMO));
    // The filter keeps the status filter, and the API has it too.
    let api: serde_json::Value = app
        .get_with_token("/api/accounts?platform=kommo&status=active", TOKEN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(api["total"], 1);
    assert_eq!(api["accounts"][0]["platform"], "kommo");
    // An account that must install again is sent to its platform's page.
    sqlx::query("update accounts set status = 'reauth_required' where account_id = $1")
        .bind(KOMMO_ACCOUNT)
        .execute(&app.pool)
        .await
        .unwrap();
    let account = get("/status/accounts/38000002").await;
    assert!(account.contains("/install?platform=kommo"), "{account}");
    assert!(
        account.contains("<dd id=\"platform\">Kommo</dd>"),
        "{account}"
    );
}
