//! Delivery across many accounts: hooks spread over every account at a
//! steady rate against an amoCRM that answers in `--latency-ms`
//! (`spread`), and the same beside accounts whose amoCRM answers in 30 s or
//! never (`slow-tenant`). Both report hook → note latency (from the hook's
//! 200 to the note's arrival at the simulator), notes per second, amoCRM
//! requests in flight, PostgreSQL's and amohook's CPU, 429s and memory.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use amocrm_sim::Simulator;
use serde_json::{json, Value};

use crate::{hook_body, hook_targets, install, percentile, Server};

/// The 200 of each hook sent, by entity id, and the other answers by
/// status.
#[derive(Default)]
struct Sent {
    answered: Vec<(i64, Instant)>,
    failed: HashMap<String, usize>,
}

/// Sends `rate` hooks a second for `seconds`, each a new lead of the next
/// account in `targets` (round robin), each on its own task so that a slow
/// answer never holds back the pace. Entity ids start at `first`.
async fn paced(
    http: &reqwest::Client,
    targets: &[(i64, String)],
    rate: f64,
    seconds: f64,
    first: i64,
) -> Sent {
    let sent = Arc::new(Mutex::new(Sent::default()));
    let total = (rate * seconds).round() as usize;
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        tokio::time::sleep_until(started + Duration::from_secs_f64(i as f64 / rate)).await;
        let (account, url) = targets[i % targets.len()].clone();
        let (http, sent) = (http.clone(), sent.clone());
        let entity = first + i as i64;
        tasks.push(tokio::spawn(async move {
            let answer = http
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(hook_body(account, entity))
                .send()
                .await;
            let mut sent = sent.lock().unwrap();
            match answer {
                Ok(r) if r.status() == 200 => sent.answered.push((entity, Instant::now())),
                Ok(r) => *sent.failed.entry(r.status().as_str().into()).or_default() += 1,
                Err(_) => *sent.failed.entry("no answer".into()).or_default() += 1,
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    Arc::try_unwrap(sent)
        .map(|m| m.into_inner().unwrap())
        .unwrap_or_default()
}

/// CPU seconds used so far by every process named `postgres` (the server
/// and its backends), from /proc.
fn postgres_cpu_seconds() -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| stat.contains("(postgres)"))
        .filter_map(|stat| {
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let user = fields.get(11)?.parse::<f64>().ok()?;
            let system = fields.get(12)?.parse::<f64>().ok()?;
            Some((user + system) / ticks)
        })
        .sum()
}

/// Samples the simulator's requests in flight and the server's memory
/// until `done`: (most in flight, mean in flight, peak RSS in KiB).
async fn sample(sim: &Simulator, pid: u32, done: &AtomicBool) -> (usize, f64, u64) {
    let (mut most, mut sum, mut n, mut rss) = (0usize, 0usize, 0usize, 0u64);
    sim.take_most_in_flight();
    while !done.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        most = most.max(sim.take_most_in_flight());
        sum += sim.in_flight();
        n += 1;
        rss = rss.max(rss_kib(pid));
    }
    (most, sum as f64 / n.max(1) as f64, rss)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Each noted entity's first note, and how many entities have more than one.
fn first_notes(sim: &Simulator) -> (HashMap<i64, Instant>, usize) {
    let mut first: HashMap<i64, (Instant, usize)> = HashMap::new();
    for note in sim.notes() {
        let e = first.entry(note.entity_id).or_insert((note.at, 0));
        e.0 = e.0.min(note.at);
        e.1 += 1;
    }
    let duplicated = first.values().filter(|(_, n)| *n > 1).count();
    (
        first.into_iter().map(|(k, (at, _))| (k, at)).collect(),
        duplicated,
    )
}

/// Waits until every answered entity has a note, or `timeout`.
async fn settle(sim: &Simulator, answered: &[(i64, Instant)], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let (first, _) = first_notes(sim);
        if answered.iter().all(|(e, _)| first.contains_key(e)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Hook → note latencies (ms, sorted) of `answered`, and how many have no
/// note.
fn latencies(sim: &Simulator, answered: &[(i64, Instant)]) -> (Vec<f64>, usize, usize) {
    let (first, duplicated) = first_notes(sim);
    let mut lost = 0;
    let mut out: Vec<f64> = answered
        .iter()
        .filter_map(|(e, at)| match first.get(e) {
            Some(n) => Some(n.saturating_duration_since(*at).as_secs_f64() * 1000.0),
            None => {
                lost += 1;
                None
            }
        })
        .collect();
    out.sort_by(f64::total_cmp);
    (out, lost, duplicated)
}

/// The latencies of the hooks with entity ids up to `accounts` (each
/// account's first hook, the ids counting from 1 in send order), and of the
/// rest.
fn first_and_later(
    sim: &Simulator,
    answered: &[(i64, Instant)],
    accounts: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (first_of_account, later): (Vec<_>, Vec<_>) = answered
        .iter()
        .copied()
        .partition(|(e, _)| *e <= accounts as i64);
    (
        latencies(sim, &first_of_account).0,
        latencies(sim, &later).0,
    )
}

fn summary(ms: &[f64]) -> Value {
    json!({
        "p50_ms": percentile(ms, 50.0).round(),
        "p99_ms": percentile(ms, 99.0).round(),
        "max_ms": ms.last().copied().unwrap_or(0.0).round(),
    })
}

/// `spread`: `accounts` accounts, `rate` hooks a second spread over them
/// for `seconds`.
pub async fn spread(
    server: &Server,
    sim: &Simulator,
    http: &reqwest::Client,
    accounts: usize,
    rate: f64,
    seconds: f64,
    latency_ms: u64,
) -> anyhow::Result<Value> {
    let t = Instant::now();
    let installed = install(http, &server.base, sim, accounts, 70_000_000).await?;
    eprintln!(
        "installed {accounts} accounts in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let targets = hook_targets(&installed);
    sim.set_latency(Duration::from_millis(latency_ms));
    let requests_before = sim.requests().len();
    let (pg_before, amohook_before) = (postgres_cpu_seconds(), server.cpu_seconds());
    let started = Instant::now();
    let done = AtomicBool::new(false);
    let (sent, (most_in_flight, mean_in_flight, rss_peak)) = tokio::join!(
        async {
            let sent = paced(http, &targets, rate, seconds, 1).await;
            settle(sim, &sent.answered, Duration::from_secs(600)).await;
            done.store(true, Ordering::Relaxed);
            sent
        },
        sample(sim, server.pid(), &done),
    );
    let wall = started.elapsed().as_secs_f64();
    let (pg_after, amohook_after) = (postgres_cpu_seconds(), server.cpu_seconds());
    let (ms, lost, duplicated) = latencies(sim, &sent.answered);
    let requests = &sim.requests()[requests_before..];
    let too_many = requests.iter().filter(|r| r.status == 429).count();
    let mut by_call: HashMap<String, usize> = HashMap::new();
    for r in requests {
        *by_call
            .entry(format!("{} {}", r.method, r.path))
            .or_default() += 1;
    }
    // Hooks go round robin, so the first `accounts` hooks are each
    // account's first: their notes are the ones that may wait on the
    // account's directory.
    let (first_of_account, later) = first_and_later(sim, &sent.answered, accounts);
    let (first, _) = first_notes(sim);
    let last_note = sent
        .answered
        .iter()
        .filter_map(|(e, _)| first.get(e))
        .max()
        .map(|at| at.saturating_duration_since(started).as_secs_f64())
        .unwrap_or(0.0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let amohook_cpu = (amohook_after.0 + amohook_after.1) - (amohook_before.0 + amohook_before.1);
    let pass = lost == 0 && duplicated == 0 && sent.failed.is_empty() && too_many == 0;
    Ok(json!({
        "scenario": "spread",
        "pass": pass,
        "accounts": accounts,
        "hooks_per_second": rate,
        "seconds": seconds,
        "latency_ms": latency_ms,
        "hooks_answered_200": sent.answered.len(),
        "hooks_not_200": sent.failed,
        "notes_lost": lost,
        "notes_duplicated": duplicated,
        "hook_to_note": summary(&ms),
        "first_note_of_account": summary(&first_of_account),
        "later_notes": summary(&later),
        "notes_per_second": (ms.len() as f64 / last_note.max(f64::EPSILON)).round(),
        "last_note_after_first_hook_s": (last_note * 10.0).round() / 10.0,
        "amocrm_requests": requests.len(),
        "amocrm_requests_per_note": ((requests.len() as f64 / ms.len().max(1) as f64) * 100.0).round() / 100.0,
        "amocrm_requests_by_call": by_call,
        "amocrm_in_flight_max": most_in_flight,
        "amocrm_in_flight_mean": (mean_in_flight * 10.0).round() / 10.0,
        "responses_429": too_many,
        "postgres_cpu_share": ((pg_after - pg_before) / (wall * cores) * 1000.0).round() / 1000.0,
        "amohook_cpu_share": (amohook_cpu / (wall * cores) * 1000.0).round() / 1000.0,
        "amohook_rss_peak_mib": rss_peak / 1024,
    }))
}

/// `slow-tenant`: `slow` accounts whose amoCRM answers in 30 s (half of
/// them) or never (the other half), each with two hooks, beside `healthy`
/// accounts receiving `rate` hooks a second for `seconds`. Passes when
/// every healthy hook has its note once and their p99 is under 2 s.
pub async fn slow_tenant(
    server: &Server,
    sim: &Simulator,
    http: &reqwest::Client,
    slow: usize,
    healthy: usize,
    rate: f64,
    seconds: f64,
) -> anyhow::Result<Value> {
    let installed = install(http, &server.base, sim, slow + healthy, 75_000_000).await?;
    let (slow_accounts, healthy_accounts) = installed.split_at(slow);
    for (i, (_, domain, _)) in slow_accounts.iter().enumerate() {
        if i % 2 == 0 {
            sim.set_domain_latency(domain, Duration::from_secs(30));
        } else {
            sim.hang(domain);
        }
    }
    let slow_targets = hook_targets(slow_accounts);
    let healthy_targets = hook_targets(healthy_accounts);
    // The slow accounts' hooks first, all at once: their turns start
    // before the healthy accounts' hooks.
    let slow_sent = paced(http, &slow_targets, 200.0, (2 * slow) as f64 / 200.0, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let in_flight_slow = sim.in_flight();
    let sent = paced(http, &healthy_targets, rate, seconds, 1_000_000).await;
    settle(sim, &sent.answered, Duration::from_secs(60)).await;
    let (ms, lost, duplicated) = latencies(sim, &sent.answered);
    let p99 = percentile(&ms, 99.0);
    let pass = lost == 0 && duplicated == 0 && sent.failed.is_empty() && p99 < 2000.0;
    Ok(json!({
        "drill": "slow-tenant",
        "slow_accounts": slow,
        "slow_hooks_answered_200": slow_sent.answered.len(),
        "slow_requests_hanging_when_healthy_hooks_began": in_flight_slow,
        "healthy_accounts": healthy,
        "healthy_hooks_answered_200": sent.answered.len(),
        "healthy_hooks_not_200": sent.failed,
        "healthy_notes_lost": lost,
        "healthy_notes_duplicated": duplicated,
        "healthy_hook_to_note": summary(&ms),
        "allowed_p99_ms": 2000,
        "pass": pass,
    }))
}
