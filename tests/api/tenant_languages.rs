//! The account's page in the browser's language: English, Russian, Spanish,
//! Portuguese, in words, times, states, and what is wrong with a form.

use crate::helpers::{lead_hook, TestApp};
use crate::tenant::*;

#[tokio::test]
async fn the_page_speaks_the_first_of_the_browsers_languages_it_has() {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(A, A_ID).await;
    let hook = lead_hook(A_ID, "add", 5, "Pedido", 1_712_331_728, &[]);
    assert_eq!(app.post_hook(&key, hook).await.status(), 200);
    app.fake
        .fail_next(A, "/api/v4/leads/notes", amocrm_sim::Fault::Status(400), 1);
    app.state.worker.drain().await.unwrap();
    let cookie = app.session_cookie(A, &admin()).await;
    let page_in = |accept: &'static str| {
        let request = app
            .http
            .get(app.url("/my"))
            .header("cookie", &cookie)
            .header("accept-language", accept);
        async move { request.send().await.unwrap().text().await.unwrap() }
    };

    // Kommo's markets: Spanish and Portuguese, in words and times.
    let es = page_in("es-419,es;q=0.9").await;
    assert!(es.contains(r#"<html lang="es">"#), "{es}");
    for words in [
        "Notas de amohook",
        "amoCRM envía los cambios de esta cuenta",
        "Lead #5",
        ">con error<",
        "Guardar",
        "ahora mismo",
    ] {
        assert!(es.contains(words), "{words}: {es}");
    }
    let pt = page_in("pt-BR").await;
    for words in [
        r#"<html lang="pt">"#,
        "Notas do amohook",
        "amoCRM envia as alterações desta conta",
        ">com erro<",
        "Salvar",
    ] {
        assert!(pt.contains(words), "{words}: {pt}");
    }
    // A language the page does not have is passed over for the next one.
    let ru = page_in("de-DE,de;q=0.9,ru;q=0.8").await;
    for words in ["Примечания amohook", "Сделка #5", ">ошибка<", "только что"]
    {
        assert!(ru.contains(words), "{words}: {ru}");
    }
    // What is wrong with a form is said in the page's language too.
    let (csrf, version) = form_of(&app, &cookie).await;
    let refused = app
        .http
        .post(app.url("/my/settings"))
        .header("cookie", &cookie)
        .header("accept-language", "pt-BR")
        .form(&[
            ("csrf", csrf.as_str()),
            ("version", version.as_str()),
            ("pipelines", "Vendas"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let refused = refused.text().await.unwrap();
    assert!(
        refused.contains("Não salvo: Somente leads destes funis: “Vendas” não é um id."),
        "{refused}"
    );
    let en = page_in("fr-FR").await;
    assert!(en.contains("amoCRM sends this account"), "{en}");
    assert!(!en.contains("{platform}"));
}
