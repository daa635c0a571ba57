//! The simulator's state: accounts, codes and tokens, subscriptions,
//! faults, what was asked and answered; one lock around it all.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use base64::Engine as _;

use crate::{
    widget::InstalledWidget, Fault, Seen, SimAccount, SimCard, SimEvent, SimNote, API_DOMAIN,
};

#[derive(Default)]
pub(crate) struct Inner {
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    /// Kommo's own integration, once registered: Kommo is a platform of its
    /// own, so its hosts (kommo.com, amocrm.com) accept only this client
    /// and amoCRM's (amocrm.ru) only the first.
    pub(crate) kommo_client: Option<(String, String)>,
    pub(crate) accounts: HashMap<String, SimAccount>,
    /// code -> (domain, used, issued)
    pub(crate) codes: HashMap<String, (String, bool, Instant)>,
    /// access token -> (domain, expires)
    pub(crate) access: HashMap<String, (String, Instant)>,
    /// refresh token -> (domain, used)
    pub(crate) refresh: HashMap<String, (String, bool)>,
    pub(crate) access_ttl: Option<Duration>,
    pub(crate) refreshes: HashMap<String, u32>,
    pub(crate) refresh_reuses: u32,
    pub(crate) webhooks: Vec<(String, Value)>,
    /// (domain, path prefix) -> faults to answer with, in order.
    pub(crate) faults: HashMap<(String, String), Vec<Fault>>,
    pub(crate) seen: Vec<Seen>,
    pub(crate) counter: u64,
    pub(crate) notes: Vec<SimNote>,
    /// Answer 429 past this many requests to one account in a second.
    pub(crate) rate_limit: Option<usize>,
    /// Every API answer is this status (an outage), until cleared.
    pub(crate) outage: Option<u16>,
    /// Notes for these entity ids are refused with a validation error.
    pub(crate) refused_entities: HashSet<i64>,
    /// (domain, event): what `GET /api/v4/events` lists.
    pub(crate) events: Vec<(String, SimEvent)>,
    pub(crate) latency: Duration,
    /// domain -> how long its answers take instead of `latency` (`None`:
    /// they never come; the client gives up).
    pub(crate) slow: HashMap<String, Option<Duration>>,
    /// Requests being answered now, and the most at once since the last
    /// [`Simulator::take_most_in_flight`].
    pub(crate) in_flight: usize,
    pub(crate) most_in_flight: usize,
    /// domain -> (status, until): every request to the account answers
    /// this status until then.
    pub(crate) holds: HashMap<String, (u16, Instant)>,
    /// (domain, card): the cards people made in the accounts.
    pub(crate) cards: Vec<(String, SimCard)>,
    /// The widget the accounts have installed, for the widget frame.
    pub(crate) widget: Option<InstalledWidget>,
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
