//! `amohook sandbox`: amoCRM on your laptop.
//!
//! One command, given a PostgreSQL URL, runs the real service against the
//! amoCRM simulator (the `amocrm-sim` crate) in place of amoCRM:
//!
//! 1. starts the simulator on a free local port, with amoCRM's limit of 7
//!    requests a second per account, and two demo accounts in it (an
//!    amocrm.ru one whose notes are in Russian, a kommo.com one whose notes
//!    are in English);
//! 2. starts the service (the same [`Application`] `serve` runs) with
//!    settings made here: the simulator as amoCRM, a generated admin token,
//!    the sandbox's own encryption key, the given database;
//! 3. installs both accounts through the service's real HTTP flow
//!    (`GET /install`, the simulator's grant page, `GET /oauth/callback`);
//! 4. returns what to print: the status page's URL and its login.
//!
//! In sandbox mode only, the account page gains a panel
//! (`http::admin::sandbox`): a form that saves a lead, contact or company in
//! the simulated account (the simulator then sends amoCRM's web-hook to the
//! account's hook URL), the notes the simulated amoCRM holds, card by card,
//! and fault switches. `serve` never mounts any of it.
//!
//! What the sandbox writes: the database named in its URL (created if
//! missing, kept between runs; the demo accounts are installed again at
//! every start) and nothing else. The simulator lives in memory, so its
//! cards and notes start empty at every run. Its tokens are sealed with a
//! fixed key written below: they are the simulator's, worth nothing, and a
//! database of the real service (sealed with another key) is refused at
//! start rather than mixed with them.

mod panel;
mod start;
mod words;

pub use start::{database_url, start, Running};

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use amocrm_sim::{CardChange, CardEdit, Fault, SimAccount, Simulator};
use anyhow::{bail, Context as _};
use base64::Engine as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    config::{RawSettings, Settings, DEFAULT_TOML},
    startup::Application,
};

/// The simulated integration's id and secret (the simulator checks them
/// like amoCRM does).
pub const CLIENT_ID: &str = "7d5e0f6a-5a9b-4c1e-8f3d-5a4e0b2c1d00";
const CLIENT_SECRET: &str = "sandbox-client-secret-not-a-real-one";
/// The sandbox's second integration, "registered in Kommo": the kommo.com
/// demo account is installed through it, as a real deployment serving both
/// marketplaces would (see `platform.rs`).
pub const KOMMO_CLIENT_ID: &str = "3b9c2d1e-7f6a-4e5d-9c8b-0a1b2c3d4e5f";
const KOMMO_CLIENT_SECRET: &str = "sandbox-kommo-secret-not-a-real-one";

/// The key the sandbox seals its (simulated) tokens with. Public on purpose:
/// see the module's documentation.
const SANDBOX_KEY: &[u8; 32] = b"amohook sandbox key: not secret!";

/// The database when the URL names none.
pub const DEFAULT_DATABASE: &str = "amohook_sandbox";

/// amoCRM's limit: requests a second to one account.
const AMOCRM_RATE_LIMIT: usize = 7;

/// What `amohook sandbox` is given.
#[derive(Debug, Clone)]
pub struct Options {
    /// A PostgreSQL URL; its database is created when missing. Without a
    /// database name, [`DEFAULT_DATABASE`].
    pub database_url: String,
    pub listen: SocketAddr,
}

/// A demo account: its host (whose domain sets the notes' language) and
/// the simulated account.
pub struct Demo {
    pub domain: &'static str,
    pub account: SimAccount,
}

/// The two demo accounts: an amocrm.ru one (Russian notes) and a kommo.com
/// one (English notes), each with two users and a pipeline.
pub fn demo_accounts() -> Vec<Demo> {
    let ru = SimAccount {
        name: "Рога и копыта".into(),
        ..SimAccount::new(31_000_001)
    };
    let en = SimAccount {
        id: 31_000_002,
        name: "Acme Corp".into(),
        timezone: "Europe/London".into(),
        admin: true,
        users: vec![(200, "Anna Smith".into()), (201, "John Brown".into())],
        pipelines: vec![(
            20,
            "Sales".into(),
            vec![
                (21, "New lead".into()),
                (22, "Negotiation".into()),
                (142, "Closed - won".into()),
            ],
        )],
        fields: Vec::new(),
        currency: "USD".into(),
        currency_symbol: "$".into(),
        date_pattern: "d.m.Y".into(),
        time_pattern: "H:i".into(),
        lang: Some("en".into()),
    };
    vec![
        Demo {
            domain: "roga.amocrm.ru",
            account: ru,
        },
        Demo {
            domain: "acme.kommo.com",
            account: en,
        },
    ]
}

