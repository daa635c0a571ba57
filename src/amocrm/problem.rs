//! amoCRM's error body: RFC 7807 problem+json with a non-standard `hint`,
//! and `validation-errors` on 400s. Seen in the wild:
//! `{"hint":"Token has been revoked","title":"Некорректный запрос",
//!   "type":"https://developers.amocrm.ru/v3/errors/OAuthProblemJson",
//!   "status":401,"detail":"В запросе отсутствует ряд параметров или параметры невалидны"}`

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(
        default,
        rename = "validation-errors",
        skip_serializing_if = "Option::is_none"
    )]
    pub validation_errors: Option<serde_json::Value>,
}

impl Problem {
    /// Reads a problem body; anything else becomes an empty problem, so an
    /// HTML or empty error page never hides the status it came with.
    pub fn parse(body: &[u8]) -> Problem {
        serde_json::from_slice(body).unwrap_or_default()
    }

    /// The token endpoint's answer to a wrong client id or secret
    /// ("Некорректный клиент" / "Авторизация клиента не прошла", or a hint
    /// about `client_id`, or about the redirect URI): a configuration
    /// fault, not a dead grant.
    pub fn is_client_error(&self) -> bool {
        let text = self.text().to_lowercase();
        text.contains("клиент") || text.contains("client") || text.contains("redirect")
    }

    fn text(&self) -> String {
        [&self.hint, &self.title, &self.detail]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = self
            .hint
            .iter()
            .chain(self.detail.iter())
            .chain(self.title.iter())
            .filter(|s| !s.trim().is_empty());
        match parts.next() {
            // The hint is the most specific; title and detail are generic.
            Some(first) => {
                let mut text: String = first.chars().take(300).collect();
                if let Some(second) = parts.next() {
                    text.push_str(" (");
                    text.extend(second.chars().take(200));
                    text.push(')');
                }
                f.write_str(&text)
            }
            None => f.write_str("no details given"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_revoked_refresh_token_answer() {
        let p = Problem::parse(
            r#"{"hint":"Token has been revoked","title":"Некорректный запрос","type":"https://developers.amocrm.ru/v3/errors/OAuthProblemJson","status":401,"detail":"В запросе отсутствует ряд параметров или параметры невалидны"}"#.as_bytes(),
        );
        assert_eq!(p.hint.as_deref(), Some("Token has been revoked"));
        assert_eq!(p.status, Some(401));
        assert!(!p.is_client_error());
        assert!(p.to_string().starts_with("Token has been revoked ("));
    }

    #[test]
    fn tells_a_refused_client_from_a_dead_grant() {
        let p = Problem::parse(
            r#"{"title":"Некорректный клиент","status":401,"detail":"Авторизация клиента не прошла"}"#.as_bytes(),
        );
        assert!(p.is_client_error());
        let hint = Problem::parse(br#"{"hint":"Check the `client_id` parameter","status":400}"#);
        assert!(hint.is_client_error());
    }

    #[test]
    fn html_bodies_become_an_empty_problem() {
        let p = Problem::parse(b"<html><body>403 Forbidden</body></html>");
        assert_eq!(p, Problem::default());
        assert_eq!(p.to_string(), "no details given");
    }
}
