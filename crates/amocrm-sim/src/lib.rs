//! amoCRM on your laptop: a simulated amoCRM (Kommo) at its HTTP boundary.
//!
//! This crate is part of amohook, not only a test helper. It is what
//! `amohook sandbox` runs in place of amoCRM, and what the end-to-end tests
//! and the benchmark (`amohook-bench`) run against. It answers like amoCRM
//! does (see the project's amoCRM reference notes), for any number of
//! accounts at once:
//!
//! - **OAuth** (`oauth.rs`): a grant page at `/oauth` that sends the browser
//!   back to the integration's redirect URI with a code, the token endpoint
//!   (`POST /oauth2/access_token`) with 20-minute single-use codes and
//!   single-use refresh tokens ("Token has been revoked" on reuse), access
//!   tokens that are JWTs naming `account_id` and `api_domain`, and the
//!   helper that names a renamed account's host;
//! - **the API** (`api.rs`): `/api/v4/account`, users, pipelines, custom
//!   field definitions, events, web-hook subscriptions, and notes (created
//!   and listed with the documented filters); problem+json errors, 401 on
//!   expired tokens, 403 to non-admins on admin-only methods;
//! - **limits and faults** (`server.rs`): 429 past a rate per account
//!   ([`Simulator::set_rate_limit`], 7 a second in amoCRM), answers held at
//!   a status for a while ([`Simulator::hold`]), single faults
//!   ([`Simulator::fail_next`]), outages, latency, revoked grants;
//! - **cards and their web-hooks** ([`SimCard`], [`HookBody`]): a person's
//!   edit of a lead, contact or company in an account becomes the card's
//!   new state and the web-hooks amoCRM would send for it, in amoCRM's own
//!   body format, to every destination the account subscribed for that
//!   event.
//!
//! Every account lives under a path prefix named after its host, so
//! amohook reaches it with
//! `amocrm.api_base_url = http://127.0.0.1:PORT/{domain}` and sends
//! browsers to `amocrm.authorize_url = http://127.0.0.1:PORT/oauth`.
//! Nothing is stored on disk: the accounts, tokens, cards and notes live
//! in memory until the simulator is dropped.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    http::Method,
    routing::{any, get},
    Router,
};
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use server::unix_now;
use tokio_util::sync::CancellationToken;

mod api;
mod cards;
mod oauth;
mod records;
mod server;
mod webhook;
pub mod widget;

pub use cards::{CardChange, CardEdit, Entity, OutgoingHook, SimCard};
pub use records::{SimEvent, SimField};
pub use webhook::HookBody;

/// The host of amoCRM's OAuth helpers, as the simulator's access tokens name it.
pub const API_DOMAIN: &str = "api-b.amocrm.ru";

/// The most of `sorted` (arrival times, oldest first) that fall within any
/// one second.
pub fn most_in_one_second(sorted: &[Instant]) -> usize {
    most_within(sorted, Duration::from_secs(1))
}

/// The most of `sorted` (arrival times, oldest first) that fall within any
/// `window`.
pub fn most_within(sorted: &[Instant], window: Duration) -> usize {
    let mut best = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end].duration_since(sorted[start]) >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

/// One request as the simulator saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub domain: String,
    pub method: Method,
    pub path: String,
    /// The query string, decoded.
    pub query: String,
    pub status: u16,
    pub body: String,
}

/// A fault to answer with, instead of the real answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// An HTTP status with amoCRM's body for it (problem+json for 4xx,
    /// HTML for 403 blocks and 5xx).
    Status(u16),
    /// A 400 problem+json with this hint (e.g. "Authorization code has expired").
    Problem { status: u16, hint: String },
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Do the work (notes are created), then answer with this status as if
    /// the answer was lost: the case a retry must not duplicate.
    AfterWork(u16),
    /// Do the work, then wait this long before answering: a sender killed
    /// meanwhile never learns that its notes exist.
    WorkThenDelay(Duration),
}

#[derive(Debug, Clone)]
pub struct SimAccount {
    pub id: i64,
    pub name: String,
    pub timezone: String,
    /// Admin-only methods (webhooks, users) answer 403 when false.
    pub admin: bool,
    pub users: Vec<(i64, String)>,
    pub pipelines: Vec<SimPipeline>,
    /// Custom field definitions by entity (`leads`, `contacts`, `companies`).
    pub fields: Vec<(String, SimField)>,
    pub currency: String,
    pub currency_symbol: String,
    /// PHP date() patterns, as `datetime_settings` gives them.
    pub date_pattern: String,
    pub time_pattern: String,
    /// The `lang` of the account's users (the first of `users` is the one
    /// tokens speak for): None answers `ru` on amocrm.ru, `en` elsewhere.
    pub lang: Option<String>,
}

