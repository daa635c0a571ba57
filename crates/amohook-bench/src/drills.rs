//! Fault drills: each puts a real amohook process under load, breaks
//! something, and checks that every hook answered 200 ends as exactly one
//! note. A drill prints a JSON verdict and exits non-zero when it fails.

use std::{
    collections::HashMap,
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicI64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use amocrm_sim::Simulator;
use serde_json::{json, Value};

use crate::{free_port, hook_body, hook_targets, install, percentile, wait_ready, Server};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Hooks spread over every account (`--accounts`) at `--rate` a second
    /// for `--seconds`, amoCRM answering in `--latency-ms`: hook → note
    /// p50/p99/max, notes per second, amoCRM requests in flight, CPU of
    /// PostgreSQL and amohook, 429s, memory. Prints JSON; not a pass/fail
    /// drill.
    Spread {
        #[arg(long, default_value_t = 40.0)]
        rate: f64,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// amoCRM's answer time once the accounts are installed (default:
        /// `--latency-ms`): a long one keeps many turns in flight without
        /// making the install itself wait on it.
        #[arg(long)]
        call_ms: Option<u64>,
    },
    /// `--slow` accounts whose amoCRM answers in 30 s or never (half each),
    /// two hooks each, beside `--healthy` accounts receiving `--rate` hooks
    /// a second: every healthy hook noted once, with p99 under 2 s.
    SlowTenant {
        #[arg(long, default_value_t = 24)]
        slow: usize,
        #[arg(long, default_value_t = 3)]
        healthy: usize,
        #[arg(long, default_value_t = 2.5)]
        rate: f64,
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
    },
    /// kill -9 amohook three times under load and restart it: no hook that
    /// got a 200 is lost or noted twice, and all have their notes within
    /// 30 s of the last restart.
    Kill,
    /// Restart PostgreSQL under load: hooks in the window get 503 (never a
    /// 200 that is lost), and amohook recovers without a restart.
    Postgres,
    /// amoCRM answers 503 for a while, then 429 in bursts, then slowly (5 s):
    /// hook answers stay fast, every note lands once, budgets hold.
    Outage {
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Two amohook processes on one database, access tokens that expire
    /// every few seconds: one refresh per expiry, no refresh token reused.
    TwoProcesses {
        #[arg(long, default_value_t = 4)]
        token_ttl: u64,
    },
    /// Malformed requests mixed into load: all 4xx, no 5xx, memory flat.
    Malformed,
    /// One account sends odd but legal hooks (NUL characters, very long
    /// values, emoji, control characters) while another sends plain ones:
    /// the plain account gets only 200s, and every hook answered 200, of
    /// either account, becomes exactly one note.
    Poison {
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// One account posts the largest hooks a body may hold (about 20,000
    /// cards in under 1 MiB) from `--senders` connections while another
    /// posts ordinary hooks: the other account's hooks all answer 200, and
    /// each becomes one note.
    Flood {
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 4)]
        senders: usize,
    },
    /// Forged widget installs from many connections while another account
    /// receives hooks and a real widget install happens: token requests
    /// stay within the install gate's rate (5 a second), the other
    /// account's hooks all answer 200 with p99 under 100 ms, the real
    /// install connects, memory stays flat.
    InstallFlood {
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Connections sending forged callbacks.
        #[arg(long, default_value_t = 16)]
        senders: usize,
    },
}

impl Command {
    /// Installs more accounts than the default install gate lets through in
    /// reasonable time.
    pub fn installs_many(&self) -> bool {
        matches!(self, Command::Spread { .. } | Command::SlowTenant { .. })
    }
}

/// The server's `install.exchanges_per_second` (its default).
const INSTALL_RATE: usize = 5;

/// Forged widget callbacks from `senders` connections until `stop`: each a
/// new made-up code, naming one of 50 made-up hosts. Returns the answers by
/// status.
fn forge_installs(
    http: &reqwest::Client,
    base: &str,
    senders: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<HashMap<String, usize>>> {
    (0..senders)
        .map(|sender| {
            let (http, base, stop) = (http.clone(), base.to_owned(), stop.clone());
            tokio::spawn(async move {
                let mut statuses: HashMap<String, usize> = HashMap::new();
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let code = format!("forged-{sender}-{n}");
                    let referer = format!("forged{}.amocrm.ru", (sender * 7 + n) % 50);
                    let answer = http
                        .get(format!("{base}/oauth/callback"))
                        .query(&[
                            ("code", code.as_str()),
                            ("referer", referer.as_str()),
                            ("from_widget", "1"),
                        ])
                        .send()
                        .await;
                    let key = match answer {
                        Ok(r) => r.status().as_u16().to_string(),
                        Err(_) => "no answer".into(),
                    };
                    *statuses.entry(key).or_default() += 1;
                }
                statuses
            })
        })
        .collect()
}

