//! The admin pages in a real browser: HTTP Basic login, the accounts table,
//! sorting by a column, and an account's page with the hook it received.

use std::path::PathBuf;

use serde_json::json;

use crate::cdp::{self, Browser};
use crate::helpers::{lead_hook, TestApp};

const TOKEN: &str = "browser-test-admin-token-0123456789";

/// The account ids of the table's rows, top to bottom.
const ROW_IDS: &str =
    "[...document.querySelectorAll('#accounts tbody tr')].map(r => r.dataset.accountId)";

/// Where screenshots go: `<target dir>/screenshots`, for a person to look at.
fn screenshots() -> PathBuf {
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
