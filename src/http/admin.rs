//! The admin side: the status page, an account's page and its actions, the
//! JSON admin API, and /metrics. All behind `admin.token`.

use askama::Template;
use axum::{
    extract::{FromRequestParts, Path, Query, State},
    http::{header, request::Parts, HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Form, Json, Router,
};
use base64::Engine as _;
use chrono::Utc;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use super::{
    error::{AppError, PageError},
    i18n::{self, Texts},
    pages::Page,
    AppState,
};
use crate::{
    inbox::EventState,
    stats::{self, AccountRow, EventRow, ListQuery, StatusFilter, PAGE_SIZE, SORTS},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/status") }))
        .route("/status", get(status_page))
        .route("/status/accounts/{id}", get(account_page))
        .route("/status/accounts/{id}/{action}", post(account_action_form))
        .route("/api/accounts", get(api_accounts))
        .route("/api/accounts/{id}", get(api_account))
        .route("/api/accounts/{id}/events", get(api_events))
        .route("/api/accounts/{id}/{action}", post(api_action))
        .route("/metrics", get(metrics))
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
fn csrf_token(state: &AppState, account_id: i64) -> String {
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

fn cross_site(headers: &HeaderMap) -> bool {
    let site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none");
    if !matches!(site, "same-origin" | "none") {
        return true;
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
    sort: Option<String>,
    dir: Option<String>,
    page: Option<String>,
}

impl ListParams {
    fn query(&self) -> ListQuery {
        ListQuery::parse(
            self.status.as_deref(),
            self.sort.as_deref(),
            self.dir.as_deref(),
            self.page.as_deref(),
        )
    }
}

struct RowView {
    account_id: i64,
    domain: String,
    name: String,
    status: String,
    status_word: &'static str,
    status_reason: String,
    connected_rel: String,
    connected_abs: String,
    expires_rel: String,
    expires_abs: String,
    hooks_24h: i64,
    hooks_total: i64,
    delivered: i64,
    pending: i64,
    failed: i64,
    last_hook_rel: String,
    last_hook_abs: String,
    last_error: String,
    last_error_rel: String,
    last_error_abs: String,
}

impl RowView {
    fn new(r: &AccountRow, t: &Texts) -> RowView {
        let now = Utc::now();
        let reason = match r.display_status.as_str() {
            "paused" => r.pause_reason.clone().unwrap_or_default(),
            "active" => String::new(),
            _ => r.status_reason.clone().unwrap_or_default(),
        };
        RowView {
            account_id: r.account_id,
            domain: r.domain.clone(),
            name: r.name.clone(),
            status: r.display_status.clone(),
            status_word: t.status_word(&r.display_status),
            status_reason: reason,
            connected_rel: t.relative(Some(r.connected_at), now),
            connected_abs: i18n::absolute(Some(r.connected_at)),
            expires_rel: t.relative(r.token_expires_at, now),
            expires_abs: i18n::absolute(r.token_expires_at),
            hooks_24h: r.hooks_24h,
            hooks_total: r.hooks_total,
            delivered: r.delivered,
            pending: r.pending,
            failed: r.failed,
            last_hook_rel: t.relative(r.last_hook_at, now),
            last_hook_abs: i18n::absolute(r.last_hook_at),
            last_error: r
                .last_error
                .as_deref()
                .map(|e| e.chars().take(120).collect())
                .or_else(|| r.webhooks_error.clone())
                .unwrap_or_default(),
            last_error_rel: if r.last_error_at.is_some() {
                t.relative(r.last_error_at, now)
            } else {
                String::new()
            },
            last_error_abs: i18n::absolute(r.last_error_at),
        }
    }
}

struct SortLink {
    key: &'static str,
    label: &'static str,
    href: String,
    arrow: &'static str,
}

struct FilterLink {
    label: &'static str,
    href: String,
    current: bool,
    count: i64,
}

#[derive(Template)]
#[template(path = "status.html")]
struct StatusPage {
    t: &'static Texts,
    totals: stats::Totals,
    rows: Vec<RowView>,
    sorts: Vec<SortLink>,
    filters: Vec<FilterLink>,
    page: i64,
    pages: i64,
    previous: Option<String>,
    next: Option<String>,
    hook_pattern: String,
}

fn list_href(status: Option<StatusFilter>, sort: &str, descending: bool, page: i64) -> String {
    let mut href = format!(
        "/status?sort={sort}&dir={}",
        if descending { "desc" } else { "asc" }
    );
    if let Some(s) = status {
        href.push_str(&format!("&status={}", s.as_str()));
    }
    if page > 1 {
        href.push_str(&format!("&page={page}"));
    }
    href
}

async fn status_page(
    _: Admin,
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Result<Response, PageError> {
    let t = i18n::texts(&headers);
    let q = params.query();
    let (rows, total) = stats::list(&state.pool, &q).await?;
    let totals = stats::totals(&state.pool).await?;
    let labels = [
        t.domain,
        t.account_id,
        t.status,
        t.connected_since,
        t.token_expires,
        t.hooks_24h,
        t.hooks_total,
        t.delivered,
        t.pending,
        t.failed,
        t.last_hook,
    ];
    let sorts = SORTS
        .iter()
        .zip(labels)
        .map(|((key, _), label)| {
            let current = q.sort == *key;
            // A click on the current column flips the order.
            let descending = current && !q.descending;
            SortLink {
                key,
                label,
                href: list_href(q.status, key, descending, 1),
                arrow: match (current, q.descending) {
                    (true, false) => "▲",
                    (true, true) => "▼",
                    _ => "",
                },
            }
        })
        .collect();
    let counts = [
        totals.active,
        totals.paused,
        totals.reauth_required,
        totals.disconnected,
    ];
    let mut filters = vec![FilterLink {
        label: t.all,
        href: list_href(None, q.sort, q.descending, 1),
        current: q.status.is_none(),
        count: totals.accounts,
    }];
    for (filter, count) in StatusFilter::ALL.into_iter().zip(counts) {
        filters.push(FilterLink {
            label: t.status_word(filter.as_str()),
            href: list_href(Some(filter), q.sort, q.descending, 1),
            current: q.status == Some(filter),
            count,
        });
    }
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let page = StatusPage {
        t,
        rows: rows.iter().map(|r| RowView::new(r, t)).collect(),
        totals,
        sorts,
        filters,
        page: q.page,
        pages,
        previous: (q.page > 1).then(|| list_href(q.status, q.sort, q.descending, q.page - 1)),
        next: (q.page < pages).then(|| list_href(q.status, q.sort, q.descending, q.page + 1)),
        hook_pattern: format!("{}/hooks/{{hook_key}}", state.settings.http.public_url),
    };
    Ok(Page(StatusCode::OK, page).into_response())
}

struct EventView {
    event_id: i64,
    card: String,
    action: String,
    state: String,
    attempts: i32,
    received_rel: String,
    received_abs: String,
    finished_rel: String,
    finished_abs: String,
    text: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    t: &'static Texts,
    row: RowView,
    subscribed: bool,
    timezone: String,
    manual_pause: bool,
    paused_until: String,
    events: Vec<EventView>,
    csrf: String,
    done: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct Done {
    done: Option<String>,
}

async fn account_page(
    _: Admin,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    let t = i18n::texts(&headers);
    let row = stats::one(&state.pool, id)
        .await?
        .ok_or_else(|| AppError::not_found("No such account."))?;
    let events = stats::events(&state.pool, id, None, 100).await?;
    let now = Utc::now();
    let events = events
        .iter()
        .map(|e: &EventRow| EventView {
            event_id: e.event_id,
            card: format!("{} #{}", e.entity_type.as_str(), e.entity_id),
            action: e.action.as_str().to_owned(),
            state: e.state.as_str().to_owned(),
            attempts: e.attempts,
            received_rel: t.relative(Some(e.received_at), now),
            received_abs: i18n::absolute(Some(e.received_at)),
            finished_rel: if e.finished_at.is_some() {
                t.relative(e.finished_at, now)
            } else {
                String::new()
            },
            finished_abs: i18n::absolute(e.finished_at),
            text: match e.state {
                EventState::Delivered | EventState::Pending | EventState::Sending
                    if e.last_error.is_none() =>
                {
                    e.note_text.clone().unwrap_or_default()
                }
                _ => e
                    .last_error
                    .clone()
                    .or_else(|| e.note_text.clone())
                    .unwrap_or_default(),
            },
        })
        .collect();
    let page = AccountPage {
        t,
        subscribed: row.webhooks_subscribed,
        timezone: row.timezone.clone().unwrap_or_else(|| "—".into()),
        manual_pause: row.manual_pause,
        paused_until: if row.paused_until.is_some_and(|p| p > now) {
            i18n::absolute(row.paused_until)
        } else {
            String::new()
        },
        row: RowView::new(&row, t),
        events,
        csrf: csrf_token(&state, id),
        done: done.done.filter(|d| d.len() < 100),
    };
    Ok(Page(StatusCode::OK, page).into_response())
}

#[derive(Debug, Deserialize)]
struct ActionForm {
    csrf: String,
}

async fn account_action_form(
    _: Admin,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(i64, String)>,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    let expected = csrf_token(&state, id);
    if cross_site(&headers) || !bool::from(form.csrf.as_bytes().ct_eq(expected.as_bytes())) {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "This form was not sent from the status page.",
        )
        .into());
    }
    let message = act(&state, id, &action).await?;
    Ok(Redirect::to(&format!(
        "/status/accounts/{id}?done={}",
        url::form_urlencoded::byte_serialize(message.as_bytes()).collect::<String>()
    ))
    .into_response())
}

/// Runs an action; returns a short message of what was done.
async fn act(state: &AppState, id: i64, action: &str) -> Result<String, AppError> {
    sqlx::query_scalar::<_, i64>("select account_id from accounts where account_id = $1")
        .bind(id)
        .fetch_optional(&state.pool)
        .await?
        .ok_or_else(|| AppError::not_found("No such account."))?;
    match action {
        "retry" => {
            let retried = sqlx::query(
                "update hook_events set state = 'pending', attempts = 0, first_failure_at = null,
                     next_attempt_at = now(), finished_at = null, last_error = null
                 where account_id = $1 and state = 'failed'",
            )
            .bind(id)
            .execute(&state.pool)
            .await?
            .rows_affected();
            let _ = sqlx::query("select pg_notify($1, $2)")
                .bind(crate::listen::EVENTS)
                .bind(id.to_string())
                .execute(&state.pool)
                .await;
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
        "pause" | "resume" => {
            sqlx::query("update accounts set manual_pause = $2 where account_id = $1")
                .bind(id)
                .bind(action == "pause")
                .execute(&state.pool)
                .await?;
            tracing::info!(account.id = id, action, "delivery {action}d by an admin");
            Ok(format!("{action}d"))
        }
        _ => Err(AppError::not_found("No such action.")),
    }
}

async fn api_accounts(
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

async fn api_account(
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
struct EventParams {
    state: Option<String>,
    limit: Option<i64>,
}

async fn api_events(
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

async fn api_action(
    _: Admin,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(i64, String)>,
) -> Result<Response, AppError> {
    if cross_site(&headers) {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "Cross-site requests are refused.",
        ));
    }
    let message = act(&state, id, &action).await?;
    Ok(Json(json!({ "status": 200, "message": message })).into_response())
}

/// Prometheus text format. Gauges that describe the queue are read from
/// the database at scrape time, so every process reports the same queue.
async fn metrics(_: Admin, State(state): State<AppState>) -> Response {
    let queue: Result<Vec<(String, i64)>, _> = sqlx::query_as(
        "select state, count(*) from hook_events where state in ('pending', 'sending', 'failed') group by state",
    )
    .fetch_all(&state.pool)
    .await;
    let oldest: Result<Option<f64>, _> = sqlx::query_scalar(
        "select extract(epoch from now() - min(received_at))::float8 from hook_events
         where state in ('pending', 'sending')",
    )
    .fetch_one(&state.pool)
    .await;
    if let (Ok(queue), Ok(oldest)) = (queue, oldest) {
        for s in ["pending", "sending", "failed"] {
            let n = queue
                .iter()
                .find(|(k, _)| k == s)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            metrics::gauge!("amohook_events", "state" => s).set(n as f64);
        }
        let depth: i64 = queue
            .iter()
            .filter(|(k, _)| k != "failed")
            .map(|(_, n)| n)
            .sum();
        metrics::gauge!("amohook_queue_depth").set(depth as f64);
        metrics::gauge!("amohook_oldest_pending_age_seconds").set(oldest.unwrap_or(0.0));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
