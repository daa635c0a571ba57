//! The encryption key: checked at start, rotated with an old key that still
//! reads, old values rewritten by `amohook reencrypt`, and the key file in
//! one absolute place.

use base64::Engine as _;
use secrecy::ExposeSecret as _;

use crate::helpers::{base_env, settings_from, TestApp};

fn b64(key: [u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// The base test key (see helpers::base_env).
const KEY_A: [u8; 32] = [42; 32];
const KEY_B: [u8; 32] = [43; 32];

async fn build(
    app: &TestApp,
    key: [u8; 32],
    old: &[[u8; 32]],
) -> anyhow::Result<amohook::startup::Application> {
    let mut env = base_env(&app.db.url, &app.fake);
    env.insert("AMOHOOK_SECURITY__ENCRYPTION_KEY".into(), b64(key));
    if !old.is_empty() {
        let list: Vec<String> = old.iter().map(|k| b64(*k)).collect();
        env.insert(
            "AMOHOOK_SECURITY__OLD_ENCRYPTION_KEYS".into(),
            list.join(","),
        );
    }
    amohook::startup::Application::build(settings_from(env)).await
}

async fn key_ids(app: &TestApp) -> Vec<i32> {
    sqlx::query_scalar(
        "select distinct b from (
             select get_byte(hook_key, 0) b from accounts
             union all select get_byte(access_token, 0) from account_tokens
             union all select get_byte(refresh_token, 0) from account_tokens
             union all select get_byte(canary, 0) from key_check) ids
         order by b",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_key_rotates_with_the_old_key_reading_until_reencrypt_rewrites_everything() {
    let app = TestApp::spawn().await;
    let hook_key = app.connected("rotate.amocrm.ru", 37_000_001).await;
    let id_a = i32::from(amohook::crypto::key_id(&KEY_A));
    let id_b = i32::from(amohook::crypto::key_id(&KEY_B));
    assert_eq!(key_ids(&app).await, [id_a]);

    // The new key alone cannot read the data: refused.
    assert!(build(&app, KEY_B, &[]).await.is_err());
    // The new key with the old one: starts, reads, writes with the new key.
    let rotated = build(&app, KEY_B, &[KEY_A]).await.unwrap();
    let state = rotated.state();
    let token = state.tokens.access_token(37_000_001).await.unwrap();
    assert!(!token.expose_secret().is_empty());
    let found = amohook::accounts::keys::find_by_hook_key(&state.pool, &hook_key)
        .await
        .unwrap();
    assert!(found.is_some(), "the hook URL keeps working");
    assert_eq!(state.cipher.current_key_id() as i32, id_b);

    // reencrypt rewrites every value; the old key is then not needed.
    let report = amohook::reencrypt::run(&state.pool, &state.cipher)
        .await
        .unwrap();
    // The hook key, the token pair and the canary.
    assert_eq!(report.rewritten, 3, "{report:?}");
    assert_eq!(report.unreadable, 0);
    assert_eq!(key_ids(&app).await, [id_b]);
    let again = amohook::reencrypt::run(&state.pool, &state.cipher)
        .await
        .unwrap();
    assert_eq!(again.rewritten, 0, "a second run has nothing to do");

    let new_only = build(&app, KEY_B, &[]).await.unwrap();
    let token_after = new_only
        .state()
        .tokens
        .access_token(37_000_001)
        .await
        .unwrap();
    assert_eq!(token_after.expose_secret(), token.expose_secret());
    // A process still on the old key alone now refuses to start.
    let error = match build(&app, KEY_A, &[]).await {
        Ok(_) => panic!("the old key started after the rotation"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("encryption key"), "{error}");
}

#[tokio::test]
async fn reencrypt_leaves_a_value_no_key_opens_and_says_so() {
    let app = TestApp::spawn().await;
    app.connected("stray.amocrm.ru", 37_000_002).await;
    // A hook key sealed with a key nobody has any more.
    let stray = amohook::crypto::Cipher::new(&[99; 32])
        .encrypt("lost", &amohook::accounts::hook_key_context(37_000_002));
    sqlx::query("update accounts set hook_key = $1 where account_id = 37000002")
        .bind(&stray)
        .execute(&app.pool)
        .await
        .unwrap();
    let rotated = build(&app, KEY_B, &[KEY_A]).await.unwrap();
    let state = rotated.state();
    let report = amohook::reencrypt::run(&state.pool, &state.cipher)
        .await
        .unwrap();
    assert_eq!(report.unreadable, 1);
    assert_eq!(report.rewritten, 2, "the token pair and the canary");
    let kept: Vec<u8> = sqlx::query_scalar("select hook_key from accounts")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(kept, stray, "left as it was");
}

#[tokio::test]
async fn a_generated_key_file_lives_at_its_absolute_path_and_is_not_left_behind_when_refused() {
    let app = TestApp::spawn().await;
    app.connected("keyfile.amocrm.ru", 37_000_003).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/amohook.key");
    let mut env = base_env(&app.db.url, &app.fake);
    env.remove("AMOHOOK_SECURITY__ENCRYPTION_KEY");
    env.insert(
        "AMOHOOK_SECURITY__KEY_FILE".into(),
        path.display().to_string(),
    );
    // The database holds data of another key: the new key file is refused,
    // and removed again so that the next start does not trust it.
    let error = match amohook::startup::Application::build(settings_from(env.clone())).await {
        Ok(_) => panic!("a fresh key file started against another key's data"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains(&path.display().to_string()), "{error}");
    assert!(!path.exists(), "the refused key file is removed");

    // The right key in the file: read, not replaced.
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, format!("{}\n", b64(KEY_A))).unwrap();
    let started = amohook::startup::Application::build(settings_from(env)).await;
    assert!(started.is_ok());
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), b64(KEY_A));
}
