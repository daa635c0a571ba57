//! What a card is: its kind and its fields, as amoCRM keeps them. Below
//! the cards people edit (`cards.rs`) and the hook bodies built from them
//! (`webhook.rs`).

/// What a card is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entity {
    Lead,
    Contact,
    Company,
}

impl Entity {
    pub const ALL: [Entity; 3] = [Entity::Lead, Entity::Contact, Entity::Company];

    /// `lead`, `contact`, `company`: as in web-hook event names.
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Lead => "lead",
            Entity::Contact => "contact",
            Entity::Company => "company",
        }
    }

    /// `leads`, `contacts`, `companies`: as in API paths and
    /// [`crate::SimNote::entity_type`].
    pub fn plural(self) -> &'static str {
        match self {
            Entity::Lead => "leads",
            Entity::Contact => "contacts",
            Entity::Company => "companies",
        }
    }

    /// The top-level key of its cards in a hook body: companies come as
    /// `contacts[...]` of `type` company.
    pub fn hook_key(self) -> &'static str {
        match self {
            Entity::Lead => "leads",
            Entity::Contact | Entity::Company => "contacts",
        }
    }

    pub fn parse(text: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

/// A card as its web-hooks show it. Contacts and companies ignore the
/// lead-only fields (`price`, `pipeline_id`, `status_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCard {
    pub entity: Entity,
    pub id: i64,
    pub name: String,
    pub responsible_user_id: i64,
    /// The budget.
    pub price: i64,
    pub pipeline_id: i64,
    /// The stage.
    pub status_id: i64,
    /// Who made it (0: a form, a chat, a robot).
    pub created_by: i64,
    pub modified_by: i64,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
}

impl SimCard {
    /// A lead of [`crate::SimAccount::new`]'s account: user 100 responsible,
    /// stage 1 of pipeline 10, budget 1000, made by a form at 1712331728
    /// (05.04.2024 18:42:08 in Moscow).
    pub fn lead(id: i64, name: &str) -> SimCard {
        SimCard {
            entity: Entity::Lead,
            id,
            name: name.into(),
            responsible_user_id: 100,
            price: 1000,
            pipeline_id: 10,
            status_id: 1,
            created_by: 0,
            modified_by: 0,
            created_at: 1_712_331_728,
            updated_at: 1_712_331_728,
        }
    }

    /// The same card apart from who changed it and when.
    pub(crate) fn same_content(&self, other: &SimCard) -> bool {
        SimCard {
            modified_by: other.modified_by,
            updated_at: other.updated_at,
            ..self.clone()
        } == *other
    }
}
