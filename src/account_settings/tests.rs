use super::*;
use crate::notes::template::TemplateError;

fn lead_at(pipeline: i64, status: i64) -> Snapshot {
    Snapshot {
        name: "Deal".into(),
        pipeline_id: Some(pipeline),
        status_id: Some(status),
        ..Snapshot::default()
    }
}

fn change(key: &'static str, field: &str, field_id: Option<&str>) -> Change {
    Change {
        key,
        field: field.into(),
        field_id: field_id.map(str::to_owned),
        old: None,
        new: "x".into(),
    }
}

fn shown(c: &Change) -> String {
    match c.key {
        "status" => "Stage".into(),
        "responsible" => "Responsible".into(),
        _ => c.field.clone(),
    }
}

#[test]
fn the_defaults_admit_every_card_and_keep_every_change() {
    let s = NoteSettings::default();
    let snap = lead_at(1, 2);
    for kind in [EntityKind::Lead, EntityKind::Contact, EntityKind::Company] {
        for action in [
            Action::Add,
            Action::Update,
            Action::Status,
            Action::Responsible,
        ] {
            assert_eq!(s.admits(kind, action, &snap, &snap), Ok(()));
        }
    }
    let changes = vec![
        change("status", "", None),
        change("field", "Phone", Some("7")),
    ];
    assert_eq!(s.keep(changes.clone(), shown), Ok(changes));
    assert_eq!(s.keeps_unlisted(), Ok(()));
    // A version stored before any field existed reads as the defaults.
    let read: NoteSettings = serde_json::from_str("{}").unwrap();
    assert_eq!(read, s);
}

#[test]
fn switched_off_cards_and_adds_are_filtered_by_entity_and_action() {
    let s = NoteSettings {
        contacts: false,
        added: false,
        ..NoteSettings::default()
    };
    let snap = Snapshot::default();
    assert_eq!(
        s.admits(EntityKind::Contact, Action::Update, &snap, &snap),
        Err(Filtered::Entity)
    );
    assert_eq!(
        s.admits(EntityKind::Company, Action::Add, &snap, &snap),
        Err(Filtered::Action)
    );
    assert_eq!(
        s.admits(EntityKind::Company, Action::Update, &snap, &snap),
        Ok(())
    );
}

#[test]
fn robots_are_skipped_only_when_asked_and_only_for_user_zero() {
    let s = NoteSettings {
        skip_robots: true,
        ..NoteSettings::default()
    };
    let by = |user| Snapshot {
        modified_user_id: user,
        ..Snapshot::default()
    };
    let robot = by(Some(0));
    assert_eq!(
        s.admits(EntityKind::Contact, Action::Update, &robot, &robot),
        Err(Filtered::Robot)
    );
    for user in [Some(42), None] {
        let snap = by(user);
        assert_eq!(
            s.admits(EntityKind::Contact, Action::Update, &snap, &snap),
            Ok(())
        );
    }
    let d = NoteSettings::default();
    assert_eq!(
        d.admits(EntityKind::Contact, Action::Update, &robot, &robot),
        Ok(())
    );
}

#[test]
fn pipelines_and_stages_filter_leads_by_where_the_lead_is_now() {
    let s = NoteSettings {
        pipelines: vec![10],
        stages: vec![100, 101],
        ..NoteSettings::default()
    };
    let hook = Snapshot::default();
    assert_eq!(
        s.admits(EntityKind::Lead, Action::Update, &hook, &lead_at(10, 101)),
        Ok(())
    );
    assert_eq!(
        s.admits(EntityKind::Lead, Action::Update, &hook, &lead_at(11, 101)),
        Err(Filtered::Pipeline)
    );
    assert_eq!(
        s.admits(EntityKind::Lead, Action::Update, &hook, &lead_at(10, 102)),
        Err(Filtered::Stage)
    );
    // A lead whose place is unknown is outside a chosen list.
    assert_eq!(
        s.admits(
            EntityKind::Lead,
            Action::Update,
            &hook,
            &Snapshot::default()
        ),
        Err(Filtered::Pipeline)
    );
    // Contacts have no pipeline: the lists do not apply.
    assert_eq!(
        s.admits(
            EntityKind::Contact,
            Action::Update,
            &hook,
            &Snapshot::default()
        ),
        Ok(())
    );
}

