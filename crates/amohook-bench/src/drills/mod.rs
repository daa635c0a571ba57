//! Fault drills: each puts a real amohook process under load, breaks
//! something, and checks that every hook answered 200 ends as exactly one
//! note. A drill prints a JSON verdict and exits non-zero when it fails.

use std::{
    collections::HashMap,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use amocrm_sim::Simulator;
use serde_json::Value;

use crate::{hook_targets, install, Server};

mod flood;
mod load;

use load::Load;
mod install_flood;
mod kill;
mod malformed;
mod outage;
mod poison;
mod postgres;
mod two_processes;

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
    server: Server,
    sim: &Simulator,
    http: &reqwest::Client,
) -> anyhow::Result<Value> {
    let accounts = install(http, &server.base, sim, 10, 80_000_000).await?;
    let targets = hook_targets(&accounts);
    let ctx = Ctx {
        amohook,
        db_url,
        rps,
        server,
        sim,
        http,
        accounts,
        targets,
    };
    let report = match command {
        Command::Spread { .. } | Command::SlowTenant { .. } => {
            anyhow::bail!("run by main, with accounts of their own")
        }
        Command::Kill => kill::kill(ctx).await?,
        Command::Postgres => postgres::postgres(ctx).await?,
        Command::Outage { seconds } => outage::outage(ctx, seconds).await?,
        Command::TwoProcesses { token_ttl } => two_processes::two_processes(ctx, token_ttl).await?,
        Command::Malformed => malformed::malformed(ctx).await?,
        Command::Poison { seconds } => poison::poison(ctx, seconds).await?,
        Command::Flood { seconds, senders } => flood::flood(ctx, seconds, senders).await?,
        Command::InstallFlood { seconds, senders } => {
            install_flood::install_flood(ctx, seconds, senders).await?
        }
    };
    Ok(report)
}

/// What every drill gets: the server binary, the database, the budget, a
/// running server, the simulator, a client, ten installed accounts and
/// their hook URLs.
pub(crate) struct Ctx<'a> {
    amohook: &'a Path,
    db_url: &'a str,
    rps: usize,
    server: Server,
    sim: &'a Simulator,
    http: &'a reqwest::Client,
    accounts: Vec<(i64, String, String)>,
    targets: Vec<(i64, String)>,
}

fn token_requests(sim: &Simulator) -> Vec<amocrm_sim::Seen> {
    sim.requests()
        .into_iter()
        .filter(|r| r.path == "/oauth2/access_token")
        .collect()
}
