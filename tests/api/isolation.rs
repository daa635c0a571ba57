//! One account can never hurt another: what one tenant's input, traffic or
//! bad luck may and may not do to the others.

use amocrm_sim::Fault;
use std::time::Duration;

use amohook::{
    amocrm::hooks::{Action, EntityKind, HookEvent, Snapshot},
    inbox::{self, EventState, Row},
};
use proptest::prelude::*;
use tokio_util::sync::CancellationToken;

use crate::helpers::{base_env, lead_hook, TestApp};

pub(crate) const CLEAN: (&str, i64) = ("clean.amocrm.ru", 36_000_001);
pub(crate) const POISON: (&str, i64) = ("poison.amocrm.ru", 36_000_002);

pub(crate) async fn event_states(app: &TestApp, account_id: i64) -> Vec<String> {
    sqlx::query_scalar("select state from hook_events where account_id = $1 order by event_id")
        .bind(account_id)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn one_accounts_nul_bytes_never_fail_another_accounts_hooks() {
    let app = TestApp::spawn_without_worker().await;
    let clean_key = app.connected(CLEAN.0, CLEAN.1).await;
    let poison_key = app.connected(POISON.0, POISON.1).await;
    // Both at once, so that their hooks share group commits.
    let mut sends = Vec::new();
    for sender in 0..6i64 {
        let (key, account, name) = if sender < 2 {
            (poison_key.clone(), POISON.1, "a\0b")
        } else {
            (clean_key.clone(), CLEAN.1, "fine")
        };
        let (http, url) = (app.http.clone(), app.url(&format!("/hooks/{key}")));
        sends.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..40 {
                let body = lead_hook(account, "add", 1 + sender * 100 + i, name, 1, &[]);
                let r = http.post(&url).body(body).send().await.unwrap();
                statuses.push(r.status().as_u16());
            }
            statuses
        }));
    }
    for send in sends {
        assert!(send.await.unwrap().iter().all(|s| *s == 200));
    }
    assert_eq!(event_states(&app, CLEAN.1).await.len(), 160);
    // The poison is stored without its NUL, and its note reads "ab".
    let names: Vec<String> = sqlx::query_scalar(
        "select distinct snapshot->>'name' from hook_events where account_id = $1",
    )
    .bind(POISON.1)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(names, ["ab"]);
}

pub(crate) fn row(account_id: i64, entity_id: i64, name: String, field: String) -> Row {
    let event = HookEvent {
        entity: EntityKind::Lead,
        action: Action::Add,
        entity_id,
        changed_at: 1,
        snapshot: Snapshot {
            name,
            custom_fields: vec![amohook::amocrm::hooks::FieldValue {
                id: "1".into(),
                name: field,
                code: None,
                values: vec!["v".into()],
            }],
            ..Snapshot::default()
        },
    };
    Row::new(account_id, event, EventState::Pending)
}

/// Any text, often with NUL characters in it.
pub(crate) fn odd_text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "(\\x00|[a-zа-я%&=+ ]|🚀){0,8}"]
}

/// A hook body of amoCRM's shape with arbitrary text in its values and
/// arbitrary extra keys, for the poison account.
pub(crate) fn poison_body() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        (
            "leads\\[(add|update|status)\\]\\[0\\]\\[(name|price|status_id|custom_fields\\]\\[0\\]\\[(id|name|values\\]\\[0\\]\\[value))\\]",
            odd_text(),
        ),
        0..6,
    )
    .prop_map(|pairs| {
        let mut body = url::form_urlencoded::Serializer::new(String::new());
        body.append_pair("account[id]", &POISON.1.to_string());
        body.append_pair("leads[add][0][id]", "77");
        body.append_pair("leads[update][0][id]", "78");
        body.append_pair("leads[status][0][id]", "79");
        for (k, v) in &pairs {
            body.append_pair(k, v);
        }
        body.finish()
    })
}

