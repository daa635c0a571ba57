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
//! - **limits and faults** (`server.rs`, the front door; switched in
//!   `faults.rs`): 429 past a rate per account
//!   ([`Simulator::set_rate_limit`], 7 a second in amoCRM), answers held at
//!   a status for a while ([`Simulator::hold`]), single faults
//!   ([`Simulator::fail_next`]), outages, latency, revoked grants;
//! - **cards and their web-hooks** ([`SimCard`], [`HookBody`]): a person's
//!   edit of a lead, contact or company in an account becomes the card's
//!   new state and the web-hooks amoCRM would send for it, in amoCRM's own
//!   body format, to every destination the account subscribed for that
//!   event (`card.rs`, `cards.rs`, `webhook.rs`);
//! - **widgets** (`widget.rs`): the one-time tokens amoCRM signs for a
//!   widget's requests, and a widget settings frame that runs a widget's
//!   script.
//!
//! Below them: `accounts.rs` (a simulated account), `state.rs` (everything
//! under one lock), `answers.rs` (amoCRM's answer shapes), `records.rs`.
//!
//! Every account lives under a path prefix named after its host, so
//! amohook reaches it with
//! `amocrm.api_base_url = http://127.0.0.1:PORT/{domain}` and sends
//! browsers to `amocrm.authorize_url = http://127.0.0.1:PORT/oauth`.
//! Nothing is stored on disk: the accounts, tokens, cards and notes live
//! in memory until the simulator is dropped.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    http::Method,
    routing::{any, get},
    Router,
};
use serde_json::Value;
use tokio::net::TcpListener;

use answers::unix_now;
use tokio_util::sync::CancellationToken;

mod accounts;
mod answers;
mod api;
mod card;
mod cards;
mod faults;
mod oauth;
mod records;
mod server;
mod state;
mod webhook;
pub mod widget;

pub use accounts::{SimAccount, SimNote};
pub use card::{Entity, SimCard};
pub use cards::{CardChange, CardEdit, OutgoingHook};
pub use faults::Fault;
pub use records::{SimEvent, SimField};
pub(crate) use state::Inner;
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
