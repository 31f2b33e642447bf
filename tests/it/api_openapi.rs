//! The OpenAPI 3.1 document at `GET /api/v1/openapi.json`: it needs the token, it reads as
//! OpenAPI 3.1 (utoipa's typed model, every `$ref` resolves, every path parameter is declared),
//! it describes exactly the routes of `crmsync::api::API_ROUTES` and the router serves each of
//! them; and real answers (users, tags, contacts, activities, settings, a synced user's status,
//! runs and journal) conform to their documented schemas.

// Test code: a failed step fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::sched_support::ApiWorld;
use crate::support::{read, TestApp};
use crate::sync_support::SyncWorld;
use crmsync::api::API_ROUTES;
use crmsync_schema::db_test;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Resolves `{"$ref": "#/components/schemas/X"}` (or returns the schema itself).
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected $ref {r}"));
            doc["components"]["schemas"]
                .get(name)
                .unwrap_or_else(|| panic!("$ref {r} does not resolve"))
        }
        None => schema,
    }
}

/// Checks `value` against `schema` for the JSON Schema keywords utoipa emits (type, enum,
/// properties, required, additionalProperties, items, oneOf, anyOf, allOf, $ref); returns the
/// first mismatch with its path.
fn conforms(doc: &Value, schema: &Value, value: &Value, path: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            conforms(doc, s, value, path)?;
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(any) = schema.get(key).and_then(Value::as_array) {
            let ok: Vec<bool> = any
                .iter()
                .map(|s| conforms(doc, s, value, path).is_ok())
                .collect();
            let n = ok.iter().filter(|b| **b).count();
            if n == 0 || (key == "oneOf" && n > 1) {
                return Err(format!(
                    "{path}: {value} matches {n} of the {key} alternatives"
                ));
            }
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !e.contains(value) {
            return Err(format!("{path}: {value} is not one of {e:?}"));
        }
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() {
        let fits = types.iter().any(|t| match *t {
            "null" => value.is_null(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            other => panic!("unknown type {other}"),
        });
        if !fits {
            return Err(format!("{path}: {value} is not of type {types:?}"));
        }
    }
    if let Some(obj) = value.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = r.as_str().unwrap();
            if !obj.contains_key(name) {
                return Err(format!(
                    "{path}: the required {name:?} is missing in {value}"
                ));
            }
        }
        for (k, v) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => conforms(doc, s, v, &format!("{path}.{k}"))?,
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        return Err(format!("{path}: {k:?} is not a documented property"))
                    }
                    Some(s @ Value::Object(_)) => conforms(doc, s, v, &format!("{path}.{k}"))?,
                    _ if props.is_some() => {
                        return Err(format!(
                            "{path}: {k:?} is answered but not documented (schema {schema})"
                        ))
                    }
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            conforms(doc, items, v, &format!("{path}[{i}]"))?;
        }
    }
    Ok(())
}

/// Asserts that `body`, answered with `status` by `method path` (a template of the document,
/// e.g. `/users/{id}`), conforms to the documented response.
fn assert_conforms(doc: &Value, method: &str, template: &str, status: StatusCode, body: &Value) {
    let op = &doc["paths"][template][method.to_ascii_lowercase()];
    assert!(op.is_object(), "{method} {template} is not documented");
    let response = &op["responses"][status.as_str()];
    assert!(
        response.is_object(),
        "{method} {template}: status {status} is not documented ({body})"
    );
    match response["content"]["application/json"]["schema"].as_object() {
        Some(_) => {
            let schema = &response["content"]["application/json"]["schema"];
            if let Err(e) = conforms(doc, schema, body, "body") {
                panic!("{method} {template} {status}: {e}");
            }
        }
        None => assert!(
            body.is_null(),
            "{method} {template} {status}: undocumented body {body}"
        ),
    }
}

