//! Receiving: POST /hooks/{hook_key}.

use crate::helpers::{form, lead_hook, TestApp};

const DOMAIN: &str = "hooks.amocrm.ru";
const ID: i64 = 34_000_001;

async fn count(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from hook_events")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_hook_is_answered_200_once_its_events_are_stored() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    let body = form(&[
        ("account[id]", "34000001"),
        ("leads[add][0][id]", "1"),
        ("leads[add][0][name]", "Первая"),
        ("leads[add][0][created_at]", "100"),
        ("leads[add][1][id]", "2"),
        ("leads[add][1][name]", "Вторая"),
        ("leads[add][1][created_at]", "100"),
        ("contacts[update][0][id]", "3"),
        ("contacts[update][0][type]", "company"),
        ("contacts[update][0][updated_at]", "100"),
    ]);
    let response = app.post_hook(&key, body).await;
    assert_eq!(response.status(), 200);
    let rows: Vec<(String, i64, String, String)> = sqlx::query_as(
        "select entity_type, entity_id, action, state from hook_events order by entity_id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            ("lead".into(), 1, "add".into(), "pending".into()),
            ("lead".into(), 2, "add".into(), "pending".into()),
            ("company".into(), 3, "update".into(), "pending".into()),
        ]
    );
}

#[tokio::test]
async fn a_resent_hook_is_stored_once() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    let body = lead_hook(ID, "update", 7, "Сделка", 1_700_000_000, &[]);
    for _ in 0..3 {
        assert_eq!(app.post_hook(&key, body.clone()).await.status(), 200);
    }
    assert_eq!(count(&app).await, 1);
    // A later change of the same card is a new event.
    let later = lead_hook(ID, "update", 7, "Сделка", 1_700_000_060, &[]);
    assert_eq!(app.post_hook(&key, later).await.status(), 200);
    assert_eq!(count(&app).await, 2);
}

#[tokio::test]
async fn a_hook_url_with_a_trailing_slash_is_the_same_hook_url() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    let body = lead_hook(ID, "add", 1, "x", 1, &[]);
    assert_eq!(
        app.post_hook(&format!("{key}/"), body.clone())
            .await
            .status(),
        200
    );
    // The same hook again, without the slash: a duplicate, stored once.
    let again = app.post_hook(&key, body).await;
    assert_eq!(
        again.json::<serde_json::Value>().await.unwrap()["stored"],
        0
    );
    assert_eq!(count(&app).await, 1);
    assert_eq!(
        app.post_hook("not-a-key/", lead_hook(ID, "add", 2, "x", 1, &[]))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn an_unknown_key_gets_404() {
    let app = TestApp::spawn_without_worker().await;
    app.connected(DOMAIN, ID).await;
    let body = lead_hook(ID, "add", 1, "x", 1, &[]);
    assert_eq!(app.post_hook("not-a-key", body.clone()).await.status(), 404);
    assert_eq!(app.post_hook(&"k".repeat(500), body).await.status(), 404);
    assert_eq!(count(&app).await, 0);
}

#[tokio::test]
async fn a_body_about_another_account_gets_403_and_nothing_is_stored() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    app.connected("other.amocrm.ru", ID + 1).await;
    let response = app
        .post_hook(&key, lead_hook(ID + 1, "add", 1, "x", 1, &[]))
        .await;
    assert_eq!(response.status(), 403);
    let wrong_subdomain = form(&[
        ("account[subdomain]", "other"),
        ("leads[add][0][id]", "1"),
        ("leads[add][0][created_at]", "1"),
    ]);
    assert_eq!(app.post_hook(&key, wrong_subdomain).await.status(), 403);
    let right_subdomain = form(&[
        ("account[subdomain]", "hooks"),
        ("leads[add][0][id]", "1"),
        ("leads[add][0][created_at]", "1"),
    ]);
    assert_eq!(app.post_hook(&key, right_subdomain).await.status(), 200);
    assert_eq!(count(&app).await, 1);
}

