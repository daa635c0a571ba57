//! GET /install, GET /oauth/callback, GET|POST /oauth/disable.

mod uninstall;

use std::{collections::HashMap, time::Duration};

use askama::Template;
use axum::{
    body::Bytes,
    extract::{rejection::QueryRejection, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::get,
    Json, Router,
};
use hmac::{Hmac, KeyInit as _, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;

use super::{
    error::{AppError, PageError},
    pages::Page,
    AppState,
};
use crate::{
    install::{InstallError, Installed, PendingInstall, Remembered},
    platform::Platform,
};

/// amoCRM gives a widget install 3 seconds and does not retry; answer well
/// within that and finish in the background when the exchange is slow.
const WIDGET_ANSWER_WITHIN: Duration = Duration::from_millis(2500);
/// How long the answering request holds a widget install before the
/// background retrier may take it: longer than the three calls of an
/// install can take, so one code is never spent twice at once.
const WIDGET_HOLD: Duration = Duration::from_secs(90);
/// How long a widget install waits for a turn at the install gate before
/// it is answered 202 and left to the background retrier.
const WIDGET_WAITS_FOR_GATE: Duration = Duration::from_millis(1500);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/install", get(start_install))
        .route("/oauth/callback", get(callback))
        .route(
            "/oauth/disable",
            get(uninstall::disable).post(uninstall::disable),
        )
}

#[derive(Debug, Deserialize)]
struct InstallQuery {
    /// `amocrm` (the default) or `kommo`.
    platform: Option<String>,
}

/// Sends the browser to the grant page of the platform's integration.
async fn start_install(
    State(state): State<AppState>,
    query: Result<Query<InstallQuery>, QueryRejection>,
) -> Result<Redirect, PageError> {
    let platform = match query.ok().and_then(|Query(q)| q.platform) {
        None => Platform::Amocrm,
        Some(name) => Platform::parse(&name).ok_or_else(|| {
            PageError(
                AppError::bad_request("platform must be amocrm or kommo")
                    .titled("This install link is not valid"),
            )
        })?,
    };
    let integrations = state.api.integrations();
    // amoCRM's page is the default and always answers; Kommo's only when an
    // integration installs there (its own, or the single one registered in
    // Kommo).
    if platform == Platform::Kommo && !integrations.install_platforms().contains(&platform) {
        return Err(PageError(
            AppError::not_found("This service has no Kommo integration.")
                .titled("This install link is not valid"),
        ));
    }
    let oauth_state = state.installer.new_state();
    let url = state
        .api
        .authorize_url(integrations.for_platform(platform), &oauth_state);
    Ok(Redirect::to(url.as_str()))
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    referer: Option<String>,
    state: Option<String>,
    from_widget: Option<String>,
    client_id: Option<String>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "installed.html")]
struct InstalledPage {
    reinstall: bool,
    domain: String,
    name: String,
    account_id: i64,
    webhooks_error: Option<String>,
    hook_url: String,
}

#[derive(Template)]
#[template(path = "install_pending.html")]
struct PendingPage {
    domain: String,
}

impl From<Installed> for InstalledPage {
    fn from(done: Installed) -> Self {
        InstalledPage {
            reinstall: done.reinstall,
            domain: done.account.domain,
            name: done.account.name,
            account_id: done.account.account_id,
            webhooks_error: done.webhooks_error,
            hook_url: done.hook_url.expose_secret().to_owned(),
        }
    }
}

async fn callback(
    State(state): State<AppState>,
    query: Result<Query<CallbackQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let Query(query) = query.map_err(|_| invalid_link("The address amoCRM sent is malformed."))?;
    if query.error.is_some() {
        return Err(invalid_link(
            "Access was not granted in amoCRM, so nothing was connected.",
        ));
    }
    let code = query
        .code
        .filter(|c| !c.is_empty() && c.len() <= 4096)
        .ok_or_else(|| invalid_link("The address has no authorization code."))?;
    // The referer decides where the client secret goes, and which
    // integration's: it is checked before anything is sent anywhere.
    let domain = query
        .referer
        .as_deref()
        .and_then(|r| crate::platform::account_host(r, &state.settings.amocrm.allowed_domains))
        .ok_or_else(|| invalid_link("The address does not come from an amoCRM account."))?;
    let integration = state.api.integrations().for_host(&domain);
    if query
        .client_id
        .as_deref()
        .is_some_and(|id| id != integration.client_id)
    {
        return Err(invalid_link(
            "This install is meant for another integration.",
        ));
    }

    if query.from_widget.is_some() {
        return widget_install(state, domain, code).await;
    }

    // Checked here without a write; used up once the install has a turn.
    let oauth_state = query
        .state
        .filter(|s| !s.is_empty() && s.len() <= 256 && state.installer.state_is_valid(s))
        .ok_or_else(expired_link)?;
    let done = state
        .installer
        .complete(&domain, &code, &oauth_state)
        .await
        .map_err(install_error_page)?;
    Ok(Page(StatusCode::OK, InstalledPage::from(done)).into_response())
}

