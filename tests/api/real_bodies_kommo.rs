//! Kommo's value shapes (see real_bodies.rs): radiobuttons as objects,
//! text birthdays, object values read by their name, an account in English.

use crate::helpers::TestApp;
use crate::real_bodies::*;
use amocrm_sim::{SimEvent, SimField};
use serde_json::json;

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