/// A fault the account page can switch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultSwitch {
    /// Every call answers 429 for [`FaultSwitch::RATE_LIMITED_FOR`].
    RateLimited,
    /// The next [`FaultSwitch::SERVER_ERRORS`] calls answer 502.
    ServerErrors,
    /// Every call answers 503 for [`FaultSwitch::OUTAGE_FOR`].
    Outage,
    /// The account's tokens are revoked, as when it removes the integration.
    RevokedGrant,
    /// Ends a hold and waiting errors (a revoked grant stays revoked).
    Clear,
}

impl FaultSwitch {
    pub const RATE_LIMITED_FOR: Duration = Duration::from_secs(10);
    pub const SERVER_ERRORS: usize = 2;
    pub const OUTAGE_FOR: Duration = Duration::from_secs(30);
    pub const ALL: [FaultSwitch; 5] = [
        FaultSwitch::RateLimited,
        FaultSwitch::ServerErrors,
        FaultSwitch::Outage,
        FaultSwitch::RevokedGrant,
        FaultSwitch::Clear,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultSwitch::RateLimited => "429",
            FaultSwitch::ServerErrors => "5xx",
            FaultSwitch::Outage => "outage",
            FaultSwitch::RevokedGrant => "revoke",
            FaultSwitch::Clear => "clear",
        }
    }

    pub fn parse(text: &str) -> Option<FaultSwitch> {
        FaultSwitch::ALL.into_iter().find(|f| f.as_str() == text)
    }
}

/// The sandbox's share of the application state: the simulator, and a
/// client to post its web-hooks with.
pub struct Sandbox {
    sim: Simulator,
    http: reqwest::Client,
}

/// What a saved card led to.
pub struct Saved {
    pub change: CardChange,
    /// For each web-hook sent: amohook's answer (an HTTP status) or why
    /// there was none.
    pub answers: Vec<Result<u16, String>>,
}

impl Sandbox {
    pub fn simulator(&self) -> &Simulator {
        &self.sim
    }

    /// A person saves a card in the simulated account `domain`; the
    /// web-hooks amoCRM sends for it are posted to their destinations (the
    /// account's hook URL). None: the save changed nothing, and amoCRM
    /// sends nothing.
    pub async fn save_card(&self, domain: &str, edit: CardEdit) -> Result<Option<Saved>, String> {
        let Some(change) = self.sim.edit_card(domain, edit)? else {
            return Ok(None);
        };
        let mut answers = Vec::new();
        for hook in &change.hooks {
            let mut request = self.http.post(&hook.destination);
            for (name, value) in hook.headers() {
                request = request.header(name, value);
            }
            // The error names no URL: hook URLs are secrets.
            let answer = match request.body(hook.body.clone()).send().await {
                Ok(response) => Ok(response.status().as_u16()),
                Err(e) if e.is_timeout() => Err("no answer in time".to_owned()),
                Err(_) => Err("the hook URL could not be reached".to_owned()),
            };
            answers.push(answer);
        }
        Ok(Some(Saved { change, answers }))
    }

    /// Switches a fault on (or off) for the simulated account `domain`.
    pub fn switch(&self, domain: &str, fault: FaultSwitch) {
        match fault {
            FaultSwitch::RateLimited => self.sim.hold(domain, 429, FaultSwitch::RATE_LIMITED_FOR),
            FaultSwitch::ServerErrors => {
                self.sim
                    .fail_next(domain, "/", Fault::Status(502), FaultSwitch::SERVER_ERRORS)
            }
            FaultSwitch::Outage => self.sim.hold(domain, 503, FaultSwitch::OUTAGE_FOR),
            FaultSwitch::RevokedGrant => {
                self.sim.revoke_refresh_tokens(domain);
                self.sim.expire_access_tokens(domain);
            }
            FaultSwitch::Clear => self.sim.clear_faults(domain),
        }
        tracing::info!(domain, fault = fault.as_str(), "sandbox fault switched");
    }
}