#[tokio::test]
async fn a_body_that_is_not_a_hook_gets_400_with_a_reason() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    for (body, reason) in [
        (
            "account[id]=34000001&leads[add][0][name]=x&leads[add][0][created_at]=1",
            "without an id",
        ),
        ("garbage without any account", "no account"),
        ("account[id]=abc", "not a number"),
        (
            "account[id]=34000001&a[b]=1&a[b][c]=2",
            "not a form-encoded amoCRM hook",
        ),
        (
            "account[id]=34000001&leads[add][0][id]=-5&leads[add][0][created_at]=1",
            "id must be a positive number",
        ),
        ("account[id]=0", "must be a positive number"),
    ] {
        let response = app.post_hook(&key, body.into()).await;
        assert_eq!(response.status(), 400, "{body}");
        let json: serde_json::Value = response.json().await.unwrap();
        assert!(json["message"].as_str().unwrap().contains(reason), "{json}");
    }
    assert_eq!(count(&app).await, 0);
}

#[tokio::test]
async fn a_body_over_one_mebibyte_gets_413() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    let body = format!("account[id]={ID}&x={}", "a".repeat(1024 * 1024 + 1));
    assert_eq!(app.post_hook(&key, body).await.status(), 413);
    assert_eq!(count(&app).await, 0);
}

#[tokio::test]
async fn other_entities_and_actions_are_acknowledged_and_ignored() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    let body = form(&[
        ("account[id]", "34000001"),
        ("tasks[add][0][id]", "1"),
        ("leads[delete][0][id]", "2"),
        ("customers[update][0][id]", "3"),
    ]);
    assert_eq!(app.post_hook(&key, body).await.status(), 200);
    assert_eq!(count(&app).await, 0);
}

#[tokio::test]
async fn when_storage_fails_the_answer_is_503_and_a_resend_is_stored() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    sqlx::query("alter table hook_events rename to hook_events_away")
        .execute(&app.pool)
        .await
        .unwrap();
    let body = lead_hook(ID, "add", 1, "x", 1, &[]);
    assert_eq!(
        app.post_hook(&key, body.clone()).await.status(),
        503,
        "never 200 for a hook not stored"
    );
    sqlx::query("alter table hook_events_away rename to hook_events")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(app.post_hook(&key, body).await.status(), 200);
    assert_eq!(count(&app).await, 1);
}

#[tokio::test]
async fn hooks_of_a_disconnected_account_are_recorded_as_dropped() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    amohook::accounts::disconnect(&app.pool, ID).await.unwrap();
    assert_eq!(
        app.post_hook(&key, lead_hook(ID, "add", 1, "x", 1, &[]))
            .await
            .status(),
        200
    );
    let events = app.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].2, "dropped");
    app.state.worker.drain().await.unwrap();
    assert!(app.fake.notes().is_empty());
}

#[tokio::test]
async fn finished_events_past_the_retention_age_are_deleted_and_nothing_else() {
    // The process's own hourly prune (its first runs at start) keeps
    // everything, so that only the calls below delete.
    let app = TestApp::spawn_with(|env| {
        env.insert("AMOHOOK_WORKER__CONCURRENCY".into(), "0".into());
        env.insert("AMOHOOK_RETENTION__DAYS".into(), "0".into());
    })
    .await;
    let key = app.connected(DOMAIN, ID).await;
    for i in 1..=6 {
        app.post_hook(&key, lead_hook(ID, "add", i, "x", 1, &[]))
            .await;
    }
    // 1-4 finished long ago (each kind of finish), 5 finished recently,
    // 6 still pending although old.
    sqlx::query(
        "update hook_events set
             state = (array['delivered', 'skipped', 'dropped', 'failed', 'delivered', 'pending'])[entity_id],
             received_at = now() - interval '40 days',
             finished_at = case when entity_id < 5 then now() - interval '31 days'
                                when entity_id = 5 then now() - interval '1 day' end",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        amohook::retention::prune_events(&app.pool, 0)
            .await
            .unwrap(),
        0,
        "0 keeps all"
    );
    assert_eq!(
        amohook::retention::prune_events(&app.pool, 30)
            .await
            .unwrap(),
        4
    );
    let left: Vec<i64> = sqlx::query_scalar("select entity_id from hook_events order by entity_id")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(left, [5, 6]);
}

