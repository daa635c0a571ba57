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
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod records;
pub use records::{FakeEvent, FakeField};

/// The host of amoCRM's OAuth helpers, as the fake's access tokens name it.
pub const API_DOMAIN: &str = "api-b.amocrm.ru";

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub domain: String,
    pub method: Method,
    pub path: String,
    /// The query string, decoded.
    pub query: String,
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
    /// Do the work (notes are created), then answer with this status as if
    /// the answer was lost: the case a retry must not duplicate.
    AfterWork(u16),
    /// Do the work, then wait this long before answering: a sender killed
    /// meanwhile never learns that its notes exist.
    WorkThenDelay(Duration),
}

#[derive(Debug, Clone)]
pub struct FakeAccount {
    pub id: i64,
    pub name: String,
    pub timezone: String,
    /// Admin-only methods (webhooks, users) answer 403 when false.
    pub admin: bool,
    pub users: Vec<(i64, String)>,
    pub pipelines: Vec<FakePipeline>,
    /// Custom field definitions by entity (`leads`, `contacts`, `companies`).
    pub fields: Vec<(String, FakeField)>,
    pub currency: String,
    pub currency_symbol: String,
    /// PHP date() patterns, as `datetime_settings` gives them.
    pub date_pattern: String,
    pub time_pattern: String,
}

/// (pipeline id, name, [(status id, name)])
pub type FakePipeline = (i64, String, Vec<(i64, String)>);

impl FakeAccount {
    /// An admin's account with two users and one pipeline.
    pub fn new(id: i64) -> Self {
        FakeAccount {
            id,
            name: format!("Account {id}"),
            timezone: "Europe/Moscow".into(),
            admin: true,
            users: vec![(100, "Иван Петров".into()), (101, "Мария Иванова".into())],
            pipelines: vec![(
                10,
                "Продажи".into(),
                vec![
                    (1, "Новая".into()),
                    (2, "Переговоры".into()),
                    (142, "Успешно реализовано".into()),
                ],
            )],
            fields: Vec::new(),
            currency: "RUB".into(),
            currency_symbol: "₽".into(),
            date_pattern: "d.m.Y".into(),
            time_pattern: "H:i".into(),
        }
    }
}

/// A note the fake holds.
#[derive(Debug, Clone)]
pub struct FakeNote {
    pub id: i64,
    pub domain: String,
    /// `leads`, `contacts` or `companies`.
    pub entity_type: String,
    pub entity_id: i64,
    pub text: String,
    /// `common` for the notes amohook writes; tests add others.
    pub note_type: String,
    pub request_id: Option<String>,
    /// When the note was created.
    pub at: Instant,
    /// Unix seconds, what `filter[updated_at]` compares.
    pub updated_at: i64,
}

#[derive(Default)]
struct Inner {
    client_id: String,
    client_secret: String,
    /// Kommo's own integration, once registered: Kommo is a platform of its
    /// own, so its hosts (kommo.com, amocrm.com) accept only this client
    /// and amoCRM's (amocrm.ru) only the first.
    kommo_client: Option<(String, String)>,
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
    notes: Vec<FakeNote>,
    /// Answer 429 past this many requests to one account in a second.
    rate_limit: Option<usize>,
    /// Every API answer is this status (an outage), until cleared.
    outage: Option<u16>,
    /// Notes for these entity ids are refused with a validation error.
    refused_entities: HashSet<i64>,
    /// (domain, event): what `GET /api/v4/events` lists.
    events: Vec<(String, FakeEvent)>,
    latency: Duration,
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

    /// Registers the integration of the Kommo platform: from now on hosts
    /// under kommo.com and amocrm.com accept codes and refresh tokens only
    /// with this client, and amocrm.ru hosts only with the first one.
    pub fn register_kommo_client(&self, client_id: &str, client_secret: &str) {
        self.with(|s| s.kommo_client = Some((client_id.into(), client_secret.into())));
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

    /// Every access and refresh token issued so far.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.with(|s| s.access.keys().chain(s.refresh.keys()).cloned().collect())
    }

    /// Puts a note into a card as someone in the account would.
    /// `entity_type` is `leads`, `contacts` or `companies`.
    pub fn add_note(
        &self,
        domain: &str,
        entity_type: &str,
        entity_id: i64,
        note_type: &str,
        text: &str,
    ) {
        self.with(|s| {
            s.counter += 1;
            let note = FakeNote {
                id: s.counter as i64,
                domain: domain.into(),
                entity_type: entity_type.into(),
                entity_id,
                text: text.into(),
                note_type: note_type.into(),
                request_id: None,
                at: Instant::now(),
                updated_at: unix_now(),
            };
            s.notes.push(note);
        });
    }

