//! The install endpoints are public: forged installs must not make amohook
//! an amplifier against amoCRM's token endpoint (see src/install/gate.rs).

use std::time::{Duration, Instant};

use amocrm_sim::Fault;

use crate::helpers::TestApp;

const DOMAIN: &str = "realone.amocrm.ru";

fn widget(code: &str, referer: &str) -> Vec<(String, String)> {
    vec![
        ("code".into(), code.into()),
        ("referer".into(), referer.into()),
        ("from_widget".into(), "1".into()),
    ]
}

async fn send(app: &TestApp, params: Vec<(String, String)>) -> reqwest::Response {
    let pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    app.callback(&pairs).await
}

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

#[tokio::test]
async fn forged_widget_installs_reach_amocrm_no_faster_than_the_configured_rate() {
    let app = TestApp::spawn_with(|env| {
        env.insert("AMOHOOK_INSTALL__EXCHANGES_PER_SECOND".into(), "2".into());
        env.insert("AMOHOOK_INSTALL__CODES_PER_HOST".into(), "100".into());
    })
    .await;
    // 40 forged callbacks at once, from 20 connections, naming 8 hosts.
    let started = Instant::now();
    let answers = futures_util::future::join_all((0..40).map(|i| {
        let params = widget(
            &format!("forged-{i}"),
            &format!("victim{}.amocrm.ru", i % 8),
        );
        send(&app, params)
    }))
    .await;
    let took = started.elapsed();
    for answer in &answers {
        // Exchanged and refused (502), or kept for later (202): every one
        // answered in time for amoCRM's 3 seconds.
        assert!(
            [202, 502].contains(&answer.status().as_u16()),
            "{}",
            answer.status()
        );
    }
    assert!(took < Duration::from_secs(3), "answered in {took:?}");
    // Let the background retrier work through the rest for a while.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let seen = app.token_requests();
    assert!(
        seen.len() >= 6,
        "the queue drains: {} exchanges",
        seen.len()
    );
    // The gate hands out 2 turns a second. A request leaves a moment after
    // its turn, so on a loaded machine two turns a second apart can arrive
    // closer together: one request of jitter in a second, never a burst,
    // and no more than the rate over the whole run.
    for (i, first) in seen.iter().enumerate() {
        let within = seen[i..]
            .iter()
            .take_while(|r| r.at.duration_since(first.at) < Duration::from_millis(1000))
            .count();
        assert!(within <= 3, "{within} token requests within a second");
    }
    let span = seen.last().unwrap().at.duration_since(seen[0].at);
    assert!(
        seen.len() as f64 <= 2.0 * span.as_secs_f64() + 2.0,
        "{} token requests in {span:?}",
        seen.len()
    );
    // A code amoCRM refused is out of the queue, its code erased (the
    // background retrier may have one exchange in flight).
    let refused = count(
        &app,
        "select count(*) from pending_installs where state = 'failed' and octet_length(code) = 0",
    )
    .await as usize;
    assert!(
        refused <= seen.len() && refused + 1 >= seen.len(),
        "{refused} of {}",
        seen.len()
    );
    // No budget row was made for the made-up hosts.
    assert_eq!(
        count(
            &app,
            "select count(*) from api_budget where domain like 'victim%'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_code_seen_twice_is_exchanged_once() {
    let app = TestApp::spawn().await;
    app.account(DOMAIN, 39_000_001);
    let code = app.fake.issue_code(DOMAIN);
    let (first, second) = tokio::join!(
        send(&app, widget(&code, DOMAIN)),
        send(&app, widget(&code, DOMAIN))
    );
    let statuses = [first.status().as_u16(), second.status().as_u16()];
    assert!(statuses.contains(&200), "{statuses:?}");
    assert_eq!(app.token_requests().len(), 1);
    assert_eq!(
        app.account_status(39_000_001).await.as_deref(),
        Some("active")
    );
    // A replay later: not sent to amoCRM either.
    let replay = send(&app, widget(&code, DOMAIN)).await;
    assert_eq!(replay.status(), 202);
    assert_eq!(app.token_requests().len(), 1);
    // A refused code replayed: not sent again, and said so.
    let forged = send(&app, widget("forged-once", DOMAIN)).await;
    assert_eq!(forged.status(), 502);
    let again = send(&app, widget("forged-once", DOMAIN)).await;
    assert_eq!(again.status(), 400);
    assert!(again.text().await.unwrap().contains("already used"));
    assert_eq!(app.token_requests().len(), 2);
}

#[tokio::test]
async fn a_host_past_its_limit_is_refused_without_storing_anything() {
    let app = TestApp::spawn_with(|env| {
        env.insert("AMOHOOK_INSTALL__CODES_PER_HOST".into(), "2".into());
    })
    .await;
    // amoCRM is down for the host: its codes wait, and count.
    app.fake.fail_next(
        "flooded.amocrm.ru",
        "/oauth2/access_token",
        Fault::Status(503),
        10,
    );
    for i in 0..2 {
        let answer = send(&app, widget(&format!("f-{i}"), "flooded.amocrm.ru")).await;
        assert_eq!(answer.status(), 202);
    }
    let third = send(&app, widget("f-2", "flooded.amocrm.ru")).await;
    assert_eq!(third.status(), 429);
    assert_eq!(third.headers()["retry-after"], "60");
    // The browser path counts the same codes.
    let state = app.start_install().await;
    let browser = app
        .callback(&[
            ("code", "f-3"),
            ("referer", "flooded.amocrm.ru"),
            ("state", &state),
        ])
        .await;
    assert_eq!(browser.status(), 429);
    assert_eq!(app.token_requests().len(), 2);
    assert_eq!(
        count(&app, "select count(*) from pending_installs").await,
        2
    );
    assert_eq!(count(&app, "select count(*) from oauth_states").await, 0);
    // Another host is not affected.
    app.account(DOMAIN, 39_000_002);
    let code = app.fake.issue_code(DOMAIN);
    assert_eq!(send(&app, widget(&code, DOMAIN)).await.status(), 200);
}

#[tokio::test]
async fn codes_amocrm_refused_never_lock_a_hosts_real_install_out() {
    let app = TestApp::spawn_with(|env| {
        env.insert("AMOHOOK_INSTALL__CODES_PER_HOST".into(), "2".into());
    })
    .await;
    app.account(DOMAIN, 39_000_005);
    // Forged codes naming the real account, by both paths: amoCRM refuses
    // each (502), and they no longer count against the host.
    for i in 0..3 {
        let forged = send(&app, widget(&format!("forged-{i}"), DOMAIN)).await;
        assert_eq!(forged.status(), 502);
        let state = app.start_install().await;
        let forged = app
            .callback(&[
                ("code", &format!("forged-b{i}")),
                ("referer", DOMAIN),
                ("state", &state),
            ])
            .await;
        assert_eq!(forged.status(), 502);
    }
    let code = app.fake.issue_code(DOMAIN);
    assert_eq!(send(&app, widget(&code, DOMAIN)).await.status(), 200);
    assert_eq!(
        app.account_status(39_000_005).await.as_deref(),
        Some("active")
    );
    // A browser install of the same host goes through too.
    assert_eq!(app.install(DOMAIN).await.status(), 200);
}

#[tokio::test]
async fn a_full_queue_refuses_new_widget_installs() {
    let app = TestApp::spawn_with(|env| {
        env.insert("AMOHOOK_INSTALL__WAITING_MAX".into(), "3".into());
    })
    .await;
    // amoCRM is down for these hosts: their installs wait.
    for i in 0..3 {
        let host = format!("down{i}.amocrm.ru");
        app.fake
            .fail_next(&host, "/oauth2/access_token", Fault::Status(503), 10);
        let answer = send(&app, widget(&format!("w-{i}"), &host)).await;
        assert_eq!(answer.status(), 202);
    }
    let refused = send(&app, widget("w-3", "down3.amocrm.ru")).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        count(&app, "select count(*) from pending_installs").await,
        3
    );
}

#[tokio::test]
async fn a_real_widget_install_goes_ahead_of_a_flood() {
    let app = TestApp::spawn_with(|env| {
        env.insert("AMOHOOK_INSTALL__EXCHANGES_PER_SECOND".into(), "1".into());
        env.insert("AMOHOOK_INSTALL__CODES_PER_HOST".into(), "4".into());
    })
    .await;
    app.account(DOMAIN, 39_000_003);
    // A flood naming three hosts, while amoCRM is failing: it all waits.
    app.fake.set_outage(Some(503));
    let flood = futures_util::future::join_all((0..12).map(|i| {
        send(
            &app,
            widget(&format!("flood-{i}"), &format!("f{}.amocrm.ru", i % 3 + 1)),
        )
    }))
    .await;
    assert!(flood.iter().all(|a| a.status() == 202));
    let code = app.fake.issue_code(DOMAIN);
    let started = Instant::now();
    let real = send(&app, widget(&code, DOMAIN)).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(real.status(), 202);
    // Nothing is due while amoCRM comes back (and no attempt is in flight).
    sqlx::query("update pending_installs set next_attempt_at = now() + interval '1 hour'")
        .execute(&app.pool)
        .await
        .unwrap();
    while count(
        &app,
        "select count(*) from pending_installs where locked_until > now()",
    )
    .await
        > 0
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.fake.set_outage(None);
    // Everything becomes due at once. The first exchange is the real
    // install's: its host left one code, the flooding hosts four each.
    let before = app.token_requests().len();
    sqlx::query("update pending_installs set next_attempt_at = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.account_status(39_000_003).await.as_deref() != Some("active") {
        assert!(Instant::now() < deadline, "the real install connected");
        app.state.installer.retry_pending().await.unwrap();
    }
    let after: Vec<_> = app.token_requests().split_off(before);
    assert_eq!(after[0].domain, DOMAIN, "the real install went first");
}

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
