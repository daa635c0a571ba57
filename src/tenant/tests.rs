use super::*;
use crate::platform::Integration;
use secrecy::SecretString;
use serde_json::json;

const NOW: i64 = 1_765_000_000;

fn integration(name: &'static str, id: &str, secret: &str, redirect: &str) -> Integration {
    Integration {
        name,
        client_id: id.into(),
        client_secret: SecretString::from(secret.to_owned()),
        redirect_uri: redirect.parse().unwrap(),
        authorize_url: "https://www.amocrm.ru/oauth".parse().unwrap(),
    }
}

fn integrations() -> Integrations {
    Integrations {
        amocrm: integration(
            "amocrm",
            "uuid-ru",
            "secret-ru",
            "https://hooks.example.com/oauth/callback",
        ),
        kommo: Some(integration(
            "kommo",
            "uuid-kommo",
            "secret-kommo",
            "https://hooks.example.com:8443/oauth/callback",
        )),
    }
}

/// A token as amoCRM makes one: HS256 over the two parts.
fn token(secret: &str, header: serde_json::Value, claims: serde_json::Value) -> String {
    let head = URL_SAFE_NO_PAD.encode(header.to_string());
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{head}.{body}").as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{head}.{body}.{sig}")
}

fn claims() -> serde_json::Value {
    json!({
        "jti": "7f0c2d1e-1",
        "iat": NOW - 5,
        "nbf": NOW - 5,
        "exp": NOW + 60,
        "iss": "https://acme.amocrm.ru",
        "aud": "https://hooks.example.com",
        "client_uuid": "uuid-ru",
        "subdomain": "acme",
        "account_id": 31_257_294,
        "user_id": 100,
        "is_admin": true,
    })
}

fn with(change: serde_json::Value) -> serde_json::Value {
    let mut c = claims();
    for (k, v) in change.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn hs256() -> serde_json::Value {
    json!({ "alg": "HS256", "typ": "JWT" })
}

#[test]
fn a_token_amocrm_signed_names_the_account_and_user() {
    let user = verify(&integrations(), &token("secret-ru", hs256(), claims()), NOW).unwrap();
    assert_eq!(
        user,
        WidgetUser {
            jti: "7f0c2d1e-1".into(),
            account_id: 31_257_294,
            host: "acme.amocrm.ru".into(),
            user_id: 100,
            is_admin: true,
            expires: DateTime::from_timestamp(NOW + 60, 0).unwrap(),
        }
    );
    // Kommo's integration and its own secret (its redirect URI's port is
    // not part of the audience);
    // ids as text and is_admin as 0/1, as the SDK's casts allow.
    let kommo = with(json!({
        "client_uuid": "uuid-kommo",
        "aud": ["https://hooks.example.com"],
        "iss": "https://Loja.kommo.com",
        "account_id": "45000001",
        "is_admin": 0,
    }));
    let user = verify(&integrations(), &token("secret-kommo", hs256(), kommo), NOW).unwrap();
    assert_eq!(
        (user.account_id, user.host.as_str(), user.is_admin),
        (45_000_001, "loja.kommo.com", false)
    );
}

#[test]
fn tokens_not_made_by_amocrm_for_this_integration_are_refused() {
    let i = integrations();
    let refused = |t: String| verify(&i, &t, NOW).unwrap_err();
    assert_eq!(
        refused(token("guessed", hs256(), claims())),
        Refused::Invalid(NOT_OURS)
    );
    // Another algorithm is never tried, "none" least of all.
    for alg in ["none", "HS512", "RS256"] {
        assert_eq!(
            refused(token("secret-ru", json!({ "alg": alg }), claims())),
            Refused::Invalid("not HS256"),
            "{alg}"
        );
    }
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    assert!(matches!(refused(unsigned), Refused::Invalid(_)));
    // Claims changed after signing.
    let good = token("secret-ru", hs256(), claims());
    let parts: Vec<&str> = good.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(with(json!({ "account_id": 1 })).to_string());
    assert_eq!(
        refused(format!("{}.{forged}.{}", parts[0], parts[2])),
        Refused::Invalid(NOT_OURS)
    );
    for garbage in ["", "a.b", "a.b.c.d", "!!.??.**"] {
        assert!(
            matches!(refused(garbage.into()), Refused::Invalid(_)),
            "{garbage}"
        );
    }
}

#[test]
fn time_audience_and_client_are_checked() {
    let i = integrations();
    let refused = |c| verify(&i, &token("secret-ru", hs256(), c), NOW).unwrap_err();
    assert_eq!(
        refused(with(json!({ "exp": NOW - LEEWAY_SECONDS - 1 }))),
        Refused::Invalid("out of its time")
    );
    assert_eq!(
        refused(with(json!({ "nbf": NOW + LEEWAY_SECONDS + 1 }))),
        Refused::Invalid("out of its time")
    );
    assert_eq!(
        refused(with(json!({ "aud": "https://other.example.com" }))),
        Refused::Invalid("meant for another service")
    );
    assert_eq!(
        refused(with(json!({ "client_uuid": "uuid-kommo" }))),
        Refused::Invalid("made for another integration")
    );
    assert_eq!(
        refused(with(json!({ "iss": "not a url" }))),
        Refused::Invalid("no account URL")
    );
    // Within the leeway: still good.
    assert!(verify(
        &i,
        &token("secret-ru", hs256(), with(json!({ "exp": NOW - 10 }))),
        NOW
    )
    .is_ok());
}

#[test]
fn sealed_values_open_only_unchanged_under_their_own_purpose() {
    let cipher = Cipher::new(&[7; 32]);
    let session = Session {
        account_id: 5,
        user_id: 100,
        expires: Utc::now().timestamp() + 60,
    };
    let sealed = seal(&cipher, "session", &session);
    assert_eq!(self::session(&cipher, &sealed), Ok(session.clone()));
    // A link is not a session, and another key opens nothing.
    assert_eq!(open::<Session>(&cipher, "link", &sealed), None);
    assert_eq!(
        self::session(&Cipher::new(&[8; 32]), &sealed),
        Err(Refused::NoSession)
    );
    // Another account's id in the payload breaks the MAC.
    let (_, mac) = sealed.split_once('.').unwrap();
    let other = Session {
        account_id: 6,
        ..session.clone()
    };
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap());
    assert_eq!(
        self::session(&cipher, &format!("{payload}.{mac}")),
        Err(Refused::NoSession)
    );
    let ended = Session {
        expires: Utc::now().timestamp() - 1,
        ..session.clone()
    };
    assert_eq!(
        self::session(&cipher, &seal(&cipher, "session", &ended)),
        Err(Refused::NoSession)
    );
    // Each session has its own form token.
    assert_ne!(csrf(&cipher, &session), csrf(&cipher, &other));
}
