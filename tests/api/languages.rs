//! Notes in the account's language: the installing user's (`lang` of the
//! user amoCRM names at the install), changed on the account page or
//! through the admin API, for every note that is written after the change.

use amocrm_sim::SimAccount;

use crate::admin::{admin_app, csrf_of, TOKEN};
use crate::helpers::{lead_hook, TestApp};

const DOMAIN: &str = "brasil.kommo.com";
const ID: i64 = 44_000_001;

async fn last_note(app: &TestApp, key: &str, body: String) -> String {
    assert_eq!(app.post_hook(key, body).await.status(), 200);
    app.state.worker.drain().await.unwrap();
    app.fake.notes().last().expect("a note").text.clone()
}

#[tokio::test]
async fn notes_take_the_installers_language_and_the_admin_can_change_it() {
    let app = admin_app().await;
    let mut account = SimAccount::new(ID);
    account.lang = Some("pt".into());
    let key = app.connected_as(DOMAIN, account).await;
    assert_eq!(
        app.admin_json(&format!("/api/accounts/{ID}")).await["note_lang"],
        "pt"
    );

    let note = last_note(
        &app,
        &key,
        lead_hook(ID, "add", 1, "Pedido", 1_712_331_728, &[]),
    )
    .await;
    assert_eq!(
        note,
        "Lead criado: “Pedido”. Responsável: Иван Петров. Criado em: 05.04.2024 18:42:08"
    );

    // Through the API: Spanish from the next note on.
    let set = app
        .http
        .post(app.url(&format!("/api/accounts/{ID}/language?lang=es")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert!(set.text().await.unwrap().contains("Español"));
    let update = lead_hook(
        ID,
        "update",
        1,
        "Pedido",
        1_712_332_931,
        &[("price", "2500")],
    )
    .replace("leads%5Bupdate%5D%5B0%5D%5Bprice%5D=1000&", "");
    let note = last_note(&app, &key, update).await;
    assert_eq!(
        note,
        "Lead modificado: «Pedido»: Venta: 1000 ₽ → 2500 ₽. Modificado: 05.04.2024 19:02:11"
    );
    // The note already written keeps its words.
    assert!(app.fake.notes()[0].text.starts_with("Lead criado"));

    // On the account page: back to the default, the installer's language.
    let page = app
        .admin_get(&format!("/status/accounts/{ID}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"<option value="es" selected>Español</option>"#),
        "{page}"
    );
    let csrf = csrf_of(&app, ID).await;
    let form = app
        .http
        .post(app.url(&format!("/status/accounts/{ID}/language")))
        .bearer_auth(TOKEN)
        .form(&[("csrf", csrf.as_str()), ("lang", "auto")])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 303);
    assert_eq!(
        app.admin_json(&format!("/api/accounts/{ID}")).await["note_lang"],
        "pt"
    );
    let note = last_note(
        &app,
        &key,
        lead_hook(ID, "add", 2, "Order", 1_712_331_728, &[]),
    )
    .await;
    assert!(note.starts_with("Lead criado: “Order”."), "{note}");

    // A language amohook has no words for is refused, and changes nothing.
    let bad = app
        .http
        .post(app.url(&format!("/api/accounts/{ID}/language?lang=de")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(
        app.admin_json(&format!("/api/accounts/{ID}")).await["note_lang"],
        "pt"
    );
}

#[tokio::test]
async fn a_reinstall_keeps_the_chosen_language_and_an_unread_user_leaves_the_domains() {
    let app = admin_app().await;
    let mut account = SimAccount::new(ID);
    account.lang = Some("es".into());
    app.connected_as(DOMAIN, account).await;
    let set = app
        .http
        .post(app.url(&format!("/api/accounts/{ID}/language?lang=pt")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(app.install(DOMAIN).await.status(), 200);
    assert_eq!(
        app.admin_json(&format!("/api/accounts/{ID}")).await["note_lang"],
        "pt"
    );

    // amoCRM does not say who installed (an answer without the user):
    // the domain decides.
    app.fake.fail_next(
        "ruso.amocrm.ru",
        "/api/v4/users/",
        amocrm_sim::Fault::Status(404),
        1,
    );
    app.connected("ruso.amocrm.ru", 44_000_002).await;
    assert_eq!(
        app.admin_json("/api/accounts/44000002").await["note_lang"],
        serde_json::Value::Null
    );
}