/// Whatever the parser accepts, PostgreSQL stores; and text that slips
/// past it (put straight into a batch, as a parser bug would) fails only
/// its own hook, never the valid hooks of other accounts beside it.
#[test]
fn a_poison_hook_never_fails_the_hooks_beside_it_in_a_batch() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(async {
        let app = TestApp::spawn_without_worker().await;
        app.connected(CLEAN.0, CLEAN.1).await;
        app.connected(POISON.0, POISON.1).await;
        app.connected("third.amocrm.ru", 36_000_003).await;
        app
    });
    let next_id = std::cell::Cell::new(0i64);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    runner
        .run(
            &(poison_body(), odd_text(), 0usize..5),
            |(body, raw_name, position)| {
                next_id.set(next_id.get() + 10);
                let first = next_id.get();
                let mut hooks: Vec<Vec<Row>> = (0..4)
                    .map(|i| {
                        let account = if i % 2 == 0 { CLEAN.1 } else { 36_000_003 };
                        vec![row(account, first + i, format!("ok {i}"), "f".into())]
                    })
                    .collect();
                let parsed: Vec<Row> = amohook::amocrm::hooks::parse(body.as_bytes())
                    .map(|hook| hook.events)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|mut event| {
                        // Fresh changes each case, so nothing is a duplicate.
                        event.changed_at = first;
                        Row::new(POISON.1, event, EventState::Pending)
                    })
                    .collect();
                let parsed_len = parsed.len() as u64;
                hooks.insert(position.min(4), parsed);
                let injected = vec![row(POISON.1, first + 9, raw_name.clone(), "f".into())];
                hooks.insert(position.min(5), injected);
                let refs: Vec<&[Row]> = hooks.iter().map(Vec::as_slice).collect();
                let results = rt.block_on(inbox::write_group(&app.pool, &refs, |_| true));
                for (hook, result) in hooks.iter().zip(&results) {
                    match hook.first() {
                        None => prop_assert_eq!(result, &Ok(0)),
                        Some(r) if r.account_id != POISON.1 => {
                            prop_assert_eq!(result, &Ok(1), "a valid hook of another account")
                        }
                        // A row made outside the parser is stored too:
                        // its NUL characters are removed as the parser's
                        // are (`Row::new`).
                        Some(r) if r.event.entity_id == first + 9 => {
                            prop_assert_eq!(result, &Ok(1), "injected text");
                            prop_assert!(!r.event.snapshot.name.contains('\0'));
                        }
                        Some(_) => prop_assert_eq!(result, &Ok(parsed_len), "parsed: {}", body),
                    }
                }
                Ok(())
            },
        )
        .unwrap();
    rt.block_on(async move { drop(app) });
}

#[tokio::test]
async fn hook_intake_has_connections_nothing_else_can_take() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(CLEAN.0, CLEAN.1).await;
    // The main pool ...
    let main = &app.state.pool;
    assert_eq!(main.options().get_max_connections(), 30);
    // ... and every one of its connections is taken (stuck refreshes,
    // slow pages, a delivery storm).
    let mut held = Vec::new();
    while let Ok(Ok(connection)) =
        tokio::time::timeout(Duration::from_millis(300), main.acquire()).await
    {
        held.push(connection);
    }
    assert!(!held.is_empty());
    assert!(main.try_acquire().is_none());
    let started = std::time::Instant::now();
    let response = app
        .post_hook(&key, lead_hook(CLEAN.1, "add", 1, "x", 1, &[]))
        .await;
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < Duration::from_millis(1500));
    drop(held);
    assert_eq!(event_states(&app, CLEAN.1).await, ["pending"]);
}

#[tokio::test]
async fn the_main_pool_is_sized_by_its_setting_not_by_the_delivery_turns() {
    let app = TestApp::spawn_with(|env| {
        env.insert("AMOHOOK_WORKER__CONCURRENCY".into(), "2000".into());
        env.insert("AMOHOOK_DATABASE__MAX_CONNECTIONS".into(), "12".into());
    })
    .await;
    assert_eq!(app.state.pool.options().get_max_connections(), 12);
    assert_eq!(
        app.state.intake.lookups.options().get_max_connections(),
        amohook::db::LOOKUP_CONNECTIONS
    );
}

/// Waits until the simulator has at least `n` requests in flight.
pub(crate) async fn until_in_flight(app: &TestApp, n: usize) {
    for _ in 0..200 {
        if app.fake.in_flight() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{} requests in flight, expected {n}; events: {:?}",
        app.fake.in_flight(),
        app.events().await
    );
}

