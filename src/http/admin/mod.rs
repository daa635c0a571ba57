//! The admin side: the status page, an account's page and its actions, the
//! JSON admin API, and /metrics. All behind `admin.token`; /metrics also
//! opens to `admin.metrics_token`, which opens nothing else.
//!
//! Here: the router, the `Admin` proof, the forms' CSRF guard and the
//! actions shared by pages and API.

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Router,
};
use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use super::{
    error::{AppError, PageError},
    AppState,
};
use crate::{account_settings::store, stats::ListQuery};

mod account_page;
mod api;
mod metrics;
mod settings;
mod status_page;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/status") }))
        .route("/status", get(status_page::status_page))
        .route("/status/accounts/{id}", get(account_page::account_page))
        .route(
            "/status/accounts/{id}/{action}",
            post(account_page::account_action_form),
        )
        .route("/api/accounts", get(api::api_accounts))
        .route("/api/accounts/{id}", get(api::api_account))
        .route("/api/accounts/{id}/events", get(api::api_events))
        .route(
            "/api/accounts/{id}/settings",
            get(settings::get_settings).put(settings::put_settings),
        )
        .route(
            "/api/accounts/{id}/settings/preview",
            post(settings::preview_settings),
        )
        .route("/api/accounts/{id}/{action}", post(api::api_action))
        .route("/metrics", get(metrics::metrics))
}

/// Proof that the request carries the admin token: HTTP Basic with any
/// user name and the token as password, or `Authorization: Bearer`.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let refusal = match &state.settings.admin.token {
            None => AppError::new(
                StatusCode::FORBIDDEN,
                "The admin pages are switched off: set admin.token (AMOHOOK_ADMIN__TOKEN) to open them.",
            ),
            Some(token) => match presented(&parts.headers) {
                Some(given) if same_secret(&given, token) => return Ok(Admin),
                _ => AppError::new(StatusCode::UNAUTHORIZED, "The admin token is required.")
                    .with_challenge(),
            },
        };
        // Pages get the HTML error page, the API and /metrics JSON.
        Err(if parts.uri.path().starts_with("/status") {
            PageError(refusal).into_response()
        } else {
            refusal.into_response()
        })
    }
}

/// Proof that the request may read /metrics: the admin token, or
/// `admin.metrics_token`, which opens nothing else.
pub struct MetricsReader;

impl FromRequestParts<AppState> for MetricsReader {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let admin = &state.settings.admin;
        if let Some(token) = &admin.metrics_token {
            if presented(&parts.headers).is_some_and(|given| same_secret(&given, token)) {
                return Ok(MetricsReader);
            }
            if admin.token.is_none() {
                return Err(AppError::new(
                    StatusCode::UNAUTHORIZED,
                    "The metrics token is required.",
                )
                .with_challenge()
                .into_response());
            }
        }
        Admin::from_request_parts(parts, state)
            .await
            .map(|Admin| MetricsReader)
    }
}

fn presented(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Some(rest.trim().to_owned()),
        "basic" => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (_, password) = text.split_once(':')?;
            Some(password.to_owned())
        }
        _ => None,
    }
}

/// Compares digests in constant time, so neither the token's content nor
/// its length leaks through timing.
fn same_secret(given: &str, token: &SecretString) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(token.expose_secret().as_bytes());
    a.ct_eq(&b).into()
}

/// Forms carry a token only the holder of the admin token can make, and
/// cross-site posts are refused outright (a browser would send Basic
/// credentials along with them).
/// The account page's CSRF token for its forms (the sandbox panel's too).
pub fn csrf_token(state: &AppState, account_id: i64) -> String {
    let key = state
        .settings
        .admin
        .token
        .as_ref()
        .map(|t| t.expose_secret().to_owned())
        .unwrap_or_default();
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(format!("csrf:{account_id}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Refuses a form post that is not the account page's own: from another
/// site, or without the page's CSRF token (the sandbox panel's forms too).
pub fn page_form(
    state: &AppState,
    headers: &HeaderMap,
    account_id: i64,
    csrf: &str,
) -> Result<(), AppError> {
    let expected = csrf_token(state, account_id);
    if cross_site(headers) || !bool::from(csrf.as_bytes().ct_eq(expected.as_bytes())) {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "This form was not sent from the status page.",
        ));
    }
    Ok(())
}

/// Refuses an API call a browser says came from another site.
fn refuse_cross_site(headers: &HeaderMap) -> Result<(), AppError> {
    if cross_site(headers) {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "Cross-site requests are refused.",
        ));
    }
    Ok(())
}

