//! Cards a body names that amohook makes no note of: answered 200, counted.

/// A card of a kind or action amohook does not note, named for the metric
/// by a fixed set of words (anything else is `other`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ignored {
    pub entity: &'static str,
    pub action: &'static str,
}

/// The cards a body names under entities or actions that amohook does not
/// note, one per `entity[action][N]`. serde skips those keys while parsing;
/// this pass reads only the keys (values are not decoded).
pub(super) fn cards(text: &str) -> Vec<Ignored> {
    const ENTITIES: &[&str] = &[
        "leads",
        "contacts",
        "companies",
        "customers",
        "tasks",
        "catalogs",
        "unsorted",
        "message",
        "talk",
        "notes",
    ];
    const ACTIONS: &[&str] = &[
        "add",
        "update",
        "delete",
        "restore",
        "status",
        "responsible",
        "note",
    ];
    let known = |list: &[&'static str], word: &str| -> &'static str {
        list.iter().copied().find(|w| *w == word).unwrap_or("other")
    };
    let mut cards = std::collections::BTreeSet::new();
    for pair in text.split('&') {
        let raw_key = pair.split('=').next().unwrap_or_default();
        if raw_key.starts_with("account") {
            continue;
        }
        let Some((key, _)) = url::form_urlencoded::parse(raw_key.as_bytes()).next() else {
            continue;
        };
        let mut parts = key.split(['[', ']']).filter(|p| !p.is_empty());
        let (Some(entity), Some(action), Some(index)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let noted = matches!(entity, "leads" | "contacts" | "companies")
            && matches!(action, "add" | "update" | "status" | "responsible");
        if !noted && index.bytes().all(|b| b.is_ascii_digit()) {
            cards.insert((entity.to_owned(), action.to_owned(), index.to_owned()));
        }
    }
    cards
        .into_iter()
        .map(|(entity, action, _)| Ignored {
            entity: known(ENTITIES, &entity),
            action: known(ACTIONS, &action),
        })
        .collect()
}
