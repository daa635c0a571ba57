//! A fake amoCRM at its HTTP boundary, for the tests and the benchmark.
//!
//! It answers like amoCRM does (see ../shared/reference/amocrm-api.md):
//! problem+json errors, single-use refresh tokens ("Token has been
//! revoked" on reuse), 401 on expired access tokens, 403 to non-admins on
//! admin-only methods, and failures on demand. Every account lives under a
//! path prefix named after its host, so amohook reaches it with
//! `amocrm.api_base_url = http://127.0.0.1:PORT/{domain}`.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{header, HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::any,
    Router,
};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub domain: String,
    pub method: Method,
    pub path: String,
    pub status: u16,
    pub body: String,
}

/// A fault to answer with, instead of the real answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// An HTTP status with amoCRM's body for it (problem+json for 4xx,
    /// HTML for 403 blocks and 5xx).
    Status(u16),
    /// A 400 problem+json with this hint (e.g. "Authorization code has expired").
    Problem { status: u16, hint: String },
    /// Wait this long, then answer normally.
    Delay(Duration),
}

#[derive(Debug, Clone)]
pub struct FakeAccount {
    pub id: i64,
    pub name: String,
    pub timezone: String,
    /// Admin-only methods (webhooks, users) answer 403 when false.
    pub admin: bool,
}

#[derive(Default)]
struct Inner {
    client_id: String,
    client_secret: String,
    accounts: HashMap<String, FakeAccount>,
    /// code -> (domain, used, issued)
    codes: HashMap<String, (String, bool, Instant)>,
    /// access token -> (domain, expires)
    access: HashMap<String, (String, Instant)>,
    /// refresh token -> (domain, used)
    refresh: HashMap<String, (String, bool)>,
    access_ttl: Option<Duration>,
    refreshes: HashMap<String, u32>,
    refresh_reuses: u32,
    webhooks: Vec<(String, Value)>,
    /// (domain, path prefix) -> faults to answer with, in order.
    faults: HashMap<(String, String), Vec<Fault>>,
    seen: Vec<Seen>,
    counter: u64,
}

/// A running fake amoCRM. Stops when dropped.
pub struct FakeAmo {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    stop: CancellationToken,
}

impl Drop for FakeAmo {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

type Shared = Arc<Mutex<Inner>>;

impl FakeAmo {
    /// Starts on a free local port, for an integration with these
    /// credentials.
    pub async fn start(client_id: &str, client_secret: &str) -> std::io::Result<FakeAmo> {
        let inner = Arc::new(Mutex::new(Inner {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            ..Inner::default()
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/{domain}/{*rest}", any(handle))
            .with_state(inner.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await;
        });
        Ok(FakeAmo { addr, inner, stop })
    }

    /// The value for `amocrm.api_base_url`.
    pub fn api_base_url(&self) -> String {
        format!("http://{}/{{domain}}", self.addr)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().expect("fake state"))
    }

    pub fn add_account(&self, domain: &str, account: FakeAccount) {
        self.with(|s| s.accounts.insert(domain.into(), account));
    }

    /// An authorization code for `domain`, as amoCRM would put it in the
    /// redirect after the user grants access.
    pub fn issue_code(&self, domain: &str) -> String {
        self.with(|s| {
            let code = s.next_token("code");
            s.codes
                .insert(code.clone(), (domain.into(), false, Instant::now()));
            code
        })
    }

    /// Lifetime of access tokens issued from now on (default: 24 h).
    pub fn set_access_ttl(&self, ttl: Duration) {
        self.with(|s| s.access_ttl = Some(ttl));
    }

    /// Makes every access token of `domain` expired, as if a day passed.
    pub fn expire_access_tokens(&self, domain: &str) {
        let past = Instant::now();
        self.with(|s| {
            for (d, exp) in s.access.values_mut() {
                if d == domain {
                    *exp = past;
                }
            }
        });
    }

    /// Revokes every refresh token of `domain` (the account turned the
    /// integration off, or the token died of old age).
    pub fn revoke_refresh_tokens(&self, domain: &str) {
        self.with(|s| {
            for (d, used) in s.refresh.values_mut() {
                if d == domain {
                    *used = true;
                }
            }
        });
    }

    /// Successful refreshes for `domain`.
    pub fn refreshes(&self, domain: &str) -> u32 {
        self.with(|s| s.refreshes.get(domain).copied().unwrap_or(0))
    }

    /// Refresh tokens presented a second time (the mistake amoCRM punishes).
    pub fn refresh_reuses(&self) -> u32 {
        self.with(|s| s.refresh_reuses)
    }

    /// Web-hook subscriptions made: (domain, request body).
    pub fn webhooks(&self) -> Vec<(String, Value)> {
        self.with(|s| s.webhooks.clone())
    }

    /// Every request seen so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.with(|s| s.seen.clone())
    }

