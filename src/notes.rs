//! What a note says: the added card, or each changed field with its new
//! value (and the old one when known), in the account's time zone and
//! language. The wording lives in `templates/notes/`.

use askama::Template;
use chrono::TimeZone as _;
use chrono_tz::Tz;

use crate::{
    amocrm::directory::Directory,
    amocrm::hooks::{EntityKind, Snapshot},
};

/// Russian for amocrm.ru accounts, English for Kommo and amocrm.com.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ru,
    En,
}

impl Lang {
    pub fn for_domain(domain: &str) -> Lang {
        if domain.ends_with(".amocrm.ru") {
            Lang::Ru
        } else {
            Lang::En
        }
    }
}

/// One changed field. `key` is `name`, `price`, `status`, `pipeline`,
/// `responsible` or `custom` (then `field` is the field's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: &'static str,
    pub field: String,
    pub old: Option<String>,
    pub new: String,
}

/// Shown for a value that is empty or was cleared.
const EMPTY: &str = "—";

/// The time as notes show it: dd.mm.yyyy hh:mm:ss in `tz`.
pub fn format_time(unix: i64, tz: Tz) -> String {
    match tz.timestamp_opt(unix, 0).single() {
        Some(t) => t.format("%d.%m.%Y %H:%M:%S").to_string(),
        None => unix.to_string(),
    }
}

fn user(dir: &Directory, id: Option<i64>) -> String {
    match id {
        Some(id) => dir
            .user(id)
            .map(str::to_owned)
            .unwrap_or_else(|| id.to_string()),
        None => EMPTY.into(),
    }
}

fn status(dir: &Directory, pipeline: Option<i64>, id: i64) -> String {
    dir.status(pipeline, id)
        .map(str::to_owned)
        .unwrap_or_else(|| id.to_string())
}

fn pipeline(dir: &Directory, id: i64) -> String {
    dir.pipeline(id)
        .map(str::to_owned)
        .unwrap_or_else(|| id.to_string())
}

fn values(v: &[String]) -> String {
    if v.is_empty() {
        EMPTY.into()
    } else {
        v.join(", ")
    }
}

fn price(p: &Option<String>) -> String {
    p.clone().unwrap_or_else(|| "0".into())
}

/// The visible differences between what was last seen (`prev`) and `cur`.
/// With no previous state, every filled field counts as new (old values
/// from the hook's `old_*` fields where it has them).
pub fn diff(
    kind: EntityKind,
    prev: Option<&Snapshot>,
    cur: &Snapshot,
    dir: &Directory,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let change = |key, old: Option<String>, new: String| Change {
        key,
        field: String::new(),
        old,
        new,
    };
    match prev {
        Some(prev) => {
            if prev.name != cur.name {
                changes.push(change(
                    "name",
                    Some(or_empty(&prev.name)),
                    or_empty(&cur.name),
                ));
            }
            if kind == EntityKind::Lead && price(&prev.price) != price(&cur.price) {
                changes.push(change("price", Some(price(&prev.price)), price(&cur.price)));
            }
            if kind == EntityKind::Lead && prev.status_id != cur.status_id {
                if let Some(new) = cur.status_id {
                    let old = prev.status_id.map(|s| status(dir, prev.pipeline_id, s));
                    changes.push(change("status", old, status(dir, cur.pipeline_id, new)));
                }
            }
            if kind == EntityKind::Lead && prev.pipeline_id != cur.pipeline_id {
                if let Some(new) = cur.pipeline_id {
                    let old = prev.pipeline_id.map(|p| pipeline(dir, p));
                    changes.push(change("pipeline", old, pipeline(dir, new)));
                }
            }
            if prev.responsible_user_id != cur.responsible_user_id {
                changes.push(change(
                    "responsible",
                    Some(user(dir, prev.responsible_user_id)),
                    user(dir, cur.responsible_user_id),
                ));
            }
            // Fields in the new snapshot, then fields that disappeared
            // (a hook leaves out emptied fields).
            for field in &cur.custom_fields {
                let old = prev.custom_fields.iter().find(|f| f.id == field.id);
                let old_values = old.map(|f| f.values.as_slice()).unwrap_or_default();
                if old_values != field.values.as_slice() {
                    changes.push(Change {
                        key: "custom",
                        field: field.name.clone(),
                        old: Some(values(old_values)),
                        new: values(&field.values),
                    });
                }
            }
            for field in &prev.custom_fields {
                let gone = !cur.custom_fields.iter().any(|f| f.id == field.id);
                if gone && !field.values.is_empty() {
                    changes.push(Change {
                        key: "custom",
                        field: field.name.clone(),
                        old: Some(values(&field.values)),
                        new: EMPTY.into(),
                    });
                }
            }
        }
        None => {
            if kind == EntityKind::Lead {
                if let Some(p) = cur.price.as_ref().filter(|p| p.as_str() != "0") {
                    changes.push(change("price", None, p.clone()));
                }
                if let Some(new) = cur.status_id {
                    let old = cur
                        .old_status_id
                        .filter(|o| *o != new)
                        .map(|o| status(dir, cur.old_pipeline_id.or(cur.pipeline_id), o));
                    changes.push(change("status", old, status(dir, cur.pipeline_id, new)));
                }
                if let (Some(new), Some(old)) = (cur.pipeline_id, cur.old_pipeline_id) {
                    if old != new {
                        changes.push(change(
                            "pipeline",
                            Some(pipeline(dir, old)),
                            pipeline(dir, new),
                        ));
                    }
                }
            }
            if let Some(new) = cur.responsible_user_id {
                let old = cur
                    .old_responsible_user_id
                    .filter(|o| *o != new)
                    .map(|o| user(dir, Some(o)));
                changes.push(change("responsible", old, user(dir, Some(new))));
            }
            for field in cur.custom_fields.iter().filter(|f| !f.values.is_empty()) {
                changes.push(Change {
                    key: "custom",
                    field: field.name.clone(),
                    old: None,
                    new: values(&field.values),
                });
            }
        }
    }
    changes
}

