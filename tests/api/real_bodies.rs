//! Notes on the bodies amoCRM really sends: each shape below was seen in
//! live amoCRM and Kommo accounts (public captures; see
//! ../shared/reference/amocrm-api.md), written here field by field in
//! amoCRM's order, and each must get a 2xx and the note a person would
//! write by hand.

use amocrm_sim::{Fault, SimAccount, SimEvent, SimField};
use serde_json::json;

use crate::helpers::{form, TestApp};

const RU: &str = "shapes.amocrm.ru";
const KOMMO: &str = "shapes.kommo.com";
const ID: i64 = 31_257_294;

/// The account of the captures: two users, two pipelines, the custom
/// fields the bodies name.
fn account(id: i64) -> SimAccount {
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

async fn app_with(domain: &str) -> (TestApp, String) {
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected_as(domain, account(ID)).await;
    (app, key)
}

fn account_block(domain: &str) -> Vec<(String, String)> {
    vec![
        ("account[subdomain]".into(), "shapes".into()),
        ("account[id]".into(), ID.to_string()),
        ("account[_links][self]".into(), format!("https://{domain}")),
    ]
}

fn body(entity: &[(&str, &str)], domain: &str) -> String {
    let mut pairs: Vec<(String, String)> = entity
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    pairs.extend(account_block(domain));
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

async fn notes_after(app: &TestApp, key: &str, body: String) -> Vec<String> {
    assert_eq!(app.post_hook(key, body).await.status(), 200);
    app.state.worker.drain().await.unwrap();
    app.fake.notes().into_iter().map(|n| n.text).collect()
}

/// A full `leads[update]` body as amoCRM sends it for a stage move (capture
/// D of the reference, with the account's fields).
fn full_update(
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

fn encode(mut pairs: Vec<(String, String)>, domain: &str) -> String {
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
async fn dates_without_value_read_as_dates_and_choices_by_name() {
    let (app, key) = app_with(RU).await;
    let add = encode(
        full_update("601", "59936198", "59936198", "1695482894", &[])
            .into_iter()
            .map(|(k, v)| (k.replace("[update]", "[add]"), v))
            .filter(|(k, _)| !k.contains("old_status_id"))
            .collect(),
        RU,
    );
    notes_after(&app, &key, add).await;
    // The date moves by a day and the card is paid.
    let update = encode(
        full_update(
            "601",
            "59936198",
            "59936198",
            "1695483000",
            &[
                ("custom_fields][0][values][0", "1673647200"),
                ("custom_fields][2][id", "1402698"),
                ("custom_fields][2][name", "Оплачено"),
                ("custom_fields][2][values][0][value", "1"),
            ],
        ),
        RU,
    );
    let notes = notes_after(&app, &key, update).await;
    assert_eq!(
        notes[1],
        "Изменена сделка «Сделка по оптовому заказу»: Дата доставки: 13.01.2023 → 14.01.2023; \
         Оплачено: — → да. Изменена: 23.09.2023 18:30:00"
    );
}

/// amoCRM gives at most 50 custom fields a page whatever `limit` says: an
/// account with 120 lead fields, whose date and checkbox fields come on the
/// third page, still gets them read as a date and a yes/no.
#[tokio::test]
async fn fields_past_the_first_fifty_are_read_by_their_type() {
    let mut many = account(ID);
    let known = std::mem::take(&mut many.fields);
    many.fields = (0..118)
        .map(|i| {
            (
                "leads".into(),
                SimField::new(2_000_000 + i, &format!("Поле {i}"), "text"),
            )
        })
        .chain(known)
        .collect();
    assert!(many.fields.iter().filter(|(e, _)| e == "leads").count() >= 120);
    let app = TestApp::spawn_without_worker().await;
    let key = app.connected_as(RU, many).await;
    let add = encode(
        full_update("602", "59936198", "59936198", "1695482894", &[])
            .into_iter()
            .map(|(k, v)| (k.replace("[update]", "[add]"), v))
            .filter(|(k, _)| !k.contains("old_status_id"))
            .collect(),
        RU,
    );
    notes_after(&app, &key, add).await;
    let update = encode(
        full_update(
            "602",
            "59936198",
            "59936198",
            "1695483000",
            &[
                ("custom_fields][0][values][0", "1673647200"),
                ("custom_fields][2][id", "1402698"),
                ("custom_fields][2][name", "Оплачено"),
                ("custom_fields][2][values][0][value", "1"),
            ],
        ),
        RU,
    );
    let notes = notes_after(&app, &key, update).await;
    assert!(
        notes[1].contains("Дата доставки: 13.01.2023 → 14.01.2023; Оплачено: — → да."),
        "{}",
        notes[1]
    );
    // Three pages of 50, by the pages' own links.
    let pages = app
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v4/leads/custom_fields")
        .count();
    assert_eq!(pages, 3);
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

#[tokio::test]
async fn without_events_a_first_seen_update_lists_only_the_hooks_facts() {
    let (app, key) = app_with(RU).await;
    // No rights to the events (a problem+json 403, not a block).
    let refused = Fault::Problem {
        status: 403,
        hint: "Access denied".into(),
    };
    app.fake.fail_next(RU, "/api/v4/events", refused.clone(), 1);
    app.fake.fail_next(RU, "/api/v4/events", refused, 1);
    // A stage move of a card seen for the first time: `old_status_id`
    // persists on a card's later hooks, so without amoCRM's events it is
    // not written; the note says the card changed.
    let moved = encode(
        full_update("1", "59936202", "59936198", "1695482894", &[]),
        RU,
    );
    let notes = notes_after(&app, &key, moved).await;
    assert_eq!(
        notes,
        ["Изменена сделка «Сделка по оптовому заказу». Изменена: 23.09.2023 18:28:14"]
    );
    // Then the status and responsible hooks of that very change (as a real
    // account sends them after the update): the stored state already shows
    // the new stage and responsible, but no note said them, so both are
    // noted.
    let status = |action: &str, extra: &[(&str, &str)]| {
        let mut pairs = full_update("1", "59936202", "59936198", "1695482894", extra);
        for (k, _) in pairs.iter_mut() {
            *k = k.replace("[update]", &format!("[{action}]"));
        }
        encode(pairs, RU)
    };
    let notes = notes_after(&app, &key, status("status", &[])).await;
    assert_eq!(
        notes[1],
        "Изменена сделка «Сделка по оптовому заказу»: Этап: Первичный контакт → Счёт выставлен. \
         Изменена: 23.09.2023 18:28:14"
    );
    let notes = notes_after(
        &app,
        &key,
        status("responsible", &[("old_responsible_user_id", "100")]),
    )
    .await;
    assert_eq!(
        notes[2],
        "Изменена сделка «Сделка по оптовому заказу»: Ответственный: Иван Петров → Анна Смирнова. \
         Изменена: 23.09.2023 18:28:14"
    );
    // A later update still carrying the old stage: the move is not said
    // twice; its own change is.
    let later = encode(
        full_update("1", "59936202", "59936198", "1695483000", &[])
            .into_iter()
            .map(|(k, v)| {
                if k.ends_with("[price]") {
                    (k, "50000".into())
                } else {
                    (k, v)
                }
            })
            .collect(),
        RU,
    );
    let notes = notes_after(&app, &key, later).await;
    assert_eq!(
        notes[3],
        "Изменена сделка «Сделка по оптовому заказу»: Бюджет: 45000 ₽ → 50000 ₽. \
         Изменена: 23.09.2023 18:30:00"
    );
    // Nothing the hook can tell: the note says the card changed.
    let other = encode(
        full_update("2", "59936202", "59936202", "1695482894", &[]),
        RU,
    );
    let notes = notes_after(&app, &key, other).await;
    assert_eq!(
        notes[4],
        "Изменена сделка «Сделка по оптовому заказу». Изменена: 23.09.2023 18:28:14"
    );
}

#[tokio::test]
async fn the_hooks_old_stage_wins_over_a_stale_state_and_a_move_is_noted_once() {
    let (app, key) = app_with(RU).await;
    notes_after(
        &app,
        &key,
        encode(
            full_update("7", "59936198", "59936198", "1695480000", &[]),
            RU,
        ),
    )
    .await;
    // A hook was missed (the lead went to stage 142 and back to 59936202
    // meanwhile); this one says 142 → 59936202.
    let update = encode(full_update("7", "59936202", "142", "1695482894", &[]), RU);
    let notes = notes_after(&app, &key, update).await;
    assert_eq!(
        notes.last().unwrap(),
        "Изменена сделка «Сделка по оптовому заказу»: Этап: Успешно реализовано → Счёт выставлен. \
         Изменена: 23.09.2023 18:28:14"
    );
    // The digital pipeline's hook of the same move arrives too: no second note.
    let stage = body(
        &[
            ("leads[status][0][id]", "7"),
            ("leads[status][0][status_id]", "59936202"),
            ("leads[status][0][pipeline_id]", "7173574"),
            ("leads[status][0][old_status_id]", "142"),
            ("leads[status][0][old_pipeline_id]", "7173574"),
        ],
        RU,
    );
    let before = notes.len();
    let notes = notes_after(&app, &key, stage).await;
    assert_eq!(notes.len(), before, "{notes:?}");
}

#[tokio::test]
async fn a_contact_update_reads_phones_with_their_type_in_both_languages() {
    for (domain, expected) in [
        (
            RU,
            "Изменён контакт «Абиба абибович»: Телефон: 333 (рабочий) → 333 (рабочий), 8 999 (мобильный); \
             День рождения: — → 13 января. Изменён: 26.05.2025 23:56:39",
        ),
        (
            KOMMO,
            "Contact changed: “Абиба абибович”: Телефон: 333 (work) → 333 (work), 8 999 (mobile); \
             День рождения: — → January 13. Changed: 26.05.2025 23:56:39",
        ),
    ] {
        let app = TestApp::spawn_without_worker().await;
        let key = app.connected_as(domain, account(ID)).await;
        // Capture B of the reference: a contact update as curl sends it.
        let contact = |extra: &[(&str, &str)]| {
            let mut pairs = vec![
                ("contacts[update][0][id]", "37054081"),
                ("contacts[update][0][name]", "Абиба абибович"),
                ("contacts[update][0][responsible_user_id]", "100"),
                ("contacts[update][0][date_create]", "1748289231"),
                ("contacts[update][0][last_modified]", "1748292937"),
                ("contacts[update][0][custom_fields][0][id]", "735649"),
                ("contacts[update][0][custom_fields][0][name]", "Телефон"),
                ("contacts[update][0][custom_fields][0][values][0][value]", "333"),
                ("contacts[update][0][custom_fields][0][values][0][enum]", "718321"),
                ("contacts[update][0][custom_fields][0][code]", "PHONE"),
                ("contacts[update][0][old_responsible_user_id]", "100"),
                ("contacts[update][0][created_at]", "1748289231"),
                ("contacts[update][0][updated_at]", "1748292937"),
                ("contacts[update][0][type]", "contact"),
            ];
            pairs.extend_from_slice(extra);
            body(&pairs, domain)
        };
        notes_after(&app, &key, contact(&[])).await;
        let notes = notes_after(
            &app,
            &key,
            contact(&[
                ("contacts[update][0][custom_fields][0][values][1][value]", "8 999"),
                ("contacts[update][0][custom_fields][0][values][1][enum]", "718323"),
                ("contacts[update][0][custom_fields][1][id]", "735651"),
                ("contacts[update][0][custom_fields][1][name]", "День рождения"),
                ("contacts[update][0][custom_fields][1][values][0]", "1673560800"),
            ])
            .replace("1748292937", "1748292999"),
        )
        .await;
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert_eq!(notes[1], expected);
    }
}

/// Kommo's official contact example (N16 in the reference): a radiobutton
/// whose values come as one object, and a birthday as `dd.mm.yyyy` text,
/// read in each language of notes.
#[tokio::test]
async fn kommos_radiobutton_object_and_text_birthday_are_read() {
    for (domain, lang, expected) in [
        (
            RU,
            None,
            "Изменён контакт «Contact Name»: Birthday: 12 января → 13 января; \
             Any radiobutton: Второй → Третий. Изменён: 17.09.2024 14:40:00",
        ),
        (
            KOMMO,
            None,
            "Contact changed: “Contact Name”: Birthday: January 12 → January 13; \
             Any radiobutton: Второй → Третий. Changed: 17.09.2024 14:40:00",
        ),
        (
            KOMMO,
            Some("es"),
            "Contacto modificado: «Contact Name»: Birthday: 12 de enero → 13 de enero; \
             Any radiobutton: Второй → Третий. Modificado: 17.09.2024 14:40:00",
        ),
        (
            KOMMO,
            Some("pt"),
            "Contato alterado: “Contact Name”: Birthday: 12 de janeiro → 13 de janeiro; \
             Any radiobutton: Второй → Третий. Alterado em: 17.09.2024 14:40:00",
        ),
    ] {
        let mut kommo = account(ID);
        kommo.lang = lang.map(str::to_owned);
        kommo.fields.push((
            "contacts".into(),
            SimField::new(782_386, "Birthday", "birthday"),
        ));
        kommo.fields.push((
            "contacts".into(),
            SimField::new(791_730, "Any radiobutton", "radiobutton")
                .with_enums(&[(566_642, "Второй"), (566_643, "Третий")]),
        ));
        let app = TestApp::spawn_without_worker().await;
        let key = app.connected_as(domain, kommo).await;
        let contact = |action: &str, birthday: &str, choice: (&str, &str), at: &str| {
            let p = |k: &str| format!("contacts[{action}][0][{k}]");
            let pairs = [
                (p("id"), "17611273"),
                (p("name"), "Contact Name"),
                (p("responsible_user_id"), "100"),
                (p("date_create"), "1726573127"),
                (p("last_modified"), at),
                (p("created_user_id"), "100"),
                (p("modified_user_id"), "100"),
                (p("account_id"), "31257294"),
                (p("custom_fields][0][id"), "782386"),
                (p("custom_fields][0][name"), "Birthday"),
                (p("custom_fields][0][values][0][value"), birthday),
                (p("custom_fields][1][id"), "791730"),
                (p("custom_fields][1][name"), "Any radiobutton"),
                (p("custom_fields][1][values][value"), choice.0),
                (p("custom_fields][1][values][enum"), choice.1),
                (p("created_at"), "1726573127"),
                (p("updated_at"), at),
                (p("type"), "contact"),
            ];
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            body(&pairs, domain)
        };
        notes_after(
            &app,
            &key,
            contact("add", "12.01.1980", ("2", "566642"), "1726573127"),
        )
        .await;
        let notes = notes_after(
            &app,
            &key,
            contact("update", "13.01.1980", ("3", "566643"), "1726573200"),
        )
        .await;
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert_eq!(notes[1], expected);
    }
}

/// API v4's object values, as a hook carries them (`[value][name]=...` of
/// a legal entity; no capture of one is known, so this is the shape the
/// official SDK's value models give), read as their name in each language.
#[tokio::test]
async fn an_object_value_is_read_by_its_name() {
    for (lang, expected) in [
        ("ru", "Изменена компания «Acme»: Юрлицо: ООО «Ромашка» → ООО «Лютик». Изменена: 17.09.2024 15:40:00"),
        ("en", "Company changed: “Acme”: Юрлицо: ООО «Ромашка» → ООО «Лютик». Changed: 17.09.2024 15:40:00"),
        ("es", "Empresa modificada: «Acme»: Юрлицо: ООО «Ромашка» → ООО «Лютик». Modificada: 17.09.2024 15:40:00"),
        ("pt", "Empresa alterada: “Acme”: Юрлицо: ООО «Ромашка» → ООО «Лютик». Alterada em: 17.09.2024 15:40:00"),
    ] {
        let mut with_entity = account(ID);
        with_entity.lang = Some(lang.into());
        with_entity.fields.push((
            "companies".into(),
            SimField::new(771_950, "Юрлицо", "legal_entity"),
        ));
        let app = TestApp::spawn_without_worker().await;
        let key = app.connected_as(KOMMO, with_entity).await;
        let company = |action: &str, name: &str, at: &str| {
            let p = |k: &str| format!("contacts[{action}][0][{k}]");
            let pairs = [
                (p("id"), "17612521"),
                (p("name"), "Acme"),
                (p("responsible_user_id"), "100"),
                (p("custom_fields][0][id"), "771950"),
                (p("custom_fields][0][name"), "Юрлицо"),
                (p("custom_fields][0][values][0][value][name"), name),
                (p("custom_fields][0][values][0][value][vat_id"), "7701234567"),
                (p("created_at"), "1726576533"),
                (p("updated_at"), at),
                (p("type"), "company"),
            ];
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            body(&pairs, KOMMO)
        };
        notes_after(&app, &key, company("add", "ООО «Ромашка»", "1726576533")).await;
        let notes = notes_after(&app, &key, company("update", "ООО «Лютик»", "1726576800")).await;
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert_eq!(notes[1], expected);
    }
}

#[tokio::test]
async fn bodies_about_nothing_amohook_notes_are_answered_200_and_note_nothing() {
    let (app, key) = app_with(KOMMO).await;
    for entity in [
        form(&[
            ("leads[delete][0][id]", "1"),
            ("leads[delete][0][status_id]", "143"),
            ("account[id]", &ID.to_string()),
        ]),
        form(&[
            ("contacts[restore][0][id]", "2"),
            ("account[id]", &ID.to_string()),
        ]),
        form(&[
            ("unsorted[add][0][uid]", "9f8e"),
            ("unsorted[add][0][source]", "form"),
            ("account[id]", &ID.to_string()),
        ]),
        form(&[
            ("message[add][0][id]", "m1"),
            ("message[add][0][text]", "hi"),
            ("account[id]", &ID.to_string()),
        ]),
        form(&[
            ("leads[note][0][note][element_id]", "5"),
            ("leads[note][0][note][text]", "x"),
            ("account[id]", &ID.to_string()),
        ]),
    ] {
        assert_eq!(app.post_hook(&key, entity).await.status(), 200);
    }
    app.state.worker.drain().await.unwrap();
    assert!(app.fake.notes().is_empty());
}

#[tokio::test]
async fn a_kommo_account_reads_the_same_shapes_in_english() {
    let (app, key) = app_with(KOMMO).await;
    // A form's lead: nobody responsible.
    let add = body(
        &[
            ("leads[add][0][id]", "501"),
            ("leads[add][0][name]", "Website request"),
            ("leads[add][0][status_id]", "59936198"),
            ("leads[add][0][price]", "0"),
            ("leads[add][0][responsible_user_id]", "0"),
            ("leads[add][0][date_create]", "1712331728"),
            ("leads[add][0][pipeline_id]", "7173574"),
            ("leads[add][0][created_at]", "1712331728"),
            ("leads[add][0][updated_at]", "1712331728"),
        ],
        KOMMO,
    );
    // The digital pipeline moves it.
    let stage = body(
        &[
            ("leads[status][0][id]", "501"),
            ("leads[status][0][status_id]", "59936202"),
            ("leads[status][0][pipeline_id]", "7173574"),
            ("leads[status][0][old_status_id]", "59936198"),
            ("leads[status][0][old_pipeline_id]", "7173574"),
        ],
        KOMMO,
    );
    // A lead from before the install is taken by a user (the hook's own
    // old responsible) and its date set (amoCRM's events).
    app.fake.add_event(
        KOMMO,
        SimEvent {
            entity_type: "lead".into(),
            entity_id: 502,
            kind: "custom_field_1402697_value_changed".into(),
            created_at: 1_695_482_894,
            value_before: json!([]),
            value_after: json!([{"custom_field_value": {"field_id": 1402697, "text": "1673560800"}}]),
        },
    );
    let update = encode(
        full_update(
            "502",
            "59936198",
            "59936198",
            "1695482894",
            &[("old_responsible_user_id", "0")],
        ),
        KOMMO,
    );
    notes_after(&app, &key, add).await;
    notes_after(&app, &key, stage).await;
    let notes = notes_after(&app, &key, update).await;
    assert_eq!(
        notes[0],
        "Lead added: “Website request”. Responsible: not assigned. Added: 05.04.2024 18:42:08"
    );
    assert!(
        notes[1].starts_with(
            "Lead changed: “Website request”: Stage: Первичный контакт → Счёт выставлен. Changed: "
        ),
        "{}",
        notes[1]
    );
    assert_eq!(
        notes[2],
        "Lead changed: “Сделка по оптовому заказу”: Responsible: not assigned → Анна Смирнова; \
         Дата доставки: — → 13.01.2023. Changed: 23.09.2023 18:28:14"
    );
}
