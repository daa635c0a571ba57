//! A typed client for the parts of amoCRM's API this service uses.
//!
//! Every call goes to `{api_base_url}` with `{domain}` replaced by the
//! account's host. Answers are sorted into [`AmoError`] the way amoCRM
//! actually answers (see ../shared/reference/amocrm-api.md): problem+json
//! bodies on 4xx, a non-JSON 429 on the rate limit, an nginx HTML 403 when an
//! account or IP is blocked, 401 when a token has expired.

mod account;
pub mod budget;
pub mod directory;
mod error;
pub mod events;
pub mod hooks;
pub mod notes;
mod oauth;
mod problem;
pub mod rename;

pub use account::AccountInfo;
pub use error::AmoError;

use std::time::Duration;

use reqwest::{header, Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{de::DeserializeOwned, Serialize};

use crate::{config::Settings, platform::Integrations};
use budget::{Budget, Slot};
pub use oauth::TokenSet;
pub use problem::Problem;

/// How long one call to amoCRM may take, from the first byte sent to the
/// last byte of the answer, before it counts as failed. amoCRM's API
/// normally answers well under a second; a batch of 50 notes on a busy
/// server can take a few. 15 s leaves those room (a request cut short that
/// had reached amoCRM costs a lookup before it is sent again) while a slow
/// or hung account holds its turn no longer than that per call: its turn
/// is a task of its own (`delivery::Worker::run`), so other accounts do
/// not wait on it, and a call that times out pauses the account for its
/// events' back-off (`delivery::retry`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a new connection to an account host may take (TCP and TLS
/// handshake). A host that does not accept within 3 s is down or
/// unreachable for now; the call fails fast and is retried later.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Kept-alive connections to a host are closed after this long unused, so
/// that a process serving thousands of account hosts does not keep a
/// socket open to each of them.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The web-hook events subscribed for every account.
pub const WEBHOOK_EVENTS: &[&str] = &[
    "add_lead",
    "update_lead",
    "add_contact",
    "update_contact",
    // `<action>_<entity>` as for leads (../shared/reference/amocrm-api.md §0).
    "add_company",
    "update_company",
];

/// `_links` of a list answer. amoCRM pages by `_links.next` (the official
/// SDK's BaseEntity: `setNextPageLink($response['_links']['next']['href'])`),
/// and its custom-fields method gives at most 50 fields a page whatever
/// `limit` says: a page shorter than `limit` is not the last one; only a
/// page without `next` is.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct Links {
    #[serde(default)]
    next: Option<serde_json::Value>,
}

impl Links {
    pub(crate) fn has_next(&self) -> bool {
        self.next.is_some()
    }
}

/// One web-hook subscription of an account (amocrm.ru webhooks-api).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Webhook {
    #[serde(default)]
    pub destination: String,
    /// amoCRM switched it off (more than 100 failed answers in 2 hours, or
    /// an IP block): nothing is sent until it is saved again.
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub settings: Vec<String>,
}

/// Counts one call to amoCRM and its duration; `status` is None when no
/// answer came.
pub(crate) fn record_request(
    endpoint: &'static str,
    platform: crate::platform::Platform,
    status: Option<StatusCode>,
    started: std::time::Instant,
) {
    let status = status.map_or_else(|| "error".to_owned(), |s| s.as_str().to_owned());
    metrics::counter!("amohook_amocrm_requests_total", "endpoint" => endpoint,
        "platform" => platform.as_str(), "status" => status)
    .increment(1);
    metrics::histogram!("amohook_amocrm_request_seconds", "endpoint" => endpoint)
        .record(started.elapsed().as_secs_f64());
}

/// A low-cardinality name for a call, for metrics.
pub(crate) fn endpoint_name(path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or(path);
    match path {
        "/oauth2/access_token" => "token",
        "/api/v4/account" => "account",
        "/api/v4/webhooks" => "webhooks",
        "/api/v4/users" => "users",
        "/api/v4/leads/pipelines" => "pipelines",
        "/api/v4/events" => "events",
        p if p.ends_with("/custom_fields") => "custom_fields",
        p if p.ends_with("/notes") => "notes",
        _ => "other",
    }
}

/// A client builder whose HTTPS is rustls with the ring provider, trusting
/// the Mozilla root certificates compiled into the binary (webpki-roots)
/// rather than the host's store, so that the service needs no CA bundle on
/// its host; ALPN offers HTTP/1.1, the only version the client speaks.
/// Every client of the service, its tests and its benchmark starts here:
/// reqwest itself is built without a crypto provider.
pub fn http_client() -> reqwest::ClientBuilder {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder().tls_backend_preconfigured(tls)
}

/// The HTTP client for amoCRM. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AmoApi {
    http: reqwest::Client,
    api_base_url: String,
    /// `amocrm.*`, and `kommo.*` when configured: each host's calls that
    /// carry a client secret use its own integration's.
    integrations: Integrations,
    budget: Option<Budget>,
    /// The parent domains of account hosts (`amocrm.ru`, `kommo.com`, ...).
    allowed_domains: Vec<String>,
}