    /// Answers the next `n` requests to `domain` whose path starts with
    /// `path_prefix` (e.g. "/api/v4/webhooks") with `fault`.
    pub fn fail_next(&self, domain: &str, path_prefix: &str, fault: Fault, n: usize) {
        self.with(|s| {
            s.faults
                .entry((domain.into(), path_prefix.into()))
                .or_default()
                .extend(std::iter::repeat_n(fault, n))
        });
    }
}

impl Inner {
    fn next_token(&mut self, kind: &str) -> String {
        self.counter += 1;
        format!("{kind}-{}-{:016x}", self.counter, rand::random::<u64>())
    }

    fn take_fault(&mut self, domain: &str, path: &str) -> Option<Fault> {
        let key = self
            .faults
            .keys()
            .find(|(d, p)| d == domain && path.starts_with(p.as_str()))
            .cloned()?;
        let list = self.faults.get_mut(&key)?;
        let fault = (!list.is_empty()).then(|| list.remove(0));
        if list.is_empty() {
            self.faults.remove(&key);
        }
        fault
    }

    fn issue_pair(&mut self, domain: &str) -> Value {
        let ttl = self.access_ttl.unwrap_or(Duration::from_secs(86_400));
        let access = self.next_token("access");
        let refresh = self.next_token("refresh");
        self.access
            .insert(access.clone(), (domain.into(), Instant::now() + ttl));
        self.refresh.insert(refresh.clone(), (domain.into(), false));
        json!({
            "token_type": "Bearer",
            "expires_in": ttl.as_secs(),
            "server_time": chrono::Utc::now().timestamp(),
            "access_token": access,
            "refresh_token": refresh,
        })
    }
}

fn problem(status: u16, title: &str, detail: &str, hint: Option<&str>) -> Response {
    let mut body = json!({
        "title": title,
        "type": "https://developers.amocrm.ru/v3/errors/OAuthProblemJson",
        "status": status,
        "detail": detail,
    });
    if let Some(hint) = hint {
        body["hint"] = hint.into();
    }
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn html(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        [(header::CONTENT_TYPE, "text/html")],
        format!(
            "<html><head><title>{code}</title></head><body><center><h1>{code}</h1></center><hr><center>nginx</center></body></html>"
        ),
    )
        .into_response()
}

fn json_ok(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/hal+json")],
        body.to_string(),
    )
        .into_response()
}

