use std::collections::HashMap;

use amohook::config::{RawSettings, Settings, DEFAULT_TOML};

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("AMOHOOK_HTTP__PUBLIC_URL", "https://hooks.example.com"),
        ("AMOHOOK_AMOCRM__CLIENT_ID", "id"),
        ("AMOHOOK_AMOCRM__CLIENT_SECRET", "secret"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in pairs {
        if v.is_empty() {
            env.remove(*k);
        } else {
            env.insert((*k).into(), (*v).into());
        }
    }
    env
}

fn load(pairs: &[(&str, &str)]) -> Result<Settings, amohook::config::ConfigError> {
    Settings::from_raw(RawSettings::from_sources(DEFAULT_TOML, None, env(pairs))?)
}

fn error_key(pairs: &[(&str, &str)]) -> String {
    let error = load(pairs).expect_err("invalid configuration");
    let text = error.to_string();
    let key = error.key().expect("the error names a key");
    assert!(text.contains(key), "{text}");
    assert!(text.contains(&amohook::config::env_name(key)), "{text}");
    key.to_owned()
}

#[test]
fn defaults_fill_everything_but_the_required_keys() {
    let s = load(&[]).unwrap();
    assert_eq!(s.http.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(
        s.amocrm.authorize_url.as_str(),
        "https://www.amocrm.ru/oauth"
    );
    assert_eq!(s.amocrm.api_base_url, "https://{domain}");
    assert_eq!(
        s.amocrm.allowed_domains,
        ["amocrm.ru", "amocrm.com", "kommo.com"]
    );
    assert_eq!(s.amocrm.requests_per_second, 7);
    assert_eq!(
        s.amocrm.redirect_uri.as_str(),
        "https://hooks.example.com/oauth/callback"
    );
    assert!(s.admin.token.is_none());
    assert!(s.security.encryption_key.is_none());
    use secrecy::ExposeSecret as _;
    assert_eq!(
        s.database.url.expose_secret(),
        "postgres://localhost/amohook"
    );
}

#[test]
fn the_environment_overrides_the_file() {
    let s = load(&[
        ("AMOHOOK_HTTP__LISTEN", "0.0.0.0:9999"),
        ("AMOHOOK_AMOCRM__ALLOWED_DOMAINS", "amocrm.ru, kommo.com"),
        ("AMOHOOK_AMOCRM__REQUESTS_PER_SECOND", "5"),
        ("AMOHOOK_AMOCRM__CLIENT_SECRET", "1e5"),
        ("AMOHOOK_ADMIN__TOKEN", "a-long-enough-admin-token"),
    ])
    .unwrap();
    assert_eq!(s.http.listen.port(), 9999);
    assert_eq!(s.amocrm.allowed_domains, ["amocrm.ru", "kommo.com"]);
    assert_eq!(s.amocrm.requests_per_second, 5);
    use secrecy::ExposeSecret as _;
    assert_eq!(
        s.amocrm.client_secret.expose_secret(),
        "1e5",
        "secrets stay strings"
    );
    assert!(s.admin.token.is_some());
}

#[test]
fn database_url_is_accepted_and_the_amohook_variable_wins() {
    use secrecy::ExposeSecret as _;
    let s = load(&[("DATABASE_URL", "postgres://db.internal/x")]).unwrap();
    assert_eq!(s.database.url.expose_secret(), "postgres://db.internal/x");
    let s = load(&[
        ("DATABASE_URL", "postgres://db.internal/x"),
        ("AMOHOOK_DATABASE__URL", "postgres://other/y"),
    ])
    .unwrap();
    assert_eq!(s.database.url.expose_secret(), "postgres://other/y");
}

#[test]
fn a_missing_or_bad_value_names_its_key() {
    assert_eq!(
        error_key(&[("AMOHOOK_AMOCRM__CLIENT_ID", "")]),
        "amocrm.client_id"
    );
    assert_eq!(
        error_key(&[("AMOHOOK_AMOCRM__CLIENT_SECRET", "")]),
        "amocrm.client_secret"
    );
    assert_eq!(
        error_key(&[("AMOHOOK_HTTP__PUBLIC_URL", "")]),
        "http.public_url"
    );
    assert_eq!(
        error_key(&[("AMOHOOK_HTTP__PUBLIC_URL", "https://x.example/path")]),
        "http.public_url"
    );
    assert_eq!(
        error_key(&[("AMOHOOK_HTTP__PUBLIC_URL", "ftp://x.example")]),
        "http.public_url"
    );
    assert_eq!(
        error_key(&[("AMOHOOK_HTTP__LISTEN", "localhost")]),
        "http.listen"
    );
    assert_eq!(
        error_key(&[("AMOHOOK_DATABASE__URL", "mysql://x/y")]),
        "database.url"
    );
    assert_eq!(
        error_key(&[("AMOHOOK_AMOCRM__REDIRECT_URI", "not a url")]),
        "amocrm.redirect_uri"
    );
    assert_eq!(
        error_key(&[("AMOHOOK_AMOCRM__AUTHORIZE_URL", "nope")]),
        "amocrm.authorize_url"
    );
    assert_eq!(
        error_key(&[("AMOHOOK_AMOCRM__API_BASE_URL", "https://api.example")]),
        "amocrm.api_base_url"
    );
    assert_eq!(
        error_key(&[("AMOHOOK_AMOCRM__ALLOWED_DOMAINS", "amocrm.ru,evil/com")]),
        "amocrm.allowed_domains"
    );
    assert_eq!(
        error_key(&[("AMOHOOK_AMOCRM__REQUESTS_PER_SECOND", "0")]),
        "amocrm.requests_per_second"
    );
    assert_eq!(
        error_key(&[("AMOHOOK_AMOCRM__REQUESTS_PER_SECOND", "seven")]),
        "amocrm.requests_per_second"
    );
    assert_eq!(
        error_key(&[("AMOHOOK_ADMIN__TOKEN", "short")]),
        "admin.token"
    );
    assert_eq!(
        error_key(&[("AMOHOOK_SECURITY__ENCRYPTION_KEY", "dG9vIHNob3J0")]),
        "security.encryption_key"
    );
    assert_eq!(
        error_key(&[("AMOHOOK_ADMIN__METRICS_TOKEN", "short")]),
        "admin.metrics_token"
    );
    assert_eq!(
        error_key(&[
            ("AMOHOOK_ADMIN__TOKEN", "the-same-long-token-0123"),
            ("AMOHOOK_ADMIN__METRICS_TOKEN", "the-same-long-token-0123"),
        ]),
        "admin.metrics_token"
    );
}

/// Two different keys with the same id byte: found by search, so the test
/// needs no fixed pair.
fn colliding_keys() -> ([u8; 32], [u8; 32]) {
    let id = amohook::crypto::key_id(&[0; 32]);
    let other = (1u16..)
        .map(|i| {
            let mut key = [0u8; 32];
            key[..2].copy_from_slice(&i.to_be_bytes());
            key
        })
        .find(|key| amohook::crypto::key_id(key) == id)
        .expect("254 ids: a collision within a few hundred keys");
    ([0; 32], other)
}

#[test]
fn an_old_key_with_the_current_keys_id_is_refused_at_start() {
    use base64::Engine as _;
    let b64 = |k: &[u8; 32]| base64::engine::general_purpose::STANDARD.encode(k);
    let (current, old) = colliding_keys();
    assert_ne!(current, old);
    let error = load(&[
        ("AMOHOOK_SECURITY__ENCRYPTION_KEY", &b64(&current)),
        ("AMOHOOK_SECURITY__OLD_ENCRYPTION_KEYS", &b64(&old)),
    ])
    .unwrap_err();
    assert_eq!(error.key(), Some("security.old_encryption_keys"));
    assert!(error.to_string().contains("generate"), "{error}");
    // The current key repeated among the old ones is harmless, and taken.
    load(&[
        ("AMOHOOK_SECURITY__ENCRYPTION_KEY", &b64(&current)),
        ("AMOHOOK_SECURITY__OLD_ENCRYPTION_KEYS", &b64(&current)),
    ])
    .unwrap();
}

#[test]
fn errors_never_print_secret_values() {
    let error = load(&[
        ("AMOHOOK_AMOCRM__CLIENT_SECRET", "super-secret-value"),
        ("AMOHOOK_SECURITY__ENCRYPTION_KEY", "super-secret-key"),
    ])
    .unwrap_err();
    let text = error.to_string();
    assert!(!text.contains("super-secret"), "{text}");
    let settings = load(&[("AMOHOOK_AMOCRM__CLIENT_SECRET", "super-secret-value")]).unwrap();
    assert!(!format!("{settings:?}").contains("super-secret-value"));
}

#[test]
fn the_default_file_documents_every_key() {
    for key in [
        "url",
        "listen",
        "public_url",
        "client_id",
        "client_secret",
        "redirect_uri",
        "authorize_url",
        "api_base_url",
        "allowed_domains",
        "requests_per_second",
        "token",
        "metrics_token",
        "encryption_key",
        "old_encryption_keys",
        "key_file",
        "exchanges_per_second",
        "concurrent_exchanges",
        "codes_per_host",
        "waiting_max",
    ] {
        assert!(
            DEFAULT_TOML.contains(&format!("{key} =")),
            "{key} in config/default.toml"
        );
    }
}

#[test]
fn the_key_file_has_one_absolute_place() {
    use amohook::config::default_key_file;
    use std::path::Path;
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    assert_eq!(
        default_key_file(env(&[("XDG_DATA_HOME", "/data"), ("HOME", "/home/u")])),
        Path::new("/data/amohook/amohook.key")
    );
    assert_eq!(
        default_key_file(env(&[("HOME", "/home/u")])),
        Path::new("/home/u/.local/share/amohook/amohook.key")
    );
    // Relative values are not trusted: they would depend on the folder.
    assert_eq!(
        default_key_file(env(&[("XDG_DATA_HOME", "rel"), ("HOME", "also-rel")])),
        Path::new("/var/lib/amohook/amohook.key")
    );
    // A relative key_file is made absolute from the folder of the start.
    let s = load(&[("AMOHOOK_SECURITY__KEY_FILE", "keys/amohook.key")]).unwrap();
    assert!(s.security.key_file.is_absolute());
    assert!(s.security.key_file.ends_with("keys/amohook.key"));
    // Unset: the default place, absolute.
    let s = load(&[]).unwrap();
    assert!(s.security.key_file.is_absolute());
    assert!(s.security.key_file.ends_with("amohook/amohook.key"));
}

#[test]
fn old_keys_are_read_as_a_list_and_checked() {
    let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [1u8; 32]);
    let other = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [2u8; 32]);
    let both = format!("{key},{other}");
    let s = load(&[("AMOHOOK_SECURITY__OLD_ENCRYPTION_KEYS", both.as_str())]).unwrap();
    assert_eq!(s.security.old_encryption_keys.len(), 2);
    assert_eq!(s.security.old_encryption_keys[1].0, [2u8; 32]);
    assert_eq!(
        error_key(&[("AMOHOOK_SECURITY__OLD_ENCRYPTION_KEYS", "c2hvcnQ=")]),
        "security.old_encryption_keys"
    );
    // Never printed.
    assert!(!format!("{s:?}").contains(&key));
    assert!(!format!("{s:?}").contains("1, 1, 1"));
}