/// Whether a browser says the request came from another site.
pub fn cross_site(headers: &HeaderMap) -> bool {
    // A browser's own word first (scripts cannot set Sec-Fetch-Site). A
    // same-origin form post carries `Origin: null` here, because the pages
    // send `Referrer-Policy: no-referrer`, so Origin cannot decide it.
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some("same-origin") => return false,
        Some("none") | None => {}
        Some(_) => return true,
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        host,
    ) {
        (Some(origin), Some(host)) => {
            let origin_host = origin.split("://").nth(1).unwrap_or(origin);
            origin_host != host
        }
        (Some(_), None) => true,
        (None, _) => false,
    }
}

#[derive(Debug, Deserialize, Default)]
struct ListParams {
    status: Option<String>,
    /// `amocrm` or `kommo`.
    platform: Option<String>,
    sort: Option<String>,
    dir: Option<String>,
    page: Option<String>,
}

impl ListParams {
    fn query(&self) -> ListQuery {
        ListQuery::parse(
            self.status.as_deref(),
            self.platform.as_deref(),
            self.sort.as_deref(),
            self.dir.as_deref(),
            self.page.as_deref(),
        )
    }
}

/// Runs an action; returns a short message of what was done. `lang` is
/// the language action's choice (`ru`, `en`, `es`, `pt`; empty or `auto`:
/// by the account's domain).
async fn act(
    state: &AppState,
    id: i64,
    action: &str,
    lang: Option<&str>,
) -> Result<String, AppError> {
    sqlx::query_scalar!("select account_id from accounts where account_id = $1", id)
        .fetch_optional(&state.pool)
        .await?
        .ok_or_else(|| AppError::not_found("No such account."))?;
    match action {
        "retry" => {
            let retried = crate::delivery::requeue_failed(&state.pool, id).await?;
            tracing::info!(account.id = id, retried, "failed events queued again");
            Ok(format!("retried {retried}"))
        }
        "resubscribe" => match state
            .installer
            .resubscribe(&state.tokens, id)
            .await
            .map_err(AppError::internal)?
        {
            None => Ok("subscribed".into()),
            Some(reason) => Err(AppError::new(StatusCode::BAD_GATEWAY, reason)),
        },
        "language" => {
            let chosen = match lang.map(str::trim) {
                None => {
                    return Err(AppError::bad_request(
                        "lang is required: ru, en, es, pt, or auto",
                    ))
                }
                Some("" | "auto") => None,
                Some(code) => Some(
                    crate::notes::Lang::parse(code)
                        .filter(|l| l.as_str() == code)
                        .ok_or_else(|| {
                            AppError::bad_request("lang must be ru, en, es, pt, or auto")
                        })?,
                ),
            };
            let mut current = store::current(&state.pool, id)
                .await?
                .ok_or_else(|| AppError::not_found("No such account."))?;
            current.settings.lang = chosen.map(|l| l.as_str().to_owned());
            store::save(&state.pool, id, current.settings, "admin", None).await?;
            tracing::info!(
                account.id = id,
                lang = chosen.map(|l| l.as_str()),
                "note language set by an admin"
            );
            Ok(match chosen {
                Some(lang) => format!("notes of hooks from now on in {}", lang.name()),
                None => "notes of hooks from now on in the account's default language".into(),
            })
        }
        "check-hook" => {
            let found = state
                .installer
                .check_hook(&state.tokens, id)
                .await
                .map_err(|e| {
                    AppError::new(
                        StatusCode::BAD_GATEWAY,
                        format!("amoCRM could not be asked: {e}"),
                    )
                })?;
            Ok(found.as_str().replace('_', " "))
        }
        "rotate-hook-key" => match state
            .installer
            .rotate_hook_key(&state.tokens, id, state.settings.security.old_hook_key_for)
            .await
            .map_err(AppError::internal)?
        {
            None => Ok("new hook key subscribed; the old one works for the grace period".into()),
            Some(reason) => Err(AppError::new(StatusCode::BAD_GATEWAY, reason)),
        },
        "pause" | "resume" => {
            sqlx::query!(
                "update accounts set manual_pause = $2 where account_id = $1",
                id,
                action == "pause",
            )
            .execute(&state.pool)
            .await?;
            tracing::info!(account.id = id, action, "delivery {action}d by an admin");
            Ok(format!("{action}d"))
        }
        _ => Err(AppError::not_found("No such action.")),
    }
}
