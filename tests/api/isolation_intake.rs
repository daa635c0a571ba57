//! One account can never hurt another, at intake: made-up hook keys never
//! make intake busy or hold its connections, an account's change reaches the
//! hook-key cache at once, slow and idle clients are closed.

use crate::helpers::{lead_hook, TestApp};
use crate::isolation::*;
use std::time::Duration;

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
