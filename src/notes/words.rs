//! Values in the account's words: users and stages by name, money with the
//! account's currency, and each custom field formatted by its type (the
//! account's field definitions, `GET /api/v4/{entity}/custom_fields`).
//! Where a definition or name is unknown, the value is shown as it came.

use chrono::{Datelike as _, TimeZone as _};
use chrono_tz::Tz;

use super::{Lang, EMPTY};
use crate::amocrm::{
    directory::{Directory, FieldDef},
    hooks::{EntityKind, FieldItem, FieldValue},
};

/// What a note's values are rendered with.
pub struct Words<'a> {
    pub lang: Lang,
    pub tz: Tz,
    pub dir: &'a Directory,
}

impl Words<'_> {
    /// A user by name. `0` is amoCRM's "nobody" (cards made by forms,
    /// chats and bots); an unknown user shows the id.
    pub fn user(&self, id: Option<i64>) -> String {
        match id {
            None => EMPTY.into(),
            Some(0) => self.lang.words().not_assigned.into(),
            Some(id) => self
                .dir
                .user(id)
                .map(str::to_owned)
                .unwrap_or_else(|| id.to_string()),
        }
    }

    /// A stage by name; with `with_pipeline`, "Pipeline / Stage".
    pub fn stage(&self, pipeline: Option<i64>, status: i64, with_pipeline: bool) -> String {
        let stage = self
            .dir
            .status(pipeline, status)
            .map(str::to_owned)
            .unwrap_or_else(|| status.to_string());
        match pipeline.filter(|_| with_pipeline) {
            Some(p) => {
                let name = self
                    .dir
                    .pipeline(p)
                    .map(str::to_owned)
                    .unwrap_or_else(|| p.to_string());
                format!("{name} / {stage}")
            }
            None => stage,
        }
    }

    /// An amount with the account's currency (its symbol, else its code).
    pub fn money(&self, amount: &str, currency: Option<&str>) -> String {
        let currency = currency.or(self.dir.settings.currency_symbol.as_deref().or(self
            .dir
            .settings
            .currency
            .as_deref()));
        match currency.filter(|c| !c.is_empty()) {
            Some(c) if !amount.is_empty() => format!("{amount} {c}"),
            _ => amount.to_owned(),
        }
    }

    /// A field's name: the hook's, else the definition's, else `#id`.
    pub fn field_name(&self, kind: EntityKind, id: &str, given: Option<&str>) -> String {
        given
            .filter(|n| !n.trim().is_empty() && !n.starts_with('#'))
            .map(str::to_owned)
            .or_else(|| self.def(kind, id).map(|d| d.name.clone()))
            .or_else(|| given.map(str::to_owned))
            .unwrap_or_else(|| format!("#{id}"))
    }

    /// A field's values, each formatted by the field's type, joined.
    pub fn field(&self, kind: EntityKind, field: &FieldValue) -> String {
        self.items(kind, &field.id, &field.values)
    }

    pub fn items(&self, kind: EntityKind, field_id: &str, items: &[FieldItem]) -> String {
        let def = self.def(kind, field_id);
        let shown: Vec<String> = items
            .iter()
            .map(|item| self.item(def, item))
            .filter(|s| !s.is_empty())
            .collect();
        if shown.is_empty() {
            EMPTY.into()
        } else {
            shown.join(", ")
        }
    }

    fn def(&self, kind: EntityKind, field_id: &str) -> Option<&FieldDef> {
        let id: i64 = field_id.parse().ok()?;
        self.dir.field(kind, id)
    }

    fn item(&self, def: Option<&FieldDef>, item: &FieldItem) -> String {
        let text = item.text().trim();
        let Some(def) = def else {
            return text.to_owned();
        };
        let choice = || {
            item.enum_id()
                .and_then(|e| def.enums.get(&e))
                .cloned()
                .unwrap_or_else(|| text.to_owned())
        };
        match def.kind.as_str() {
            "date" => self.date(text, false),
            "date_time" => self.date(text, true),
            "birthday" => self.birthday(text),
            "checkbox" => self.checkbox(text),
            "select" | "multiselect" | "radiobutton" => choice(),
            "multitext" => match item
                .enum_id()
                .and_then(|e| def.enums.get(&e))
                .map(|code| self.contact_kind(code))
            {
                Some(kind) if !text.is_empty() => format!("{text} ({kind})"),
                _ => text.to_owned(),
            },
            "monetary" => self.money(text, def.currency.as_deref()),
            // text, numeric, textarea, url, and every type amohook does not
            // know: as it came.
            _ => text.to_owned(),
        }
    }

    /// A Unix time (as amoCRM sends date fields) in the account's zone.
    fn local(&self, text: &str) -> Option<chrono::DateTime<Tz>> {
        let unix = text.trim().parse::<i64>().ok()?;
        self.tz.timestamp_opt(unix, 0).single()
    }

    /// A date as hooks may also send it: `dd.mm.yyyy` text (Kommo's own
    /// example of a birthday; date fields of older hooks).
    fn day_text(text: &str) -> Option<chrono::NaiveDate> {
        chrono::NaiveDate::parse_from_str(text.trim(), "%d.%m.%Y").ok()
    }

    /// The account's date pattern, with its time pattern when `with_time`.
    fn pattern(&self, with_time: bool) -> String {
        let settings = &self.dir.settings;
        let mut pattern = settings
            .short_date_pattern
            .clone()
            .unwrap_or_else(|| "d.m.Y".into());
        if with_time {
            pattern.push(' ');
            pattern.push_str(settings.short_time_pattern.as_deref().unwrap_or("H:i"));
        }
        php_pattern(&pattern)
    }

    /// A Unix time as a date (and time) in the account's zone and its date
    /// pattern; a `dd.mm.yyyy` date in the date pattern. Other text is
    /// shown as it came.
    fn date(&self, text: &str, with_time: bool) -> String {
        if let Some(at) = self.local(text) {
            return at.format(&self.pattern(with_time)).to_string();
        }
        match Self::day_text(text) {
            Some(day) => day.format(&self.pattern(false)).to_string(),
            None => text.to_owned(),
        }
    }

    /// A birthday: day and month, no year.
    fn birthday(&self, text: &str) -> String {
        let Some((day, month0)) = self
            .local(text)
            .map(|at| (at.day(), at.month0()))
            .or_else(|| Self::day_text(text).map(|d| (d.day(), d.month0())))
        else {
            return text.to_owned();
        };
        let words = self.lang.words();
        (words.birthday)(day, words.months[month0 as usize])
    }

    fn checkbox(&self, text: &str) -> String {
        let words = self.lang.words();
        if matches!(text, "1" | "true" | "Y" | "y") {
            words.yes
        } else {
            words.no
        }
        .into()
    }

    /// The type of a phone or e-mail, from its choice's code (the codes of
    /// amoCRM's built-in PHONE and EMAIL fields; others show as they are).
    fn contact_kind(&self, code: &str) -> String {
        self.lang
            .words()
            .contact_kind(code)
            .map_or_else(|| code.to_owned(), str::to_owned)
    }
}

/// amoCRM's date patterns are PHP `date()` patterns (`d.m.Y`, `m/d/Y`,
/// `H:i`); this turns the letters amoCRM uses into chrono's. Written here:
/// no crate translates PHP patterns, and amoCRM uses a handful of letters.
/// Other letters are kept as text.
pub(crate) fn php_pattern(php: &str) -> String {
    let mut out = String::with_capacity(php.len() * 2);
    for c in php.chars() {
        out.push_str(match c {
            'd' => "%d",
            'j' => "%-d",
            'm' => "%m",
            'n' => "%-m",
            'Y' => "%Y",
            'y' => "%y",
            'H' => "%H",
            'G' => "%-H",
            'h' => "%I",
            'g' => "%-I",
            'i' => "%M",
            's' => "%S",
            'A' => "%p",
            'a' => "%P",
            '%' => "%%",
            other => {
                out.push(other);
                continue;
            }
        });
    }
    out
}
