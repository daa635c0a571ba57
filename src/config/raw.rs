//! The first step of loading: every layer merged into strings, nothing
//! validated yet (see the module above for why values stay strings).

use std::collections::HashMap;

use secrecy::SecretString;
use serde::Deserialize;

use super::{ConfigError, DEFAULT_PATH, DEFAULT_TOML};

/// Every layer merged, nothing validated yet.
#[derive(Debug, Default, Deserialize)]
pub struct RawSettings {
    #[serde(default)]
    pub database: RawDatabase,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub amocrm: RawAmocrm,
    #[serde(default)]
    pub kommo: RawKommo,
    #[serde(default)]
    pub install: RawInstall,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub security: RawSecurity,
    #[serde(default)]
    pub notes: RawNotes,
    #[serde(default)]
    pub worker: RawWorker,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub retention: RawRetention,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRetention {
    pub days: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawLog {
    pub format: Option<String>,
}

impl RawLog {
    pub fn format(&self) -> Result<crate::telemetry::LogFormat, ConfigError> {
        crate::telemetry::LogFormat::parse(self.format.as_deref())
            .map_err(|reason| ConfigError::invalid("log.format", reason))
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct RawNotes {
    pub timezone: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawWorker {
    pub concurrency: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawDatabase {
    pub url: Option<String>,
    pub max_connections: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawHttp {
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub max_connections: Option<String>,
    pub header_timeout_seconds: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawAmocrm {
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    pub redirect_uri: Option<String>,
    pub authorize_url: Option<String>,
    pub api_base_url: Option<String>,
    pub allowed_domains: Option<DomainList>,
    pub requests_per_second: Option<String>,
}

/// A list in the file, a comma list in the environment. (config-rs splits
/// environment lists only together with `try_parsing`, which is not used;
/// see the module comment.)
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum DomainList {
    List(Vec<String>),
    Comma(String),
}

impl DomainList {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            DomainList::List(list) => list,
            DomainList::Comma(text) => text.split(',').map(str::to_owned).collect(),
        }
    }
}

/// The optional second integration, registered in Kommo.
#[derive(Debug, Default, Deserialize)]
pub struct RawKommo {
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    pub redirect_uri: Option<String>,
    pub authorize_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawInstall {
    pub exchanges_per_second: Option<String>,
    pub concurrent_exchanges: Option<String>,
    pub codes_per_host: Option<String>,
    pub waiting_max: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawAdmin {
    pub token: Option<SecretString>,
    pub metrics_token: Option<SecretString>,
}

/// Secrets given as a list in a file, a comma list in the environment.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SecretList {
    List(Vec<SecretString>),
    Comma(SecretString),
}

impl SecretList {
    pub(super) fn into_vec(self) -> Vec<SecretString> {
        use secrecy::ExposeSecret as _;
        match self {
            SecretList::List(list) => list,
            SecretList::Comma(text) => text
                .expose_secret()
                .split(',')
                .map(|s| SecretString::from(s.to_owned()))
                .collect(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSecurity {
    pub encryption_key: Option<SecretString>,
    pub old_encryption_keys: Option<SecretList>,
    pub key_file: Option<String>,
    pub old_hook_key_hours: Option<u32>,
}

impl RawSettings {
    /// Reads the layers from the real files and the process environment.
    pub fn load(extra_file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let defaults =
            std::fs::read_to_string(DEFAULT_PATH).unwrap_or_else(|_| DEFAULT_TOML.into());
        let extra = match extra_file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                config::ConfigError::Message(format!("cannot read {}: {e}", path.display()))
            })?),
            None => None,
        };
        Self::from_sources(&defaults, extra.as_deref(), std::env::vars().collect())
    }

    /// Builds the settings from explicit sources; tests use this so they
    /// never touch the process environment.
    pub fn from_sources(
        defaults: &str,
        extra: Option<&str>,
        env: HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        use config::{Environment, File, FileFormat};

        let database_url = env.get("DATABASE_URL").cloned();
        let mut builder =
            config::Config::builder().add_source(File::from_str(defaults, FileFormat::Toml));
        if let Some(extra) = extra {
            builder = builder.add_source(File::from_str(extra, FileFormat::Toml));
        }
        // DATABASE_URL sits above the files and below AMOHOOK_DATABASE__URL.
        if let Some(url) = database_url {
            builder = builder.add_source(File::from_str(
                &format!("[database]\nurl = {}", toml_string(&url)),
                FileFormat::Toml,
            ));
        }
        let env_source = Environment::with_prefix("AMOHOOK")
            .prefix_separator("_")
            .separator("__")
            .source(Some(env.into_iter().collect()));
        let merged = builder.add_source(env_source).build()?;
        Ok(merged.try_deserialize()?)
    }
}

fn toml_string(value: &str) -> String {
    // A TOML basic string: escape what TOML requires.
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
