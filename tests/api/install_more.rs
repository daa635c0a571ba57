//! Installs, continued: widget installs (server to server), their retries, and stores that fail at the wrong moment.

use std::time::Duration;

use amocrm_sim::Fault;

use crate::helpers::{TestApp, CLIENT_ID};

use crate::install::*;

#[tokio::test]
async fn widget_install_without_state_connects_the_account() {
    let app = TestApp::spawn().await;
    app.account(DOMAIN, 31_000_007);
    let code = app.fake.issue_code(DOMAIN);
    let response = app
        .callback(&[
            ("code", &code),
            ("referer", DOMAIN),
            ("platform", "1"),
            ("client_id", CLIENT_ID),
            ("from_widget", "1"),
        ])
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.account_status(31_000_007).await.as_deref(),
        Some("active")
    );
    let state: String = sqlx::query_scalar("select state from pending_installs")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(state, "done");
}

#[tokio::test]
async fn widget_install_for_another_client_id_is_refused() {
    let app = TestApp::spawn().await;
    app.account(DOMAIN, 31_000_010);
    let code = app.fake.issue_code(DOMAIN);
    let response = app
        .callback(&[
            ("code", &code),
            ("referer", DOMAIN),
            ("client_id", "someone-else"),
            ("from_widget", "1"),
        ])
        .await;
    assert_eq!(response.status(), 400);
    assert!(app.fake.requests().is_empty());
}

