//! An account's own page (`/my`), for its administrators, opened from
//! inside amoCRM: the widget asks `POST /widget/session` with amoCRM's
//! `X-Auth-Token`, gets a one-minute single-use link, and the link sets a
//! session cookie for that account alone (`crate::tenant`). The page shows
//! the hook's health, the settings form with its preview, the latest notes
//! and the failed ones with a retry button. Every handler takes the account
//! from the session: no URL names an account.

use std::time::Duration;

use axum::{
    extract::{rejection::FormRejection, Query, State},
    http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Form, Json, Router,
};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq as _;
use tower_http::cors::{Any, CorsLayer};

use super::{
    error::{AppError, PageError},
    pages::Page,
    AppState,
};
use crate::{
    account_settings::{preview, store, NoteSettings},
    tenant::{self, AdmitError, Refused, Session},
};

mod page;
mod texts;
mod wrong;

use page::{MyPage, SettingsForm};

/// The session cookie: the account's pages only, never sent cross-site
/// by a browser's form or script.
const COOKIE: &str = "amohook_my";

pub fn router() -> Router<AppState> {
    // amoCRM's page calls this from its own origin, with the token in a
    // header (so a preflight). Nothing else of amohook answers cross-site,
    // and no cookie is involved here: any origin may ask; only the token
    // proves anything.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::POST])
        .allow_headers([
            HeaderName::from_static("x-auth-token"),
            header::CONTENT_TYPE,
        ])
        .max_age(Duration::from_secs(600));
    Router::new()
        .route("/widget/session", post(widget_session).layer(cors))
        .route("/my/enter", get(enter))
        .route("/my", get(my_page))
        .route("/my/settings", post(save_settings))
        .route("/my/preview", post(preview_settings))
        .route("/my/retry", post(retry))
}

impl From<Refused> for AppError {
    fn from(refused: Refused) -> AppError {
        let status = match refused {
            Refused::NotAdmin => StatusCode::FORBIDDEN,
            Refused::NotConnected => StatusCode::NOT_FOUND,
            Refused::Invalid(_) | Refused::Replayed | Refused::BadLink | Refused::NoSession => {
                StatusCode::UNAUTHORIZED
            }
        };
        AppError::new(status, refused.to_string())
    }
}

impl From<AdmitError> for AppError {
    fn from(e: AdmitError) -> AppError {
        match e {
            AdmitError::Refused(refused) => refused.into(),
            AdmitError::Db(e) => e.into(),
        }
    }
}

/// `POST /widget/session` with `X-Auth-Token`: `{"url": …}`, the account
/// page's entry link.
async fn widget_session(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let token = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .ok_or(Refused::Invalid(
            "no X-Auth-Token: call through the widget's $authorizedAjax",
        ))?;
    let integrations = state.api.integrations();
    let user = tenant::verify(integrations, token, Utc::now().timestamp())?;
    let link = tenant::admit(&state.pool, &state.cipher, &user).await?;
    tracing::info!(
        account.id = user.account_id,
        user.id = user.user_id,
        "account page opened from amoCRM"
    );
    let url = format!("{}/my/enter?t={link}", state.settings.http.public_url);
    Ok(Json(json!({ "url": url, "expires_in": tenant::LINK_SECONDS })).into_response())
}

#[derive(Debug, Deserialize)]
struct EnterParams {
    t: String,
}

/// `GET /my/enter?t=…`: spends the link, sets the session, goes to `/my`.
async fn enter(
    State(state): State<AppState>,
    Query(params): Query<EnterParams>,
) -> Result<Response, PageError> {
    let (_, sealed) = tenant::enter(&state.pool, &state.cipher, &params.t)
        .await
        .map_err(AppError::from)?;
    let secure = if state.settings.http.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={sealed}; Path=/my; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        tenant::SESSION_HOURS * 3600
    );
    let cookie = HeaderValue::from_str(&cookie).map_err(AppError::internal)?;
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/my")).into_response())
}

/// The session of the request's cookie.
fn session(state: &AppState, headers: &HeaderMap) -> Result<Session, AppError> {
    let sealed = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .ok_or(Refused::NoSession)?;
    Ok(tenant::session(&state.cipher, sealed)?)
}

