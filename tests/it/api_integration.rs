//! The CRM integration API (SPEC 6.4) on SQLite and PostgreSQL: external ids and idempotent
//! upserts, references by external id, versions with `If-Match`, batches, and the change feed
//! (origin, run id, filters, pruning, gap-free under concurrent writers).

use crate::sched_support::ApiWorld;
use crate::support::{assert_error, id_of, TestApp};
use crate::sync_support::*;
use crmsync_schema::changes::{self, Filter, Origin, OriginName};
use crmsync_schema::db_test;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;

/// Sends a request with extra headers; returns status, `ETag` and body.
async fn call_with(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, Option<String>, Value) {
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(&app.token);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request sent");
    let etag = resp
        .headers()
        .get("etag")
        .map(|v| v.to_str().expect("ascii etag").to_string());
    let (s, v) = crate::support::read(resp).await;
    (s, etag, v)
}

fn feed(app: &TestApp, after: i64, origin: Option<OriginName>) -> Vec<changes::Change> {
    let filter = Filter {
        origin,
        kinds: vec![],
    };
    app.store
        .read(|c| changes::changes_after(c, after, &filter, 1000))
        .expect("feed")
        .changes
}

fn ada(tags: Value) -> Value {
    json!({
        "given_name": "Ada", "family_name": "Lovelace",
        "emails": [{"address": "ada@example.org", "kind": "work", "primary": true}],
        "organization": "Analytical Engines", "tag_external_ids": tags,
    })
}

