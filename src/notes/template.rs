//! An account's own note templates: text with placeholders in braces.
//!
//! Written here rather than taken from a template crate: an account's
//! administrator types these in a form, so what they may write is a short
//! fixed list of placeholders, each checked when the template is saved
//! (an unknown one is a clear error, never a broken note), with nothing to
//! evaluate. A general engine (conditions, loops, filters, includes) would
//! be more to check than it gives.

use std::fmt;

/// Templates longer than this are refused (amoCRM's notes are short).
pub const MAX_LEN: usize = 2_000;

/// The placeholders, as written between braces, with what each gives.
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("card", "the card's name (or #id when it has none)"),
    ("kind", "lead, contact or company, in the notes' language"),
    ("id", "the card's id"),
    ("link", "the card's address in amoCRM"),
    ("responsible", "the responsible user's name"),
    ("author", "who made the change (amoCRM's modified_user_id)"),
    ("time", "when, in the account's time zone"),
    ("changes", "the list of changes (empty for an added card)"),
    (
        "field:NAME",
        "the value of the custom field NAME (its name or id)",
    ),
];

/// A template checked and split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Card,
    Kind,
    Id,
    Link,
    Responsible,
    Author,
    Time,
    Changes,
    Field(String),
}

/// Why a template cannot be saved; the message names the place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("the template is empty")]
    Empty,
    #[error("the template is longer than {MAX_LEN} characters")]
    TooLong,
    #[error("unknown placeholder {{{0}}}: use one of {1}")]
    Unknown(String, String),
    #[error("a {{ is not closed: write {{{{ for a brace")]
    Unclosed,
    #[error("a }} has no {{: write }}}} for a brace")]
    Unopened,
    #[error("{{field:}} needs a field's name or id")]
    EmptyField,
}

/// What a note's placeholders stand for.
pub struct Values<'a> {
    pub card: &'a str,
    pub kind: &'a str,
    pub id: i64,
    pub link: &'a str,
    pub responsible: &'a str,
    pub author: &'a str,
    pub time: &'a str,
    pub changes: &'a str,
    /// A custom field's value by its name or id, when the card has it.
    pub field: &'a dyn Fn(&str) -> Option<String>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        if text.trim().is_empty() {
            return Err(TemplateError::Empty);
        }
        if text.chars().count() > MAX_LEN {
            return Err(TemplateError::TooLong);
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(TemplateError::Unopened),
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some('{') | None => return Err(TemplateError::Unclosed),
                            Some(c) => name.push(c),
                        }
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(placeholder(name.trim())?);
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    pub fn render(&self, v: &Values) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Card => out.push_str(v.card),
                Part::Kind => out.push_str(v.kind),
                Part::Id => out.push_str(&v.id.to_string()),
                Part::Link => out.push_str(v.link),
                Part::Responsible => out.push_str(v.responsible),
                Part::Author => out.push_str(v.author),
                Part::Time => out.push_str(v.time),
                Part::Changes => out.push_str(v.changes),
                Part::Field(name) => out.push_str(&(v.field)(name).unwrap_or_default()),
            }
        }
        out.trim().to_owned()
    }
}

fn placeholder(name: &str) -> Result<Part, TemplateError> {
    Ok(match name {
        "card" => Part::Card,
        "kind" => Part::Kind,
        "id" => Part::Id,
        "link" => Part::Link,
        "responsible" => Part::Responsible,
        "author" => Part::Author,
        "time" => Part::Time,
        "changes" => Part::Changes,
        other => match other.strip_prefix("field:") {
            Some(field) if field.trim().is_empty() => return Err(TemplateError::EmptyField),
            Some(field) => Part::Field(field.trim().to_owned()),
            None => {
                let known: Vec<String> = PLACEHOLDERS
                    .iter()
                    .map(|(p, _)| format!("{{{p}}}"))
                    .collect();
                return Err(TemplateError::Unknown(other.to_owned(), known.join(", ")));
            }
        },
    })
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(t) => f.write_str(&t.replace('{', "{{").replace('}', "}}"))?,
                Part::Card => f.write_str("{card}")?,
                Part::Kind => f.write_str("{kind}")?,
                Part::Id => f.write_str("{id}")?,
                Part::Link => f.write_str("{link}")?,
                Part::Responsible => f.write_str("{responsible}")?,
                Part::Author => f.write_str("{author}")?,
                Part::Time => f.write_str("{time}")?,
                Part::Changes => f.write_str("{changes}")?,
                Part::Field(n) => write!(f, "{{field:{n}}}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<'a>(field: &'a dyn Fn(&str) -> Option<String>) -> Values<'a> {
        Values {
            card: "Pedido 7",
            kind: "Lead",
            id: 7,
            link: "https://acme.kommo.com/leads/detail/7",
            responsible: "Ana",
            author: "João",
            time: "05.04.2024 18:42:08",
            changes: "Venda: 1 → 2",
            field,
        }
    }

    #[test]
    fn placeholders_are_filled_and_braces_can_be_written() {
        let field = |name: &str| (name == "Cidade").then(|| "Recife".to_owned());
        let t = Template::parse(
            "{kind} {card} (#{id}, {link}) por {author}, resp. {responsible}, {time}: {changes}; \
             cidade {field:Cidade}{field:Outra} {{literal}}",
        )
        .unwrap();
        assert_eq!(
            t.render(&values(&field)),
            "Lead Pedido 7 (#7, https://acme.kommo.com/leads/detail/7) por João, resp. Ana, \
             05.04.2024 18:42:08: Venda: 1 → 2; cidade Recife {literal}"
        );
        // What is saved reads back the same.
        assert_eq!(Template::parse(&t.to_string()).unwrap(), t);
    }

    #[test]
    fn a_template_that_would_make_a_broken_note_is_refused_with_the_reason() {
        let unknown = Template::parse("Lead {nome} changed").unwrap_err();
        assert!(unknown.to_string().contains("{nome}"), "{unknown}");
        assert!(unknown.to_string().contains("{card}"), "{unknown}");
        assert_eq!(
            Template::parse("a {card").unwrap_err(),
            TemplateError::Unclosed
        );
        assert_eq!(
            Template::parse("a } b").unwrap_err(),
            TemplateError::Unopened
        );
        assert_eq!(
            Template::parse("{field:}").unwrap_err(),
            TemplateError::EmptyField
        );
        assert_eq!(Template::parse("  ").unwrap_err(), TemplateError::Empty);
        assert_eq!(
            Template::parse(&"x".repeat(MAX_LEN + 1)).unwrap_err(),
            TemplateError::TooLong
        );
    }
}
