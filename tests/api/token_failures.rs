//! Tokens when amoCRM refuses or the service stops: revoked and refused
//! grants, passing failures, weekly keep-alive, a caller that stops waiting,
//! shutdown, and an account renamed to a new host.

use crate::helpers::TestApp;
use amocrm_sim::Fault;
use amohook::{
    amocrm::AmoApi,
    tokens::{RefreshReason, TokenError, TokenStore},
};
use secrecy::ExposeSecret as _;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::tokens::*;

#[tokio::test]
async fn a_revoked_refresh_token_marks_the_account_reauth_required_and_stops_calls() {
    let app = installed().await;
    app.fake.revoke_refresh_tokens(DOMAIN);
    expire_soon(&app.pool).await;
    let result = app.state.tokens.access_token(ID).await;
    assert!(
        matches!(result, Err(TokenError::Revoked(ref reason)) if reason.contains("revoked")),
        "{result:?}"
    );
    assert_eq!(
        app.account_status(ID).await.as_deref(),
        Some("reauth_required")
    );
    let reason: Option<String> =
        sqlx::query_scalar("select status_reason from accounts where account_id = $1")
            .bind(ID)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(reason.unwrap().contains("Token has been revoked"));
    // The dead tokens are kept, sealed, for diagnosis; nothing uses them.
    let kept: i64 = sqlx::query_scalar("select count(*) from account_tokens where account_id = $1")
        .bind(ID)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(kept, 1);

    let seen = app.fake.requests().len();
    assert!(matches!(
        app.state.tokens.access_token(ID).await,
        Err(TokenError::NotActive(ID))
    ));
    assert!(
        app.state
            .tokens
            .keep_alive(&CancellationToken::new())
            .await
            .unwrap()
            == 0
    );
    assert_eq!(
        app.fake.requests().len(),
        seen,
        "no call is made for the account any more"
    );
}

#[tokio::test]
async fn passing_refresh_failures_are_retried_and_keep_the_account_active() {
    let app = installed().await;
    expire_soon(&app.pool).await;
    // Two 503s are absorbed by the retry inside one refresh.
    app.fake
        .fail_next(DOMAIN, "/oauth2/access_token", Fault::Status(503), 2);
    assert!(app.state.tokens.access_token(ID).await.is_ok());
    assert_eq!(app.fake.refreshes(DOMAIN), 1);

    // A longer outage fails this refresh, without touching the status.
    expire_soon(&app.pool).await;
    app.fake
        .fail_next(DOMAIN, "/oauth2/access_token", Fault::Status(502), 10);
    let result = app.state.tokens.access_token(ID).await;
    assert!(
        matches!(result, Err(TokenError::Transient(_))),
        "{result:?}"
    );
    assert_eq!(app.account_status(ID).await.as_deref(), Some("active"));
}

#[tokio::test]
async fn a_refused_client_secret_pauses_refreshes_for_all_and_blames_no_account() {
    let app = TestApp::spawn_with(|env| {
        env.insert(
            "AMOHOOK_ADMIN__TOKEN".into(),
            "admin-token-for-tests".into(),
        );
    })
    .await;
    for (domain, id) in [(DOMAIN, ID), ("second.amocrm.ru", ID + 1)] {
        app.account(domain, id);
        assert_eq!(app.install(domain).await.status(), 200);
    }
    expire_soon(&app.pool).await;
    // A configuration change left the process with a wrong secret.
    let mut settings = (*app.state.settings).clone();
    settings.amocrm.client_secret = secrecy::SecretString::from("wrong".to_owned());
    let store = TokenStore::new(
        app.pool.clone(),
        (*app.state.cipher).clone(),
        AmoApi::new(&settings).unwrap(),
    );
    let first = store.access_token(ID).await;
    assert!(
        matches!(first, Err(TokenError::IntegrationRefused(_))),
        "{first:?}"
    );
    // The second account is not even tried: every refresh would fail the
    // same way. Neither account is blamed.
    let token_requests = || app.token_requests().len();
    let before = token_requests();
    assert!(matches!(
        store.access_token(ID + 1).await,
        Err(TokenError::IntegrationRefused(_))
    ));
    assert_eq!(token_requests(), before);
    assert_eq!(app.account_status(ID).await.as_deref(), Some("active"));
    assert_eq!(app.account_status(ID + 1).await.as_deref(), Some("active"));
    // One clear error on the status page.
    let page = app
        .get_with_token("/status", "admin-token-for-tests")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"integration-fault\""), "{page}");
    // Fixed (the right secret): the next probe goes through and clears it.
    sqlx::query("update integration_fault set retry_at = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    assert!(app.state.tokens.access_token(ID + 1).await.is_ok());
    let faults: i64 = sqlx::query_scalar("select count(*) from integration_fault")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(faults, 0);
}