/// (pipeline id, name, [(status id, name)])
pub type SimPipeline = (i64, String, Vec<(i64, String)>);

impl SimAccount {
    /// An admin's account with two users and one pipeline.
    pub fn new(id: i64) -> Self {
        SimAccount {
            id,
            name: format!("Account {id}"),
            timezone: "Europe/Moscow".into(),
            admin: true,
            users: vec![(100, "Иван Петров".into()), (101, "Мария Иванова".into())],
            pipelines: vec![(
                10,
                "Продажи".into(),
                vec![
                    (1, "Новая".into()),
                    (2, "Переговоры".into()),
                    (142, "Успешно реализовано".into()),
                ],
            )],
            fields: Vec::new(),
            currency: "RUB".into(),
            currency_symbol: "₽".into(),
            date_pattern: "d.m.Y".into(),
            time_pattern: "H:i".into(),
            lang: None,
        }
    }
}

/// A note the simulator holds: what the card's feed shows.
#[derive(Debug, Clone)]
pub struct SimNote {
    pub id: i64,
    pub domain: String,
    /// `leads`, `contacts` or `companies`.
    pub entity_type: String,
    pub entity_id: i64,
    pub text: String,
    /// `common` for the notes amohook writes; tests add others.
    pub note_type: String,
    pub request_id: Option<String>,
    /// When the note was created.
    pub at: Instant,
    /// Unix seconds, what `filter[updated_at]` compares.
    pub updated_at: i64,
}

#[derive(Default)]
pub(crate) struct Inner {
    client_id: String,
    client_secret: String,
    /// Kommo's own integration, once registered: Kommo is a platform of its
    /// own, so its hosts (kommo.com, amocrm.com) accept only this client
    /// and amoCRM's (amocrm.ru) only the first.
    kommo_client: Option<(String, String)>,
    accounts: HashMap<String, SimAccount>,
    /// code -> (domain, used, issued)
    codes: HashMap<String, (String, bool, Instant)>,
    /// access token -> (domain, expires)
    access: HashMap<String, (String, Instant)>,
    /// refresh token -> (domain, used)
    refresh: HashMap<String, (String, bool)>,
    access_ttl: Option<Duration>,
    refreshes: HashMap<String, u32>,
    refresh_reuses: u32,
    webhooks: Vec<(String, Value)>,
    /// (domain, path prefix) -> faults to answer with, in order.
    faults: HashMap<(String, String), Vec<Fault>>,
    seen: Vec<Seen>,
    counter: u64,
    notes: Vec<SimNote>,
    /// Answer 429 past this many requests to one account in a second.
    rate_limit: Option<usize>,
    /// Every API answer is this status (an outage), until cleared.
    outage: Option<u16>,
    /// Notes for these entity ids are refused with a validation error.
    refused_entities: HashSet<i64>,
    /// (domain, event): what `GET /api/v4/events` lists.
    events: Vec<(String, SimEvent)>,
    latency: Duration,
    /// domain -> how long its answers take instead of `latency` (`None`:
    /// they never come; the client gives up).
    slow: HashMap<String, Option<Duration>>,
    /// Requests being answered now, and the most at once since the last
    /// [`Simulator::take_most_in_flight`].
    in_flight: usize,
    most_in_flight: usize,
    /// domain -> (status, until): every request to the account answers
    /// this status until then.
    holds: HashMap<String, (u16, Instant)>,
    /// (domain, card): the cards people made in the accounts.
    cards: Vec<(String, SimCard)>,
    /// The widget the accounts have installed, for the widget frame.
    widget: Option<widget::InstalledWidget>,
}

