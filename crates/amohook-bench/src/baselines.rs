//! The baselines ingest is measured against, on the same machine and
//! database, at the same concurrency, once amohook is idle:
//!
//! - **plain**: pgbench's single-row INSERT of a text column the size of a
//!   hook body into a table with a primary key only: the plainest durable
//!   store of the same bytes, and the figure docs/benchmark.md leads with;
//! - **schema**: single-row INSERTs (the bench's own, and pgbench's) of a
//!   stored event into a table shaped like `hook_events` (its columns,
//!   checks, unique key and indexes): amohook against its own schema.

use std::{
    process::Command,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use sqlx::PgPool;

/// The row the schema baselines write: a stored event of `body` (one of the
/// ingest phase's hooks), its snapshot as amohook stores it.
fn event_snapshot(body: &str) -> anyhow::Result<String> {
    let hook = amohook::amocrm::hooks::parse(body.as_bytes())
        .map_err(|e| anyhow::anyhow!("the bench's own hook does not parse: {e}"))?;
    let event = hook
        .events
        .first()
        .context("the bench's hook holds a card")?;
    Ok(serde_json::to_string(&event.snapshot)?)
}

/// A table shaped like `hook_events` (its columns, checks, unique key and
/// indexes; not its foreign key), for the baselines to insert into.
async fn create_raw_table(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("drop table if exists bench_raw")
        .execute(pool)
        .await?;
    sqlx::query(
        "create table bench_raw (like hook_events including defaults including constraints including indexes)",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Single-row INSERTs of stored-event rows from `concurrency` connections
/// (one each: the pool holds exactly that many, checked), `rows` in all.
pub(crate) async fn raw_insert_rate(
    db_url: &str,
    concurrency: usize,
    rows: usize,
    body: &str,
) -> anyhow::Result<f64> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(concurrency as u32)
        .min_connections(concurrency as u32)
        .connect(db_url)
        .await?;
    // The baseline runs at the stated concurrency, not at a default pool
    // size: a smaller pool would make a weaker baseline.
    for _ in 0..50 {
        if pool.size() as usize >= concurrency {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if pool.size() as usize != concurrency {
        bail!(
            "the raw INSERT pool holds {} connections, not {concurrency}",
            pool.size()
        );
    }
    create_raw_table(&pool).await?;
    let snapshot = Arc::new(event_snapshot(body)?);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (pool, next, snapshot) = (pool.clone(), next.clone(), snapshot.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= rows {
                    break;
                }
                sqlx::query(
                    "insert into bench_raw (account_id, entity_type, entity_id, action, changed_at,
                                            snapshot, snapshot_digest)
                     values ($1, 'lead', $2, 'add', 1712331728, $3::jsonb, $4)",
                )
                .bind(60_000_000_i64 + (n % 100) as i64)
                .bind(1_000_000_i64 + n as i64)
                .bind(snapshot.as_str())
                .bind(n as i64)
                .execute(&pool)
                .await?;
            }
            Ok::<_, sqlx::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    pool.close().await;
    Ok(rate)
}

/// PostgreSQL's own `pgbench` doing the schema baseline's single-row
/// INSERT of `body`'s stored event from `concurrency` clients for
/// `seconds`. None when there is no pgbench.
pub(crate) fn pgbench_schema_rate(
    db_url: &str,
    concurrency: usize,
    seconds: u64,
    body: &str,
) -> anyhow::Result<Option<f64>> {
    let snapshot = event_snapshot(body)?.replace('\'', "''");
    pgbench(
        db_url,
        concurrency,
        seconds,
        &format!(
            "\\set id random(1, 1000000000000)\n\
             insert into bench_raw (account_id, entity_type, entity_id, action, changed_at, \
             snapshot, snapshot_digest) values (60000000 + :id % 100, 'lead', :id, 'add', \
             1712331728, '{snapshot}'::jsonb, :id) on conflict do nothing;\n"
        ),
    )
}

/// The plain baseline: pgbench's single-row INSERT of `body` itself (the
/// bytes of a hook) into `bench_plain (id bigserial primary key, body text)`,
/// from `concurrency` clients for `seconds`: what storing a hook durably
/// costs with nothing of amohook's around it. None when there is no
/// pgbench.
pub(crate) async fn pgbench_plain_rate(
    db_url: &str,
    concurrency: usize,
    seconds: u64,
    body: &str,
) -> anyhow::Result<Option<f64>> {
    let pool = PgPool::connect(db_url).await?;
    sqlx::query("drop table if exists bench_plain")
        .execute(&pool)
        .await?;
    sqlx::query("create table bench_plain (id bigserial primary key, body text not null)")
        .execute(&pool)
        .await?;
    let body = body.replace('\'', "''");
    let rate = pgbench(
        db_url,
        concurrency,
        seconds,
        &format!("insert into bench_plain (body) values ('{body}');\n"),
    );
    sqlx::query("drop table if exists bench_plain")
        .execute(&pool)
        .await?;
    pool.close().await;
    rate
}

/// Runs `script` with pgbench; its transactions per second.
fn pgbench(
    db_url: &str,
    concurrency: usize,
    seconds: u64,
    script: &str,
) -> anyhow::Result<Option<f64>> {
    if Command::new("pgbench").arg("--version").output().is_err() {
        eprintln!("pgbench is not installed: its baselines are left out");
        return Ok(None);
    }
    let file = std::env::temp_dir().join(format!(
        "amohook-bench-{}-{}.sql",
        std::process::id(),
        script.len()
    ));
    std::fs::write(&file, script)?;
    let output = Command::new("pgbench")
        .args(["-n", "-c", &concurrency.to_string(), "-j", "2", "-T"])
        .arg(seconds.max(5).to_string())
        .arg("-f")
        .arg(&file)
        .arg(db_url)
        .output()
        .context("running pgbench")?;
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "pgbench failed: {}{}",
            text,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // "tps = 5123.45 (without initial connection time)"
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse::<f64>().ok())
        .context("pgbench printed no tps")?;
    Ok(Some(tps))
}
