use amocrm_sim::{Fault, SimAccount};

use crate::helpers::{TestApp, CLIENT_ID, PUBLIC_URL};

pub(crate) const DOMAIN: &str = "acme.amocrm.ru";

#[tokio::test]
async fn install_redirects_to_amocrm_with_client_id_state_and_mode() {
    let app = TestApp::spawn().await;
    let response = app.get("/install").await;
    assert_eq!(response.status(), 303);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(location.host_str(), Some("www.amocrm.ru"));
    assert_eq!(location.path(), "/oauth");
    let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(query["mode"], "post_message");
    let state = &query["state"];
    assert!(state.len() >= 22, "state carries at least 128 bits");
    // A signed value: handing states out stores nothing, however many are
    // asked for.
    for _ in 0..20 {
        assert_eq!(app.get("/install").await.status(), 303);
    }
    let stored: i64 = sqlx::query_scalar("select count(*) from oauth_states")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "no row per state handed out");
}

#[tokio::test]
async fn browser_install_connects_the_account_and_subscribes_its_hooks() {
    let app = TestApp::spawn().await;
    app.account(DOMAIN, 31_000_001);

    let response = app.install(DOMAIN).await;
    let status = response.status();
    let page = response.text().await.unwrap();
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Connected: acme.amocrm.ru"), "{page}");
    assert!(page.contains("web-hooks are subscribed"));

    let (status, domain, timezone, subscribed): (String, String, Option<String>, bool) = sqlx::query_as(
        "select status, domain, timezone, webhooks_subscribed from accounts where account_id = 31000001",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(status, "active");
    assert_eq!(domain, DOMAIN);
    assert_eq!(timezone.as_deref(), Some("Europe/Moscow"));
    assert!(subscribed);

    let hooks = app.fake.webhooks();
    assert_eq!(hooks.len(), 1);
    let (hook_domain, body) = &hooks[0];
    assert_eq!(hook_domain, DOMAIN);
    let destination = body["destination"].as_str().unwrap();
    let key = destination
        .strip_prefix(&format!("{PUBLIC_URL}/hooks/"))
        .expect("destination is {public_url}/hooks/{hook_key}");
    assert!(key.len() >= 22, "hook key carries at least 128 bits: {key}");
    let events: Vec<&str> = body["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for event in [
        "add_lead",
        "update_lead",
        "add_contact",
        "update_contact",
        "add_company",
        "update_company",
    ] {
        assert!(events.contains(&event), "{event} subscribed");
    }
    // The page of a subscribed install does not show the secret hook URL.
    assert!(!page.contains(key));

    // The key resolves to the account; nothing else does.
    let found = amohook::accounts::keys::find_by_hook_key(&app.pool, key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.account_id, 31_000_001);
    assert!(amohook::accounts::keys::find_by_hook_key(&app.pool, "nope")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn tokens_are_stored_encrypted() {
    let app = TestApp::spawn().await;
    app.account(DOMAIN, 31_000_002);
    assert_eq!(app.install(DOMAIN).await.status(), 200);

    let access = app.state.tokens.access_token(31_000_002).await.unwrap();
    use secrecy::ExposeSecret as _;
    let plain = access.expose_secret().to_owned();
    // The fake's access tokens are JWTs, as amoCRM's are.
    assert_eq!(plain.split('.').count(), 3, "{plain}");
    let (a, r): (Vec<u8>, Vec<u8>) = sqlx::query_as(
        "select access_token, refresh_token from account_tokens where account_id = 31000002",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    for blob in [&a, &r] {
        assert_eq!(blob[0], app.state.cipher.current_key_id(), "key id byte");
        assert!(!String::from_utf8_lossy(blob).contains(&plain[..20]));
        assert!(!String::from_utf8_lossy(blob).contains("refresh-"));
    }
    // Nothing in the whole table's text form shows the token either.
    let dump: String = sqlx::query_scalar("select string_agg(t::text, ' ') from account_tokens t")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(!dump.contains(&plain));
    assert!(!dump.contains(&hex::encode(plain.as_bytes())));
}

#[tokio::test]
async fn reinstall_keeps_the_account_history_and_hook_key() {
    let app = TestApp::spawn().await;
    app.account(DOMAIN, 31_000_003);
    assert_eq!(app.install(DOMAIN).await.status(), 200);
    let first_key = app.fake.webhooks()[0].1["destination"]
        .as_str()
        .unwrap()
        .to_owned();
    sqlx::query(
        "update accounts set installed_at = now() - interval '30 days', status = 'reauth_required'
         where account_id = 31000003",
    )
    .execute(&app.pool)
    .await
    .unwrap();

    let response = app.install(DOMAIN).await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("Reconnected"));
    let (count, status, old): (i64, String, bool) = sqlx::query_as(
        "select count(*), min(status), bool_and(installed_at < now() - interval '29 days')
         from accounts where account_id = 31000003",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(count, 1);
    assert_eq!(status, "active");
    assert!(old, "installed_at is kept");
    // Subscribed anew (read, deleted, made again): one subscription, of
    // the same URL.
    let hooks = app.fake.webhooks();
    assert_eq!(hooks.len(), 1);
    let second_key = hooks[0].1["destination"].as_str().unwrap().to_owned();
    assert_eq!(first_key, second_key, "the hook URL stays the same");
}

#[tokio::test]
async fn referers_outside_the_allowed_domains_are_refused_before_anything_is_sent() {
    let app = TestApp::spawn().await;
    for referer in [
        "evil.com",
        "amocrm.ru.evil.com",
        "acme.amocrm.ru.evil.com",
        "acme.amocrm.ru:8080",
        "acme.amocrm.ru/x",
        "https://acme.amocrm.ru",
        "a.b.amocrm.ru",
        "",
    ] {
        let state = app.start_install().await;
        let response = app
            .callback(&[("code", "c"), ("referer", referer), ("state", &state)])
            .await;
        assert_eq!(response.status(), 400, "referer {referer:?}");
        let page = response.text().await.unwrap();
        assert!(
            page.contains("does not come from an amoCRM account"),
            "{page}"
        );
        // Widget installs are held to the same rule.
        let response = app
            .callback(&[("code", "c"), ("referer", referer), ("from_widget", "1")])
            .await;
        assert_eq!(response.status(), 400, "widget referer {referer:?}");
    }
    assert!(app.fake.requests().is_empty(), "nothing reached any host");
    let pending: i64 = sqlx::query_scalar("select count(*) from pending_installs")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(pending, 0);
}

#[tokio::test]
async fn missing_unknown_used_and_expired_states_are_refused() {
    let app = TestApp::spawn().await;
    app.account(DOMAIN, 31_000_004);

    let code = app.fake.issue_code(DOMAIN);
    let missing = app.callback(&[("code", &code), ("referer", DOMAIN)]).await;
    assert_eq!(missing.status(), 400);
    let unknown = app
        .callback(&[("code", &code), ("referer", DOMAIN), ("state", "made-up")])
        .await;
    assert_eq!(unknown.status(), 400);
    assert!(unknown
        .text()
        .await
        .unwrap()
        .contains("expired or was already used"));

    let expired = app
        .state
        .installer
        .state_expiring_at(chrono::Utc::now() - chrono::Duration::seconds(1));
    let response = app
        .callback(&[("code", &code), ("referer", DOMAIN), ("state", &expired)])
        .await;
    assert_eq!(response.status(), 400);
    // A state signed with another key (another deployment's) is not ours.
    let foreign = amohook::install::Installer::new(
        app.pool.clone(),
        amohook::crypto::Cipher::new(&[9; 32]),
        (*app.state.api).clone(),
        PUBLIC_URL.into(),
        app.state.settings.install.clone(),
    )
    .new_state();
    let response = app
        .callback(&[("code", &code), ("referer", DOMAIN), ("state", &foreign)])
        .await;
    assert_eq!(response.status(), 400);
    // One byte changed in a good state: refused.
    let good = app.start_install().await;
    let mut bytes = good.clone().into_bytes();
    bytes[3] = if bytes[3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    let response = app
        .callback(&[("code", &code), ("referer", DOMAIN), ("state", &tampered)])
        .await;
    assert_eq!(response.status(), 400);
    assert!(app.fake.requests().is_empty(), "no code was exchanged");

    // A state works once.
    let state = app.start_install().await;
    let ok = app
        .callback(&[("code", &code), ("referer", DOMAIN), ("state", &state)])
        .await;
    assert_eq!(ok.status(), 200);
    let code2 = app.fake.issue_code(DOMAIN);
    let reused = app
        .callback(&[("code", &code2), ("referer", DOMAIN), ("state", &state)])
        .await;
    assert_eq!(reused.status(), 400);
    assert_eq!(app.token_requests().len(), 1);
}

#[tokio::test]
async fn a_code_amocrm_rejects_gets_502_with_its_reason() {
    let app = TestApp::spawn().await;
    app.account(DOMAIN, 31_000_005);
    app.fake.fail_next(
        DOMAIN,
        "/oauth2/access_token",
        Fault::Problem {
            status: 400,
            hint: "Authorization code has expired".into(),
        },
        1,
    );
    let response = app.install(DOMAIN).await;
    assert_eq!(response.status(), 502);
    let page = response.text().await.unwrap();
    assert!(page.contains("Authorization code has expired"), "{page}");
    assert!(!page.contains(crate::helpers::CLIENT_SECRET));
    assert_eq!(app.account_status(31_000_005).await, None);
}

#[tokio::test]
async fn a_refused_webhook_subscription_still_connects_and_shows_the_hook_url() {
    let app = TestApp::spawn().await;
    app.fake.add_account(
        DOMAIN,
        SimAccount {
            name: "Not admin & co".into(),
            timezone: "Asia/Yekaterinburg".into(),
            admin: false,
            ..SimAccount::new(31_000_006)
        },
    );
    let response = app.install(DOMAIN).await;
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert!(page.contains("add the web-hook by hand"), "{page}");
    assert!(page.contains("not an administrator"));
    assert!(
        page.contains("Not admin &#38; co") || page.contains("Not admin &amp; co"),
        "names are escaped: {page}"
    );
    let (status, subscribed, error): (String, bool, Option<String>) = sqlx::query_as(
        "select status, webhooks_subscribed, webhooks_error from accounts where account_id = 31000006",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(status, "active");
    assert!(!subscribed);
    assert!(error.unwrap().contains("403"));
    let key = amohook::accounts::hook_key(&app.pool, &app.state.cipher, 31_000_006)
        .await
        .unwrap();
    use secrecy::ExposeSecret as _;
    assert!(page.contains(&format!("{PUBLIC_URL}/hooks/{}", key.expose_secret())));
}
