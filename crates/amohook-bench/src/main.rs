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
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use amocrm_sim::{HookBody, SimAccount, SimCard, Simulator};
use anyhow::{bail, Context as _};
use clap::Parser;
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};

const CLIENT_ID: &str = "bench-client";
const CLIENT_SECRET: &str = "bench-client-secret-0123456789";
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";

mod baselines;
mod bodies;
mod drills;
mod spread;

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

pub(crate) struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The CPU time the server process has used so far (user, system), in
    /// seconds, from /proc.
    pub(crate) fn cpu_seconds(&self) -> (f64, f64) {
        let ticks_per_second = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(100.0);
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .ok()
            .and_then(|s| {
                // Fields after the command name (which may hold spaces).
                let rest = s.rsplit_once(')')?.1;
                let fields: Vec<&str> = rest.split_whitespace().collect();
                // utime and stime are fields 14 and 15 of the whole line.
                let user = fields.get(11)?.parse::<f64>().ok()?;
                let system = fields.get(12)?.parse::<f64>().ok()?;
                Some((user / ticks_per_second, system / ticks_per_second))
            })
            .unwrap_or((0.0, 0.0))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn rss_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }
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

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) fn client(concurrency: usize) -> reqwest::Client {
    amohook::amocrm::http_client()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(concurrency * 2)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a plain HTTP client")
}

impl Server {
    /// Starts `amohook serve` on `port` against `db_url` and the simulator.
    pub(crate) fn spawn(
        amohook: &std::path::Path,
        db_url: &str,
        sim: &Simulator,
        rps: usize,
        port: u16,
    ) -> anyhow::Result<Server> {
        Self::spawn_with(amohook, db_url, sim, rps, port, &[])
    }

    /// [`Server::spawn`] with more settings in the environment.
    pub(crate) fn spawn_with(
        amohook: &std::path::Path,
        db_url: &str,
        sim: &Simulator,
        rps: usize,
        port: u16,
        env: &[(&str, String)],
    ) -> anyhow::Result<Server> {
        let base = format!("http://127.0.0.1:{port}");
        let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]);
        let child = Command::new(amohook)
            .arg("serve")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("AMOHOOK_DATABASE__URL", db_url)
            .env("AMOHOOK_HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env("AMOHOOK_HTTP__PUBLIC_URL", &base)
            .env("AMOHOOK_AMOCRM__CLIENT_ID", CLIENT_ID)
            .env("AMOHOOK_AMOCRM__CLIENT_SECRET", CLIENT_SECRET)
            .env("AMOHOOK_AMOCRM__API_BASE_URL", sim.api_base_url())
            .env("AMOHOOK_AMOCRM__REQUESTS_PER_SECOND", rps.to_string())
            .env("AMOHOOK_ADMIN__TOKEN", ADMIN_TOKEN)
            .env("AMOHOOK_SECURITY__ENCRYPTION_KEY", key)
            // No line per request unless asked for: `RUST_LOG=info` runs the
            // server with its default line per request (on this stderr).
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting amohook")?;
        Ok(Server { child, base })
    }

    /// SIGKILL: no shutdown, no cleanup.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("amohook did not become ready")
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
pub(crate) fn hook_targets(installed: &[(i64, String, String)]) -> Vec<(i64, String)> {
    installed
        .iter()
        .map(|(id, _, url)| (*id, url.clone()))
        .collect()
}

pub(crate) async fn install(
    http: &reqwest::Client,
    base: &str,
    sim: &Simulator,
    n: usize,
    first_id: i64,
) -> anyhow::Result<Vec<(i64, String, String)>> {
    let mut done = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(16) {
        let mut tasks = Vec::new();
        for &i in chunk {
            let id = first_id + i as i64;
            let domain = format!("acc{id}.amocrm.ru");
            sim.add_account(&domain, SimAccount::new(id));
            let code = sim.issue_code(&domain);
            let (http, base) = (http.clone(), base.to_owned());
            tasks.push(tokio::spawn(async move {
                let r = http.get(format!("{base}/install")).send().await?;
                let location = url::Url::parse(r.headers()["location"].to_str()?)?;
                let state = location
                    .query_pairs()
                    .find(|(k, _)| k == "state")
                    .map(|(_, v)| v.into_owned())
                    .context("state")?;
                let r = http
                    .get(format!("{base}/oauth/callback"))
                    .query(&[
                        ("code", code.as_str()),
                        ("referer", domain.as_str()),
                        ("state", state.as_str()),
                    ])
                    .send()
                    .await?;
                if r.status() != 200 {
                    bail!("install of {domain} answered {}", r.status());
                }
                Ok::<_, anyhow::Error>((id, domain))
            }));
        }
        for task in tasks {
            done.push(task.await??);
        }
    }
    let hooks = sim.webhooks();
    done.into_iter()
        .map(|(id, domain)| {
            let url = hooks
                .iter()
                .rev()
                .find(|(d, _)| *d == domain)
                .and_then(|(_, body)| body["destination"].as_str().map(str::to_owned))
                .context("subscribed hook URL")?;
            Ok((id, domain, url))
        })
        .collect()
}

