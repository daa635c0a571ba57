//! The hook bodies the benchmark sends, shaped like the ones amoCRM really
//! sends (../shared/reference/amocrm-api.md: the appendix's captures A to D
//! and Kommo's examples): form-encoded, percent-encoded brackets, Cyrillic
//! names, the account block, and for a lead its tags and custom fields of
//! several types. A benchmark is only as honest as its input: a bare lead
//! of a few hundred bytes flattered intake by several times.

use clap::ValueEnum;

/// Which hooks to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Body {
    /// `leads[update]` of a lead with a tag and four custom fields of four
    /// types (text, select, date, checkbox): 2.1 KB, the size of real lead
    /// hooks (capture A of the reference, a lead add with four fields and
    /// two tags, is 2.4 KB; capture B's contact update, 2.0 KB).
    Lead,
    /// The same lead with two tags and seven custom fields (text, numeric,
    /// select, multiselect, date, checkbox, a code): 3.7 KB.
    LeadLarge,
    /// `contacts[update]` with two phones, an e-mail and a position, as
    /// amoCRM sends them (capture B).
    Contact,
    /// A digital pipeline's `leads[status]`: ids only.
    Status,
    /// The three in turn.
    Mix,
    /// The bare `leads[add]` the benchmark sent before (a few hundred
    /// bytes): to compare with older figures only.
    Bare,
}

impl Body {
    /// The body of hook number `n` for `account_id` at `subdomain`, about
    /// card `entity_id`: every hook is a distinct change of its own card.
    pub(crate) fn make(self, account_id: i64, subdomain: &str, entity_id: i64, n: usize) -> String {
        let shape = match self {
            Body::Mix => [Body::Lead, Body::Contact, Body::Status][n % 3],
            other => other,
        };
        let at = 1_712_331_728 + n as i64;
        let pairs = match shape {
            Body::Lead | Body::Mix => lead(account_id, entity_id, at),
            Body::LeadLarge => lead_large(account_id, entity_id, at),
            Body::Contact => contact(account_id, entity_id, at),
            Body::Status => status(entity_id),
            Body::Bare => return crate::hook_body(account_id, entity_id),
        };
        encode(account_id, subdomain, pairs)
    }
}

fn encode(account_id: i64, subdomain: &str, mut pairs: Vec<(String, String)>) -> String {
    pairs.push(("account[subdomain]".into(), subdomain.into()));
    pairs.push(("account[id]".into(), account_id.to_string()));
    pairs.push((
        "account[_links][self]".into(),
        format!("https://{subdomain}.amocrm.ru"),
    ));
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// `prefix[key]` pairs from `(key, value)`s.
fn under(prefix: &str, fields: &[(&str, String)]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|(k, v)| (format!("{prefix}[{k}]"), v.clone()))
        .collect()
}

fn lead(account_id: i64, id: i64, at: i64) -> Vec<(String, String)> {
    let n = |v: i64| v.to_string();
    let s = |v: &str| v.to_owned();
    under(
        "leads[update][0]",
        &[
            ("id", n(id)),
            ("name", format!("Заказ #{id}")),
            ("status_id", n(50_288_839)),
            ("old_status_id", n(50_288_836)),
            ("price", n(28_000 + id % 1000)),
            ("responsible_user_id", n(9_750_914)),
            ("last_modified", n(at)),
            ("modified_user_id", n(9_750_914)),
            ("created_user_id", n(0)),
            ("date_create", n(1_712_331_728)),
            ("pipeline_id", n(5_723_341)),
            ("tags][0][id", n(276_243)),
            ("tags][0][name", s("myshop.ru")),
            ("account_id", n(account_id)),
            ("custom_fields][0][id", n(1_425_011)),
            ("custom_fields][0][name", s("Город")),
            ("custom_fields][0][values][0][value", s("Тюмень")),
            ("custom_fields][1][id", n(1_402_697)),
            ("custom_fields][1][name", s("Источник")),
            ("custom_fields][1][values][0][value", s("Сайт")),
            ("custom_fields][1][values][0][enum", n(918_167)),
            ("custom_fields][2][id", n(1_426_027)),
            ("custom_fields][2][name", s("Доставка")),
            (
                "custom_fields][2][values][0",
                n(1_673_560_800 + (id % 30) * 86_400),
            ),
            ("custom_fields][3][id", n(1_426_031)),
            ("custom_fields][3][name", s("Оплачено")),
            ("custom_fields][3][values][0][value", n(id % 2)),
            ("created_at", n(1_712_331_728)),
            ("updated_at", n(at)),
        ],
    )
}

