//! Secrets never reach the logs, and text logs are coloured only on a
//! terminal. A test binary of its own: it installs the process-wide log
//! subscriber and reads everything written; the colour tests run the
//! service binary as a process.

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use std::io::Write;

use amohook::telemetry::{self, LogFormat};
use helpers::{lead_hook, TestApp, CLIENT_SECRET};
use tracing_subscriber::fmt::MakeWriter;

const ADMIN_TOKEN: &str = "admin-secret-that-must-not-be-logged";

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    // Everything, down to debug, from every crate.
    std::env::set_var("RUST_LOG", "debug");
    let logs = Captured::default();
    telemetry::init_with_writer(LogFormat::Json, logs.clone(), false);

    let app = TestApp::spawn_with(|env| {
        env.insert("AMOHOOK_ADMIN__TOKEN".into(), ADMIN_TOKEN.into());
    })
    .await;
    let domain = "secret.amocrm.ru";
    app.account(domain, 38_000_001);
    let state = app.start_install().await;
    let code = app.fake.issue_code(domain);
    let installed = app
        .callback(&[("code", &code), ("referer", domain), ("state", &state)])
        .await;
    assert_eq!(installed.status(), 200);
    let hook_key = app.hook_key(38_000_001).await;

    // A rejected code (its text in the error), a hook, a bad hook, a 401
    // and a refresh, the admin pages with right and wrong tokens, a forged
    // uninstall.
    let rejected = app.fake.issue_code(domain);
    app.fake.fail_next(
        domain,
        "/oauth2/access_token",
        amocrm_sim::Fault::Problem {
            status: 400,
            hint: "Authorization code has expired".into(),
        },
        1,
    );
    let state2 = app.start_install().await;
    app.callback(&[("code", &rejected), ("referer", domain), ("state", &state2)])
        .await;
    app.callback(&[
        ("code", "widget-code-secret"),
        ("referer", domain),
        ("from_widget", "1"),
    ])
    .await;
    app.post_hook(&hook_key, lead_hook(38_000_001, "add", 1, "x", 1, &[]))
        .await;
    app.post_hook(&hook_key, "leads[add]=broken".into()).await;
    app.fake.expire_access_tokens(domain);
    app.wait_for_notes(domain, 1).await;
    app.http
        .get(app.url("/status"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    app.http
        .get(app.url("/status"))
        .bearer_auth("wrong-admin-guess")
        .send()
        .await
        .unwrap();
    app.http
        .get(app.url("/metrics"))
        .basic_auth("ops", Some(ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    app.http
        .get(app.url("/oauth/disable"))
        .query(&[
            ("account_id", "38000001"),
            ("client_uuid", helpers::CLIENT_ID),
            ("signature", "deadbeef"),
        ])
        .send()
        .await
        .unwrap();
    app.state.intake.receipts.flush(&app.pool).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let text = logs.text();
    assert!(text.contains("account connected"), "the logs were captured");
    assert!(
        text.contains("38000001"),
        "account lines carry the account id"
    );
    assert!(text.contains("request_id"), "requests carry a request id");
    let mut secrets = vec![
        CLIENT_SECRET.to_owned(),
        ADMIN_TOKEN.to_owned(),
        hook_key.clone(),
        code.clone(),
        rejected.clone(),
        state.clone(),
        "widget-code-secret".to_owned(),
        // The encryption key the helpers configure.
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [42u8; 32]),
    ];
    secrets.extend(app.fake.issued_tokens());
    assert!(secrets.len() >= 10);
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a secret reached the logs: {secret}"
        );
    }
    // Not in error pages either.
    let page = app
        .callback(&[
            ("code", "zzz-code-in-page"),
            ("referer", "evil.com"),
            ("state", "s"),
        ])
        .await;
    assert!(!page.text().await.unwrap().contains("zzz-code-in-page"));
}

/// `amohook migrate` on a fresh database, with `format` logs: what it
/// wrote, through a pipe or (`on_terminal`) through a terminal made by
/// `script`. None when `script` (util-linux) is missing.
fn migrate_output(format: &str, on_terminal: bool) -> Option<String> {
    let db = helpers::TestDb::new();
    let binary = env!("CARGO_BIN_EXE_amohook");
    let mut command = if on_terminal {
        let which = std::process::Command::new("script")
            .arg("--version")
            .output();
        if which.is_err() {
            eprintln!("SKIPPED the terminal half: `script` (util-linux) is missing");
            return None;
        }
        let mut c = std::process::Command::new("script");
        // -q: no banner; -e: its exit status; -c: the command; the typescript
        // goes nowhere, the terminal's output to stdout.
        c.args(["-qec", &format!("{binary} migrate"), "/dev/null"]);
        c
    } else {
        let mut c = std::process::Command::new(binary);
        c.arg("migrate");
        c
    };
    let output = command
        .env("DATABASE_URL", &db.url)
        .env_remove("AMOHOOK_DATABASE__URL")
        .env("AMOHOOK_LOG__FORMAT", format)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("amohook runs");
    assert!(output.status.success(), "{output:?}");
    Some(
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[test]
fn text_logs_carry_no_colour_codes_into_a_pipe_or_file() {
    let text = migrate_output("text", false).unwrap();
    assert!(text.contains("migrations applied"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "an escape code in piped logs: {text:?}"
    );
}

#[test]
fn text_logs_are_coloured_on_a_terminal_and_json_logs_never_are() {
    let Some(text) = migrate_output("text", true) else {
        return;
    };
    assert!(text.contains("migrations applied"), "{text}");
    assert!(text.contains("\x1b["), "no colour on a terminal: {text:?}");
    let json = migrate_output("json", true).unwrap();
    assert!(
        !json.contains('\x1b'),
        "an escape code in JSON logs: {json:?}"
    );
    let line = json
        .lines()
        .find(|l| l.contains("migrations applied"))
        .expect("the line");
    let value: serde_json::Value = serde_json::from_str(line.trim()).expect("a JSON object");
    assert_eq!(value["level"], "INFO");
}

/// A writer into shared memory: the test reads what was logged.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
