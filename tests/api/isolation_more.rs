//! One account can never hurt another, continued: exactly-once sends and lookups, the hook-key cache, intake under made-up keys and slow clients.

use amocrm_sim::Fault;
use std::time::Duration;

use crate::helpers::{lead_hook, TestApp};

use crate::isolation::*;

#[tokio::test]
async fn two_changes_in_one_second_are_two_notes_and_a_resend_is_none() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(CLEAN.0, CLEAN.1).await;
    let add = lead_hook(CLEAN.1, "add", 7, "Заказ", 1_712_331_728, &[]);
    assert_eq!(app.post_hook(&key, add).await.status(), 200);
    app.state.worker.drain().await.unwrap();
    // A person changes the budget and, in the same second, a robot renames.
    let at = 1_712_331_800;
    let budget =
        lead_hook(CLEAN.1, "update", 7, "Заказ", at, &[]).replace("price%5D=1000", "price%5D=2500");
    let rename = lead_hook(CLEAN.1, "update", 7, "Заказ 2", at, &[])
        .replace("price%5D=1000", "price%5D=2500");
    for body in [&budget, &rename, &rename] {
        assert_eq!(app.post_hook(&key, body.clone()).await.status(), 200);
    }
    app.state.worker.drain().await.unwrap();
    let texts: Vec<String> = app.fake.notes().into_iter().map(|n| n.text).collect();
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(texts[1].contains("Бюджет: 1000 ₽ → 2500 ₽"), "{texts:?}");
    assert!(texts[2].contains("Название: Заказ → Заказ 2"), "{texts:?}");
}

/// Sends one note whose answer is lost (created, then 502), so that the
/// event is marked "may already be sent".
pub(crate) async fn lost_answer(app: &TestApp, key: &str) {
    app.fake
        .fail_next(CLEAN.0, "/api/v4/leads/notes", Fault::AfterWork(502), 1);
    app.post_hook(key, lead_hook(CLEAN.1, "add", 5, "x", 1, &[]))
        .await;
    app.state.worker.drain().await.unwrap();
    assert_eq!(ours(app), 1);
    assert_eq!(event_states(app, CLEAN.1).await, ["pending"]);
}

/// Notes amohook created (people's notes have no request id).
pub(crate) fn ours(app: &TestApp) -> usize {
    app.fake
        .notes()
        .iter()
        .filter(|n| n.request_id.is_some())
        .count()
}

#[tokio::test]
async fn after_an_uncertain_send_no_failure_of_the_lookup_leads_to_a_second_note() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(CLEAN.0, CLEAN.1).await;
    lost_answer(&app, &key).await;
    // Each following attempt fails in another way before it could send
    // (a 400 fails the event; it is put back as an admin retry would);
    // the last one goes through.
    for fault in [Some(429), Some(403), Some(500), Some(400), None] {
        if let Some(status) = fault {
            app.fake
                .fail_next(CLEAN.0, "/api/v4/leads/notes", Fault::Status(status), 1);
        }
        app.make_due().await;
        sqlx::query("update hook_events set state = 'pending' where state = 'failed'")
            .execute(&app.pool)
            .await
            .unwrap();
        app.state.worker.drain().await.unwrap();
        assert_eq!(app.fake.notes().len(), 1, "after {fault:?}");
    }
    assert_eq!(app.fake.notes().len(), 1);
    assert_eq!(event_states(&app, CLEAN.1).await, ["delivered"]);
    let posts = app
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v4/leads/notes")
        .count();
    assert_eq!(posts, 1, "the note was posted once");
}

#[tokio::test]
async fn an_admin_retry_looks_before_it_sends_again() {
    let app = TestApp::spawn_with(|env| {
        env.insert(
            "AMOHOOK_ADMIN__TOKEN".into(),
            "an-admin-token-0123456789".into(),
        );
        env.insert("AMOHOOK_WORKER__CONCURRENCY".into(), "0".into());
    })
    .await;
    let key = app.connected(CLEAN.0, CLEAN.1).await;
    lost_answer(&app, &key).await;
    // Its retries ran out (a day of 5xx, say) and it was marked failed.
    sqlx::query("update hook_events set state = 'failed', finished_at = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    let retried = app
        .http
        .post(app.url(&format!("/api/accounts/{}/retry", CLEAN.1)))
        .bearer_auth("an-admin-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), 200);
    app.state.worker.drain().await.unwrap();
    assert_eq!(event_states(&app, CLEAN.1).await, ["delivered"]);
    assert_eq!(app.fake.notes().len(), 1);
}

#[tokio::test]
async fn the_lookup_reads_every_page_with_the_documented_filters() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(CLEAN.0, CLEAN.1).await;
    // The card is busy: 300 notes by people, one of them a service note.
    for i in 0..300 {
        let kind = if i == 0 { "service_message" } else { "common" };
        app.fake
            .add_note(CLEAN.0, "leads", 5, kind, &format!("by a person {i}"));
    }
    lost_answer(&app, &key).await;
    app.make_due().await;
    app.state.worker.drain().await.unwrap();
    assert_eq!(event_states(&app, CLEAN.1).await, ["delivered"]);
    assert_eq!(ours(&app), 1);
    let lookups: Vec<String> = app
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v4/leads/notes")
        .map(|r| r.query)
        .collect();
    // The fake refuses undocumented forms with 400; these were answered.
    assert_eq!(lookups.len(), 2, "{lookups:?}");
    assert!(
        lookups[0].contains("filter[note_type][]=common"),
        "{lookups:?}"
    );
    assert!(lookups[1].contains("page=2"), "{lookups:?}");
}

#[tokio::test]
async fn a_failed_users_list_costs_names_not_notes() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(CLEAN.0, CLEAN.1).await;
    app.fake
        .fail_next(CLEAN.0, "/api/v4/users", Fault::Status(500), 10);
    app.post_hook(&key, lead_hook(CLEAN.1, "add", 1, "x", 1, &[]))
        .await;
    app.state.worker.drain().await.unwrap();
    let notes = app.fake.notes();
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].text.contains("Ответственный: 100."),
        "{}",
        notes[0].text
    );
    assert_eq!(event_states(&app, CLEAN.1).await, ["delivered"]);
}

