use std::process::Command;

use sqlx::PgPool;

use crate::helpers::{TestApp, TestDb};

#[tokio::test]
async fn serve_creates_the_database_applies_migrations_and_reports_ready() {
    // TestApp never creates the database: the application does.
    let app = TestApp::spawn().await;
    let applied: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations where success")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, amohook::db::MIGRATOR.iter().count());
    assert_eq!(app.get("/healthz").await.status(), 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.json::<serde_json::Value>().await.unwrap()["status"],
        "ready"
    );
}

#[tokio::test]
async fn readyz_reports_unapplied_migrations() {
    let app = TestApp::spawn().await;
    sqlx::query(
        "delete from _sqlx_migrations where version = (select max(version) from _sqlx_migrations)",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    assert_eq!(
        ready.json::<serde_json::Value>().await.unwrap()["pending"],
        1
    );
}

#[tokio::test]
async fn stopping_finishes_cleanly_and_closes_the_port() {
    let mut app = TestApp::spawn().await;
    let address = app.address.clone();
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.stop().await.expect("a clean stop");
    let fresh = amohook::amocrm::http_client().build().unwrap();
    let after = fresh.get(format!("{address}/healthz")).send().await;
    assert!(after.is_err(), "nothing listens after the stop");
}

#[tokio::test]
async fn the_migrate_command_creates_and_migrates_the_database() {
    let db = TestDb::new();
    let output = Command::new(env!("CARGO_BIN_EXE_amohook"))
        .arg("migrate")
        .env_clear()
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{logs}");
    // Not a terminal: plain text, no colour codes.
    assert!(logs.contains("migrations applied"), "{logs}");
    assert!(!logs.contains('\x1b'), "{logs:?}");
    let pool = PgPool::connect(&db.url).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "select count(*) from information_schema.tables where table_name in ('accounts', 'account_tokens')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 2);
    pool.close().await;
}

#[test]
fn serve_with_a_missing_required_key_stops_with_a_message_naming_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_amohook"))
        .arg("serve")
        .env_clear()
        .env("AMOHOOK_HTTP__PUBLIC_URL", "https://hooks.example.com")
        .env(
            "AMOHOOK_AMOCRM__CLIENT_SECRET",
            "secret-that-must-not-print",
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("amocrm.client_id"), "{stderr}");
    assert!(stderr.contains("AMOHOOK_AMOCRM__CLIENT_ID"), "{stderr}");
    assert!(!stderr.contains("secret-that-must-not-print"));
}

#[test]
fn help_explains_both_commands() {
    let output = Command::new(env!("CARGO_BIN_EXE_amohook"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("serve") && text.contains("migrate"), "{text}");
    assert!(text.contains("AMOHOOK_"));
}

#[tokio::test]
async fn a_stop_lets_in_flight_requests_finish_and_releases_leases() {
    let mut app = TestApp::spawn().await;
    let key = app.connected("stop.amocrm.ru", 37_000_001).await;
    app.post_hook(
        &key,
        crate::helpers::lead_hook(37_000_001, "add", 1, "x", 1, &[]),
    )
    .await;
    app.wait_for_notes("stop.amocrm.ru", 1).await;
    // An install whose code exchange takes a while is under way...
    app.account("slow.amocrm.ru", 37_000_002);
    app.fake.fail_next(
        "slow.amocrm.ru",
        "/oauth2/access_token",
        amocrm_sim::Fault::Delay(std::time::Duration::from_millis(1500)),
        1,
    );
    let state = app.start_install().await;
    let code = app.fake.issue_code("slow.amocrm.ru");
    let http = app.http.clone();
    let url = app.url("/oauth/callback");
    let in_flight = tokio::spawn(async move {
        http.get(url)
            .query(&[
                ("code", code.as_str()),
                ("referer", "slow.amocrm.ru"),
                ("state", state.as_str()),
            ])
            .send()
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // ...when the stop signal comes.
    app.stop().await.expect("a clean stop");
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request got its answer");
    assert_eq!(response.status(), 200);
    let leased: i64 =
        sqlx::query_scalar("select count(*) from accounts where lease_owner is not null")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(leased, 0, "no lease outlives the process");
}

#[tokio::test]
async fn a_process_with_another_key_refuses_to_start() {
    use base64::Engine as _;
    let app = TestApp::spawn().await;
    app.connected("keys.amocrm.ru", 36_000_001).await;
    let other = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let start = |key: Option<String>| {
        let mut env = crate::helpers::base_env(&app.db.url, &app.fake);
        if let Some(key) = key {
            env.insert("AMOHOOK_SECURITY__ENCRYPTION_KEY".into(), key);
        }
        amohook::startup::Application::build(crate::helpers::settings_from(env))
    };
    // The same key as the running process: starts.
    assert!(start(None).await.is_ok());
    // Another key: refuses, saying why and where the key came from.
    let error = match start(Some(other.clone())).await {
        Ok(_) => panic!("a process with another key started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("encryption key"), "{error}");
    assert!(
        error.contains("AMOHOOK_SECURITY__ENCRYPTION_KEY"),
        "{error}"
    );
    assert!(!error.contains(&other), "the key itself is never shown");
    // A database from before the key check (tokens, no canary) is checked
    // against its tokens.
    sqlx::query("delete from key_check")
        .execute(&app.pool)
        .await
        .unwrap();
    assert!(start(Some(other)).await.is_err());
    assert!(start(None).await.is_ok());
    let canaries: i64 = sqlx::query_scalar("select count(*) from key_check")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(canaries, 1);
}
