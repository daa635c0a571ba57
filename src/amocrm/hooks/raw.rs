//! The raw shape of a hook body, as serde_qs reads it, and the lenient
//! reading of it: a value of an unexpected shape is left out and counted,
//! never the whole hook.

use serde::Deserialize;

/// `[0]`, `[1]`, ... read as a map from index to item: serde_qs refuses a
/// `Vec` whose indices have gaps, and a hook must not be refused for that.
pub(super) type List<T> = std::collections::BTreeMap<u32, T>;

/// A value of the shape `T`, or `Odd` when the body has something else
/// there. amoCRM punishes refused hooks (it switches the hook off), so a
/// field the parser cannot read loses that field, not the hook.
///
/// This relies on serde_qs parsing the whole body into a tree before
/// deserializing: a value that fails to deserialize is an owned subtree, and
/// its siblings are read as if it were absent (the unit tests hold this).
#[derive(Debug)]
pub(super) enum Lenient<T> {
    Ok(T),
    Odd,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(T::deserialize(d).map_or(Lenient::Odd, Lenient::Ok))
    }
}

/// A string value: PostgreSQL cannot store NUL in text or jsonb, so NUL
/// characters are removed (nothing else is changed). A key given twice
/// becomes a sequence in serde_qs; the last value wins, as in PHP.
#[derive(Debug, Default)]
pub(super) struct Text(pub(super) String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Shape {
            One(String),
            Many(Vec<String>),
        }
        let text = match Shape::deserialize(d)? {
            Shape::One(s) => s,
            Shape::Many(list) => list.into_iter().next_back().unwrap_or_default(),
        };
        Ok(Text(if text.contains('\0') {
            text.replace('\0', "")
        } else {
            text
        }))
    }
}

/// Optional fields of the body, each read leniently.
pub(super) type Field<T> = Option<Lenient<T>>;

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawHook {
    #[serde(default)]
    pub(super) account: Field<RawAccount>,
    #[serde(default)]
    pub(super) leads: Field<RawActions>,
    #[serde(default)]
    pub(super) contacts: Field<RawActions>,
    #[serde(default)]
    pub(super) companies: Field<RawActions>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawAccount {
    #[serde(default)]
    pub(super) id: Field<Text>,
    #[serde(default)]
    pub(super) subdomain: Field<Text>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawActions {
    #[serde(default)]
    pub(super) add: Field<List<Lenient<RawEntity>>>,
    #[serde(default)]
    pub(super) update: Field<List<Lenient<RawEntity>>>,
    #[serde(default)]
    pub(super) status: Field<List<Lenient<RawEntity>>>,
    #[serde(default)]
    pub(super) responsible: Field<List<Lenient<RawEntity>>>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawEntity {
    #[serde(default)]
    pub(super) id: Field<Text>,
    #[serde(default)]
    pub(super) name: Field<Text>,
    #[serde(default)]
    pub(super) price: Field<Text>,
    #[serde(default)]
    pub(super) status_id: Field<Text>,
    #[serde(default)]
    pub(super) old_status_id: Field<Text>,
    #[serde(default)]
    pub(super) pipeline_id: Field<Text>,
    #[serde(default)]
    pub(super) old_pipeline_id: Field<Text>,
    #[serde(default)]
    pub(super) responsible_user_id: Field<Text>,
    #[serde(default)]
    pub(super) old_responsible_user_id: Field<Text>,
    #[serde(default)]
    pub(super) created_at: Field<Text>,
    #[serde(default)]
    pub(super) date_create: Field<Text>,
    #[serde(default)]
    pub(super) updated_at: Field<Text>,
    #[serde(default)]
    pub(super) last_modified: Field<Text>,
    #[serde(default, rename = "type")]
    pub(super) kind: Field<Text>,
    #[serde(default)]
    pub(super) custom_fields: Field<List<Lenient<RawField>>>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawField {
    #[serde(default)]
    pub(super) id: Field<Text>,
    #[serde(default)]
    pub(super) name: Field<Text>,
    #[serde(default)]
    pub(super) code: Field<Text>,
    #[serde(default)]
    pub(super) values: Field<List<Lenient<RawValue>>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawValue {
    /// `values[0]=1537920000`: date fields come without a `[value]` key.
    Plain(Text),
    Item {
        #[serde(default)]
        value: Field<Text>,
        #[serde(default, rename = "enum")]
        enum_id: Field<Text>,
    },
}

/// Counts what was left out while the raw body is turned into events.
#[derive(Default)]
pub(super) struct Reader {
    pub(super) skipped: u32,
}

impl Reader {
    /// The value of a field that was present and readable.
    pub(super) fn take<T>(&mut self, field: Field<T>) -> Option<T> {
        match field? {
            Lenient::Ok(value) => Some(value),
            Lenient::Odd => {
                self.skipped += 1;
                None
            }
        }
    }

    pub(super) fn text(&mut self, field: Field<Text>) -> Option<String> {
        self.take(field).map(|t| t.0)
    }

    /// A number that may be absent or empty; one that is not a number is
    /// left out (and counted).
    pub(super) fn number(&mut self, field: Field<Text>) -> Option<i64> {
        let text = self.text(field)?;
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        match text.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                self.skipped += 1;
                None
            }
        }
    }

    pub(super) fn list<T>(&mut self, field: Field<List<Lenient<T>>>) -> Vec<T> {
        let items = self.take(field).unwrap_or_default();
        items
            .into_values()
            .filter_map(|item| self.take(Some(item)))
            .collect()
    }
}
