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
    #[serde(default)]
    pub(super) modified_user_id: Field<Text>,
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
    pub(super) values: Field<RawValues>,
}

/// A field's values: a list (`values[0][value]=...`), or one value on its
/// own (`values[value]=2&values[enum]=566642`: a radiobutton in Kommo's own
/// examples, ../shared/reference/amocrm-api.md §0b N16).
///
/// Read as a map by its keys first (serde_qs gives index keys as text, and
/// a map takes gaps in them), then sorted out: an untagged enum would go
/// through serde's buffered content, where serde_qs's lists become
/// sequences that a struct reads by position.
#[derive(Debug, Default)]
pub(super) struct RawValues(pub(super) Vec<Lenient<RawValue>>);

impl<'de> Deserialize<'de> for RawValues {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut map = std::collections::BTreeMap::<String, Lenient<RawValue>>::deserialize(d)?;
        let indexed = map.keys().all(|k| k.parse::<u32>().is_ok());
        let one = map.contains_key("value") || map.contains_key("enum");
        if map.is_empty() || !(indexed || one) {
            return Err(serde::de::Error::custom("not a field's values"));
        }
        let indexed: Option<Vec<u32>> = map.keys().map(|k| k.parse().ok()).collect();
        if let Some(mut indices) = indexed {
            indices.sort_unstable();
            return Ok(RawValues(
                indices
                    .into_iter()
                    .filter_map(|i| map.remove(&i.to_string()))
                    .collect(),
            ));
        }
        // One value: its `value` and `enum`, each a plain text.
        let text = |v: Option<Lenient<RawValue>>| -> Option<Lenient<Text>> {
            Some(match v? {
                Lenient::Ok(RawValue::Plain(t)) => Lenient::Ok(t),
                _ => Lenient::Odd,
            })
        };
        let value = text(map.remove("value")).map(|v| match v {
            Lenient::Ok(t) => Lenient::Ok(ValueText(t.0)),
            Lenient::Odd => Lenient::Odd,
        });
        let enum_id = text(map.remove("enum"));
        Ok(RawValues(vec![Lenient::Ok(RawValue::Item(RawItem {
            value,
            enum_id,
        }))]))
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawValue {
    /// `values[0]=1537920000`: date fields come without a `[value]` key.
    Plain(Text),
    Item(RawItem),
}

#[derive(Debug, Deserialize)]
pub(super) struct RawItem {
    #[serde(default)]
    pub(super) value: Field<ValueText>,
    #[serde(default, rename = "enum")]
    pub(super) enum_id: Field<Text>,
}

/// A value's text: a string, or one of API v4's object values
/// (`legal_entity`, `linked_entity`: `[value][name]=...`; `chained_list`:
/// `[value][catalog_element_id]=...`; amocrm-api-php's value models), read
/// as its name, else its address or element.
#[derive(Debug, Default)]
pub(super) struct ValueText(pub(super) String);

impl<'de> Deserialize<'de> for ValueText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Shape {
            Text(Text),
            Object(std::collections::BTreeMap<String, Lenient<Text>>),
        }
        Ok(ValueText(match Shape::deserialize(d)? {
            Shape::Text(t) => t.0,
            Shape::Object(map) => {
                let part = |key: &str| match map.get(key) {
                    Some(Lenient::Ok(t)) if !t.0.trim().is_empty() => Some(t.0.clone()),
                    _ => None,
                };
                ["name", "value", "address", "text"]
                    .into_iter()
                    .find_map(part)
                    .or_else(|| part("catalog_element_id").map(|id| format!("#{id}")))
                    .unwrap_or_default()
            }
        }))
    }
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
        self.items(items.into_values())
    }

    /// The readable items, the others counted.
    pub(super) fn items<T>(&mut self, items: impl IntoIterator<Item = Lenient<T>>) -> Vec<T> {
        items
            .into_iter()
            .filter_map(|item| self.take(Some(item)))
            .collect()
    }
}
