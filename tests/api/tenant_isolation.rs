//! An account's page and token reach that account alone.

use crate::helpers::{TestApp, CLIENT_ID, CLIENT_SECRET, PUBLIC_URL};
use amocrm_sim::widget::{sign, WidgetUser};
use amohook::account_settings::store;
use serde_json::{json, Value};

use crate::tenant::*;

#[tokio::test]
async fn no_account_reaches_another_with_its_link_or_token() {
    let app = TestApp::spawn_without_worker().await;
    app.connected(A, A_ID).await;
    app.connected(B, B_ID).await;
    let cookie_a = app.session_cookie(A, &admin()).await;

    // A's session shows A and saves A's settings, whatever the form says.
    let page = app.my("/my", &cookie_a).await.text().await.unwrap();
    assert!(page.contains(A) && !page.contains(B), "{page}");
    let (csrf, _) = form_of(&app, &cookie_a).await;
    let saved = app
        .my_post(
            "/my/settings",
            &cookie_a,
            &[("csrf", &csrf), ("version", "0"), ("leads", "on")],
        )
        .await;
    assert_eq!(saved.status(), 303);
    assert_eq!(
        store::current(&app.pool, A_ID)
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
    assert_eq!(
        store::current(&app.pool, B_ID)
            .await
            .unwrap()
            .unwrap()
            .version,
        0
    );

    // A cookie changed to name B is no session.
    let sealed = cookie_a.strip_prefix("amohook_my=").unwrap();
    let (payload, mac) = sealed.split_once('.').unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&b64.decode(payload).unwrap()).unwrap();
    claims["account_id"] = json!(B_ID);
    let forged = format!("amohook_my={}.{mac}", b64.encode(claims.to_string()));
    assert_eq!(app.my("/my", &forged).await.status(), 401);
    assert_eq!(app.my("/my", "amohook_my=nothing").await.status(), 401);
    assert_eq!(app.my("/my", "").await.status(), 401);
    // Another session's form token is refused (B's session, A's token).
    let cookie_b = app.session_cookie(B, &admin()).await;
    let crossed = app
        .my_post(
            "/my/settings",
            &cookie_b,
            &[("csrf", &csrf), ("version", "0"), ("leads", "on")],
        )
        .await;
    assert_eq!(crossed.status(), 403);
    assert_eq!(
        store::current(&app.pool, B_ID)
            .await
            .unwrap()
            .unwrap()
            .version,
        0
    );

    // Tokens amoCRM would not give: B's account named from A's host, a
    // secret guessed, another service's audience, a user who is no admin.
    let now = chrono::Utc::now().timestamp();
    let claims = |iss: &str, account: i64, aud: &str| {
        json!({
            "iss": format!("https://{iss}"), "aud": aud, "jti": format!("j-{iss}-{account}-{aud}"),
            "iat": now, "nbf": now, "exp": now + 60, "account_id": account,
            "client_uuid": CLIENT_ID, "user_id": 100, "is_admin": true,
        })
    };
    let refused = [
        (sign(CLIENT_SECRET, &claims(A, B_ID, PUBLIC_URL)), 404),
        (sign("guessed-secret", &claims(B, B_ID, PUBLIC_URL)), 401),
        (
            sign(CLIENT_SECRET, &claims(B, B_ID, "https://elsewhere.example")),
            401,
        ),
        (
            app.fake.widget_token(
                B,
                &WidgetUser {
                    is_admin: false,
                    ..admin()
                },
            ),
            403,
        ),
        (
            app.fake.widget_token(
                B,
                &WidgetUser {
                    lifetime: -120,
                    ..admin()
                },
            ),
            401,
        ),
    ];
    for (token, status) in refused {
        let answer = app.widget_session(&token).await;
        assert_eq!(answer.status(), status);
        let text = answer.text().await.unwrap();
        assert!(
            !text.contains(CLIENT_SECRET) && !text.contains(&token),
            "{text}"
        );
    }
    // The same claims properly signed are let in: the refusals were theirs.
    assert_eq!(
        app.widget_session(&sign(CLIENT_SECRET, &claims(B, B_ID, PUBLIC_URL)))
            .await
            .status(),
        200
    );
}