/// A running simulated amoCRM. Stops when dropped.
pub struct Simulator {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    stop: CancellationToken,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub(crate) type Shared = Arc<Mutex<Inner>>;

impl Simulator {
    /// Starts on a free local port, for an integration with these
    /// credentials.
    pub async fn start(client_id: &str, client_secret: &str) -> std::io::Result<Simulator> {
        let inner = Arc::new(Mutex::new(Inner {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            ..Inner::default()
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/oauth", get(oauth::grant_page))
            .route("/oauth/allow", get(oauth::allow))
            .route("/widget-frame/{domain}", get(widget::frame))
            .route("/widget-frame/{domain}/script.js", get(widget::script))
            .route("/widget-frame/{domain}/token", get(widget::token))
            .route("/{domain}/{*rest}", any(server::handle))
            .with_state(inner.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await;
        });
        Ok(Simulator { addr, inner, stop })
    }

    /// Registers the integration of the Kommo platform: from now on hosts
    /// under kommo.com and amocrm.com accept codes and refresh tokens only
    /// with this client (and Kommo's grant page offers only them), and
    /// amocrm.ru hosts only with the first one.
    pub fn register_kommo_client(&self, client_id: &str, client_secret: &str) {
        self.with(|s| s.kommo_client = Some((client_id.into(), client_secret.into())));
    }

    /// The value for `amocrm.api_base_url`.
    pub fn api_base_url(&self) -> String {
        format!("http://{}/{{domain}}", self.addr)
    }

    /// The value for `amocrm.authorize_url`: the grant page, where a person
    /// picks the account to install into.
    pub fn authorize_url(&self) -> String {
        format!("http://{}/oauth", self.addr)
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().expect("simulator state"))
    }

    pub fn add_account(&self, domain: &str, account: SimAccount) {
        self.with(|s| s.accounts.insert(domain.into(), account));
    }

    /// An authorization code for `domain`, as amoCRM would put it in the
    /// redirect after the user grants access.
    pub fn issue_code(&self, domain: &str) -> String {
        self.with(|s| {
            let code = s.next_token("code");
            s.codes
                .insert(code.clone(), (domain.into(), false, Instant::now()));
            code
        })
    }

    /// Lifetime of access tokens issued from now on (default: 24 h).
    pub fn set_access_ttl(&self, ttl: Duration) {
        self.with(|s| s.access_ttl = Some(ttl));
    }

    /// Makes every access token of `domain` expired, as if a day passed.
    pub fn expire_access_tokens(&self, domain: &str) {
        let past = Instant::now();
        self.with(|s| {
            for (d, exp) in s.access.values_mut() {
                if d == domain {
                    *exp = past;
                }
            }
        });
    }

    /// Revokes every refresh token of `domain` (the account turned the
    /// integration off, or the token died of old age).
    pub fn revoke_refresh_tokens(&self, domain: &str) {
        self.with(|s| {
            for (d, used) in s.refresh.values_mut() {
                if d == domain {
                    *used = true;
                }
            }
        });
    }

    /// Successful refreshes for `domain`.
    pub fn refreshes(&self, domain: &str) -> u32 {
        self.with(|s| s.refreshes.get(domain).copied().unwrap_or(0))
    }

    /// Refresh tokens presented a second time (the mistake amoCRM punishes).
    pub fn refresh_reuses(&self) -> u32 {
        self.with(|s| s.refresh_reuses)
    }

    /// Web-hook subscriptions: (domain, the request body with the `id` and
    /// `disabled` amoCRM keeps).
    pub fn webhooks(&self) -> Vec<(String, Value)> {
        self.with(|s| s.webhooks.clone())
    }

    /// Switches the account's web-hooks off, as amoCRM does after more
    /// than 100 failed answers in 2 hours: kept, marked `disabled`, and
    /// sent no more.
    pub fn disable_webhooks(&self, domain: &str) {
        self.with(|s| {
            for (_, hook) in s.webhooks.iter_mut().filter(|(d, _)| d == domain) {
                hook["disabled"] = Value::Bool(true);
            }
        })
    }

    /// Removes the account's web-hooks (someone deleted them in amoCRM).
    pub fn remove_webhooks(&self, domain: &str) {
        self.with(|s| s.webhooks.retain(|(d, _)| d != domain))
    }

    /// Every request seen so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.with(|s| s.seen.clone())
    }

    /// Every access and refresh token issued so far.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.with(|s| s.access.keys().chain(s.refresh.keys()).cloned().collect())
    }

    /// Puts a note into a card as someone in the account would.
    /// `entity_type` is `leads`, `contacts` or `companies`.
    pub fn add_note(
        &self,
        domain: &str,
        entity_type: &str,
        entity_id: i64,
        note_type: &str,
        text: &str,
    ) {
        self.with(|s| {
            s.counter += 1;
            let note = SimNote {
                id: s.counter as i64,
                domain: domain.into(),
                entity_type: entity_type.into(),
                entity_id,
                text: text.into(),
                note_type: note_type.into(),
                request_id: None,
                at: Instant::now(),
                updated_at: unix_now(),
            };
            s.notes.push(note);
        });
    }

