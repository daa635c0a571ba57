//! amoCRM's web-hook bodies, built the way amoCRM builds them:
//! `application/x-www-form-urlencoded`, PHP-style nested keys
//! (`leads[update][0][status_id]=142`), every value a string, the account
//! block (`account[subdomain]`, `account[id]`, `account[_links][self]`)
//! beside the cards. Field names and their order follow the captures in the
//! project's amoCRM reference notes (appendix A to E).
//!
//! The simulator sends these bodies for the cards people edit
//! ([`crate::Simulator::edit_card`]); the tests and the benchmark build
//! theirs with the same builder.

use crate::card::{Entity, SimCard};

/// A web-hook body under construction.
///
/// ```
/// use amocrm_sim::{HookBody, SimCard};
/// let body = HookBody::for_account(29_604_535, "shop.amocrm.ru")
///     .card("add", &SimCard::lead(35_168_771, "Заказ #87856"), None)
///     .encode();
/// assert!(body.contains("leads%5Badd%5D%5B0%5D%5Bid%5D=35168771"));
/// ```
#[derive(Debug, Clone)]
pub struct HookBody {
    account_id: i64,
    pairs: Vec<(String, String)>,
    /// `leads[add]`, `contacts[update]`, ...: how many cards each holds.
    lists: Vec<(String, usize)>,
    /// The key prefix of the last card added (`leads[add][0]`).
    last: Option<String>,
}

impl HookBody {
    /// A body that names its account by `account[id]` alone.
    pub fn new(account_id: i64) -> HookBody {
        HookBody {
            account_id,
            pairs: vec![("account[id]".into(), account_id.to_string())],
            lists: Vec::new(),
            last: None,
        }
    }

    /// A body with the account block amoCRM sends: the subdomain, the id
    /// and the link to the account (`https://{domain}`).
    pub fn for_account(account_id: i64, domain: &str) -> HookBody {
        let subdomain = domain.split('.').next().unwrap_or_default();
        HookBody {
            pairs: vec![
                ("account[subdomain]".into(), subdomain.into()),
                ("account[id]".into(), account_id.to_string()),
                ("account[_links][self]".into(), format!("https://{domain}")),
            ],
            ..HookBody::new(account_id)
        }
    }

    /// Adds `card` as it is after `action` (`add`, `update`, `status`,
    /// `responsible`). `before`, the card before this change, adds the
    /// `old_status_id`, `old_pipeline_id` and `old_responsible_user_id`
    /// amoCRM sends when those changed.
    pub fn card(mut self, action: &str, card: &SimCard, before: Option<&SimCard>) -> HookBody {
        let list = format!("{}[{action}]", card.entity.hook_key());
        let index = match self.lists.iter_mut().find(|(l, _)| *l == list) {
            Some((_, n)) => {
                *n += 1;
                *n - 1
            }
            None => {
                self.lists.push((list.clone(), 1));
                0
            }
        };
        let prefix = format!("{list}[{index}]");
        self.last = Some(prefix);
        let changed = |f: fn(&SimCard) -> i64| before.map(f).filter(|old| *old != f(card));
        let account_id = self.account_id.to_string();
        let mut fields: Vec<(&str, String)> =
            vec![("id", card.id.to_string()), ("name", card.name.clone())];
        match card.entity {
            Entity::Lead => {
                fields.push(("status_id", card.status_id.to_string()));
                if let Some(old) = changed(|c| c.status_id) {
                    fields.push(("old_status_id", old.to_string()));
                }
                fields.extend([
                    ("price", card.price.to_string()),
                    ("responsible_user_id", card.responsible_user_id.to_string()),
                    ("last_modified", card.updated_at.to_string()),
                    ("modified_user_id", card.modified_by.to_string()),
                    ("created_user_id", card.created_by.to_string()),
                    ("date_create", card.created_at.to_string()),
                    ("pipeline_id", card.pipeline_id.to_string()),
                ]);
                if let Some(old) = changed(|c| c.pipeline_id) {
                    fields.push(("old_pipeline_id", old.to_string()));
                }
                fields.push(("account_id", account_id));
            }
            Entity::Contact | Entity::Company => fields.extend([
                ("responsible_user_id", card.responsible_user_id.to_string()),
                ("date_create", card.created_at.to_string()),
                ("last_modified", card.updated_at.to_string()),
                ("created_user_id", card.created_by.to_string()),
                ("modified_user_id", card.modified_by.to_string()),
                ("account_id", account_id),
            ]),
        }
        if let Some(old) = changed(|c| c.responsible_user_id) {
            fields.push(("old_responsible_user_id", old.to_string()));
        }
        fields.push(("created_at", card.created_at.to_string()));
        fields.push(("updated_at", card.updated_at.to_string()));
        match card.entity {
            Entity::Lead => {}
            // Companies come as contacts of type `company`, as in the captures.
            Entity::Contact => fields.push(("type", "contact".into())),
            Entity::Company => fields.push(("type", "company".into())),
        }
        for (key, value) in fields {
            self = self.field(key, &value);
        }
        self
    }

