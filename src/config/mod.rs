//! Configuration: `config/default.toml` (compiled in, and read from disk when
//! present so an edit takes effect), an optional `--config FILE`, then the
//! environment (`AMOHOOK_<SECTION>__<KEY>`, plus `DATABASE_URL`).
//!
//! Loading happens in two steps. The layers are merged into [`RawSettings`],
//! where every value is still a string, and [`Settings::from_raw`] validates
//! them into typed values. Every failure names the key and its environment
//! variable, so an operator knows exactly what to fix.
//!
//! Values stay strings until validation on purpose: config-rs's
//! `try_parsing` would turn a client secret such as `1e5` into a float.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use secrecy::SecretString;
use url::Url;

mod raw;
mod validate;

pub use raw::{
    DomainList, RawAdmin, RawAmocrm, RawDatabase, RawHttp, RawInstall, RawKommo, RawLog, RawNotes,
    RawRetention, RawSecurity, RawSettings, RawWorker, SecretList,
};

/// The commented default file, compiled in so the binary works from any
/// directory.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");
const DEFAULT_PATH: &str = "config/default.toml";

/// A configuration value that is missing or malformed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration key `{key}` (environment {env}): {reason}")]
    Invalid {
        key: &'static str,
        env: String,
        reason: String,
    },
    #[error("configuration could not be read: {0}")]
    Source(#[from] config::ConfigError),
}

impl ConfigError {
    fn invalid(key: &'static str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key,
            env: env_name(key),
            reason: reason.into(),
        }
    }

    /// The key this error is about, when it is about one.
    pub fn key(&self) -> Option<&'static str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Source(_) => None,
        }
    }
}

/// `amocrm.client_id` -> `AMOHOOK_AMOCRM__CLIENT_ID`.
pub fn env_name(key: &str) -> String {
    format!("AMOHOOK_{}", key.replace('.', "__").to_uppercase())
}

/// Validated settings for `serve`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub http: HttpSettings,
    pub amocrm: AmocrmSettings,
    /// The Kommo integration, when one is configured.
    pub kommo: Option<KommoSettings>,
    pub install: InstallSettings,
    pub admin: AdminSettings,
    pub security: SecuritySettings,
    pub notes: NotesSettings,
    pub worker: WorkerSettings,
    pub log_format: crate::telemetry::LogFormat,
    /// Finished events older than this many days are deleted; 0 keeps them.
    pub retention_days: u32,
}

#[derive(Debug, Clone)]
pub struct NotesSettings {
    /// Used for accounts whose time zone amoCRM did not give.
    pub timezone: chrono_tz::Tz,
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Account turns one process runs at the same time (each mostly
    /// waiting on amoCRM); 0: this process only receives hooks, others
    /// deliver.
    pub concurrency: usize,
}

/// The most account turns a process may run at once (`worker.concurrency`):
/// each is a task of a few kilobytes, and its calls share the main pool's
/// connections.
pub const MAX_TURNS: u32 = 10_000;

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: SecretString,
    /// Connections of the main pool (delivery, tokens, installs, pages);
    /// intake has [`crate::db::INTAKE_CONNECTIONS`] and
    /// [`crate::db::LOOKUP_CONNECTIONS`] of its own beside them.
    pub max_connections: u32,
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// The public origin, without a trailing slash.
    pub public_url: String,
    /// Connections open at once, at most (see `http/server.rs`).
    pub max_connections: usize,
    /// Time a connection has to send a request's head, or to start its
    /// next request when kept alive.
    pub header_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct AmocrmSettings {
    pub client_id: String,
    pub client_secret: SecretString,
    pub redirect_uri: Url,
    pub authorize_url: Url,
    /// Contains `{domain}`.
    pub api_base_url: String,
    pub allowed_domains: Vec<String>,
    pub requests_per_second: u32,
}

/// The second integration, registered in Kommo (see `platform.rs`).
#[derive(Debug, Clone)]
pub struct KommoSettings {
    pub client_id: String,
    pub client_secret: SecretString,
    pub redirect_uri: Url,
    pub authorize_url: Url,
}

impl Settings {
    /// The integrations: `amocrm.*`, and `kommo.*` when configured.
    pub fn integrations(&self) -> crate::platform::Integrations {
        use crate::platform::{Integration, Integrations};
        Integrations {
            amocrm: Integration {
                name: "amocrm",
                client_id: self.amocrm.client_id.clone(),
                client_secret: self.amocrm.client_secret.clone(),
                redirect_uri: self.amocrm.redirect_uri.clone(),
                authorize_url: self.amocrm.authorize_url.clone(),
            },
            kommo: self.kommo.as_ref().map(|k| Integration {
                name: "kommo",
                client_id: k.client_id.clone(),
                client_secret: k.client_secret.clone(),
                redirect_uri: k.redirect_uri.clone(),
                authorize_url: k.authorize_url.clone(),
            }),
        }
    }
}

/// Limits on code exchanges (see `install/gate.rs`).
#[derive(Debug, Clone)]
pub struct InstallSettings {
    /// Across every process.
    pub exchanges_per_second: u32,
    /// In one process.
    pub concurrent_exchanges: u32,
    /// Widget codes one host may leave in 10 minutes.
    pub codes_per_host: u32,
    /// Widget installs waiting for an exchange, all hosts together.
    pub waiting_max: u32,
}

#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub token: Option<SecretString>,
    /// Reads /metrics and nothing else, so that a scraper's configuration
    /// never holds the token that can change accounts.
    pub metrics_token: Option<SecretString>,
}

/// Why a new key that shares its id with an old one is refused.
pub const KEY_ID_TAKEN: &str = "one of them has the same key id as the current key \
     (security.encryption_key or the key file): generate another new key \
     (openssl rand -base64 32)";

#[derive(Debug, Clone)]
pub struct SecuritySettings {
    pub encryption_key: Option<EncryptionKey>,
    /// Keys that still read values written before a rotation.
    pub old_encryption_keys: Vec<EncryptionKey>,
    /// Absolute.
    pub key_file: PathBuf,
    /// How long a rotated hook key keeps working.
    pub old_hook_key_for: std::time::Duration,
}

/// 32 key bytes; never printed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EncryptionKey(pub [u8; 32]);

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey(..)")
    }
}

/// Where the generated key is kept when neither `security.encryption_key`
/// nor `security.key_file` is set: the user's data directory
/// (`$XDG_DATA_HOME/amohook/amohook.key`, else
/// `$HOME/.local/share/amohook/amohook.key`), else
/// `/var/lib/amohook/amohook.key`. One place whatever folder the service is
/// started from.
pub fn default_key_file(env: impl Fn(&str) -> Option<String>) -> PathBuf {
    let absolute = |v: Option<String>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    let data = absolute(env("XDG_DATA_HOME"))
        .or_else(|| absolute(env("HOME")).map(|home| home.join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("/var/lib"));
    data.join("amohook").join("amohook.key")
}
