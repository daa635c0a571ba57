//! The test harness: a fresh PostgreSQL database per test, the fake amoCRM,
//! and the real application on a free port.

use amocrm_sim::{HookBody, SimAccount, SimCard, Simulator};
use std::collections::HashMap;

use amohook::{
    config::{RawSettings, Settings, DEFAULT_TOML},
    http::AppState,
    startup::Application,
};
use base64::Engine as _;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
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
                    let _ = sqlx::query(AssertSqlSafe(format!(
                        "drop database if exists \"{name}\" with (force)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

fn uuid_like() -> String {
    let n: u64 = rand::random();
    format!("{n:016x}")
}

/// The environment a test application starts with.
pub fn base_env(db_url: &str, fake: &Simulator) -> HashMap<String, String> {
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
    pub fake: Simulator,
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
        let fake = Simulator::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
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
            http: amohook::amocrm::http_client()
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

    /// GET with `Authorization: Bearer {token}` (the admin pages and API).
    pub async fn get_with_token(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Every request amoCRM's token endpoint has seen, in order.
    pub fn token_requests(&self) -> Vec<amocrm_sim::Seen> {
        self.fake
            .requests()
            .into_iter()
            .filter(|r| r.path == "/oauth2/access_token")
            .collect()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// Adds an account to the fake amoCRM.
    pub fn account(&self, domain: &str, id: i64) {
        self.fake.add_account(domain, SimAccount::new(id));
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
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.server
            .take()
            .expect("running")
            .await
            .expect("not panicked")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Form-encodes pairs the way amoCRM sends a hook.
pub fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A lead hook body (`action` is add or update), built by the simulator's
/// builder as amoCRM builds it: the lead of `SimCard::lead` (user 100
/// responsible, stage 1 of pipeline 10, budget 1000) changed at `at`, and
/// `extra` fields of the lead after its own.
pub fn lead_hook(
    account_id: i64,
    action: &str,
    id: i64,
    name: &str,
    at: i64,
    extra: &[(&str, &str)],
) -> String {
    let lead = SimCard {
        updated_at: at,
        ..SimCard::lead(id, name)
    };
    extra
        .iter()
        .fold(
            HookBody::new(account_id).card(action, &lead, None),
            |body, (k, v)| body.field(k, v),
        )
        .encode()
}

impl TestApp {
    /// An app that receives hooks but leaves delivery to the test, which
    /// drives `state.worker` itself.
    pub async fn spawn_without_worker() -> TestApp {
        TestApp::spawn_with(|env| {
            env.insert("AMOHOOK_WORKER__CONCURRENCY".into(), "0".into());
        })
        .await
    }

    /// Adds the account to the fake and installs it; returns its hook key.
    pub async fn connected(&self, domain: &str, id: i64) -> String {
        self.account(domain, id);
        assert_eq!(self.install(domain).await.status(), 200);
        self.hook_key(id).await
    }

    /// Installs `account` (as the fake holds it) and returns its hook key.
    pub async fn connected_as(&self, domain: &str, account: SimAccount) -> String {
        let id = account.id;
        self.fake.add_account(domain, account);
        assert_eq!(self.install(domain).await.status(), 200);
        self.hook_key(id).await
    }

    pub async fn hook_key(&self, account_id: i64) -> String {
        use secrecy::ExposeSecret as _;
        amohook::accounts::hook_key(&self.pool, &self.state.cipher, account_id)
            .await
            .unwrap()
            .expose_secret()
            .to_owned()
    }

    pub async fn post_hook(&self, key: &str, body: String) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/hooks/{key}")))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("user-agent", "amoCRM-Webhooks/3.0")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Waits (up to 30 s) until the fake holds `n` notes for `domain`.
    pub async fn wait_for_notes(&self, domain: &str, n: usize) -> Vec<amocrm_sim::SimNote> {
        for _ in 0..300 {
            let notes: Vec<_> = self
                .fake
                .notes()
                .into_iter()
                .filter(|x| x.domain == domain)
                .collect();
            if notes.len() >= n {
                return notes;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!(
            "expected {n} notes for {domain}, have {:?}; events: {:?}",
            self.fake.notes(),
            self.events().await
        );
    }

    /// (event id, entity id, state, last_error) of every stored event.
    pub async fn events(&self) -> Vec<(i64, i64, String, Option<String>)> {
        sqlx::query_as(
            "select event_id, entity_id, state, last_error from hook_events order by event_id",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    /// Makes every waiting event due now (instead of sleeping through a backoff).
    pub async fn make_due(&self) {
        sqlx::query("update hook_events set next_attempt_at = now() where state = 'pending'")
            .execute(&self.pool)
            .await
            .unwrap();
        sqlx::query("update accounts set paused_until = null")
            .execute(&self.pool)
            .await
            .unwrap();
    }
}

impl TestApp {
    /// Makes the next `n` writes of `table` (`on`: a trigger's events, as
    /// "insert or update" or "update of tokens") fail, as a database
    /// failing at that very moment would. A sequence counts them: it is not
    /// rolled back with the failed transaction.
    pub async fn fail_writes(&self, table: &str, n: i64, on: &str) {
        let name = format!("fail_{table}");
        for sql in [
            format!("create sequence {name}"),
            format!(
                "create function {name}() returns trigger language plpgsql as $$
                 begin
                     if nextval('{name}') <= {n} then
                         raise exception 'simulated database failure';
                     end if;
                     return new;
                 end $$"
            ),
            format!(
                "create trigger {name} before {on} on {table}
                 for each row execute function {name}()"
            ),
        ] {
            sqlx::query(AssertSqlSafe(sql))
                .execute(&self.pool)
                .await
                .unwrap();
        }
    }

    /// How many of the writes made to fail by [`TestApp::fail_writes`] were
    /// tried.
    pub async fn failed_writes(&self, table: &str) -> i64 {
        sqlx::query_scalar(AssertSqlSafe(format!(
            "select last_value from fail_{table}"
        )))
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }
}
