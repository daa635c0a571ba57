//! `amohook sandbox`: the demo accounts installed through the real flow,
//! a card saved on the account page becoming a note, a revoked grant and
//! the reinstall through the simulator's grant page; and `serve`, which
//! has none of the sandbox's pages.

use std::time::Duration;

use amohook::sandbox::{self, Running};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, TestDb};

const TOKEN: &str = "sandbox-test-admin-token-0123456789";

/// A free local port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The CSRF token of an account page's forms.
pub fn csrf_of(page: &str) -> String {
    let start = page
        .find(r#"name="csrf" value=""#)
        .expect("a form with csrf")
        + 19;
    page[start..start + 64].to_owned()
}

/// A running sandbox on its own database; stops on drop.
pub struct TestSandbox {
    pub running: Option<Running>,
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    // Last: dropped after the service stopped.
    _db: TestDb,
}

impl TestSandbox {
    pub async fn start() -> TestSandbox {
        let db = TestDb::new();
        let shutdown = CancellationToken::new();
        let options = sandbox::Options {
            database_url: db.url.clone(),
            listen: ([127, 0, 0, 1], free_port()).into(),
        };
        let running = sandbox::start(options, shutdown.clone())
            .await
            .expect("the sandbox starts");
        TestSandbox {
            base: running.base_url.clone(),
            token: running.admin_token.clone(),
            running: Some(running),
            http: amohook::amocrm::http_client()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            shutdown,
            _db: db,
        }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    pub fn sim(&self) -> &amocrm_sim::Simulator {
        self.running().sandbox.simulator()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    pub async fn json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }

    /// Posts a sandbox form of account `id` with the page's CSRF token;
    /// returns the `done` message it redirected with.
    pub async fn post(&self, id: i64, form: &str, fields: &[(&str, &str)]) -> String {
        let page = self.get(&format!("/status/accounts/{id}")).await;
        let csrf = csrf_of(&page.text().await.unwrap());
        let mut body = vec![("csrf", csrf.as_str())];
        body.extend_from_slice(fields);
        let response = self
            .http
            .post(format!("{}/status/accounts/{id}/sandbox/{form}", self.base))
            .bearer_auth(&self.token)
            .form(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "{form}: {fields:?}");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let url = url::Url::parse(&format!("{}{location}", self.base)).unwrap();
        url.query_pairs()
            .find(|(k, _)| k == "done")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    }

    /// Waits (up to `secs`) for the simulated amoCRM to hold a note on
    /// `domain` whose text contains `text`.
    pub async fn note_containing(&self, domain: &str, text: &str, secs: u64) -> String {
        for _ in 0..secs * 10 {
            if let Some(note) = self
                .sim()
                .notes()
                .into_iter()
                .find(|n| n.domain == domain && n.text.contains(text))
            {
                return note.text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no note containing {text:?} on {domain}: {:?}",
            self.sim().notes()
        );
    }

    pub async fn account_status(&self, id: i64) -> String {
        self.json(&format!("/api/accounts/{id}")).await["display_status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Stops the service as SIGTERM does; it must stop cleanly.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        let running = self.running.take().expect("running");
        running.wait().await.expect("the sandbox stops cleanly");
    }
}

impl Drop for TestSandbox {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[tokio::test]
async fn serve_has_none_of_the_sandbox_pages() {
    let app = TestApp::spawn_with(|env| {
        env.insert("AMOHOOK_ADMIN__TOKEN".into(), TOKEN.into());
    })
    .await;
    app.connected("alpha.amocrm.ru", 41_500_001).await;
    let page = app
        .get_with_token("/status/accounts/41500001", TOKEN)
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains(r#"id="sandbox""#), "no sandbox panel");
    // A valid form, as the sandbox's page would post it: not there at all.
    let csrf = csrf_of(&page);
    for (path, field) in [
        (
            "/status/accounts/41500001/sandbox/card",
            ("card", "new-lead"),
        ),
        ("/status/accounts/41500001/sandbox/fault", ("fault", "429")),
    ] {
        let response = app
            .http
            .post(app.url(path))
            .bearer_auth(TOKEN)
            .form(&[("csrf", csrf.as_str()), field])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    assert!(app.fake.webhooks().len() == 1 && app.fake.notes().is_empty());
}

#[tokio::test]
async fn the_sandbox_installs_its_demo_accounts_and_turns_saved_cards_into_notes() {
    let mut sb = TestSandbox::start().await;
    let accounts = sb.running().accounts.clone();
    assert_eq!(
        accounts,
        vec![
            (31_000_001, "roga.amocrm.ru".to_owned()),
            (31_000_002, "acme.kommo.com".to_owned())
        ]
    );
    // Installed through the real flow: connected, web-hooks subscribed to
    // the service's own hook URLs.
    let list = sb.json("/api/accounts").await;
    assert_eq!(list["total"], 2, "{list}");
    for (id, _) in &accounts {
        let one = sb.json(&format!("/api/accounts/{id}")).await;
        assert_eq!(one["display_status"], "active", "{one}");
        assert_eq!(one["webhooks_subscribed"], true, "{one}");
    }
    let subscriptions = sb.sim().webhooks();
    assert_eq!(subscriptions.len(), 2);
    for (_, hook) in &subscriptions {
        let destination = hook["destination"].as_str().unwrap();
        assert!(destination.starts_with(&format!("{}/hooks/", sb.base)));
    }
    // The panel is on the account page, the sandbox's own page.
    let page = sb
        .get("/status/accounts/31000001")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"id="sandbox""#));

    // A lead saved in each account: amoCRM's hook, amohook's note, in the
    // account's language.
    let done = sb
        .post(
            31_000_001,
            "card",
            &[("card", "new-lead"), ("name", "Заказ 1"), ("price", "2500")],
        )
        .await;
    assert!(
        done.contains("added") && done.ends_with("answered 200"),
        "{done}"
    );
    let note = sb.note_containing("roga.amocrm.ru", "Заказ 1", 30).await;
    assert!(
        note.starts_with("Создана сделка «Заказ 1». Ответственный: Иван Петров."),
        "{note}"
    );
    let done = sb
        .post(
            31_000_002,
            "card",
            &[
                ("card", "new-company"),
                ("name", "Globex"),
                ("responsible", "201"),
            ],
        )
        .await;
    assert!(done.ends_with("answered 200"), "{done}");
    let note = sb.note_containing("acme.kommo.com", "Globex", 30).await;
    assert!(
        note.starts_with("Company added: “Globex”. Responsible: John Brown."),
        "{note}"
    );

    // A change of the lead: what changed, old and new.
    let lead = sb.sim().cards("roga.amocrm.ru")[0].clone();
    let card = format!("lead-{}", lead.id);
    let done = sb
        .post(
            31_000_001,
            "card",
            &[("card", &card), ("price", "5000"), ("status", "2")],
        )
        .await;
    assert!(done.contains("changed"), "{done}");
    let note = sb.note_containing("roga.amocrm.ru", "Изменена", 30).await;
    assert!(
        note.contains("Бюджет: 2500 ₽ → 5000 ₽; Этап: Новая → Переговоры."),
        "{note}"
    );
    // A save that changes nothing sends no hook.
    let done = sb
        .post(31_000_001, "card", &[("card", &card), ("price", "5000")])
        .await;
    assert!(done.starts_with("nothing changed"), "{done}");
    // The notes are shown on the page, under their card.
    let page = sb
        .get("/status/accounts/31000001")
        .await
        .text()
        .await
        .unwrap();
    let notes = &page[page.find(r#"id="sandbox-notes""#).unwrap()..];
    assert!(notes.contains("Создана сделка «Заказ 1»"), "{notes}");
    assert!(notes.contains("Бюджет: 2500 ₽ → 5000 ₽"), "{notes}");
    assert_eq!(sb.sim().notes().len(), 3);
    sb.stop().await;
}

#[tokio::test]
async fn a_revoked_grant_is_seen_and_the_grant_page_installs_the_account_again() {
    let mut sb = TestSandbox::start().await;
    let domain = "acme.kommo.com";
    assert!(sb
        .post(31_000_002, "fault", &[("fault", "revoke")])
        .await
        .contains("revoked"));
    sb.post(
        31_000_002,
        "card",
        &[("card", "new-lead"), ("name", "Waiting")],
    )
    .await;
    // The next call finds the grant dead: the account must reinstall, and
    // its note waits.
    let mut status = String::new();
    for _ in 0..300 {
        status = sb.account_status(31_000_002).await;
        if status == "reauth_required" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "reauth_required");
    assert!(sb.sim().notes().is_empty());

    // The account page's reinstall link (Kommo's install page: the
    // sandbox has an integration on each platform), the simulator's grant
    // page, the account.
    let account = sb
        .get("/status/accounts/31000002")
        .await
        .text()
        .await
        .unwrap();
    let reinstall = &account[account.find(r#"id="reinstall""#).expect("a reinstall link")..];
    let link_start = reinstall.find("href=\"").unwrap() + 6;
    let link = &reinstall[link_start..link_start + reinstall[link_start..].find('"').unwrap()];
    assert_eq!(link, format!("{}/install?platform=kommo", sb.base));
    let install = sb.get("/install?platform=kommo").await;
    assert_eq!(install.status(), 303);
    let grant = install.headers()["location"].to_str().unwrap().to_owned();
    let page = sb
        .http
        .get(&grant)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = format!(r#"data-domain="{domain}" href=""#);
    let start = page.find(&marker).expect("the account is offered") + marker.len();
    let href = page[start..start + page[start..].find('"').unwrap()].replace("&amp;", "&");
    let grant = url::Url::parse(&grant).unwrap();
    let allow = grant.join(&href).unwrap();
    let allowed = sb.http.get(allow).send().await.unwrap();
    assert_eq!(allowed.status(), 303);
    let callback = allowed.headers()["location"].to_str().unwrap().to_owned();
    assert!(callback.starts_with(&format!("{}/oauth/callback?", sb.base)));
    let done = sb.http.get(&callback).send().await.unwrap();
    let status = done.status();
    let text = done.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(sb.account_status(31_000_002).await, "active");
    // The waiting note goes out after the reinstall.
    let note = sb.note_containing(domain, "Waiting", 30).await;
    assert!(note.starts_with("Lead added: “Waiting”."), "{note}");
    sb.stop().await;
}
