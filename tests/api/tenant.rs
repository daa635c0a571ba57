//! An account's own page, opened from inside amoCRM: the widget's
//! `$authorizedAjax` brings amoCRM's signed token (the simulator mints it as
//! amoCRM does), amohook answers a one-time link, the link a session for
//! that account alone.

use amocrm_sim::widget::WidgetUser;
use amohook::account_settings::store;
use serde_json::Value;

use crate::helpers::{lead_hook, TestApp, PUBLIC_URL};

pub(crate) const A: &str = "alfa.amocrm.ru";
pub(crate) const A_ID: i64 = 46_000_001;
pub(crate) const B: &str = "beta.amocrm.ru";
pub(crate) const B_ID: i64 = 46_000_002;

pub(crate) fn admin() -> WidgetUser {
    WidgetUser {
        user_id: 100,
        is_admin: true,
        audience: PUBLIC_URL.into(),
        lifetime: 300,
    }
}

impl TestApp {
    pub(crate) async fn widget_session(&self, token: &str) -> reqwest::Response {
        self.http
            .post(self.url("/widget/session"))
            .header("x-auth-token", token)
            .header("origin", format!("https://{A}"))
            .send()
            .await
            .unwrap()
    }

    /// The session cookie of a widget user of `domain`, by the whole walk.
    pub(crate) async fn session_cookie(&self, domain: &str, user: &WidgetUser) -> String {
        let token = self.fake.widget_token(domain, user);
        let answer = self.widget_session(&token).await;
        assert_eq!(answer.status(), 200);
        let url = answer.json::<Value>().await.unwrap()["url"]
            .as_str()
            .unwrap()
            .to_owned();
        let path = url
            .strip_prefix(PUBLIC_URL)
            .expect("a link to this service");
        let entered = self.http.get(self.url(path)).send().await.unwrap();
        assert_eq!(entered.status(), 303);
        let cookie = entered.headers()["set-cookie"].to_str().unwrap().to_owned();
        cookie.split(';').next().unwrap().to_owned()
    }

