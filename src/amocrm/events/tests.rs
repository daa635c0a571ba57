//! Reading amoCRM's events: the value shapes of the official example and of
//! public clients (see the module's notes), merged per card.

use super::*;
use serde_json::json;

fn event(kind: &str, at: i64, before: Value, after: Value) -> Event {
    Event {
        kind: kind.into(),
        entity_id: 1,
        created_at: at,
        value_before: before,
        value_after: after,
    }
}

#[test]
fn each_kind_of_event_reads_as_its_change() {
    let stage = event(
        "lead_status_changed",
        0,
        json!([{"lead_status": {"id": 222, "pipeline_id": 456}}]),
        json!([{"lead_status": {"id": 111, "pipeline_id": 123}}]),
    );
    assert_eq!(
        read(&stage),
        Some(CardChange::Stage {
            before: Some((Some(456), 222)),
            after: Some((Some(123), 111))
        })
    );
    let responsible = event(
        "entity_responsible_changed",
        0,
        json!([{"responsible_user": {"id": 504141}}]),
        json!([{"responsible_user": {"id": "504329"}}]),
    );
    assert_eq!(
        read(&responsible),
        Some(CardChange::Responsible {
            before: Some(504141),
            after: Some(504329)
        })
    );
    let name = event(
        "name_field_changed",
        0,
        json!([{"name_field_value": {"name": "Old"}}]),
        json!([{"name_field_value": {"name": "New"}}]),
    );
    assert_eq!(
        read(&name),
        Some(CardChange::Name {
            before: Some("Old".into()),
            after: Some("New".into())
        })
    );
    let sale = event(
        "sale_field_changed",
        0,
        json!([{"sale_field_value": {"sale": 0}}]),
        json!([{"sale_field_value": {"sale": 1500}}]),
    );
    assert_eq!(
        read(&sale),
        Some(CardChange::Sale {
            before: Some("0".into()),
            after: Some("1500".into())
        })
    );
    // A field event per field id; a cleared field has no values after.
    let field = event(
        "custom_field_777_value_changed",
        0,
        json!([{"custom_field_value": {"field_id": 777, "field_type": 4, "enum_id": 5, "text": "Сайт"}}]),
        json!([]),
    );
    assert_eq!(
        read(&field),
        Some(CardChange::Field {
            field_id: 777,
            before: vec![FieldItem::Choice {
                value: "Сайт".into(),
                enum_id: 5
            }],
            after: vec![]
        })
    );
    // The generic type names its field in the values.
    let generic = event(
        "custom_field_value_changed",
        0,
        json!(null),
        json!([{"custom_field_value": {"field_id": 9, "text": "a"}}, {"custom_field_value": {"field_id": 9, "text": "b"}}]),
    );
    assert_eq!(
        read(&generic),
        Some(CardChange::Field {
            field_id: 9,
            before: vec![],
            after: vec!["a".into(), "b".into()]
        })
    );
    // Events amohook does not show, and shapes it cannot read, are left out.
    assert_eq!(
        read(&event("entity_tag_added", 0, json!([]), json!([]))),
        None
    );
    assert_eq!(
        read(&event(
            "custom_field_value_changed",
            0,
            json!({}),
            json!("x")
        )),
        None
    );
}

#[test]
fn changes_of_one_thing_merge_and_changes_undone_vanish() {
    let responsible = |before: i64, after: i64| CardChange::Responsible {
        before: Some(before),
        after: Some(after),
    };
    let name = CardChange::Name {
        before: Some("a".into()),
        after: Some("b".into()),
    };
    let merged = merge(
        [
            responsible(1, 2),
            name.clone(),
            responsible(2, 3),
            CardChange::Sale {
                before: Some("1".into()),
                after: Some("2".into()),
            },
            CardChange::Sale {
                before: Some("2".into()),
                after: Some("1".into()),
            },
        ]
        .into_iter(),
    );
    assert_eq!(merged, [responsible(1, 3), name]);
}

#[test]
fn the_query_uses_the_documented_filters() {
    let q = query(EntityKind::Company, &[(5, 100), (6, 120)], 90, 122, 2);
    assert_eq!(
        q,
        "/api/v4/events?filter[entity]=company&filter[created_at][from]=90&filter[created_at][to]=122\
         &limit=100&page=2&filter[entity_id][]=5&filter[entity_id][]=6"
    );
}