/// Accounts whose amoCRM answers in 30 s or never, more of them than a
/// fixed set of delivery loops would have had: while every one of their
/// requests is still hanging, a healthy account's note is delivered.
#[tokio::test]
async fn a_hung_or_slow_amocrm_never_delays_another_accounts_note() {
    let app = TestApp::spawn().await;
    const SLOW: i64 = 24;
    let healthy = app.connected(CLEAN.0, CLEAN.1).await;
    let mut slow = Vec::new();
    for i in 0..SLOW {
        let (domain, id) = (format!("slow{i}.amocrm.ru"), 36_100_000 + i);
        slow.push((app.connected(&domain, id).await, domain, id));
    }
    // Then, all at once, their amoCRM stops answering in time, and each
    // gets a hook.
    for (i, (key, domain, id)) in slow.iter().enumerate() {
        if i % 2 == 0 {
            app.fake.hang(domain);
        } else {
            app.fake.set_domain_latency(domain, Duration::from_secs(30));
        }
        let hook = app
            .post_hook(key, lead_hook(*id, "add", 1, "x", 1, &[]))
            .await;
        assert_eq!(hook.status(), 200);
    }
    // Each slow account has a request of its own hanging.
    until_in_flight(&app, SLOW as usize).await;

    let key = healthy;
    let hook = app
        .post_hook(&key, lead_hook(CLEAN.1, "add", 7, "healthy", 1, &[]))
        .await;
    assert_eq!(hook.status(), 200);
    let notes = app.wait_for_notes(CLEAN.0, 1).await;
    assert_eq!(notes.len(), 1);
    // Not one of the slow accounts' requests had ended (answered or given
    // up) when the healthy note landed: it waited on none of them.
    assert!(
        app.fake.in_flight() >= SLOW as usize,
        "{} in flight",
        app.fake.in_flight()
    );
    assert!(app.fake.notes().iter().all(|n| n.domain == CLEAN.0));
}

#[tokio::test]
async fn the_claims_of_a_killed_process_run_out_and_another_delivers_within_seconds() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(CLEAN.0, CLEAN.1).await;
    for i in 1..=5 {
        app.post_hook(&key, lead_hook(CLEAN.1, "add", i, "x", 1, &[]))
            .await;
    }
    // Another process takes the account; amoCRM creates its notes but the
    // answer never comes back before the process is killed.
    app.fake.fail_next(
        CLEAN.0,
        "/api/v4/leads/notes",
        Fault::WorkThenDelay(Duration::from_secs(120)),
        1,
    );
    let mut env = base_env(&app.db.url, &app.fake);
    env.insert("AMOHOOK_WORKER__CONCURRENCY".into(), "1".into());
    let mut other = tokio::process::Command::new(env!("CARGO_BIN_EXE_amohook"))
        .arg("serve")
        .envs(env)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    app.wait_for_notes(CLEAN.0, 5).await;
    other.start_kill().unwrap();
    other.wait().await.unwrap();
    let killed = std::time::Instant::now();

    // This process delivers from now on.
    let stop = CancellationToken::new();
    let worker = tokio::spawn(app.state.worker.clone().run(1, stop.clone()));
    for _ in 0..300 {
        if event_states(&app, CLEAN.1)
            .await
            .iter()
            .all(|s| s == "delivered")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = killed.elapsed();
    stop.cancel();
    worker.await.unwrap();
    assert_eq!(event_states(&app, CLEAN.1).await, ["delivered"; 5]);
    assert!(took < Duration::from_secs(30), "took {took:?}");
    // The notes the killed process had sent were found, not sent again.
    assert_eq!(app.fake.notes().len(), 5);
}

#[tokio::test]
async fn a_live_process_keeps_its_claims_past_their_time() {
    let app = TestApp::spawn().await;
    let key = app.connected(CLEAN.0, CLEAN.1).await;
    app.fake.fail_next(
        CLEAN.0,
        "/api/v4/leads/notes",
        // Longer than a heartbeat, shorter than the request timeout.
        Fault::Delay(Duration::from_secs(8)),
        1,
    );
    app.post_hook(&key, lead_hook(CLEAN.1, "add", 1, "x", 1, &[]))
        .await;
    let lock = || async {
        sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>(
            "select locked_until from hook_events where state = 'sending'",
        )
        .fetch_optional(&app.pool)
        .await
        .unwrap()
        .flatten()
    };
    let mut first = None;
    for _ in 0..100 {
        first = lock().await;
        if first.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = first.expect("the event is claimed");
    // Past a heartbeat, the lock has moved forward while the send goes on.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let later = lock().await.expect("still claimed while sending");
    assert!(later > first, "{first} → {later}");
    app.wait_for_notes(CLEAN.0, 1).await;
}
