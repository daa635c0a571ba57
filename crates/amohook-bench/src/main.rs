//! amohook-bench: measures a real `amohook serve` process against the
//! amoCRM simulator and a fresh PostgreSQL database, and prints a table and
//! JSON.
//!
//! It installs N accounts through the real install flow, then measures:
//! ingest (hooks answered per second at a concurrency, latency), the same
//! database's raw single-row INSERT rate at that concurrency, delivery of a
//! saturated account against the ceiling requests_per_second x 50, the time
//! from a hook's 200 to its note at light load and under saturation, and the
//! server's peak memory.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use amocrm_sim::{HookBody, SimCard, Simulator};
use anyhow::bail;
use clap::Parser;
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};

const CLIENT_ID: &str = "bench-client";
const CLIENT_SECRET: &str = "bench-client-secret-0123456789";
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";

mod baselines;
mod bodies;
#[cfg(test)]
mod documented;
mod drills;
mod load;
mod measure;
mod report;
mod server;
mod spread;

pub(crate) use load::{hook_targets, install, send_all, wait_notes};
pub(crate) use measure::*;
pub(crate) use report::print_report;
pub(crate) use server::{client, free_port, wait_ready, Server};

#[derive(Parser, Debug)]
#[command(
    about = "Benchmark a real amohook process against the amoCRM simulator, or run a fault drill"
)]
struct Args {
    #[command(subcommand)]
    drill: Option<drills::Command>,
    /// Accounts to install before measuring.
    #[arg(long, default_value_t = 100)]
    accounts: usize,
    /// Hooks to send in the ingest phase.
    #[arg(long, default_value_t = 20000)]
    hooks: usize,
    /// The ingest phase's hooks: shaped like amoCRM's (a 1.9 KB lead update
    /// by default), or the old bare lead add.
    #[arg(long, value_enum, default_value_t = bodies::Body::Lead)]
    body: bodies::Body,
    /// Concurrent senders in the ingest and INSERT phases.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Hooks sent at once to one account in the saturation phase.
    #[arg(long, default_value_t = 2000)]
    saturate: usize,
    /// Hooks sent one by one in the light-load end-to-end phase.
    #[arg(long, default_value_t = 50)]
    light: usize,
    /// The simulator's answer latency.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// amocrm.requests_per_second for amohook, and the simulator's 429 limit.
    #[arg(long, default_value_t = 7)]
    rps: usize,
    /// Code exchanges per second the benchmark's server allows
    /// (`install.exchanges_per_second`, at most 50): the default 5 guards
    /// amoCRM against forged installs and would take over half an hour to
    /// install 10,000 accounts. Drills keep the default.
    #[arg(long, default_value_t = 50)]
    install_rate: u32,
    /// A PostgreSQL URL the bench may create databases with.
    #[arg(
        long,
        env = "AMOHOOK_TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    admin_url: String,
    /// The amohook binary (default: next to this one).
    #[arg(long)]
    amohook: Option<PathBuf>,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Measure ingest and the baselines only, with the server's delivery
    /// switched off (`worker.concurrency = 0`): what intake alone costs.
    #[arg(long)]
    ingest_only: bool,
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// A lead added, as amoCRM sends it (the simulator's builder).
pub(crate) fn hook_body(account_id: i64, entity_id: i64) -> String {
    let lead = SimCard::lead(entity_id, &format!("Заказ #{entity_id}"));
    HookBody::new(account_id).card("add", &lead, None).encode()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let amohook = match &args.amohook {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("amohook"),
    };
    if !amohook.exists() {
        bail!(
            "{} not found: build it first (cargo build --release --bins)",
            amohook.display()
        );
    }

    // A fresh database for this run.
    let db_name = format!("amohook_bench_{}", std::process::id());
    let mut db_url = url::Url::parse(&args.admin_url)?;
    db_url.set_path(&db_name);
    let sim = Simulator::start(CLIENT_ID, CLIENT_SECRET).await?;
    sim.set_latency(Duration::from_millis(args.latency_ms));
    sim.set_rate_limit(args.rps);

    let port = free_port()?;
    let install_gate = [
        (
            "AMOHOOK_INSTALL__EXCHANGES_PER_SECOND",
            args.install_rate.to_string(),
        ),
        ("AMOHOOK_INSTALL__CONCURRENT_EXCHANGES", "16".to_owned()),
    ];
    // The drills run on the server's defaults, except that those that
    // install many accounts need the faster gate.
    let mut env: Vec<(&str, String)> = match &args.drill {
        Some(drill) if !drill.installs_many() => Vec::new(),
        _ => install_gate.to_vec(),
    };
    if args.ingest_only {
        env.push(("AMOHOOK_WORKER__CONCURRENCY", "0".to_owned()));
    }
    let server = Server::spawn_with(&amohook, db_url.as_str(), &sim, args.rps, port, &env)?;
    let http = client(args.concurrency);
    wait_ready(&http, &server.base).await?;
    eprintln!("amohook is up on {}", server.base);

    let result = match &args.drill {
        Some(drills::Command::Spread {
            rate,
            seconds,
            call_ms,
        }) => {
            spread::spread(
                &server,
                &sim,
                &http,
                args.accounts,
                *rate,
                *seconds,
                call_ms.unwrap_or(args.latency_ms),
            )
            .await
        }
        Some(drills::Command::SlowTenant {
            slow,
            healthy,
            rate,
            seconds,
        }) => spread::slow_tenant(&server, &sim, &http, *slow, *healthy, *rate, *seconds).await,
        Some(drill) => {
            drills::run(
                drill,
                &amohook,
                db_url.as_str(),
                args.rps,
                server,
                &sim,
                &http,
            )
            .await
        }
        None => {
            let report = run(&args, &server, &sim, &http, db_url.as_str()).await;
            drop(server);
            report
        }
    };
    drop_database(&args.admin_url, &db_name).await;
    let report = result?;
    if args.drill.is_some() {
        println!("{}", serde_json::to_string(&report)?);
        if report["pass"] != true {
            bail!("the drill failed");
        }
        return Ok(());
    }
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

async fn drop_database(admin_url: &str, name: &str) {
    if let Ok(mut conn) = PgConnection::connect(admin_url).await {
        let _ = sqlx::query(AssertSqlSafe(format!(
            "drop database if exists \"{name}\" with (force)"
        )))
        .execute(&mut conn)
        .await;
    }
}

/// Installs accounts through /install and the callback; returns
/// (account id, domain, hook URL).
/// Where to post each installed account's hooks: its id and hook URL.
async fn run(
    args: &Args,
    server: &Server,
    sim: &Simulator,
    http: &reqwest::Client,
    db_url: &str,
) -> anyhow::Result<serde_json::Value> {
    let t = Instant::now();
    let accounts = install(http, &server.base, sim, args.accounts, 60_000_000).await?;
    let install_secs = t.elapsed().as_secs_f64();
    eprintln!(
        "installed {} accounts in {install_secs:.1} s",
        accounts.len()
    );
    let rss_after_install = server.rss_kib("VmRSS:");

    // Ingest: hooks spread over every account, of the chosen shape.
    let bodies: Vec<(String, String, i64)> = (0..args.hooks)
        .map(|i| {
            let (id, domain, url) = &accounts[i % accounts.len()];
            let entity = 1_000_000 + i as i64;
            let subdomain = domain.split('.').next().unwrap_or_default();
            (
                url.clone(),
                args.body.make(*id, subdomain, entity, i),
                entity,
            )
        })
        .collect();
    let entities: Vec<i64> = bodies.iter().map(|b| b.2).collect();
    let (body_min, body_mean, body_max) = bodies::sizes(bodies.iter().map(|b| b.1.as_str()));
    // The baselines store the first hook's body (its bytes, its event).
    let sample = bodies.first().map(|b| b.1.clone()).unwrap_or_default();
    let cpu_before = server.cpu_seconds();
    eprintln!("ingest: sending {} hooks", args.hooks);
    let ingest_started = Instant::now();
    let (secs, lat, errors, _) = send_all(http, args.concurrency, bodies).await;
    let cpu_after = server.cpu_seconds();
    let during = NotesSent::between(sim, ingest_started, Instant::now());
    let ingest_rate = args.hooks as f64 / secs;
    // amohook's own CPU per hook while it took the ingest (its delivery
    // worker runs meanwhile too, and is counted).
    let cpu_user_us = (cpu_after.0 - cpu_before.0) * 1e6 / args.hooks as f64;
    let cpu_system_us = (cpu_after.1 - cpu_before.1) * 1e6 / args.hooks as f64;
    eprintln!("ingest: {ingest_rate:.0} hooks/s");
    let ingest_done = Instant::now();
    let notes = if args.ingest_only {
        Vec::new()
    } else {
        wait_notes(sim, &entities, Duration::from_secs(1800)).await
    };
    // From the ingest's end to its last note: how long the delivery of
    // hooks spread over every account takes.
    let ingest_delivered_secs = notes
        .iter()
        .map(|(_, at)| at.saturating_duration_since(ingest_done))
        .max()
        .unwrap_or_default()
        .as_secs_f64();
    eprintln!(
        "ingest notes: {} of {} delivered, the last {ingest_delivered_secs:.1} s after the ingest",
        notes.len(),
        entities.len()
    );
    let rss_after_ingest = server.rss_kib("VmRSS:");
    // The baselines, on the same machine and database, once amohook has
    // delivered the ingest's notes and is idle: nothing of amohook's slows
    // them down.
    let seconds = secs.ceil() as u64;
    let plain = baselines::pgbench_plain_rate(db_url, args.concurrency, seconds, &sample).await?;
    if let Some(tps) = plain {
        eprintln!("pgbench plain insert: {tps:.0} rows/s");
    }
    let insert_rate =
        baselines::raw_insert_rate(db_url, args.concurrency, args.hooks, &sample).await?;
    eprintln!("raw insert: {insert_rate:.0} rows/s");
    let pgbench = baselines::pgbench_schema_rate(db_url, args.concurrency, seconds, &sample)?;
    if let Some(tps) = pgbench {
        eprintln!("pgbench insert: {tps:.0} rows/s");
    }
    {
        let pool = PgPool::connect(db_url).await?;
        sqlx::query("drop table if exists bench_raw")
            .execute(&pool)
            .await?;
        pool.close().await;
    }

    // The saturated account, installed a few seconds before its burst: the
    // install's own calls count in its request budget, and the burst
    // measures delivery, not the install.
    let sat = install(http, &server.base, sim, 1, 70_000_000)
        .await?
        .remove(0);

    // Light load: one hook at a time to different accounts.
    let mut light_answered = Vec::new();
    let mut light_entities = Vec::new();
    let (light_hooks, saturate) = if args.ingest_only {
        (0, 0)
    } else {
        (args.light, args.saturate)
    };
    for i in 0..light_hooks {
        let (id, _, url) = &accounts[i % accounts.len()];
        let entity = 2_000_000 + i as i64;
        let (_, _, _, answered) =
            send_all(http, 1, vec![(url.clone(), hook_body(*id, entity), entity)]).await;
        light_answered.extend(answered);
        light_entities.push(entity);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let light_notes = wait_notes(sim, &light_entities, Duration::from_secs(60)).await;
    let light = e2e_ms(&light_answered, &light_notes);

    // Saturation: one account gets a burst.
    let bodies: Vec<(String, String, i64)> = (0..saturate)
        .map(|i| {
            let entity = 3_000_000 + i as i64;
            (sat.2.clone(), hook_body(sat.0, entity), entity)
        })
        .collect();
    let sat_entities: Vec<i64> = bodies.iter().map(|b| b.2).collect();
    let (_, _, sat_errors, sat_answered) = send_all(http, args.concurrency, bodies).await;
    let sat_notes = wait_notes(sim, &sat_entities, Duration::from_secs(600)).await;
    let sat_rate = delivered_rate(sim, &sat.1, args.rps);
    let ceiling = (args.rps * 50) as f64;
    let saturated = e2e_ms(&sat_answered, &sat_notes);

    let peak_rss = server.rss_kib("VmHWM:");
    let traffic = Traffic::of(sim, args.rps);
    let counters = server_counters(http, &server.base).await;

    Ok(json!({
        "machine": { "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "settings": { "accounts": args.accounts, "hooks": args.hooks, "concurrency": args.concurrency,
                      "saturate": args.saturate, "fake_latency_ms": args.latency_ms, "rps": args.rps },
        "install": { "accounts": accounts.len() + 1, "seconds": install_secs,
                     "install_rate": args.install_rate },
        "body": { "shape": format!("{:?}", args.body).to_lowercase(), "min_bytes": body_min,
                  "mean_bytes": body_mean, "max_bytes": body_max },
        "ingest": { "hooks_per_second": ingest_rate, "p50_ms": percentile(&lat, 50.0),
                    "p99_ms": percentile(&lat, 99.0), "max_ms": lat.last().copied().unwrap_or(0.0),
                    "errors": errors, "notes_delivered": notes.len(),
                    "all_delivered_after_seconds": ingest_delivered_secs,
                    "amohook_cpu_us_per_hook": cpu_user_us + cpu_system_us,
                    "amohook_cpu_user_us_per_hook": cpu_user_us,
                    "amohook_cpu_system_us_per_hook": cpu_system_us,
                    "notes_sent_during": during.notes, "note_requests_during": during.requests },
        "plain_insert": { "rows_per_second": plain, "clients": args.concurrency,
                          "bytes": sample.len(),
                          "ingest_ratio": plain.map(|tps| ingest_rate / tps) },
        "raw_insert": { "rows_per_second": insert_rate, "connections": args.concurrency,
                        "ingest_ratio": ingest_rate / insert_rate },
        "pgbench_insert": { "rows_per_second": pgbench, "clients": args.concurrency,
                            "ingest_ratio": pgbench.map(|tps| ingest_rate / tps) },
        "delivery": { "saturated_notes_per_second": sat_rate, "ceiling": ceiling,
                      "of_ceiling": sat_rate / ceiling, "notes": sat_notes.len(), "errors": sat_errors,
                      "max_requests_in_any_second": traffic.max_in_any_second,
                      "tightest_span_ms": traffic.tightest_span_ms,
                      "responses_429": traffic.responses_429 },
        "end_to_end_ms": { "light_p50": percentile(&light, 50.0), "light_p99": percentile(&light, 99.0),
                           "saturated_p50": percentile(&saturated, 50.0), "saturated_p99": percentile(&saturated, 99.0) },
        "memory_kib": { "peak_rss": peak_rss, "rss_after_install": rss_after_install,
                        "rss_after_ingest": rss_after_ingest },
        "server_counters": counters,
    }))
}
