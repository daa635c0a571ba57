//! An account's own page, opened from inside amoCRM without the
//! operator's admin token.
//!
//! The proof comes from amoCRM: a widget's script calls
//! `this.$authorizedAjax(...)`, and amoCRM adds `X-Auth-Token`, a JWT it
//! signs (HS256) with the integration's client secret for the user looking
//! at amoCRM at that moment (amoCRM's web SDK docs, "mechanics"; the
//! official PHP SDK checks it in `AmoCRMOAuth::parseDisposableToken`: the
//! signature, `aud` = the scheme and host of the integration's redirect
//! URI, the time; its claims are in `DisposableTokenModel`: `jti`,
//! `client_uuid`, `iss` (the account's URL), `subdomain`, `account_id`,
//! `user_id`, `is_admin`, `exp`). Only whoever holds the secret (amoCRM,
//! and this deployment) can make one.
//!
//! amohook checks it ([`verify`]), requires an administrator of a
//! connected account whose host is the token's issuer, spends its `jti`,
//! and answers with a link ([`Link`]) valid for a minute and once; the
//! link sets a session cookie ([`Session`]) that names that one account.
//! Every page and form of the account's own side reads the account from
//! the session alone: there is no account id in a URL to change.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, KeyInit as _, Mac as _};

use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sqlx::PgPool;

use crate::{
    crypto::{random_token, Cipher},
    platform::{Integration, Integrations},
};

/// How long an entry link works.
pub const LINK_SECONDS: i64 = 60;
/// How long a session lasts (a working day; the widget gives a new one).
pub const SESSION_HOURS: i64 = 8;
/// Clock difference allowed between amoCRM and this host.
const LEEWAY_SECONDS: i64 = 30;

/// What a widget token says, as amohook reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WidgetUser {
    pub jti: String,
    pub account_id: i64,
    /// The account's host, from `iss`.
    pub host: String,
    pub user_id: i64,
    pub is_admin: bool,
    pub expires: DateTime<Utc>,
}

/// Why a request is not let in; each has its status in `http::tenant`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No token, a broken one, a wrong signature, audience, client or time.
    #[error("The amoCRM token is not valid: {0}.")]
    Invalid(&'static str),
    #[error("This amoCRM token was used already.")]
    Replayed,
    #[error("Only the account's administrators can open its amohook page.")]
    NotAdmin,
    #[error("This account is not connected to amohook.")]
    NotConnected,
    #[error("The link is not valid or has run out: open the page from amoCRM again.")]
    BadLink,
    #[error("The session has ended: open the page from amoCRM again.")]
    NoSession,
}

#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
}

/// The claims as amoCRM writes them: ids may come as numbers or text, and
/// `is_admin` as a boolean or 0/1 (the SDK casts each); `aud` is one
/// audience or a list (RFC 7519).
#[derive(Debug, Deserialize)]
struct Claims {
    jti: String,
    client_uuid: String,
    iss: String,
    aud: serde_json::Value,
    account_id: serde_json::Value,
    user_id: serde_json::Value,
    #[serde(default)]
    is_admin: serde_json::Value,
    exp: serde_json::Value,
    #[serde(default)]
    nbf: serde_json::Value,
}

fn int(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn truthy(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(n) => n.as_i64().is_some_and(|n| n != 0),
        serde_json::Value::String(s) => matches!(s.as_str(), "1" | "true"),
        _ => false,
    }
}

/// The audience amoCRM names: the scheme and host of the integration's
/// redirect URI, without a port or path (as the official SDK compares it).
pub fn audience(integration: &Integration) -> String {
    let url = &integration.redirect_uri;
    format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default())
}

/// Checks a widget token against every configured integration (at most
/// two: whichever's secret signed it), at `now` (unix seconds).
pub fn verify(integrations: &Integrations, token: &str, now: i64) -> Result<WidgetUser, Refused> {
    let mut last = Refused::Invalid(NOT_OURS);
    for integration in integrations.all() {
        match verify_with(integration, token, now) {
            Ok(user) => return Ok(user),
            Err(Refused::Invalid(NOT_OURS)) => {}
            Err(other) => last = other,
        }
    }
    Err(last)
}

const NOT_OURS: &str = "not signed by this integration";

/// HS256, checked here with `hmac` (the crate for the MAC itself): amoCRM
/// uses that one algorithm, and a JWT crate (jsonwebtoken) would bring RSA,
/// ECDSA and EdDSA, thirty crates, to check three base64url parts and one
/// MAC. The header must say HS256 (no other algorithm is tried), the MAC is
/// compared in constant time, and the claims are read only after it.
fn verify_with(integration: &Integration, token: &str, now: i64) -> Result<WidgetUser, Refused> {
    const BROKEN: Refused = Refused::Invalid("not a token amoCRM makes");
    let mut parts = token.trim().split('.');
    let (Some(head), Some(body), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BROKEN);
    };
    let header: Header = decoded(head).ok_or(BROKEN)?;
    if header.alg != "HS256" {
        return Err(Refused::Invalid("not HS256"));
    }
    let signature = base64url(signature).ok_or(BROKEN)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(integration.client_secret.expose_secret().as_bytes())
            .expect("HMAC takes any key length");
    mac.update(head.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| Refused::Invalid(NOT_OURS))?;

    let claims: Claims = decoded(body).ok_or(BROKEN)?;
    let expires = int(&claims.exp).ok_or(BROKEN)?;
    if expires + LEEWAY_SECONDS < now
        || int(&claims.nbf).is_some_and(|nbf| nbf - LEEWAY_SECONDS > now)
    {
        return Err(Refused::Invalid("out of its time"));
    }
    let ours = audience(integration);
    let meant_for_us = match &claims.aud {
        serde_json::Value::String(aud) => aud.trim_end_matches('/') == ours,
        serde_json::Value::Array(list) => list
            .iter()
            .any(|a| a.as_str().is_some_and(|a| a.trim_end_matches('/') == ours)),
        _ => false,
    };
    if !meant_for_us {
        return Err(Refused::Invalid("meant for another service"));
    }
    if claims.client_uuid != integration.client_id {
        return Err(Refused::Invalid("made for another integration"));
    }
    let host = url::Url::parse(&claims.iss)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .ok_or(Refused::Invalid("no account URL"))?;
    let (Some(account_id), Some(user_id)) = (int(&claims.account_id), int(&claims.user_id)) else {
        return Err(Refused::Invalid("no account or user"));
    };
    Ok(WidgetUser {
        jti: claims.jti,
        account_id,
        host,
        user_id,
        is_admin: truthy(&claims.is_admin),
        expires: DateTime::from_timestamp(expires, 0).unwrap_or_else(Utc::now),
    })
}