#[tokio::test]
async fn concurrent_hooks_share_commits_and_each_change_is_stored_once() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    // Ten changes, each sent five times, all at once: many land in the same
    // group commit, some as duplicates of each other.
    let mut sends = Vec::new();
    for _copy in 0..5 {
        for card in 0..10 {
            let body = lead_hook(ID, "add", 100 + card, "x", 1, &[]);
            let http = app.http.clone();
            let url = app.url(&format!("/hooks/{key}"));
            sends.push(tokio::spawn(async move {
                let r = http
                    .post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.json::<serde_json::Value>().await.unwrap()["stored"]
                    .as_u64()
                    .unwrap()
            }));
        }
    }
    let mut stored = 0;
    for send in sends {
        stored += send.await.unwrap();
    }
    assert_eq!(stored, 10, "each change is reported stored exactly once");
    assert_eq!(count(&app).await, 10);
}

/// A hook of many cards (here 3,000, a body past the size parsed inline)
/// is written in parts of `inbox::MAX_ROWS` rows, between other hooks, and
/// answered once every part is committed, with the new rows of all parts.
#[tokio::test]
async fn a_hook_of_more_cards_than_amocrm_sends_gets_413_and_nothing_is_stored() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    let cards = |n: usize, action: &str| {
        let mut body = format!("account%5Bid%5D={ID}");
        for i in 0..n {
            body.push_str(&format!(
                "&leads%5B{action}%5D%5B{i}%5D%5Bid%5D={}",
                1000 + i
            ));
        }
        body
    };
    let limit = amohook::http::hooks::MAX_CARDS_PER_HOOK;
    let over = app.post_hook(&key, cards(limit + 1, "add")).await;
    assert_eq!(over.status(), 413);
    let message = over.json::<serde_json::Value>().await.unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains(&format!("{}", limit + 1)), "{message}");
    assert_eq!(count(&app).await, 0);
    // Cards amohook makes no note of count too (they are parsed all the
    // same) ...
    let ignored = app.post_hook(&key, cards(limit + 1, "delete")).await;
    assert_eq!(ignored.status(), 413);
    // ... and a hook at the limit is taken.
    let at = app.post_hook(&key, cards(limit, "add")).await;
    assert_eq!(at.status(), 200);
    assert_eq!(count(&app).await, limit as i64);
}

#[tokio::test]
async fn a_hook_of_thousands_of_cards_is_stored_in_parts_and_answered_once() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    let other = app.connected("other.amocrm.ru", 34_000_002).await;
    let cards = |n: usize| {
        let mut body = format!("account%5Bid%5D={ID}");
        for i in 0..n {
            // With a time of its own: a card without one takes the time it
            // was received, and the same card a second later is a new change.
            body.push_str(&format!(
                "&leads%5Badd%5D%5B{i}%5D%5Bid%5D={}&leads%5Badd%5D%5B{i}%5D%5Bcreated_at%5D=100",
                1000 + i
            ));
        }
        body
    };
    let first = app.post_hook(&key, cards(1000)).await;
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.json::<serde_json::Value>().await.unwrap()["stored"],
        1000
    );

    let big = cards(3000);
    assert!(big.len() > 64 * 1024 && 3000 > amohook::inbox::MAX_ROWS * 10);
    let beside = lead_hook(34_000_002, "add", 5, "Рядом", 100, &[]);
    let (big, beside) = tokio::join!(app.post_hook(&key, big), app.post_hook(&other, beside));
    assert_eq!(beside.status(), 200);
    assert_eq!(big.status(), 200);
    let answer = big.json::<serde_json::Value>().await.unwrap();
    assert_eq!(answer["events"], 3000);
    assert_eq!(answer["stored"], 2000, "new rows counted over every part");
    assert_eq!(count(&app).await, 3001);
}
