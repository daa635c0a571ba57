//! The status page, the account page and its actions, the admin API.

use serde_json::Value;

use crate::helpers::{lead_hook, TestApp};

pub(crate) const TOKEN: &str = "admin-token-for-tests-0123456789";

pub(crate) async fn admin_app() -> TestApp {
    TestApp::spawn_with(|env| {
        env.insert("AMOHOOK_ADMIN__TOKEN".into(), TOKEN.into());
        env.insert("AMOHOOK_WORKER__CONCURRENCY".into(), "0".into());
    })
    .await
}

impl TestApp {
    pub(crate) async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.get_with_token(path, TOKEN).await
    }

    pub(crate) async fn admin_json(&self, path: &str) -> Value {
        let response = self.admin_get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }
}

/// Inserts `n` accounts straight into the database (the table's data is
/// what is under test, not the install).
pub(crate) async fn seed(app: &TestApp, n: i64) {
    sqlx::query(
        "insert into accounts (account_id, domain, subdomain, name, hook_key_sha256, hook_key, status)
         select 50000000 + i, 'acc' || lpad(i::text, 4, '0') || '.amocrm.ru', 'acc' || i, 'Account ' || i,
                md5(i::text), '\\x00'::bytea,
                case when i % 10 = 0 then 'reauth_required' when i % 15 = 0 then 'disconnected' else 'active' end
         from generate_series(1, $1) as i",
    )
    .bind(n)
    .execute(&app.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn without_an_admin_token_configured_the_admin_pages_are_off() {
    let app = TestApp::spawn().await;
    let page = app.get("/status").await;
    assert_eq!(page.status(), 403);
    assert!(page.text().await.unwrap().contains("admin.token"));
    let api = app
        .http
        .get(app.url("/api/accounts"))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 403);
    let json: Value = api.json().await.unwrap();
    assert!(json["message"]
        .as_str()
        .unwrap()
        .contains("AMOHOOK_ADMIN__TOKEN"));
    assert_eq!(app.get("/metrics").await.status(), 403);
}

#[tokio::test]
async fn the_admin_pages_ask_for_the_token_and_accept_basic_or_bearer() {
    let app = admin_app().await;
    for path in ["/status", "/api/accounts", "/metrics"] {
        let anonymous = app.get(path).await;
        assert_eq!(anonymous.status(), 401, "{path}");
        let challenge = anonymous.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Basic"), "{challenge}");
        let wrong = app
            .http
            .get(app.url(path))
            .bearer_auth("wrong-token")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
        let wrong_basic = app
            .http
            .get(app.url(path))
            .basic_auth("admin", Some("nope"))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong_basic.status(), 401);
        let bearer = app
            .http
            .get(app.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(bearer.status(), 200, "{path}");
        let basic = app
            .http
            .get(app.url(path))
            .basic_auth("any-name", Some(TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), 200, "{path}");
    }
    let page = app.admin_get("/status").await;
    let headers = page.headers();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn the_metrics_token_reads_metrics_and_opens_nothing_else() {
    const METRICS: &str = "metrics-reader-token-0123456789";
    for admin_token in [Some(TOKEN), None] {
        let app = TestApp::spawn_with(|env| {
            if let Some(token) = admin_token {
                env.insert("AMOHOOK_ADMIN__TOKEN".into(), token.into());
            }
            env.insert("AMOHOOK_ADMIN__METRICS_TOKEN".into(), METRICS.into());
            env.insert("AMOHOOK_WORKER__CONCURRENCY".into(), "0".into());
        })
        .await;
        let metrics = app.get_with_token("/metrics", METRICS).await;
        assert_eq!(metrics.status(), 200);
        assert!(metrics.text().await.unwrap().contains("amohook_"));
        let basic = app
            .http
            .get(app.url("/metrics"))
            .basic_auth("prometheus", Some(METRICS))
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), 200);
        assert_eq!(app.get("/metrics").await.status(), 401);
        assert_eq!(
            app.get_with_token("/metrics", "wrong-token").await.status(),
            401
        );
        // The admin surfaces do not take it.
        let forbidden = if admin_token.is_some() { 401 } else { 403 };
        for path in ["/status", "/api/accounts", "/status/accounts/1"] {
            let answer = app.get_with_token(path, METRICS).await;
            assert_eq!(answer.status(), forbidden, "{path}");
        }
        let action = app
            .http
            .post(app.url("/api/accounts/1/pause"))
            .bearer_auth(METRICS)
            .send()
            .await
            .unwrap();
        assert_eq!(action.status(), forbidden);
        if let Some(token) = admin_token {
            assert_eq!(app.get_with_token("/metrics", token).await.status(), 200);
        }
    }
}

