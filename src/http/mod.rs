//! The HTTP side: one router, its layers, and the shared state.

pub mod admin;
pub mod error;
mod health;
pub mod hooks;
pub mod i18n;
mod oauth;
pub mod pages;
pub mod server;
mod tenant;

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{DefaultBodyLimit, FromRef, MatchedPath},
    http::{header, HeaderValue, Request},
    routing::get,
    Router,
};
use sqlx::PgPool;
use tower::ServiceBuilder;
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    timeout::TimeoutLayer,
    trace::{DefaultOnResponse, TraceLayer},
};

use crate::{
    amocrm::AmoApi, config::Settings, crypto::Cipher, delivery::Worker, install::Installer,
    stats::Receipts, tokens::TokenStore,
};
use metrics_exporter_prometheus::PrometheusHandle;

/// The application's shared parts. Each handler takes only the parts it
/// needs (`State<Intake>`, `State<PgPool>`, ...: axum's `FromRef`, one impl
/// per field). axum clones the whole state for every request, so every
/// field is cheap to clone: reference-counted, never copied (a profile of
/// the ingest found the copies of the client's and installer's strings in
/// every hook's answer).
#[derive(Clone, FromRef)]
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    pub api: Arc<AmoApi>,
    pub cipher: Arc<Cipher>,
    pub tokens: Arc<TokenStore>,
    pub installer: Arc<Installer>,
    pub worker: Arc<Worker>,
    pub intake: Intake,
    pub metrics: PrometheusHandle,
    /// `amohook sandbox` only: the panel an outer layer adds to each
    /// account's page. None in `serve`.
    pub panel: Option<Arc<dyn AccountPanel>>,
}

/// A panel an outer layer (`amohook sandbox`) adds to each account's page.
pub trait AccountPanel: Send + Sync {
    /// The panel's HTML for account `account_id` at `domain`, in `lang`;
    /// its forms carry the page's `csrf` token.
    fn render(&self, account_id: i64, domain: &str, csrf: &str, lang: &str) -> String;
}

/// What hook intake uses, and nothing else does.
#[derive(Clone)]
pub struct Intake {
    /// Intake's own connections for account lookups (see
    /// `db::LOOKUP_CONNECTIONS`); the inbox has its own for storing.
    pub lookups: PgPool,
    /// Accounts by hook key.
    pub accounts: Arc<crate::accounts::keys::KeyCache>,
    pub inbox: crate::inbox::Inbox,
    /// Hook counts per account, written once a second.
    pub receipts: Arc<Receipts>,
    /// Hooks being received now; delivery steps back while there are many.
    pub in_flight: Arc<crate::hooks_in_flight::HooksInFlight>,
}

/// Bodies larger than this are refused with 413 on every route.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// A request that takes longer than this is answered 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The application's routes, with `extra` (an outer layer's) among them.
pub fn router(state: AppState, extra: Option<Router<AppState>>) -> Router {
    let request_id = header::HeaderName::from_static("x-request-id");
    let mut routes = Router::new()
        .merge(oauth::router())
        .merge(hooks::router())
        .merge(admin::router())
        .merge(tenant::router())
        .merge(health::router())
        .route("/static/style.css", get(pages::stylesheet));
    if let Some(extra) = extra {
        routes = routes.merge(extra);
    }
    routes
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    // The span names the route pattern, never the URI: query
                    // strings carry codes and signatures, and hook paths
                    // carry hook keys.
                    TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                        let route = req
                            .extensions()
                            .get::<MatchedPath>()
                            .map(MatchedPath::as_str)
                            .unwrap_or("unmatched");
                        let id = req
                            .extensions()
                            .get::<RequestId>()
                            .and_then(|id| id.header_value().to_str().ok())
                            .unwrap_or_default();
                        tracing::info_span!("request", method = %req.method(), route, request_id = id)
                    })
                    // One line per request at info: status and latency.
                    .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(TimeoutLayer::with_status_code(
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    REQUEST_TIMEOUT,
                ))
                .layer(DefaultBodyLimit::max(BODY_LIMIT))
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ))
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(
                        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
                    ),
                ))
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                )),
        )
}
