//! amoCRM and Kommo: two platforms, two integrations.
//!
//! amoCRM split into amoCRM on amocrm.ru (Russia) and Kommo on kommo.com
//! (the global market; old amocrm.com accounts live there now), with their
//! own servers and marketplaces. An integration is registered in one of
//! them, with its own client id, secret and grant page. amohook holds one
//! integration per platform: `amocrm.*` always, `kommo.*` optionally. When
//! `kommo.*` is set, accounts on kommo.com and amocrm.com belong to it and
//! accounts on amocrm.ru to `amocrm.*`; when it is not, `amocrm.*` serves
//! every allowed domain (a deployment with one integration, for either
//! platform, works as it always did).
//!
//! Which integration an account belongs to follows from its host alone, so
//! everything that sends a secret anywhere (the code exchange, a refresh)
//! picks it from the host it sends to: a secret never goes to the other
//! platform's hosts.

use secrecy::SecretString;
use url::Url;

/// The platform of an account host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Platform {
    /// amoCRM, amocrm.ru.
    Amocrm,
    /// Kommo, kommo.com and the old amocrm.com.
    Kommo,
}

/// The parent domains of Kommo's account hosts.
pub const KOMMO_DOMAINS: &[&str] = &["kommo.com", "amocrm.com"];

impl Platform {
    /// The platform of an account host (`acme.kommo.com` → Kommo). Hosts
    /// come checked by [`account_host`].
    pub fn of_host(host: &str) -> Platform {
        let parent = host.split_once('.').map_or(host, |(_, parent)| parent);
        if KOMMO_DOMAINS.contains(&parent) {
            Platform::Kommo
        } else {
            Platform::Amocrm
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Amocrm => "amocrm",
            Platform::Kommo => "kommo",
        }
    }

    /// `amocrm` or `kommo`.
    pub fn parse(text: &str) -> Option<Platform> {
        match text {
            "amocrm" => Some(Platform::Amocrm),
            "kommo" => Some(Platform::Kommo),
            _ => None,
        }
    }

    /// The name people know it by.
    pub fn title(self) -> &'static str {
        match self {
            Platform::Amocrm => "amoCRM",
            Platform::Kommo => "Kommo",
        }
    }
}

/// Checks that `referer` (or any host amoCRM names) is an account host directly under one of the
/// allowed domains (`acme.amocrm.ru`), and returns it lowercased.
///
/// The referer decides where the client secret is sent, so anything else is
/// refused: other hosts, look-alikes (`amocrm.ru.evil.com`), nested hosts
/// (`a.b.amocrm.ru`), ports, paths, user info, schemes.
pub fn account_host(referer: &str, allowed_domains: &[String]) -> Option<String> {
    let host = referer.trim().to_ascii_lowercase();
    let (label, parent) = host.split_once('.')?;
    let label_ok = !label.is_empty()
        && label.len() <= 63
        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !label.starts_with('-')
        && !label.ends_with('-');
    (label_ok && allowed_domains.iter().any(|d| d == parent)).then_some(host)
}

/// One registered integration: the configuration section it comes from
/// (`amocrm` or `kommo`) and its keys.
#[derive(Clone, Debug)]
pub struct Integration {
    /// `amocrm` or `kommo`: the configuration section, and the name the
    /// integration is known by in faults and metrics.
    pub name: &'static str,
    pub client_id: String,
    pub client_secret: SecretString,
    pub redirect_uri: Url,
    pub authorize_url: Url,
}

/// The deployment's integrations.
#[derive(Clone, Debug)]
pub struct Integrations {
    pub amocrm: Integration,
    pub kommo: Option<Integration>,
}

impl Integrations {
    /// The integration an account host belongs to.
    pub fn for_host(&self, host: &str) -> &Integration {
        match (&self.kommo, Platform::of_host(host)) {
            (Some(kommo), Platform::Kommo) => kommo,
            _ => &self.amocrm,
        }
    }

    /// The integration that installs accounts of `platform`: Kommo's when it
    /// is configured; `amocrm.*` for amoCRM, and for Kommo when only one
    /// integration is configured.
    pub fn for_platform(&self, platform: Platform) -> &Integration {
        match (platform, &self.kommo) {
            (Platform::Kommo, Some(kommo)) => kommo,
            _ => &self.amocrm,
        }
    }

    /// The integration with this client id (an uninstall's `client_uuid`).
    pub fn by_client_id(&self, client_id: &str) -> Option<&Integration> {
        self.all().find(|i| i.client_id == client_id)
    }

    /// Whether two hosts belong to one integration (a renamed account
    /// stays with the integration that holds its grant).
    pub fn same(&self, a: &str, b: &str) -> bool {
        self.for_host(a).name == self.for_host(b).name
    }

    pub fn all(&self) -> impl Iterator<Item = &Integration> {
        std::iter::once(&self.amocrm).chain(&self.kommo)
    }

    /// The platforms with an install button of their own: both when Kommo
    /// has its integration, otherwise the one the single integration's
    /// grant page belongs to.
    pub fn install_platforms(&self) -> Vec<Platform> {
        match &self.kommo {
            Some(_) => vec![Platform::Amocrm, Platform::Kommo],
            None if self.amocrm.authorize_url.host_str() == Some("www.kommo.com") => {
                vec![Platform::Kommo]
            }
            None => vec![Platform::Amocrm],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn integration(name: &'static str, authorize: &str) -> Integration {
        Integration {
            name,
            client_id: format!("{name}-id"),
            client_secret: SecretString::from(format!("{name}-secret")),
            redirect_uri: Url::parse("https://hooks.example.com/oauth/callback").unwrap(),
            authorize_url: Url::parse(authorize).unwrap(),
        }
    }

    #[test]
    fn hosts_belong_to_their_platforms_integration() {
        assert_eq!(Platform::of_host("acme.amocrm.ru"), Platform::Amocrm);
        assert_eq!(Platform::of_host("acme.kommo.com"), Platform::Kommo);
        assert_eq!(Platform::of_host("acme.amocrm.com"), Platform::Kommo);
        let both = Integrations {
            amocrm: integration("amocrm", "https://www.amocrm.ru/oauth"),
            kommo: Some(integration("kommo", "https://www.kommo.com/oauth")),
        };
        assert_eq!(both.for_host("a.amocrm.ru").name, "amocrm");
        assert_eq!(both.for_host("a.kommo.com").name, "kommo");
        assert_eq!(both.for_host("a.amocrm.com").name, "kommo");
        assert_eq!(both.by_client_id("kommo-id").unwrap().name, "kommo");
        assert!(both.by_client_id("other").is_none());
        assert!(!both.same("a.amocrm.ru", "a.kommo.com"));
        assert_eq!(
            both.install_platforms(),
            [Platform::Amocrm, Platform::Kommo]
        );

        // One integration serves every host, as before.
        let one = Integrations {
            amocrm: integration("amocrm", "https://www.kommo.com/oauth"),
            kommo: None,
        };
        assert_eq!(one.for_host("a.kommo.com").name, "amocrm");
        assert_eq!(one.for_platform(Platform::Kommo).name, "amocrm");
        assert!(one.same("a.amocrm.ru", "a.kommo.com"));
        assert_eq!(one.install_platforms(), [Platform::Kommo]);
    }
}