    pub(crate) async fn my(&self, path: &str, cookie: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn my_post(
        &self,
        path: &str,
        cookie: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("cookie", cookie)
            .form(form)
            .send()
            .await
            .unwrap()
    }
}

/// The page's CSRF token and settings version.
pub(crate) async fn form_of(app: &TestApp, cookie: &str) -> (String, String) {
    let page = app.my("/my", cookie).await.text().await.unwrap();
    let value_of = |name: &str| {
        let marker = format!(r#"name="{name}" value=""#);
        let start = page.find(&marker).expect("the field") + marker.len();
        page[start..start + page[start..].find('"').unwrap()].to_owned()
    };
    (value_of("csrf"), value_of("version"))
}

#[tokio::test]
async fn an_administrator_opens_the_page_from_amocrm_and_changes_the_notes() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(A, A_ID).await;

    // The widget's call: CORS for amoCRM's page, a link to this service.
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/widget/session"))
        .header("origin", format!("https://{A}"))
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "x-auth-token")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    assert!(preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("x-auth-token"));
    let token = app.fake.widget_token(A, &admin());
    let answer = app.widget_session(&token).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["access-control-allow-origin"], "*");
    let url = answer.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        url.starts_with(&format!("{PUBLIC_URL}/my/enter?t=")),
        "{url}"
    );
    // amoCRM's token works once.
    assert_eq!(app.widget_session(&token).await.status(), 401);

    // The link sets a session cookie for the account's pages, and works once.
    let path = url.strip_prefix(PUBLIC_URL).unwrap();
    let entered = app.http.get(app.url(path)).send().await.unwrap();
    assert_eq!(entered.status(), 303);
    assert_eq!(entered.headers()["location"], "/my");
    let set = entered.headers()["set-cookie"].to_str().unwrap().to_owned();
    for part in [
        "amohook_my=",
        "Path=/my",
        "HttpOnly",
        "SameSite=Lax",
        "Secure",
    ] {
        assert!(set.contains(part), "{set}");
    }
    assert_eq!(
        app.http.get(app.url(path)).send().await.unwrap().status(),
        401
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = app.my("/my", &cookie).await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains(A), "{page}");
    // No note has read the account's pipelines yet: no ids to show.
    assert!(!page.contains("known-ids"), "{page}");

    // A lead's add and change, stored; the change not yet delivered.
    assert_eq!(
        app.post_hook(
            &key,
            lead_hook(A_ID, "add", 1, "Pedido", 1_712_331_728, &[])
        )
        .await
        .status(),
        200
    );
    app.state.worker.drain().await.unwrap();
    let change = lead_hook(
        A_ID,
        "update",
        1,
        "Pedido",
        1_712_332_931,
        &[("modified_user_id", "101")],
    )
    .replace("%5Bprice%5D=1000&", "%5Bprice%5D=2500&");
    assert_eq!(app.post_hook(&key, change).await.status(), 200);

    let (csrf, version) = form_of(&app, &cookie).await;
    assert_eq!(version, "0");
    let template = "{kind} “{card}” alterado por {author}: {changes}";
    let form = [
        ("csrf", csrf.as_str()),
        ("version", "0"),
        ("leads", "on"),
        ("companies", "on"),
        ("added", "on"),
        ("changed", "on"),
        ("stage", "on"),
        ("responsible", "on"),
        ("lang", "pt"),
        ("changed_template", template),
    ];
    // The preview renders the stored change under the unsaved form.
    let shown = app.my_post("/my/preview", &cookie, &form).await;
    assert_eq!(shown.status(), 200);
    let shown = shown.text().await.unwrap();
    assert!(
        shown.contains("lead “Pedido” alterado por Мария Иванова: Venda: 1000 ₽ → 2500 ₽"),
        "{shown}"
    );
    assert_eq!(
        store::current(&app.pool, A_ID)
            .await
            .unwrap()
            .unwrap()
            .version,
        0
    );

    let saved = app.my_post("/my/settings", &cookie, &form).await;
    assert_eq!(saved.status(), 303);
    assert_eq!(saved.headers()["location"], "/my?done=saved");
    let current = store::current(&app.pool, A_ID).await.unwrap().unwrap();
    assert_eq!(current.version, 1);
    assert_eq!(current.saved_by, "amoCRM user 100");
    assert!(!current.settings.contacts);
    assert_eq!(current.settings.changed_template.as_deref(), Some(template));

    // Stored before the save: today's wording. After it: the account's.
    app.state.worker.drain().await.unwrap();
    assert!(app
        .fake
        .notes()
        .last()
        .unwrap()
        .text
        .starts_with("Изменена сделка"));
    let contact = amocrm_sim::HookBody::new(A_ID)
        .card(
            "add",
            &amocrm_sim::SimCard {
                entity: amocrm_sim::Entity::Contact,
                ..amocrm_sim::SimCard::lead(7, "Ana")
            },
            None,
        )
        .encode();
    let change = lead_hook(
        A_ID,
        "update",
        1,
        "Pedido",
        1_712_333_000,
        &[("modified_user_id", "101")],
    )
    .replace("%5Bprice%5D=1000&", "%5Bprice%5D=3000&");
    let before = app.fake.notes().len();
    assert_eq!(app.post_hook(&key, contact).await.status(), 200);
    assert_eq!(app.post_hook(&key, change).await.status(), 200);
    app.state.worker.drain().await.unwrap();
    let notes: Vec<String> = app.fake.notes()[before..]
        .iter()
        .map(|n| n.text.clone())
        .collect();
    assert_eq!(
        notes,
        ["lead “Pedido” alterado por Мария Иванова: Venda: 2500 ₽ → 3000 ₽"]
    );

    // The form opened on version 0 cannot overwrite version 1 unknowingly.
    let stale = app.my_post("/my/settings", &cookie, &form).await;
    assert_eq!(stale.status(), 409);
    // A broken template is shown back with the reason, nothing saved.
    let (csrf, version) = form_of(&app, &cookie).await;
    let broken = app
        .my_post(
            "/my/settings",
            &cookie,
            &[
                ("csrf", &csrf),
                ("version", &version),
                ("leads", "on"),
                ("added_template", "{card} {nope}"),
            ],
        )
        .await;
    assert_eq!(broken.status(), 422);
    let broken = broken.text().await.unwrap();
    assert!(
        broken.contains("Note of an added card: there is no placeholder {nope}"),
        "{broken}"
    );
    assert!(
        broken.contains("{card} {nope}"),
        "the form keeps what was typed"
    );
    assert_eq!(
        store::current(&app.pool, A_ID)
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
}

