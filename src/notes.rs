//! What a note says: the added card, or each changed field with its new
//! value (and the old one when known), in the account's time zone,
//! language and words. The wording lives in `templates/notes/`; what
//! changed is worked out in [`changes`], values are written by [`words`].

use askama::Template;
use chrono::TimeZone as _;
use chrono_tz::Tz;

use crate::amocrm::hooks::{EntityKind, Snapshot};

pub mod changes;
pub mod lang;
pub mod template;
pub mod words;

pub use changes::{changes, History, Outcome, Said};
pub use lang::Lang;
pub use words::Words;

/// One changed field. `key` is `name`, `price`, `status` (the stage, with
/// pipeline names when the pipeline changed), `responsible` or `custom`
/// (then `field` is the field's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: &'static str,
    pub field: String,
    /// A custom field's id.
    pub field_id: Option<String>,
    pub old: Option<String>,
    pub new: String,
}

/// Shown for a value that is empty or was cleared.
pub(crate) const EMPTY: &str = "—";

/// The time as notes show it: dd.mm.yyyy hh:mm:ss in `tz`.
pub fn format_time(unix: i64, tz: Tz) -> String {
    match tz.timestamp_opt(unix, 0).single() {
        Some(t) => t.format("%d.%m.%Y %H:%M:%S").to_string(),
        None => unix.to_string(),
    }
}

/// An added card's note; `notes/added.txt` includes the wording of the
/// account's language (`added.ru.txt`, `added.en.txt`, `added.es.txt`,
/// `added.pt.txt`).
#[derive(Template)]
#[template(path = "notes/added.txt")]
struct Added<'a> {
    lang: &'a str,
    kind: &'a str,
    id: i64,
    name: &'a str,
    responsible: Option<&'a str>,
    time: &'a str,
}

/// A changed card's note, likewise (`changed.{ru,en,es,pt}.txt`).
#[derive(Template)]
#[template(path = "notes/changed.txt")]
struct Changed<'a> {
    lang: &'a str,
    kind: &'a str,
    id: i64,
    name: &'a str,
    changes: &'a [Change],
    time: &'a str,
}

/// The note for an added card: its name, its responsible user (when the
/// body names one) and when it was added.
pub fn added(w: &Words, kind: EntityKind, id: i64, snap: &Snapshot, at: i64) -> String {
    let responsible = snap.responsible_user_id.map(|r| w.user(Some(r)));
    let time = format_time(snap.created_at.unwrap_or(at), w.tz);
    finish(
        Added {
            lang: w.lang.as_str(),
            kind: kind.as_str(),
            id,
            name: snap.name.trim(),
            responsible: responsible.as_deref(),
            time: &time,
        }
        .render(),
    )
}

/// The note for a changed card; with no `changes`, it says only that the
/// card changed.
pub fn changed(
    w: &Words,
    kind: EntityKind,
    id: i64,
    snap: &Snapshot,
    changes: &[Change],
    at: i64,
) -> String {
    let time = format_time(at, w.tz);
    finish(
        Changed {
            lang: w.lang.as_str(),
            kind: kind.as_str(),
            id,
            name: snap.name.trim(),
            changes,
            time: &time,
        }
        .render(),
    )
}

/// A change's label in the notes' language: the built-in fields' words,
/// a custom field's name.
pub fn label<'a>(w: &Words, change: &'a Change) -> &'a str {
    let labels = &w.lang.words().labels;
    match change.key {
        "name" => labels[0],
        "price" => labels[1],
        "status" => labels[2],
        "responsible" => labels[3],
        _ => &change.field,
    }
}

/// The changes as the built-in notes list them: `Stage: A → B; Budget: 2`.
pub fn change_list(w: &Words, changes: &[Change]) -> String {
    let mut out = String::new();
    for (i, c) in changes.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(label(w, c));
        out.push_str(": ");
        if let Some(old) = &c.old {
            out.push_str(old);
            out.push_str(" → ");
        }
        out.push_str(&c.new);
    }
    out
}

/// The card a note speaks of, for an account's own template.
pub struct Card<'a> {
    pub kind: EntityKind,
    pub id: i64,
    /// The card as the note shows it (a short body's, named as last seen).
    pub snap: &'a Snapshot,
    /// Its responsible user after the change.
    pub responsible: Option<i64>,
    /// The account's host, for `{link}`.
    pub domain: &'a str,
}

/// A note written by the account's own template; `at` is the time it
/// shows. An empty result (a template of only `{changes}` when none are
/// known) is `None`: the built-in wording is used instead.
pub fn by_template(
    w: &Words,
    t: &template::Template,
    card: &Card,
    changes: &[Change],
    at: i64,
) -> Option<String> {
    let words = w.lang.words();
    let kind = match card.kind {
        EntityKind::Lead => words.kinds[0],
        EntityKind::Contact => words.kinds[1],
        EntityKind::Company => words.kinds[2],
    };
    let name = card.snap.name.trim();
    let name = if name.is_empty() {
        format!("#{}", card.id)
    } else {
        name.to_owned()
    };
    let link = format!(
        "https://{}/{}/detail/{}",
        card.domain,
        card.kind.plural(),
        card.id
    );
    let author = match card.snap.modified_user_id {
        Some(0) => words.automation.to_owned(),
        other => w.user(other),
    };
    let field = |wanted: &str| {
        let wanted = wanted.trim();
        card.snap
            .custom_fields
            .iter()
            .find(|f| {
                f.id == wanted
                    || w.field_name(card.kind, &f.id, Some(&f.name))
                        .eq_ignore_ascii_case(wanted)
                    || f.name.trim().to_lowercase() == wanted.to_lowercase()
            })
            .map(|f| w.field(card.kind, f))
    };
    let text = t.render(&template::Values {
        card: &name,
        kind,
        id: card.id,
        link: &link,
        responsible: &w.user(card.responsible),
        author: &author,
        time: &format_time(at, w.tz),
        changes: &change_list(w, changes),
        field: &field,
    });
    (!text.is_empty()).then_some(text)
}

fn finish(rendered: askama::Result<String>) -> String {
    // The templates are compiled in and take only strings and numbers:
    // rendering cannot fail at run time.
    rendered.expect("note templates render").trim().to_owned()
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_more;
#[cfg(test)]
mod tests_values;