/// base64url without padding, as JWTs are written (padding tolerated).
fn base64url(part: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()
}

fn decoded<T: for<'de> Deserialize<'de>>(part: &str) -> Option<T> {
    serde_json::from_slice(&base64url(part)?).ok()
}

/// Lets a checked widget user in: an administrator of a connected account
/// on the token's host, with a token not seen before. Returns the entry
/// link's token.
pub async fn admit(
    pool: &PgPool,
    cipher: &Cipher,
    user: &WidgetUser,
) -> Result<String, AdmitError> {
    if !user.is_admin {
        return Err(Refused::NotAdmin.into());
    }
    let connected = sqlx::query_scalar!(
        "select account_id from accounts
         where account_id = $1 and domain = $2 and status <> 'disconnected'",
        user.account_id,
        user.host,
    )
    .fetch_optional(pool)
    .await?;
    if connected.is_none() {
        return Err(Refused::NotConnected.into());
    }
    if !spend_once(pool, &format!("jwt:{}", user.jti), user.expires).await? {
        return Err(Refused::Replayed.into());
    }
    let link = Link {
        account_id: user.account_id,
        user_id: user.user_id,
        expires: Utc::now().timestamp() + LINK_SECONDS,
        nonce: random_token(16),
    };
    Ok(seal(cipher, "link", &link))
}

#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// An entry link's contents.
#[derive(Debug, Serialize, Deserialize)]
struct Link {
    account_id: i64,
    user_id: i64,
    expires: i64,
    nonce: String,
}

/// A session: one account, one amoCRM user, until `expires`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub account_id: i64,
    pub user_id: i64,
    pub expires: i64,
}

/// Uses an entry link (once): the session it opens, sealed for a cookie.
pub async fn enter(
    pool: &PgPool,
    cipher: &Cipher,
    link: &str,
) -> Result<(Session, String), AdmitError> {
    let link: Link = open(cipher, "link", link).ok_or(Refused::BadLink)?;
    let now = Utc::now().timestamp();
    if link.expires < now {
        return Err(Refused::BadLink.into());
    }
    let expires = DateTime::from_timestamp(link.expires, 0).unwrap_or_else(Utc::now);
    if !spend_once(pool, &format!("link:{}", link.nonce), expires).await? {
        return Err(Refused::BadLink.into());
    }
    let session = Session {
        account_id: link.account_id,
        user_id: link.user_id,
        expires: now + SESSION_HOURS * 3600,
    };
    let sealed = seal(cipher, "session", &session);
    Ok((session, sealed))
}

/// The session a cookie holds, while it lasts.
pub fn session(cipher: &Cipher, cookie: &str) -> Result<Session, Refused> {
    let session: Session = open(cipher, "session", cookie).ok_or(Refused::NoSession)?;
    if session.expires < Utc::now().timestamp() {
        return Err(Refused::NoSession);
    }
    Ok(session)
}

/// A form's CSRF token for a session: the session's own MAC, which only
/// a page rendered for that session shows.
pub fn csrf(cipher: &Cipher, session: &Session) -> String {
    let data = format!(
        "csrf:{}:{}:{}",
        session.account_id, session.user_id, session.expires
    );
    hex::encode(cipher.sign(data.as_bytes()))
}

/// Records `id` as used until `expires`; false when it was used already.
/// Spent ids are forgotten an hour after they run out.
async fn spend_once(pool: &PgPool, id: &str, expires: DateTime<Utc>) -> sqlx::Result<bool> {
    let fresh = sqlx::query_scalar!(
        r#"with gone as (
               delete from tenant_tokens_spent where expires_at < now() - interval '1 hour'
           )
           insert into tenant_tokens_spent (token_id, expires_at) values ($1, $2)
           on conflict do nothing
           returning true as "fresh!""#,
        id,
        expires + Duration::minutes(1),
    )
    .fetch_optional(pool)
    .await?;
    Ok(fresh.is_some())
}

/// `payload.mac`, both base64url: the MAC under the deployment's key,
/// bound to what the value is (`link`, `session`).
fn seal<T: Serialize>(cipher: &Cipher, what: &str, value: &T) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("plain data serializes"));
    let mac = cipher.sign(format!("{what}:{payload}").as_bytes());
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac))
}

fn open<T: for<'de> Deserialize<'de>>(cipher: &Cipher, what: &str, sealed: &str) -> Option<T> {
    let (payload, mac) = sealed.split_once('.')?;
    let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
    if !cipher.verify(format!("{what}:{payload}").as_bytes(), &mac) {
        return None;
    }
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

#[cfg(test)]
mod tests;
