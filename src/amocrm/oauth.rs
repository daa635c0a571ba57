//! OAuth 2.0 with amoCRM through the `oauth2` crate.
//!
//! What the crate cannot express, and how it is handled here:
//! - The token endpoint is per account (`https://{referer}/oauth2/access_token`),
//!   not one fixed URL, so a client is built for each call with that
//!   account's token URL.
//! - amoCRM's errors are problem+json without RFC 6749's `error` field, so
//!   the crate's error type never parses them and it reports every error
//!   as "cannot parse". Its HTTP client is therefore a closure here that
//!   keeps the raw status and body, and the outcome is sorted by
//!   [`AmoError::from_response`] exactly like any other amoCRM answer.
//! - amoCRM's documented refresh request carries `redirect_uri`, which
//!   RFC 6749 does not; it is added as an extra parameter.
//! - The authorize URL needs amoCRM's `mode` parameter (extra parameter).
//!   The crate also adds `response_type` and `redirect_uri`, which amoCRM
//!   ignores (its own PHP SDK sends them too).

use std::{future::Future, pin::Pin, sync::Mutex, time::Duration};

use oauth2::{
    basic::BasicClient, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    RedirectUrl, RefreshToken, RequestTokenError, TokenResponse, TokenUrl,
};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};

use super::{budget::Slot, AmoApi, AmoError};
use crate::platform::{Integration, Platform};

/// A fresh pair from the token endpoint.
#[derive(Debug)]
pub struct TokenSet {
    pub access_token: SecretString,
    pub refresh_token: SecretString,
    pub expires_in: Duration,
}

#[derive(Debug, thiserror::Error)]
enum HttpError {
    #[error(transparent)]
    Reqwest(#[from] reqwest::Error),

    #[error(transparent)]
    Http(#[from] http::Error),
}

/// The HTTP client handed to the `oauth2` crate: reqwest, keeping the raw
/// status and body of the answer. (A named type rather than a closure: a
/// closure's future trips rustc's higher-ranked `Send` inference when the
/// whole install runs in a spawned task.)
struct OauthHttp<'a> {
    api: &'a AmoApi,
    /// The account host called, for metrics.
    platform: Platform,
    /// The budget slot, spent as the request leaves.
    slot: Mutex<Slot>,
    seen: Mutex<Option<Seen>>,
}

impl<'a> OauthHttp<'a> {
    fn new(api: &'a AmoApi, domain: &str, slot: Slot) -> Self {
        OauthHttp {
            api,
            platform: Platform::of_host(domain),
            slot: Mutex::new(slot),
            seen: Mutex::new(None),
        }
    }
}

impl<'c> oauth2::AsyncHttpClient<'c> for OauthHttp<'_> {
    type Error = HttpError;
    type Future =
        Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        let slot = std::mem::replace(
            &mut *self.slot.lock().expect("not poisoned"),
            Slot::unbudgeted(),
        );
        Box::pin(
            self.api
                .send_oauth(request, self.platform, slot, &self.seen),
        )
    }
}

struct Seen {
    status: StatusCode,
    content_type: Option<String>,
    body: Vec<u8>,
}

