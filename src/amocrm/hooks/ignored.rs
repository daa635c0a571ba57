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
        // Kommo sends tasks under the singular key, and outgoing chat
        // messages under a key of their own (its webhooks-general page).
        "task",
        "outgoing_message",
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
        // Nearly every key of a hook is the account's or a noted card's:
        // those are passed over without decoding (this runs on every hook).
        if raw_key.starts_with("account") || noted_raw(raw_key) {
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

/// A raw key under a noted entity and action (`leads%5Badd%5D...` as
/// amoCRM sends it, `leads[add]...` as some proxies pass it on); the parser
/// has already upper-cased `%5b`/`%5d`.
fn noted_raw(raw_key: &str) -> bool {
    ["leads", "contacts", "companies"].iter().any(|entity| {
        raw_key.strip_prefix(entity).is_some_and(|rest| {
            let action = rest
                .strip_prefix("%5B")
                .or_else(|| rest.strip_prefix('['))
                .unwrap_or_default();
            ["add", "update", "status", "responsible"].iter().any(|a| {
                action
                    .strip_prefix(a)
                    .is_some_and(|end| end.starts_with("%5D") || end.starts_with(']'))
            })
        })
    })
}
