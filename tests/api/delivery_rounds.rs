//! Delivery's rounds: the account claim's plan, and rounds that fail giving
//! their events back (or, when they cannot, their locks running out).

use std::time::Duration;

use amohook::delivery::Worker;

use crate::helpers::{lead_hook, TestApp};

pub(crate) const DOMAIN: &str = "notes.amocrm.ru";
pub(crate) const ID: i64 = 35_000_001;

/// Both pools keep PostgreSQL's generic plans (planning every statement of
/// the main pool for its parameters spent 40% of delivery's statement time
/// on planning; docs/scaling.md), except the account claim: it is planned
/// for its parameters on every run, since a generic plan made while the
/// tables were empty made it read every due event once per account (9.5 s
/// a claim with 10,000 accounts).
#[tokio::test]
async fn only_the_account_claim_is_planned_for_its_parameters_every_time() {
    let app = TestApp::spawn_without_worker().await;
    let settings = crate::helpers::settings_from(crate::helpers::base_env(&app.db.url, &app.fake));
    let pools = amohook::db::connect(&settings.database).await.unwrap();
    for (pool, name) in [(&pools.main, "main"), (&pools.intake, "intake")] {
        let mut conn = pool.acquire().await.unwrap();
        // PostgreSQL tries a generic plan after the fifth run.
        for account_id in 0..8_i64 {
            sqlx::query("select count(*) from hook_events where account_id = $1")
                .bind(account_id)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        }
        let (generic, custom): (i64, i64) = sqlx::query_as(
            "select generic_plans, custom_plans from pg_prepared_statements
             where statement = 'select count(*) from hook_events where account_id = $1'",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert!(
            generic > 0,
            "{name}: {generic} generic, {custom} custom plans"
        );
    }

    // A worker on one connection: its prepared statements tell every run.
    let key = app.connected(DOMAIN, ID).await;
    let one = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&app.db.url)
        .await
        .unwrap();
    let worker = Worker::new(
        one.clone(),
        (*app.state.api).clone(),
        (*app.state.tokens).clone(),
        chrono_tz::Europe::Moscow,
    );
    for n in 0..8_i64 {
        let body = lead_hook(ID, "add", 600 + n, "Заказ", 1_712_331_728 + n, &[]);
        assert_eq!(app.post_hook(&key, body).await.status(), 200);
        worker.drain().await.unwrap();
        // Within the account's budget: no round waits for it.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.fake.notes().len(), 8);
    let plans: Vec<(String, i64, i64)> =
        sqlx::query_as("select statement, generic_plans, custom_plans from pg_prepared_statements")
            .fetch_all(&one)
            .await
            .unwrap();
    let plans_of = |start: &str| {
        plans
            .iter()
            .find(|(s, ..)| s.trim_start().starts_with(start))
            .map(|(_, generic, custom)| (*generic, *custom))
            .unwrap_or_else(|| panic!("no statement starting {start:?}: {plans:?}"))
    };
    let (generic, custom) = plans_of("with candidate as");
    assert!(
        generic == 0 && custom >= 8,
        "the account claim: {generic} generic, {custom} custom plans"
    );
    // Run with it, before it, on every claim.
    let (generic, custom) = plans_of("with recursive waiting");
    assert!(
        generic > 0,
        "the list of waiting accounts: {generic} generic, {custom} custom plans"
    );
}

/// Makes PostgreSQL fail every update of `entity_id`'s events that matches
/// `when` (a condition on `old` and `new`): a database failure in the middle
/// of a round, as a deadlock makes one.
pub(crate) async fn fail_updates_of(app: &TestApp, entity_id: i64, when: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "create function fail_round() returns trigger language plpgsql as $$
         begin
             if old.entity_id = {entity_id} and {when} then
                 raise exception 'the database failed this statement';
             end if;
             return new;
         end $$"
    )))
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "create trigger fail_round before update on hook_events
         for each row execute function fail_round()",
    )
    .execute(&app.pool)
    .await
    .unwrap();
}

/// Polls the state and owner of `entity_id`'s event until `seen` holds
/// them (10 s at most); whether it did.
pub(crate) async fn event_reaches(
    app: &TestApp,
    entity_id: i64,
    seen: impl Fn(&str, Option<&str>) -> bool,
) -> bool {
    for _ in 0..100 {
        let (state, owner): (String, Option<String>) =
            sqlx::query_as("select state, locked_by from hook_events where entity_id = $1")
                .bind(entity_id)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        if seen(&state, owner.as_deref()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

pub(crate) async fn stop_failing(app: &TestApp) {
    sqlx::query("drop trigger fail_round on hook_events")
        .execute(&app.pool)
        .await
        .unwrap();
}

/// A round that fails half-way (here: rendering its notes) gives its events
/// back at once, instead of leaving them claimed while the process renews
/// their locks forever (the benchmark's hang: a deadlock failed a round,
/// and its events never got their notes).
#[tokio::test]
async fn a_round_that_fails_gives_its_events_back() {
    let app = TestApp::spawn().await;
    let key = app.connected(DOMAIN, ID).await;
    fail_updates_of(&app, 601, "new.note_text is distinct from old.note_text").await;
    let body = lead_hook(ID, "add", 601, "Сделка 601", 1_712_331_728, &[]);
    assert_eq!(app.post_hook(&key, body).await.status(), 200);

    // Claimed (it has an owner), failed, and given back: due again.
    let given_back = event_reaches(&app, 601, |state, owner| {
        state == "pending" && owner.is_some()
    })
    .await;
    assert!(given_back, "the failed round's event is pending again");
    assert!(app.fake.notes().is_empty());

    stop_failing(&app).await;
    let notes = app.wait_for_notes(DOMAIN, 1).await;
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].entity_id, 601);
}

/// When even giving the events back fails, their locks run out (no process
/// renews the lock of an event no round is working on), and the events are
/// delivered once the database works again.
#[tokio::test]
async fn events_a_failed_round_could_not_give_back_are_delivered_after_their_lock() {
    let app = TestApp::spawn().await;
    let key = app.connected(DOMAIN, ID).await;
    // Every update of the event once claimed fails: rendering, giving it
    // back, and renewing its lock.
    fail_updates_of(&app, 602, "old.state = 'sending'").await;
    let body = lead_hook(ID, "add", 602, "Сделка 602", 1_712_331_728, &[]);
    assert_eq!(app.post_hook(&key, body).await.status(), 200);
    assert!(event_reaches(&app, 602, |state, _| state == "sending").await);
    // The round fails at once; stop failing after it did.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_failing(&app).await;

    // The lock (15 s) runs out and the event is claimed again.
    let notes = app.wait_for_notes(DOMAIN, 1).await;
    assert_eq!(notes[0].entity_id, 602);
    let delivered = event_reaches(&app, 602, |state, _| state == "delivered").await;
    assert!(delivered, "the event is marked delivered");
}