#[test]
fn install_limits_have_defaults_and_bounds() {
    let s = load(&[]).unwrap();
    assert_eq!(s.install.exchanges_per_second, 5);
    assert_eq!(s.install.concurrent_exchanges, 4);
    assert_eq!(s.install.codes_per_host, 5);
    assert_eq!(s.install.waiting_max, 1000);
    assert_eq!(
        error_key(&[("AMOHOOK_INSTALL__EXCHANGES_PER_SECOND", "0")]),
        "install.exchanges_per_second"
    );
    assert_eq!(
        error_key(&[("AMOHOOK_INSTALL__WAITING_MAX", "many")]),
        "install.waiting_max"
    );
}

#[test]
fn a_kommo_integration_is_optional_and_complete_when_given() {
    let s = load(&[]).unwrap();
    assert!(s.kommo.is_none(), "no kommo section: one integration");
    assert!(s.integrations().kommo.is_none());
    let s = load(&[
        ("AMOHOOK_KOMMO__CLIENT_ID", "kommo-id"),
        ("AMOHOOK_KOMMO__CLIENT_SECRET", "kommo-secret"),
    ])
    .unwrap();
    let kommo = s.kommo.as_ref().unwrap();
    assert_eq!(kommo.authorize_url.as_str(), "https://www.kommo.com/oauth");
    assert_eq!(
        kommo.redirect_uri.as_str(),
        "https://hooks.example.com/oauth/callback"
    );
    assert_eq!(
        s.integrations().for_host("a.kommo.com").client_id,
        "kommo-id"
    );
    assert!(!format!("{s:?}").contains("kommo-secret"));
    assert_eq!(
        error_key(&[("AMOHOOK_KOMMO__CLIENT_ID", "kommo-id")]),
        "kommo.client_secret"
    );
    assert_eq!(
        error_key(&[("AMOHOOK_KOMMO__CLIENT_SECRET", "kommo-secret")]),
        "kommo.client_id"
    );
    // The base environment's amocrm.client_id is "id".
    assert_eq!(
        error_key(&[
            ("AMOHOOK_KOMMO__CLIENT_ID", "id"),
            ("AMOHOOK_KOMMO__CLIENT_SECRET", "kommo-secret"),
        ]),
        "kommo.client_id"
    );
}