/// The most of `seen` in any window of a second.
fn max_in_a_second(seen: &[amocrm_sim::Seen]) -> usize {
    (0..seen.len())
        .map(|i| {
            seen[i..]
                .iter()
                .take_while(|r| r.at.duration_since(seen[i].at) < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Hooks sent in the background, by several senders, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<Mutex<Vec<i64>>>,
    statuses: Arc<Mutex<HashMap<String, usize>>>,
    latencies: Arc<Mutex<Vec<f64>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `targets`: (account id, hook URL); entity ids start at `first`;
    /// `body(account id, entity id)` is each hook.
    fn start(
        http: &reqwest::Client,
        targets: Vec<(i64, String)>,
        senders: usize,
        first: i64,
        pace: Duration,
        body: fn(i64, i64) -> String,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(HashMap::new()));
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicI64::new(first));
        let targets = Arc::new(targets);
        let tasks = (0..senders)
            .map(|_| {
                let (http, stop, ok, statuses, latencies, next, targets) = (
                    http.clone(),
                    stop.clone(),
                    ok.clone(),
                    statuses.clone(),
                    latencies.clone(),
                    next.clone(),
                    targets.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let entity = next.fetch_add(1, Ordering::Relaxed);
                        let (account, url) = &targets[(entity as usize) % targets.len()];
                        let started = Instant::now();
                        let answer = http
                            .post(url)
                            .header("content-type", "application/x-www-form-urlencoded")
                            .body(body(*account, entity))
                            .send()
                            .await;
                        let key = match &answer {
                            Ok(r) => r.status().as_u16().to_string(),
                            Err(_) => "no answer".into(),
                        };
                        if matches!(&answer, Ok(r) if r.status() == 200) {
                            ok.lock().unwrap().push(entity);
                            latencies
                                .lock()
                                .unwrap()
                                .push(started.elapsed().as_secs_f64() * 1000.0);
                        }
                        *statuses.lock().unwrap().entry(key).or_default() += 1;
                        if answer.is_err() {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        tokio::time::sleep(pace).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            statuses,
            latencies,
            tasks,
        }
    }

    async fn finish(self) -> (Vec<i64>, HashMap<String, usize>, Vec<f64>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        let mut latencies = self.latencies.lock().unwrap().clone();
        latencies.sort_by(f64::total_cmp);
        let ok = self.ok.lock().unwrap().clone();
        let statuses = self.statuses.lock().unwrap().clone();
        (ok, statuses, latencies)
    }
}

/// The answers other than 200, out of answers counted by status.
fn not_200(statuses: &HashMap<String, usize>) -> usize {
    statuses
        .iter()
        .filter(|(status, _)| *status != "200")
        .map(|(_, n)| n)
        .sum()
}

/// Waits until every entity answered 200 has a note (or `timeout`), then
/// counts the lost and the duplicated.
async fn verdict(sim: &Simulator, ok: &[i64], timeout: Duration) -> (usize, usize, f64) {
    let started = Instant::now();
    loop {
        let mut per_entity: HashMap<i64, usize> = HashMap::new();
        for note in sim.notes() {
            *per_entity.entry(note.entity_id).or_default() += 1;
        }
        let lost = ok.iter().filter(|e| !per_entity.contains_key(e)).count();
        let duplicated = per_entity.values().filter(|n| **n > 1).count();
        if lost == 0 || started.elapsed() > timeout {
            return (lost, duplicated, started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// When the last of the entities `ok` got its first note, if all have one.
fn all_noted_at(sim: &Simulator, ok: &[i64]) -> Option<Instant> {
    let mut first: HashMap<i64, Instant> = HashMap::new();
    for note in sim.notes() {
        let at = first.entry(note.entity_id).or_insert(note.at);
        *at = (*at).min(note.at);
    }
    ok.iter()
        .map(|e| first.get(e).copied())
        .collect::<Option<Vec<Instant>>>()?
        .into_iter()
        .max()
}

/// How long a drill waits for the last note before it counts the rest as
/// lost: claims of a killed process run out within
/// `amohook::delivery::CLAIM_TTL` (15 s), and the backlog left by the load
/// is delivered well within this.
const SETTLE: Duration = Duration::from_secs(300);

/// After the last restart of the kill drill, every hook answered 200 must
/// have its note within this.
const RECOVER_WITHIN: Duration = Duration::from_secs(30);

/// Entity ids of the poison drill's odd hooks: in a range of their own, so
/// that they never share a card with the plain account's hooks.
const POISON_FIRST: i64 = 50_000_000;

/// A hook that is odd but legal, in one of six shapes by `entity_id`: NUL
/// characters in values (removed: PostgreSQL cannot store them), nothing
/// but NULs, emoji, control characters, very long values, NUL in keys of
/// fields amohook does not read. No key is given two shapes (a value and a
/// map): that is malformed, not odd.
/// The flooding account's first entity number (its cards are numbered
/// from it times [`FLOOD_CARDS`]).
const FLOOD_FIRST: i64 = 1_000_000;
/// Cards in one flood hook: the most intake takes
/// (`amohook::http::hooks::MAX_CARDS_PER_HOOK`), each new lead with an id
/// and a time only (a valid hook, and the most rows per byte).
const FLOOD_CARDS: i64 = amohook::http::hooks::MAX_CARDS_PER_HOOK as i64;

/// The same body for every flood hook (made once: building 5,000 cards
/// for each request would take the bench's own threads from the ordinary
/// hooks it times). Re-sent bodies are stored once, as amoCRM's re-sends are.
fn flood_body(account_id: i64, _entity_id: i64) -> String {
    static BODY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BODY.get_or_init(|| {
        let mut body = format!("account%5Bid%5D={account_id}");
        for i in 0..FLOOD_CARDS {
            let id = FLOOD_FIRST * FLOOD_CARDS + i;
            // With a time of its own, as amoCRM's cards have: a card
            // without one takes the time it is received, and the same body
            // a second later would be new changes.
            body.push_str(&format!(
                "&leads%5Badd%5D%5B{i}%5D%5Bid%5D={id}&leads%5Badd%5D%5B{i}%5D%5Bcreated_at%5D=1700000000"
            ));
        }
        body
    })
    .clone()
}

fn poison_body(account_id: i64, entity_id: i64) -> String {
    let lead = |field: &str| format!("leads[add][0][{field}]");
    let mut pairs: Vec<(String, String)> = vec![
        ("account[id]".into(), account_id.to_string()),
        (lead("id"), entity_id.to_string()),
        (lead("responsible_user_id"), "100".into()),
        (lead("pipeline_id"), "10".into()),
        (lead("created_at"), "1712331728".into()),
    ];
    let custom = |value: String| {
        vec![
            (lead("custom_fields][0][id"), "501".to_owned()),
            (lead("custom_fields][0][name"), "Поле\0 field".to_owned()),
            (lead("custom_fields][0][values][0][value"), value),
        ]
    };
    match entity_id % 6 {
        0 => pairs.push((lead("name"), format!("a\0b #{entity_id}"))),
        1 => {
            pairs.push((lead("name"), "\0".repeat(64)));
            pairs.push((lead("price"), "1\x000\x000".into()));
            pairs.push((lead("status_id"), "1\0".into()));
            pairs.extend(custom("\0v\0".into()));
        }
        2 => {
            pairs.push((lead("name"), format!("🦀🔥👨‍👩‍👧‍👦 🇷🇺 #{entity_id}")));
            pairs.push((lead("price"), "💰".into()));
            pairs.extend(custom("😀".repeat(100)));
        }
        3 => {
            let controls: String = (1u8..32).chain([127]).map(char::from).collect();
            pairs.push((
                lead("name"),
                format!("{controls}\u{1b}[31mred\u{1b}[0m\u{202e}\u{feff}#{entity_id}"),
            ));
            pairs.extend(custom(format!("line\r\nline\t{controls}")));
        }
        4 => {
            pairs.push((
                lead("name"),
                format!("{}#{entity_id}", "Длинно".repeat(8_000)),
            ));
            pairs.extend(custom(format!("{}\0", "x".repeat(99)).repeat(2_000)));
        }
        _ => {
            pairs[1].1.push('\0');
            pairs.push((lead("name"), format!("keys #{entity_id}")));
            pairs.push((lead("x\0y"), "1".into()));
            pairs.push(("account[\0]".into(), "\0".into()));
            pairs.push(("\0".into(), "\0".into()));
        }
    }
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

pub async fn run(
    command: &Command,
    amohook: &Path,
    db_url: &str,
    rps: usize,
    mut server: Server,
    sim: &Simulator,
    http: &reqwest::Client,
) -> anyhow::Result<Value> {
    let accounts = install(http, &server.base, sim, 10, 80_000_000).await?;
    let targets = hook_targets(&accounts);
    let report = match command {
        Command::Spread { .. } | Command::SlowTenant { .. } => {
            anyhow::bail!("run by main, with accounts of their own")
        }
        Command::Kill => {
            let port: u16 = server.base.rsplit(':').next().unwrap_or_default().parse()?;
            let load = Load::start(http, targets, 8, 1, Duration::ZERO, hook_body);
            let mut last_restart = None;
            for round in 1..=3 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                server.kill9();
                eprintln!("kill -9 #{round}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                server = Server::spawn(amohook, db_url, sim, rps, port)?;
                last_restart = Some(Instant::now());
                wait_ready(http, &server.base).await?;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            let (ok, statuses, _) = load.finish().await;
            let (lost, duplicated, settled) = verdict(sim, &ok, SETTLE).await;
            // From the last restart to the arrival of the last note: the
            // killed process's claims must run out and the backlog be
            // delivered in that time.
            let all_noted = last_restart
                .zip(all_noted_at(sim, &ok))
                .map(|(restart, noted)| noted.saturating_duration_since(restart).as_secs_f64());
            json!({ "drill": "kill", "kills": 3, "hooks_ok": ok.len(), "answers": statuses,
                    "lost": lost, "duplicated": duplicated, "settled_seconds": settled,
                    "all_noted_seconds_after_last_restart": all_noted,
                    "allowed_seconds": RECOVER_WITHIN.as_secs(),
                    "claim_ttl_seconds": amohook::delivery::CLAIM_TTL.as_secs(),
                    "pass": lost == 0 && duplicated == 0 && !ok.is_empty()
                        && all_noted.is_some_and(|s| s <= RECOVER_WITHIN.as_secs_f64()) })
        }
        Command::Postgres => {
            let load = Load::start(http, targets, 8, 1, Duration::from_millis(5), hook_body);
            tokio::time::sleep(Duration::from_secs(3)).await;
            let version = std::fs::read_dir("/etc/postgresql")?
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .next()
                .ok_or_else(|| anyhow::anyhow!("no local PostgreSQL cluster to restart"))?;
            let restarted = std::process::Command::new("pg_ctlcluster")
                .args(["--skip-systemctl-redirect", &version, "main", "restart"])
                .status()?;
            eprintln!("PostgreSQL restarted: {restarted}");
            let before = load.ok.lock().unwrap().len();
            tokio::time::sleep(Duration::from_secs(8)).await;
            let after_restart = load.ok.lock().unwrap().len() - before;
            let (ok, statuses, _) = load.finish().await;
            let (lost, duplicated, settled) = verdict(sim, &ok, SETTLE).await;
            json!({ "drill": "postgres", "hooks_ok": ok.len(), "answers": statuses,
                    "hooks_ok_after_restart": after_restart, "lost": lost, "duplicated": duplicated,
                    "settled_seconds": settled,
                    "pass": restarted.success() && lost == 0 && duplicated == 0 && after_restart > 0 })
        }
        Command::Outage { seconds } => {
            let load = Load::start(http, targets, 8, 1, Duration::from_millis(20), hook_body);
            sim.set_outage(Some(503));
            tokio::time::sleep(Duration::from_secs(*seconds)).await;
            for _ in 0..3 {
                sim.set_outage(Some(429));
                tokio::time::sleep(Duration::from_secs(2)).await;
                sim.set_outage(None);
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            sim.set_latency(Duration::from_secs(5));
            tokio::time::sleep(Duration::from_secs(15)).await;
            sim.set_latency(Duration::from_millis(20));
            let (ok, statuses, latencies) = load.finish().await;
            let (lost, duplicated, settled) = verdict(sim, &ok, Duration::from_secs(900)).await;
            let max_window = accounts
                .iter()
                .map(|(_, d, _)| sim.max_per_second(d))
                .max()
                .unwrap_or(0);
            let p99 = percentile(&latencies, 99.0);
            json!({ "drill": "outage", "outage_seconds": seconds, "hooks_ok": ok.len(), "answers": statuses,
                    "hook_answer_p99_ms": p99, "lost": lost, "duplicated": duplicated,
                    "settled_seconds": settled, "max_requests_in_any_second": max_window,
                    "pass": lost == 0 && duplicated == 0 && p99 < 500.0 && max_window <= rps })
        }
        Command::TwoProcesses { token_ttl } => {
            // Tokens issued from now on live `token_ttl` seconds: reinstall
            // so every account holds one.
            sim.set_access_ttl(Duration::from_secs(*token_ttl));
            let accounts = install(http, &server.base, sim, 5, 90_000_000).await?;
            let second_port = free_port()?;
            let second = Server::spawn(amohook, db_url, sim, rps, second_port)?;
            wait_ready(http, &second.base).await?;
            // Half the hooks go to each process.
            let mut targets = Vec::new();
            for (id, _, url) in &accounts {
                targets.push((*id, url.clone()));
                targets.push((*id, url.replace(&server.base, &second.base)));
            }
            let refreshes_before = sim.total_refreshes();
            let started = Instant::now();
            let load = Load::start(http, targets, 8, 1, Duration::from_millis(10), hook_body);
            tokio::time::sleep(Duration::from_secs(30)).await;
            let (ok, statuses, _) = load.finish().await;
            let (lost, duplicated, settled) = verdict(sim, &ok, SETTLE).await;
            let elapsed = started.elapsed().as_secs_f64();
            let refreshes = sim.total_refreshes() - refreshes_before;
            // At most one refresh per account per three quarters of a
            // lifetime, plus one at the start.
            let allowed = (accounts.len() as f64 * (elapsed / (*token_ttl as f64 * 0.75) + 1.0))
                .ceil() as u32;
            drop(second);
            json!({ "drill": "two-processes", "token_ttl_seconds": token_ttl, "hooks_ok": ok.len(),
                    "answers": statuses, "refreshes": refreshes, "refreshes_allowed": allowed,
                    "refresh_token_reuses": sim.refresh_reuses(), "lost": lost, "duplicated": duplicated,
                    "settled_seconds": settled,
                    "pass": lost == 0 && duplicated == 0 && sim.refresh_reuses() == 0 && refreshes <= allowed && refreshes > 0 })
        }
        Command::Malformed => {
            let rss_before = server.rss_kib("VmRSS:");
            let load = Load::start(http, targets.clone(), 4, 1, Duration::ZERO, hook_body);
            let (account, url) = targets[0].clone();
            let base = server.base.clone();
            let mut statuses: HashMap<String, usize> = HashMap::new();
            let oversize = "x".repeat(1024 * 1024 + 10);
            for i in 0..3000u32 {
                let (target, body) = match i % 6 {
                    0 => (url.clone(), "leads[add]=oops".to_owned()),
                    1 => (
                        url.clone(),
                        format!(
                            "account[id]={}&leads[add][0][id]=1&leads[add][0][created_at]=1",
                            account + 1
                        ),
                    ),
                    2 => (format!("{base}/hooks/not-a-key-{i}"), hook_body(account, 1)),
                    3 => (
                        url.clone(),
                        String::from_utf8_lossy(&[0xff, 0xfe, 0x00, (i % 255) as u8]).into_owned(),
                    ),
                    4 => (
                        url.clone(),
                        format!("leads[add][0][id]={i}&leads[add][0][created_at]=x%ZZ"),
                    ),
                    _ => (url.clone(), oversize.clone()),
                };
                let status = match http.post(&target).body(body).send().await {
                    Ok(r) => r.status().as_u16().to_string(),
                    Err(_) => "no answer".into(),
                };
                *statuses.entry(status).or_default() += 1;
            }
            let (ok, load_statuses, _) = load.finish().await;
            let (lost, duplicated, settled) = verdict(sim, &ok, SETTLE).await;
            let rss_after = server.rss_kib("VmRSS:");
            let bad = statuses.keys().any(|s| !s.starts_with('4'));
            json!({ "drill": "malformed", "malformed_answers": statuses, "load_answers": load_statuses,
                    "hooks_ok": ok.len(), "lost": lost, "duplicated": duplicated, "settled_seconds": settled,
                    "rss_kib_before": rss_before, "rss_kib_after": rss_after,
                    "pass": !bad && lost == 0 && duplicated == 0 && rss_after < rss_before + 30 * 1024 })
        }
        Command::Poison { seconds } => {
            // Account 0 sends the odd hooks, account 1 plain ones; the
            // other eight stay idle.
            let (poison, clean) = (targets[0].clone(), targets[1].clone());
            let odd = Load::start(
                http,
                vec![poison],
                3,
                POISON_FIRST,
                Duration::ZERO,
                poison_body,
            );
            let plain = Load::start(http, vec![clean], 6, 1, Duration::ZERO, hook_body);
            tokio::time::sleep(Duration::from_secs(*seconds)).await;
            let (odd_ok, odd_statuses, _) = odd.finish().await;
            let (plain_ok, plain_statuses, plain_latencies) = plain.finish().await;
            let plain_not_200 = not_200(&plain_statuses);
            let ok: Vec<i64> = plain_ok.iter().chain(&odd_ok).copied().collect();
            let (lost, duplicated, settled) = verdict(sim, &ok, SETTLE).await;
            let notes = sim.notes();
            let with_nul = notes.iter().filter(|n| n.text.contains('\0')).count();
            // `a\0b #id` must read `ab #id` in its note.
            let texts: HashMap<i64, &str> = notes
                .iter()
                .map(|n| (n.entity_id, n.text.as_str()))
                .collect();
            let nul_names_wrong = odd_ok
                .iter()
                .filter(|e| *e % 6 == 0)
                .filter(|e| {
                    texts
                        .get(e)
                        .is_none_or(|t| !t.contains(&format!("ab #{e}")))
                })
                .count();
            let p99 = percentile(&plain_latencies, 99.0);
            json!({ "drill": "poison", "seconds": seconds,
                    "clean_hooks_ok": plain_ok.len(), "clean_answers": plain_statuses,
                    "clean_not_200": plain_not_200, "clean_answer_p99_ms": p99,
                    "poison_hooks_ok": odd_ok.len(), "poison_answers": odd_statuses,
                    "lost": lost, "duplicated": duplicated, "settled_seconds": settled,
                    "notes_with_nul": with_nul, "nul_names_not_shown_without_nul": nul_names_wrong,
                    "pass": plain_not_200 == 0 && lost == 0 && duplicated == 0 && !plain_ok.is_empty()
                        && !odd_ok.is_empty() && with_nul == 0 && nul_names_wrong == 0 })
        }
        Command::Flood { seconds, senders } => {
            let (flooder, plain) = (targets[0].clone(), targets[1].clone());
            let flooder_id = flooder.0;
            let flood = Load::start(
                http,
                vec![flooder],
                *senders,
                FLOOD_FIRST,
                Duration::ZERO,
                flood_body,
            );
            let ordinary = Load::start(
                http,
                vec![plain],
                2,
                1,
                Duration::from_millis(100),
                hook_body,
            );
            tokio::time::sleep(Duration::from_secs(*seconds)).await;
            let (flood_ok, flood_statuses, _) = flood.finish().await;
            let (plain_ok, plain_statuses, plain_latencies) = ordinary.finish().await;
            let plain_not_200 = not_200(&plain_statuses);
            let (lost, duplicated, settled) = verdict(sim, &plain_ok, SETTLE).await;
            json!({ "drill": "flood", "seconds": seconds, "senders": senders,
                    "flood_body_bytes": flood_body(flooder_id, 0).len(),
                    "flood_cards_per_hook": FLOOD_CARDS,
                    "flood_answers": flood_statuses, "flood_hooks_ok": flood_ok.len(),
                    "plain_answers": plain_statuses, "plain_not_200": plain_not_200,
                    "plain_answer_p50_ms": percentile(&plain_latencies, 50.0),
                    "plain_answer_p99_ms": percentile(&plain_latencies, 99.0),
                    "plain_answer_max_ms": plain_latencies.last().copied().unwrap_or_default(),
                    "plain_lost": lost, "duplicated": duplicated, "settled_seconds": settled,
                    "pass": plain_not_200 == 0 && lost == 0 && duplicated == 0 && !plain_ok.is_empty() })
        }
        Command::InstallFlood { seconds, senders } => {
            let rss_before = server.rss_kib("VmRSS:");
            let tokens_before = token_requests(sim).len();
            let hooks = Load::start(
                http,
                vec![targets[0].clone()],
                4,
                1,
                Duration::from_millis(10),
                hook_body,
            );
            let stop = Arc::new(AtomicBool::new(false));
            let forgers = forge_installs(http, &server.base, *senders, stop.clone());
            let flood_started = Instant::now();
            tokio::time::sleep(Duration::from_secs(*seconds / 2)).await;
            // A real widget install in the middle of the flood.
            let real_id = 81_000_000;
            let real_domain = format!("acc{real_id}.amocrm.ru");
            sim.add_account(&real_domain, amocrm_sim::SimAccount::new(real_id));
            let code = sim.issue_code(&real_domain);
            let asked = Instant::now();
            let real_answer = http
                .get(format!("{}/oauth/callback", server.base))
                .query(&[
                    ("code", code.as_str()),
                    ("referer", real_domain.as_str()),
                    ("from_widget", "1"),
                ])
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            let real_answered_ms = asked.elapsed().as_secs_f64() * 1000.0;
            tokio::time::sleep(Duration::from_secs(*seconds - *seconds / 2)).await;
            stop.store(true, Ordering::Relaxed);
            let mut forged: HashMap<String, usize> = HashMap::new();
            for task in forgers {
                for (status, n) in task.await? {
                    *forged.entry(status).or_default() += n;
                }
            }
            let flood_seconds = flood_started.elapsed().as_secs_f64();
            let (ok, hook_statuses, latencies) = hooks.finish().await;
            // The real install connects (its web-hooks are subscribed),
            // inline or from the background retrier: when, by the fake's
            // record of the subscription.
            let mut connected_after = None;
            for _ in 0..600 {
                connected_after = sim
                    .requests()
                    .iter()
                    .find(|r| r.domain == real_domain && r.path == "/api/v4/webhooks")
                    .map(|r| r.at.saturating_duration_since(asked).as_secs_f64());
                if connected_after.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let seen: Vec<_> = token_requests(sim).split_off(tokens_before);
            let max_window = max_in_a_second(&seen);
            let span = seen
                .last()
                .zip(seen.first())
                .map(|(l, f)| l.at.duration_since(f.at).as_secs_f64())
                .unwrap_or(0.0);
            let (lost, duplicated, settled) = verdict(sim, &ok, SETTLE).await;
            let rss_after = server.rss_kib("VmRSS:");
            let hooks_not_200 = not_200(&hook_statuses);
            let p99 = percentile(&latencies, 99.0);
            // One request of jitter in a window: a request leaves a moment
            // after its turn at the gate.
            json!({ "drill": "install-flood", "seconds": seconds, "senders": senders,
                    "forged_answers": forged, "flood_seconds": flood_seconds,
                    "token_requests": seen.len(), "token_requests_seconds": span,
                    "max_token_requests_in_any_second": max_window,
                    "allowed_per_second": INSTALL_RATE,
                    "real_install_answer": real_answer, "real_install_answered_ms": real_answered_ms,
                    "real_install_connected_after_seconds": connected_after,
                    "hooks_ok": ok.len(), "hook_answers": hook_statuses, "hook_answer_p99_ms": p99,
                    "lost": lost, "duplicated": duplicated, "settled_seconds": settled,
                    "rss_kib_before": rss_before, "rss_kib_after": rss_after,
                    "pass": max_window <= INSTALL_RATE + 1
                        && (seen.len() as f64) <= INSTALL_RATE as f64 * span + INSTALL_RATE as f64
                        && [200, 202].contains(&real_answer) && real_answered_ms < 3000.0
                        && connected_after.is_some()
                        && hooks_not_200 == 0 && !ok.is_empty() && p99 < 100.0
                        && lost == 0 && duplicated == 0
                        && rss_after < rss_before + 30 * 1024 })
        }
    };
    drop(server);
    Ok(report)
}

fn token_requests(sim: &Simulator) -> Vec<amocrm_sim::Seen> {
    sim.requests()
        .into_iter()
        .filter(|r| r.path == "/oauth2/access_token")
        .collect()
}
