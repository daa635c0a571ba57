//! `amohook widget`: the widget archive a public integration's listing
//! carries in amoMarket (amoCRM) and Kommo's marketplace, built for this
//! deployment. Its format follows the widget docs (developers.kommo.com:
//! "Structure of widget", "manifest.json", "images/"; amoCRM's are the
//! same): `manifest.json`, `script.js`, `i18n/<lang>.json` and five PNG
//! logos in `images/`. The script, in the widget's settings, asks this
//! deployment for the account's page (`POST /widget/session`, see
//! `tenant.rs`) and shows the link.

use std::io::Write as _;

use serde_json::json;
use zip::{write::SimpleFileOptions, ZipWriter};

use crate::{config::Settings, platform::Platform};

/// The logos, each at the size the docs ask for (`assets/widget/images`,
/// drawn by `make_images.py` there).
pub const IMAGES: [(&str, &[u8], (u32, u32)); 5] = [
    (
        "logo.png",
        include_bytes!("../assets/widget/images/logo.png"),
        (130, 100),
    ),
    (
        "logo_min.png",
        include_bytes!("../assets/widget/images/logo_min.png"),
        (84, 84),
    ),
    (
        "logo_medium.png",
        include_bytes!("../assets/widget/images/logo_medium.png"),
        (240, 84),
    ),
    (
        "logo_main.png",
        include_bytes!("../assets/widget/images/logo_main.png"),
        (400, 272),
    ),
    (
        "logo_small.png",
        include_bytes!("../assets/widget/images/logo_small.png"),
        (108, 108),
    ),
];

const SCRIPT: &str = include_str!("../assets/widget/script.js");

/// Every language the widget has words in.
const I18N: [(&str, &str); 4] = [
    ("ru", include_str!("../assets/widget/i18n/ru.json")),
    ("en", include_str!("../assets/widget/i18n/en.json")),
    ("es", include_str!("../assets/widget/i18n/es.json")),
    ("pt", include_str!("../assets/widget/i18n/pt.json")),
];

/// The languages of each marketplace's listing: amoCRM's users work in
/// Russian and English; Kommo's in English, Spanish and Portuguese.
pub fn languages(platform: Platform) -> &'static [&'static str] {
    match platform {
        Platform::Amocrm => &["ru", "en"],
        Platform::Kommo => &["en", "es", "pt"],
    }
}

/// What goes into one archive.
#[derive(Debug, Clone)]
pub struct Widget {
    pub platform: Platform,
    /// This deployment's public address (`http.public_url`).
    pub base_url: String,
    /// The integration the widget belongs to (its client id).
    pub client_id: String,
    /// Where the listing sends people for help.
    pub support_email: String,
}

impl Widget {
    /// The widget of `platform`'s integration in this deployment.
    pub fn of(settings: &Settings, platform: Platform, support_email: &str) -> Widget {
        let integrations = settings.integrations();
        Widget {
            platform,
            base_url: settings.http.public_url.trim_end_matches('/').to_owned(),
            client_id: integrations.for_platform(platform).client_id.clone(),
            support_email: support_email.to_owned(),
        }
    }

    pub fn manifest(&self) -> serde_json::Value {
        json!({
            "widget": {
                "name": "widget.name",
                "description": "widget.description",
                "short_description": "widget.short_description",
                "version": env!("CARGO_PKG_VERSION"),
                "interface_version": 2,
                "init_once": false,
                "locale": languages(self.platform),
                "installation": true,
                "support": {
                    "link": self.base_url,
                    "email": self.support_email,
                },
            },
            "locations": ["settings"],
            "settings": {},
        })
    }

    /// `script.js` with this deployment's address written in.
    pub fn script(&self) -> String {
        let config = json!({ "base_url": self.base_url, "client_id": self.client_id });
        SCRIPT.replace("__AMOHOOK__", &config.to_string())
    }

    /// The archive's bytes.
    pub fn archive(&self) -> anyhow::Result<Vec<u8>> {
        let mut zip = ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = SimpleFileOptions::default();
        let mut add = |name: &str, bytes: &[u8]| -> anyhow::Result<()> {
            zip.start_file(name, options)?;
            zip.write_all(bytes)?;
            Ok(())
        };
        add(
            "manifest.json",
            serde_json::to_string_pretty(&self.manifest())?.as_bytes(),
        )?;
        add("script.js", self.script().as_bytes())?;
        for (lang, text) in I18N {
            if languages(self.platform).contains(&lang) {
                add(&format!("i18n/{lang}.json"), text.as_bytes())?;
            }
        }
        for (name, bytes, _) in IMAGES {
            add(&format!("images/{name}"), bytes)?;
        }
        Ok(zip.finish()?.into_inner())
    }
}