#[tokio::test]
async fn an_account_change_reaches_the_hook_cache_at_once() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(CLEAN.0, CLEAN.1).await;
    // Cached as active by a first hook.
    app.post_hook(&key, lead_hook(CLEAN.1, "add", 1, "x", 1, &[]))
        .await;
    // Another process disconnects the account.
    sqlx::query("update accounts set status = 'disconnected' where account_id = $1")
        .bind(CLEAN.1)
        .execute(&app.pool)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.post_hook(&key, lead_hook(CLEAN.1, "add", 2, "x", 1, &[]))
        .await;
    assert_eq!(event_states(&app, CLEAN.1).await, ["pending", "dropped"]);
    // Installed again: its next hook, right away, is stored to deliver.
    assert_eq!(app.install(CLEAN.0).await.status(), 200);
    app.post_hook(&key, lead_hook(CLEAN.1, "add", 3, "x", 1, &[]))
        .await;
    assert_eq!(
        event_states(&app, CLEAN.1).await,
        ["pending", "dropped", "pending"]
    );
}

#[tokio::test]
async fn a_field_of_an_unknown_shape_loses_the_field_not_the_hook() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(CLEAN.0, CLEAN.1).await;
    let body = lead_hook(
        CLEAN.1,
        "add",
        1,
        "x",
        1,
        &[("old_status_id", "soon"), ("tags][0", "a")],
    ) + "&leads%5Badd%5D%5B0%5D%5Bcustom_fields%5D%5B0%5D%5Bvalues%5D=flat";
    let response = app.post_hook(&key, body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(event_states(&app, CLEAN.1).await, ["pending"]);
}

