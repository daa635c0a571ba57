//! Cards (leads, contacts, companies) that people add and change in a
//! simulated account, and the web-hooks amoCRM sends for each change.
//!
//! amoCRM sends a hook for a change to every destination the account
//! subscribed (`POST /api/v4/webhooks`) for that event (`add_lead`,
//! `update_contact`, `add_company`, ...); a save that changes nothing sends
//! nothing. [`crate::Simulator::edit_card`] keeps the card's new state and
//! returns those hooks ([`OutgoingHook`]) for the caller to post: the
//! simulator itself makes no outgoing requests.

use crate::{
    answers::unix_now,
    card::{Entity, SimCard},
    webhook::HookBody,
    Simulator,
};

/// A person's save of a card in the account's interface.
#[derive(Debug, Clone)]
pub struct CardEdit {
    pub entity: Entity,
    /// The card to change; None adds a new one.
    pub id: Option<i64>,
    /// None keeps the current name (a new card: none).
    pub name: Option<String>,
    /// None: the card's current one (a new card: the account's first user).
    pub responsible_user_id: Option<i64>,
    /// Leads only; None keeps the current budget (new: 0).
    pub price: Option<i64>,
    /// Leads only: the stage, whose pipeline the lead moves to. None keeps
    /// the current one (new: the first stage of the first pipeline).
    pub status_id: Option<i64>,
}

/// A web-hook amoCRM sends: to where, with which body.
#[derive(Debug, Clone)]
pub struct OutgoingHook {
    pub destination: String,
    /// Form-encoded.
    pub body: String,
    /// What amoCRM sends as `x-amocrm-requestid`.
    pub request_id: String,
}

impl OutgoingHook {
    /// The headers amoCRM sends with a hook.
    pub fn headers(&self) -> [(&'static str, String); 3] {
        [
            (
                "content-type",
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("user-agent", "amoCRM-Webhooks/3.0".to_owned()),
            ("x-amocrm-requestid", self.request_id.clone()),
        ]
    }
}

/// What a save did.
#[derive(Debug, Clone)]
pub struct CardChange {
    /// `add` or `update`.
    pub action: &'static str,
    pub before: Option<SimCard>,
    pub card: SimCard,
    /// One per destination subscribed to this event; none when the account
    /// subscribed none.
    pub hooks: Vec<OutgoingHook>,
}

impl Simulator {
    /// A person saves a card in `domain`: the card takes its new state and
    /// the web-hooks amoCRM would send for it are returned, for the caller
    /// to post. `Ok(None)`: the save changed nothing, so amoCRM sends
    /// nothing. An error names what the account does not have (the account,
    /// the card, the user, the stage).
    pub fn edit_card(&self, domain: &str, edit: CardEdit) -> Result<Option<CardChange>, String> {
        self.with(|s| {
            let account = s
                .accounts
                .get(domain)
                .cloned()
                .ok_or_else(|| format!("no account {domain}"))?;
            let editor = account.users.first().map_or(0, |(id, _)| *id);
            let stage = |status_id: i64| {
                account
                    .pipelines
                    .iter()
                    .find(|(_, _, statuses)| statuses.iter().any(|(id, _)| *id == status_id))
                    .map(|(pipeline, _, _)| *pipeline)
                    .ok_or_else(|| format!("no stage {status_id} in {domain}"))
            };
            if let Some(user) = edit.responsible_user_id {
                if !account.users.iter().any(|(id, _)| *id == user) {
                    return Err(format!("no user {user} in {domain}"));
                }
            }
            let now = unix_now();
            let before = match edit.id {
                None => None,
                Some(id) => Some(
                    s.cards
                        .iter()
                        .find(|(d, c)| d == domain && c.id == id && c.entity == edit.entity)
                        .map(|(_, c)| c.clone())
                        .ok_or_else(|| format!("no {} {id} in {domain}", edit.entity.as_str()))?,
                ),
            };
            let mut card = match &before {
                Some(card) => card.clone(),
                None => {
                    s.counter += 1;
                    let (pipeline_id, status_id) = account
                        .pipelines
                        .first()
                        .and_then(|(p, _, statuses)| statuses.first().map(|(st, _)| (*p, *st)))
                        .unwrap_or_default();
                    SimCard {
                        entity: edit.entity,
                        id: 20_000_000 + s.counter as i64,
                        name: String::new(),
                        responsible_user_id: editor,
                        price: 0,
                        pipeline_id,
                        status_id,
                        created_by: editor,
                        modified_by: editor,
                        created_at: now,
                        updated_at: now,
                    }
                }
            };
            if let Some(name) = &edit.name {
                card.name = name.trim().to_owned();
            }
            if let Some(user) = edit.responsible_user_id {
                card.responsible_user_id = user;
            }
            if edit.entity == Entity::Lead {
                if let Some(price) = edit.price {
                    card.price = price;
                }
                if let Some(status_id) = edit.status_id {
                    card.pipeline_id = stage(status_id)?;
                    card.status_id = status_id;
                }
            }
            card.modified_by = editor;
            if let Some(before) = &before {
                if before.same_content(&card) {
                    return Ok(None);
                }
                // Two saves within a second stay in order.
                card.updated_at = now.max(before.updated_at + 1);
            }
            let action = if before.is_some() { "update" } else { "add" };
            let event = format!("{action}_{}", card.entity.as_str());
            let mut destinations: Vec<String> = s
                .webhooks
                .iter()
                .filter(|(d, hook)| {
                    d == domain
                        && hook["disabled"] != true
                        && hook["settings"]
                            .as_array()
                            .is_some_and(|events| events.iter().any(|e| *e == event.as_str()))
                })
                .filter_map(|(_, hook)| hook["destination"].as_str().map(str::to_owned))
                .collect();
            destinations.dedup();
            let body = HookBody::for_account(account.id, domain)
                .card(action, &card, before.as_ref())
                .encode();
            let hooks = destinations
                .into_iter()
                .map(|destination| OutgoingHook {
                    destination,
                    body: body.clone(),
                    request_id: request_id(),
                })
                .collect();
            s.cards.retain(|(d, c)| !(d == domain && c.id == card.id));
            s.cards.push((domain.into(), card.clone()));
            Ok(Some(CardChange {
                action,
                before,
                card,
                hooks,
            }))
        })
    }

    /// The cards of `domain`, the last changed first.
    pub fn cards(&self, domain: &str) -> Vec<SimCard> {
        self.with(|s| {
            s.cards
                .iter()
                .rev()
                .filter(|(d, _)| d == domain)
                .map(|(_, c)| c.clone())
                .collect()
        })
    }
}

/// A UUID-shaped id, as amoCRM's `x-amocrm-requestid`.
fn request_id() -> String {
    let n: u128 = rand::random();
    let h = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}
