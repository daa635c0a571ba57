//! An account's note settings through the admin API: which cards and
//! changes give notes, its language and templates, the preview, and the
//! count of what each filter skipped. Settings apply to the hooks stored
//! after they are saved.

use amocrm_sim::{Entity, HookBody, SimCard};
use serde_json::{json, Value};

use crate::admin::{admin_app, TOKEN};
use crate::helpers::{lead_hook, TestApp};

const DOMAIN: &str = "loja.kommo.com";
const ID: i64 = 45_000_001;

fn contact_hook(action: &str, id: i64, name: &str, at: i64) -> String {
    let contact = SimCard {
        entity: Entity::Contact,
        updated_at: at,
        ..SimCard::lead(id, name)
    };
    HookBody::new(ID).card(action, &contact, None).encode()
}

/// A lead's change of budget made by user 101 at `at`.
fn budget_change(id: i64, price: &str, at: i64) -> String {
    lead_hook(
        ID,
        "update",
        id,
        "Pedido",
        at,
        &[("modified_user_id", "101")],
    )
    .replace("%5Bprice%5D=1000&", &format!("%5Bprice%5D={price}&"))
}

impl TestApp {
    async fn put_settings(&self, body: Value, if_match: Option<&str>) -> reqwest::Response {
        let mut request = self
            .http
            .put(self.url(&format!("/api/accounts/{ID}/settings")))
            .bearer_auth(TOKEN)
            .json(&body);
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        request.send().await.unwrap()
    }

    async fn preview(&self, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/api/accounts/{ID}/settings/preview")))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Posts a hook, delivers, and returns the notes written since `before`.
    async fn notes_after(&self, key: &str, body: String, before: usize) -> Vec<String> {
        assert_eq!(self.post_hook(key, body).await.status(), 200);
        self.state.worker.drain().await.unwrap();
        self.fake.notes()[before..]
            .iter()
            .map(|n| n.text.clone())
            .collect()
    }
}

#[tokio::test]
async fn an_account_turns_contacts_off_and_gets_its_own_portuguese_notes() {
    let app = admin_app().await;
    let key = app.connected(DOMAIN, ID).await;

    // Never saved: today's behaviour, version 0.
    let response = app.admin_get(&format!("/api/accounts/{ID}/settings")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"0\"");
    let shown: Value = response.json().await.unwrap();
    assert_eq!(shown["version"], 0);
    assert_eq!(shown["settings"]["contacts"], true);
    assert_eq!(shown["settings"]["changed_template"], Value::Null);
    assert_eq!(shown["skipped_by_filter"]["entity"], 0);
    let notes = app
        .notes_after(&key, contact_hook("add", 7, "Ana", 1_712_331_728), 0)
        .await;
    assert_eq!(notes.len(), 1, "{notes:?}");

    let saved = app
        .put_settings(
            json!({
                "contacts": false,
                "lang": "pt",
                "changed_template": "{kind} “{card}” alterado por {author}: {changes} ({time}) {link}",
            }),
            Some("\"0\""),
        )
        .await;
    assert_eq!(saved.status(), 200);
    assert_eq!(saved.headers()["etag"], "\"1\"");
    let shown: Value = saved.json().await.unwrap();
    assert_eq!(shown["version"], 1);
    assert_eq!(shown["saved_by"], "admin");
    assert_eq!(shown["settings"]["lang"], "pt");

    // A second editor who opened version 0 cannot overwrite it unknowingly.
    let stale = app
        .put_settings(json!({ "contacts": true }), Some("\"0\""))
        .await;
    assert_eq!(stale.status(), 409);
    assert!(stale.text().await.unwrap().contains("version 1"));

    // Contacts give no note now, and the skip says which filter.
    let notes = app
        .notes_after(
            &key,
            contact_hook("update", 7, "Ana Maria", 1_712_332_000),
            1,
        )
        .await;
    assert!(notes.is_empty(), "{notes:?}");
    let events = app.events().await;
    let (_, _, state, reason) = events.last().unwrap();
    assert_eq!(state, "skipped");
    assert!(
        reason.as_deref().unwrap().starts_with("filtered: "),
        "{reason:?}"
    );
    let shown = app
        .admin_json(&format!("/api/accounts/{ID}/settings"))
        .await;
    assert_eq!(shown["skipped_by_filter"]["entity"], 1);
    assert_eq!(shown["skipped_by_filter"]["robot"], 0);
    let metrics = app.admin_get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"amohook_events_filtered_total{filter="entity"}"#),
        "{metrics}"
    );

    // Leads follow the Portuguese template.
    app.notes_after(
        &key,
        lead_hook(ID, "add", 1, "Pedido", 1_712_331_728, &[]),
        1,
    )
    .await;
    let notes = app
        .notes_after(&key, budget_change(1, "2500", 1_712_332_931), 2)
        .await;
    assert_eq!(
        notes,
        [format!(
            "lead “Pedido” alterado por Мария Иванова: Venda: 1000 ₽ → 2500 ₽ (05.04.2024 19:02:11) https://{DOMAIN}/leads/detail/1"
        )]
    );
    // The notes written before keep their words.
    assert!(app.fake.notes()[0].text.starts_with("Contact added"));
}

