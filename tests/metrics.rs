//! /metrics after known traffic. A test binary of its own, so no other
//! test's traffic reaches the process-wide recorder.

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use helpers::{lead_hook, TestApp};

const TOKEN: &str = "metrics-admin-token-0123456789";

fn value(metrics: &str, line_start: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric line starting with {line_start:?} in:\n{metrics}"))
}

#[tokio::test]
async fn metrics_count_hooks_notes_calls_refreshes_and_the_queue() {
    let app = TestApp::spawn_with(|env| {
        env.insert("AMOHOOK_ADMIN__TOKEN".into(), TOKEN.into());
        env.insert("AMOHOOK_WORKER__CONCURRENCY".into(), "0".into());
    })
    .await;
    let domain = "metrics.amocrm.ru";
    let key = app.connected(domain, 39_000_001).await;
    for i in 1..=3 {
        // The third has a field of an unknown shape: skipped, hook kept.
        let odd: &[(&str, &str)] = if i == 3 {
            &[("old_status_id", "abc")]
        } else {
            &[]
        };
        // The second also deletes two leads, which amohook does not note.
        let mut body = lead_hook(39_000_001, "add", i, "x", 1, odd);
        if i == 2 {
            body.push_str(
                "&leads%5Bdelete%5D%5B0%5D%5Bid%5D=90&leads%5Bdelete%5D%5B1%5D%5Bid%5D=91",
            );
        }
        assert_eq!(app.post_hook(&key, body).await.status(), 200);
    }
    app.post_hook(&key, lead_hook(39_000_001, "add", 1, "x", 1, &[]))
        .await; // duplicate
    app.post_hook("unknown-key", lead_hook(39_000_001, "add", 1, "x", 1, &[]))
        .await;
    app.post_hook(&key, "leads[add]=broken".into()).await;
    // A 401 on the first call of the round (the users list): one refresh,
    // then the list and one batch of notes.
    app.fake.expire_access_tokens(domain);
    app.state.worker.drain().await.unwrap();
    assert_eq!(app.fake.notes().len(), 3);
    // Two more wait in the queue.
    app.post_hook(&key, lead_hook(39_000_001, "add", 7, "x", 1, &[]))
        .await;
    app.post_hook(&key, lead_hook(39_000_001, "add", 8, "x", 1, &[]))
        .await;

    let response = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let m = response.text().await.unwrap();
    assert_eq!(
        value(&m, r#"amohook_hooks_received_total{result="stored"}"#),
        5.0
    );
    assert_eq!(
        value(&m, r#"amohook_hooks_received_total{result="duplicate"}"#),
        1.0
    );
    assert_eq!(
        value(&m, r#"amohook_hooks_received_total{result="unknown_key"}"#),
        1.0
    );
    assert_eq!(
        value(&m, r#"amohook_hooks_received_total{result="invalid"}"#),
        1.0
    );
    assert_eq!(value(&m, "amohook_hook_answer_seconds_count"), 8.0);
    assert_eq!(value(&m, "amohook_hook_fields_skipped_total"), 1.0);
    assert_eq!(
        value(
            &m,
            r#"amohook_hook_cards_ignored_total{entity="leads",action="delete"}"#
        ),
        2.0
    );
    assert_eq!(value(&m, "amohook_notes_delivered_total"), 3.0);
    assert_eq!(
        value(
            &m,
            r#"amohook_token_refreshes_total{result="ok",integration="amocrm"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            r#"amohook_amocrm_requests_total{endpoint="users",platform="amocrm",status="401"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            r#"amohook_amocrm_requests_total{endpoint="users",platform="amocrm",status="200"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            r#"amohook_amocrm_requests_total{endpoint="notes",platform="amocrm",status="200"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            r#"amohook_amocrm_requests_total{endpoint="token",platform="amocrm",status="200"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &m,
            r#"amohook_amocrm_request_seconds_count{endpoint="notes"}"#
        ),
        1.0
    );
    assert_eq!(value(&m, r#"amohook_events{state="pending"}"#), 2.0);
    assert_eq!(value(&m, "amohook_queue_depth"), 2.0);
    assert!(value(&m, "amohook_oldest_pending_age_seconds") >= 0.0);
    assert!(m.contains("amohook_hook_answer_seconds_bucket{le=\"0.05\"}"));
}
