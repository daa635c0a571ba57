//! The admin pages in a real browser: HTTP Basic login, the accounts table,
//! sorting by a column, an account's page with the hook it received, the
//! status page on a laptop's screen, and the sandbox as a user tries it.

use std::path::PathBuf;

use serde_json::json;

use crate::cdp::{self, Browser};
use crate::helpers::{lead_hook, TestApp};

const TOKEN: &str = "browser-test-admin-token-0123456789";

/// The account ids of the table's rows, top to bottom.
const ROW_IDS: &str =
    "[...document.querySelectorAll('#accounts tbody tr')].map(r => r.dataset.accountId)";

/// Where screenshots go: `<target dir>/screenshots`, for a person to look at.
pub(crate) fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).expect("screenshots folder");
    dir
}

fn assert_png(path: &std::path::Path) {
    let bytes = std::fs::read(path).expect("screenshot written");
    assert!(
        bytes.len() > 8 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
}

#[tokio::test]
async fn a_browser_logs_in_sees_the_accounts_sorts_and_opens_one() -> anyhow::Result<()> {
    let Some(chromium) = cdp::chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!("Chromium is missing: .ci/run must install the `chromium` package (or set CHROMIUM)");
        }
        eprintln!("SKIPPED a_browser_logs_in_sees_the_accounts_sorts_and_opens_one: no Chromium (install `chromium` or set CHROMIUM)");
        return Ok(());
    };
    let app = TestApp::spawn_with(|env| {
        env.insert("AMOHOOK_ADMIN__TOKEN".into(), TOKEN.into());
    })
    .await;
    app.connected("alpha.amocrm.ru", 41_000_001).await;
    let bravo = app.connected("bravo.kommo.com", 41_000_002).await;
    app.connected("charlie.amocrm.ru", 41_000_003).await;
    let hook = lead_hook(41_000_002, "add", 1, "X", 1_712_331_728, &[]);
    assert_eq!(app.post_hook(&bravo, hook).await.status(), 200);

    // Without credentials the page asks the browser for them.
    let response = app.get("/status").await;
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"].to_str()?;
    assert!(challenge.starts_with("Basic"), "{challenge}");

    let browser = Browser::launch(&chromium).await?;
    browser.basic_auth("admin", TOKEN).await?;
    browser.navigate(&app.url("/status")).await?;
    let shots = screenshots();
    browser.screenshot(&shots.join("status.png")).await?;
    assert_png(&shots.join("status.png"));

    // By domain, A to Z, by default; the domain header turns it around.
    let rows = browser.eval(ROW_IDS).await?;
    assert_eq!(rows, json!(["41000001", "41000002", "41000003"]), "default");
    browser.click(r#"a.sort[data-sort="domain"]"#).await?;
    let rows = browser.eval(ROW_IDS).await?;
    assert_eq!(rows, json!(["41000003", "41000002", "41000001"]), "Z to A");

    browser
        .click(r#"tr[data-account-id="41000002"] a.details"#)
        .await?;
    assert_eq!(
        browser.eval("location.pathname").await?,
        "/status/accounts/41000002"
    );
    let h1 = browser
        .eval("document.querySelector('h1').textContent")
        .await?;
    assert!(
        h1.as_str().is_some_and(|h| h.contains("bravo.kommo.com")),
        "h1: {h1}"
    );
    let events = browser
        .eval("document.querySelectorAll('#events tbody tr').length")
        .await?;
    assert!(
        events.as_u64() >= Some(1),
        "the received hook is listed: {events}"
    );
    browser.screenshot(&shots.join("account.png")).await?;
    assert_png(&shots.join("account.png"));
    Ok(())
}

pub(crate) fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    let chromium = cdp::chromium();
    if chromium.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("Chromium is missing: .ci/run must install the `chromium` package (or set CHROMIUM)");
        }
        eprintln!("SKIPPED {test}: no Chromium (install `chromium` or set CHROMIUM)");
    }
    chromium
}

/// The width of a laptop's screen, in CSS pixels.
const LAPTOP: u64 = 1280;

/// Measures the status page at `LAPTOP` pixels: (the page's width, the
/// table's width, the table box's width, the distinct tops of the totals).
async fn measure(browser: &Browser) -> anyhow::Result<(u64, u64, u64, usize)> {
    let m = browser
        .eval(
            "(() => { const box = document.querySelector('#accounts').parentElement; \
             const tops = new Set([...document.querySelectorAll('.totals .total')].map(t => t.offsetTop)); \
             return [document.scrollingElement.scrollWidth, box.scrollWidth, box.clientWidth, tops.size]; })()",
        )
        .await?;
    let n = |i: usize| m[i].as_u64().unwrap_or(u64::MAX);
    Ok((n(0), n(1), n(2), n(3) as usize))
}

