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
mod words;

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

/// A running sandbox.
pub struct Running {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The generated admin token (the status page's password).
    pub admin_token: String,
    /// (account id, domain) of the installed demo accounts.
    pub accounts: Vec<(i64, String)>,
    /// The database in use, without its password.
    pub database: String,
    pub sandbox: Arc<Sandbox>,
    server: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// What `amohook sandbox` prints once it is ready.
    pub fn banner(&self) -> String {
        let mut accounts = String::new();
        for (id, domain) in &self.accounts {
            let language = if domain.ends_with(".amocrm.ru") {
                "notes in Russian"
            } else {
                "notes in English"
            };
            accounts.push_str(&format!(
                "    {domain:<16} {language}:  {}/status/accounts/{id}\n",
                self.base_url
            ));
        }
        format!(
            "\namohook sandbox is ready. amoCRM is simulated: nothing leaves this machine.\n\n\
             \x20 Status page:  {base}/status\n\
             \x20 Log in with:  user admin, password {token}\n\n\
             \x20 Demo accounts, installed through /install and /oauth/callback:\n{accounts}\n\
             \x20 On an account's page: add or change a lead, contact or company, see the\n\
             \x20 notes amoCRM received, and switch faults on.\n\n\
             \x20 Database: {database} (kept; the simulator starts empty every run)\n\
             \x20 Ctrl-C stops the sandbox.\n",
            base = self.base_url,
            token = self.admin_token,
            database = self.database,
        )
    }

    /// Waits until the service stopped (after `shutdown` fired).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.server.await.context("the service panicked")?
    }
}

/// The URL with [`DEFAULT_DATABASE`] when it names no database.
pub fn database_url(given: &str) -> anyhow::Result<url::Url> {
    let mut url = url::Url::parse(given)
        .with_context(|| "the database URL must look like postgres://user@host:5432/name")?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        bail!("the database URL must start with postgres://");
    }
    if url.path().trim_matches('/').is_empty() {
        url.set_path(DEFAULT_DATABASE);
    }
    Ok(url)
}

/// Starts the simulator and the service, installs the demo accounts, and
/// returns once the sandbox is ready. The service stops when `shutdown`
/// fires; [`Running::wait`] waits for that.
pub async fn start(options: Options, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let mut database = database_url(&options.database_url)?;
    // The address first: its error names the option to change.
    drop(
        std::net::TcpListener::bind(options.listen).with_context(|| {
            format!(
                "cannot listen on {}: choose another address with --listen",
                options.listen
            )
        })?,
    );
    let sim = Simulator::start(CLIENT_ID, CLIENT_SECRET)
        .await
        .context("cannot start the amoCRM simulator")?;
    sim.set_rate_limit(AMOCRM_RATE_LIMIT);
    sim.register_kommo_client(KOMMO_CLIENT_ID, KOMMO_CLIENT_SECRET);
    let demos = demo_accounts();
    for demo in &demos {
        sim.add_account(demo.domain, demo.account.clone());
    }
    // The browser's address of the service (any user name logs in).
    let shown = match options.listen.ip() {
        ip if ip.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], options.listen.port())),
        _ => options.listen,
    };
    let base_url = format!("http://{shown}");
    let admin_token = hex::encode(rand::random::<[u8; 24]>());
    let env: HashMap<String, String> = [
        ("AMOHOOK_DATABASE__URL", database.to_string()),
        ("AMOHOOK_HTTP__LISTEN", options.listen.to_string()),
        ("AMOHOOK_HTTP__PUBLIC_URL", base_url.clone()),
        ("AMOHOOK_AMOCRM__CLIENT_ID", CLIENT_ID.to_owned()),
        ("AMOHOOK_AMOCRM__CLIENT_SECRET", CLIENT_SECRET.to_owned()),
        ("AMOHOOK_AMOCRM__API_BASE_URL", sim.api_base_url()),
        ("AMOHOOK_AMOCRM__AUTHORIZE_URL", sim.authorize_url()),
        ("AMOHOOK_KOMMO__CLIENT_ID", KOMMO_CLIENT_ID.to_owned()),
        (
            "AMOHOOK_KOMMO__CLIENT_SECRET",
            KOMMO_CLIENT_SECRET.to_owned(),
        ),
        ("AMOHOOK_KOMMO__AUTHORIZE_URL", sim.authorize_url()),
        ("AMOHOOK_ADMIN__TOKEN", admin_token.clone()),
        (
            "AMOHOOK_SECURITY__ENCRYPTION_KEY",
            base64::engine::general_purpose::STANDARD.encode(SANDBOX_KEY),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let settings = Settings::from_raw(RawSettings::from_sources(DEFAULT_TOML, None, env)?)?;
    // The widget the demo accounts have installed: amohook's own, built for
    // this address, as `amohook widget` packs it.
    let widget = crate::widget::Widget::of(
        &settings,
        crate::platform::Platform::Amocrm,
        "sandbox@example.com",
    );
    let integrations = settings.integrations();
    sim.install_widget(amocrm_sim::widget::InstalledWidget {
        script: widget.script(),
        words: ["ru", "en", "es", "pt"]
            .into_iter()
            .filter_map(|lang| {
                let words = serde_json::from_str(crate::widget::words(lang)?).ok()?;
                Some((lang.to_owned(), words))
            })
            .collect(),
        audience: crate::tenant::audience(
            integrations.for_platform(crate::platform::Platform::Amocrm),
        ),
    });
    let http = crate::amocrm::http_client()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()?;
    let sandbox = Arc::new(Sandbox {
        sim,
        http: http.clone(),
    });
    let app = Application::build(settings)
        .await
        .context("the sandbox's service cannot start")?
        .with_extension(sandbox.clone(), panel::router(sandbox.clone()));
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    let mut accounts = Vec::new();
    for demo in &demos {
        let installed = install(&http, &base_url, demo.domain).await;
        if let Err(e) = installed {
            shutdown.cancel();
            let _ = server.await;
            return Err(e.context(format!("installing the demo account {}", demo.domain)));
        }
        accounts.push((demo.account.id, demo.domain.to_owned()));
    }
    let _ = database.set_password(None);
    Ok(Running {
        base_url,
        admin_token,
        accounts,
        database: database.to_string(),
        sandbox,
        server,
    })
}

/// Installs `domain` as a person would: `GET /install` (for the domain's
/// platform), the grant page, "allow" for that account, and the callback
/// the browser is sent to.
async fn install(http: &reqwest::Client, base_url: &str, domain: &str) -> anyhow::Result<()> {
    let location = |r: &reqwest::Response| -> anyhow::Result<url::Url> {
        let value = r
            .headers()
            .get(reqwest::header::LOCATION)
            .context("no Location header")?;
        Ok(url::Url::parse(value.to_str()?)?)
    };
    let platform = crate::platform::Platform::of_host(domain).as_str();
    let start = http
        .get(format!("{base_url}/install?platform={platform}"))
        .send()
        .await?;
    if start.status() != 303 {
        bail!("GET /install answered {}", start.status());
    }
    let grant = location(&start)?;
    let page = http.get(grant.clone()).send().await?;
    if page.status() != 200 {
        bail!("the simulator's grant page answered {}", page.status());
    }
    let mut allow = grant.clone();
    allow.set_path("/oauth/allow");
    allow.query_pairs_mut().append_pair("domain", domain);
    let allowed = http.get(allow).send().await?;
    let callback = location(&allowed)?;
    let done = http.get(callback).send().await?;
    if done.status() != 200 {
        bail!("GET /oauth/callback answered {}", done.status());
    }
    Ok(())
}
