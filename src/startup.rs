//! Builds the application from settings and runs it until told to stop.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    amocrm::budget::Budget,
    amocrm::AmoApi,
    config::Settings,
    crypto::{self, Cipher},
    db,
    delivery::Worker,
    hooks_in_flight::HooksInFlight,
    http::{self, AppState, Intake},
    install::Installer,
    stats::Receipts,
    tokens::TokenStore,
};

/// How often the background loop retries widget installs.
const INSTALL_RETRY_EVERY: Duration = Duration::from_secs(5);
/// How often idle tokens are kept alive and old records pruned.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);
/// The whole stop (requests, background work, delivery, refreshes) gets
/// this long after a stop signal: under compose's 30 s stop_grace_period.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

pub struct Application {
    listener: TcpListener,
    state: AppState,
    /// An outer layer's routes (`with_extension`).
    extra_routes: Option<axum::Router<AppState>>,
}

impl Application {
    /// Creates the database when missing, applies migrations, loads the
    /// encryption key and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        db::create_if_missing(&settings.database)
            .await
            .context("cannot reach PostgreSQL to create the database (database.url)")?;
        let pools = db::connect(&settings.database)
            .await
            .context("cannot connect to PostgreSQL (database.url)")?;
        let pool = pools.main.clone();
        db::migrate(&pool)
            .await
            .context("cannot apply migrations")?;

        let cipher = open_keys(&pool, &settings).await?;
        // A refusal of the integration may have been fixed by this start's
        // configuration: the first refresh tries again.
        crate::fault::clear_all(&pool).await?;
        let budget = Budget::new(pool.clone(), settings.amocrm.requests_per_second);
        let api = AmoApi::new(&settings)?.with_budget(budget);
        let tokens = TokenStore::new(pool.clone(), cipher.clone(), api.clone());
        let installer = Installer::new(
            pool.clone(),
            cipher.clone(),
            api.clone(),
            settings.http.public_url.clone(),
            settings.install.clone(),
        );
        let in_flight = Arc::new(HooksInFlight::default());
        let worker = Arc::new(
            Worker::new(
                pool.clone(),
                api.clone(),
                tokens.clone(),
                settings.notes.timezone,
            )
            .yielding_to(in_flight.clone()),
        );
        let listener = TcpListener::bind(settings.http.listen)
            .await
            .with_context(|| format!("cannot listen on {} (http.listen)", settings.http.listen))?;
        let state = AppState {
            intake: Intake {
                receipts: Arc::new(Receipts::default()),
                in_flight,
                accounts: Arc::default(),
                inbox: crate::inbox::Inbox::start(pools.intake.clone()),
                lookups: pools.lookup,
            },
            metrics: metrics_handle(),
            pool,
            settings: Arc::new(settings),
            api: Arc::new(api),
            cipher: Arc::new(cipher),
            tokens: Arc::new(tokens),
            installer: Arc::new(installer),
            worker,
            panel: None,
        };
        Ok(Application {
            listener,
            state,
            extra_routes: None,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// What an outer layer adds (`amohook sandbox`; `serve` never calls
    /// this): a panel on each account's page, and the routes its forms use.
    pub fn with_extension(
        mut self,
        panel: Arc<dyn http::AccountPanel>,
        routes: axum::Router<AppState>,
    ) -> Self {
        self.state.panel = Some(panel);
        self.extra_routes = Some(routes);
        self
    }

    /// Serves HTTP and runs the background work until `shutdown` fires,
    /// then lets in-flight requests finish (bounded by a grace period).
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let background = tokio::spawn(background(self.state.clone(), shutdown.clone()));
        let hook_checks = tokio::spawn(hook_checks(self.state.clone(), shutdown.clone()));
        let listener = tokio::spawn(crate::listen::run(
            self.state.pool.clone(),
            self.state.intake.accounts.clone(),
            self.state.worker.clone(),
            shutdown.clone(),
        ));
        let delivery = tokio::spawn(
            self.state
                .worker
                .clone()
                .run(self.state.settings.worker.concurrency, shutdown.clone()),
        );
        let app = http::router(self.state.clone(), self.extra_routes);
        let limits = http::server::Limits {
            max_connections: self.state.settings.http.max_connections,
            header_timeout: self.state.settings.http.header_timeout,
        };
        let serving = tokio::spawn(http::server::serve(
            self.listener,
            app,
            limits,
            shutdown.clone(),
        ));
        shutdown.cancelled().await;
        // One deadline for the whole stop, under compose's stop_grace_period
        // (30 s): in-flight requests, background work, delivery, refreshes.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        match tokio::time::timeout_at(deadline, serving).await {
            Ok(result) => result?,
            Err(_) => tracing::warn!("in-flight requests did not finish within the grace period"),
        }
        let _ = tokio::time::timeout_at(deadline, background).await;
        let _ = tokio::time::timeout_at(deadline, hook_checks).await;
        if tokio::time::timeout_at(deadline, delivery).await.is_err() {
            tracing::warn!("note delivery did not stop within the grace period");
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), listener).await;
        // A refresh in flight commits its new tokens before the pools close.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if !self.state.tokens.finish_refreshes(left).await {
            tracing::warn!("a token refresh did not finish within the grace period");
        }
        self.state.pool.close().await;
        self.state.intake.lookups.close().await;
        self.state.intake.inbox.close_pool().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The encryption keys: the configured key, or the key file (made on first
/// start), with any old keys, checked against the database. A key file made
/// by this start is removed again when the check refuses it, so that a
/// wrong start leaves nothing behind.
pub async fn open_keys(pool: &sqlx::PgPool, settings: &Settings) -> anyhow::Result<Cipher> {
    let security = &settings.security;
    let path = &security.key_file;
    let (key, source, created) = match security.encryption_key {
        Some(key) => (
            key.0,
            "security.encryption_key, AMOHOOK_SECURITY__ENCRYPTION_KEY".to_owned(),
            false,
        ),
        None => {
            let (key, created) = crypto::load_or_create_key_file(path)?;
            (key, format!("the key file {}", path.display()), created)
        }
    };
    let old: Vec<[u8; 32]> = security.old_encryption_keys.iter().map(|k| k.0).collect();
    if crypto::id_taken_by_old_key(&key, &old) {
        if created {
            let _ = std::fs::remove_file(path);
        }
        anyhow::bail!(
            "security.old_encryption_keys: {}",
            crate::config::KEY_ID_TAKEN
        );
    }
    let cipher = Cipher::with_old_keys(&key, &old);
    match crate::key_check::check(pool, &cipher, &source).await {
        Ok(check) => {
            if created {
                tracing::warn!(
                    key_file = %path.display(),
                    "security.encryption_key is not set: generated a new key into the key file. \
                     Back it up, and give every amohook process this file or this key; without \
                     it stored tokens cannot be read."
                );
            } else if security.encryption_key.is_none() {
                tracing::info!(key_file = %path.display(), "encryption key read from the key file");
            }
            if check == crate::key_check::Checked::ByOldKey {
                tracing::warn!(
                    "the database's data is sealed with an old key (security.old_encryption_keys): \
                     run `amohook reencrypt` to rewrite it with the current key"
                );
            }
            Ok(cipher)
        }
        Err(e) => {
            if created {
                let _ = std::fs::remove_file(path);
            }
            let mut message = format!("{e}");
            let legacy = std::path::Path::new("amohook.key");
            if security.encryption_key.is_none() && legacy.is_file() {
                message.push_str(&format!(
                    ". A key file {} exists in the folder the service was started from (the \
                     default location before the key file moved): set security.key_file \
                     (AMOHOOK_SECURITY__KEY_FILE) to it",
                    std::path::absolute(legacy)
                        .unwrap_or_else(|_| legacy.to_owned())
                        .display()
                ));
            }
            Err(anyhow::anyhow!(message).context("the encryption key does not match the database"))
        }
    }
}

/// The Prometheus recorder: one per process, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    ],
                )
                .expect("bucket list is not empty");
            match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is installed (an embedding program's):
                // amohook's metrics go to that one, and this private
                // recorder only keeps /metrics answering (empty).
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// How often a process looks for accounts whose web-hook is due to be read
/// back from amoCRM (each is, every `install::subscription::CHECK_EVERY`),
/// and how many it takes at most each time: 250 a minute covers 15,000
/// accounts an hour per process.
const HOOK_CHECKS_EVERY: Duration = Duration::from_secs(60);
const HOOK_CHECKS_AT_MOST: i64 = 250;

/// Reads accounts' web-hook subscriptions back from amoCRM, from the start
/// and then every minute, a task of its own: a round of checks waits on
/// amoCRM, and the other background work must not wait with it.
async fn hook_checks(state: AppState, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(HOOK_CHECKS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let round = state
            .installer
            .check_hooks_due(&state.tokens, HOOK_CHECKS_AT_MOST);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            checked = round => match checked {
                Ok(0) => {}
                Ok(n) => tracing::debug!(accounts = n, "web-hooks read back from amoCRM"),
                Err(e) => tracing::warn!(error = %e, "reading web-hooks back failed"),
            },
        }
    }
}