/// Sends `bodies` with `concurrency` senders; returns (seconds, latencies
/// in ms, errors, when each was answered).
pub(crate) async fn send_all(
    http: &reqwest::Client,
    concurrency: usize,
    bodies: Vec<(String, String, i64)>,
) -> (f64, Vec<f64>, usize, Vec<(i64, Instant)>) {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, bodies, next) = (http.clone(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((url, body, entity)) = bodies.get(i) else {
                    break;
                };
                let t = Instant::now();
                let ok = http
                    .post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.clone())
                    .send()
                    .await
                    .map(|r| r.status() == 200)
                    .unwrap_or(false);
                out.push((
                    t.elapsed().as_secs_f64() * 1000.0,
                    ok,
                    *entity,
                    Instant::now(),
                ));
            }
            out
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut answered = Vec::new();
    for task in tasks {
        for (ms, ok, entity, at) in task.await.unwrap_or_default() {
            latencies.push(ms);
            if ok {
                answered.push((entity, at));
            } else {
                errors += 1;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    (secs, latencies, errors, answered)
}

/// Waits until the simulator holds notes for every entity in `entities`; returns
/// each one's arrival.
pub(crate) async fn wait_notes(
    sim: &Simulator,
    entities: &[i64],
    timeout: Duration,
) -> Vec<(i64, Instant)> {
    let wanted: std::collections::HashSet<i64> = entities.iter().copied().collect();
    let deadline = Instant::now() + timeout;
    loop {
        let found: Vec<(i64, Instant)> = sim
            .notes()
            .into_iter()
            .filter(|n| wanted.contains(&n.entity_id))
            .map(|n| (n.entity_id, n.at))
            .collect();
        if found.len() >= wanted.len() || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Notes per second one account received while saturated, measured over
/// every run of `rps + 1` consecutive note requests: the notes of the last
/// `rps` of them over the time from the first to the last. That is the
/// budget's own unit (at most `rps` requests in any second), so the burst a
/// sliding window allows at the start of a backlog is not counted as speed,
/// and a short run is not flattered by it.
fn delivered_rate(sim: &Simulator, domain: &str, rps: usize) -> f64 {
    let mut sends: Vec<(Instant, usize)> = note_sends(sim)
        .into_iter()
        .filter(|s| s.domain == domain)
        .map(|s| (s.at, s.notes))
        .collect();
    sends.sort_by_key(|(at, _)| *at);
    let (mut notes, mut seconds) = (0usize, 0f64);
    for run in sends.windows(rps + 1) {
        notes += run[1..].iter().map(|(_, n)| n).sum::<usize>();
        seconds += run[rps].0.duration_since(run[0].0).as_secs_f64();
    }
    if seconds > 0.0 {
        notes as f64 / seconds
    } else {
        0.0
    }
}

/// A note request amoCRM took (POST .../notes answered 200).
struct NoteSend {
    domain: String,
    at: Instant,
    notes: usize,
}

fn note_sends(sim: &Simulator) -> Vec<NoteSend> {
    sim.requests()
        .into_iter()
        .filter(|r| r.method == reqwest::Method::POST && r.path.ends_with("/notes"))
        .filter(|r| r.status == 200)
        .map(|r| NoteSend {
            notes: serde_json::from_str::<Vec<serde_json::Value>>(&r.body)
                .map(|v| v.len())
                .unwrap_or(0),
            domain: r.domain,
            at: r.at,
        })
        .collect()
}

/// The notes amoCRM took between two instants, and in how many requests:
/// how much delivery ran beside the ingest, and in what batches.
struct NotesSent {
    notes: usize,
    requests: usize,
}

impl NotesSent {
    fn between(sim: &Simulator, from: Instant, to: Instant) -> NotesSent {
        let sends: Vec<NoteSend> = note_sends(sim)
            .into_iter()
            .filter(|s| s.at >= from && s.at <= to)
            .collect();
        NotesSent {
            notes: sends.iter().map(|s| s.notes).sum(),
            requests: sends.len(),
        }
    }
}

/// The server's own counts of what it did under load, from its /metrics:
/// budget slots moved by calls that left late, and waits of the delivery
/// loops for a busy intake. Missing counters (never incremented) are 0.
async fn server_counters(http: &reqwest::Client, base: &str) -> serde_json::Value {
    const COUNTERS: [&str; 2] = [
        "amohook_budget_slots_moved_total",
        "amohook_delivery_yields_total",
    ];
    let text = match http
        .get(format!("{base}/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
    {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    COUNTERS
        .iter()
        .map(|name| (name.to_string(), json!(value(name))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// What the simulator saw of the request budget, over every account.
struct Traffic {
    /// The most requests to one account within any one second.
    max_in_any_second: usize,
    /// The shortest time any `rps + 1` consecutive requests to one account
    /// took: at least 1,000 ms keeps the limit; what it is above that is the
    /// margin left.
    tightest_span_ms: Option<f64>,
    responses_429: usize,
}

impl Traffic {
    fn of(sim: &Simulator, rps: usize) -> Traffic {
        let mut by_domain: std::collections::HashMap<String, Vec<Instant>> = Default::default();
        let mut responses_429 = 0;
        for r in sim.requests() {
            if r.status == 429 {
                responses_429 += 1;
            }
            by_domain.entry(r.domain).or_default().push(r.at);
        }
        let mut max_in_any_second = 0;
        let mut tightest_span_ms: Option<f64> = None;
        for times in by_domain.values_mut() {
            times.sort();
            max_in_any_second = max_in_any_second.max(amocrm_sim::most_in_one_second(times));
            for pair in times.windows(rps + 1) {
                let span = pair[rps].duration_since(pair[0]).as_secs_f64() * 1000.0;
                tightest_span_ms = Some(tightest_span_ms.map_or(span, |t| t.min(span)));
            }
        }
        Traffic {
            max_in_any_second,
            tightest_span_ms,
            responses_429,
        }
    }
}

fn e2e_ms(answered: &[(i64, Instant)], notes: &[(i64, Instant)]) -> Vec<f64> {
    let arrivals: std::collections::HashMap<i64, Instant> = notes.iter().copied().collect();
    let mut out: Vec<f64> = answered
        .iter()
        .filter_map(|(entity, at)| {
            arrivals
                .get(entity)
                .map(|n| n.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    out.sort_by(f64::total_cmp);
    out
}

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

fn print_report(r: &serde_json::Value) {
    let f = |v: &serde_json::Value| match v.as_f64() {
        Some(x) if x.fract() != 0.0 => format!("{x:.2}"),
        Some(x) => format!("{x:.0}"),
        None => v.as_str().map_or_else(|| v.to_string(), str::to_owned),
    };
    let rows = [
        ("accounts installed", &r["install"]["accounts"]),
        ("hook body", &r["body"]["shape"]),
        ("body bytes (mean)", &r["body"]["mean_bytes"]),
        ("ingest hooks/s", &r["ingest"]["hooks_per_second"]),
        ("ingest p50 ms", &r["ingest"]["p50_ms"]),
        ("ingest p99 ms", &r["ingest"]["p99_ms"]),
        ("ingest max ms", &r["ingest"]["max_ms"]),
        ("ingest errors", &r["ingest"]["errors"]),
        (
            "ingest notes done, s",
            &r["ingest"]["all_delivered_after_seconds"],
        ),
        (
            "notes sent during ingest",
            &r["ingest"]["notes_sent_during"],
        ),
        (
            "note requests during ingest",
            &r["ingest"]["note_requests_during"],
        ),
        (
            "amohook CPU per hook, µs",
            &r["ingest"]["amohook_cpu_us_per_hook"],
        ),
        ("plain INSERT rows/s", &r["plain_insert"]["rows_per_second"]),
        ("ingest / plain INSERT", &r["plain_insert"]["ingest_ratio"]),
        ("schema INSERT rows/s", &r["raw_insert"]["rows_per_second"]),
        ("ingest / schema INSERT", &r["raw_insert"]["ingest_ratio"]),
        (
            "pgbench schema rows/s",
            &r["pgbench_insert"]["rows_per_second"],
        ),
        (
            "ingest / pgbench schema",
            &r["pgbench_insert"]["ingest_ratio"],
        ),
        (
            "saturated notes/s",
            &r["delivery"]["saturated_notes_per_second"],
        ),
        ("ceiling (rps x 50)", &r["delivery"]["ceiling"]),
        ("of ceiling", &r["delivery"]["of_ceiling"]),
        (
            "max requests in 1 s",
            &r["delivery"]["max_requests_in_any_second"],
        ),
        ("tightest rps+1 span ms", &r["delivery"]["tightest_span_ms"]),
        ("429 answers", &r["delivery"]["responses_429"]),
        (
            "budget slots moved",
            &r["server_counters"]["amohook_budget_slots_moved_total"],
        ),
        (
            "delivery waits for intake",
            &r["server_counters"]["amohook_delivery_yields_total"],
        ),
        ("e2e light p50 ms", &r["end_to_end_ms"]["light_p50"]),
        ("e2e light p99 ms", &r["end_to_end_ms"]["light_p99"]),
        ("e2e saturated p50 ms", &r["end_to_end_ms"]["saturated_p50"]),
        ("e2e saturated p99 ms", &r["end_to_end_ms"]["saturated_p99"]),
        (
            "RSS after install KiB",
            &r["memory_kib"]["rss_after_install"],
        ),
        ("peak RSS KiB", &r["memory_kib"]["peak_rss"]),
    ];
    println!("{:<24} {:>14}", "measure", "value");
    for (name, value) in rows {
        println!("{name:<24} {:>14}", f(value));
    }
}
