//! Delivery's claims: among idle accounts only the due ones are read, and
//! delivery steps back while intake is busy.

use crate::helpers::{lead_hook, TestApp};
use amohook::delivery::Worker;
use std::time::Duration;

use crate::delivery_rounds::*;

/// One account due among many idle ones (the one just served, working off
/// its backlog): the claim looks at the due account's events, not at every
/// account. Walking every account in service order cost 21 ms a claim with
/// 10,000 accounts, on every turn.
#[tokio::test]
async fn a_claim_among_idle_accounts_reads_only_the_due_ones() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    sqlx::query(
        "insert into accounts (account_id, domain, subdomain, hook_key_sha256, hook_key, last_served_at)
         select i, 'idle' || i || '.amocrm.ru', 'idle' || i, 'idle' || i, decode('00', 'hex'),
                now() - interval '1 hour'
         from generate_series(1, 2000) i",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("update accounts set last_served_at = now() where account_id = $1")
        .bind(ID)
        .execute(&app.pool)
        .await
        .unwrap();
    // A backlog over every account, analyzed while pending, then worked
    // off: PostgreSQL's statistics still say many events are due (as
    // after the benchmark's ingest), which made the claim walk accounts.
    for statement in [
        "insert into hook_events (account_id, entity_type, entity_id, action, changed_at, snapshot)
         select 1 + i % 2000, 'lead', i, 'add', 1, '{}' from generate_series(1, 4000) i",
        "analyze hook_events",
        "update hook_events set state = 'delivered', finished_at = now()",
    ] {
        sqlx::query(statement).execute(&app.pool).await.unwrap();
    }
    let body = lead_hook(ID, "add", 801, "Сделка 801", 1_712_331_728, &[]);
    assert_eq!(app.post_hook(&key, body).await.status(), 200);

    // A worker on connections of its own: closing them makes PostgreSQL
    // count their index scans.
    let settings = crate::helpers::settings_from(crate::helpers::base_env(&app.db.url, &app.fake));
    let pools = amohook::db::connect(&settings.database).await.unwrap();
    let scans = || async {
        sqlx::query_scalar::<_, i64>(
            "select idx_scan from pg_stat_user_indexes where indexrelname = 'hook_events_due'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap()
    };
    let before = scans().await;
    let worker = Worker::new(
        pools.main.clone(),
        (*app.state.api).clone(),
        (*app.state.tokens).clone(),
        chrono_tz::UTC,
    );
    assert!(worker.work_once().await.unwrap(), "the account was served");
    assert_eq!(app.fake.notes().len(), 1);
    pools.main.close().await;
    pools.intake.close().await;
    // A closed connection's counts arrive as its server process ends.
    let mut most = 0;
    for _ in 0..20 {
        most = most.max(scans().await - before);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        most < 100,
        "{most} scans of the due-events index for one account's turn"
    );
}

/// While many hooks are in flight, one delivery round at a time is under
/// way: intake's answers come first on a shared machine. Once the hooks
/// calm down, rounds run up to the limit of turns again.
#[tokio::test]
async fn delivery_steps_back_while_many_hooks_are_in_flight() {
    use amohook::hooks_in_flight::CALM_AFTER;
    use std::sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    };
    use std::time::Instant;

    const BUSY_ID: i64 = 36_100_000;
    const BUSY_TOO: i64 = 36_100_001;
    // 8 turns at most.
    let app = TestApp::spawn_with(|env| {
        env.insert("AMOHOOK_WORKER__CONCURRENCY".into(), "8".into());
    })
    .await;
    let quiet: Vec<(String, i64)> = (1..=8)
        .map(|n| (format!("quiet{n}.amocrm.ru"), 36_000_000 + n))
        .collect();
    let mut keys = Vec::new();
    for (domain, id) in &quiet {
        keys.push(app.connected(domain, *id).await);
    }
    // The busy accounts' hooks take a while to store (20 ms a row) and 12
    // senders keep sending them: intake stays busy (it takes two accounts,
    // see `hooks_in_flight::ACCOUNT_SHARE`). Their own events wait
    // (paused), so that the turns are the quiet accounts' only.
    let busy_keys = [
        app.connected("busy.amocrm.ru", BUSY_ID).await,
        app.connected("busy2.amocrm.ru", BUSY_TOO).await,
    ];
    sqlx::query("update accounts set manual_pause = true where account_id in ($1, $2)")
        .bind(BUSY_ID)
        .bind(BUSY_TOO)
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query(
        "create function slow_busy_hooks() returns trigger language plpgsql as $$
         begin
             if new.account_id in (36100000, 36100001) then perform pg_sleep(0.02); end if;
             return new;
         end $$",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "create trigger slow_busy_hooks before insert on hook_events
         for each row execute function slow_busy_hooks()",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for sender in 0..12i64 {
        let (account, key) = if sender % 2 == 0 {
            (BUSY_ID, &busy_keys[0])
        } else {
            (BUSY_TOO, &busy_keys[1])
        };
        let (http, url, stop) = (
            app.http.clone(),
            app.url(&format!("/hooks/{key}")),
            stop.clone(),
        );
        senders.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = lead_hook(account, "add", sender * 100_000 + n, "Busy", 1, &[]);
                let _ = http
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await;
            }
        }));
    }
    let in_flight = app.state.intake.in_flight.clone();
    for _ in 0..100 {
        if in_flight.busy() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(in_flight.busy(), "12 slow senders make intake busy");

    // Every request to amoCRM takes 300 ms: a turn has one under way at a
    // time, so note requests that arrive close together come from as many
    // turns.
    app.fake.set_latency(Duration::from_millis(300));
    let note_posts = || -> Vec<Instant> {
        let mut at: Vec<_> = app
            .fake
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == "/api/v4/leads/notes")
            .filter(|r| quiet.iter().any(|(d, _)| *d == r.domain))
            .map(|r| r.at)
            .collect();
        at.sort();
        at
    };
    // The most note requests that arrived within 200 ms of one another.
    let most_at_once = |at: &[Instant]| amocrm_sim::most_within(at, Duration::from_millis(200));
    // One hook for each quiet account, sent together: they are stored in
    // one commit, whose announcements wake the dispatcher at once.
    let sends = quiet.iter().zip(&keys).map(|((_, id), key)| {
        app.post_hook(key, lead_hook(*id, "add", 700, "Lead", 1_712_331_728, &[]))
    });
    for answer in futures_util::future::join_all(sends).await {
        assert_eq!(answer.status(), 200);
    }
    for (domain, _) in &quiet {
        app.wait_for_notes(domain, 1).await;
    }
    assert!(in_flight.busy(), "intake was busy throughout");
    let busy_posts = note_posts();
    assert_eq!(busy_posts.len(), 8, "one note request per quiet account");
    assert!(
        most_at_once(&busy_posts) <= 1,
        "while intake is busy, one round at a time: {} note requests at once",
        most_at_once(&busy_posts)
    );

    // Intake calms down: rounds run up to the limit of turns again.
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
    tokio::time::sleep(CALM_AFTER * 2).await;
    assert!(!in_flight.busy(), "calm once the senders stopped");
    // Sent one after another: eight at once would make intake busy again.
    for ((_, id), key) in quiet.iter().zip(&keys) {
        let body = lead_hook(*id, "add", 701, "Lead", 1_712_331_728, &[]);
        assert_eq!(app.post_hook(key, body).await.status(), 200);
    }
    for (domain, _) in &quiet {
        app.wait_for_notes(domain, 2).await;
    }
    let calm_posts = note_posts().split_off(8);
    assert!(
        most_at_once(&calm_posts) > 2,
        "once intake is calm, more than two turns deliver: {}",
        most_at_once(&calm_posts)
    );
}