impl AmoApi {
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let http = http_client()
            // The token endpoint must never be followed elsewhere: a redirect
            // would carry the client secret to another host.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(IDLE_TIMEOUT)
            // A connection whose peer vanished (no FIN, no RST) is found
            // dead by TCP instead of hanging until the request's deadline.
            .tcp_keepalive(Duration::from_secs(30))
            .user_agent(concat!("amohook/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(AmoApi {
            http,
            api_base_url: settings.amocrm.api_base_url.clone(),
            integrations: settings.integrations(),
            budget: None,
            allowed_domains: settings.amocrm.allowed_domains.clone(),
        })
    }

    pub fn integrations(&self) -> &Integrations {
        &self.integrations
    }

    /// Makes every call wait for a slot in the shared per-account budget.
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Waits for the account host's budget, when there is one. The call
    /// spends the slot with [`Slot::leaving`] as it leaves.
    pub(crate) async fn take_slot(&self, domain: &str) -> Result<Slot, AmoError> {
        match &self.budget {
            Some(budget) => budget.acquire(domain).await.map_err(AmoError::Budget),
            None => Ok(Slot::unbudgeted()),
        }
    }

    /// Counts calls made to `domain` before it was an account's host (they
    /// took no slot; see [`Budget::count_calls`]).
    pub async fn count_calls(&self, domain: &str, calls: usize) -> Result<(), AmoError> {
        match &self.budget {
            Some(budget) => budget
                .count_calls(domain, calls)
                .await
                .map_err(|e| AmoError::Budget(e.into())),
            None => Ok(()),
        }
    }

    /// `{api_base_url}` for one account host, without a trailing slash.
    pub fn base_url(&self, domain: &str) -> String {
        self.api_base_url
            .replace("{domain}", domain)
            .trim_end_matches('/')
            .to_owned()
    }

    /// `GET /api/v4/account?with=datetime_settings`.
    pub async fn account(
        &self,
        domain: &str,
        token: &SecretString,
    ) -> Result<AccountInfo, AmoError> {
        self.call(
            domain,
            token,
            Method::GET,
            "/api/v4/account?with=datetime_settings",
            None::<&()>,
        )
        .await
    }

    /// `POST /api/v4/webhooks`: subscribe `destination` to `events`.
    pub async fn subscribe_webhooks(
        &self,
        domain: &str,
        token: &SecretString,
        destination: &str,
        events: &[&str],
    ) -> Result<(), AmoError> {
        #[derive(Serialize)]
        struct Subscribe<'a> {
            destination: &'a str,
            settings: &'a [&'a str],
        }
        let _: serde_json::Value = self
            .call(
                domain,
                token,
                Method::POST,
                "/api/v4/webhooks",
                Some(&Subscribe {
                    destination,
                    settings: events,
                }),
            )
            .await?;
        Ok(())
    }

    /// `GET /api/v4/webhooks?filter[destination]=...`: the account's
    /// subscriptions of exactly `destination` (none: amoCRM's 204).
    pub async fn webhooks(
        &self,
        domain: &str,
        token: &SecretString,
        destination: &str,
    ) -> Result<Vec<Webhook>, AmoError> {
        #[derive(serde::Deserialize, Default)]
        struct Page {
            #[serde(default, rename = "_embedded")]
            embedded: Embedded,
        }
        #[derive(serde::Deserialize, Default)]
        struct Embedded {
            #[serde(default)]
            webhooks: Vec<Webhook>,
        }
        let path = format!(
            "/api/v4/webhooks?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("filter[destination]", destination)
                .finish()
        );
        let page: Option<Page> = self
            .call(domain, token, Method::GET, &path, None::<&()>)
            .await?;
        Ok(page.unwrap_or_default().embedded.webhooks)
    }

    /// `DELETE /api/v4/webhooks`: stop sending to `destination`.
    pub async fn unsubscribe_webhook(
        &self,
        domain: &str,
        token: &SecretString,
        destination: &str,
    ) -> Result<(), AmoError> {
        let body = serde_json::json!({ "destination": destination });
        let _: serde_json::Value = self
            .call(
                domain,
                token,
                Method::DELETE,
                "/api/v4/webhooks",
                Some(&body),
            )
            .await?;
        Ok(())
    }

    /// One authorized JSON call. A 204 (amoCRM's "nothing found") reads as
    /// JSON `null`.
    pub async fn call<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        domain: &str,
        token: &SecretString,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
    ) -> Result<T, AmoError> {
        let slot = self.take_slot(domain).await?;
        let url = format!("{}{}", self.base_url(domain), path_and_query);
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(token.expose_secret())
            .header(header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let endpoint = endpoint_name(path_and_query);
        let started = std::time::Instant::now();
        let (result, ()) = tokio::join!(Self::send(request), slot.leaving());
        record_request(
            endpoint,
            crate::platform::Platform::of_host(domain),
            result.as_ref().ok().map(|(status, _, _)| *status),
            started,
        );
        let (status, content_type, bytes) = result?;
        if !status.is_success() {
            return Err(AmoError::from_response(
                status,
                content_type.as_deref(),
                &bytes,
            ));
        }
        let body: &[u8] = if status == StatusCode::NO_CONTENT || bytes.is_empty() {
            b"null"
        } else {
            &bytes
        };
        serde_json::from_slice(body).map_err(|e| AmoError::Unexpected(e.to_string()))
    }

    async fn send(
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Option<String>, axum::body::Bytes), AmoError> {
        let response = request.send().await?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await?;
        Ok((status, content_type, bytes))
    }
}