/// The words of the widget in `lang` (its i18n file), for the simulator's
/// widget frame and the tests.
pub fn words(lang: &str) -> Option<&'static str> {
    I18N.iter().find(|(l, _)| *l == lang).map(|(_, text)| *text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Width and height from a PNG's header.
    fn png_size(bytes: &[u8]) -> (u32, u32) {
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        let n = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        (n(16), n(20))
    }

    #[test]
    fn the_logos_have_the_sizes_the_docs_ask_for() {
        for (name, bytes, size) in IMAGES {
            assert_eq!(png_size(bytes), size, "{name}");
            assert!(bytes.len() < 300 * 1024, "{name}: at most 300 KB");
        }
    }

    #[test]
    fn every_language_file_has_the_manifests_and_the_scripts_words() {
        for (lang, text) in I18N {
            let words: serde_json::Value = serde_json::from_str(text).unwrap();
            for key in ["name", "description", "short_description"] {
                assert!(
                    words["widget"][key].as_str().is_some_and(|w| !w.is_empty()),
                    "{lang}: widget.{key}"
                );
            }
            for key in ["opening", "ready", "open", "failed"] {
                assert!(
                    SCRIPT.contains(&format!("word('{key}')")),
                    "the script uses {key}"
                );
                assert!(
                    words["amohook"][key]
                        .as_str()
                        .is_some_and(|w| !w.is_empty()),
                    "{lang}: amohook.{key}"
                );
            }
        }
    }

    #[test]
    fn the_archive_holds_what_the_docs_list_with_this_deployments_address() {
        use std::io::Read as _;
        let widget = Widget {
            platform: Platform::Kommo,
            base_url: "https://hooks.example.com".into(),
            client_id: "uuid-kommo".into(),
            support_email: "help@example.com".into(),
        };
        let bytes = widget.archive().unwrap();
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut names: Vec<String> = zip.file_names().map(|n| n.unwrap().into_owned()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "i18n/en.json",
                "i18n/es.json",
                "i18n/pt.json",
                "images/logo.png",
                "images/logo_main.png",
                "images/logo_medium.png",
                "images/logo_min.png",
                "images/logo_small.png",
                "manifest.json",
                "script.js",
            ]
        );
        let mut read = |name: &str| {
            let mut text = String::new();
            zip.by_name(name)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            text
        };
        let manifest: serde_json::Value = serde_json::from_str(&read("manifest.json")).unwrap();
        let w = &manifest["widget"];
        // The fields of developers.kommo.com's manifest.json, each of its type.
        for key in ["name", "description", "short_description", "version"] {
            assert!(w[key].is_string(), "widget.{key}");
        }
        assert_eq!(w["interface_version"], 2);
        assert!(w["init_once"].is_boolean() && w["installation"].is_boolean());
        assert_eq!(w["locale"], json!(["en", "es", "pt"]));
        assert_eq!(
            w["support"],
            json!({ "link": "https://hooks.example.com", "email": "help@example.com" })
        );
        assert_eq!(manifest["locations"], json!(["settings"]));
        // The names point into every language file.
        for lang in ["en", "es", "pt"] {
            let words: serde_json::Value =
                serde_json::from_str(&read(&format!("i18n/{lang}.json"))).unwrap();
            for key in ["name", "description", "short_description"] {
                let path = w[key].as_str().unwrap();
                let (section, word) = path.split_once('.').unwrap();
                assert!(words[section][word].is_string(), "{lang}: {path}");
            }
        }
        let script = read("script.js");
        assert!(
            script.contains(r#"{"base_url":"https://hooks.example.com","client_id":"uuid-kommo"}"#),
            "{script}"
        );
        assert!(!script.contains("__AMOHOOK__"));
        assert!(script.contains("'/widget/session'") && script.contains("$authorizedAjax"));
        assert_eq!(languages(Platform::Amocrm), ["ru", "en"]);
    }
}