    /// The account removes the integration: amoCRM revokes its tokens (the
    /// access tokens answer 401, the refresh tokens are refused).
    pub fn uninstall(&self, domain: &str) {
        self.with(|s| {
            s.access.retain(|_, (d, _)| d != domain);
            s.refresh.retain(|_, (d, _)| d != domain);
        });
    }

    /// The account renames its subdomain: it moves to `new_domain`, its
    /// tokens with it; the old host answers 404 from then on.
    pub fn rename(&self, old_domain: &str, new_domain: &str) {
        self.with(|s| {
            if let Some(account) = s.accounts.remove(old_domain) {
                s.accounts.insert(new_domain.into(), account);
            }
            for (d, _) in s.access.values_mut() {
                if d == old_domain {
                    *d = new_domain.into();
                }
            }
            for (d, _) in s.refresh.values_mut() {
                if d == old_domain {
                    *d = new_domain.into();
                }
            }
        });
    }

    /// Records an event in a card's history (amoCRM writes one for every
    /// change of a field, stage, responsible, name or budget).
    pub fn add_event(&self, domain: &str, event: SimEvent) {
        self.with(|s| s.events.push((domain.into(), event)));
    }

    /// Notes created so far.
    pub fn notes(&self) -> Vec<SimNote> {
        self.with(|s| s.notes.clone())
    }

    /// Answers 429 to requests over `per_second` for one account within a
    /// second, as amoCRM does.
    pub fn set_rate_limit(&self, per_second: usize) {
        self.with(|s| s.rate_limit = Some(per_second));
    }

    /// Answers every request with `status` (503 for an outage, 429 for a
    /// burst of rate limiting) until called again with None.
    pub fn set_outage(&self, status: Option<u16>) {
        self.with(|s| s.outage = status);
    }

    /// All refreshes across accounts.
    pub fn total_refreshes(&self) -> u32 {
        self.with(|s| s.refreshes.values().sum())
    }

    /// Every answer waits this long first.
    pub fn set_latency(&self, latency: Duration) {
        self.with(|s| s.latency = latency);
    }

    /// The account's amoCRM answers in `latency` instead of the global
    /// latency: a slow server.
    pub fn set_domain_latency(&self, domain: &str, latency: Duration) {
        self.with(|s| s.slow.insert(domain.into(), Some(latency)));
    }

    /// The account's amoCRM never answers: each request is read, counted
    /// and left hanging until the client gives up.
    pub fn hang(&self, domain: &str) {
        self.with(|s| s.slow.insert(domain.into(), None));
    }

    /// Requests being answered (or left hanging) right now.
    pub fn in_flight(&self) -> usize {
        self.with(|s| s.in_flight)
    }

    /// The most requests in flight at once since the last call, which
    /// starts counting again from those in flight now.
    pub fn take_most_in_flight(&self) -> usize {
        self.with(|s| std::mem::replace(&mut s.most_in_flight, s.in_flight))
    }

    /// Notes for this card id are refused with a 400 validation error that
    /// names the note.
    pub fn refuse_notes_for(&self, entity_id: i64) {
        self.with(|s| s.refused_entities.insert(entity_id));
    }

    /// The most requests to `domain` that arrived within any one second.
    pub fn max_per_second(&self, domain: &str) -> usize {
        let mut times: Vec<Instant> = self.with(|s| {
            s.seen
                .iter()
                .filter(|r| r.domain == domain)
                .map(|r| r.at)
                .collect()
        });
        times.sort();
        most_in_one_second(&times)
    }

    /// Answers with status `status` seen for `domain`.
    pub fn count_status(&self, domain: &str, status: u16) -> usize {
        self.with(|s| {
            s.seen
                .iter()
                .filter(|r| r.domain == domain && r.status == status)
                .count()
        })
    }

    /// Answers the next `n` requests to `domain` whose path starts with
    /// `path_prefix` (e.g. "/api/v4/webhooks") with `fault`.
    pub fn fail_next(&self, domain: &str, path_prefix: &str, fault: Fault, n: usize) {
        self.with(|s| {
            s.faults
                .entry((domain.into(), path_prefix.into()))
                .or_default()
                .extend(std::iter::repeat_n(fault, n))
        });
    }

