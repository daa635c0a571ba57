use amocrm_sim::Fault;
use amohook::{
    amocrm::AmoApi,
    tokens::{CallError, TokenStore},
};
use secrecy::ExposeSecret as _;
use sqlx::PgPool;
use std::time::Duration;

use crate::helpers::TestApp;

pub(crate) const DOMAIN: &str = "tokens.amocrm.ru";
pub(crate) const ID: i64 = 32_000_001;

pub(crate) async fn installed() -> TestApp {
    let app = TestApp::spawn().await;
    app.account(DOMAIN, ID);
    assert_eq!(app.install(DOMAIN).await.status(), 200);
    app
}

pub(crate) async fn expire_soon(pool: &PgPool) {
    sqlx::query(
        "update account_tokens set expires_at = now() + interval '1 minute',
             refreshed_at = now() - interval '1 day'",
    )
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_token_far_from_expiry_is_used_as_is() {
    let app = installed().await;
    let first = app.state.tokens.access_token(ID).await.unwrap();
    let second = app.state.tokens.access_token(ID).await.unwrap();
    assert_eq!(first.expose_secret(), second.expose_secret());
    assert_eq!(app.fake.refreshes(DOMAIN), 0);
}

#[tokio::test]
async fn an_expiring_token_is_refreshed_ahead_of_time() {
    let app = installed().await;
    let before = app.state.tokens.access_token(ID).await.unwrap();
    expire_soon(&app.pool).await;
    let after = app.state.tokens.access_token(ID).await.unwrap();
    assert_ne!(before.expose_secret(), after.expose_secret());
    assert_eq!(app.fake.refreshes(DOMAIN), 1);
    let fresh: bool = sqlx::query_scalar(
        "select expires_at > now() + interval '23 hours' and refreshed_at > now() - interval '1 minute'
         from account_tokens where account_id = $1",
    )
    .bind(ID)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(fresh, "the new pair is stored");
}

/// amoCRM revokes the old refresh token the moment it answers: a database
/// that fails right then must not lose the new pair (which would leave the
/// account needing a new install).
#[tokio::test]
async fn a_new_token_pair_survives_the_database_failing_as_it_is_stored() {
    let app = installed().await;
    expire_soon(&app.pool).await;
    // The refresh's own store and the first store again fail.
    app.fail_writes("account_tokens", 2, "insert or update")
        .await;
    let token = app.state.tokens.access_token(ID).await.unwrap();
    assert_eq!(app.fake.refreshes(DOMAIN), 1);
    assert!(app.failed_writes("account_tokens").await >= 3);
    let stored = app.state.tokens.access_token(ID).await.unwrap();
    assert_eq!(stored.expose_secret(), token.expose_secret());
    // The stored pair is the live one: the next refresh works.
    expire_soon(&app.pool).await;
    app.state.tokens.access_token(ID).await.unwrap();
    assert_eq!(app.fake.refreshes(DOMAIN), 2);
    assert_eq!(app.fake.refresh_reuses(), 0);
    assert_eq!(app.account_status(ID).await.as_deref(), Some("active"));
}

/// While the pair was not stored, another process refreshed with the
/// revoked token and marked the account for a new install; the pair stored
/// a moment later undoes that.
#[tokio::test]
async fn a_pair_stored_late_undoes_a_reinstall_mark_its_revoked_token_caused() {
    let app = installed().await;
    expire_soon(&app.pool).await;
    // The refresh's store and the first store again fail; the next try
    // comes at least 200 ms later.
    app.fail_writes("account_tokens", 2, "insert or update")
        .await;
    let store = (*app.state.tokens).clone();
    let refresh = tokio::spawn(async move { store.access_token(ID).await });
    while app.failed_writes("account_tokens").await < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The mark a racing refresh with the revoked token leaves.
    sqlx::query(
        "update accounts set status = 'reauth_required', status_reason = 'Token has been revoked'
         where account_id = $1",
    )
    .bind(ID)
    .execute(&app.pool)
    .await
    .unwrap();
    let token = refresh.await.unwrap().unwrap();
    assert_eq!(app.account_status(ID).await.as_deref(), Some("active"));
    let stored = app.state.tokens.access_token(ID).await.unwrap();
    assert_eq!(stored.expose_secret(), token.expose_secret());
}

#[tokio::test]
async fn two_processes_needing_an_expiring_token_at_once_refresh_it_exactly_once() {
    let app = installed().await;
    expire_soon(&app.pool).await;
    // A second "process": its own pool and token store on the same database.
    let other_pool = PgPool::connect(&app.db.url).await.unwrap();
    let other = TokenStore::new(
        other_pool,
        (*app.state.cipher).clone(),
        AmoApi::new(&app.state.settings).unwrap(),
    );
    let mut calls = Vec::new();
    for i in 0..16 {
        let store = if i % 2 == 0 {
            (*app.state.tokens).clone()
        } else {
            other.clone()
        };
        calls.push(tokio::spawn(async move { store.access_token(ID).await }));
    }
    let mut tokens = Vec::new();
    for call in calls {
        tokens.push(call.await.unwrap().unwrap().expose_secret().to_owned());
    }
    assert_eq!(app.fake.refreshes(DOMAIN), 1, "exactly one refresh");
    assert_eq!(
        app.fake.refresh_reuses(),
        0,
        "no refresh token was used twice"
    );
    tokens.dedup();
    assert_eq!(tokens.len(), 1, "everyone got the new token: {tokens:?}");
}

#[tokio::test]
async fn a_401_leads_to_one_refresh_and_one_retry() {
    let app = installed().await;
    // amoCRM considers the token dead although it is not due by our clock.
    app.fake.expire_access_tokens(DOMAIN);
    let api = (*app.state.api).clone();
    let info = app
        .state
        .tokens
        .call(ID, |token| {
            let api = api.clone();
            async move { api.account(DOMAIN, &token).await }
        })
        .await
        .unwrap();
    assert_eq!(info.id, ID);
    assert_eq!(app.fake.refreshes(DOMAIN), 1);
    let statuses: Vec<u16> = app
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v4/account")
        .map(|r| r.status)
        .collect();
    // The install's own call, then the 401 and the retry.
    assert_eq!(statuses, vec![200, 401, 200]);
}

#[tokio::test]
async fn a_401_after_a_refresh_is_not_retried_forever() {
    let app = installed().await;
    app.fake
        .fail_next(DOMAIN, "/api/v4/account", Fault::Status(401), 5);
    let api = (*app.state.api).clone();
    let result = app
        .state
        .tokens
        .call(ID, |token| {
            let api = api.clone();
            async move { api.account(DOMAIN, &token).await }
        })
        .await;
    assert!(matches!(
        result,
        Err(CallError::Amo(amohook::amocrm::AmoError::Unauthorized(_)))
    ));
    assert_eq!(app.fake.refreshes(DOMAIN), 1);
    let tries = app
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v4/account")
        .count();
    assert_eq!(tries, 1 + 2, "the install's call, the call, one retry");
}

#[tokio::test]
async fn a_short_lived_token_is_refreshed_once_per_lifetime_not_on_every_use() {
    let app = installed().await;
    // A 4-second token, 1 second old: not due yet (a quarter of its life
    // is the margin, not ten minutes).
    sqlx::query(
        "update account_tokens set refreshed_at = now() - interval '1 second',
             expires_at = now() + interval '3 seconds'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    for _ in 0..5 {
        app.state.tokens.access_token(ID).await.unwrap();
    }
    assert_eq!(app.fake.refreshes(DOMAIN), 0);
    // In its last quarter: one refresh, then the new token is used.
    sqlx::query(
        "update account_tokens set refreshed_at = now() - interval '3500 milliseconds',
             expires_at = now() + interval '500 milliseconds'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    for _ in 0..5 {
        app.state.tokens.access_token(ID).await.unwrap();
    }
    assert_eq!(app.fake.refreshes(DOMAIN), 1);
}
