//! The JSON admin API.

use axum::{
    extract::{Path, Query, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;
use serde_json::json;

use super::{act, refuse_cross_site, Admin, ListParams};
use crate::{
    http::{error::AppError, AppState},
    inbox::EventState,
    stats::{self, PAGE_SIZE},
};

pub(super) async fn api_accounts(
    _: Admin,
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Response, AppError> {
    let q = params.query();
    let (rows, total) = stats::list(&state.pool, &q).await?;
    Ok(Json(json!({
        "accounts": rows,
        "page": q.page,
        "per_page": PAGE_SIZE,
        "total": total,
        "sort": q.sort,
        "dir": if q.descending { "desc" } else { "asc" },
        "status": q.status,
    }))
    .into_response())
}

pub(super) async fn api_account(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let row = stats::one(&state.pool, id)
        .await?
        .ok_or_else(|| AppError::not_found("No such account."))?;
    Ok(Json(row).into_response())
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct EventParams {
    state: Option<String>,
    limit: Option<i64>,
}

pub(super) async fn api_events(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(params): Query<EventParams>,
) -> Result<Response, AppError> {
    stats::one(&state.pool, id)
        .await?
        .ok_or_else(|| AppError::not_found("No such account."))?;
    let wanted = params
        .state
        .as_deref()
        .map(str::parse::<EventState>)
        .transpose()
        .map_err(AppError::bad_request)?;
    let events = stats::events(&state.pool, id, wanted, params.limit.unwrap_or(100)).await?;
    Ok(Json(json!({ "events": events })).into_response())
}

/// The language action's choice: `?lang=pt`.
#[derive(Debug, Deserialize, Default)]
pub(super) struct ActionParams {
    lang: Option<String>,
}

pub(super) async fn api_action(
    _: Admin,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(i64, String)>,
    Query(params): Query<ActionParams>,
) -> Result<Response, AppError> {
    refuse_cross_site(&headers)?;
    let message = act(&state, id, &action, params.lang.as_deref()).await?;
    Ok(Json(json!({ "status": 200, "message": message })).into_response())
}