#[tokio::test]
async fn a_widget_install_that_fails_for_now_is_retried_until_it_connects() {
    let app = TestApp::spawn().await;
    app.account(DOMAIN, 31_000_008);
    app.fake
        .fail_next(DOMAIN, "/oauth2/access_token", Fault::Status(503), 1);
    let code = app.fake.issue_code(DOMAIN);
    let response = app
        .callback(&[("code", &code), ("referer", DOMAIN), ("from_widget", "1")])
        .await;
    // amoCRM does not look at the answer; the install is kept, not lost.
    assert_eq!(response.status(), 202);
    assert_eq!(app.account_status(31_000_008).await, None);
    let (state, attempts, error): (String, i32, Option<String>) =
        sqlx::query_as("select state, attempts, last_error from pending_installs")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), attempts), ("pending", 1));
    assert!(error.unwrap().contains("503"));
    let sealed: Vec<u8> = sqlx::query_scalar("select code from pending_installs")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&sealed).contains(&code),
        "the code is kept encrypted"
    );

    // The app's own background loop retries installs too (every 5 s), so
    // what is checked is the outcome, not which of the two did the work.
    let exchanges = || app.token_requests().len();
    // Not before its time...
    assert_eq!(app.state.installer.retry_pending().await.unwrap(), 0);
    assert_eq!(exchanges(), 1);
    // ...but once due, the retry connects the account, spending the code
    // exactly once more.
    sqlx::query("update pending_installs set next_attempt_at = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    let ours = app.state.installer.retry_pending().await.unwrap();
    assert!(ours <= 1);
    for _ in 0..100 {
        if app.account_status(31_000_008).await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.account_status(31_000_008).await.as_deref(),
        Some("active")
    );
    let state: String = sqlx::query_scalar("select state from pending_installs")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(state, "done");
    assert_eq!(exchanges(), 2);
    // And a done install is never tried again.
    sqlx::query("update pending_installs set next_attempt_at = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(app.state.installer.retry_pending().await.unwrap(), 0);
    assert_eq!(exchanges(), 2);
}

#[tokio::test]
async fn a_slow_widget_install_is_answered_in_time_and_finishes_in_the_background() {
    let app = TestApp::spawn().await;
    app.account(DOMAIN, 31_000_009);
    app.fake.fail_next(
        DOMAIN,
        "/oauth2/access_token",
        Fault::Delay(Duration::from_secs(4)),
        1,
    );
    let code = app.fake.issue_code(DOMAIN);
    let response = app
        .callback(&[("code", &code), ("referer", DOMAIN), ("from_widget", "1")])
        .await;
    // Answered before the exchange finished: amoCRM waits only 3 seconds.
    assert_eq!(response.status(), 202);
    assert_eq!(app.account_status(31_000_009).await, None);
    // The exchange that was under way completes the install.
    let mut status = None;
    for _ in 0..100 {
        status = app.account_status(31_000_009).await;
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status.as_deref(), Some("active"));
    assert_eq!(app.token_requests().len(), 1, "the code was spent once");
}

#[tokio::test]
async fn a_widget_code_amocrm_rejects_is_not_retried() {
    let app = TestApp::spawn().await;
    app.account(DOMAIN, 31_000_011);
    let response = app
        .callback(&[
            ("code", "forged"),
            ("referer", DOMAIN),
            ("from_widget", "1"),
        ])
        .await;
    assert_eq!(response.status(), 502);
    let (state, code_left): (String, i32) =
        sqlx::query_as("select state, octet_length(code) from pending_installs")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(state, "failed");
    assert_eq!(code_left, 0, "the refused code is erased at once");
    sqlx::query("update pending_installs set next_attempt_at = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(app.state.installer.retry_pending().await.unwrap(), 0);
    assert_eq!(app.token_requests().len(), 1);
}

#[tokio::test]
async fn accounts_subscribed_before_companies_are_subscribed_again_once() {
    let app = TestApp::spawn_without_worker().await;
    app.connected("old.amocrm.ru", 31_000_040).await;
    app.connected("refuses.amocrm.ru", 31_000_041).await;
    app.connected("new.amocrm.ru", 31_000_042).await;
    // The first two were installed by a build that asked for leads and
    // contacts only; the second's administrator has since lost admin rights.
    sqlx::query(
        "update accounts set webhooks_events = '{add_lead,update_lead,add_contact,update_contact}'
         where account_id in (31000040, 31000041)",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let mut refusing = amocrm_sim::SimAccount::new(31_000_041);
    refusing.admin = false;
    app.fake.add_account("refuses.amocrm.ru", refusing);
    let posts = || {
        app.fake
            .requests()
            .iter()
            .filter(|r| r.path == "/api/v4/webhooks" && r.method == "POST")
            .map(|r| r.domain.clone())
            .collect::<Vec<_>>()
    };
    let before = posts().len();

    let done = app
        .state
        .installer
        .resubscribe_outdated(&app.state.tokens)
        .await
        .unwrap();
    assert_eq!(done, 1);
    // Made again for the outdated one; the other's administrator lost the
    // rights to read or make web-hooks, and is refused before that.
    assert_eq!(posts()[before..], ["old.amocrm.ru"]);
    let again: Vec<(String, Vec<String>)> = app
        .fake
        .webhooks()
        .iter()
        .filter(|(domain, _)| domain == "old.amocrm.ru")
        .map(|(domain, body)| {
            let events = body["settings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_str().unwrap().to_owned())
                .collect();
            (domain.clone(), events)
        })
        .collect();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].0, "old.amocrm.ru");
    assert!(again[0].1.contains(&"update_company".to_owned()));
    // The refusal is shown on the account, and is not tried again by itself.
    let (subscribed, error): (bool, Option<String>) = sqlx::query_as(
        "select webhooks_subscribed, webhooks_error from accounts where account_id = 31000041",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(!subscribed);
    assert!(error.is_some());
    assert_eq!(
        app.state
            .installer
            .resubscribe_outdated(&app.state.tokens)
            .await
            .unwrap(),
        0
    );
    assert_eq!(posts().len(), before + 1);
}

#[tokio::test]
async fn a_widget_install_keeps_its_tokens_when_the_next_call_fails() {
    let app = TestApp::spawn_without_worker().await;
    app.account(DOMAIN, 31_000_050);
    // The exchange works; the account call after it fails twice.
    app.fake
        .fail_next(DOMAIN, "/api/v4/account", Fault::Status(502), 2);
    let code = app.fake.issue_code(DOMAIN);
    let response = app
        .callback(&[("code", &code), ("referer", DOMAIN), ("from_widget", "1")])
        .await;
    assert_eq!(response.status(), 202);
    assert_eq!(app.account_status(31_000_050).await, None);
    let sealed: Option<Vec<u8>> = sqlx::query_scalar("select tokens from pending_installs")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let sealed = sealed.expect("the tokens are stored the moment they exist");
    assert!(
        !String::from_utf8_lossy(&sealed).contains("access"),
        "sealed"
    );
    // The retries go on from the stored tokens: the code is never spent
    // again (amoCRM would refuse it), and the install completes.
    for _ in 0..2 {
        sqlx::query("update pending_installs set next_attempt_at = now(), locked_until = null")
            .execute(&app.pool)
            .await
            .unwrap();
        app.state.installer.retry_pending().await.unwrap();
    }
    assert_eq!(
        app.account_status(31_000_050).await.as_deref(),
        Some("active")
    );
    assert_eq!(app.token_requests().len(), 1, "the code was spent once");
    let (state, tokens): (String, Option<Vec<u8>>) =
        sqlx::query_as("select state, tokens from pending_installs")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(state, "done");
    assert!(tokens.is_none(), "the pair lives with the account now");
    // The stored pair is the live one: notes go out with it.
    let key = app.hook_key(31_000_050).await;
    let hook = crate::helpers::lead_hook(31_000_050, "add", 1, "x", 1_712_331_728, &[]);
    assert_eq!(app.post_hook(&key, hook).await.status(), 200);
    app.state.worker.drain().await.unwrap();
    assert_eq!(app.fake.notes().len(), 1);
}

/// The code is spent once amoCRM answered: a database failing as the
/// pair is stored must not lose the install.
#[tokio::test]
async fn a_widget_install_survives_the_database_failing_as_its_tokens_are_stored() {
    let app = TestApp::spawn().await;
    app.account("survives.amocrm.ru", 31_000_091);
    app.fail_writes("pending_installs", 1, "update of tokens")
        .await;
    let code = app.fake.issue_code("survives.amocrm.ru");
    let answer = app
        .callback(&[
            ("code", &code),
            ("referer", "survives.amocrm.ru"),
            ("from_widget", "1"),
        ])
        .await;
    assert_eq!(answer.status(), 200);
    assert!(app.failed_writes("pending_installs").await >= 2);
    assert_eq!(
        app.account_status(31_000_091).await.as_deref(),
        Some("active")
    );
    assert_eq!(app.token_requests().len(), 1, "the code was exchanged once");
}

#[tokio::test]
async fn a_browser_install_survives_the_database_failing_as_the_account_is_stored() {
    let app = TestApp::spawn().await;
    app.account("survives.amocrm.ru", 31_000_092);
    app.fail_writes("accounts", 1, "insert or update").await;
    assert_eq!(app.install("survives.amocrm.ru").await.status(), 200);
    assert!(app.failed_writes("accounts").await >= 2);
    assert_eq!(
        app.account_status(31_000_092).await.as_deref(),
        Some("active")
    );
    assert_eq!(app.token_requests().len(), 1);
    app.state.tokens.access_token(31_000_092).await.unwrap();
}
