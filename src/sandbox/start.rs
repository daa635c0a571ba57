//! Starting the sandbox: the simulator, the service against it on the given
//! database, and the demo accounts installed through the real HTTP flow.

use super::*;

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
