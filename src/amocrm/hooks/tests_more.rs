//! The parser, continued: odd encodings, bodies that are not hooks, NULs, unknown shapes, times, object values, and bytes that must never panic.

use super::*;
use proptest::prelude::*;

use super::tests::*;

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