#[tokio::test]
async fn settings_that_cannot_work_are_refused_with_the_reason_and_change_nothing() {
    let app = admin_app().await;
    app.connected(DOMAIN, ID).await;

    let cases = [
        (
            json!({ "added_template": "{card} by {someone}" }),
            422,
            "unknown placeholder {someone}",
        ),
        (json!({ "lang": "de" }), 422, "unknown language"),
        (json!({ "stages": [0] }), 422, "stages must be positive ids"),
        (json!({ "contcts": false }), 422, "unknown field `contcts`"),
        (json!({ "leads": "no" }), 422, "invalid type"),
    ];
    for (body, status, words) in cases {
        let refused = app.put_settings(body.clone(), None).await;
        assert_eq!(refused.status(), status, "{body}");
        let text = refused.text().await.unwrap();
        assert!(text.contains(words), "{body}: {text}");
    }
    let broken = app
        .http
        .put(app.url(&format!("/api/accounts/{ID}/settings")))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{\"leads\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 400);
    let bad_tag = app.put_settings(json!({}), Some("version-three")).await;
    assert_eq!(bad_tag.status(), 400);
    let unknown = app
        .http
        .put(app.url("/api/accounts/1/settings"))
        .bearer_auth(TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let anonymous = app
        .http
        .put(app.url(&format!("/api/accounts/{ID}/settings")))
        .json(&json!({ "leads": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    let shown = app
        .admin_json(&format!("/api/accounts/{ID}/settings"))
        .await;
    assert_eq!(shown["version"], 0);
    assert_eq!(shown["settings"]["leads"], true);
}

#[tokio::test]
async fn settings_apply_to_hooks_stored_after_they_are_saved() {
    let app = admin_app().await;
    let key = app.connected(DOMAIN, ID).await;

    // Stored before the change (delivery has not run yet): a note.
    assert_eq!(
        app.post_hook(&key, contact_hook("add", 7, "Ana", 1_712_331_728))
            .await
            .status(),
        200
    );
    let saved = app
        .put_settings(json!({ "contacts": false, "skip_robots": true }), None)
        .await;
    assert_eq!(saved.status(), 200);
    let notes = app
        .notes_after(&key, contact_hook("add", 8, "Bia", 1_712_331_800), 0)
        .await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("Ana"), "{notes:?}");

    // A lead changed by a robot (user 0) is skipped as a robot's change; by
    // a person, noted.
    app.notes_after(
        &key,
        lead_hook(
            ID,
            "add",
            1,
            "Pedido",
            1_712_331_728,
            &[("modified_user_id", "101")],
        ),
        1,
    )
    .await;
    let by_robot = lead_hook(ID, "update", 1, "Pedido 2", 1_712_332_000, &[]);
    assert!(app.notes_after(&key, by_robot, 2).await.is_empty());
    let shown = app
        .admin_json(&format!("/api/accounts/{ID}/settings"))
        .await;
    assert_eq!(shown["skipped_by_filter"]["robot"], 1);
    assert_eq!(shown["skipped_by_filter"]["entity"], 1);
    let by_person = budget_change(1, "3000", 1_712_332_100);
    assert_eq!(app.notes_after(&key, by_person, 2).await.len(), 1);
}

#[tokio::test]
async fn the_preview_renders_a_real_recent_event_under_unsaved_settings() {
    let app = admin_app().await;
    let key = app.connected(DOMAIN, ID).await;
    // No event yet: nothing to preview.
    assert_eq!(app.preview(json!({})).await.status(), 404);

    app.notes_after(
        &key,
        lead_hook(ID, "add", 1, "Pedido", 1_712_331_728, &[]),
        0,
    )
    .await;
    assert_eq!(
        app.post_hook(&key, budget_change(1, "2500", 1_712_332_931))
            .await
            .status(),
        200
    );

    let draft = json!({ "settings": {
        "lang": "es",
        "changed_template": "{card}: {changes} — {responsible}, {field:nope}.",
    }});
    let shown: Value = app.preview(draft).await.json().await.unwrap();
    assert_eq!(shown["entity_type"], "lead");
    assert_eq!(shown["action"], "update");
    assert_eq!(
        shown["note"],
        "Pedido: Venta: 1000 ₽ → 2500 ₽ — Иван Петров, ."
    );
    assert_eq!(shown["skipped"], Value::Null);

    let off: Value = app
        .preview(json!({ "settings": { "leads": false } }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(off["note"], Value::Null);
    assert!(
        off["skipped"].as_str().unwrap().starts_with("filtered: "),
        "{off}"
    );

    let bad = app
        .preview(json!({ "settings": { "changed_template": "{card" } }))
        .await;
    assert_eq!(bad.status(), 422);

    // The preview stores nothing: the event still gets today's note.
    assert_eq!(
        app.admin_json(&format!("/api/accounts/{ID}/settings"))
            .await["version"],
        0
    );
    app.state.worker.drain().await.unwrap();
    let last = app.fake.notes().last().unwrap().text.clone();
    assert!(last.starts_with("Lead changed"), "{last}");
}
