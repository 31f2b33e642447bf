//! Response-schema conformance: every JSON body the emulator sent with a 2xx status is walked
//! against the discovery response schema of its method (resolving `$ref`, `items` and
//! `additionalProperties`); any field name the schema does not have, and any JSON type that
//! does not fit, is a violation. The discovery documents are read from `emulator/discovery/`.

use crmsync_emulator::RecordedResponse;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

struct Docs {
    /// method id -> (api, response schema name)
    responses: HashMap<String, (&'static str, String)>,
    /// api -> schemas
    schemas: HashMap<&'static str, Value>,
}

fn walk(res: &Value, api: &'static str, out: &mut HashMap<String, (&'static str, String)>) {
    let Some(map) = res.as_object() else { return };
    for r in map.values() {
        if let Some(methods) = r["methods"].as_object() {
            for m in methods.values() {
                if let (Some(id), Some(resp)) = (m["id"].as_str(), m["response"]["$ref"].as_str()) {
                    out.insert(id.to_string(), (api, resp.to_string()));
                }
            }
        }
        walk(&r["resources"], api, out);
    }
}

fn docs() -> &'static Docs {
    static D: OnceLock<Docs> = OnceLock::new();
    D.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/discovery");
        let mut responses = HashMap::new();
        let mut schemas = HashMap::new();
        for (api, file) in [
            ("calendar", "calendar.v3.json"),
            ("people", "people.v1.json"),
        ] {
            let text =
                std::fs::read_to_string(format!("{dir}/{file}")).expect("discovery document");
            let v: Value = serde_json::from_str(&text).expect("discovery parses");
            walk(&v["resources"], api, &mut responses);
            schemas.insert(api, v["schemas"].clone());
        }
        Docs { responses, schemas }
    })
}

fn check(api: &str, value: &Value, schema: &Value, path: &str, out: &mut Vec<String>) {
    let d = docs();
    if let Some(r) = schema["$ref"].as_str() {
        let resolved = &d.schemas[api][r];
        if resolved.is_null() {
            out.push(format!("{path}: unknown schema {r}"));
            return;
        }
        return check(api, value, resolved, path, out);
    }
    let ty = schema["type"].as_str().unwrap_or("any");
    match (ty, value) {
        (_, Value::Null) => out.push(format!("{path}: null value (Google omits empty fields)")),
        ("object", Value::Object(m)) => {
            for (k, v) in m {
                let sub = &schema["properties"][k];
                if !sub.is_null() {
                    check(api, v, sub, &format!("{path}.{k}"), out);
                } else if schema["additionalProperties"].is_object() {
                    check(
                        api,
                        v,
                        &schema["additionalProperties"],
                        &format!("{path}[{k}]"),
                        out,
                    );
                } else {
                    out.push(format!("{path}: field {k:?} is not in the schema"));
                }
            }
        }
        ("array", Value::Array(a)) => {
            for (i, v) in a.iter().enumerate() {
                check(api, v, &schema["items"], &format!("{path}[{i}]"), out);
            }
        }
        ("string", Value::String(_)) => {}
        ("integer", Value::Number(n)) if n.is_i64() || n.is_u64() => {}
        ("number", Value::Number(_)) => {}
        ("boolean", Value::Bool(_)) => {}
        ("any", _) => {}
        (t, v) => out.push(format!("{path}: expected {t}, got {v}")),
    }
}

/// Violations of one response body for `method`.
pub fn check_response(method: &str, body: &Value) -> Vec<String> {
    let d = docs();
    let Some((api, schema)) = d.responses.get(method) else {
        return vec![format!(
            "{method}: no response schema in the discovery documents"
        )];
    };
    let mut out = Vec::new();
    check(api, body, &json!({"$ref": schema}), method, &mut out);
    out
}

/// Violations across every recorded 2xx response.
pub fn check_all(recorded: &[RecordedResponse]) -> Vec<String> {
    recorded
        .iter()
        .filter(|r| (200..300).contains(&r.status))
        .flat_map(|r| check_response(&r.method, &r.body))
        .collect()
}

#[test]
fn validator_accepts_google_shapes_and_rejects_unknown_fields() {
    let ok = json!({"kind": "calendar#event", "id": "abc12", "attendees": [{"email": "a@b.c", "self": true}],
        "extendedProperties": {"private": {"k": "v"}}, "start": {"dateTime": "2026-01-01T00:00:00Z"}});
    assert!(check_response("calendar.events.get", &ok).is_empty());
    let bad = json!({"kind": "calendar#event", "attendees": [{"email": "a@b.c", "isMe": true}]});
    let v = check_response("calendar.events.get", &bad);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("isMe"));
    let bad_type = json!({"connections": [{"resourceName": 5}]});
    assert_eq!(
        check_response("people.people.connections.list", &bad_type).len(),
        1
    );
    let null = json!({"resourceName": null});
    assert_eq!(check_response("people.people.get", &null).len(), 1);
    assert!(check_response("people.people.deleteContact", &json!({})).is_empty());
}

#[tokio::test]
async fn every_method_response_is_checked_against_its_schema() {
    // A broad sweep over every implemented method; Env::finish checks each response.
    let env = crate::common::Env::new().await;
    let t = env.user("sweep@example.com").await;
    let cal = env.calendar(&t);
    let ppl = env.people(&t);
    let ev = google_calendar3::api::Event {
        summary: Some("Sweep".into()),
        start: Some(google_calendar3::api::EventDateTime {
            date: chrono::NaiveDate::from_ymd_opt(2026, 2, 2),
            ..Default::default()
        }),
        end: Some(google_calendar3::api::EventDateTime {
            date: chrono::NaiveDate::from_ymd_opt(2026, 2, 3),
            ..Default::default()
        }),
        recurrence: Some(vec!["RRULE:FREQ=DAILY;COUNT=3".into()]),
        ..Default::default()
    };
    let (_, e) = cal.events().insert(ev, "primary").doit().await.unwrap();
    let id = e.id.unwrap();
    cal.events()
        .list("primary")
        .single_events(true)
        .doit()
        .await
        .unwrap();
    cal.events().instances("primary", &id).doit().await.unwrap();
    cal.events().get("primary", &id).doit().await.unwrap();
    cal.calendar_list().get("primary").doit().await.unwrap();
    let p = google_people1::api::Person {
        names: Some(vec![google_people1::api::Name {
            given_name: Some("Sweep".into()),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let (_, created) = ppl.people().create_contact(p).doit().await.unwrap();
    let rn = created.resource_name.unwrap();
    ppl.people()
        .get(&rn)
        .person_fields(google_people1::FieldMask::new(&[
            "names",
            "metadata",
            "memberships",
        ]))
        .doit()
        .await
        .unwrap();
    ppl.people()
        .connections_list("people/me")
        .person_fields(google_people1::FieldMask::new(&["names", "metadata"]))
        .request_sync_token(true)
        .doit()
        .await
        .unwrap();
    ppl.people()
        .get_batch_get()
        .add_resource_names(&rn)
        .add_resource_names("people/c1")
        .person_fields(google_people1::FieldMask::new(&["names"]))
        .doit()
        .await
        .unwrap();
    ppl.contact_groups().list().doit().await.unwrap();
    ppl.contact_groups()
        .get("contactGroups/myContacts")
        .max_members(5)
        .doit()
        .await
        .unwrap();
    ppl.people().delete_contact(&rn).doit().await.unwrap();
    let recorded = env.emu().recorded_responses();
    assert!(recorded.len() >= 12);
    env.finish().await;
}
