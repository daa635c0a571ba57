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

fn finish(rendered: askama::Result<String>) -> String {
    // The templates are compiled in and take only strings and numbers:
    // rendering cannot fail at run time.
    rendered.expect("note templates render").trim().to_owned()
}

#[cfg(test)]
mod tests;