db_test!(async fn the_openapi_document_describes_every_route_the_router_serves(db) {
    let app = TestApp::start(&db).await;
    // The document is under /api/v1: it needs the token.
    let resp = app.client.get(format!("{}/openapi.json", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let text = resp.text().await.unwrap();
    let doc: Value = serde_json::from_str(&text).expect("the document is JSON");

    // OpenAPI 3.1, read by a typed model of the specification.
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")), "{}", doc["openapi"]);
    let typed: utoipa::openapi::OpenApi = serde_json::from_str(&text).expect("reads as OpenAPI 3.1");
    assert!(!typed.paths.paths.is_empty());
    assert_eq!(doc["servers"][0]["url"], "/api/v1");
    assert!(doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer", "{}", doc["components"]);
    assert_eq!(doc["security"], json!([{"bearer": []}]));

    // Every $ref resolves.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 30, "the document refers to its schemas");
    for r in all {
        resolve(&doc, &json!({"$ref": r}));
    }

    // Exactly the routes of API_ROUTES, each with its path parameters, a success answer and
    // the shared error answers.
    let methods = ["get", "put", "post", "delete", "patch"];
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in methods {
            if item.get(m).is_some() {
                documented.push((m.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    let mut listed: Vec<(String, String)> =
        API_ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    documented.sort();
    listed.sort();
    let mut ids: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| methods.iter().filter_map(|m| item.get(*m)))
        .map(|op| op["operationId"].as_str().expect("an operationId"))
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "operationIds are unique");
    // Links (what a created record's id leads to) name existing operations, as OpenAPI spells it.
    let mut links = 0;
    for item in doc["paths"].as_object().unwrap().values() {
        for op in methods.iter().filter_map(|m| item.get(*m)) {
            for response in op["responses"].as_object().unwrap().values() {
                for link in response["links"].as_object().into_iter().flat_map(|l| l.values()) {
                    let target = link["operationId"].as_str().unwrap_or_else(|| panic!("{link}"));
                    assert!(ids.contains(&target), "a link to {target}");
                    links += 1;
                }
            }
        }
    }
    assert!(links >= 20, "the created records link to their routes ({links} links)");
    assert_eq!(doc["components"]["schemas"]["PatchContact"]["minProperties"], 1);
    assert!(doc["components"]["schemas"]["PatchContact"].get("maxProperties").is_none());
    assert_eq!(documented, listed, "the document and API_ROUTES differ");
    for (method, path) in API_ROUTES {
        let op = &doc["paths"][*path][method.to_ascii_lowercase()];
        let declared: Vec<&str> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        let in_template: Vec<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        assert_eq!(declared, in_template, "{method} {path}: path parameters");
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|k| k.starts_with('2')),
            "{method} {path}: no success answer"
        );
        assert!(responses.contains_key("401"), "{method} {path}: no 401");
        assert!(op["summary"].is_string(), "{method} {path}: no summary");
        if op.get("requestBody").is_some() {
            for s in ["400", "413", "415", "422"] {
                assert!(responses.contains_key(s), "{method} {path}: no {s}");
            }
            assert!(op["requestBody"]["content"]["application/json"]["schema"].is_object());
        }
    }

    // The router serves every listed route: with the token, a placeholder id and an empty
    // body, no route answers the "no such route" 404 or a 405.
    let placeholder = uuid::Uuid::new_v4().to_string();
    for (method, path) in API_ROUTES {
        let concrete = path
            .replace("{id}", &placeholder)
            .replace("{tag_id}", &placeholder)
            .replace("{kind}", "contacts");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let body = matches!(method, Method::POST | Method::PUT | Method::PATCH).then(|| json!({}));
        let (s, v) = app.call(method.clone(), &concrete, body).await;
        assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or("");
        assert!(!msg.contains("no such route"), "{method} {path} is not routed: {v}");
        assert!(s.as_u16() < 500, "{method} {path}: {s} {v}");
        // The answer is documented, with its status and shape.
        assert_conforms(&doc, method.as_str(), path, s, &v);
    }
    // And nothing else is: an undocumented path is the router's 404.
    let (s, v) = app.get("/no-such-collection").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
});

db_test!(async fn real_answers_conform_to_the_documented_schemas(db) {
    let app = ApiWorld::start(SyncWorld::new(db).await).await;
    let alice = app.world.alice.id;
    let tag = app.world.tag.id;
    let doc = app.get("/openapi.json").await.1;
    let check = |method: &str, template: &str, (s, v): (StatusCode, Value)| {
        assert!(s.is_success(), "{method} {template}: {s} {v}");
        assert_conforms(&doc, method, template, s, &v);
        v
    };

    // CRM records through the API.
    let user = check("POST", "/users", app.call(Method::POST, "/users", Some(json!({
        "email": "bob@example.test", "display_name": "Bob", "time_zone": "Europe/Paris"}))).await);
    let bob = user["id"].as_str().unwrap().to_string();
    check("GET", "/users", app.get("/users?limit=1").await);
    check("PATCH", "/users/{id}", app.call(Method::PATCH, &format!("/users/{bob}"), Some(json!({"display_name": "Bobby"}))).await);
    let t = check("POST", "/tags", app.call(Method::POST, "/tags", Some(json!({
        "name": "Bob's", "visibility": "private", "owner_user_id": bob}))).await);
    check("POST", "/tags", app.call(Method::POST, "/tags", Some(json!({"name": "All", "visibility": "public"}))).await);
    check("GET", "/tags", app.get("/tags").await);
    let contact = check("POST", "/contacts", app.call(Method::POST, "/contacts", Some(json!({
        "given_name": "Ann", "family_name": "Able",
        "emails": [{"address": "ann@clients.test", "kind": "work", "primary": true}],
        "phones": [{"number": "+44 20 7946 0000", "kind": "work"}],
        "addresses": [{"kind": "home", "city": "London", "country_code": "GB"}],
        "organization": "Able Ltd", "job_title": "CEO", "notes": "met at the fair",
        "birthday": "--04-23", "tags": [tag]}))).await);
    let cid = contact["id"].as_str().unwrap().to_string();
    check("GET", "/contacts/{id}", app.get(&format!("/contacts/{cid}")).await);
    check("PATCH", "/contacts/{id}", app.call(Method::PATCH, &format!("/contacts/{cid}"), Some(json!({"notes": null, "birthday": "1980-04-23"}))).await);
    check("PUT", "/contacts/{id}/tags/{tag_id}", app.call(Method::PUT, &format!("/contacts/{cid}/tags/{}", t["id"].as_str().unwrap()), None).await);
    check("GET", "/contacts", app.get(&format!("/contacts?tag_id={tag}")).await);
    let act = check("POST", "/activities", app.call(Method::POST, "/activities", Some(json!({
        "title": "Kick-off", "start": "2031-03-02T09:00:00Z", "end": "2031-03-02T10:00:00Z",
        "time_zone": "Europe/London", "location": "Room 1", "display_in_calendar": true,
        "organizer_user_id": alice,
        "participants": [{"contact_id": cid}, {"email": "guest@outside.test", "response_status": "accepted"}]}))).await);
    check("POST", "/activities", app.call(Method::POST, "/activities", Some(json!({
        "title": "Day off", "start": "2031-03-05", "end": "2031-03-06", "all_day": true,
        "time_zone": "Pacific/Auckland", "display_in_calendar": true, "organizer_user_id": alice}))).await);
    check("GET", "/activities/{id}", app.get(&format!("/activities/{}", act["id"].as_str().unwrap())).await);
    check("GET", "/activities", app.get(&format!("/activities?organizer_user_id={alice}&limit=1")).await);

    // Settings, a real sync of each kind, and what the API says about it.
    check("PUT", "/users/{id}/sync-settings/{kind}", app.call(Method::PUT, &format!("/users/{alice}/sync-settings/contacts"),
        Some(json!({"auto_sync": false, "interval_minutes": 60, "tag_id": tag}))).await);
    check("PUT", "/users/{id}/sync-settings/{kind}", app.call(Method::PUT, &format!("/users/{alice}/sync-settings/activities"),
        Some(json!({"auto_sync": true, "cron": "0 0 8 * * *", "synchronize_from": "2031-01-01", "trigger_words": ["crm"]}))).await);
    check("GET", "/users/{id}/sync-settings", app.get(&format!("/users/{alice}/sync-settings")).await);
    let queued = check("POST", "/users/{id}/sync/{kind}", app.post(&format!("/users/{alice}/sync/activities")).await);
    let run = check("POST", "/users/{id}/sync/{kind}", app.post(&format!("/users/{alice}/sync/contacts?wait=true")).await);
    assert_eq!(run["state"], "succeeded", "{run}");
    let run_id = run["id"].as_str().unwrap().to_string();
    check("GET", "/sync-runs/{id}", app.get(&format!("/sync-runs/{}", queued["run_id"].as_str().unwrap())).await);
    check("GET", "/sync-runs", app.get(&format!("/sync-runs?user_id={alice}")).await);
    let journal = check("GET", "/journal", app.get(&format!("/journal?run_id={run_id}")).await);
    assert!(!journal["items"].as_array().unwrap().is_empty(), "the run wrote a journal: {journal}");
    check("GET", "/users/{id}/sync-status", app.get(&format!("/users/{alice}/sync-status")).await);
    check("GET", "/sync-status", app.get("/sync-status").await);
    check("GET", "/sync-status", app.get("/sync-status?state=idle&limit=1").await);

    // Google connections.
    let key = app.world.emu.emulator().create_service_account("other.test", app.world.emu.base_url());
    check("PUT", "/google/service-account", app.call(Method::PUT, "/google/service-account", Some(json!({"domain": "other.test", "key": key}))).await);
    check("PUT", "/google/oauth-client", app.call(Method::PUT, "/google/oauth-client", Some(json!({
        "client_id": "id", "client_secret": "secret", "redirect_uri": "https://crm.example.test/oauth/callback"}))).await);
    check("POST", "/users/{id}/google/oauth/start", app.post(&format!("/users/{bob}/google/oauth/start")).await);
    check("DELETE", "/users/{id}/google/connection", app.call(Method::DELETE, &format!("/users/{bob}/google/connection"), None).await);

    // The CRM integration routes (SPEC 6.4).
    check("PUT", "/users/by-external-id/{external_id}", app.call(Method::PUT, "/users/by-external-id/u-1", Some(json!({
        "email": "cara@example.test", "display_name": "Cara"}))).await);
    check("GET", "/users/by-external-id/{external_id}", app.get("/users/by-external-id/u-1").await);
    check("PUT", "/tags/by-external-id/{external_id}", app.call(Method::PUT, "/tags/by-external-id/t-1", Some(json!({
        "name": "Cara's", "visibility": "private", "owner_external_id": "u-1"}))).await);
    check("GET", "/tags/by-external-id/{external_id}", app.get("/tags/by-external-id/t-1").await);
    check("PUT", "/contacts/by-external-id/{external_id}", app.call(Method::PUT, "/contacts/by-external-id/c-1", Some(json!({
        "given_name": "Dan", "family_name": "Dee", "emails": [{"address": "dan@clients.test"}], "tag_external_ids": ["t-1"]}))).await);
    check("GET", "/contacts/by-external-id/{external_id}", app.get("/contacts/by-external-id/c-1").await);
    check("POST", "/contacts/batch", app.call(Method::POST, "/contacts/batch", Some(json!({"items": [
        {"external_id": "c-2", "given_name": "Eve", "family_name": "E"},
        {"external_id": "c-3", "given_name": "", "family_name": ""}]}))).await);
    check("PUT", "/activities/by-external-id/{external_id}", app.call(Method::PUT, "/activities/by-external-id/a-1", Some(json!({
        "title": "Review", "start": "2031-03-03T09:00:00Z", "end": "2031-03-03T10:00:00Z", "time_zone": "UTC",
        "display_in_calendar": false, "organizer_external_id": "u-1", "participants": [{"contact_external_id": "c-1"}]}))).await);
    check("GET", "/activities/by-external-id/{external_id}", app.get("/activities/by-external-id/a-1").await);
    check("POST", "/activities/batch", app.call(Method::POST, "/activities/batch", Some(json!({"items": [
        {"external_id": "a-2", "title": "Call", "start": "2031-03-04", "end": "2031-03-05", "all_day": true, "time_zone": "UTC",
         "display_in_calendar": false, "organizer_external_id": "u-1"}]}))).await);
    check("DELETE", "/activities/by-external-id/{external_id}", app.call(Method::DELETE, "/activities/by-external-id/a-2", None).await);
    check("DELETE", "/contacts/by-external-id/{external_id}", app.call(Method::DELETE, "/contacts/by-external-id/c-2", None).await);
    let feed = check("GET", "/changes", app.get("/changes?limit=5").await);
    assert_eq!(feed["has_more"], true, "{feed}");
    check("GET", "/changes", app.get("/changes?origin=sync&kinds=contacts").await);
    check("GET", "/changes/head", app.get("/changes/head").await);
    let (s, v) = app.get("/changes?after=-1").await;
    assert_conforms(&doc, "GET", "/changes", s, &v);

    // Errors have the documented shape too.
    let resp = app.client.get(format!("{}/users", app.base)).send().await.unwrap();
    let (s, v) = read(resp).await;
    assert_conforms(&doc, "GET", "/users", s, &v);
    let (s, v) = app.call(Method::POST, "/users", Some(json!({"email": "x"}))).await;
    assert_conforms(&doc, "POST", "/users", s, &v);
    app.stop().await;
});
