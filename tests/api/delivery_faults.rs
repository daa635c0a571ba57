//! Delivering when things go wrong: amoCRM's budget, outages, lost answers,
//! refusals, expired tokens, accounts that must reinstall, processes killed.

use amocrm_sim::Fault;
use std::time::Duration;

use amohook::delivery::Worker;

use crate::helpers::{lead_hook, TestApp};

pub(crate) const DOMAIN: &str = "notes.amocrm.ru";
pub(crate) const ID: i64 = 35_000_001;

#[tokio::test]
async fn four_hundred_hooks_in_two_seconds_land_batched_within_the_budget() {
    let app = TestApp::spawn().await;
    // The fake enforces amoCRM's limit: over 7 a second it answers 429.
    app.fake.set_rate_limit(7);
    let key = app.connected(DOMAIN, ID).await;
    let mut sends = Vec::new();
    for i in 0..400i64 {
        let body = lead_hook(
            ID,
            "add",
            10_000 + i,
            &format!("Lead {i}"),
            1_712_331_728,
            &[],
        );
        let http = app.http.clone();
        let url = app.url(&format!("/hooks/{key}"));
        sends.push(tokio::spawn(async move {
            http.post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for send in sends {
        assert_eq!(send.await.unwrap(), 200);
    }
    let notes = app.wait_for_notes(DOMAIN, 400).await;
    let mut ids: Vec<i64> = notes.iter().map(|n| n.entity_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 400, "every note once");
    assert_eq!(app.fake.count_status(DOMAIN, 429), 0, "no 429");
    assert!(
        app.fake.max_per_second(DOMAIN) <= 7,
        "at most 7 calls in any second: {}",
        app.fake.max_per_second(DOMAIN)
    );
    let posts = app
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v4/leads/notes")
        .count();
    assert!(
        posts <= 400 / 50 + 8,
        "notes go in batches of up to 50: {posts} requests"
    );
}

/// A budget slot is counted when the database checks it, and its call
/// leaves after the slot's commit. When that commit is slow (here: 300 ms,
/// once), the call leaves late and the calls a second after its slot would
/// reach amoCRM less than a second after it: the late slot is moved to
/// when its call left.
#[tokio::test]
async fn a_call_that_leaves_late_keeps_the_budget() {
    let app = TestApp::spawn_without_worker().await;
    app.fake.set_rate_limit(7);
    let key = app.connected(DOMAIN, ID).await;
    for i in 0..400i64 {
        let body = lead_hook(ID, "add", 20_000 + i, "Lead", 1_712_331_728, &[]);
        assert_eq!(app.post_hook(&key, body).await.status(), 200);
    }
    // The first budget commit from here on takes 300 ms.
    for statement in [
        "create sequence budget_commits",
        "create function slow_commit() returns trigger language plpgsql as $$
         begin
             if nextval('budget_commits') = 1 then
                 perform pg_sleep(0.3);
             end if;
             return null;
         end $$",
        "create constraint trigger slow_commit after update on api_budget
         deferrable initially deferred
         for each row execute function slow_commit()",
    ] {
        sqlx::query(statement).execute(&app.pool).await.unwrap();
    }
    let calls_before = app.fake.requests().len();
    app.state.worker.drain().await.unwrap();
    assert_eq!(app.fake.notes().len(), 400, "every note");
    assert_eq!(app.fake.count_status(DOMAIN, 429), 0, "no 429");
    assert!(
        app.fake.max_per_second(DOMAIN) <= 7,
        "at most 7 calls in any second: {}",
        app.fake.max_per_second(DOMAIN)
    );
    // Every call of the drain took its slot after the trigger was made.
    // (`last_value` is 1 also when no slot was taken: `is_called` says.)
    let (slowed, called): (i64, bool) =
        sqlx::query_as("select last_value, is_called from budget_commits")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let calls = app.fake.requests().len() - calls_before;
    assert!(
        called && slowed >= 8,
        "the budget was saturated: {slowed} commits (called: {called}) for {calls} calls"
    );
}

#[tokio::test]
async fn an_outage_of_amocrm_delays_notes_and_loses_none() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    for i in 0..5 {
        app.post_hook(&key, lead_hook(ID, "add", 700 + i, "x", 1, &[]))
            .await;
    }
    app.fake
        .fail_next(DOMAIN, "/api/v4/leads/notes", Fault::Status(503), 2);
    app.state.worker.drain().await.unwrap();
    assert!(app.fake.notes().is_empty());
    let (attempts, next_in, error): (i32, f64, String) = sqlx::query_as(
        "select max(attempts), extract(epoch from min(next_attempt_at) - now())::float8, max(last_error)
         from hook_events",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(attempts, 1);
    assert!(
        (1.0..10.0).contains(&next_in),
        "first retry within seconds: {next_in}"
    );
    assert!(error.contains("503"));
    app.make_due().await;
    app.state.worker.drain().await.unwrap();
    let next_in: f64 = sqlx::query_scalar(
        "select extract(epoch from min(next_attempt_at) - now())::float8 from hook_events",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(next_in > 6.0, "the backoff grows: {next_in}");
    app.make_due().await;
    app.state.worker.drain().await.unwrap();
    let notes = app.fake.notes();
    assert_eq!(notes.len(), 5, "every note once after recovery");
    assert!(app.events().await.iter().all(|e| e.2 == "delivered"));
}

#[tokio::test]
async fn events_are_failed_only_after_a_day_of_retries() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    app.post_hook(&key, lead_hook(ID, "add", 1, "x", 1, &[]))
        .await;
    app.fake
        .fail_next(DOMAIN, "/api/v4/leads/notes", Fault::Status(500), 2);
    app.state.worker.drain().await.unwrap();
    sqlx::query("update hook_events set first_failure_at = now() - interval '23 hours'")
        .execute(&app.pool)
        .await
        .unwrap();
    app.make_due().await;
    app.state.worker.drain().await.unwrap();
    assert_eq!(
        app.events().await[0].2,
        "pending",
        "still retried after 23 hours"
    );
    app.fake
        .fail_next(DOMAIN, "/api/v4/leads/notes", Fault::Status(500), 1);
    sqlx::query("update hook_events set first_failure_at = now() - interval '25 hours'")
        .execute(&app.pool)
        .await
        .unwrap();
    app.make_due().await;
    app.state.worker.drain().await.unwrap();
    assert_eq!(app.events().await[0].2, "failed");
}

#[tokio::test]
async fn a_lost_answer_is_not_sent_twice() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    for i in 0..3 {
        app.post_hook(&key, lead_hook(ID, "add", 800 + i, "x", 1, &[]))
            .await;
    }
    // amoCRM creates the notes but the answer is a 502.
    app.fake
        .fail_next(DOMAIN, "/api/v4/leads/notes", Fault::AfterWork(502), 1);
    app.state.worker.drain().await.unwrap();
    assert_eq!(app.fake.notes().len(), 3);
    app.make_due().await;
    app.state.worker.drain().await.unwrap();
    assert_eq!(app.fake.notes().len(), 3, "found by text, not sent again");
    assert!(app.events().await.iter().all(|e| e.2 == "delivered"));
    let lookups = app
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v4/leads/notes")
        .count();
    assert_eq!(
        lookups,
        1,
        "{:?}",
        app.fake
            .requests()
            .iter()
            .map(|r| (r.method.clone(), r.path.clone(), r.status))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_worker_killed_mid_batch_is_finished_by_another_process_without_duplicates() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    for i in 0..60 {
        app.post_hook(
            &key,
            lead_hook(ID, "add", 900 + i, &format!("L{i}"), 1, &[]),
        )
        .await;
    }
    // Process A: its own pool and worker. amoCRM takes the first batch, and
    // A is killed before the answer arrives.
    let pool_a = sqlx::PgPool::connect(&app.db.url).await.unwrap();
    let api = (*app.state.api).clone();
    let tokens =
        amohook::tokens::TokenStore::new(pool_a.clone(), (*app.state.cipher).clone(), api.clone());
    let a = Worker::new(pool_a, api, tokens, chrono_tz::Europe::Moscow);
    app.fake.fail_next(
        DOMAIN,
        "/api/v4/leads/notes",
        Fault::WorkThenDelay(Duration::from_secs(30)),
        1,
    );
    let running = tokio::spawn(async move { a.drain().await });
    for _ in 0..100 {
        if !app.fake.notes().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.abort();
    assert_eq!(app.fake.notes().len(), 50, "the first batch reached amoCRM");
    // A's leases run out...
    sqlx::query("update accounts set lease_until = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query(
        "update hook_events set locked_until = now() - interval '1 second' where state = 'sending'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    // ...and process B finishes the work.
    app.state.worker.drain().await.unwrap();
    let notes = app.fake.notes();
    let mut ids: Vec<i64> = notes.iter().map(|n| n.entity_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(notes.len(), 60, "no duplicate note");
    assert_eq!(ids.len(), 60, "no note lost");
    assert!(app.events().await.iter().all(|e| e.2 == "delivered"));
}