#[test]
fn chosen_fields_match_by_shown_name_any_case_or_by_id() {
    let s = NoteSettings {
        only_fields: vec!["budget".into(), "555".into()],
        ..NoteSettings::default()
    };
    let phone = change("field", "Phone", Some("7"));
    let budget = change("price", "Budget", None);
    let city = change("field", "City", Some("555"));
    assert_eq!(s.keep(vec![phone.clone()], shown), Err(Filtered::Fields));
    // When a chosen field changed, the note lists every change, not only it.
    assert_eq!(
        s.keep(vec![phone.clone(), budget.clone()], shown),
        Ok(vec![phone.clone(), budget])
    );
    assert_eq!(s.keep(vec![city.clone()], shown), Ok(vec![city]));
    // "The card changed" with no list cannot show a chosen field.
    assert_eq!(s.keeps_unlisted(), Err(Filtered::Fields));
}

#[test]
fn each_kind_of_change_follows_its_own_switch() {
    let s = NoteSettings {
        stage: false,
        responsible: false,
        ..NoteSettings::default()
    };
    let status = change("status", "", None);
    let responsible = change("responsible", "", None);
    let phone = change("field", "Phone", Some("7"));
    assert_eq!(
        s.keep(vec![status.clone(), phone.clone()], shown),
        Ok(vec![phone.clone()])
    );
    assert_eq!(
        s.keep(vec![status.clone(), responsible.clone()], shown),
        Err(Filtered::Action)
    );
    let no_fields = NoteSettings {
        changed: false,
        ..NoteSettings::default()
    };
    assert_eq!(
        no_fields.keep(vec![status.clone(), phone], shown),
        Ok(vec![status])
    );
    assert_eq!(no_fields.keeps_unlisted(), Err(Filtered::Action));
}

#[test]
fn validation_names_the_setting_that_is_wrong() {
    let bad_template = NoteSettings {
        changed_template: Some("{card} {nope}".into()),
        ..NoteSettings::default()
    };
    match bad_template.validate() {
        Err(Invalid::Template {
            which: "changed",
            error,
        }) => {
            assert!(
                matches!(error, TemplateError::Unknown(ref p, _) if p == "nope"),
                "{error:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    let bad_lang = NoteSettings {
        lang: Some("de".into()),
        ..NoteSettings::default()
    };
    assert_eq!(bad_lang.validate(), Err(Invalid::Lang("de".into())));
    let bad_ids = NoteSettings {
        stages: vec![5, -1],
        ..NoteSettings::default()
    };
    assert_eq!(bad_ids.validate(), Err(Invalid::Ids("stages")));
    let too_many = NoteSettings {
        pipelines: (1..=MAX_LIST as i64 + 1).collect(),
        ..NoteSettings::default()
    };
    assert_eq!(too_many.validate(), Err(Invalid::TooMany("pipelines")));
    let blank_field = NoteSettings {
        only_fields: vec!["  ".into()],
        ..NoteSettings::default()
    };
    assert_eq!(blank_field.validate(), Err(Invalid::FieldName));
    let good = NoteSettings {
        lang: Some("pt".into()),
        added_template: Some("Novo: {card} ({responsible}) {time}".into()),
        ..NoteSettings::default()
    };
    assert_eq!(good.validate(), Ok(()));
}

#[test]
fn normalizing_unsets_blanks_and_orders_lists() {
    let s = NoteSettings {
        lang: Some("auto".into()),
        added_template: Some("   ".into()),
        changed_template: Some("{card}".into()),
        pipelines: vec![3, 1, 3],
        only_fields: vec![" Phone ".into(), "".into()],
        ..NoteSettings::default()
    }
    .normalized();
    assert_eq!(s.lang, None);
    assert_eq!(s.added_template, None);
    assert_eq!(s.changed_template.as_deref(), Some("{card}"));
    assert_eq!(s.pipelines, vec![1, 3]);
    assert_eq!(s.only_fields, vec!["Phone".to_owned()]);
    // Blank names are dropped by normalizing, so a saved form validates.
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn the_language_setting_wins_over_the_installers_and_the_domains() {
    let unset = NoteSettings::default();
    assert_eq!(unset.lang(Some("es"), "x.kommo.com"), Lang::Es);
    assert_eq!(unset.lang(None, "x.amocrm.ru"), Lang::Ru);
    let pt = NoteSettings {
        lang: Some("pt".into()),
        ..NoteSettings::default()
    };
    assert_eq!(pt.lang(Some("es"), "x.amocrm.ru"), Lang::Pt);
}

#[test]
fn unknown_settings_are_refused_when_read() {
    let err = serde_json::from_str::<NoteSettings>(r#"{"contcts": false}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field `contcts`"), "{err}");
}
