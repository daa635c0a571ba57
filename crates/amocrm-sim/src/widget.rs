//! amoCRM's side of a widget's `$authorizedAjax`: the one-time JWT it puts
//! in `X-Auth-Token` for the user looking at the account, signed HS256 with
//! the integration's client secret (claims as the official PHP SDK's
//! `DisposableTokenModel` reads them).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::json;
use sha2::Sha256;

use crate::{Inner, Simulator};

/// Who asks, and for which service.
#[derive(Debug, Clone)]
pub struct WidgetUser {
    pub user_id: i64,
    pub is_admin: bool,
    /// The scheme and host of the integration's redirect URI.
    pub audience: String,
    /// Seconds the token lives (amoCRM's are short).
    pub lifetime: i64,
}

impl Simulator {
    /// The `X-Auth-Token` amoCRM would add to a widget's request made in
    /// the account at `domain` by `user`, signed with the secret of the
    /// integration that host belongs to.
    ///
    /// # Panics
    /// When the simulator holds no account at `domain`.
    pub fn widget_token(&self, domain: &str, user: &WidgetUser) -> String {
        self.with(|s| mint(s, domain, user))
    }
}

/// A token for `user` of the account at `domain`.
///
/// # Panics
/// When the simulator holds no account at `domain`.
fn mint(s: &mut Inner, domain: &str, user: &WidgetUser) -> String {
    let account_id = s.accounts.get(domain).expect("a simulated account").id;
    let jti = s.next_token("jti");
    let (client_id, secret) = s.client_for(domain);
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "iss": format!("https://{domain}"),
        "aud": user.audience,
        "jti": jti,
        "iat": now,
        "nbf": now,
        "exp": now + user.lifetime,
        "account_id": account_id,
        "subdomain": domain.split('.').next().unwrap_or_default(),
        "client_uuid": client_id,
        "user_id": user.user_id,
        "is_admin": user.is_admin,
    });
    sign(secret, &claims)
}

/// A JWT of `claims`, HS256 under `secret`.
pub fn sign(secret: &str, claims: &serde_json::Value) -> String {
    let head = URL_SAFE_NO_PAD.encode(json!({ "typ": "JWT", "alg": "HS256" }).to_string());
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{head}.{body}").as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{head}.{body}.{signature}")
}

/// A widget as the accounts have it installed: its script and its words
/// (the archive's `script.js` and `i18n/<lang>.json`), and the audience
/// amoCRM writes into its tokens.
#[derive(Debug, Clone)]
pub struct InstalledWidget {
    pub script: String,
    /// lang -> the i18n file's JSON.
    pub words: Vec<(String, serde_json::Value)>,
    pub audience: String,
}

impl Simulator {
    /// Installs `widget` in every simulated account: the widget frame
    /// (`widget_frame_url`) runs it.
    pub fn install_widget(&self, widget: InstalledWidget) {
        self.with(|s| s.widget = Some(widget));
    }

    /// The page standing in for amoCRM's widget settings: it loads the
    /// widget's script the way amoCRM does (`define`), gives it
    /// `$authorizedAjax` (each call with a fresh token for `user_id`) and
    /// `i18n`, and calls its `settings` callback with the modal's body.
    pub fn widget_frame_url(
        &self,
        domain: &str,
        user_id: i64,
        is_admin: bool,
        lang: &str,
    ) -> String {
        format!(
            "http://{}/widget-frame/{domain}?user={user_id}&admin={}&lang={lang}",
            self.addr,
            u8::from(is_admin)
        )
    }
}

/// The frame's query: `user` (default 100), `admin` (1 or 0, default 1),
/// `lang` (default en).
type FrameParams = std::collections::HashMap<String, String>;

fn user_of(params: &FrameParams) -> i64 {
    params
        .get("user")
        .and_then(|u| u.parse().ok())
        .unwrap_or(100)
}

fn admin_of(params: &FrameParams) -> bool {
    params.get("admin").is_none_or(|a| a == "1")
}

use axum::{
    extract::{Path, Query, State},
    http::{header, StatusCode},
    response::{Html, IntoResponse, Response},
};

use crate::Shared;

fn installed(state: &Shared) -> Option<InstalledWidget> {
    state.lock().expect("simulator state").widget.clone()
}

pub(crate) async fn frame(
    State(state): State<Shared>,
    Path(domain): Path<String>,
    Query(params): Query<FrameParams>,
) -> Response {
    let Some(widget) = installed(&state) else {
        return (StatusCode::NOT_FOUND, "no widget installed").into_response();
    };
    if !state
        .lock()
        .expect("simulator state")
        .accounts
        .contains_key(&domain)
    {
        return (StatusCode::NOT_FOUND, "no such account").into_response();
    }
    // Only a language code goes into the page (the domain is an account's).
    let lang = params
        .get("lang")
        .filter(|l| l.len() == 2 && l.bytes().all(|b| b.is_ascii_lowercase()))
        .cloned()
        .unwrap_or_else(|| "en".into());
    let words = widget
        .words
        .iter()
        .find(|(l, _)| *l == lang)
        .or(widget.words.first())
        .map(|(_, w)| w.clone())
        .unwrap_or_default();
    let config = json!({
        "token_url": format!("/widget-frame/{domain}/token?user={}&admin={}", user_of(&params), u8::from(admin_of(&params))),
        "words": words,
    });
    // `</` cannot end the script early: JSON escapes it here.
    let config = config.to_string().replace("</", "<\\/");
    let page = format!(
        r#"<!doctype html>
<html lang="{lang}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{domain} · widget settings</title></head>
<body>
<h1>{domain}: widget settings</h1>
<div id="modal-body"></div>
<script>
var FRAME = {config};
var widgetFactory = null;
function define(deps, factory) {{ widgetFactory = factory; }}
</script>
<script src="/widget-frame/{domain}/script.js"></script>
<script>
var Widget = widgetFactory();
var widget = new Widget();
widget.i18n = function (key) {{ return FRAME.words[key]; }};
widget.$authorizedAjax = function (options) {{
  return fetch(FRAME.token_url)
    .then(function (r) {{ return r.text(); }})
    .then(function (token) {{
      return fetch(options.url, {{ method: options.method || options.type || 'GET', headers: {{ 'X-Auth-Token': token }} }});
    }})
    .then(function (r) {{
      return r.json().then(function (json) {{
        if (!r.ok) {{ throw {{ status: r.status, responseJSON: json }}; }}
        return json;
      }});
    }});
}};
widget.callbacks.settings(document.getElementById('modal-body'));
</script>
</body>
</html>"#
    );
    Html(page).into_response()
}

pub(crate) async fn script(State(state): State<Shared>) -> Response {
    match installed(&state) {
        Some(widget) => (
            [(
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            )],
            widget.script,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no widget installed").into_response(),
    }
}

pub(crate) async fn token(
    State(state): State<Shared>,
    Path(domain): Path<String>,
    Query(params): Query<FrameParams>,
) -> Response {
    let Some(widget) = installed(&state) else {
        return (StatusCode::NOT_FOUND, "no widget installed").into_response();
    };
    let mut inner = state.lock().expect("simulator state");
    if !inner.accounts.contains_key(&domain) {
        return (StatusCode::NOT_FOUND, "no such account").into_response();
    }
    let user = WidgetUser {
        user_id: user_of(&params),
        is_admin: admin_of(&params),
        audience: widget.audience,
        lifetime: 300,
    };
    mint(&mut inner, &domain, &user).into_response()
}
