use crate::platform::account_host;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    /// Whatever a callback's referer holds, it never panics, and what
    /// it lets through is a bare host directly under an allowed domain.
    #[test]
    fn any_referer_is_either_refused_or_a_bare_account_host(referer in "\\PC{0,80}|[a-z0-9.:/@-]{0,40}(amocrm\\.ru|kommo\\.com)[a-z0-9.:/@?#-]{0,10}") {
        if let Some(host) = account_host(&referer, &allowed()) {
            let (label, parent) = host.split_once('.').unwrap();
            prop_assert!(allowed().iter().any(|d| d == parent));
            prop_assert!(!label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
            prop_assert!(!host.contains(['/', ':', '@', '?', '#']));
        }
    }
}

fn allowed() -> Vec<String> {
    ["amocrm.ru", "amocrm.com", "kommo.com"]
        .map(String::from)
        .to_vec()
}

#[test]
fn accepts_account_hosts_directly_under_an_allowed_domain() {
    assert_eq!(
        account_host("acme.amocrm.ru", &allowed()).as_deref(),
        Some("acme.amocrm.ru")
    );
    assert_eq!(
        account_host("Acme-2.Kommo.com", &allowed()).as_deref(),
        Some("acme-2.kommo.com")
    );
    assert_eq!(
        account_host("old.amocrm.com", &allowed()).as_deref(),
        Some("old.amocrm.com")
    );
}

#[test]
fn refuses_everything_else() {
    for bad in [
        "",
        "evil.com",
        "amocrm.ru",
        "amocrm.ru.evil.com",
        "acme.amocrm.ru.evil.com",
        "evilamocrm.ru",
        "a.b.amocrm.ru",
        "acme.amocrm.ru:8443",
        "acme.amocrm.ru/path",
        "https://acme.amocrm.ru",
        "user@acme.amocrm.ru",
        "acme.amocrm.ru.",
        ".amocrm.ru",
        "-acme.amocrm.ru",
        "ac me.amocrm.ru",
        "acme%2eevil.com",
        "acme.amocrm.ru?x=1",
        "acme.amocrm.ru#x",
        "аcme.amocrm.ru", // Cyrillic а
    ] {
        assert_eq!(
            account_host(bad, &allowed()),
            None,
            "{bad:?} must be refused"
        );
    }
}