fn check_csrf(state: &AppState, session: &Session, given: &str) -> Result<(), AppError> {
    let expected = tenant::csrf(&state.cipher, session);
    if bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        Ok(())
    } else {
        Err(AppError::new(
            StatusCode::FORBIDDEN,
            "The form is out of date: reload the page and try again.",
        ))
    }
}

#[derive(Debug, Deserialize, Default)]
struct Done {
    done: Option<String>,
}

async fn my_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    let session = session(&state, &headers)?;
    let page = MyPage::load(&state, &headers, &session).await?;
    let t = page.t;
    let page = match done.done.as_deref() {
        Some("saved") => page.with_message(t.saved),
        Some("retried") => page.with_message(t.retried),
        _ => page,
    };
    Ok(Page(StatusCode::OK, page).into_response())
}

#[derive(Debug, Deserialize)]
struct CsrfOnly {
    csrf: String,
}

async fn retry(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Result<Response, PageError> {
    let session = session(&state, &headers)?;
    let Form(form) = form.map_err(|e| AppError::new(e.status(), e.body_text()))?;
    check_csrf(&state, &session, &form.csrf)?;
    let retried = crate::delivery::requeue_failed(&state.pool, session.account_id).await?;
    tracing::info!(
        account.id = session.account_id,
        user.id = session.user_id,
        retried,
        "failed events queued again by the account"
    );
    Ok(Redirect::to("/my?done=retried").into_response())
}

/// Reads the settings form (checked, as they would be stored), or shows
/// the page again with the form as sent and what is wrong with it (422).
async fn read_form(
    state: &AppState,
    headers: &HeaderMap,
    session: &Session,
    form: Result<Form<SettingsForm>, FormRejection>,
) -> Result<Result<(SettingsForm, NoteSettings), Response>, PageError> {
    let Form(form) = form.map_err(|e| AppError::new(e.status(), e.body_text()))?;
    check_csrf(state, session, &form.csrf)?;
    let wrong = match form.settings() {
        Ok(settings) => return Ok(Ok((form, settings))),
        Err(wrong) => wrong,
    };
    let page = MyPage::load(state, headers, session).await?;
    let error = format!("{} {}.", page.t.not_saved, wrong.say(page.t));
    Ok(Err(Page(
        StatusCode::UNPROCESSABLE_ENTITY,
        page.with_form(&form).with_error(error),
    )
    .into_response()))
}

async fn save_settings(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<SettingsForm>, FormRejection>,
) -> Result<Response, PageError> {
    let session = session(&state, &headers)?;
    let (form, settings) = match read_form(&state, &headers, &session, form).await? {
        Ok(read) => read,
        Err(shown) => return Ok(shown),
    };
    let saved_by = format!("amoCRM user {}", session.user_id);
    match store::save(
        &state.pool,
        session.account_id,
        settings,
        &saved_by,
        Some(form.version),
    )
    .await
    {
        Ok(version) => {
            tracing::info!(
                account.id = session.account_id,
                user.id = session.user_id,
                version,
                "settings saved by the account"
            );
            Ok(Redirect::to("/my?done=saved").into_response())
        }
        Err(store::SaveError::Conflict(_)) => {
            let page = MyPage::load(&state, &headers, &session).await?;
            let error = page.t.conflict.to_owned();
            Ok(Page(
                StatusCode::CONFLICT,
                page.with_form(&form).with_error(error),
            )
            .into_response())
        }
        Err(e) => Err(AppError::from(e).into()),
    }
}

async fn preview_settings(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<SettingsForm>, FormRejection>,
) -> Result<Response, PageError> {
    let session = session(&state, &headers)?;
    let (form, settings) = match read_form(&state, &headers, &session, form).await? {
        Ok(read) => read,
        Err(shown) => return Ok(shown),
    };
    let shown = preview::preview(
        &state.pool,
        session.account_id,
        None,
        &settings,
        state.settings.notes.timezone,
    )
    .await?;
    let page = MyPage::load(&state, &headers, &session).await?;
    Ok(Page(StatusCode::OK, page.with_form(&form).with_preview(shown)).into_response())
}
