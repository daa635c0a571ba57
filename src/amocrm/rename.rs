//! An account that renamed its subdomain: the token endpoint on the old
//! host answers 401 or 404, yet the grant is alive. As the official SDK does
//! (src/AmoCRM/OAuth/AmoCRMOAuth.php, getAccessTokenByRefreshToken; see
//! ../shared/reference/amocrm-api.md §0): ask
//! `GET https://{api_domain}/oauth2/account/current/subdomain` with the
//! header `X-Refresh-Token`, where `api_domain` is a claim of the access
//! token (a JWT; its payload is read, its signature is amoCRM's business),
//! then refresh once more on the new host.

use base64::Engine as _;
use reqwest::header;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use super::{AmoApi, AmoError};

/// `{id, subdomain, domain, top_level_domain}` (the SDK's
/// AccountDomainModel).
#[derive(Debug, Deserialize)]
struct AccountDomain {
    id: i64,
    subdomain: String,
    #[serde(default)]
    domain: String,
}

/// The `api_domain` claim of an amoCRM access token, when it has one.
pub fn api_domain(access_token: &SecretString) -> Option<String> {
    let payload = access_token.expose_secret().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims["api_domain"].as_str().map(str::to_owned)
}

impl AmoError {
    /// What the token endpoint of a renamed account's old host answers.
    pub fn may_be_renamed(&self) -> bool {
        matches!(
            self,
            AmoError::Unauthorized(_) | AmoError::Refused { status: 404, .. }
        )
    }
}

impl AmoApi {
    /// The account's current host, asked of amoCRM with its refresh token;
    /// `None` when amoCRM does not say, names another account, or names a
    /// host outside the allowed domains (nothing is sent there).
    pub async fn current_host(
        &self,
        account_id: i64,
        api_domain: &str,
        refresh_token: &SecretString,
    ) -> Option<String> {
        if crate::platform::account_host(api_domain, &self.allowed_domains).is_none() {
            tracing::warn!(api_domain, "the token's api_domain is not an amoCRM host");
            return None;
        }
        let url = format!(
            "{}/oauth2/account/current/subdomain",
            self.base_url(api_domain)
        );
        let response = self
            .http
            .get(url)
            .header("X-Refresh-Token", refresh_token.expose_secret())
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let found: AccountDomain = response.json().await.ok()?;
        if found.id != account_id || found.subdomain.is_empty() {
            return None;
        }
        // `domain` is the full host in some answers and the parent domain
        // in others: accept both.
        let prefix = format!("{}.", found.subdomain);
        let host = if found.domain.starts_with(&prefix) {
            found.domain
        } else {
            format!("{}{}", prefix, found.domain)
        };
        // The same check as an install's referer: it decides where the
        // refresh token goes next.
        crate::platform::account_host(&host, &self.allowed_domains)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_domain_is_read_from_the_tokens_payload() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"aud":"x","api_domain":"api-b.amocrm.ru","account_id":1}"#);
        let token = SecretString::from(format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln"));
        assert_eq!(api_domain(&token).as_deref(), Some("api-b.amocrm.ru"));
        assert_eq!(api_domain(&SecretString::from("opaque")), None);
        assert_eq!(api_domain(&SecretString::from("a.!!!.c")), None);
    }
}
