//! The install endpoints are public: forged installs must not make amohook
//! an amplifier against amoCRM's token endpoint (see src/install/gate.rs).

use std::time::{Duration, Instant};

use amocrm_sim::Fault;

use crate::helpers::TestApp;

pub(crate) const DOMAIN: &str = "realone.amocrm.ru";

pub(crate) fn widget(code: &str, referer: &str) -> Vec<(String, String)> {
    vec![
        ("code".into(), code.into()),
        ("referer".into(), referer.into()),
        ("from_widget".into(), "1".into()),
    ]
}

pub(crate) async fn send(app: &TestApp, params: Vec<(String, String)>) -> reqwest::Response {
    let pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    app.callback(&pairs).await
}

pub(crate) async fn count(app: &TestApp, sql: &'static str) -> i64 {
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
    // background retrier goes on meanwhile: one exchange may be in flight
    // at the first look, and more may have been made by the count).
    let refused = count(
        &app,
        "select count(*) from pending_installs where state = 'failed' and octet_length(code) = 0",
    )
    .await as usize;
    let exchanged = app.token_requests().len();
    assert!(
        refused <= exchanged && refused + 1 >= seen.len(),
        "{refused} refused of {} exchanged, {exchanged} by the count",
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