    /// Every request to `domain` answers `status` (429, 503, ...) for the
    /// next `duration`, as amoCRM does when it rate-limits or is down.
    pub fn hold(&self, domain: &str, status: u16, duration: Duration) {
        let until = Instant::now() + duration;
        self.with(|s| s.holds.insert(domain.into(), (status, until)));
    }

    /// The status `domain` is held at and for how much longer, if it is.
    pub fn held(&self, domain: &str) -> Option<(u16, Duration)> {
        let now = Instant::now();
        self.with(|s| {
            s.holds
                .get(domain)
                .filter(|(_, until)| *until > now)
                .map(|(status, until)| (*status, *until - now))
        })
    }

    /// Single faults still waiting for requests to `domain` ([`Self::fail_next`]).
    pub fn faults_waiting(&self, domain: &str) -> usize {
        self.with(|s| {
            s.faults
                .iter()
                .filter(|((d, _), _)| d == domain)
                .map(|(_, list)| list.len())
                .sum()
        })
    }

    /// Ends the hold and the waiting faults of `domain`.
    pub fn clear_faults(&self, domain: &str) {
        self.with(|s| {
            s.holds.remove(domain);
            s.faults.retain(|(d, _), _| d != domain);
        });
    }

    /// The account living at `domain`, as the simulator holds it.
    pub fn account(&self, domain: &str) -> Option<SimAccount> {
        self.with(|s| s.accounts.get(domain).cloned())
    }

    /// Every account: (domain, account), by domain.
    pub fn accounts(&self) -> Vec<(String, SimAccount)> {
        let mut all: Vec<_> = self.with(|s| {
            s.accounts
                .iter()
                .map(|(d, a)| (d.clone(), a.clone()))
                .collect()
        });
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

impl Inner {
    /// The client (id, secret) a host accepts: Kommo's on kommo.com and
    /// amocrm.com once it is registered, the first one everywhere else.
    pub(crate) fn client_for(&self, domain: &str) -> (&str, &str) {
        let kommo_host = [".kommo.com", ".amocrm.com"]
            .iter()
            .any(|parent| domain.ends_with(parent));
        match (&self.kommo_client, kommo_host) {
            (Some((id, secret)), true) => (id, secret),
            _ => (&self.client_id, &self.client_secret),
        }
    }

    /// Whether `client_id` is one of the registered integrations.
    pub(crate) fn knows_client(&self, client_id: &str) -> bool {
        client_id == self.client_id
            || self
                .kommo_client
                .as_ref()
                .is_some_and(|(id, _)| id == client_id)
    }

    pub(crate) fn next_token(&mut self, kind: &str) -> String {
        self.counter += 1;
        format!("{kind}-{}-{:016x}", self.counter, rand::random::<u64>())
    }

    pub(crate) fn take_fault(&mut self, domain: &str, path: &str) -> Option<Fault> {
        let key = self
            .faults
            .keys()
            .find(|(d, p)| d == domain && path.starts_with(p.as_str()))
            .cloned()?;
        let list = self.faults.get_mut(&key)?;
        let fault = (!list.is_empty()).then(|| list.remove(0));
        if list.is_empty() {
            self.faults.remove(&key);
        }
        fault
    }

    pub(crate) fn issue_pair(&mut self, domain: &str) -> Value {
        let ttl = self.access_ttl.unwrap_or(Duration::from_secs(86_400));
        // amoCRM's access tokens are JWTs whose payload names the account
        // and the host of its OAuth helpers (`api_domain`).
        let account_id = self.accounts.get(domain).map_or(0, |a| a.id);
        let claims = json!({
            "account_id": account_id, "api_domain": API_DOMAIN,
            "jti": self.next_token("jti"),
        });
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let access = format!(
            "{}.{}.{}",
            b64(br#"{"typ":"JWT","alg":"RS256"}"#),
            b64(claims.to_string().as_bytes()),
            b64(b"signature")
        );
        let refresh = self.next_token("refresh");
        self.access
            .insert(access.clone(), (domain.into(), Instant::now() + ttl));
        self.refresh.insert(refresh.clone(), (domain.into(), false));
        json!({
            "token_type": "Bearer",
            "expires_in": ttl.as_secs(),
            "server_time": chrono::Utc::now().timestamp(),
            "access_token": access,
            "refresh_token": refresh,
        })
    }
}
