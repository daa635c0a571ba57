//! The test harness: a fresh PostgreSQL database per test, the fake amoCRM,
//! and the real application on a free port.

use std::collections::HashMap;

use amohook::{
    config::{RawSettings, Settings, DEFAULT_TOML},
    fake_amocrm::{FakeAccount, FakeAmo},
    http::AppState,
    startup::Application,
};
use base64::Engine as _;
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

pub const CLIENT_ID: &str = "2f6c1e7a-0d7b-4c55-9a51-6a4f0b1c2d3e";
pub const CLIENT_SECRET: &str = "test-client-secret-xyzzy-0123456789";
pub const PUBLIC_URL: &str = "https://hooks.example.test";

/// The server holding the test databases; trust auth as user postgres by
/// default. `.ci/run` sets it when it had to install PostgreSQL itself.
pub fn admin_url() -> String {
    std::env::var("AMOHOOK_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database name for one test. It is not created here: the application
/// creates it on start, as `amohook serve` does. Dropped on drop.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub fn new() -> TestDb {
        let name = format!("amohook_test_{}", uuid_like());
        let mut url = url::Url::parse(&admin_url()).expect("AMOHOOK_TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        TestDb {
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async; a short-lived runtime on its own thread
        // removes the database even when the test panicked.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin_url()).await {
                    let _ =
                        sqlx::query(&format!("drop database if exists \"{name}\" with (force)"))
                            .execute(&mut conn)
                            .await;
                }
            });
        })
        .join();
    }
}

fn uuid_like() -> String {
    use rand::Rng as _;
    let n: u64 = rand::thread_rng().gen();
    format!("{n:016x}")
}

/// The environment a test application starts with.
pub fn base_env(db_url: &str, fake: &FakeAmo) -> HashMap<String, String> {
    let key = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    [
        ("AMOHOOK_DATABASE__URL", db_url.to_owned()),
        ("AMOHOOK_HTTP__LISTEN", "127.0.0.1:0".into()),
        ("AMOHOOK_HTTP__PUBLIC_URL", PUBLIC_URL.into()),
        ("AMOHOOK_AMOCRM__CLIENT_ID", CLIENT_ID.into()),
        ("AMOHOOK_AMOCRM__CLIENT_SECRET", CLIENT_SECRET.into()),
        ("AMOHOOK_AMOCRM__API_BASE_URL", fake.api_base_url()),
        ("AMOHOOK_SECURITY__ENCRYPTION_KEY", key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

pub fn settings_from(env: HashMap<String, String>) -> Settings {
    Settings::from_raw(RawSettings::from_sources(DEFAULT_TOML, None, env).expect("config loads"))
        .expect("config is valid")
}

pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub fake: FakeAmo,
    pub state: AppState,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    // Last: dropped after the pool is closed.
    pub db: TestDb,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Starts the application with the base environment changed by `adjust`.
    pub async fn spawn_with(adjust: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
        let fake = FakeAmo::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
        let db = TestDb::new();
        let mut env = base_env(&db.url, &fake);
        adjust(&mut env);
        let app = Application::build(settings_from(env))
            .await
            .expect("application starts");
        let address = format!("http://127.0.0.1:{}", app.port());
        let state = app.state().clone();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        let pool = PgPool::connect(&db.url).await.unwrap();
        TestApp {
            address,
            pool,
            fake,
            state,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            shutdown,
            server: Some(server),
            db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// Adds an account to the fake amoCRM.
    pub fn account(&self, domain: &str, id: i64) {
        self.fake.add_account(
            domain,
            FakeAccount {
                id,
                name: format!("Account {id}"),
                timezone: "Europe/Moscow".into(),
                admin: true,
            },
        );
    }

    /// GET /install and the state it handed out.
    pub async fn start_install(&self) -> String {
        let response = self.get("/install").await;
        assert_eq!(response.status(), 303, "GET /install redirects");
        let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
        location
            .query_pairs()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
            .expect("state in the authorize URL")
    }

    /// The whole browser install of an account the fake already knows.
    pub async fn install(&self, domain: &str) -> reqwest::Response {
        let state = self.start_install().await;
        let code = self.fake.issue_code(domain);
        self.callback(&[("code", &code), ("referer", domain), ("state", &state)])
            .await
    }

    pub async fn callback(&self, params: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .get(self.url("/oauth/callback"))
            .query(params)
            .send()
            .await
            .unwrap()
    }

    pub async fn account_status(&self, account_id: i64) -> Option<String> {
        sqlx::query_scalar("select status from accounts where account_id = $1")
            .bind(account_id)
            .fetch_optional(&self.pool)
            .await
            .unwrap()
    }

    /// Stops the application the way SIGTERM does and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let result = self.server.take().unwrap().await.unwrap();
        self.pool.close().await;
        result
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