/// A turn whose lease could not be given back (the database failing at
/// that moment, as during a PostgreSQL restart) keeps its account no longer
/// than the lease lasts: the heartbeat renews only the leases of turns
/// under way, so the lease runs out and the account's next hooks are noted.
/// (Before, the heartbeat renewed every lease the process held, for as long
/// as it lived: the `postgres` drill lost 790 notes that way.)
#[tokio::test]
async fn a_lease_that_could_not_be_given_back_runs_out_and_its_account_is_served_again() {
    let app = TestApp::spawn().await;
    let key = app.connected("lease.amocrm.ru", 35_000_101).await;
    // The next give-back of a lease fails.
    for statement in [
        "create sequence give_backs",
        "create function fail_give_back() returns trigger language plpgsql as $$
         begin
             if old.lease_owner is not null and new.lease_owner is null
                and nextval('give_backs') = 1 then
                 raise exception 'simulated database failure';
             end if;
             return new;
         end $$",
        "create trigger fail_give_back before update on accounts
         for each row execute function fail_give_back()",
    ] {
        sqlx::query(statement).execute(&app.pool).await.unwrap();
    }
    let first = lead_hook(35_000_101, "add", 1, "Первая", 1_712_331_728, &[]);
    assert_eq!(app.post_hook(&key, first).await.status(), 200);
    app.wait_for_notes("lease.amocrm.ru", 1).await;
    // The turn ended and its give-back failed: the lease is still held.
    for _ in 0..100 {
        let tried: bool = sqlx::query_scalar("select is_called from give_backs")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        if tried {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held: Option<String> =
        sqlx::query_scalar("select lease_owner from accounts where account_id = 35000101")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(held.is_some(), "the give-back failed");

    // The next hook is noted once the lease has run out (15 s), not never.
    let second = lead_hook(35_000_101, "add", 2, "Вторая", 1_712_331_790, &[]);
    assert_eq!(app.post_hook(&key, second).await.status(), 200);
    for _ in 0..400 {
        if app.fake.notes().len() == 2 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the account was never served again: {:?}",
        app.events().await
    );
}