#[tokio::test]
async fn idle_tokens_are_kept_alive_weekly() {
    let app = installed().await;
    assert_eq!(
        app.state
            .tokens
            .keep_alive(&CancellationToken::new())
            .await
            .unwrap(),
        0,
        "a fresh token is left alone"
    );
    sqlx::query("update account_tokens set refreshed_at = now() - interval '8 days'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        app.state
            .tokens
            .keep_alive(&CancellationToken::new())
            .await
            .unwrap(),
        1
    );
    assert_eq!(app.fake.refreshes(DOMAIN), 1);
    assert_eq!(
        app.state
            .tokens
            .keep_alive(&CancellationToken::new())
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn a_refresh_whose_caller_stops_waiting_still_keeps_the_new_tokens() {
    let app = installed().await;
    let token = app.state.tokens.access_token(ID).await.unwrap();
    // amoCRM rotates the pair, then its answer is slow; the caller gives up
    // (a request's timeout, a shutdown) before it arrives.
    app.fake.fail_next(
        DOMAIN,
        "/oauth2/access_token",
        Fault::WorkThenDelay(Duration::from_millis(700)),
        1,
    );
    let gave_up = tokio::time::timeout(
        Duration::from_millis(200),
        app.state
            .tokens
            .refresh(ID, RefreshReason::Rejected(token.clone())),
    )
    .await;
    assert!(gave_up.is_err(), "the caller stopped waiting");
    // The refresh goes on and commits the pair amoCRM gave; shutdown would
    // wait for it.
    assert!(
        app.state
            .tokens
            .finish_refreshes(Duration::from_secs(5))
            .await
    );
    let stored = app.state.tokens.access_token(ID).await.unwrap();
    assert_ne!(stored.expose_secret(), token.expose_secret());
    // The stored refresh token is the live one: the next refresh works and
    // amoCRM never sees a spent token again.
    app.state
        .tokens
        .refresh(ID, RefreshReason::Rejected(stored))
        .await
        .unwrap();
    assert_eq!(app.fake.refresh_reuses(), 0);
    assert_eq!(app.account_status(ID).await.as_deref(), Some("active"));
}

#[tokio::test]
async fn keep_alive_stops_between_accounts_at_shutdown() {
    let app = installed().await;
    sqlx::query("update account_tokens set refreshed_at = now() - interval '8 days'")
        .execute(&app.pool)
        .await
        .unwrap();
    let stopped = CancellationToken::new();
    stopped.cancel();
    assert_eq!(app.state.tokens.keep_alive(&stopped).await.unwrap(), 0);
    assert_eq!(app.fake.refreshes(DOMAIN), 0);
}

#[tokio::test]
async fn a_renamed_account_is_followed_to_its_new_host_not_marked_dead() {
    let app = TestApp::spawn_without_worker().await;
    let old = "before.amocrm.ru";
    let new = "after.amocrm.ru";
    app.connected(old, 32_000_077).await;
    // The account renames its subdomain; its old host knows it no more.
    app.fake.rename(old, new);
    sqlx::query("update account_tokens set expires_at = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    app.state.tokens.access_token(32_000_077).await.unwrap();
    let (status, domain, subdomain): (String, String, String) = sqlx::query_as(
        "select status, domain, subdomain from accounts where account_id = 32000077",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        (status.as_str(), domain.as_str(), subdomain.as_str()),
        ("active", new, "after")
    );
    // amohook asked amoCRM where the account went, with its refresh token,
    // at the host the access token names.
    let asked: Vec<_> = app
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/oauth2/account/current/subdomain")
        .collect();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].domain, amocrm_sim::API_DOMAIN);
    assert_eq!(app.fake.refreshes(new), 1);
    // Notes now go to the new host.
    let key = app.hook_key(32_000_077).await;
    let hook = crate::helpers::lead_hook(32_000_077, "add", 5, "x", 1_712_331_728, &[]);
    assert_eq!(app.post_hook(&key, hook).await.status(), 200);
    app.state.worker.drain().await.unwrap();
    let notes = app.fake.notes();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].domain, new);
}