fn lead_large(account_id: i64, id: i64, at: i64) -> Vec<(String, String)> {
    let n = |v: i64| v.to_string();
    let s = |v: &str| v.to_owned();
    under(
        "leads[update][0]",
        &[
            ("id", n(id)),
            ("name", format!("Заказ #{id}, +7 (919) 959-39-84")),
            ("status_id", n(50_288_839)),
            ("old_status_id", n(50_288_836)),
            ("price", n(28_000 + id % 1000)),
            ("responsible_user_id", n(9_750_914)),
            ("last_modified", n(at)),
            ("modified_user_id", n(9_750_914)),
            ("created_user_id", n(0)),
            ("date_create", n(1_712_331_728)),
            ("pipeline_id", n(5_723_341)),
            ("tags][0][id", n(276_241)),
            ("tags][0][name", s("xn--80afdp5b4b.xn--p1ai")),
            ("tags][1][id", n(276_243)),
            ("tags][1][name", s("Оптовый клиент")),
            ("account_id", n(account_id)),
            ("custom_fields][0][id", n(6_099)),
            ("custom_fields][0][name", s("_ym_uid")),
            ("custom_fields][0][values][0][value", n(87_856 + id % 10)),
            ("custom_fields][0][code", s("_YM_UID")),
            ("custom_fields][1][id", n(1_425_011)),
            ("custom_fields][1][name", s("Город доставки")),
            ("custom_fields][1][values][0][value", s("Тюменская область")),
            ("custom_fields][2][id", n(1_402_697)),
            ("custom_fields][2][name", s("С какого сайта пришла заявка")),
            (
                "custom_fields][2][values][0][value",
                s("xn--80afdp5b4b.xn--p1ai"),
            ),
            ("custom_fields][2][values][0][enum", n(918_167)),
            ("custom_fields][3][id", n(1_426_025)),
            ("custom_fields][3][name", s("Наша  цена")),
            ("custom_fields][3][values][0][value", s("280.00")),
            ("custom_fields][4][id", n(1_426_027)),
            ("custom_fields][4][name", s("Дата доставки")),
            (
                "custom_fields][4][values][0",
                n(1_673_560_800 + (id % 30) * 86_400),
            ),
            ("custom_fields][5][id", n(1_426_029)),
            ("custom_fields][5][name", s("Услуги")),
            ("custom_fields][5][values][0][value", s("Доставка")),
            ("custom_fields][5][values][0][enum", n(918_201)),
            ("custom_fields][5][values][1][value", s("Сборка")),
            ("custom_fields][5][values][1][enum", n(918_203)),
            ("custom_fields][6][id", n(1_426_031)),
            ("custom_fields][6][name", s("Оплачено")),
            ("custom_fields][6][values][0][value", n(id % 2)),
            ("created_at", n(1_712_331_728)),
            ("updated_at", n(at)),
        ],
    )
}

fn contact(account_id: i64, id: i64, at: i64) -> Vec<(String, String)> {
    let n = |v: i64| v.to_string();
    let s = |v: &str| v.to_owned();
    under(
        "contacts[update][0]",
        &[
            ("id", n(id)),
            ("name", format!("Абиба абибович {id}")),
            ("responsible_user_id", n(10_000_698)),
            ("date_create", n(1_748_289_231)),
            ("last_modified", n(at)),
            ("created_user_id", n(10_000_698)),
            ("modified_user_id", n(10_000_698)),
            ("account_id", n(account_id)),
            ("custom_fields][0][id", n(735_647)),
            ("custom_fields][0][name", s("Должность")),
            (
                "custom_fields][0][values][0][value",
                s("Руководитель отдела закупок"),
            ),
            ("custom_fields][0][code", s("POSITION")),
            ("custom_fields][1][id", n(735_649)),
            ("custom_fields][1][name", s("Телефон")),
            (
                "custom_fields][1][values][0][value",
                format!("+7 (999) {:03}-00-00", id % 1000),
            ),
            ("custom_fields][1][values][0][enum", n(718_321)),
            (
                "custom_fields][1][values][1][value",
                s("+7 (495) 123-45-67"),
            ),
            ("custom_fields][1][values][1][enum", n(718_323)),
            ("custom_fields][1][code", s("PHONE")),
            ("custom_fields][2][id", n(735_651)),
            ("custom_fields][2][name", s("Email")),
            (
                "custom_fields][2][values][0][value",
                format!("client{id}@example.ru"),
            ),
            ("custom_fields][2][values][0][enum", n(718_333)),
            ("custom_fields][2][code", s("EMAIL")),
            ("old_responsible_user_id", n(10_000_698)),
            ("created_at", n(1_748_289_231)),
            ("updated_at", n(at)),
            ("type", s("contact")),
        ],
    )
}

/// A digital pipeline's stage hook: ids only, no time, no name.
fn status(id: i64) -> Vec<(String, String)> {
    let n = |v: i64| v.to_string();
    under(
        "leads[status][0]",
        &[
            ("id", n(id)),
            ("status_id", n(59_936_202)),
            ("pipeline_id", n(7_173_574)),
            ("old_status_id", n(59_936_198)),
            ("old_pipeline_id", n(7_173_574)),
        ],
    )
}

/// Smallest, mean and largest size in bytes.
pub(crate) fn sizes<'a>(bodies: impl Iterator<Item = &'a str>) -> (usize, f64, usize) {
    let lens: Vec<usize> = bodies.map(str::len).collect();
    let mean = lens.iter().sum::<usize>() as f64 / lens.len().max(1) as f64;
    (
        lens.iter().copied().min().unwrap_or(0),
        mean,
        lens.iter().copied().max().unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lead_body_is_the_size_of_a_real_one_and_every_hook_is_its_own_change() {
        let a = Body::Lead.make(7, "acc60000001", 1_000_001, 0);
        let b = Body::Lead.make(7, "acc60000001", 1_000_002, 1);
        assert!((1_900..2_300).contains(&a.len()), "{} bytes", a.len());
        assert_ne!(a, b);
        let hook = amohook::amocrm::hooks::parse(a.as_bytes()).unwrap();
        assert_eq!(hook.account_id, Some(7));
        assert_eq!(hook.skipped_fields, 0);
        assert_eq!(hook.events[0].snapshot.custom_fields.len(), 4);
        let large = Body::LeadLarge.make(7, "acc60000001", 1_000_001, 0);
        let hook = amohook::amocrm::hooks::parse(large.as_bytes()).unwrap();
        assert_eq!(hook.events[0].snapshot.custom_fields.len(), 7);
        for shape in [Body::Contact, Body::Status, Body::Mix] {
            let body = shape.make(7, "acme", 5, 0);
            let hook = amohook::amocrm::hooks::parse(body.as_bytes()).unwrap();
            assert_eq!(hook.events.len(), 1, "{shape:?}");
        }
    }
}
