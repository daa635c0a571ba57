//! The admin API's commands as docs/ prints them, run with curl exactly as
//! printed: only the address (`https://amohook.example.com`) and the token
//! (`your-admin-token`) are this test's. A `.curlrc` of the test's own adds
//! `--fail-with-body`, so an answer of 400 or more fails the block, and
//! bash's `-e` stops at the first failing command.

use std::process::Stdio;

use serde_json::Value;

use crate::admin::{admin_app, TOKEN};
use crate::helpers::{lead_hook, TestApp};

/// The account the examples name.
const ID: i64 = 31_257_294;
const DOMAIN: &str = "docs.amocrm.ru";

/// The first sh block of `docs/{page}` that holds `marker`.
fn block(page: &str, marker: &str) -> String {
    let path = format!("{}/docs/{page}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines() {
        match (current.as_mut(), line.trim_start().strip_prefix("```")) {
            (None, Some("sh")) => current = Some(Vec::new()),
            (Some(_), Some(_)) => blocks.push(current.take().unwrap().join("\n")),
            (Some(lines), None) => lines.push(line),
            _ => {}
        }
    }
    blocks
        .into_iter()
        .find(|b| b.contains(marker))
        .unwrap_or_else(|| panic!("docs/{page} has no sh block with {marker}"))
}

/// Runs the block with bash and curl against `app`; the output, or the
/// error output when the block failed.
async fn run(app: &TestApp, block: &str) -> Result<String, String> {
    assert!(
        block.contains("https://amohook.example.com") && block.contains("TOKEN=your-admin-token"),
        "{block}"
    );
    let script = block
        .replace("https://amohook.example.com", &app.address)
        .replace("TOKEN=your-admin-token", &format!("TOKEN={TOKEN}"));
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join(".curlrc"),
        "fail-with-body\nsilent\nshow-error\nmax-time = 30\n",
    )
    .unwrap();
    let output = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("HOME", home.path())
        .env_remove("CURL_HOME")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("bash runs (and curl is installed: .ci/run installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

async fn latest_settings(app: &TestApp) -> (i32, Value) {
    sqlx::query_as::<_, (i32, Value)>(
        "select version, settings from account_settings
         where account_id = $1 order by version desc limit 1",
    )
    .bind(ID)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_admin_api_commands_of_endpoints_md_run_as_printed() {
    let app = admin_app().await;
    let old_key = app.connected(DOMAIN, ID).await;
    let requests_before = app.fake.requests().len();

    let said = run(&app, &block("endpoints.md", "/api/accounts"))
        .await
        .unwrap_or_else(|e| panic!("the block failed:\n{e}"));

    // The reads printed the account.
    assert!(said.contains(&format!("\"account_id\":{ID}")), "{said}");
    assert!(said.contains(DOMAIN), "{said}");
    // Resubscribe, the hook check and the rotation asked amoCRM.
    let webhook_calls = app.fake.requests()[requests_before..]
        .iter()
        .filter(|r| r.domain == DOMAIN && r.path == "/api/v4/webhooks")
        .count();
    assert!(webhook_calls >= 3, "{webhook_calls} web-hook calls");
    // The language is saved as a settings version.
    assert_eq!(latest_settings(&app).await.1["lang"], "es");
    // The key was rotated: a new one, the old one still taken for now.
    let new_key = app.hook_key(ID).await;
    assert_ne!(new_key, old_key);
    assert_eq!(
        app.fake
            .webhooks()
            .iter()
            .filter(|(d, _)| d == DOMAIN)
            .map(|(_, hook)| hook["destination"].as_str().unwrap_or_default().to_owned())
            .filter(|dest| dest.contains(&new_key))
            .count(),
        1,
        "the new hook URL is subscribed"
    );
    // Paused, then resumed: the account ends active and not paused.
    let paused: bool =
        sqlx::query_scalar("select manual_pause from accounts where account_id = $1")
            .bind(ID)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(!paused);
}

#[tokio::test]
async fn the_settings_commands_of_notes_md_run_as_printed() {
    let app = admin_app().await;
    let key = app.connected(DOMAIN, ID).await;
    // The preview shows the account's latest event: a lead added.
    let stored = app
        .post_hook(&key, lead_hook(ID, "add", 5, "Поставка", 1, &[]))
        .await;
    assert_eq!(stored.status(), 200);
    // The example changes version 3: three saves come first.
    for lang in ["ru", "en", "ru"] {
        let saved = app
            .http
            .put(app.url(&format!("/api/accounts/{ID}/settings")))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({ "lang": lang }))
            .send()
            .await
            .unwrap();
        assert_eq!(saved.status(), 200, "{}", saved.text().await.unwrap());
    }
    let printed = block("notes.md", "/settings");

    let said = run(&app, &printed)
        .await
        .unwrap_or_else(|e| panic!("the block failed:\n{e}"));

    // The read showed version 3 as its ETag, the save made version 4 of
    // what the example says, and the preview rendered the lead's note.
    assert!(said.to_lowercase().contains("etag: \"3\""), "{said}");
    assert!(said.contains("Поставка"), "{said}");
    let (version, settings) = latest_settings(&app).await;
    assert_eq!(version, 4);
    assert_eq!(settings["contacts"], false);
    assert_eq!(settings["lang"], "pt");
    assert!(
        settings["changed_template"]
            .as_str()
            .is_some_and(|t| t.contains("alterado por")),
        "{settings}"
    );

    // Run again, the save names a version that is no longer the latest:
    // 409, and the block fails there (curl's --fail-with-body is in force).
    let error = run(&app, &printed).await.unwrap_err();
    assert!(error.contains("409") || error.contains("22"), "{error}");
    assert_eq!(latest_settings(&app).await.0, 4);
}
