//! amoCRM's side of a widget's `$authorizedAjax`: the one-time JWT it puts
//! in `X-Auth-Token` for the user looking at the account, signed HS256 with
//! the integration's client secret (claims as the official PHP SDK's
//! `DisposableTokenModel` reads them).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::json;
use sha2::Sha256;

use crate::Simulator;

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
        self.with(|s| {
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
        })
    }
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
