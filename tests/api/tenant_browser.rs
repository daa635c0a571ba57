//! The account's own page in real Chromium, reached the way an account's
//! administrator reaches it: amoCRM's widget settings (the simulator's
//! widget frame running the archive's own script.js) give the link; the
//! page works in English and Russian, on a laptop and on a phone.

use amohook::{account_settings::store, platform::Platform, widget::Widget};
use serde_json::json;

use crate::browser::{chromium_or_skip, screenshots};
use crate::cdp::Browser;
use crate::helpers::{lead_hook, TestApp, CLIENT_ID, PUBLIC_URL};

const DOMAIN: &str = "vostok.amocrm.ru";
const ID: i64 = 47_000_001;

/// The widget as `amohook widget` builds it, installed in the simulator.
fn install_widget(app: &TestApp) {
    let widget = Widget {
        platform: Platform::Amocrm,
        // The page's own address: the frame's script calls it.
        base_url: app.address.clone(),
        client_id: CLIENT_ID.into(),
        support_email: "help@example.com".into(),
    };
    let words = ["ru", "en"]
        .iter()
        .map(|lang| {
            let text = amohook::widget::words(lang).unwrap();
            ((*lang).to_owned(), serde_json::from_str(text).unwrap())
        })
        .collect();
    app.fake
        .install_widget(amocrm_sim::widget::InstalledWidget {
            script: widget.script(),
            words,
            audience: PUBLIC_URL.into(),
        });
}

/// Waits for the widget's link in the frame; its href, or the status text.
const LINK: &str = "new Promise((ok, fail) => { let n = 0; const t = setInterval(() => { \
    const a = document.querySelector('.amohook-link'); \
    if (a && !a.hidden && a.href) { clearInterval(t); ok(a.href); } \
    else if (++n > 200) { clearInterval(t); fail(new Error(document.querySelector('.amohook-status').textContent)); } \
    }, 25); })";

#[tokio::test]
async fn an_administrator_changes_the_notes_from_amocrm_in_both_languages_on_laptop_and_phone(
) -> anyhow::Result<()> {
    let Some(chromium) = chromium_or_skip(
        "an_administrator_changes_the_notes_from_amocrm_in_both_languages_on_laptop_and_phone",
    ) else {
        return Ok(());
    };
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected(DOMAIN, ID).await;
    install_widget(&app);
    let hook = lead_hook(ID, "add", 1, "Заказ <b>#1</b>", 1_712_331_728, &[]);
    assert_eq!(app.post_hook(&key, hook).await.status(), 200);
    app.state.worker.drain().await?;

    let browser = Browser::launch(&chromium).await?;
    let screens = [("1280", 1280, 800, false), ("phone", 390, 844, true)];
    let mut version = 0;
    for language in ["en", "ru"] {
        let agent = json!({ "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome", "acceptLanguage": language });
        browser
            .call("Emulation.setUserAgentOverride", agent)
            .await?;
        for (name, width, height, mobile) in screens {
            let screen = json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile });
            browser
                .call("Emulation.setDeviceMetricsOverride", screen)
                .await?;

            // In amoCRM: the widget's settings give the link.
            browser
                .navigate(&app.fake.widget_frame_url(DOMAIN, 100, true, language))
                .await?;
            let link = browser.eval(LINK).await?;
            let link = link.as_str().expect("a link").to_owned();
            assert!(
                link.starts_with(&format!("{PUBLIC_URL}/my/enter?t=")),
                "{link}"
            );
            let open = browser
                .eval("document.querySelector('.amohook-link').textContent")
                .await?;
            let expected = if language == "ru" {
                "Открыть настройки amohook"
            } else {
                "Open amohook settings"
            };
            assert_eq!(open, expected);
            // The link names the public address; here the service is local.
            browser
                .navigate(&link.replace(PUBLIC_URL, &app.address))
                .await?;
            assert_eq!(browser.eval("location.pathname").await?, "/my");
            assert_eq!(
                browser.eval("document.documentElement.lang").await?,
                language
            );
            // The card's name is text, not markup.
            let notes = browser
                .eval("document.querySelector('#notes').textContent")
                .await?;
            assert!(
                notes.as_str().unwrap().contains("Заказ <b>#1</b>"),
                "{notes}"
            );
            let wide = browser
                .eval("document.scrollingElement.scrollWidth")
                .await?;
            assert!(
                wide.as_u64().unwrap() <= width,
                "{language} {name}: the page is {wide} px wide on a {width} px screen"
            );

            // Contacts off, Portuguese, a template; the preview, then save.
            browser
                .eval(
                    "(() => { document.querySelector('input[name=contacts]').checked = false; \
                     document.querySelector('select[name=lang]').value = 'pt'; \
                     document.querySelector('textarea[name=added_template]').value = 'Novo: {card} ({responsible})'; })()",
                )
                .await?;
            browser.click("#preview-button").await?;
            let preview = browser
                .eval("document.querySelector('#preview').textContent")
                .await?;
            assert!(
                preview
                    .as_str()
                    .unwrap()
                    .contains("Novo: Заказ <b>#1</b> (Иван Петров)"),
                "{preview}"
            );
            // The preview keeps the form as typed.
            assert_eq!(
                browser
                    .eval("document.querySelector('select[name=lang]').value")
                    .await?,
                "pt"
            );
            browser.click("#save-button").await?;
            assert_eq!(browser.eval("location.search").await?, "?done=saved");
            assert!(browser
                .eval("document.querySelector('#message') !== null")
                .await?
                .as_bool()
                .unwrap());
            version += 1;
            let current = store::current(&app.pool, ID).await?.unwrap();
            assert_eq!(current.version, version);
            assert!(!current.settings.contacts);
            assert_eq!(current.settings.lang.as_deref(), Some("pt"));
            browser
                .screenshot(&screenshots().join(format!("my-{name}-{language}.png")))
                .await?;
        }
    }

    // A user who is not an administrator gets the reason in the widget.
    browser
        .navigate(&app.fake.widget_frame_url(DOMAIN, 101, false, "en"))
        .await?;
    let refused = browser.eval(LINK).await;
    let refused = format!("{:?}", refused.expect_err("no link for a non-admin"));
    assert!(
        refused.contains("Only the account's administrators"),
        "{refused}"
    );
    Ok(())
}