/// A marketplace widget install: amoCRM's server calls us once, without a
/// state, and waits at most 3 seconds. The code is stored first, so that a
/// slow or failed exchange is retried in the background until the code
/// expires instead of losing the install.
async fn widget_install(
    state: AppState,
    domain: String,
    code: String,
) -> Result<Response, PageError> {
    let install_id = match state
        .installer
        .remember(&domain, &code, WIDGET_HOLD)
        .await?
    {
        Remembered::New(install_id) => install_id,
        Remembered::Seen(earlier) => return Ok(seen_before(earlier)),
        Remembered::HostLimit => {
            tracing::warn!(
                domain,
                "widget install refused: too many codes from this host"
            );
            return Err(host_limit());
        }
        Remembered::QueueFull => {
            tracing::warn!(domain, "widget install refused: too many installs waiting");
            return Err(try_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many installs are waiting at this moment. Please try again in a minute.",
            ));
        }
    };
    let code = SecretString::from(code);
    let installer = state.installer.clone();
    let task_domain = domain.clone();
    let attempt = tokio::spawn(async move {
        installer
            .attempt(install_id, &task_domain, &code, WIDGET_WAITS_FOR_GATE)
            .await
    });
    match tokio::time::timeout(WIDGET_ANSWER_WITHIN, attempt).await {
        Ok(Ok(Ok(done))) => Ok(Page(StatusCode::OK, InstalledPage::from(done)).into_response()),
        Ok(Ok(Err(e @ InstallError::Refused(_)))) => Err(install_error_page(e)),
        // Slow, unavailable, no turn at the gate, or failed on our side: the
        // install is kept and retried in the background.
        _ => Ok(Page(StatusCode::ACCEPTED, PendingPage { domain }).into_response()),
    }
}

/// A widget code that came before is not exchanged again: the answer says
/// what became of it.
fn seen_before(earlier: PendingInstall) -> Response {
    match earlier.state.as_str() {
        "pending" | "done" => Page(
            StatusCode::ACCEPTED,
            PendingPage {
                domain: earlier.referer,
            },
        )
        .into_response(),
        _ => PageError(
            AppError::bad_request("This authorization code was already used.")
                .titled("This install link is not valid"),
        )
        .into_response(),
    }
}

fn host_limit() -> PageError {
    try_later(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many installs for this account in the last minutes. Please try again later.",
    )
}

fn try_later(status: StatusCode, message: &str) -> PageError {
    PageError(
        AppError::new(status, message)
            .titled("amohook cannot take this install now")
            .retry_after(60),
    )
}

fn expired_link() -> PageError {
    invalid_link(
        "This install link has expired or was already used. Start again from the install button.",
    )
}

/// A callback that cannot be an install: 400 with the reason.
fn invalid_link(message: &str) -> PageError {
    PageError(AppError::bad_request(message).titled("This install link is not valid"))
}

fn install_error_page(e: InstallError) -> PageError {
    let not_completed = |message: String| {
        AppError::new(StatusCode::BAD_GATEWAY, message)
            .titled("amoCRM did not complete the connection")
    };
    PageError(match e {
        InstallError::Refused(e) => {
            tracing::warn!(error = %e, "install refused by amoCRM");
            not_completed(format!(
                "amoCRM refused the connection: {e}. Please start the install again from amoCRM."
            ))
        }
        InstallError::Unavailable(e) => {
            tracing::warn!(error = %e, "amoCRM unavailable during install");
            not_completed(
                "amoCRM did not answer in time. Please try the install again in a minute.".into(),
            )
        }
        InstallError::StateUsed => return expired_link(),
        InstallError::HostLimit => {
            tracing::warn!("install refused: too many codes from this host");
            return host_limit();
        }
        InstallError::Busy => {
            tracing::warn!("install refused: no turn at the install gate");
            AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many installs are arriving at this moment. Please try again in a minute.",
            )
            .titled("amoCRM did not complete the connection")
            .retry_after(60)
        }
        InstallError::Internal(e) => AppError::internal(e),
    })
}
