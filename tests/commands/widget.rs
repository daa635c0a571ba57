//! `amohook widget`: the archive amoCRM or Kommo takes, with the public
//! address written in.

#[test]
fn the_widget_command_writes_the_platforms_archive_with_the_public_address() {
    use std::io::Read as _;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("widget.zip");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_amohook"));
    for (key, _) in std::env::vars() {
        if key.starts_with("AMOHOOK_") {
            command.env_remove(key);
        }
    }
    let output = command
        .env(
            "AMOHOOK_DATABASE__URL",
            "postgres://postgres@127.0.0.1:5432/unused",
        )
        .env("AMOHOOK_HTTP__PUBLIC_URL", "https://hooks.example.com")
        .env("AMOHOOK_AMOCRM__CLIENT_ID", "uuid-of-the-integration")
        .env("AMOHOOK_AMOCRM__CLIENT_SECRET", "secret")
        .args([
            "widget",
            "--platform",
            "amocrm",
            "--support-email",
            "help@example.com",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("uuid-of-the-integration"), "{said}");
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&out).unwrap()).unwrap();
    let mut manifest = String::new();
    zip.by_name("manifest.json")
        .unwrap()
        .read_to_string(&mut manifest)
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(
        manifest["widget"]["locale"],
        serde_json::json!(["ru", "en"])
    );
    assert_eq!(
        manifest["widget"]["support"]["link"],
        "https://hooks.example.com"
    );
    let mut script = String::new();
    zip.by_name("script.js")
        .unwrap()
        .read_to_string(&mut script)
        .unwrap();
    assert!(script.contains("https://hooks.example.com"));
    assert!(zip.by_name("i18n/ru.json").is_ok() && zip.by_name("i18n/es.json").is_err());

    // A platform amohook does not know is refused, and nothing is written.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_amohook"))
        .args([
            "widget",
            "--platform",
            "bitrix",
            "--support-email",
            "help@example.com",
            "--out",
        ])
        .arg(dir.path().join("other.zip"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--platform must be amocrm or kommo"));
    assert!(!dir.path().join("other.zip").exists());
}
