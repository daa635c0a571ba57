//! OAuth as amoCRM does it: the grant page a browser is sent to, the token
//! endpoint (`POST /{domain}/oauth2/access_token`), and the helper that
//! names the current host of a renamed account.

use std::{collections::HashMap, time::Duration};

use axum::{
    body::Bytes,
    extract::{Query, State},
    http::{header, HeaderMap, Method, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
};
use serde_json::{json, Value};

use crate::{
    answers::{html, json_ok, problem, token_ok},
    Inner, Shared,
};

/// `GET /oauth?client_id=..&state=..&redirect_uri=..&mode=..`: amoCRM's
/// page where a person grants the integration access to one of their
/// accounts. Here every simulated account is offered; choosing one goes
/// to [`allow`].
pub(crate) async fn grant_page(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| query.get(k).map(String::as_str).unwrap_or_default();
    let s = shared.lock().expect("simulator state");
    if !s.knows_client(get("client_id")) {
        return (
            StatusCode::BAD_REQUEST,
            Html(page(
                "<p>This integration is unknown: check <code>client_id</code>.</p>",
            )),
        )
            .into_response();
    }
    // Each platform's grant page offers its own accounts.
    let mut domains: Vec<&String> = s
        .accounts
        .keys()
        .filter(|d| s.client_for(d).0 == get("client_id"))
        .collect();
    domains.sort();
    let items: String = domains
        .into_iter()
        .map(|domain| {
            let href = format!(
                "/oauth/allow?{}",
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("client_id", get("client_id"))
                    .append_pair("state", get("state"))
                    .append_pair("redirect_uri", get("redirect_uri"))
                    .append_pair("domain", domain)
                    .finish()
            );
            format!(
                "<li><a class=\"account\" data-domain=\"{d}\" href=\"{h}\">{n} ({d})</a></li>",
                d = escape(domain),
                h = escape(&href),
                n = escape(&s.accounts[domain].name),
            )
        })
        .collect();
    Html(page(&format!(
        "<p>The integration asks for access to your account's CRM data. \
         Choose the account to allow it in:</p><ul>{items}</ul>"
    )))
    .into_response()
}

/// `GET /oauth/allow?...&domain=..`: the person allowed access in
/// `domain`; the browser goes to the redirect URI with a fresh code, the
/// account's host as `referer`, the state it came with and the client id.
pub(crate) async fn allow(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| query.get(k).map(String::as_str).unwrap_or_default();
    let mut s = shared.lock().expect("simulator state");
    let domain = get("domain");
    let Ok(mut redirect) = url::Url::parse(get("redirect_uri")) else {
        return (
            StatusCode::BAD_REQUEST,
            Html(page("<p>No redirect URI.</p>")),
        )
            .into_response();
    };
    if s.client_for(domain).0 != get("client_id") || !s.accounts.contains_key(domain) {
        return (
            StatusCode::BAD_REQUEST,
            Html(page("<p>Unknown integration or account.</p>")),
        )
            .into_response();
    }
    let code = s.next_token("code");
    s.codes.insert(
        code.clone(),
        (domain.into(), false, std::time::Instant::now()),
    );
    redirect
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("referer", domain)
        .append_pair("state", get("state"))
        .append_pair("client_id", get("client_id"));
    Redirect::to(redirect.as_str()).into_response()
}

fn page(body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Grant access · amoCRM simulator</title></head>\
         <body><h1>amoCRM simulator: grant access</h1>{body}</body></html>"
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(crate) fn token_endpoint(
    s: &mut Inner,
    domain: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
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
    let (client_id, client_secret) = s.client_for(domain);
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
pub(crate) fn oauth_helpers(
    s: &Inner,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Response {
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