#[tokio::test]
async fn the_sandbox_walks_from_amocrm_to_the_accounts_page_and_the_next_note_follows(
) -> anyhow::Result<()> {
    let Some(chromium) = chromium_or_skip(
        "the_sandbox_walks_from_amocrm_to_the_accounts_page_and_the_next_note_follows",
    ) else {
        return Ok(());
    };
    let mut sb = crate::sandbox::TestSandbox::start().await;
    let browser = Browser::launch(&chromium).await?;
    browser.basic_auth("admin", &sb.token).await?;
    let agent =
        json!({ "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome", "acceptLanguage": "en" });
    browser
        .call("Emulation.setUserAgentOverride", agent)
        .await?;

    // The sandbox's account page leads to amoCRM's widget settings...
    browser
        .navigate(&format!("{}/status/accounts/31000001", sb.base))
        .await?;
    let frame = browser
        .eval("document.querySelector('#sandbox-widget').href")
        .await?;
    browser.navigate(frame.as_str().expect("a link")).await?;
    // ...whose link opens the account's own page.
    let link = browser.eval(LINK).await?;
    browser.navigate(link.as_str().expect("a link")).await?;
    assert_eq!(browser.eval("location.pathname").await?, "/my");
    browser
        .eval(
            "(() => { document.querySelector('select[name=lang]').value = 'pt'; \
             document.querySelector('textarea[name=added_template]').value = 'Novo no sandbox: {card}'; })()",
        )
        .await?;
    browser.click("#save-button").await?;
    assert_eq!(browser.eval("location.search").await?, "?done=saved");

    // The next lead's note follows the account's template.
    browser
        .navigate(&format!("{}/status/accounts/31000001", sb.base))
        .await?;
    crate::browser::add_lead(&browser, "Pedido do navegador", "900").await?;
    crate::browser::notes_shown(&browser, &sb.base, "Novo no sandbox: Pedido do navegador").await?;
    sb.stop().await;
    Ok(())
}
