//! The parser against real payloads (../shared/reference/amocrm-api.md,
//! appendix) and hand-made ones.

use super::*;
use proptest::prelude::*;

/// Encodes pairs the way amoCRM does: brackets percent-encoded, spaces as
/// `+`, UTF-8 percent-encoded.
fn texts(field: &FieldValue) -> Vec<&str> {
    field.values.iter().map(FieldItem::text).collect()
}

fn encode(pairs: &[(&str, &str)]) -> String {
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

#[test]
fn lower_case_percent_brackets_parse_too() {
    let body =
        "account%5bid%5d=7&leads%5badd%5d%5b0%5d%5bid%5d=1&leads%5badd%5d%5b0%5d%5bcreated_at%5d=5";
    let hook = parse(body.as_bytes()).unwrap();
    assert_eq!(hook.account_id, Some(7));
    assert_eq!(hook.events.len(), 1);
}

#[test]
fn bodies_that_are_not_hooks_get_a_short_reason() {
    for (body, needle) in [
        (&b"\xff\xfe"[..], "UTF-8"),
        (b"account[id]=abc", "account[id] is not a number"),
        (
            b"account[id]=1&leads[add][0][name]=x&leads[add][0][created_at]=1",
            "without an id",
        ),
        (
            b"account[id]=1&leads[add][0][id]=-5&leads[add][0][created_at]=1",
            "id must be a positive number",
        ),
        (b"account[id]=0", "account[id] must be a positive number"),
        (
            b"account[id]=1&leads[add][0][id]=x&leads[add][0][created_at]=1",
            "id is not a number",
        ),
        (b"leads[add]=oops", "no account"),
        (
            b"account[id]=1&a[b]=1&a[b][c]=2",
            "not a form-encoded amoCRM hook",
        ),
        (b"", "no account"),
        (b"\xef\xbf\xbd\x00garbage", "no account"),
        (
            b"leads[add][0][id]=1&leads[add][0][created_at]=1",
            "no account",
        ),
    ] {
        let error = parse(body).unwrap_err().to_string();
        assert!(
            error.contains(needle),
            "{error:?} for {:?}",
            String::from_utf8_lossy(body)
        );
        assert!(error.len() < 200);
    }
    // A hook about nothing we handle: acknowledged, nothing to store.
    assert!(parse(b"tasks[add][0][id]=1&account[id]=2")
        .unwrap()
        .events
        .is_empty());
    assert!(parse(b"account[subdomain]=acme").unwrap().events.is_empty());
}

#[test]
fn nul_characters_are_removed_from_every_value() {
    let body = encode(&[
        ("account[id]", "7"),
        ("account[subdomain]", "ac\0me"),
        ("leads[add][0][id]", "1"),
        ("leads[add][0][name]", "a\0b"),
        ("leads[add][0][created_at]", "5"),
        ("leads[add][0][custom_fields][0][id]", "9\0"),
        ("leads[add][0][custom_fields][0][name]", "\0City"),
        (
            "leads[add][0][custom_fields][0][values][0][value]",
            "Omsk\0",
        ),
    ]);
    assert!(body.contains("%00"));
    let hook = parse(body.as_bytes()).unwrap();
    assert_eq!(hook.subdomain.as_deref(), Some("acme"));
    let snapshot = &hook.events[0].snapshot;
    assert_eq!(snapshot.name, "ab");
    assert_eq!(snapshot.custom_fields[0].id, "9");
    assert_eq!(snapshot.custom_fields[0].name, "City");
    assert_eq!(texts(&snapshot.custom_fields[0]), ["Omsk"]);
    assert_eq!(hook.skipped_fields, 0);
}

#[test]
fn fields_of_an_unknown_shape_are_skipped_and_counted_not_the_hook() {
    let body = encode(&[
        ("account[id]", "7"),
        ("leads[add][0][id]", "1"),
        ("leads[add][0][created_at]", "5"),
        // A map where a string belongs, a word where a number belongs.
        ("leads[add][0][name][first]", "Ann"),
        ("leads[add][0][status_id]", "new"),
        ("leads[add][0][price]", "10"),
        // A list of values given as a string.
        ("leads[add][0][custom_fields][0][id]", "3"),
        ("leads[add][0][custom_fields][0][values]", "flat"),
        // An entity that is a string, and an action list with a word index.
        ("contacts[add][0]", "oops"),
        ("companies[update][first][id]", "4"),
        ("leads[update][0][id]", "2"),
        ("leads[update][0][updated_at]", "6"),
    ]);
    let hook = parse(body.as_bytes()).unwrap();
    assert_eq!(hook.skipped_fields, 5);
    let ids: Vec<i64> = hook.events.iter().map(|e| e.entity_id).collect();
    assert_eq!(ids, [1, 2]);
    let lead = &hook.events[0].snapshot;
    assert_eq!(lead.name, "");
    assert_eq!(lead.status_id, None);
    assert_eq!(lead.price.as_deref(), Some("10"));
    assert!(lead.custom_fields[0].values.is_empty());
}

#[test]
fn a_key_given_twice_keeps_the_last_value_as_php_does() {
    let body = "account[id]=7&leads[add][0][id]=1&leads[add][0][created_at]=5\
                &leads[add][0][price]=10&leads[add][0][price]=20";
    let hook = parse(body.as_bytes()).unwrap();
    assert_eq!(hook.events[0].snapshot.price.as_deref(), Some("20"));
}

#[test]
fn an_entity_without_a_time_takes_the_time_it_was_received() {
    // A digital-pipeline stage hook: ids only, no times.
    let body = encode(&[
        ("account[id]", "7"),
        ("leads[status][0][id]", "11"),
        ("leads[status][0][status_id]", "2"),
        ("leads[status][0][pipeline_id]", "10"),
        ("leads[status][0][old_status_id]", "1"),
        ("leads[status][0][old_pipeline_id]", "10"),
    ]);
    let hook = parse_at(body.as_bytes(), 1_700_000_000).unwrap();
    let event = &hook.events[0];
    assert_eq!((event.entity_id, event.changed_at), (11, 1_700_000_000));
    assert_eq!(event.snapshot.old_status_id, Some(1));
    assert_eq!(event.snapshot.updated_at, None);
    // A status hook is its own kind, and a body without a name is short:
    // it says nothing about the card's name, budget or fields.
    assert_eq!(event.action, Action::Status);
    assert!(event.snapshot.partial);
}

#[test]
fn a_time_far_in_the_future_counts_as_the_receipt_plus_a_small_skew() {
    let body = |updated_at: &str| {
        encode(&[
            ("account[id]", "7"),
            ("leads[update][0][id]", "11"),
            ("leads[update][0][name]", "x"),
            ("leads[update][0][updated_at]", updated_at),
        ])
    };
    let at = |updated_at: &str| {
        parse_at(body(updated_at).as_bytes(), 1_700_000_000)
            .unwrap()
            .events[0]
            .changed_at
    };
    assert_eq!(at("4102444800"), 1_700_000_000 + FUTURE_SKEW_SECONDS);
    assert_eq!(
        at("9223372036854775807"),
        1_700_000_000 + FUTURE_SKEW_SECONDS
    );
    // Within the skew, and in the past, the card's own time stands.
    assert_eq!(at("1700000030"), 1_700_000_030);
    assert_eq!(at("1699999000"), 1_699_999_000);
}

/// Kommo's official contacts[add] example (N16 in the reference): a
/// radiobutton's values as one object, not a list, and a birthday as
/// `dd.mm.yyyy` text.
#[test]
fn a_radiobutton_value_given_as_one_object_is_read() {
    let p = |k: &str| format!("contacts[add][0][{k}]");
    let pairs: Vec<(String, &str)> = vec![
        (p("id"), "17611273"),
        (p("name"), "Contact Name"),
        (p("responsible_user_id"), "11087123"),
        (p("custom_fields][0][id"), "782386"),
        (p("custom_fields][0][name"), "Birthday"),
        (p("custom_fields][0][values][0][value"), "12.01.1980"),
        (p("custom_fields][1][id"), "791730"),
        (p("custom_fields][1][name"), "Any radiobutton"),
        (p("custom_fields][1][values][value"), "2"),
        (p("custom_fields][1][values][enum"), "566642"),
        (p("created_at"), "1726573127"),
        (p("type"), "contact"),
        ("account[id]".into(), "32720107"),
    ];
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let hook = parse(encode(&pairs).as_bytes()).unwrap();
    assert_eq!(hook.skipped_fields, 0);
    let fields = &hook.events[0].snapshot.custom_fields;
    assert_eq!(texts(&fields[0]), ["12.01.1980"]);
    assert_eq!(fields[1].name, "Any radiobutton");
    assert_eq!(
        fields[1].values,
        [FieldItem::Choice {
            value: "2".into(),
            enum_id: 566642
        }]
    );
}

/// API v4's object values (legal entity, linked entity, chained list), as
/// a hook would carry them: `[value][name]=...`.
#[test]
fn object_values_are_read_by_their_name() {
    let p = |k: &str| format!("leads[update][0][{k}]");
    let pairs: Vec<(String, &str)> = vec![
        (p("id"), "5"),
        (p("name"), "x"),
        (p("custom_fields][0][id"), "11"),
        (p("custom_fields][0][name"), "Юрлицо"),
        (
            p("custom_fields][0][values][0][value][name"),
            "ООО «Ромашка»",
        ),
        (
            p("custom_fields][0][values][0][value][vat_id"),
            "7701234567",
        ),
        (p("custom_fields][1][id"), "12"),
        (p("custom_fields][1][name"), "Товар"),
        (p("custom_fields][1][values][0][value][catalog_id"), "3"),
        (
            p("custom_fields][1][values][0][value][catalog_element_id"),
            "987",
        ),
        (p("custom_fields][2][id"), "13"),
        (p("custom_fields][2][name"), "Пусто"),
        (
            p("custom_fields][2][values][0][value][entity_type"),
            "contacts",
        ),
        ("account[id]".into(), "7"),
    ];
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let hook = parse(encode(&pairs).as_bytes()).unwrap();
    let fields = &hook.events[0].snapshot.custom_fields;
    assert_eq!(texts(&fields[0]), ["ООО «Ромашка»"]);
    assert_eq!(texts(&fields[1]), ["#987"]);
    // An object with nothing to show gives no value, and loses nothing
    // else.
    assert!(fields[2].values.is_empty());
    assert_eq!(hook.skipped_fields, 0);
}

#[test]
fn responsible_hooks_keep_their_kind_and_old_responsible() {
    // As amoCRM sends `leads[responsible]` (a full body with the old id).
    let body = encode(&[
        ("leads[responsible][0][id]", "5"),
        ("leads[responsible][0][name]", "Сделка"),
        ("leads[responsible][0][responsible_user_id]", "2"),
        ("leads[responsible][0][old_responsible_user_id]", "1"),
        ("leads[responsible][0][last_modified]", "1456824964"),
        ("account[subdomain]", "test"),
        ("account[id]", "7"),
    ]);
    let hook = parse(body.as_bytes()).unwrap();
    let event = &hook.events[0];
    assert_eq!(event.action, Action::Responsible);
    assert_eq!(
        (
            event.snapshot.responsible_user_id,
            event.snapshot.old_responsible_user_id
        ),
        (Some(2), Some(1))
    );
    assert!(!event.snapshot.partial);
}

#[test]
fn cards_amohook_does_not_note_are_counted_not_refused() {
    let body = encode(&[
        ("account[id]", "7"),
        ("leads[delete][0][id]", "1"),
        ("leads[delete][1][id]", "2"),
        ("contacts[restore][0][id]", "3"),
        ("unsorted[add][0][uid]", "abc"),
        ("unsorted[add][0][source_data][data][0][text]", "hi"),
        ("message[add][0][id]", "m1"),
        ("leads[note][0][note][element_id]", "4"),
        ("widgets[install][0][id]", "9"),
        // Kommo's singular task key and outgoing chat messages (N19, N20).
        ("task[add][0][id]", "1564671"),
        ("task[update][0][id]", "1564917"),
        ("outgoing_message[add][0][id]", "m2"),
        ("leads[update][0][id]", "5"),
        ("leads[update][0][name]", "x"),
    ]);
    let hook = parse(body.as_bytes()).unwrap();
    assert_eq!(hook.events.len(), 1);
    let mut ignored: Vec<(&str, &str)> =
        hook.ignored.iter().map(|i| (i.entity, i.action)).collect();
    ignored.sort();
    assert_eq!(
        ignored,
        [
            ("contacts", "restore"),
            ("leads", "delete"),
            ("leads", "delete"),
            ("leads", "note"),
            ("message", "add"),
            ("other", "other"),
            ("outgoing_message", "add"),
            ("task", "add"),
            ("task", "update"),
            ("unsorted", "add"),
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&body);
    }

    #[test]
    fn arbitrary_hook_shaped_bodies_never_panic(
        pairs in proptest::collection::vec(
            (
                "(leads|contacts|companies|account|x)(\\[(add|update|status|0|1|id|name|values|custom_fields|value|enum|type|\\]|\\[)?\\]?){0,8}",
                "[a-z0-9 &=%\\[\\]+а-я]{0,12}",
            ),
            0..24,
        )
    ) {
        let body = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let _ = parse(body.as_bytes());
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .finish();
        let _ = parse(encoded.as_bytes());
    }
}