#[tokio::test]
async fn the_status_page_fits_a_laptop_screen_in_both_languages() -> anyhow::Result<()> {
    let Some(chromium) = chromium_or_skip("the_status_page_fits_a_laptop_screen_in_both_languages")
    else {
        return Ok(());
    };
    let app = TestApp::spawn_with(|env| {
        env.insert("AMOHOOK_ADMIN__TOKEN".into(), TOKEN.into());
    })
    .await;
    // Long names, big numbers and an error, as a real table has them.
    let long = "torgovyi-dom-severnaya-kompaniya-2024.amocrm.ru";
    let key = app.connected(long, 41_000_101).await;
    app.connected("international-trading-group-europe.kommo.com", 41_000_102)
        .await;
    app.connected("charlie.amocrm.ru", 41_000_103).await;
    app.fake.refuse_notes_for(99);
    for id in [98, 99] {
        let hook = lead_hook(41_000_101, "add", id, "Заказ", 1_712_331_728, &[]);
        assert_eq!(app.post_hook(&key, hook).await.status(), 200);
    }
    let mut failed = false;
    for _ in 0..300 {
        failed = app.events().await.iter().any(|e| e.2 == "failed");
        if failed {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(failed, "a refused note makes the row show an error");

    let browser = Browser::launch(&chromium).await?;
    browser.basic_auth("admin", TOKEN).await?;
    let screen = json!({ "width": LAPTOP, "height": 800, "deviceScaleFactor": 1, "mobile": false });
    browser
        .call("Emulation.setDeviceMetricsOverride", screen)
        .await?;
    for language in ["en", "ru"] {
        let agent = json!({ "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome", "acceptLanguage": language });
        browser
            .call("Emulation.setUserAgentOverride", agent)
            .await?;
        browser.navigate(&app.url("/status")).await?;
        assert_eq!(
            browser.eval("document.documentElement.lang").await?,
            language
        );
        let error = browser
            .eval(
                r#"document.querySelector('tr[data-account-id="41000101"] td.error').textContent"#,
            )
            .await?;
        assert!(
            error
                .as_str()
                .is_some_and(|e| e.contains("Entity not found")),
            "{error}"
        );
        let (page, table, table_box, rows_of_totals) = measure(&browser).await?;
        assert!(page <= LAPTOP, "{language}: the page is {page} px wide");
        assert!(
            table <= table_box,
            "{language}: the table ({table} px) scrolls in its box ({table_box} px)"
        );
        assert_eq!(rows_of_totals, 1, "{language}: the totals sit in one row");
        browser
            .screenshot(&screenshots().join(format!("status-1280-{language}.png")))
            .await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_user_tries_the_sandbox_a_lead_becomes_a_note_and_outlives_429s() -> anyhow::Result<()> {
    let Some(chromium) =
        chromium_or_skip("a_user_tries_the_sandbox_a_lead_becomes_a_note_and_outlives_429s")
    else {
        return Ok(());
    };
    let mut sb = crate::sandbox::TestSandbox::start().await;
    let domain = "roga.amocrm.ru";
    let browser = Browser::launch(&chromium).await?;
    browser.basic_auth("admin", &sb.token).await?;

    // The status page lists both demo accounts; one opens.
    browser.navigate(&format!("{}/status", sb.base)).await?;
    assert_eq!(
        browser.eval(ROW_IDS).await?,
        json!(["31000002", "31000001"])
    );
    browser
        .click(r#"tr[data-account-id="31000001"] a.details"#)
        .await?;
    assert_eq!(
        browser.eval("location.pathname").await?,
        "/status/accounts/31000001"
    );

    // A lead saved with the form; its note appears in the card.
    add_lead(&browser, "Заказ из браузера", "2500").await?;
    let notes = notes_shown(&browser, &sb.base, "Создана сделка «Заказ из браузера»").await?;
    assert!(notes.contains("Ответственный: Иван Петров."), "{notes}");
    browser
        .screenshot(&screenshots().join("sandbox.png"))
        .await?;

    // 429s switched on: the next lead waits, then goes out once they end.
    browser.click(r#"button[data-fault="429"]"#).await?;
    let fault = browser
        .eval("document.querySelector('#sandbox-fault').textContent")
        .await?;
    assert!(fault.as_str().is_some_and(|f| f.contains("429")), "{fault}");
    add_lead(&browser, "Второй заказ", "").await?;
    notes_shown(&browser, &sb.base, "Создана сделка «Второй заказ»").await?;
    assert!(
        sb.sim().count_status(domain, 429) >= 1,
        "amohook met the 429s before the note went out"
    );
    assert!(sb.sim().held(domain).is_none(), "the fault had ended");
    let newest = browser
        .eval("document.querySelector('#events tbody tr').className")
        .await?;
    assert_eq!(newest, "state-delivered");
    assert_eq!(sb.sim().notes().len(), 2, "each lead noted once");
    sb.stop().await;
    Ok(())
}

/// Fills the sandbox form with a new lead and saves it.
pub(crate) async fn add_lead(browser: &Browser, name: &str, price: &str) -> anyhow::Result<()> {
    let (name, price) = (serde_json::to_string(name)?, serde_json::to_string(price)?);
    browser
        .eval(&format!(
            "(() => {{ const f = document.querySelector('#sandbox-card').elements; \
             f['card'].value = 'new-lead'; f['name'].value = {name}; f['price'].value = {price}; }})()"
        ))
        .await?;
    browser.click("#sandbox-card button[type=submit]").await?;
    let done = browser
        .eval("(document.querySelector('.notice.ok') || document.body).textContent")
        .await?;
    anyhow::ensure!(
        done.as_str().is_some_and(|d| d.contains("answered 200")),
        "the hook was not answered 200: {done}"
    );
    Ok(())
}

/// Reloads the account page (up to a minute) until its notes show `text`;
/// returns the notes' text.
pub(crate) async fn notes_shown(
    browser: &Browser,
    base: &str,
    text: &str,
) -> anyhow::Result<String> {
    for _ in 0..120 {
        browser
            .navigate(&format!("{base}/status/accounts/31000001"))
            .await?;
        let notes = browser
            .eval("document.querySelector('#sandbox-notes').innerText")
            .await?;
        let notes = notes.as_str().unwrap_or_default().to_owned();
        if notes.contains(text) {
            return Ok(notes);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    anyhow::bail!("the page never showed a note with {text:?}")
}
