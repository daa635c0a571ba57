//! Notes on the bodies amoCRM really sends: each shape below was seen in
//! live amoCRM and Kommo accounts (public captures; see
//! ../shared/reference/amocrm-api.md), written here field by field in
//! amoCRM's order, and each must get a 2xx and the note a person would
//! write by hand.

use amocrm_sim::{SimAccount, SimEvent, SimField};
use serde_json::json;

use crate::helpers::TestApp;

pub(crate) const RU: &str = "shapes.amocrm.ru";
pub(crate) const KOMMO: &str = "shapes.kommo.com";
pub(crate) const ID: i64 = 31_257_294;

/// The account of the captures: two users, two pipelines, the custom
/// fields the bodies name.
pub(crate) fn account(id: i64) -> SimAccount {
    let mut account = SimAccount::new(id);
    account.users.push((10_004_026, "Анна Смирнова".into()));
    account.pipelines.push((
        7_173_574,
        "Опт".into(),
        vec![
            (59_936_198, "Первичный контакт".into()),
            (59_936_202, "Счёт выставлен".into()),
        ],
    ));
    account.fields = vec![
        (
            "leads".into(),
            SimField::new(1_402_697, "Дата доставки", "date"),
        ),
        (
            "leads".into(),
            SimField::new(1_402_698, "Оплачено", "checkbox"),
        ),
        (
            "leads".into(),
            SimField::new(1_402_699, "Источник", "select")
                .with_enums(&[(918_167, "Сайт"), (918_169, "Звонок")]),
        ),
        (
            "contacts".into(),
            SimField::new(735_649, "Телефон", "multitext")
                .with_enums(&[(718_321, "WORK"), (718_323, "MOB")]),
        ),
        (
            "contacts".into(),
            SimField::new(735_651, "День рождения", "birthday"),
        ),
    ];
    account
}

pub(crate) async fn app_with(domain: &str) -> (TestApp, String) {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected_as(domain, account(ID)).await;
    (app, key)
}

pub(crate) fn account_block(domain: &str) -> Vec<(String, String)> {
    vec![
        ("account[subdomain]".into(), "shapes".into()),
        ("account[id]".into(), ID.to_string()),
        ("account[_links][self]".into(), format!("https://{domain}")),
    ]
}

