//! Validation: the merged strings of [`RawSettings`] into typed [`Settings`],
//! each failure naming its key and environment variable.

use std::{net::SocketAddr, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::*;

impl KommoSettings {
    /// None when `kommo.client_id` is unset; then the secret must be unset
    /// too (a half-configured integration is an error, not ignored).
    fn from_raw(raw: RawKommo, public_url: &str) -> Result<Option<Self>, ConfigError> {
        let client_id = raw.client_id.filter(|s| !s.trim().is_empty());
        let client_secret = raw
            .client_secret
            .filter(|s| !s.expose_secret().trim().is_empty());
        let (client_id, client_secret) = match (client_id, client_secret) {
            (None, None) => return Ok(None),
            (Some(id), Some(secret)) => (id.trim().to_owned(), secret),
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "kommo.client_id",
                    "is required when kommo.client_secret is set",
                ))
            }
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "kommo.client_secret",
                    "is required when kommo.client_id is set",
                ))
            }
        };
        let redirect_uri = match raw.redirect_uri.as_deref().filter(|s| !s.trim().is_empty()) {
            Some(s) => http_url("kommo.redirect_uri", s)?,
            None => http_url(
                "kommo.redirect_uri",
                &format!("{public_url}/oauth/callback"),
            )?,
        };
        let authorize_url = http_url(
            "kommo.authorize_url",
            required("kommo.authorize_url", raw.authorize_url.as_deref())?,
        )?;
        Ok(Some(KommoSettings {
            client_id,
            client_secret,
            redirect_uri,
            authorize_url,
        }))
    }
}
impl InstallSettings {
    fn from_raw(raw: &RawInstall) -> Result<Self, ConfigError> {
        Ok(InstallSettings {
            exchanges_per_second: whole(
                "install.exchanges_per_second",
                raw.exchanges_per_second.as_deref(),
                1..=50,
            )?,
            concurrent_exchanges: whole(
                "install.concurrent_exchanges",
                raw.concurrent_exchanges.as_deref(),
                1..=64,
            )?,
            codes_per_host: whole(
                "install.codes_per_host",
                raw.codes_per_host.as_deref(),
                1..=100,
            )?,
            waiting_max: whole(
                "install.waiting_max",
                raw.waiting_max.as_deref(),
                1..=100_000,
            )?,
        })
    }
}
impl DatabaseSettings {
    pub fn from_raw(raw: &RawDatabase) -> Result<Self, ConfigError> {
        let url = required("database.url", raw.url.as_deref())?;
        let parsed = Url::parse(url)
            .map_err(|e| ConfigError::invalid("database.url", format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(ConfigError::invalid(
                "database.url",
                "must start with postgres:// or postgresql://",
            ));
        }
        let max_connections = whole(
            "database.max_connections",
            raw.max_connections.as_deref(),
            4..=1000,
        )?;
        Ok(DatabaseSettings {
            url: SecretString::from(url.to_owned()),
            max_connections,
        })
    }
}

impl Settings {
    pub fn from_raw(raw: RawSettings) -> Result<Self, ConfigError> {
        let database = DatabaseSettings::from_raw(&raw.database)?;
        let log_format = raw.log.format()?;

        let listen = required("http.listen", raw.http.listen.as_deref())?
            .parse::<SocketAddr>()
            .map_err(|_| {
                ConfigError::invalid(
                    "http.listen",
                    "must be an address and port, e.g. 0.0.0.0:8080",
                )
            })?;
        let public_url = origin("http.public_url", raw.http.public_url.as_deref())?;
        let max_connections = whole(
            "http.max_connections",
            raw.http.max_connections.as_deref(),
            16..=1_000_000,
        )? as usize;
        let header_timeout = Duration::from_secs(u64::from(whole(
            "http.header_timeout_seconds",
            raw.http.header_timeout_seconds.as_deref(),
            1..=300,
        )?));

        let amo = raw.amocrm;
        let client_id = required("amocrm.client_id", amo.client_id.as_deref())?.to_owned();
        let client_secret = match amo.client_secret {
            Some(s) if !s.expose_secret().trim().is_empty() => s,
            _ => return Err(ConfigError::invalid("amocrm.client_secret", "is required")),
        };
        let redirect_uri = match amo.redirect_uri.as_deref().filter(|s| !s.trim().is_empty()) {
            Some(s) => http_url("amocrm.redirect_uri", s)?,
            None => http_url(
                "amocrm.redirect_uri",
                &format!("{public_url}/oauth/callback"),
            )?,
        };
        let authorize_url = http_url(
            "amocrm.authorize_url",
            required("amocrm.authorize_url", amo.authorize_url.as_deref())?,
        )?;
        let api_base_url = required("amocrm.api_base_url", amo.api_base_url.as_deref())?.to_owned();
        if !api_base_url.contains("{domain}") {
            return Err(ConfigError::invalid(
                "amocrm.api_base_url",
                "must contain {domain}, e.g. https://{domain}",
            ));
        }
        http_url(
            "amocrm.api_base_url",
            &api_base_url.replace("{domain}", "example.amocrm.ru"),
        )?;
        let allowed_domains: Vec<String> = amo
            .allowed_domains
            .map(DomainList::into_vec)
            .unwrap_or_default()
            .iter()
            .map(|d| d.trim().trim_start_matches('.').to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .collect();
        if allowed_domains.is_empty() {
            return Err(ConfigError::invalid(
                "amocrm.allowed_domains",
                "must name at least one domain",
            ));
        }
        if let Some(bad) = allowed_domains.iter().find(|d| {
            !d.contains('.')
                || !d
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        }) {
            return Err(ConfigError::invalid(
                "amocrm.allowed_domains",
                format!("`{bad}` is not a domain like amocrm.ru"),
            ));
        }
        let requests_per_second = whole(
            "amocrm.requests_per_second",
            amo.requests_per_second.as_deref(),
            1..=50,
        )?;

        let kommo = KommoSettings::from_raw(raw.kommo, &public_url)?;
        if let Some(kommo) = &kommo {
            if kommo.client_id == client_id {
                return Err(ConfigError::invalid(
                    "kommo.client_id",
                    "is amocrm.client_id: the Kommo integration is registered in Kommo, with its own id",
                ));
            }
        }
        let install = InstallSettings::from_raw(&raw.install)?;
        let admin = AdminSettings {
            token: raw
                .admin
                .token
                .filter(|t| !t.expose_secret().trim().is_empty()),
            metrics_token: raw
                .admin
                .metrics_token
                .filter(|t| !t.expose_secret().trim().is_empty()),
        };
        for (key, token) in [
            ("admin.token", &admin.token),
            ("admin.metrics_token", &admin.metrics_token),
        ] {
            if token.as_ref().is_some_and(|t| t.expose_secret().len() < 16) {
                return Err(ConfigError::invalid(key, "must be at least 16 characters"));
            }
        }
        if let (Some(admin_token), Some(metrics_token)) = (&admin.token, &admin.metrics_token) {
            if admin_token.expose_secret() == metrics_token.expose_secret() {
                return Err(ConfigError::invalid(
                    "admin.metrics_token",
                    "is admin.token: give the scraper a token of its own",
                ));
            }
        }

        let encryption_key = match raw
            .security
            .encryption_key
            .filter(|k| !k.expose_secret().trim().is_empty())
        {
            Some(key) => Some(EncryptionKey(
                crate::crypto::decode_key(key.expose_secret()).ok_or_else(|| {
                    ConfigError::invalid(
                        "security.encryption_key",
                        "must be base64 of exactly 32 bytes",
                    )
                })?,
            )),
            None => None,
        };
        let old_encryption_keys = raw
            .security
            .old_encryption_keys
            .map(SecretList::into_vec)
            .unwrap_or_default()
            .iter()
            .filter(|k| !k.expose_secret().trim().is_empty())
            .map(|k| {
                crate::crypto::decode_key(k.expose_secret())
                    .map(EncryptionKey)
                    .ok_or_else(|| {
                        ConfigError::invalid(
                            "security.old_encryption_keys",
                            "each must be base64 of exactly 32 bytes",
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // A key file's key is checked the same way when it is read
        // (`startup::open_keys`).
        if let Some(current) = &encryption_key {
            let old: Vec<[u8; 32]> = old_encryption_keys.iter().map(|k| k.0).collect();
            if crate::crypto::id_taken_by_old_key(&current.0, &old) {
                return Err(ConfigError::invalid(
                    "security.old_encryption_keys",
                    KEY_ID_TAKEN,
                ));
            }
        }
        let key_file = match raw.security.key_file.filter(|f| !f.trim().is_empty()) {
            Some(file) => std::path::absolute(file.trim()).map_err(|e| {
                ConfigError::invalid("security.key_file", format!("not a usable path: {e}"))
            })?,
            None => default_key_file(|name| std::env::var(name).ok()),
        };

        let timezone = required("notes.timezone", raw.notes.timezone.as_deref())?
            .parse::<chrono_tz::Tz>()
            .map_err(|_| {
                ConfigError::invalid(
                    "notes.timezone",
                    "must be an IANA time zone, e.g. Europe/Moscow",
                )
            })?;
        let concurrency = whole(
            "worker.concurrency",
            raw.worker.concurrency.as_deref(),
            0..=MAX_TURNS,
        )? as usize;

        let retention_days = required("retention.days", raw.retention.days.as_deref())?
            .parse::<u32>()
            .ok()
            .filter(|d| *d <= 3650)
            .ok_or_else(|| {
                ConfigError::invalid(
                    "retention.days",
                    "must be a whole number of days from 0 to 3650",
                )
            })?;

        Ok(Settings {
            database,
            http: HttpSettings {
                listen,
                public_url,
                max_connections,
                header_timeout,
            },
            amocrm: AmocrmSettings {
                client_id,
                client_secret,
                redirect_uri,
                authorize_url,
                api_base_url,
                allowed_domains,
                requests_per_second,
            },
            kommo,
            install,
            admin,
            security: SecuritySettings {
                encryption_key,
                old_encryption_keys,
                key_file,
                old_hook_key_for: std::time::Duration::from_secs(
                    u64::from(raw.security.old_hook_key_hours.unwrap_or(24)) * 3600,
                ),
            },
            notes: NotesSettings { timezone },
            worker: WorkerSettings { concurrency },
            log_format,
            retention_days,
        })
    }
}

fn required<'a>(key: &'static str, value: Option<&'a str>) -> Result<&'a str, ConfigError> {
    match value.map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ConfigError::invalid(key, "is required")),
    }
}

/// A required whole number within `range`.
fn whole(
    key: &'static str,
    value: Option<&str>,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, ConfigError> {
    required(key, value)?
        .parse::<u32>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            ConfigError::invalid(
                key,
                format!(
                    "must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )
        })
}

fn http_url(key: &'static str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value.trim())
        .map_err(|e| ConfigError::invalid(key, format!("not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::invalid(
            key,
            "must be an http:// or https:// URL",
        ));
    }
    Ok(url)
}

/// An origin such as `https://amohook.example.com`, returned without a
/// trailing slash so paths can be appended.
fn origin(key: &'static str, value: Option<&str>) -> Result<String, ConfigError> {
    let url = http_url(key, required(key, value)?)?;
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::invalid(
            key,
            "must be an origin without a path, e.g. https://amohook.example.com",
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}
