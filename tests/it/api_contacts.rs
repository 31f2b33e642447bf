//! Contacts through the API: create, read, list (all and by tag), change, tag, untag, delete.

use crate::support::{assert_error, id_of, TestApp};
use chrono::Duration;
use crmsync_schema::db_test;
use reqwest::StatusCode;
use serde_json::json;

db_test!(async fn contacts_crud_tag_and_untag(db) {
    let app = TestApp::start(&db).await;
    let owner = app.user("owner@example.com").await;
    let tag = app.tag("sync", "private", Some(&owner)).await;
    let (s, c) = app
        .post(
            "/contacts",
            json!({
                "given_name": "Grace", "family_name": "Hopper",
                "emails": [{"address": "grace@navy.example", "kind": "work", "primary": true}, {"address": "g@home.example", "kind": "home"}],
                "phones": [{"number": "+1 555 0100", "kind": "mobile"}],
                "addresses": [{"kind": "work", "city": "Arlington", "country_code": "US"}],
                "organization": "US Navy", "job_title": "Rear Admiral", "notes": "COBOL", "birthday": "1906-12-09"
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let id = id_of(&c);
    assert_eq!(c["emails"][0]["address"], "grace@navy.example");
    assert_eq!(c["emails"][1]["primary"], false);
    assert_eq!(c["phones"][0]["kind"], "mobile");
    assert_eq!(c["addresses"][0]["city"], "Arlington");
    assert_eq!(c["birthday"], "1906-12-09");
    assert_eq!(c["tags"], json!([]));
    let seq0 = c["change_seq"].as_i64().unwrap();

    let (s, got) = app.get(&format!("/contacts/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got, c);

    // PATCH: absent fields stay, null clears.
    app.clock.advance(Duration::minutes(3));
    let (s, p) = app
        .patch(&format!("/contacts/{id}"), json!({"job_title": null, "phones": [], "birthday": "--12-09", "given_name": "Grace B."}))
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["given_name"], "Grace B.");
    assert!(p.get("job_title").is_none());
    assert_eq!(p["phones"], json!([]));
    assert_eq!(p["birthday"], "--12-09");
    assert_eq!(p["organization"], "US Navy");
    assert_eq!(p["modified_at"], "2026-03-01T09:03:00Z");
    assert!(p["change_seq"].as_i64().unwrap() > seq0);

    // Tag, tag again (no change), list by tag, untag.
    let (s, t) = app.put(&format!("/contacts/{id}/tags/{tag}"), None).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["tags"], json!([tag]));
    let (_, t2) = app.put(&format!("/contacts/{id}/tags/{tag}"), None).await;
    assert_eq!(t2["change_seq"], t["change_seq"]);
    let (s, other) = app.post("/contacts", json!({"given_name": "Other", "family_name": "One"})).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, by_tag) = app.get(&format!("/contacts?tag_id={tag}")).await;
    assert_eq!(s, StatusCode::OK, "{by_tag}");
    assert_eq!(by_tag["items"].as_array().unwrap().iter().map(id_of).collect::<Vec<_>>(), vec![id.clone()]);
    let (_, all) = app.get("/contacts").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    let (s, u) = app.delete(&format!("/contacts/{id}/tags/{tag}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(u["tags"], json!([]));
    let (_, by_tag) = app.get(&format!("/contacts?tag_id={tag}")).await;
    assert_eq!(by_tag["items"], json!([]));

    // Delete: a tombstone, gone from the API.
    let (s, _) = app.delete(&format!("/contacts/{id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body) = app.get(&format!("/contacts/{id}")).await;
    assert_error(s, &body, StatusCode::NOT_FOUND, "deleted contact");
    let (s, body) = app.patch(&format!("/contacts/{id}"), json!({"notes": "x"})).await;
    assert_error(s, &body, StatusCode::NOT_FOUND, "patch deleted contact");
    let (s, body) = app.delete(&format!("/contacts/{id}")).await;
    assert_error(s, &body, StatusCode::NOT_FOUND, "delete twice");
    let (_, all) = app.get("/contacts").await;
    assert_eq!(all["items"].as_array().unwrap().iter().map(id_of).collect::<Vec<_>>(), vec![id_of(&other)]);
});