pub(crate) fn body(entity: &[(&str, &str)], domain: &str) -> String {
    let mut pairs: Vec<(String, String)> = entity
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    pairs.extend(account_block(domain));
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

pub(crate) async fn notes_after(app: &TestApp, key: &str, body: String) -> Vec<String> {
    assert_eq!(app.post_hook(key, body).await.status(), 200);
    app.state.worker.drain().await.unwrap();
    app.fake.notes().into_iter().map(|n| n.text).collect()
}

/// A full `leads[update]` body as amoCRM sends it for a stage move (capture
/// D of the reference, with the account's fields).
pub(crate) fn full_update(
    id: &str,
    status: &str,
    old_status: &str,
    at: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let p = |k: &str| format!("leads[update][0][{k}]");
    let mut pairs = vec![
        (p("id"), id.to_owned()),
        (p("name"), "Сделка по оптовому заказу".to_owned()),
        (p("status_id"), status.to_owned()),
        (p("old_status_id"), old_status.to_owned()),
        (p("price"), "45000".to_owned()),
        (p("responsible_user_id"), "10004026".to_owned()),
        (p("last_modified"), at.to_owned()),
        (p("modified_user_id"), "10004026".to_owned()),
        (p("created_user_id"), "0".to_owned()),
        (p("date_create"), "1694590926".to_owned()),
        (p("pipeline_id"), "7173574".to_owned()),
        (p("account_id"), ID.to_string()),
        (p("custom_fields][0][id"), "1402697".to_owned()),
        (p("custom_fields][0][name"), "Дата доставки".to_owned()),
        (p("custom_fields][0][values][0"), "1673560800".to_owned()),
        (p("custom_fields][1][id"), "1402699".to_owned()),
        (p("custom_fields][1][name"), "Источник".to_owned()),
        (p("custom_fields][1][values][0][value"), "Сайт".to_owned()),
        (p("custom_fields][1][values][0][enum"), "918167".to_owned()),
        (p("created_at"), "1694590926".to_owned()),
        (p("updated_at"), at.to_owned()),
    ];
    pairs.extend(extra.iter().map(|(k, v)| (p(k), (*v).to_owned())));
    pairs
}

pub(crate) fn encode(mut pairs: Vec<(String, String)>, domain: &str) -> String {
    pairs.extend(account_block(domain));
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[tokio::test]
async fn a_digital_pipeline_status_body_becomes_a_stage_change_note() {
    let (app, key) = app_with(RU).await;
    // The digital pipeline's "send a web-hook": ids only, no time, no name.
    let stage = body(
        &[
            ("leads[status][0][id]", "27754599"),
            ("leads[status][0][status_id]", "59936202"),
            ("leads[status][0][pipeline_id]", "7173574"),
            ("leads[status][0][old_status_id]", "59936198"),
            ("leads[status][0][old_pipeline_id]", "7173574"),
        ],
        RU,
    );
    let notes = notes_after(&app, &key, stage).await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with(
            "Изменена сделка #27754599: Этап: Первичный контакт → Счёт выставлен. Изменена: "
        ),
        "{}",
        notes[0]
    );
    // Moved to another pipeline: both names.
    let moved = body(
        &[
            ("leads[status][0][id]", "27754599"),
            ("leads[status][0][status_id]", "2"),
            ("leads[status][0][pipeline_id]", "10"),
            ("leads[status][0][old_status_id]", "59936202"),
            ("leads[status][0][old_pipeline_id]", "7173574"),
        ],
        RU,
    );
    let notes = notes_after(&app, &key, moved).await;
    assert!(
        notes[1].starts_with(
            "Изменена сделка #27754599: Этап: Опт / Счёт выставлен → Продажи / Переговоры."
        ),
        "{}",
        notes[1]
    );
    // The short add of a digital pipeline: the card, and when.
    let add = body(
        &[
            ("leads[add][0][id]", "27754600"),
            ("leads[add][0][status_id]", "59936198"),
            ("leads[add][0][pipeline_id]", "7173574"),
        ],
        RU,
    );
    let notes = notes_after(&app, &key, add).await;
    assert!(
        notes[2].starts_with("Создана сделка #27754600. Добавлена: "),
        "{}",
        notes[2]
    );
}

#[tokio::test]
async fn a_short_body_beside_full_ones_fails_none_of_them() {
    let (app, key) = app_with(RU).await;
    let mut pairs = full_update("501", "59936202", "59936198", "1695482894", &[]);
    pairs.extend([
        ("leads[status][0][id]".to_owned(), "502".to_owned()),
        (
            "leads[status][0][status_id]".to_owned(),
            "59936202".to_owned(),
        ),
        (
            "leads[status][0][pipeline_id]".to_owned(),
            "7173574".to_owned(),
        ),
        (
            "leads[status][0][old_status_id]".to_owned(),
            "59936198".to_owned(),
        ),
    ]);
    let notes = notes_after(&app, &key, encode(pairs, RU)).await;
    assert_eq!(notes.len(), 2, "{notes:?}");
}

#[tokio::test]
async fn an_unassigned_card_reads_not_assigned() {
    let (app, key) = app_with(RU).await;
    // A card made by a web form: nobody is responsible yet.
    let add = body(
        &[
            ("leads[add][0][id]", "35168771"),
            ("leads[add][0][name]", "Заявка с сайта"),
            ("leads[add][0][status_id]", "59936198"),
            ("leads[add][0][price]", "0"),
            ("leads[add][0][responsible_user_id]", "0"),
            ("leads[add][0][last_modified]", "1712331728"),
            ("leads[add][0][modified_user_id]", "0"),
            ("leads[add][0][created_user_id]", "0"),
            ("leads[add][0][date_create]", "1712331728"),
            ("leads[add][0][pipeline_id]", "7173574"),
            ("leads[add][0][created_at]", "1712331728"),
            ("leads[add][0][updated_at]", "1712331728"),
        ],
        RU,
    );
    let notes = notes_after(&app, &key, add).await;
    assert_eq!(
        notes[0],
        "Создана сделка «Заявка с сайта». Ответственный: не назначен. Добавлена: 05.04.2024 18:42:08"
    );
    // Then someone takes it: a responsible hook with the old responsible.
    let taken = body(
        &[
            ("leads[responsible][0][id]", "35168771"),
            ("leads[responsible][0][name]", "Заявка с сайта"),
            ("leads[responsible][0][status_id]", "59936198"),
            ("leads[responsible][0][price]", "0"),
            ("leads[responsible][0][responsible_user_id]", "10004026"),
            ("leads[responsible][0][old_responsible_user_id]", "0"),
            ("leads[responsible][0][last_modified]", "1712331800"),
            ("leads[responsible][0][pipeline_id]", "7173574"),
            ("leads[responsible][0][updated_at]", "1712331800"),
        ],
        RU,
    );
    let notes = notes_after(&app, &key, taken).await;
    assert_eq!(
        notes[1],
        "Изменена сделка «Заявка с сайта»: Ответственный: не назначен → Анна Смирнова. \
         Изменена: 05.04.2024 18:43:20"
    );
}

#[tokio::test]
async fn a_first_seen_update_says_what_changed_not_what_exists() {
    let (app, key) = app_with(RU).await;
    // A lead from before the install moves one stage; amoCRM's events also
    // show a budget change in the same save (and an older change, which
    // is not this hook's).
    let sale = |at: i64, before: i64, after: i64| SimEvent {
        entity_type: "lead".into(),
        entity_id: 27_754_599,
        kind: "sale_field_changed".into(),
        created_at: at,
        value_before: json!([{"sale_field_value": {"sale": before}}]),
        value_after: json!([{"sale_field_value": {"sale": after}}]),
    };
    app.fake.add_event(RU, sale(1_695_400_000, 0, 30_000));
    app.fake.add_event(RU, sale(1_695_482_894, 30_000, 45_000));
    app.fake.add_event(
        RU,
        SimEvent {
            entity_type: "lead".into(),
            entity_id: 27_754_599,
            kind: "lead_status_changed".into(),
            created_at: 1_695_482_894,
            value_before: json!([{"lead_status": {"id": 59_936_198, "pipeline_id": 7_173_574}}]),
            value_after: json!([{"lead_status": {"id": 59_936_202, "pipeline_id": 7_173_574}}]),
        },
    );
    let update = encode(
        full_update("27754599", "59936202", "59936198", "1695482894", &[]),
        RU,
    );
    let notes = notes_after(&app, &key, update).await;
    assert_eq!(
        notes,
        ["Изменена сделка «Сделка по оптовому заказу»: Этап: Первичный контакт → Счёт выставлен; \
          Бюджет: 30000 ₽ → 45000 ₽. Изменена: 23.09.2023 18:28:14"]
    );
    // amohook asked for this card's events around the hook's time, with
    // the filters amoCRM documents (the fake refuses others).
    let asked: Vec<String> = app
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v4/events")
        .map(|r| r.query)
        .collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(asked[0].contains("filter[entity]=lead"), "{}", asked[0]);
    assert!(
        asked[0].contains("filter[entity_id][]=27754599"),
        "{}",
        asked[0]
    );
}