#[tokio::test]
async fn the_page_shows_a_failed_note_and_its_retry_button_sends_it_again() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(A, A_ID).await;
    let hook = lead_hook(A_ID, "add", 5, "Заказ", 1_712_331_728, &[]);
    assert_eq!(app.post_hook(&key, hook).await.status(), 200);
    // amoCRM refuses the note (400): the event fails at once.
    app.fake
        .fail_next(A, "/api/v4/leads/notes", amocrm_sim::Fault::Status(400), 1);
    app.state.worker.drain().await.unwrap();
    assert_eq!(app.events().await[0].2, "failed");

    let cookie = app.session_cookie(A, &admin()).await;
    let page = app.my("/my", &cookie).await.text().await.unwrap();
    assert!(page.contains(r#"class="state-failed""#), "{page}");

    assert!(page.contains(r#"action="/my/retry""#), "{page}");
    // Without the page's form token: refused, nothing queued.
    let forged = app.my_post("/my/retry", &cookie, &[("csrf", "0000")]).await;
    assert_eq!(forged.status(), 403);
    assert_eq!(app.events().await[0].2, "failed");

    let (csrf, _) = form_of(&app, &cookie).await;
    let retried = app.my_post("/my/retry", &cookie, &[("csrf", &csrf)]).await;
    assert_eq!(retried.status(), 303);
    assert_eq!(retried.headers()["location"], "/my?done=retried");
    app.state.worker.drain().await.unwrap();
    assert_eq!(app.events().await[0].2, "delivered");
    assert!(app.fake.notes().last().unwrap().text.contains("Заказ"));
    let page = app.my("/my", &cookie).await.text().await.unwrap();
    assert!(
        !page.contains(r#"action="/my/retry""#),
        "no failed note, no button"
    );
}

#[tokio::test]
async fn the_filters_show_the_pipelines_and_stages_the_notes_have_read_with_their_ids() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(A, A_ID).await;
    let cookie = app.session_cookie(A, &admin()).await;
    let page = app.my("/my", &cookie).await.text().await.unwrap();
    assert!(!page.contains("known-ids"), "nothing read yet: {page}");

    // A lead added, then moved on: the move's note names the stages, so
    // its round reads them.
    let added = lead_hook(A_ID, "add", 7, "Pedido", 1_712_331_700, &[]);
    assert_eq!(app.post_hook(&key, added).await.status(), 200);
    app.state.worker.drain().await.unwrap();
    let moved = lead_hook(
        A_ID,
        "update",
        7,
        "Pedido",
        1_712_331_728,
        &[("status_id", "2"), ("old_status_id", "1")],
    )
    .replace("leads%5Bupdate%5D%5B0%5D%5Bstatus_id%5D=1&", "");
    assert_eq!(app.post_hook(&key, moved).await.status(), 200);
    app.state.worker.drain().await.unwrap();
    assert!(app.fake.notes().last().unwrap().text.contains("Переговоры"));

    let page = app.my("/my", &cookie).await.text().await.unwrap();
    assert!(
        page.contains("<b>Продажи</b> 10: Новая 1, Переговоры 2, Успешно реализовано 142"),
        "{page}"
    );
}