    /// The account removes the integration: amoCRM revokes its tokens (the
    /// access tokens answer 401, the refresh tokens are refused).
    pub fn uninstall(&self, domain: &str) {
        self.with(|s| {
            s.access.retain(|_, (d, _)| d != domain);
            s.refresh.retain(|_, (d, _)| d != domain);
        });
    }

    /// The account renames its subdomain: it moves to `new_domain`, its
    /// tokens with it; the old host answers 404 from then on.
    pub fn rename(&self, old_domain: &str, new_domain: &str) {
        self.with(|s| {
            if let Some(account) = s.accounts.remove(old_domain) {
                s.accounts.insert(new_domain.into(), account);
            }
            for (d, _) in s.access.values_mut() {
                if d == old_domain {
                    *d = new_domain.into();
                }
            }
            for (d, _) in s.refresh.values_mut() {
                if d == old_domain {
                    *d = new_domain.into();
                }
            }
        });
    }

    /// Records an event in a card's history (amoCRM writes one for every
    /// change of a field, stage, responsible, name or budget).
    pub fn add_event(&self, domain: &str, event: FakeEvent) {
        self.with(|s| s.events.push((domain.into(), event)));
    }

    /// Notes created so far.
    pub fn notes(&self) -> Vec<FakeNote> {
        self.with(|s| s.notes.clone())
    }

    /// Answers 429 to requests over `per_second` for one account within a
    /// second, as amoCRM does.
    pub fn set_rate_limit(&self, per_second: usize) {
        self.with(|s| s.rate_limit = Some(per_second));
    }

    /// Answers every request with `status` (503 for an outage, 429 for a
    /// burst of rate limiting) until called again with None.
    pub fn set_outage(&self, status: Option<u16>) {
        self.with(|s| s.outage = status);
    }

    /// All refreshes across accounts.
    pub fn total_refreshes(&self) -> u32 {
        self.with(|s| s.refreshes.values().sum())
    }

    /// Every answer waits this long first.
    pub fn set_latency(&self, latency: Duration) {
        self.with(|s| s.latency = latency);
    }

    /// Notes for this card id are refused with a 400 validation error that
    /// names the note.
    pub fn refuse_notes_for(&self, entity_id: i64) {
        self.with(|s| s.refused_entities.insert(entity_id));
    }

    /// The most requests to `domain` that arrived within any one second.
    pub fn max_per_second(&self, domain: &str) -> usize {
        let mut times: Vec<Instant> = self.with(|s| {
            s.seen
                .iter()
                .filter(|r| r.domain == domain)
                .map(|r| r.at)
                .collect()
        });
        times.sort();
        let mut best = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end].duration_since(times[start]) >= Duration::from_secs(1) {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }

    /// Answers with status `status` seen for `domain`.
    pub fn count_status(&self, domain: &str, status: u16) -> usize {
        self.with(|s| {
            s.seen
                .iter()
                .filter(|r| r.domain == domain && r.status == status)
                .count()
        })
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
        // amoCRM's access tokens are JWTs whose payload names the account
        // and the host of its OAuth helpers (`api_domain`).
        let account_id = self.accounts.get(domain).map_or(0, |a| a.id);
        let claims = json!({
            "account_id": account_id, "api_domain": API_DOMAIN,
            "jti": self.next_token("jti"),
        });
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let access = format!(
            "{}.{}.{}",
            b64(br#"{"typ":"JWT","alg":"RS256"}"#),
            b64(claims.to_string().as_bytes()),
            b64(b"signature")
        );
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
        Fault::Delay(_) | Fault::AfterWork(_) | Fault::WorkThenDelay(_) => None,
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
    let arrived = Instant::now();
    let (fault, latency, limited) = {
        let mut s = shared.lock().expect("fake state");
        // amoCRM's limit: requests to one account within the last second.
        let limited = s.rate_limit.is_some_and(|limit| {
            let recent = s
                .seen
                .iter()
                .filter(|r| {
                    r.domain == domain && arrived.duration_since(r.at) < Duration::from_secs(1)
                })
                .count();
            recent >= limit
        });
        let fault = match s.outage {
            Some(status) => Some(Fault::Status(status)),
            None => s.take_fault(&domain, &path),
        };
        (fault, s.latency, limited)
    };
    // The request counts from its arrival, whatever happens next.
    let index = {
        let mut s = shared.lock().expect("fake state");
        s.seen.push(Seen {
            at: arrived,
            domain: domain.clone(),
            method: method.clone(),
            path: path.clone(),
            query: url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&"),
            status: 0,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        s.seen.len() - 1
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(Fault::Delay(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let answer = |shared: &Shared| {
        route(
            shared,
            &domain,
            &method,
            &path,
            uri.query(),
            &headers,
            &body,
        )
    };
    let response = if limited {
        (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response()
    } else {
        match &fault {
            Some(Fault::AfterWork(status)) => {
                let _ = answer(&shared);
                html(*status)
            }
            Some(Fault::WorkThenDelay(wait)) => {
                let response = answer(&shared);
                shared.lock().expect("fake state").seen[index].status = response.status().as_u16();
                tokio::time::sleep(*wait).await;
                response
            }
            Some(other) => fault_response(other).unwrap_or_else(|| answer(&shared)),
            None => answer(&shared),
        }
    };
    shared.lock().expect("fake state").seen[index].status = response.status().as_u16();
    response
}

fn route(
    shared: &Shared,
    domain: &str,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let mut s = shared.lock().expect("fake state");
    if domain == API_DOMAIN {
        return oauth_helpers(&s, method, path, headers);
    }
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
                "currency": account.currency, "currency_symbol": account.currency_symbol,
                "_embedded": {"datetime_settings": {
                    "date_pattern": format!("{} {}", account.date_pattern, account.time_pattern),
                    "short_date_pattern": account.date_pattern,
                    "short_time_pattern": account.time_pattern,
                    "date_format": account.date_pattern, "time_format": "H:i:s",
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
        ("DELETE", "/api/v4/webhooks") => {
            if !account.admin {
                return problem(403, "Forbidden", "Access denied", None);
            }
            let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let destination = request["destination"].as_str().unwrap_or_default();
            let before = s.webhooks.len();
            s.webhooks
                .retain(|(d, hook)| !(d == domain && hook["destination"] == destination));
            if s.webhooks.len() == before {
                return problem(404, "Not Found", "Hook not found", None);
            }
            StatusCode::NO_CONTENT.into_response()
        }
        ("GET", "/api/v4/users") => {
            if !account.admin {
                return problem(403, "Forbidden", "Access denied", None);
            }
            let page: usize = query_param(query, "page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(1);
            let limit: usize = query_param(query, "limit")
                .and_then(|p| p.parse().ok())
                .unwrap_or(50);
            let users: Vec<Value> = account
                .users
                .iter()
                .skip((page - 1) * limit)
                .take(limit)
                .map(|(id, name)| json!({"id": id, "name": name}))
                .collect();
            if users.is_empty() {
                return StatusCode::NO_CONTENT.into_response();
            }
            json_ok(
                StatusCode::OK,
                json!({"_page": page, "_embedded": {"users": users}}),
            )
        }
        ("GET", "/api/v4/leads/pipelines") => {
            let pipelines: Vec<Value> = account
                .pipelines
                .iter()
                .map(|(id, name, statuses)| {
                    json!({"id": id, "name": name, "_embedded": {"statuses":
                        statuses.iter().map(|(sid, sname)| json!({"id": sid, "name": sname, "pipeline_id": id})).collect::<Vec<_>>()
                    }})
                })
                .collect();
            json_ok(
                StatusCode::OK,
                json!({"_total_items": pipelines.len(), "_embedded": {"pipelines": pipelines}}),
            )
        }
        ("GET", p) if p.ends_with("/custom_fields") => {
            let entity = p
                .trim_start_matches("/api/v4/")
                .trim_end_matches("/custom_fields");
            if !matches!(entity, "leads" | "contacts" | "companies") {
                return html(404);
            }
            let page: usize = query_param(query, "page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(1);
            let limit: usize = match query_param(query, "limit").map(|l| l.parse::<usize>()) {
                None => 50,
                Some(Ok(l @ 1..=250)) => l,
                Some(_) => return problem(400, "Bad Request", "limit must be from 1 to 250", None),
            };
            let fields: Vec<Value> = account
                .fields
                .iter()
                .filter(|(e, _)| e == entity)
                .skip((page - 1) * limit)
                .take(limit)
                .map(|(_, f)| f.json(entity))
                .collect();
            if fields.is_empty() {
                return StatusCode::NO_CONTENT.into_response();
            }
            json_ok(
                StatusCode::OK,
                json!({"_page": page, "_embedded": {"custom_fields": fields}}),
            )
        }
        ("GET", "/api/v4/events") => {
            let max_limit = if domain.ends_with(".amocrm.ru") {
                100
            } else {
                250
            };
            let filter = match records::EventsFilter::parse(query.unwrap_or_default(), max_limit) {
                Ok(filter) => filter,
                Err(detail) => return problem(400, "Bad Request", &detail, None),
            };
            let events: Vec<Value> = s
                .events
                .iter()
                .filter(|(d, e)| d == domain && filter.matches(e))
                .enumerate()
                .skip((filter.page - 1) * filter.limit)
                .take(filter.limit)
                .map(|(i, (_, e))| e.json(i, account.id))
                .collect();
            if events.is_empty() {
                return StatusCode::NO_CONTENT.into_response();
            }
            json_ok(
                StatusCode::OK,
                json!({"_page": filter.page, "_embedded": {"events": events}}),
            )
        }
        ("POST", p) if p.ends_with("/notes") && entity_of(p).is_some() => {
            let entity_type = entity_of(p).unwrap_or_default().to_owned();
            let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(body) else {
                return problem(400, "Bad Request", "Request validation failed", None);
            };
            let refused: Vec<Value> = items
                .iter()
                .enumerate()
                .filter(|(_, item)| {
                    item["entity_id"].as_i64().is_none_or(|id| s.refused_entities.contains(&id))
                        || item["params"]["text"].as_str().is_none_or(str::is_empty)
                })
                .map(|(i, item)| json!({
                    "request_id": item["request_id"].as_str().map(str::to_owned).unwrap_or_else(|| i.to_string()),
                    "errors": [{"code": "NotFound", "path": "entity_id", "detail": "Entity not found"}]
                }))
                .collect();
            if !refused.is_empty() {
                let body = json!({"validation-errors": refused, "title": "Bad Request",
                    "type": "https://httpstatus.es/400", "status": 400, "detail": "Request validation failed"});
                return (
                    StatusCode::BAD_REQUEST,
                    [(header::CONTENT_TYPE, "application/problem+json")],
                    body.to_string(),
                )
                    .into_response();
            }
            let mut created = Vec::new();
            for item in items {
                s.counter += 1;
                let note = FakeNote {
                    id: s.counter as i64,
                    domain: domain.into(),
                    entity_type: entity_type.clone(),
                    entity_id: item["entity_id"].as_i64().unwrap_or_default(),
                    text: item["params"]["text"].as_str().unwrap_or_default().into(),
                    note_type: item["note_type"].as_str().unwrap_or("common").into(),
                    request_id: item["request_id"].as_str().map(str::to_owned),
                    at: Instant::now(),
                    updated_at: unix_now(),
                };
                created.push(json!({"id": note.id, "entity_id": note.entity_id, "request_id": note.request_id,
                    "_links": {"self": {"href": format!("/api/v4/{entity_type}/notes/{}", note.id)}}}));
                s.notes.push(note);
            }
            json_ok(
                StatusCode::OK,
                json!({"_links": {}, "_embedded": {"notes": created}}),
            )
        }
        ("GET", p) if p.ends_with("/notes") && entity_of(p).is_some() => {
            let entity_type = entity_of(p).unwrap_or_default();
            let filter = match NotesFilter::parse(query.unwrap_or_default()) {
                Ok(filter) => filter,
                Err(detail) => return problem(400, "Bad Request", &detail, None),
            };
            let mut matching: Vec<&FakeNote> = s
                .notes
                .iter()
                .filter(|n| n.domain == domain && n.entity_type == entity_type)
                .filter(|n| filter.matches(n))
                .collect();
            matching.sort_by_key(|n| n.id);
            let notes: Vec<Value> = matching
                .into_iter()
                .skip((filter.page - 1) * filter.limit)
                .take(filter.limit)
                .map(|n| {
                    json!({"id": n.id, "entity_id": n.entity_id, "note_type": n.note_type,
                    "updated_at": n.updated_at, "params": {"text": n.text}})
                })
                .collect();
            if notes.is_empty() {
                return StatusCode::NO_CONTENT.into_response();
            }
            json_ok(
                StatusCode::OK,
                json!({"_page": filter.page, "_embedded": {"notes": notes}}),
            )
        }
        _ => html(404),
    }
}

/// The query of `GET /api/v4/{entity}/notes`, checked like amoCRM documents
/// it (developers.kommo.com "notes by entity type"; the official SDK's
/// NotesFilter): `filter[entity_id][]` and `filter[note_type][]` are
/// arrays, `filter[updated_at]` a timestamp or a `[from]`/`[to]` range,
/// `limit` at most 250, `page` from 1. Anything else is refused, so a test
/// fails when amohook sends a form amoCRM does not document.
struct NotesFilter {
    entity_ids: HashSet<i64>,
    note_types: HashSet<String>,
    updated_from: Option<i64>,
    updated_to: Option<i64>,
    limit: usize,
    page: usize,
}

impl NotesFilter {
    fn parse(query: &str) -> Result<NotesFilter, String> {
        let mut filter = NotesFilter {
            entity_ids: HashSet::new(),
            note_types: HashSet::new(),
            updated_from: None,
            updated_to: None,
            limit: 50,
            page: 1,
        };
        use records::number;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "filter[entity_id][]" | "filter[entity_id]" => {
                    filter.entity_ids.insert(number(&k, &v)?);
                }
                "filter[note_type][]" => {
                    filter.note_types.insert(v.into_owned());
                }
                "filter[updated_at][from]" => filter.updated_from = Some(number(&k, &v)?),
                "filter[updated_at][to]" => filter.updated_to = Some(number(&k, &v)?),
                "filter[updated_at]" => {
                    let at = number(&k, &v)?;
                    filter.updated_from = Some(at);
                    filter.updated_to = Some(at);
                }
                "limit" => match number(&k, &v)? {
                    n @ 1..=250 => filter.limit = n as usize,
                    _ => return Err("limit must be from 1 to 250".into()),
                },
                "page" => match number(&k, &v)? {
                    n @ 1.. => filter.page = n as usize,
                    _ => return Err("page must be 1 or more".into()),
                },
                other => return Err(format!("unknown parameter {other}")),
            }
        }
        Ok(filter)
    }

    fn matches(&self, note: &FakeNote) -> bool {
        (self.entity_ids.is_empty() || self.entity_ids.contains(&note.entity_id))
            && (self.note_types.is_empty() || self.note_types.contains(&note.note_type))
            && self.updated_from.is_none_or(|from| note.updated_at >= from)
            && self.updated_to.is_none_or(|to| note.updated_at <= to)
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn entity_of(path: &str) -> Option<&'static str> {
    match path {
        "/api/v4/leads/notes" => Some("leads"),
        "/api/v4/contacts/notes" => Some("contacts"),
        "/api/v4/companies/notes" => Some("companies"),
        _ => None,
    }
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
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
    let kommo_host = [".kommo.com", ".amocrm.com"]
        .iter()
        .any(|parent| domain.ends_with(parent));
    let (client_id, client_secret) = match (&s.kommo_client, kommo_host) {
        (Some((id, secret)), true) => (id.as_str(), secret.as_str()),
        _ => (s.client_id.as_str(), s.client_secret.as_str()),
    };
    if get("client_id") != client_id || get("client_secret") != client_secret {
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

/// `GET https://{api_domain}/oauth2/account/current/subdomain` with
/// `X-Refresh-Token`: the account's current host (the official SDK's
/// AccountDomainModel: id, subdomain, domain, top_level_domain).
fn oauth_helpers(s: &Inner, method: &Method, path: &str, headers: &HeaderMap) -> Response {
    if method != Method::GET || path != "/oauth2/account/current/subdomain" {
        return html(404);
    }
    let token = headers
        .get("x-refresh-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some((domain, _)) = s.refresh.get(token) else {
        return problem(401, "Unauthorized", "Refresh token is invalid", None);
    };
    let Some(account) = s.accounts.get(domain) else {
        return html(404);
    };
    let subdomain = domain.split('.').next().unwrap_or_default();
    json_ok(
        StatusCode::OK,
        json!({"id": account.id, "subdomain": subdomain, "domain": domain,
               "top_level_domain": domain.rsplit('.').next().unwrap_or_default()}),
    )
}
