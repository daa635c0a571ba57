//! Forged installs: callbacks and exchanges without a turn write and spend
//! nothing, budget waits end, and a real install gets through both floods.

use crate::helpers::TestApp;
use amocrm_sim::Fault;
use std::time::{Duration, Instant};

use crate::install_limits::*;

/// A flood of forged browser callbacks, each with a state anyone can ask
/// for, while the gate has no turn: nothing is written, nothing is sent.
#[tokio::test]
async fn forged_browser_callbacks_without_a_turn_write_nothing() {
    let app = TestApp::spawn().await;
    spend_the_global_rate(&app).await;
    let app = &app;
    let answers = futures_util::future::join_all((0..6).map(|i| async move {
        let state = app.start_install().await;
        app.callback(&[
            ("code", &format!("forged-{i}")),
            ("referer", &format!("victim{i}.amocrm.ru")),
            ("state", &state),
        ])
        .await
    }))
    .await;
    for answer in answers {
        assert_eq!(answer.status(), 503);
    }
    assert_eq!(count(app, "select count(*) from oauth_states").await, 0);
    assert!(app.token_requests().is_empty());
}

/// An exchange is not authenticated (anyone can send a code naming an
/// account): it never spends the named account's request budget.
#[tokio::test]
async fn a_forged_exchange_naming_an_account_spends_none_of_its_budget() {
    let app = TestApp::spawn_without_worker().await;
    app.connected(DOMAIN, 39_000_006).await;
    let slots = || {
        count(
            &app,
            "select coalesce(cardinality(recent), 0)::bigint from api_budget
             where domain = 'realone.amocrm.ru'",
        )
    };
    assert!(slots().await >= 3, "the install's own calls count");
    sqlx::query("update api_budget set recent = '{}' where domain = $1")
        .bind(DOMAIN)
        .execute(&app.pool)
        .await
        .unwrap();
    let forged = send(&app, widget("forged-code", DOMAIN)).await;
    assert_eq!(forged.status(), 502);
    let state = app.start_install().await;
    let forged = app
        .callback(&[
            ("code", "forged-too"),
            ("referer", DOMAIN),
            ("state", &state),
        ])
        .await;
    assert_eq!(forged.status(), 502);
    assert_eq!(app.token_requests().len(), 3);
    assert_eq!(slots().await, 0);
}

async fn spend_the_global_rate(app: &TestApp) {
    // The global rate is spent for the next minute (as by a flood through
    // other processes).
    sqlx::query(
        "insert into api_budget (domain, recent)
         select $1, array_fill(now() + interval '60 seconds', array[50])",
    )
    .bind(amohook::install::EXCHANGE_RATE_KEY)
    .execute(&app.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_browser_install_with_no_turn_gets_503_and_sends_nothing() {
    let app = TestApp::spawn().await;
    app.account(DOMAIN, 39_000_004);
    spend_the_global_rate(&app).await;
    let started = Instant::now();
    let answer = app.install(DOMAIN).await;
    assert_eq!(answer.status(), 503);
    assert!(answer.headers().contains_key("retry-after"));
    assert!(started.elapsed() < Duration::from_secs(11));
    assert!(app.token_requests().is_empty());
    assert_eq!(app.account_status(39_000_004).await, None);
}

#[tokio::test]
async fn a_budget_wait_ends_at_its_deadline() {
    let app = TestApp::spawn_without_worker().await;
    let budget = amohook::amocrm::budget::Budget::global(app.pool.clone(), 1);
    let _first = budget
        .acquire_within("*test*", Duration::from_secs(1))
        .await
        .unwrap();
    let started = Instant::now();
    let second = budget
        .acquire_within("*test*", Duration::from_millis(200))
        .await;
    assert!(matches!(
        second,
        Err(amohook::amocrm::budget::BudgetError::Timeout(_))
    ));
    assert!(started.elapsed() < Duration::from_millis(900));
    // An account budget makes no row for a host that is no account's.
    let accounts = amohook::amocrm::budget::Budget::new(app.pool.clone(), 1);
    for _ in 0..3 {
        let _unbudgeted = accounts.acquire("nobody.amocrm.ru").await.unwrap();
    }
    assert_eq!(
        count(
            &app,
            "select count(*) from api_budget where domain = 'nobody.amocrm.ru'"
        )
        .await,
        0
    );
}

/// The drill of both floods at once: forged codes naming the real account
/// (amoCRM refuses them), and hosts that each left several codes filling
/// the widget queue while amoCRM fails for them. The real widget install
/// still gets in, and connects.
#[tokio::test]
async fn a_real_widget_install_connects_during_both_floods() {
    let app = TestApp::spawn_with(|env| {
        env.insert("AMOHOOK_INSTALL__WAITING_MAX".into(), "6".into());
    })
    .await;
    app.account(DOMAIN, 39_000_007);
    for i in 0..5 {
        let forged = send(&app, widget(&format!("forged-{i}"), DOMAIN)).await;
        assert_eq!(forged.status(), 502);
    }
    for host in 1..=3 {
        let host = format!("flood{host}.amocrm.ru");
        app.fake
            .fail_next(&host, "/oauth2/access_token", Fault::Status(503), 100);
        for i in 0..2 {
            let answer = send(&app, widget(&format!("{host}-{i}"), &host)).await;
            assert_eq!(answer.status(), 202);
        }
    }
    assert_eq!(
        count(
            &app,
            "select count(*) from pending_installs where state = 'pending'"
        )
        .await,
        6
    );
    // The queue is full, yet the real install gets room: a flooding host's
    // newest code makes way, and the real one connects at once.
    let code = app.fake.issue_code(DOMAIN);
    let real = send(&app, widget(&code, DOMAIN)).await;
    assert_eq!(real.status(), 200);
    assert_eq!(
        app.account_status(39_000_007).await.as_deref(),
        Some("active")
    );
    assert_eq!(
        count(
            &app,
            "select count(*) from pending_installs where state = 'pending'"
        )
        .await,
        5
    );
}

/// Room is made only from hosts that left more codes than the newcomer:
/// a lone waiting code is never pushed out by another lone code.
#[tokio::test]
async fn a_lone_waiting_code_is_never_pushed_out_by_another() {
    let app = TestApp::spawn_with(|env| {
        env.insert("AMOHOOK_INSTALL__WAITING_MAX".into(), "2".into());
    })
    .await;
    for host in ["one.amocrm.ru", "two.amocrm.ru", "three.amocrm.ru"] {
        app.fake
            .fail_next(host, "/oauth2/access_token", Fault::Status(503), 10);
    }
    assert_eq!(send(&app, widget("a", "one.amocrm.ru")).await.status(), 202);
    assert_eq!(send(&app, widget("b", "two.amocrm.ru")).await.status(), 202);
    assert_eq!(
        send(&app, widget("c", "three.amocrm.ru")).await.status(),
        503
    );
    assert_eq!(send(&app, widget("d", "two.amocrm.ru")).await.status(), 503);
    let hosts: Vec<String> =
        sqlx::query_scalar("select referer from pending_installs order by install_id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(hosts, ["one.amocrm.ru", "two.amocrm.ru"]);
}