    /// One more field of the last card added: `custom_fields][0][id` gives
    /// `leads[add][0][custom_fields][0][id]`. A key given twice keeps its
    /// last value when amohook reads it, as in PHP.
    ///
    /// # Panics
    /// When no card was added yet.
    pub fn field(mut self, key: &str, value: &str) -> HookBody {
        let prefix = self.last.as_ref().expect("a card was added first");
        let key = format!("{prefix}[{key}]");
        self.pairs.push((key, value.into()));
        self
    }

    /// Any pair, as it is (for bodies amoCRM's own builder would not make).
    pub fn pair(mut self, key: &str, value: &str) -> HookBody {
        self.pairs.push((key.into(), value.into()));
        self
    }

    /// The pairs, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The body, form-encoded.
    pub fn encode(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&self.pairs)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(body: &str) -> Vec<(String, String)> {
        url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect()
    }

    #[test]
    fn a_lead_update_names_the_old_stage_and_the_account_as_amocrm_does() {
        let before = SimCard::lead(27_754_599, "Сделка");
        let mut after = before.clone();
        after.status_id = 142;
        after.updated_at += 60;
        let body = HookBody::for_account(31_257_294, "appgpt.amocrm.ru")
            .card("update", &after, Some(&before))
            .encode();
        let pairs = decoded(&body);
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("account[subdomain]"), Some("appgpt"));
        assert_eq!(get("account[id]"), Some("31257294"));
        assert_eq!(
            get("account[_links][self]"),
            Some("https://appgpt.amocrm.ru")
        );
        assert_eq!(get("leads[update][0][status_id]"), Some("142"));
        assert_eq!(get("leads[update][0][old_status_id]"), Some("1"));
        assert_eq!(get("leads[update][0][account_id]"), Some("31257294"));
        // Only what changed has an old value.
        assert_eq!(get("leads[update][0][old_responsible_user_id]"), None);
        assert_eq!(get("leads[update][0][old_pipeline_id]"), None);
    }

    #[test]
    fn a_company_comes_as_a_contact_of_type_company_and_cards_are_numbered() {
        let company = SimCard {
            entity: Entity::Company,
            ..SimCard::lead(5, "ООО Ромашка")
        };
        let contact = SimCard {
            entity: Entity::Contact,
            ..SimCard::lead(6, "Анна")
        };
        let body = HookBody::new(1)
            .card("add", &company, None)
            .card("add", &contact, None)
            .field("custom_fields][0][id", "735649")
            .encode();
        let pairs = decoded(&body);
        assert!(pairs.contains(&("contacts[add][0][type]".into(), "company".into())));
        assert!(pairs.contains(&("contacts[add][1][type]".into(), "contact".into())));
        assert!(pairs.contains(&(
            "contacts[add][1][custom_fields][0][id]".into(),
            "735649".into()
        )));
        assert!(!pairs.iter().any(|(k, _)| k.contains("price")));
    }
}