fn or_empty(s: &str) -> String {
    if s.is_empty() {
        EMPTY.into()
    } else {
        s.to_owned()
    }
}

#[derive(Template)]
#[template(path = "notes/added.ru.txt")]
struct AddedRu<'a> {
    kind: &'a str,
    id: i64,
    name: &'a str,
    responsible: &'a str,
    time: &'a str,
}

#[derive(Template)]
#[template(path = "notes/added.en.txt")]
struct AddedEn<'a> {
    kind: &'a str,
    id: i64,
    name: &'a str,
    responsible: &'a str,
    time: &'a str,
}

#[derive(Template)]
#[template(path = "notes/changed.ru.txt")]
struct ChangedRu<'a> {
    kind: &'a str,
    id: i64,
    name: &'a str,
    changes: &'a [Change],
    time: &'a str,
}

#[derive(Template)]
#[template(path = "notes/changed.en.txt")]
struct ChangedEn<'a> {
    kind: &'a str,
    id: i64,
    name: &'a str,
    changes: &'a [Change],
    time: &'a str,
}

/// The note for an added card.
pub fn added(
    lang: Lang,
    kind: EntityKind,
    id: i64,
    snap: &Snapshot,
    dir: &Directory,
    tz: Tz,
    at: i64,
) -> String {
    let responsible = user(dir, snap.responsible_user_id);
    let time = format_time(snap.created_at.unwrap_or(at), tz);
    let (kind, name) = (kind.as_str(), snap.name.trim());
    let rendered = match lang {
        Lang::Ru => AddedRu {
            kind,
            id,
            name,
            responsible: &responsible,
            time: &time,
        }
        .render(),
        Lang::En => AddedEn {
            kind,
            id,
            name,
            responsible: &responsible,
            time: &time,
        }
        .render(),
    };
    finish(rendered)
}

/// The note for a changed card; `changes` must not be empty.
pub fn changed(
    lang: Lang,
    kind: EntityKind,
    id: i64,
    snap: &Snapshot,
    changes: &[Change],
    tz: Tz,
    at: i64,
) -> String {
    let time = format_time(at, tz);
    let (kind, name) = (kind.as_str(), snap.name.trim());
    let rendered = match lang {
        Lang::Ru => ChangedRu {
            kind,
            id,
            name,
            changes,
            time: &time,
        }
        .render(),
        Lang::En => ChangedEn {
            kind,
            id,
            name,
            changes,
            time: &time,
        }
        .render(),
    };
    finish(rendered)
}

fn finish(rendered: askama::Result<String>) -> String {
    // The templates are compiled in and take only strings and numbers:
    // rendering cannot fail at run time.
    rendered.expect("note templates render").trim().to_owned()
}

#[cfg(test)]
mod tests;
