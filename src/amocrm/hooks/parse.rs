//! From a body to [`Hook`]: the form decoded with `serde_qs`, then one
//! [`HookEvent`] per card, with short reasons for anything that is not a
//! hook.

use super::raw::{RawEntity, RawHook, RawItem, RawValue, Reader};
use super::*;

/// How far ahead of the receipt a card's time may be (amoCRM's clock and
/// ours differ by seconds, not minutes); later times count as this.
pub const FUTURE_SKEW_SECONDS: i64 = 60;

/// Parses a hook body. Never panics; anything that is not a hook is an
/// error with a short reason. An entity without a time of its own (amoCRM's
/// digital-pipeline hooks send none) takes the current time.
pub fn parse(body: &[u8]) -> Result<Hook, HookError> {
    parse_at(body, chrono::Utc::now().timestamp())
}

/// [`parse`], with `received_at` (unix seconds) as the time of entities
/// that give none.
pub fn parse_at(body: &[u8], received_at: i64) -> Result<Hook, HookError> {
    let text = std::str::from_utf8(body).map_err(|_| HookError::Malformed("not UTF-8".into()))?;
    // serde_qs's form mode decodes only upper-case %5B/%5D (serde_qs#176).
    // amoCRM sends upper case: the body is copied only when it has any.
    let text = if text.contains("%5b") || text.contains("%5d") {
        std::borrow::Cow::Owned(text.replace("%5b", "%5B").replace("%5d", "%5D"))
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    let raw: RawHook = serde_qs::Config::new()
        .max_depth(10)
        .use_form_encoding(true)
        .deserialize_str(&text)
        .map_err(|e| HookError::Malformed(short(&e.to_string())))?;

    let mut reader = Reader::default();
    let account = reader.take(raw.account).unwrap_or_default();
    let account_id = reader.text(account.id);
    let subdomain = reader.text(account.subdomain);
    // Every hook amoCRM sends names its account; a body that names none is
    // not a hook at all (whatever else it holds).
    if account_id.is_none() && subdomain.is_none() {
        return Err(HookError::Invalid(
            "no account[id] or account[subdomain]: not an amoCRM hook".into(),
        ));
    }
    let mut hook = Hook {
        account_id: account_id
            .as_deref()
            .map(|id| positive_id("account[id]", id))
            .transpose()?,
        subdomain: subdomain.filter(|s| !s.is_empty()),
        ..Hook::default()
    };
    for (actions, default_kind) in [
        (raw.leads, EntityKind::Lead),
        (raw.contacts, EntityKind::Contact),
        (raw.companies, EntityKind::Company),
    ] {
        let Some(actions) = reader.take(actions) else {
            continue;
        };
        for (list, action) in [
            (actions.add, Action::Add),
            (actions.update, Action::Update),
            (actions.status, Action::Status),
            (actions.responsible, Action::Responsible),
        ] {
            for entity in reader.list(list) {
                let event = event(&mut reader, entity, default_kind, action, received_at)?;
                hook.events.push(event);
            }
        }
    }
    hook.skipped_fields = reader.skipped;
    hook.ignored = ignored::cards(&text);
    Ok(hook)
}

fn event(
    reader: &mut Reader,
    raw: RawEntity,
    default_kind: EntityKind,
    action: Action,
    received_at: i64,
) -> Result<HookEvent, HookError> {
    let entity = match (default_kind, reader.text(raw.kind).as_deref()) {
        // Companies arrive as contacts[...][type]=company.
        (EntityKind::Contact, Some("company")) => EntityKind::Company,
        (kind, _) => kind,
    };
    // Without its id a card cannot be named: the one thing a hook is
    // refused for.
    let id = reader
        .text(raw.id)
        .ok_or_else(|| HookError::Invalid(format!("a {} without an id", entity.as_str())))?;
    let entity_id = positive_id("id", &id)?;
    let updated_at = reader.number(raw.updated_at);
    let last_modified = reader.number(raw.last_modified);
    let created_at = reader
        .number(raw.created_at)
        .or(reader.number(raw.date_create));
    // A time far ahead of ours would order every later change of the card
    // before this one, and so silence it: no card changes in the future.
    let changed_at = updated_at
        .or(last_modified)
        .or(created_at)
        .unwrap_or(received_at)
        .min(received_at.saturating_add(FUTURE_SKEW_SECONDS));
    let custom_fields = reader
        .list(raw.custom_fields)
        .into_iter()
        .filter_map(|f| {
            let id = reader.text(f.id).filter(|s| !s.is_empty())?;
            let code = reader.text(f.code).filter(|c| !c.is_empty());
            let name = reader
                .text(f.name)
                .filter(|s| !s.trim().is_empty())
                .or(code.clone())
                .unwrap_or_else(|| format!("#{id}"));
            let values = reader.take(f.values).map(|v| v.0).unwrap_or_default();
            let values = reader
                .items(values)
                .into_iter()
                .map(|v| match v {
                    RawValue::Plain(s) => FieldItem::Text(s.0),
                    RawValue::Item(RawItem { value, enum_id }) => {
                        let value = reader.take(value).map(|v| v.0).unwrap_or_default();
                        match reader.number(enum_id) {
                            Some(enum_id) => FieldItem::Choice { value, enum_id },
                            None => FieldItem::Text(value),
                        }
                    }
                })
                .filter(|v| !v.text().is_empty() || v.enum_id().is_some())
                .collect();
            Some(FieldValue {
                id,
                name,
                code,
                values,
            })
        })
        .collect();
    let name = reader.text(raw.name);
    Ok(HookEvent {
        entity,
        action,
        entity_id,
        changed_at,
        snapshot: Snapshot {
            partial: name.is_none(),
            name: name.unwrap_or_default(),
            price: reader.text(raw.price).filter(|p| !p.is_empty()),
            status_id: reader.number(raw.status_id),
            old_status_id: reader.number(raw.old_status_id),
            pipeline_id: reader.number(raw.pipeline_id),
            old_pipeline_id: reader.number(raw.old_pipeline_id),
            responsible_user_id: reader.number(raw.responsible_user_id),
            old_responsible_user_id: reader.number(raw.old_responsible_user_id),
            created_at,
            updated_at: updated_at.or(last_modified),
            custom_fields,
            modified_user_id: reader.number(raw.modified_user_id),
        },
    })
}

/// Account and card ids are positive integers; anything else cannot name a
/// card, and amoCRM must not be asked about it.
fn positive_id(name: &str, text: &str) -> Result<i64, HookError> {
    match text.trim().parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        Ok(_) => Err(HookError::Invalid(format!(
            "{name} must be a positive number: {}",
            short(text)
        ))),
        Err(_) => Err(HookError::Invalid(format!(
            "{name} is not a number: {}",
            short(text)
        ))),
    }
}

fn short(text: &str) -> String {
    let mut out: String = text.chars().take(120).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}