#[tokio::test]
async fn the_table_shows_each_account_with_its_figures() {
    let app = admin_app().await;
    let key = app.connected("alpha.amocrm.ru", 41_000_001).await;
    app.connected("bravo.amocrm.ru", 41_000_002).await;
    for i in 1..=3 {
        app.post_hook(&key, lead_hook(41_000_001, "add", i, "x", 1, &[]))
            .await;
    }
    app.fake.refuse_notes_for(2);
    app.state.worker.drain().await.unwrap();
    app.post_hook(&key, lead_hook(41_000_001, "add", 9, "x", 1, &[]))
        .await;
    app.state.intake.receipts.flush(&app.pool).await.unwrap();

    let json = app.admin_json("/api/accounts").await;
    assert_eq!(json["total"], 2);
    let alpha = &json["accounts"][0];
    assert_eq!(alpha["domain"], "alpha.amocrm.ru");
    assert_eq!(alpha["display_status"], "active");
    assert_eq!(alpha["hooks_24h"], 4);
    assert_eq!(alpha["hooks_total"], 4);
    assert_eq!(alpha["delivered"], 2);
    assert_eq!(alpha["failed"], 1);
    assert_eq!(alpha["pending"], 1);
    assert!(alpha["last_error"]
        .as_str()
        .unwrap()
        .contains("Entity not found"));
    assert!(alpha["token_expires_at"].is_string());
    assert!(alpha["last_hook_at"].is_string());
    assert_eq!(json["accounts"][1]["hooks_total"], 0);

    let page = app.admin_get("/status").await.text().await.unwrap();
    assert!(page.contains(r#"<tr data-account-id="41000001">"#));
    // One integration (amoCRM's): one install button.
    assert!(page.contains(r#"href="/install?platform=amocrm""#));
    assert!(!page.contains(r#"href="/install?platform=kommo""#));
    assert!(page.contains("https://hooks.example.test/hooks/{hook_key}"));
    assert!(page.contains("Entity not found"));
    let one = app.admin_json("/api/accounts/41000001").await;
    assert_eq!(one["delivered"], 2);
    let events = app
        .admin_json("/api/accounts/41000001/events?state=failed")
        .await;
    assert_eq!(events["events"].as_array().unwrap().len(), 1);
    assert_eq!(events["events"][0]["entity_id"], 2);
    assert_eq!(events["events"][0]["state"], "failed");
    assert_eq!(events["events"][0]["entity_type"], "lead");
    let unknown = app
        .admin_get("/api/accounts/41000001/events?state=banana")
        .await;
    assert_eq!(unknown.status(), 400);
    let reason: Value = unknown.json().await.unwrap();
    assert!(
        reason["message"].as_str().unwrap().contains("banana"),
        "{reason}"
    );
}

#[tokio::test]
async fn hourly_hook_counts_are_pruned_by_the_maintenance_not_by_every_flush() {
    let app = admin_app().await;
    let key = app.connected("hourly.amocrm.ru", 41_000_101).await;
    sqlx::query(
        "insert into hook_hourly (account_id, hour, received)
         values (41000101, date_trunc('hour', now()) - interval '3 days', 7)",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    app.post_hook(&key, lead_hook(41_000_101, "add", 1, "x", 1, &[]))
        .await;
    app.state.intake.receipts.flush(&app.pool).await.unwrap();
    let rows = || async {
        sqlx::query_scalar::<_, i64>("select count(*) from hook_hourly where account_id = 41000101")
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    // A flush (once a second) writes the counts and deletes nothing.
    assert_eq!(rows().await, 2);
    assert_eq!(amohook::stats::prune_hourly(&app.pool).await.unwrap(), 1);
    assert_eq!(rows().await, 1);
    assert_eq!(
        app.admin_json("/api/accounts/41000101").await["hooks_24h"],
        1
    );
}

#[tokio::test]
async fn stored_states_are_typed_and_an_unknown_one_is_an_error_not_a_default() {
    let app = admin_app().await;
    let read = |text: &'static str| {
        let pool = app.pool.clone();
        async move {
            (
                sqlx::query_scalar::<_, amohook::inbox::EventState>("select $1::text")
                    .bind(text)
                    .fetch_one(&pool)
                    .await,
                sqlx::query_scalar::<_, amohook::accounts::AccountStatus>("select $1::text")
                    .bind(text)
                    .fetch_one(&pool)
                    .await,
                sqlx::query_scalar::<_, amohook::amocrm::hooks::EntityKind>("select $1::text")
                    .bind(text)
                    .fetch_one(&pool)
                    .await,
            )
        }
    };
    let (state, _, kind) = read("dropped").await;
    assert_eq!(state.unwrap(), amohook::inbox::EventState::Dropped);
    assert!(kind.is_err());
    let (_, status, kind) = read("company").await;
    assert!(status.is_err(), "not quietly 'disconnected'");
    assert_eq!(kind.unwrap(), amohook::amocrm::hooks::EntityKind::Company);
    let (state, status, kind) = read("lead ").await;
    assert!(
        state.is_err() && status.is_err() && kind.is_err(),
        "not quietly a lead"
    );
}

#[tokio::test]
async fn the_table_filters_sorts_and_pages() {
    let app = admin_app().await;
    seed(&app, 120).await;
    let first = app.admin_json("/api/accounts").await;
    assert_eq!(first["total"], 120);
    assert_eq!(first["accounts"].as_array().unwrap().len(), 50);
    assert_eq!(first["accounts"][0]["domain"], "acc0001.amocrm.ru");
    let last = app.admin_json("/api/accounts?page=3").await;
    assert_eq!(last["accounts"].as_array().unwrap().len(), 20);
    assert_eq!(last["accounts"][19]["domain"], "acc0120.amocrm.ru");
    let desc = app.admin_json("/api/accounts?sort=domain&dir=desc").await;
    assert_eq!(desc["accounts"][0]["domain"], "acc0120.amocrm.ru");
    let by_id = app
        .admin_json("/api/accounts?sort=account_id&dir=desc")
        .await;
    assert_eq!(by_id["accounts"][0]["account_id"], 50_000_120);
    // 12 multiples of 10; multiples of 15 that are not of 10: 15, 45, 75, 105.
    let reauth = app.admin_json("/api/accounts?status=reauth_required").await;
    assert_eq!(reauth["total"], 12);
    assert!(reauth["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["display_status"] == "reauth_required"));
    let gone = app.admin_json("/api/accounts?status=disconnected").await;
    assert_eq!(gone["total"], 4);
    sqlx::query("update accounts set manual_pause = true where account_id = 50000001")
        .execute(&app.pool)
        .await
        .unwrap();
    let paused = app.admin_json("/api/accounts?status=paused").await;
    assert_eq!(paused["total"], 1);
    assert_eq!(paused["accounts"][0]["display_status"], "paused");
    // Unknown words fall back to the defaults instead of failing.
    let odd = app
        .admin_json("/api/accounts?sort=drop%20table&dir=sideways&page=-4&status=x")
        .await;
    assert_eq!(odd["total"], 120);
    assert_eq!(odd["page"], 1);

    let page = app.admin_get("/status?page=2").await.text().await.unwrap();
    assert!(page.contains("Page 2 of 3"), "paged");
    assert_eq!(page.matches("<tr data-account-id=").count(), 50);
    let page = page.replace("&#38;", "&").replace("&amp;", "&");
    // The current column's link flips the order; the others start ascending.
    assert!(
        page.contains(r#"data-sort="domain" href="/status?sort=domain&dir=desc&page"#)
            || page.contains(r#"data-sort="domain" href="/status?sort=domain&dir=desc""#),
        "{page}"
    );
    assert!(page.contains(r#"data-sort="pending" href="/status?sort=pending&dir=asc""#));
    assert!(page.contains(r#"href="/status?sort=domain&dir=asc&page=3" rel="next""#));
    let russian = app
        .http
        .get(app.url("/status"))
        .bearer_auth(TOKEN)
        .header("accept-language", "ru-RU,ru;q=0.9")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(russian.contains("Аккаунты") && russian.contains("нужна переустановка"));
}

pub(crate) async fn csrf_of(app: &TestApp, id: i64) -> String {
    let page = app
        .admin_get(&format!("/status/accounts/{id}"))
        .await
        .text()
        .await
        .unwrap();
    let start =
        page.find(r#"name="csrf" value=""#).expect("a csrf field") + r#"name="csrf" value=""#.len();
    page[start..start + 64].to_owned()
}
