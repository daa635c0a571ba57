//! The admin side, continued: retries, the JSON API's actions, paging, database failures, hook-key rotation.

use amocrm_sim::{Fault, SimAccount};
use serde_json::Value;

use crate::helpers::{lead_hook, TestApp};

pub(crate) const TOKEN: &str = "admin-token-for-tests-0123456789";

use crate::admin::*;

#[tokio::test]
async fn a_retried_failed_event_is_delivered() {
    let app = admin_app().await;
    let key = app.connected("alpha.amocrm.ru", 41_000_001).await;
    app.post_hook(&key, lead_hook(41_000_001, "add", 5, "x", 1, &[]))
        .await;
    app.fake.fail_next(
        "alpha.amocrm.ru",
        "/api/v4/leads/notes",
        Fault::Status(400),
        1,
    );
    app.state.worker.drain().await.unwrap();
    assert_eq!(app.events().await[0].2, "failed");
    let page = app
        .admin_get("/status/accounts/41000001")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("alpha.amocrm.ru") && page.contains(r#"class="state-failed""#));

    // Without the form's token, or from another site: refused.
    let form = |csrf: &str| [("csrf", csrf.to_owned())];
    let forged = app
        .http
        .post(app.url("/status/accounts/41000001/retry"))
        .bearer_auth(TOKEN)
        .form(&form("0000"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let csrf = csrf_of(&app, 41_000_001).await;
    let cross = app
        .http
        .post(app.url("/status/accounts/41000001/retry"))
        .bearer_auth(TOKEN)
        .header("sec-fetch-site", "cross-site")
        .form(&form(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    // Without fetch metadata, an opaque origin proves nothing.
    let opaque = app
        .http
        .post(app.url("/status/accounts/41000001/retry"))
        .bearer_auth(TOKEN)
        .header("origin", "null")
        .form(&form(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(opaque.status(), 403);
    assert_eq!(app.events().await[0].2, "failed");

    let retried = app
        .http
        .post(app.url("/status/accounts/41000001/retry"))
        .bearer_auth(TOKEN)
        .header("origin", &app.address)
        .form(&form(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), 303);
    assert!(retried.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/status/accounts/41000001?done="));
    app.state.worker.drain().await.unwrap();
    assert_eq!(app.events().await[0].2, "delivered");
    assert_eq!(app.fake.notes().len(), 1);
    // What a browser sends for the page's own form: the pages' no-referrer
    // policy makes its Origin `null`, and its fetch metadata says
    // same-origin.
    let from_the_page = app
        .http
        .post(app.url("/status/accounts/41000001/pause"))
        .bearer_auth(TOKEN)
        .header("sec-fetch-site", "same-origin")
        .header("origin", "null")
        .form(&form(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(from_the_page.status(), 303);
}

#[tokio::test]
async fn the_api_retries_pauses_resumes_and_resubscribes() {
    let app = admin_app().await;
    app.fake.add_account(
        "alpha.amocrm.ru",
        SimAccount {
            admin: false,
            ..SimAccount::new(41_000_001)
        },
    );
    assert_eq!(app.install("alpha.amocrm.ru").await.status(), 200);
    let key = app.hook_key(41_000_001).await;
    let post = |path: &str| app.http.post(app.url(path)).bearer_auth(TOKEN).send();

    // Pause: nothing is delivered; resume: it is.
    assert_eq!(
        post("/api/accounts/41000001/pause").await.unwrap().status(),
        200
    );
    app.post_hook(&key, lead_hook(41_000_001, "add", 5, "x", 1, &[]))
        .await;
    app.state.worker.drain().await.unwrap();
    assert!(app.fake.notes().is_empty());
    assert_eq!(
        app.admin_json("/api/accounts/41000001").await["display_status"],
        "paused"
    );
    assert_eq!(
        post("/api/accounts/41000001/resume")
            .await
            .unwrap()
            .status(),
        200
    );
    app.state.worker.drain().await.unwrap();
    assert_eq!(app.fake.notes().len(), 1);

    // Resubscribe while amoCRM still refuses: 502 with the reason.
    let refused = post("/api/accounts/41000001/resubscribe").await.unwrap();
    assert_eq!(refused.status(), 502);
    let json: Value = refused.json().await.unwrap();
    assert!(json["message"]
        .as_str()
        .unwrap()
        .contains("not an administrator"));
    // After the account's admin fixed it: subscribed.
    app.fake
        .add_account("alpha.amocrm.ru", SimAccount::new(41_000_001));
    assert_eq!(
        post("/api/accounts/41000001/resubscribe")
            .await
            .unwrap()
            .status(),
        200
    );
    let subscribed: bool = sqlx::query_scalar("select webhooks_subscribed from accounts")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(subscribed);

    let retry = post("/api/accounts/41000001/retry").await.unwrap();
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.json::<Value>().await.unwrap()["message"], "retried 0");
    // Errors are JSON with a message.
    let missing = post("/api/accounts/1/retry").await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["message"],
        "No such account."
    );
    assert_eq!(
        post("/api/accounts/41000001/explode")
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(app.admin_get("/api/accounts/1").await.status(), 404);
}

#[tokio::test]
async fn five_thousand_accounts_are_paged_not_dumped() {
    let app = admin_app().await;
    seed(&app, 5000).await;
    let page = app.admin_get("/status?sort=pending&dir=desc").await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert_eq!(page.matches("<tr data-account-id=").count(), 50);
    assert!(page.contains("Page 1 of 100"));
    let json = app.admin_json("/api/accounts?page=100").await;
    assert_eq!(json["accounts"].as_array().unwrap().len(), 50);
}

#[tokio::test]
async fn a_database_failure_is_an_opaque_503_as_json_or_as_a_page() {
    let app = admin_app().await;
    app.connected("alpha.amocrm.ru", 41_000_001).await;
    app.state.pool.close().await;
    let api = app.admin_get("/api/accounts").await;
    assert_eq!(api.status(), 503);
    let json: Value = api.json().await.unwrap();
    assert_eq!(json["status"], 503);
    let message = json["message"].as_str().unwrap();
    assert!(message.contains("database is not available"), "{message}");
    assert!(
        !message.to_lowercase().contains("pool"),
        "no internal text: {message}"
    );
    let page = app.admin_get("/status/accounts/41000001").await;
    assert_eq!(page.status(), 503);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("The service is busy"), "{html}");
    assert!(!html.to_lowercase().contains("pool"));
}

#[tokio::test]
async fn the_page_of_an_account_that_must_install_again_gives_the_install_link() {
    let app = admin_app().await;
    app.connected("alpha.amocrm.ru", 41_000_001).await;
    async fn page(app: &TestApp) -> String {
        let response = app.admin_get("/status/accounts/41000001").await;
        response.text().await.unwrap()
    }
    assert!(!page(&app).await.contains("id=\"reinstall\""));
    sqlx::query("update accounts set status = 'reauth_required', status_reason = 'revoked'")
        .execute(&app.pool)
        .await
        .unwrap();
    let text = page(&app).await;
    assert!(text.contains("id=\"reinstall\""), "{text}");
    assert!(text.contains(&format!("{}/install", crate::helpers::PUBLIC_URL)));
}

#[tokio::test]
async fn a_hook_key_can_be_rotated_and_the_old_one_works_for_a_grace_period() {
    let app = admin_app().await;
    let old_key = app.connected("alpha.amocrm.ru", 41_000_001).await;
    let hook = || crate::helpers::lead_hook(41_000_001, "add", 1, "x", 1_712_331_728, &[]);
    let response = app
        .http
        .post(app.url("/api/accounts/41000001/rotate-hook-key"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let new_key = app.hook_key(41_000_001).await;
    assert_ne!(new_key, old_key);
    // amoCRM sends to the new URL only: subscribed, and the old one removed.
    let destinations: Vec<String> = app
        .fake
        .webhooks()
        .iter()
        .map(|(_, hook)| hook["destination"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(destinations.len(), 1, "{destinations:?}");
    assert!(destinations[0].ends_with(&new_key));
    // Both keys work during the grace period (hooks amoCRM re-sends to the
    // old URL are not lost) ...
    assert_eq!(app.post_hook(&new_key, hook()).await.status(), 200);
    assert_eq!(app.post_hook(&old_key, hook()).await.status(), 200);
    // ... and after it the old one is unknown.
    sqlx::query("update hook_keys set valid_until = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    app.state.intake.accounts.forget(41_000_001);
    assert_eq!(app.post_hook(&old_key, hook()).await.status(), 404);
    assert_eq!(app.post_hook(&new_key, hook()).await.status(), 200);
}

pub(crate) async fn rotate(app: &TestApp, account_id: i64) -> reqwest::Response {
    app.http
        .post(app.url(&format!("/api/accounts/{account_id}/rotate-hook-key")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_rotation_amocrm_refuses_changes_nothing_and_the_key_keeps_working() {
    let app = admin_app().await;
    let key = app.connected("refuses.amocrm.ru", 41_000_201).await;
    let hook = || lead_hook(41_000_201, "add", 1, "x", 1_712_331_728, &[]);
    app.fake.fail_next(
        "refuses.amocrm.ru",
        "/api/v4/webhooks",
        Fault::Problem {
            status: 403,
            hint: "Insufficient rights".into(),
        },
        1,
    );
    let refused = rotate(&app, 41_000_201).await;
    assert_eq!(refused.status(), 502);
    assert!(refused.text().await.unwrap().contains("administrator"));
    // The key is the one amoCRM has subscribed, with no end, and nothing
    // else works for the account.
    assert_eq!(app.hook_key(41_000_201).await, key);
    let others: i64 = sqlx::query_scalar("select count(*) from hook_keys")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(others, 0);
    sqlx::query("update hook_keys set valid_until = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    app.state.intake.accounts.forget(41_000_201);
    assert_eq!(app.post_hook(&key, hook()).await.status(), 200);
    let destinations = app.fake.webhooks();
    assert_eq!(destinations.len(), 1);
    assert!(destinations[0].1["destination"]
        .as_str()
        .unwrap()
        .ends_with(&key));
}

#[tokio::test]
async fn two_rotations_within_the_grace_keep_every_rotated_key_working() {
    let app = admin_app().await;
    let first = app.connected("twice.amocrm.ru", 41_000_202).await;
    assert_eq!(rotate(&app, 41_000_202).await.status(), 200);
    let second = app.hook_key(41_000_202).await;
    assert_eq!(rotate(&app, 41_000_202).await.status(), 200);
    let third = app.hook_key(41_000_202).await;
    assert!(first != second && second != third && first != third);
    for (i, key) in [&first, &second, &third].into_iter().enumerate() {
        let hook = lead_hook(41_000_202, "add", 10 + i as i64, "x", 1_712_331_728, &[]);
        assert_eq!(app.post_hook(key, hook).await.status(), 200, "key {i}");
    }
    // Each rotated key ends at its own time.
    let ends: Vec<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select valid_until from hook_keys order by created_at")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(ends.len(), 2);
    assert!(ends[0] <= ends[1]);
    let destinations = app.fake.webhooks();
    assert_eq!(destinations.len(), 1, "{destinations:?}");
    assert!(destinations[0].1["destination"]
        .as_str()
        .unwrap()
        .ends_with(&third));
}
