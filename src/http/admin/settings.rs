//! An account's note settings in the admin API: read, change (with the
//! version as an ETag, so two editors cannot overwrite each other
//! unknowingly) and preview.

use axum::{
    extract::{rejection::JsonRejection, Path, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;

use super::{refuse_cross_site, Admin};
use crate::{
    account_settings::{preview, store, NoteSettings},
    http::{error::AppError, AppState},
};

pub(super) async fn get_settings(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    described(&state.pool, id).await
}

pub(super) async fn put_settings(
    _: Admin,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Result<Json<NoteSettings>, JsonRejection>,
) -> Result<Response, AppError> {
    refuse_cross_site(&headers)?;
    let expected = if_match(&headers)?;
    let Json(settings) = body.map_err(unreadable)?;
    store::save(&state.pool, id, settings, "admin", expected).await?;
    described(&state.pool, id).await
}

/// A preview's request: settings not yet saved (else the saved ones), and
/// the event to render (else the account's latest).
#[derive(Debug, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct PreviewRequest {
    settings: Option<NoteSettings>,
    event_id: Option<i64>,
}

pub(super) async fn preview_settings(
    _: Admin,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Result<Json<PreviewRequest>, JsonRejection>,
) -> Result<Response, AppError> {
    refuse_cross_site(&headers)?;
    let Json(request) = body.map_err(unreadable)?;
    let settings = match request.settings {
        Some(draft) => draft.checked().map_err(|e| {
            AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("Settings not valid: {e}."),
            )
        })?,
        None => {
            store::current(&state.pool, id)
                .await?
                .ok_or_else(|| AppError::not_found("No such account."))?
                .settings
        }
    };
    let shown = preview::preview(
        &state.pool,
        id,
        request.event_id,
        &settings,
        state.settings.notes.timezone,
    )
    .await?
    .ok_or_else(|| AppError::not_found("No such account, or no such event of it to preview."))?;
    Ok(Json(shown).into_response())
}

/// The account's settings as the API shows them, with the version as ETag.
async fn described(pool: &PgPool, id: i64) -> Result<Response, AppError> {
    let current = store::current(pool, id)
        .await?
        .ok_or_else(|| AppError::not_found("No such account."))?;
    let skipped = store::filtered_counts(pool, id).await?;
    let etag =
        HeaderValue::from_str(&format!("\"{}\"", current.version)).map_err(AppError::internal)?;
    Ok((
        [(header::ETAG, etag)],
        Json(json!({
            "version": current.version,
            "saved_at": current.saved_at,
            "saved_by": current.saved_by,
            "settings": current.settings,
            "skipped_by_filter": skipped,
        })),
    )
        .into_response())
}

/// The version a change was made against: `If-Match: "3"` (None without
/// the header, or with `*`).
fn if_match(headers: &HeaderMap) -> Result<Option<i32>, AppError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    text.trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map(Some)
        .map_err(|_| {
            AppError::bad_request(
                "If-Match must be the settings' ETag, the version in quotes (\"3\").",
            )
        })
}

/// A body that is not settings: its status (400 for broken JSON, 415
/// without a JSON content type, 422 for a wrong or unknown setting) with
/// serde's words, which name the setting and never echo a secret.
fn unreadable(rejection: JsonRejection) -> AppError {
    AppError::new(
        rejection.status(),
        format!("The body is not settings: {}.", rejection.body_text()),
    )
}