fn token_ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn fault_response(fault: &Fault) -> Option<Response> {
    match fault {
        Fault::Status(429) => {
            Some((StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response())
        }
        Fault::Status(s @ 400..=499) if *s != 403 => {
            Some(problem(*s, "Bad Request", "Request failed", None))
        }
        Fault::Status(s) => Some(html(*s)),
        Fault::Problem { status, hint } => Some(problem(
            *status,
            "Некорректный запрос",
            "В запросе отсутствует ряд параметров или параметры невалидны",
            Some(hint),
        )),
        Fault::Delay(_) => None,
    }
}

async fn handle(
    State(shared): State<Shared>,
    Path((domain, _rest)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path()
        .strip_prefix(&format!("/{domain}"))
        .unwrap_or("")
        .to_owned();
    let fault = shared
        .lock()
        .expect("fake state")
        .take_fault(&domain, &path);
    if let Some(Fault::Delay(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let response = match fault.as_ref().and_then(fault_response) {
        Some(r) => r,
        None => route(
            &shared,
            &domain,
            &method,
            &path,
            uri.query(),
            &headers,
            &body,
        ),
    };
    shared.lock().expect("fake state").seen.push(Seen {
        at: Instant::now(),
        domain,
        method,
        path,
        status: response.status().as_u16(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    response
}

fn route(
    shared: &Shared,
    domain: &str,
    method: &Method,
    path: &str,
    _query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let mut s = shared.lock().expect("fake state");
    if !s.accounts.contains_key(domain) {
        return html(404);
    }
    if path == "/oauth2/access_token" && method == Method::POST {
        return token_endpoint(&mut s, domain, headers, body);
    }
    // Everything else needs a live access token of this account.
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    match s.access.get(bearer) {
        Some((d, exp)) if d == domain && *exp > Instant::now() => {}
        _ => return problem(401, "Unauthorized", "Authorization is required", None),
    }
    let account = s.accounts[domain].clone();
    match (method.as_str(), path) {
        ("GET", "/api/v4/account") => json_ok(
            StatusCode::OK,
            json!({
                "id": account.id,
                "name": account.name,
                "subdomain": domain.split('.').next().unwrap_or_default(),
                "_embedded": {"datetime_settings": {
                    "date_pattern": "d.m.Y H:i", "time_format": "H:i:s",
                    "timezone": account.timezone, "timezone_offset": "+03:00"
                }}
            }),
        ),
        ("POST", "/api/v4/webhooks") => {
            if !account.admin {
                return problem(403, "Forbidden", "Access denied", None);
            }
            let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let destination = request["destination"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if !destination.starts_with("http") {
                return problem(400, "Bad Request", "Request validation failed", None);
            }
            s.webhooks.push((domain.into(), request.clone()));
            json_ok(
                StatusCode::OK,
                json!({"id": s.webhooks.len(), "destination": destination, "account_id": account.id,
                       "disabled": false, "settings": request["settings"], "sort": 1}),
            )
        }
        _ => html(404),
    }
}

fn token_endpoint(s: &mut Inner, domain: &str, headers: &HeaderMap, body: &Bytes) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    let params: HashMap<String, String> = if json {
        serde_json::from_slice::<HashMap<String, Value>>(body)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
            .collect()
    } else {
        url::form_urlencoded::parse(body).into_owned().collect()
    };
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    if get("client_id") != s.client_id || get("client_secret") != s.client_secret {
        return problem(
            401,
            "Некорректный клиент",
            "Авторизация клиента не прошла",
            None,
        );
    }
    match get("grant_type") {
        "authorization_code" => {
            let code = get("code").to_owned();
            match s.codes.get_mut(&code) {
                Some((d, used, issued)) if d == domain => {
                    if *used {
                        return problem(
                            400,
                            "Некорректный запрос",
                            "В запросе отсутствует ряд параметров или параметры невалидны",
                            Some("Authorization code has been revoked"),
                        );
                    }
                    if issued.elapsed() > Duration::from_secs(20 * 60) {
                        return problem(
                            400,
                            "Некорректный запрос",
                            "В запросе отсутствует ряд параметров или параметры невалидны",
                            Some("Authorization code has expired"),
                        );
                    }
                    *used = true;
                    token_ok(s.issue_pair(domain))
                }
                _ => problem(
                    400,
                    "Некорректный запрос",
                    "В запросе отсутствует ряд параметров или параметры невалидны",
                    Some("Cannot decrypt the authorization code"),
                ),
            }
        }
        "refresh_token" => {
            let token = get("refresh_token").to_owned();
            match s.refresh.get_mut(&token) {
                Some((d, used)) if d == domain => {
                    if *used {
                        s.refresh_reuses += 1;
                        return problem(
                            401,
                            "Некорректный запрос",
                            "В запросе отсутствует ряд параметров или параметры невалидны",
                            Some("Token has been revoked"),
                        );
                    }
                    *used = true;
                    *s.refreshes.entry(domain.into()).or_default() += 1;
                    token_ok(s.issue_pair(domain))
                }
                _ => problem(
                    401,
                    "Некорректный запрос",
                    "В запросе отсутствует ряд параметров или параметры невалидны",
                    Some("Token has been revoked"),
                ),
            }
        }
        _ => problem(
            400,
            "Некорректный запрос",
            "В запросе отсутствует ряд параметров или параметры невалидны",
            Some("Unsupported grant type"),
        ),
    }
}

/// Every domain the fake has seen a request for.
pub fn domains(seen: &[Seen]) -> HashSet<String> {
    seen.iter().map(|s| s.domain.clone()).collect()
}