/// Delivery steps back while intake is busy (`hooks_in_flight.rs`); only
/// hooks of a known account count, so that whoever knows no hook key cannot
/// slow every account's notes by sending to made-up keys.
#[tokio::test]
async fn requests_to_made_up_hook_keys_never_make_intake_busy() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(CLEAN.0, CLEAN.1).await;
    let second = app.connected(POISON.0, POISON.1).await;
    // Their accounts are now in the hook-key cache.
    let first = app.post_hook(&key, lead_hook(CLEAN.1, "add", 1, "x", 1, &[]));
    assert_eq!(first.await.status(), 200);
    let first = app.post_hook(&second, lead_hook(POISON.1, "add", 1, "x", 1, &[]));
    assert_eq!(first.await.status(), 200);
    let in_flight = app.state.intake.in_flight.clone();

    // Everything that reads `accounts` waits: key lookups, and the storing
    // of events (their account's row is checked).
    let mut lock = app.pool.begin().await.unwrap();
    sqlx::query("lock table accounts in access exclusive mode")
        .execute(&mut *lock)
        .await
        .unwrap();
    let send = |path: String, body: String| {
        let (http, url) = (app.http.clone(), app.url(&path));
        tokio::spawn(async move {
            http.post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    let made_up: Vec<_> = (0..12)
        .map(|i| {
            send(
                format!("/hooks/made-up-key-{i}"),
                lead_hook(CLEAN.1, "add", 100 + i, "x", 1, &[]),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!in_flight.busy(), "made-up keys do not make intake busy");
    // The control: as many hooks of two known accounts (one alone never
    // makes intake busy: `hooks_in_flight::ACCOUNT_SHARE`), held the same
    // way, do.
    let known: Vec<_> = (0..12)
        .map(|i| {
            let (key, id) = if i % 2 == 0 {
                (&key, CLEAN.1)
            } else {
                (&second, POISON.1)
            };
            send(
                format!("/hooks/{key}"),
                lead_hook(id, "add", 200 + i, "x", 1, &[]),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(in_flight.busy(), "hooks of known accounts make intake busy");
    lock.rollback().await.unwrap();
    for answer in made_up {
        assert_eq!(answer.await.unwrap().unwrap(), 404);
    }
    for answer in known {
        assert_eq!(answer.await.unwrap().unwrap(), 200);
    }
}

/// Looking up a hook key's account holds connections of its own: while
/// lookups of made-up keys wait (the key table locked here), a known
/// account's hook is still stored on the commit's connection.
#[tokio::test]
async fn lookups_of_made_up_keys_never_hold_the_connection_hooks_are_stored_on() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(CLEAN.0, CLEAN.1).await;
    // Its account is now in the hook-key cache.
    let first = app.post_hook(&key, lead_hook(CLEAN.1, "add", 1, "x", 1, &[]));
    assert_eq!(first.await.status(), 200);
    let mut lock = app.pool.begin().await.unwrap();
    sqlx::query("lock table hook_keys in access exclusive mode")
        .execute(&mut *lock)
        .await
        .unwrap();
    let made_up: Vec<_> = (0..8)
        .map(|i| {
            let (http, url) = (app.http.clone(), app.url(&format!("/hooks/made-up-{i}")));
            tokio::spawn(async move {
                http.post(url)
                    .body(lead_hook(CLEAN.1, "add", 100 + i, "x", 1, &[]))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let known = app.post_hook(&key, lead_hook(CLEAN.1, "add", 2, "x", 1, &[]));
    assert_eq!(known.await.status(), 200);
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    lock.rollback().await.unwrap();
    for answer in made_up {
        // Not found, or not stored in time while the table was locked.
        assert!([404, 503].contains(&answer.await.unwrap().unwrap()));
    }
    assert_eq!(event_states(&app, CLEAN.1).await.len(), 2);
}

/// A key found to be nobody's is remembered: the same made-up key again is
/// answered 404 without a lookup (the key table locked here: a lookup would
/// wait), and a new key of an account is found at once.
#[tokio::test]
async fn a_made_up_key_is_looked_up_once_and_a_new_key_is_found_at_once() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(CLEAN.0, CLEAN.1).await;
    let hook = |id| lead_hook(CLEAN.1, "add", id, "x", 1, &[]);
    assert_eq!(app.post_hook("made-up", hook(1)).await.status(), 404);
    let mut lock = app.pool.begin().await.unwrap();
    sqlx::query("lock table hook_keys in access exclusive mode")
        .execute(&mut *lock)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(app.post_hook("made-up", hook(2)).await.status(), 404);
    assert!(started.elapsed() < Duration::from_millis(1000));
    // Another made-up key is looked up, and waits for the lock.
    assert_eq!(app.post_hook("made-up-too", hook(3)).await.status(), 503);
    lock.rollback().await.unwrap();
    // A key that was nobody's becomes an account's (here by hand, as a
    // rotation's new key does): the announcement empties the remembered
    // ones, and its first hook is stored.
    sqlx::query(
        "insert into hook_keys (hook_key_sha256, account_id, kind, valid_until)
         values (encode(sha256('made-up'), 'hex'), $1, 'candidate', now() + interval '1 hour')",
    )
    .bind(CLEAN.1)
    .execute(&app.pool)
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = app.post_hook("made-up", hook(4)).await.status();
        if status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.post_hook(&key, hook(5)).await.status(), 200);
}

/// Clients that send half a request, or keep a connection idle, are closed
/// after `http.header_timeout_seconds`; at most `http.max_connections` are
/// open at once, the rest wait their turn: a hook sent while many such
/// clients hold connections is still stored.
#[tokio::test]
async fn half_sent_and_idle_connections_are_closed_and_hooks_still_get_in() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = TestApp::spawn_with(|env| {
        env.insert("AMOHOOK_HTTP__MAX_CONNECTIONS".into(), "32".into());
        env.insert("AMOHOOK_HTTP__HEADER_TIMEOUT_SECONDS".into(), "1".into());
        env.insert("AMOHOOK_WORKER__CONCURRENCY".into(), "0".into());
    })
    .await;
    let key = app.connected(CLEAN.0, CLEAN.1).await;
    let addr = app.address.trim_start_matches("http://").to_owned();

    // A kept-alive connection that sends nothing after its first request.
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: amohook\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 512];
    let n = idle.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));

    // 100 clients that send half a request head and then nothing, three
    // times the connection cap.
    let mut half_sent = Vec::new();
    for _ in 0..100 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"POST /hooks/x HTTP/1.1\r\nHost: amohook\r\nContent-Ty")
            .await
            .unwrap();
        half_sent.push(stream);
    }
    let hook = lead_hook(CLEAN.1, "add", 4242, "Дошла", 1, &[]);
    assert_eq!(app.post_hook(&key, hook).await.status(), 200);
    let stored: i64 = sqlx::query_scalar("select count(*) from hook_events where entity_id = 4242")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 1);

    // The service closed every one of them (end of stream, or a reset).
    let closed = |mut stream: tokio::net::TcpStream| async move {
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
            .await
            .is_ok()
    };
    assert!(closed(idle).await, "the idle connection was closed");
    for (i, stream) in half_sent.into_iter().enumerate() {
        assert!(closed(stream).await, "half-sent connection {i} was closed");
    }
}
