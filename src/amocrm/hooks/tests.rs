//! The parser against real payloads (../shared/reference/amocrm-api.md,
//! appendix) and hand-made ones.

use super::*;

/// Encodes pairs the way amoCRM does: brackets percent-encoded, spaces as
/// `+`, UTF-8 percent-encoded.
pub(crate) fn texts(field: &FieldValue) -> Vec<&str> {
    field.values.iter().map(FieldItem::text).collect()
}

pub(crate) fn encode(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[test]
fn real_lead_add_with_tags_enum_and_custom_fields() {
    // Appendix A.
    let body = encode(&[
        ("account[subdomain]", "700622"),
        ("account[id]", "29604535"),
        ("account[_links][self]", "https://700622.amocrm.ru"),
        ("leads[add][0][id]", "35168771"),
        ("leads[add][0][name]", "Заказ #87856, +7 (919) 959-39-84"),
        ("leads[add][0][status_id]", "50288839"),
        ("leads[add][0][price]", "0"),
        ("leads[add][0][responsible_user_id]", "9750914"),
        ("leads[add][0][last_modified]", "1712331728"),
        ("leads[add][0][modified_user_id]", "0"),
        ("leads[add][0][created_user_id]", "0"),
        ("leads[add][0][date_create]", "1712331728"),
        ("leads[add][0][pipeline_id]", "5723341"),
        ("leads[add][0][tags][0][id]", "276241"),
        ("leads[add][0][tags][0][name]", "xn--80afdp5b4b.xn--p1ai"),
        ("leads[add][0][tags][1][id]", "276243"),
        ("leads[add][0][tags][1][name]", "myshop.ru"),
        ("leads[add][0][account_id]", "29604535"),
        ("leads[add][0][custom_fields][0][id]", "6099"),
        ("leads[add][0][custom_fields][0][name]", "_ym_uid"),
        ("leads[add][0][custom_fields][0][values][0][value]", "87856"),
        ("leads[add][0][custom_fields][0][code]", "_YM_UID"),
        ("leads[add][0][custom_fields][1][id]", "1425011"),
        ("leads[add][0][custom_fields][1][name]", "Город доставки"),
        (
            "leads[add][0][custom_fields][1][values][0][value]",
            "Тюменская область",
        ),
        ("leads[add][0][custom_fields][2][id]", "1402697"),
        (
            "leads[add][0][custom_fields][2][name]",
            "С какого сайта пришла заявка",
        ),
        (
            "leads[add][0][custom_fields][2][values][0][value]",
            "xn--80afdp5b4b.xn--p1ai",
        ),
        ("leads[add][0][custom_fields][2][values][0][enum]", "918167"),
        ("leads[add][0][custom_fields][3][id]", "1426025"),
        ("leads[add][0][custom_fields][3][name]", "Наша  цена"),
        (
            "leads[add][0][custom_fields][3][values][0][value]",
            "280.00",
        ),
        ("leads[add][0][created_at]", "1712331728"),
        ("leads[add][0][updated_at]", "1712331728"),
    ]);
    assert!(body.contains("%5B") && body.contains('+'));
    let hook = parse(body.as_bytes()).unwrap();
    assert_eq!(hook.account_id, Some(29_604_535));
    assert_eq!(hook.subdomain.as_deref(), Some("700622"));
    assert_eq!(hook.events.len(), 1);
    let e = &hook.events[0];
    assert_eq!(
        (e.entity, e.action, e.entity_id, e.changed_at),
        (EntityKind::Lead, Action::Add, 35_168_771, 1_712_331_728)
    );
    assert_eq!(e.snapshot.name, "Заказ #87856, +7 (919) 959-39-84");
    assert_eq!(e.snapshot.price.as_deref(), Some("0"));
    assert_eq!(e.snapshot.status_id, Some(50_288_839));
    assert_eq!(e.snapshot.pipeline_id, Some(5_723_341));
    assert_eq!(e.snapshot.responsible_user_id, Some(9_750_914));
    assert_eq!(e.snapshot.custom_fields.len(), 4);
    assert_eq!(e.snapshot.custom_fields[1].name, "Город доставки");
    assert_eq!(texts(&e.snapshot.custom_fields[1]), ["Тюменская область"]);
    // A choice keeps its id, so the note can name it as the account does.
    assert_eq!(
        e.snapshot.custom_fields[2].values,
        [FieldItem::Choice {
            value: "xn--80afdp5b4b.xn--p1ai".into(),
            enum_id: 918_167
        }]
    );
    assert_eq!(e.snapshot.custom_fields[0].code.as_deref(), Some("_YM_UID"));
    assert!(!e.snapshot.partial);
    assert_eq!(e.snapshot.custom_fields[3].name, "Наша  цена");
}

#[test]
fn real_contact_update_as_curl_sends_it() {
    // Appendix B: names already percent-encoded, values url-encoded by curl.
    let pairs = [
        ("account%5Bsubdomain%5D", "etesttask"),
        ("account%5Bid%5D", "32427762"),
        (
            "account%5B_links%5D%5Bself%5D",
            "https://etesttask.amocrm.ru",
        ),
        ("contacts%5Bupdate%5D%5B0%5D%5Bid%5D", "37054081"),
        ("contacts%5Bupdate%5D%5B0%5D%5Bname%5D", "Абиба абибович"),
        (
            "contacts%5Bupdate%5D%5B0%5D%5Bresponsible_user_id%5D",
            "10000698",
        ),
        ("contacts%5Bupdate%5D%5B0%5D%5Bdate_create%5D", "1748289231"),
        (
            "contacts%5Bupdate%5D%5B0%5D%5Blast_modified%5D",
            "1748292937",
        ),
        (
            "contacts%5Bupdate%5D%5B0%5D%5Bcreated_user_id%5D",
            "10000698",
        ),
        (
            "contacts%5Bupdate%5D%5B0%5D%5Bmodified_user_id%5D",
            "10000698",
        ),
        ("contacts%5Bupdate%5D%5B0%5D%5Baccount_id%5D", "32427762"),
        (
            "contacts%5Bupdate%5D%5B0%5D%5Bcustom_fields%5D%5B0%5D%5Bid%5D",
            "735647",
        ),
        (
            "contacts%5Bupdate%5D%5B0%5D%5Bcustom_fields%5D%5B0%5D%5Bname%5D",
            "Должность",
        ),
        (
            "contacts%5Bupdate%5D%5B0%5D%5Bcustom_fields%5D%5B0%5D%5Bvalues%5D%5B0%5D%5Bvalue%5D",
            "555",
        ),
        (
            "contacts%5Bupdate%5D%5B0%5D%5Bcustom_fields%5D%5B0%5D%5Bcode%5D",
            "POSITION",
        ),
        (
            "contacts%5Bupdate%5D%5B0%5D%5Bcustom_fields%5D%5B1%5D%5Bid%5D",
            "735649",
        ),
        (
            "contacts%5Bupdate%5D%5B0%5D%5Bcustom_fields%5D%5B1%5D%5Bname%5D",
            "Телефон",
        ),
        (
            "contacts%5Bupdate%5D%5B0%5D%5Bcustom_fields%5D%5B1%5D%5Bvalues%5D%5B0%5D%5Bvalue%5D",
            "333",
        ),
        (
            "contacts%5Bupdate%5D%5B0%5D%5Bcustom_fields%5D%5B1%5D%5Bvalues%5D%5B0%5D%5Benum%5D",
            "718321",
        ),
        (
            "contacts%5Bupdate%5D%5B0%5D%5Bcustom_fields%5D%5B1%5D%5Bcode%5D",
            "PHONE",
        ),
        (
            "contacts%5Bupdate%5D%5B0%5D%5Bold_responsible_user_id%5D",
            "10000698",
        ),
        ("contacts%5Bupdate%5D%5B0%5D%5Bcreated_at%5D", "1748289231"),
        ("contacts%5Bupdate%5D%5B0%5D%5Bupdated_at%5D", "1748292937"),
        ("contacts%5Bupdate%5D%5B0%5D%5Btype%5D", "contact"),
    ];
    let body = pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let hook = parse(body.as_bytes()).unwrap();
    assert_eq!(hook.account_id, Some(32_427_762));
    let e = &hook.events[0];
    assert_eq!(
        (e.entity, e.action, e.entity_id),
        (EntityKind::Contact, Action::Update, 37_054_081)
    );
    assert_eq!(e.changed_at, 1_748_292_937);
    assert_eq!(e.snapshot.name, "Абиба абибович");
    assert_eq!(e.snapshot.old_responsible_user_id, Some(10_000_698));
    let phone = &e.snapshot.custom_fields[1];
    assert_eq!(
        (
            phone.name.as_str(),
            phone.code.as_deref(),
            phone.values.as_slice()
        ),
        (
            "Телефон",
            Some("PHONE"),
            &[FieldItem::Choice {
                value: "333".into(),
                enum_id: 718_321
            }][..]
        )
    );
}

#[test]
fn real_lead_status_change_with_plus_for_spaces() {
    // Appendix C, as a raw body.
    let body = "leads%5Bupdate%5D%5B0%5D%5Bid%5D=5685933&leads%5Bupdate%5D%5B0%5D%5Bname%5D=%D0%90%D0%BB%D1%8C%D1%84%D0%B8%D1%8F+%D0%A5%D0%B0%D0%BD%D0%B8%D1%82%D0%BE%D0%B2%D0%B01+%28YCLIENTS+339030120%291&leads%5Bupdate%5D%5B0%5D%5Bstatus_id%5D=43315792&leads%5Bupdate%5D%5B0%5D%5Bold_status_id%5D=43315795&leads%5Bupdate%5D%5B0%5D%5Bprice%5D=450&leads%5Bupdate%5D%5B0%5D%5Bresponsible_user_id%5D=3493057&leads%5Bupdate%5D%5B0%5D%5Blast_modified%5D=163513901&leads%5Bupdate%5D%5B0%5D%5Bpipeline_id%5D=4740529&leads%5Bupdate%5D%5B0%5D%5Bcustom_fields%5D%5B1%5D%5Bid%5D=629165&leads%5Bupdate%5D%5B0%5D%5Bcustom_fields%5D%5B1%5D%5Bname%5D=ID+%D0%B7%D0%B0%D0%BF%D0%B8%D1%81%D0%B8%2C+Yclients&leads%5Bupdate%5D%5B0%5D%5Bcustom_fields%5D%5B1%5D%5Bvalues%5D%5B0%5D%5Bvalue%5D=339030120&leads%5Bupdate%5D%5B0%5D%5Bcreated_at%5D=1635022800&leads%5Bupdate%5D%5B0%5D%5Bupdated_at%5D=1635139016&account%5Bsubdomain%5D=ablaser&account%5Bid%5D=29715442&account%5B_links%5D%5Bself%5D=https%3A%2F%2Fablaser.amocrm.ru";
    let hook = parse(body.as_bytes()).unwrap();
    let e = &hook.events[0];
    assert_eq!(e.snapshot.name, "Альфия Ханитова1 (YCLIENTS 339030120)1");
    assert_eq!(
        (e.snapshot.status_id, e.snapshot.old_status_id),
        (Some(43_315_792), Some(43_315_795))
    );
    assert_eq!(
        e.changed_at, 1_635_139_016,
        "updated_at wins over last_modified"
    );
    assert_eq!(
        e.snapshot.custom_fields.len(),
        1,
        "a sparse index still parses"
    );
    assert_eq!(e.snapshot.custom_fields[0].name, "ID записи, Yclients");
}

#[test]
fn real_lead_update_without_custom_fields_and_empty_name() {
    // Appendix D.
    let body = encode(&[
        ("account[subdomain]", "appgpt"),
        ("account[id]", "31257294"),
        ("leads[update][0][id]", "27754599"),
        ("leads[update][0][name]", ""),
        ("leads[update][0][status_id]", "59936202"),
        ("leads[update][0][old_status_id]", "59936198"),
        ("leads[update][0][responsible_user_id]", "10004026"),
        ("leads[update][0][last_modified]", "1695482894"),
        ("leads[update][0][pipeline_id]", "7173574"),
        ("leads[update][0][created_at]", "1694590926"),
        ("leads[update][0][updated_at]", "1695482894"),
    ]);
    let e = &parse(body.as_bytes()).unwrap().events[0];
    assert_eq!(e.snapshot.name, "");
    assert!(e.snapshot.custom_fields.is_empty());
    assert_eq!(e.snapshot.price, None);
}

#[test]
fn real_contact_add_from_2016_without_account_id() {
    // Appendix E: the raw body as captured.
    let body = "contacts%5Badd%5D%5B0%5D%5Bid%5D=1112&contacts%5Badd%5D%5B0%5D%5Bname%5D=wqds&contacts%5Badd%5D%5B0%5D%5Bresponsible_user_id%5D=102525&contacts%5Badd%5D%5B0%5D%5Bdate_create%5D=1456824964&contacts%5Badd%5D%5B0%5D%5Blast_modified%5D=1456824964&contacts%5Badd%5D%5B0%5D%5Bcreated_user_id%5D=102525&contacts%5Badd%5D%5B0%5D%5Bmodified_user_id%5D=102525&contacts%5Badd%5D%5B0%5D%5Btype%5D=contact&account%5Bsubdomain%5D=test000002";
    let hook = parse(body.as_bytes()).unwrap();
    assert_eq!(hook.account_id, None);
    assert_eq!(hook.subdomain.as_deref(), Some("test000002"));
    let e = &hook.events[0];
    assert_eq!(
        (e.entity, e.action, e.entity_id, e.changed_at),
        (EntityKind::Contact, Action::Add, 1112, 1_456_824_964)
    );
}

#[test]
fn several_entities_companies_both_ways_and_odd_values() {
    let body = encode(&[
        ("account[id]", "1"),
        ("leads[add][0][id]", "10"),
        ("leads[add][0][name]", "Tom & Jerry \"best\" 🚀 a+b=c"),
        ("leads[add][0][created_at]", "100"),
        ("leads[add][1][id]", "11"),
        ("leads[add][1][name]", "[brackets] in value"),
        ("leads[add][1][created_at]", "101"),
        ("contacts[update][0][id]", "20"),
        ("contacts[update][0][type]", "company"),
        ("contacts[update][0][updated_at]", "200"),
        ("contacts[update][0][custom_fields][0][id]", "5"),
        ("contacts[update][0][custom_fields][0][name]", "Дата"),
        (
            "contacts[update][0][custom_fields][0][values][0]",
            "1537920000",
        ),
        ("contacts[update][0][custom_fields][1][id]", "6"),
        ("contacts[update][0][custom_fields][1][name]", "Теги"),
        (
            "contacts[update][0][custom_fields][1][values][0][value]",
            "a",
        ),
        (
            "contacts[update][0][custom_fields][1][values][1][value]",
            "b",
        ),
        ("companies[add][0][id]", "30"),
        ("companies[add][0][name]", "ООО «Ромашка»"),
        ("companies[add][0][created_at]", "300"),
        ("leads[status][0][id]", "12"),
        ("leads[status][0][updated_at]", "400"),
        ("leads[delete][0][id]", "13"),
        ("tasks[add][0][id]", "99"),
        ("unsorted[add][0][uid]", "x"),
    ]);
    let hook = parse(body.as_bytes()).unwrap();
    let got: Vec<_> = hook
        .events
        .iter()
        .map(|e| (e.entity, e.action, e.entity_id))
        .collect();
    assert_eq!(
        got,
        [
            (EntityKind::Lead, Action::Add, 10),
            (EntityKind::Lead, Action::Add, 11),
            (EntityKind::Lead, Action::Status, 12),
            (EntityKind::Company, Action::Update, 20),
            (EntityKind::Company, Action::Add, 30),
        ]
    );
    assert_eq!(
        hook.events[0].snapshot.name,
        "Tom & Jerry \"best\" 🚀 a+b=c"
    );
    assert_eq!(hook.events[1].snapshot.name, "[brackets] in value");
    let company = &hook.events[3].snapshot;
    assert_eq!(texts(&company.custom_fields[0]), ["1537920000"]);
    assert_eq!(texts(&company.custom_fields[1]), ["a", "b"]);
    assert_eq!(hook.events[4].snapshot.name, "ООО «Ромашка»");
}