db_test!(async fn upserts_by_external_id_are_idempotent_and_resolve_references(db) {
    let app = TestApp::start(&db).await;
    // Users: created, then the same body again changes nothing; an admin-made user with the same
    // e-mail is adopted, not duplicated.
    let (s, u) = app.put("/users/by-external-id/u-1", Some(json!({"email": "owner@example.com", "display_name": "Owner"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    assert_eq!(u["external_id"], "u-1");
    let before = app.snapshot();
    let (s, again) = app.put("/users/by-external-id/u-1", Some(json!({"email": "owner@example.com", "display_name": "Owner"}))).await;
    assert_eq!((s, &again), (StatusCode::OK, &u));
    assert_eq!(app.snapshot(), before, "an identical user upsert wrote");
    let admin_made = app.user("bea@example.com").await;
    let (s, adopted) = app.put("/users/by-external-id/u-2", Some(json!({"email": "BEA@example.com", "display_name": "Bea"}))).await;
    assert_eq!(s, StatusCode::OK, "{adopted}");
    assert_eq!(id_of(&adopted), admin_made, "the admin's user took the external id");
    let (s, got) = app.get("/users/by-external-id/u-2").await;
    assert_eq!((s, got["display_name"].as_str()), (StatusCode::OK, Some("Bea")));

    // Tags: the owner named by the CRM's id.
    let (s, t) = app.put("/tags/by-external-id/t-1", Some(json!({"name": "Clients", "visibility": "private", "owner_external_id": "u-1"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    assert_eq!(t["owner_user_id"], u["id"]);
    let (s, _) = app.put("/tags/by-external-id/t-1", Some(json!({"name": "Clients", "visibility": "private", "owner_external_id": "u-1"}))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, t2) = app.put("/tags/by-external-id/t-2", Some(json!({"name": "All", "visibility": "public"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{t2}");

    // Contacts: tags by external id; the same body again is unchanged (no version, no feed).
    let (s, etag, c) = call_with(&app, Method::PUT, "/contacts/by-external-id/c-1", &[], Some(ada(json!(["t-1"])))).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    assert_eq!(c["tags"], json!([t["id"]]));
    assert_eq!(c["external_id"], "c-1");
    let version = c["version"].as_i64().expect("version");
    assert_eq!(etag, Some(format!("\"{version}\"")));
    let before = app.snapshot();
    let feed_before = feed(&app, 0, None).len();
    let (s, etag2, same) = call_with(&app, Method::PUT, "/contacts/by-external-id/c-1", &[], Some(ada(json!(["t-1"])))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(same, c);
    assert_eq!(etag2, etag);
    assert_eq!(app.snapshot(), before, "an identical contact upsert wrote");
    assert_eq!(feed(&app, 0, None).len(), feed_before, "an identical upsert reached the feed");
    // Without tag fields the tags stay; with them they are replaced (one change each).
    let mut no_tags = ada(json!([]));
    no_tags.as_object_mut().expect("object").remove("tag_external_ids");
    let (s, kept) = app.put("/contacts/by-external-id/c-1", Some(no_tags)).await;
    assert_eq!((s, &kept["tags"]), (StatusCode::OK, &json!([t["id"]])));
    assert_eq!(kept["version"], c["version"], "nothing changed");
    let (s, moved) = app.put("/contacts/by-external-id/c-1", Some(ada(json!(["t-2"])))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(moved["tags"], json!([t2["id"]]));
    assert!(moved["version"].as_i64() > Some(version));
    let actions: Vec<_> = feed(&app, version, None).iter().map(|c| (c.action.as_str(), c.tag_id.map(|t| t.to_string()))).collect();
    assert_eq!(actions, vec![("untagged", t["id"].as_str().map(String::from)), ("tagged", t2["id"].as_str().map(String::from))]);
    let (s, got) = app.get("/contacts/by-external-id/c-1").await;
    assert_eq!((s, id_of(&got)), (StatusCode::OK, id_of(&c)));

    // Activities: organizer and participants by external id.
    let meeting = json!({
        "title": "Kick-off", "start": "2026-03-02T09:00:00Z", "end": "2026-03-02T10:00:00Z",
        "time_zone": "Europe/London", "display_in_calendar": true, "organizer_external_id": "u-1",
        "participants": [{"contact_external_id": "c-1"}, {"user_external_id": "u-2", "response_status": "accepted"}],
    });
    let (s, a) = app.put("/activities/by-external-id/a-1", Some(meeting.clone())).await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    assert_eq!(a["organizer_user_id"], u["id"]);
    assert_eq!(a["participants"][0]["contact_id"], c["id"]);
    assert_eq!(a["participants"][0]["email"], "ada@example.org");
    assert_eq!(a["participants"][1]["user_id"], adopted["id"]);
    let before = app.snapshot();
    let (s, same) = app.put("/activities/by-external-id/a-1", Some(meeting.clone())).await;
    assert_eq!((s, &same), (StatusCode::OK, &a));
    assert_eq!(app.snapshot(), before, "an identical activity upsert wrote");
    let mut moved_meeting = meeting.clone();
    moved_meeting["title"] = json!("Kick-off (moved)");
    let (s, moved) = app.put("/activities/by-external-id/a-1", Some(moved_meeting)).await;
    assert_eq!((s, moved["title"].as_str()), (StatusCode::OK, Some("Kick-off (moved)")));
    assert!(moved["version"].as_i64() > a["version"].as_i64());

    // Unknown references: 422 naming the field, nothing written.
    let before = app.snapshot();
    let (s, e) = app.put("/contacts/by-external-id/c-9", Some(ada(json!(["no-such-tag"])))).await;
    assert_error(s, &e, StatusCode::UNPROCESSABLE_ENTITY, "unknown tag");
    assert!(e["error"]["message"].as_str().unwrap_or("").contains("tag_external_ids[0]"), "{e}");
    let mut bad = meeting.clone();
    bad["participants"] = json!([{"user_external_id": "u-404"}]);
    let (s, e) = app.put("/activities/by-external-id/a-9", Some(bad)).await;
    assert_error(s, &e, StatusCode::UNPROCESSABLE_ENTITY, "unknown participant");
    let (s, e) = app.put("/tags/by-external-id/t-9", Some(json!({"name": "X", "visibility": "private", "owner_external_id": "nobody"}))).await;
    assert_error(s, &e, StatusCode::UNPROCESSABLE_ENTITY, "unknown owner");
    // Over-long ids, a body contradicting the path, and an id taken by another record.
    let long = "x".repeat(256);
    let (s, e) = app.put(&format!("/contacts/by-external-id/{long}"), Some(ada(json!([])))).await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, "long id");
    let mut other = ada(json!([]));
    other["external_id"] = json!("c-2");
    let (s, e) = app.put("/contacts/by-external-id/c-3", Some(other)).await;
    assert_error(s, &e, StatusCode::UNPROCESSABLE_ENTITY, "contradicting id");
    let (s, e) = app.post("/contacts", json!({"given_name": "Dup", "family_name": "", "external_id": "c-1"})).await;
    assert_error(s, &e, StatusCode::CONFLICT, "taken id");
    assert_eq!(app.snapshot(), before, "a refused upsert wrote");

    // Delete by external id frees it; a new PUT makes a new contact.
    let (s, _) = app.delete("/contacts/by-external-id/c-1").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.get("/contacts/by-external-id/c-1").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, again) = app.put("/contacts/by-external-id/c-1", Some(ada(json!(["t-1"])))).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_ne!(id_of(&again), id_of(&c));
    let deleted = feed(&app, 0, None).into_iter().find(|ch| ch.action.as_str() == "deleted").expect("a delete in the feed");
    assert_eq!(deleted.external_id.as_deref(), Some("c-1"), "the feed names the deleted record's external id");
    let (s, _) = app.delete("/activities/by-external-id/a-1").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.delete("/tags/by-external-id/t-2").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.get("/tags/by-external-id/t-2").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
});

db_test!(async fn a_stale_if_match_is_412_and_changes_nothing(db) {
    let app = TestApp::start(&db).await;
    let (s, etag, c) = call_with(&app, Method::POST, "/contacts", &[], Some(json!({"given_name": "Ann", "family_name": "Able"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let id = id_of(&c);
    let v1 = etag.expect("an ETag on create");
    // Someone else changes it.
    let (s, _) = app.patch(&format!("/contacts/{id}"), json!({"job_title": "CEO"})).await;
    assert_eq!(s, StatusCode::OK);
    let before = app.snapshot();
    for (method, path, body) in [
        (Method::PATCH, format!("/contacts/{id}"), Some(json!({"given_name": "Anne"}))),
        (Method::DELETE, format!("/contacts/{id}"), None),
    ] {
        let (s, _, e) = call_with(&app, method.clone(), &path, &[("if-match", &v1)], body).await;
        let code = assert_error(s, &e, StatusCode::PRECONDITION_FAILED, &format!("{method} stale"));
        assert_eq!(code, "precondition_failed");
    }
    let (s, _, e) = call_with(&app, Method::PATCH, &format!("/contacts/{id}"), &[("if-match", "42")], Some(json!({"given_name": "Anne"}))).await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, "malformed If-Match");
    assert_eq!(app.snapshot(), before, "a stale write changed something");
    // With the current ETag the write goes through and answers the next one.
    let (_, current, _) = call_with(&app, Method::GET, &format!("/contacts/{id}"), &[], None).await;
    let current = current.expect("ETag on GET");
    let (s, next, p) = call_with(&app, Method::PATCH, &format!("/contacts/{id}"), &[("if-match", &current)], Some(json!({"given_name": "Anne"}))).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(next, Some(format!("\"{}\"", p["version"])));

    // PUT by external id: a stale If-Match, and If-Match on a record that does not exist.
    let (s, etag, _) = call_with(&app, Method::PUT, "/contacts/by-external-id/x-1", &[], Some(json!({"given_name": "Bo", "family_name": "B"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = app.put("/contacts/by-external-id/x-1", Some(json!({"given_name": "Bo", "family_name": "Changed"}))).await;
    assert_eq!(s, StatusCode::OK);
    let before = app.snapshot();
    let stale = etag.expect("etag");
    let (s, _, e) = call_with(&app, Method::PUT, "/contacts/by-external-id/x-1", &[("if-match", &stale)], Some(json!({"given_name": "Bo", "family_name": "Mine"}))).await;
    assert_error(s, &e, StatusCode::PRECONDITION_FAILED, "stale PUT");
    let (s, _, e) = call_with(&app, Method::PUT, "/contacts/by-external-id/x-2", &[("if-match", "\"1\"")], Some(json!({"given_name": "New", "family_name": "N"}))).await;
    assert_error(s, &e, StatusCode::PRECONDITION_FAILED, "If-Match on a missing record");
    let (s, _, e) = call_with(&app, Method::DELETE, "/contacts/by-external-id/x-1", &[("if-match", &stale)], None).await;
    assert_error(s, &e, StatusCode::PRECONDITION_FAILED, "stale DELETE");
    assert_eq!(app.snapshot(), before);

    // Activities too.
    let owner = app.user("owner@example.com").await;
    let (s, etag, a) = call_with(&app, Method::POST, "/activities", &[], Some(json!({
        "title": "Call", "start": "2026-03-02T09:00:00Z", "end": "2026-03-02T09:30:00Z",
        "time_zone": "UTC", "display_in_calendar": false, "organizer_user_id": owner}))).await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let aid = id_of(&a);
    let (s, _) = app.patch(&format!("/activities/{aid}"), json!({"title": "Call 2"})).await;
    assert_eq!(s, StatusCode::OK);
    let before = app.snapshot();
    let stale = etag.expect("etag");
    let (s, _, e) = call_with(&app, Method::PATCH, &format!("/activities/{aid}"), &[("if-match", &stale)], Some(json!({"title": "Mine"}))).await;
    assert_error(s, &e, StatusCode::PRECONDITION_FAILED, "stale activity PATCH");
    let (s, _, e) = call_with(&app, Method::DELETE, &format!("/activities/{aid}"), &[("if-match", &stale)], None).await;
    assert_error(s, &e, StatusCode::PRECONDITION_FAILED, "stale activity DELETE");
    assert_eq!(app.snapshot(), before);
    let (s, _, _) = call_with(&app, Method::DELETE, &format!("/activities/{aid}"), &[("if-match", "*")], None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
});

db_test!(async fn a_batch_commits_its_valid_items_and_reports_the_rest(db) {
    let app = TestApp::start(&db).await;
    let (s, _) = app.put("/users/by-external-id/u-1", Some(json!({"email": "owner@example.com", "display_name": "Owner"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = app.put("/tags/by-external-id/t-1", Some(json!({"name": "Clients", "visibility": "private", "owner_external_id": "u-1"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let items = json!([
        {"external_id": "c-1", "given_name": "Ada", "family_name": "L", "tag_external_ids": ["t-1"], "emails": [{"address": "ada@example.org"}]},
        {"external_id": "c-2", "given_name": "", "family_name": ""},
        {"external_id": "c-3", "given_name": "Bo", "family_name": "B", "tag_external_ids": ["nope"]},
        {"external_id": "c-4", "given_name": "Cy", "family_name": "C", "emails": [{"address": "not-an-address"}]},
        {"external_id": "c-5", "given_name": "Di", "family_name": "D", "unknown_field": 1},
        {"given_name": "No", "family_name": "Id"},
        {"external_id": "c-7", "given_name": "Eve", "family_name": "E"},
        {"external_id": "c-7", "given_name": "Eve", "family_name": "Again"},
        {"external_id": "c-9", "given_name": "Fay", "family_name": "F"},
    ]);
    let (s, r) = app.post("/contacts/batch", json!({"items": items})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let statuses: Vec<&str> = r["results"].as_array().expect("results").iter().map(|x| x["status"].as_str().unwrap_or("?")).collect();
    assert_eq!(statuses, ["created", "invalid", "invalid", "invalid", "invalid", "invalid", "invalid", "invalid", "created"]);
    assert!(r["results"][2]["error"]["message"].as_str().unwrap_or("").contains("nope"), "{r}");
    assert!(r["results"][6]["error"]["message"].as_str().unwrap_or("").contains("items 6, 7"), "{r}");
    assert_eq!(r["results"][4]["error"]["code"], "invalid_body");
    assert_eq!(r["results"][0]["external_id"], "c-1");
    for x in ["c-1", "c-9"] {
        let (s, _) = app.get(&format!("/contacts/by-external-id/{x}")).await;
        assert_eq!(s, StatusCode::OK, "{x} committed");
    }
    for x in ["c-2", "c-3", "c-4", "c-5", "c-7"] {
        let (s, _) = app.get(&format!("/contacts/by-external-id/{x}")).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{x} not written");
    }
    // The same valid items again: unchanged, nothing written.
    let before = app.snapshot();
    let again = json!({"items": [
        {"external_id": "c-1", "given_name": "Ada", "family_name": "L", "tag_external_ids": ["t-1"], "emails": [{"address": "ada@example.org"}]},
        {"external_id": "c-9", "given_name": "Fay", "family_name": "F"},
    ]});
    let (s, r2) = app.post("/contacts/batch", again).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r2["results"][0]["status"], "unchanged");
    assert_eq!(r2["results"][0]["version"], r["results"][0]["version"]);
    assert_eq!(r2["results"][1]["status"], "unchanged");
    assert_eq!(app.snapshot(), before, "an unchanged batch wrote");
    let (s, r3) = app.post("/contacts/batch", json!({"items": [{"external_id": "c-9", "given_name": "Fay", "family_name": "Fox"}]})).await;
    assert_eq!((s, r3["results"][0]["status"].as_str()), (StatusCode::OK, Some("updated")));

    // Oversized, empty and malformed batches are refused whole.
    let before = app.snapshot();
    let big: Vec<Value> = (0..1001).map(|i| json!({"external_id": format!("b-{i}"), "given_name": "B", "family_name": "B"})).collect();
    let (s, e) = app.post("/contacts/batch", json!({"items": big})).await;
    assert_error(s, &e, StatusCode::UNPROCESSABLE_ENTITY, "1001 items");
    let (s, e) = app.post("/contacts/batch", json!({"items": []})).await;
    assert_error(s, &e, StatusCode::UNPROCESSABLE_ENTITY, "no items");
    let (s, e) = app.post("/contacts/batch", json!({"things": []})).await;
    assert_error(s, &e, StatusCode::UNPROCESSABLE_ENTITY, "no items field");
    assert_eq!(app.snapshot(), before);
    // A full batch of 1,000 goes through in one call.
    let full: Vec<Value> = (0..1000).map(|i| json!({"external_id": format!("f-{i}"), "given_name": format!("F{i}"), "family_name": "Full", "emails": [{"address": format!("f{i}@example.org")}]})).collect();
    let (s, r) = app.post("/contacts/batch", json!({"items": full})).await;
    assert_eq!(s, StatusCode::OK);
    assert!(r["results"].as_array().expect("results").iter().all(|x| x["status"] == "created"));

    // Activities: one refers to a contact of this batch's CRM, one to an unknown organizer.
    let (s, r) = app.post("/activities/batch", json!({"items": [
        {"external_id": "a-1", "title": "Call", "start": "2026-03-02T09:00:00Z", "end": "2026-03-02T09:30:00Z", "time_zone": "UTC",
         "display_in_calendar": true, "organizer_external_id": "u-1", "participants": [{"contact_external_id": "c-1"}]},
        {"external_id": "a-2", "title": "Call", "start": "2026-03-02T09:00:00Z", "end": "2026-03-02T09:30:00Z", "time_zone": "UTC",
         "display_in_calendar": true, "organizer_external_id": "u-404"},
        {"external_id": "a-3", "title": "Bad", "start": "2026-03-02T10:00:00Z", "end": "2026-03-02T09:30:00Z", "time_zone": "UTC",
         "display_in_calendar": true, "organizer_external_id": "u-1"},
    ]})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let statuses: Vec<&str> = r["results"].as_array().expect("results").iter().map(|x| x["status"].as_str().unwrap_or("?")).collect();
    assert_eq!(statuses, ["created", "invalid", "invalid"], "{r}");
    let (s, a) = app.get("/activities/by-external-id/a-1").await;
    assert_eq!((s, a["participants"][0]["email"].as_str()), (StatusCode::OK, Some("ada@example.org")));
});

db_test!(async fn the_feed_lists_api_changes_in_order_with_filters_head_and_pruning(db) {
    let app = TestApp::start(&db).await;
    let owner = app.user("owner@example.com").await;
    let tag = app.tag("sync", "private", Some(&owner)).await;
    let (_, head0) = app.get("/changes/head").await;
    let (s, c) = app.post("/contacts", json!({"given_name": "Ann", "family_name": "Able", "external_id": "c-1"})).await;
    assert_eq!(s, StatusCode::CREATED);
    let id = id_of(&c);
    app.patch(&format!("/contacts/{id}"), json!({"job_title": "CEO"})).await;
    app.put(&format!("/contacts/{id}/tags/{tag}"), None).await;
    app.delete(&format!("/contacts/{id}/tags/{tag}")).await;
    let (s, a) = app.post("/activities", json!({"title": "Call", "start": "2026-03-02T09:00:00Z", "end": "2026-03-02T09:30:00Z",
        "time_zone": "UTC", "display_in_calendar": false, "organizer_user_id": owner})).await;
    assert_eq!(s, StatusCode::CREATED);
    app.delete(&format!("/contacts/{id}")).await;

    let (s, page) = app.get(&format!("/changes?after={}", head0["cursor"])).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let rows = page["changes"].as_array().expect("changes");
    let got: Vec<(&str, &str)> = rows.iter().map(|r| (r["kind"].as_str().unwrap_or("?"), r["action"].as_str().unwrap_or("?"))).collect();
    assert_eq!(got, [("contact", "created"), ("contact", "updated"), ("contact", "tagged"), ("contact", "untagged"), ("activity", "created"), ("contact", "deleted")]);
    assert!(rows.iter().all(|r| r["origin"] == "api" && r["run_id"].is_null()));
    assert!(rows.iter().filter(|r| r["kind"] == "contact").all(|r| r["external_id"] == "c-1" && r["id"] == c["id"]));
    assert_eq!(rows[2]["tag_id"].as_str(), Some(tag.as_str()));
    assert_eq!(rows[4]["id"], a["id"]);
    let cursors: Vec<i64> = rows.iter().map(|r| r["cursor"].as_i64().unwrap_or(-1)).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    assert_eq!(page["next_cursor"].as_i64(), cursors.last().copied());
    assert_eq!(page["has_more"], false);
    let (_, head) = app.get("/changes/head").await;
    assert!(head["cursor"].as_i64() >= cursors.last().copied());

    // Pages of two, in the same order; filters.
    let mut after = head0["cursor"].as_i64().unwrap_or(0);
    let mut paged = Vec::new();
    loop {
        let (_, p) = app.get(&format!("/changes?after={after}&limit=2")).await;
        paged.extend(p["changes"].as_array().expect("changes").iter().map(|r| r["cursor"].as_i64().unwrap_or(-1)));
        after = p["next_cursor"].as_i64().expect("next_cursor");
        if p["has_more"] == false {
            break;
        }
    }
    assert_eq!(paged, cursors);
    let (_, only_sync) = app.get("/changes?origin=sync").await;
    assert_eq!(only_sync["changes"], json!([]));
    assert_eq!(only_sync["next_cursor"].as_i64(), head["cursor"].as_i64(), "filtered-out changes are passed over");
    let (_, acts) = app.get("/changes?kinds=activities&origin=any").await;
    assert_eq!(acts["changes"].as_array().map(Vec::len), Some(1));
    for bad in ["/changes?origin=google", "/changes?kinds=events", "/changes?limit=0", "/changes?limit=1001", "/changes?after=-1", "/changes?after=x"] {
        let (s, e) = app.get(bad).await;
        assert_error(s, &e, StatusCode::BAD_REQUEST, bad);
    }

    // Pruning: 30 days later the old changes go; an old cursor is told to resynchronize.
    let later = crate::support::t0() + chrono::Duration::days(31);
    let pruned = app.store.write(|c| changes::prune(c, later - chrono::Duration::days(30), later)).expect("prune");
    assert_eq!(pruned, 6);
    let (s, e) = app.get(&format!("/changes?after={}", head0["cursor"])).await;
    let code = assert_error(s, &e, StatusCode::GONE, "pruned cursor");
    assert_eq!(code, "cursor_expired");
    let (s, fresh) = app.get("/changes").await;
    assert_eq!((s, &fresh["changes"]), (StatusCode::OK, &json!([])));
    let (s, _) = app.get(&format!("/changes?after={}", head["cursor"])).await;
    assert_eq!(s, StatusCode::OK, "a cursor at the pruned edge still reads on");
});

db_test!(async fn a_google_edit_shows_in_the_feed_with_origin_sync_and_the_run_id(db) {
    let w = SyncWorld::new(db).await;
    let ada = w.crm_contact("Ada", "Lovelace", "ada@example.org");
    let first = w.sync_contacts().await;
    let g = w.google_as("alice@example.com").await;
    let rn = w.google_contacts().iter().find(|p| emails_of(std::slice::from_ref(*p)).contains(&"ada@example.org".to_string())).and_then(|p| p["resourceName"].as_str().map(String::from)).expect("Ada in Google");
    let mut p = g.people().get(&rn).await.expect("read").expect("exists");
    p.phone_numbers = with_phone(person("x", "y", "z@z"), "+1 555 0100").phone_numbers;
    g.people().update_contact(p, "phoneNumbers").await.expect("Google edit");
    let second = w.sync_contacts().await;
    assert_ne!(first.run_id, second.run_id);
    // The run recorded its progress: every record read was handled.
    let run = w.store.read(|c| crmsync_schema::runs::get_run(c, second.run_id)).expect("read").expect("run");
    assert!(run.items_known.is_some_and(|k| k >= 1), "{run:?}");
    assert_eq!(run.items_done, run.items_known, "{run:?}");
    let app = ApiWorld::start(w).await;
    let (s, page) = app.get("/changes?origin=sync").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let rows = page["changes"].as_array().expect("changes");
    let edit = rows.iter().find(|r| r["id"] == json!(ada.id.to_string()) && r["action"] == "updated").unwrap_or_else(|| panic!("no sync update of Ada: {page}"));
    assert_eq!(edit["origin"], "sync");
    assert_eq!(edit["run_id"], json!(second.run_id.to_string()));
    assert_eq!(edit["user_id"], json!(app.world.alice.id.to_string()));
    // The CRM's own writes are not in the sync-origin feed.
    let (_, api) = app.get("/changes?origin=api").await;
    assert!(api["changes"].as_array().expect("changes").iter().all(|r| r["origin"] == "api"));
    assert!(rows.iter().all(|r| r["origin"] == "sync"));
});

db_test!(async fn eight_writers_and_a_reader_following_the_cursor_see_every_change_once_in_order(db) {
    let store = db.store();
    let now = crate::support::t0();
    const WRITERS: usize = 8;
    const WRITES: usize = 40;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut handles = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        let done = done.clone();
        handles.push(std::thread::spawn(move || {
            for i in 0..WRITES {
                store
                    .write(|c| {
                        let data = contact_data(&format!("W{w}"), &format!("N{i}"), &format!("w{w}n{i}@example.org"));
                        let made = crmsync_schema::contacts::create_contact(c, &data, &[], None, Origin::Api, now)?;
                        // Hold the transaction open after taking the cursor: a later writer's
                        // commit must not become visible before this one.
                        std::thread::sleep(std::time::Duration::from_millis((w as u64 * 7 + i as u64 * 3) % 5));
                        crmsync_schema::contacts::update_contact(c, made.id, &data, Origin::Api, now)
                    })
                    .expect("write");
            }
            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
    }
    let mut after = 0;
    let mut seen: Vec<i64> = Vec::new();
    loop {
        let finished = done.load(std::sync::atomic::Ordering::SeqCst) == WRITERS;
        let page = store.read(|c| changes::changes_after(c, after, &Filter::default(), 17)).expect("read");
        seen.extend(page.changes.iter().map(|c| c.cursor));
        after = page.next_cursor;
        if finished && !page.has_more && page.changes.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    for h in handles {
        h.join().expect("writer");
    }
    let all: Vec<i64> = store
        .read(|c| changes::changes_after(c, 0, &Filter::default(), 1000))
        .expect("all")
        .changes
        .iter()
        .map(|c| c.cursor)
        .collect();
    assert_eq!(all.len(), WRITERS * WRITES * 2);
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a change was seen twice");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "out of cursor order");
    assert_eq!(seen, all, "the reader missed changes");
});
