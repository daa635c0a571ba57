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
    let app = TestApp::spawn().await;
    let address = app.address.clone();
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.stop().await.expect("a clean stop");
    let after = reqwest::get(format!("{address}/healthz")).await;
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
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
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