/// Periodic work of every process: retrying widget installs, keeping idle
/// tokens alive, pruning old records. All of it is safe to run in several
/// processes at once (leases and row locks in PostgreSQL).
async fn background(state: AppState, shutdown: CancellationToken) {
    let mut receipts = tokio::time::interval(Duration::from_secs(1));
    let mut installs = tokio::time::interval(INSTALL_RETRY_EVERY);
    let mut maintenance = tokio::time::interval(MAINTENANCE_EVERY);
    installs.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = state.intake.receipts.flush(&state.pool).await;
                break;
            }
            _ = receipts.tick() => {
                if let Err(e) = state.intake.receipts.flush(&state.pool).await {
                    tracing::warn!(error = %e, "writing hook counts failed");
                }
            }
            _ = installs.tick() => {
                if let Err(e) = state.installer.retry_pending().await {
                    tracing::warn!(error = %e, "retrying pending installs failed");
                }
                if let Err(e) = crate::uninstall::check_due(&state.pool, &state.tokens, &state.api).await {
                    tracing::warn!(error = %e, "checking uninstall calls again failed");
                }
            }
            _ = maintenance.tick() => {
                match state.installer.resubscribe_outdated(&state.tokens).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(accounts = n, "web-hooks subscribed again for companies"),
                    Err(e) => tracing::warn!(error = %e, "subscribing web-hooks again failed"),
                }
                match state.tokens.keep_alive(&shutdown).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(refreshed = n, "idle tokens kept alive"),
                    Err(e) => tracing::warn!(error = %e, "keep-alive of idle tokens failed"),
                }
                if let Err(e) = crate::accounts::keys::prune(&state.pool).await {
                    tracing::warn!(error = %e, "pruning rotated hook keys failed");
                }
                if let Err(e) = crate::stats::prune_hourly(&state.pool).await {
                    tracing::warn!(error = %e, "pruning old hourly hook counts failed");
                }
                if let Err(e) = state.installer.prune().await {
                    tracing::warn!(error = %e, "pruning old install records failed");
                }
                match crate::retention::prune_events(&state.pool, state.settings.retention_days).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "old finished events deleted"),
                    Err(e) => tracing::warn!(error = %e, "deleting old events failed"),
                }
            }
        }
    }
}