impl AmoApi {
    /// The URL that sends a browser to `integration`'s grant page.
    pub fn authorize_url(&self, integration: &Integration, state: &str) -> url::Url {
        let client = BasicClient::new(ClientId::new(integration.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(integration.authorize_url.clone()))
            .set_redirect_uri(RedirectUrl::from_url(integration.redirect_uri.clone()));
        let (url, _) = client
            .authorize_url(|| CsrfToken::new(state.to_owned()))
            // post_message: amoCRM redirects the window the grant was
            // opened in (our /install page), not a parent window.
            .add_extra_param("mode", "post_message")
            .url();
        url
    }

    /// Exchanges an authorization code at the account's token endpoint.
    ///
    /// It takes no slot of the host's budget: anyone can send a made-up
    /// code naming a real account, and its exchange must not spend that
    /// account's calls (exchanges are paced by the install gate,
    /// `install/gate.rs`). It waits, though, until the host's budget has
    /// room, so that a real reinstall keeps the account's pace; an install
    /// that succeeds counts the call afterwards ([`AmoApi::count_calls`]).
    pub async fn exchange_code(&self, domain: &str, code: &str) -> Result<TokenSet, AmoError> {
        let client = self.token_client(domain)?;
        if let Some(budget) = &self.budget {
            budget
                // Briefly: it holds a turn of the install gate meanwhile.
                .wait_for_room(domain, std::time::Duration::from_secs(5))
                .await
                .map_err(AmoError::Budget)?;
        }
        let http = OauthHttp::new(self, domain, Slot::unbudgeted());
        let result = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .request_async(&http)
            .await;
        Self::token_outcome(result, http.seen)
    }

    /// Trades a refresh token for a new pair. amoCRM revokes the old refresh
    /// token on success: callers must store the new one before anything else
    /// can use the old one (see `tokens/`). The caller takes the budget
    /// `slot` first ([`AmoApi::take_slot`]), before it locks the token row,
    /// so that no row lock is held while waiting for the budget.
    pub async fn refresh_token(
        &self,
        domain: &str,
        refresh_token: &SecretString,
        slot: Slot,
    ) -> Result<TokenSet, AmoError> {
        let client = self.token_client(domain)?;
        let http = OauthHttp::new(self, domain, slot);
        let refresh = RefreshToken::new(refresh_token.expose_secret().to_owned());
        let redirect_uri = self.integrations.for_host(domain).redirect_uri.as_str();
        let result = client
            .exchange_refresh_token(&refresh)
            .add_extra_param("redirect_uri", redirect_uri)
            .request_async(&http)
            .await;
        Self::token_outcome(result, http.seen)
    }

    fn token_client(
        &self,
        domain: &str,
    ) -> Result<
        BasicClient<
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointSet,
        >,
        AmoError,
    > {
        let token_url = TokenUrl::new(format!("{}/oauth2/access_token", self.base_url(domain)))
            .map_err(|e| AmoError::Transport(format!("bad token URL: {e}")))?;
        // The host's own integration: a secret never goes to the other
        // platform's hosts.
        let integration = self.integrations.for_host(domain);
        Ok(
            BasicClient::new(ClientId::new(integration.client_id.clone()))
                .set_client_secret(ClientSecret::new(
                    integration.client_secret.expose_secret().to_owned(),
                ))
                // amoCRM reads client_id and client_secret from the body.
                .set_auth_type(AuthType::RequestBody)
                .set_token_uri(token_url)
                .set_redirect_uri(RedirectUrl::from_url(integration.redirect_uri.clone())),
        )
    }

    async fn send_oauth(
        &self,
        request: oauth2::HttpRequest,
        platform: Platform,
        slot: Slot,
        seen: &Mutex<Option<Seen>>,
    ) -> Result<oauth2::HttpResponse, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let started = std::time::Instant::now();
        let (response, ()) = tokio::join!(self.http.execute(request), slot.leaving());
        super::record_request(
            "token",
            platform,
            response.as_ref().ok().map(reqwest::Response::status),
            started,
        );
        let response = response?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?.to_vec();
        let mut builder = http::Response::builder().status(status);
        for (name, value) in &headers {
            // The crate accepts only `application/json`; amoCRM labels
            // JSON as `application/hal+json` and `application/problem+json`
            // elsewhere, and a relabelled token answer must not fail.
            if name == reqwest::header::CONTENT_TYPE
                && value
                    .to_str()
                    .is_ok_and(|v| v.starts_with("application/") && v.contains("+json"))
            {
                builder = builder.header(name, "application/json");
                continue;
            }
            builder = builder.header(name, value);
        }
        *seen.lock().expect("not poisoned") = Some(Seen {
            status,
            content_type: headers
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: body.clone(),
        });
        Ok(builder.body(body)?)
    }

    fn token_outcome<T: TokenResponse, E: oauth2::ErrorResponse>(
        result: Result<T, RequestTokenError<HttpError, E>>,
        seen: Mutex<Option<Seen>>,
    ) -> Result<TokenSet, AmoError> {
        let seen = seen.into_inner().expect("not poisoned");
        match result {
            Ok(token) => {
                let refresh = token.refresh_token().ok_or_else(|| {
                    AmoError::Unexpected("the token answer has no refresh_token".into())
                })?;
                Ok(TokenSet {
                    access_token: SecretString::from(token.access_token().secret().clone()),
                    refresh_token: SecretString::from(refresh.secret().clone()),
                    // amoCRM gives a day; a lifetime past a year is not
                    // believed (it would overflow the times built on it).
                    expires_in: token
                        .expires_in()
                        .unwrap_or(Duration::from_secs(86_400))
                        .min(Duration::from_secs(366 * 86_400)),
                })
            }
            Err(RequestTokenError::Request(HttpError::Reqwest(e))) => Err(e.into()),

            Err(other) => match seen {
                Some(s) if !s.status.is_success() => Err(AmoError::from_response(
                    s.status,
                    s.content_type.as_deref(),
                    &s.body,
                )),
                // A 2xx the crate could not read as a token. The crate's
                // message names the field, never the token values.
                _ => Err(AmoError::Unexpected(format!("token answer: {other}"))),
            },
        }
    }
}
