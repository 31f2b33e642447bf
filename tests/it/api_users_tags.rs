//! Users and tags through the API: create, read, list with pagination, change, delete.

use crate::support::{assert_error, id_of, TestApp};
use crmsync_schema::db_test;
use reqwest::StatusCode;
use serde_json::json;

db_test!(async fn users_crud_and_pagination(db) {
    let app = TestApp::start(&db).await;
    let (s, u) = app
        .post("/users", json!({"email": "Alice@Example.com", "display_name": "Alice", "time_zone": "America/New_York"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    let id = id_of(&u);
    assert_eq!(u["email"], "alice@example.com");
    assert_eq!(u["google_alias"], "alice@example.com");
    assert_eq!(u["time_zone"], "America/New_York");
    let (s, got) = app.get(&format!("/users/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got, u);
    let (s, p) = app
        .patch(&format!("/users/{id}"), json!({"display_name": "Alice B", "google_alias": "alice@corp.example.com", "time_zone": "Asia/Tokyo"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["display_name"], "Alice B");
    assert_eq!(p["google_alias"], "alice@corp.example.com");
    assert_eq!(p["time_zone"], "Asia/Tokyo");
    let (s, d) = app.post("/users", json!({"email": "bob@example.com", "display_name": "Bob", "google_alias": "bobby@example.com"})).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(d["time_zone"], "UTC");
    for i in 0..3 {
        app.user(&format!("u{i}@example.com")).await;
    }
    let mut all = Vec::new();
    let mut path = "/users?limit=2".to_string();
    loop {
        let (s, page) = app.get(&path).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        all.extend(page["items"].as_array().unwrap().iter().map(id_of));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/users?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(all.len(), 5);
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, all, "ordered, no duplicates");
});

db_test!(async fn tags_crud(db) {
    let app = TestApp::start(&db).await;
    let owner = app.user("owner@example.com").await;
    let private = app.tag("mine", "private", Some(&owner)).await;
    let public = app.tag("everyone", "public", None).await;
    let corporate = app.tag("corp", "corporate", None).await;
    let (s, t) = app.get(&format!("/tags/{private}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t["visibility"], "private");
    assert_eq!(t["owner_user_id"], owner.as_str());
    let (s, list) = app.get("/tags").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
    // A tag in use as a sync tag cannot be deleted.
    let (s, _) = app
        .put(&format!("/users/{owner}/sync-settings/contacts"), Some(json!({"auto_sync": true, "interval_minutes": 15, "tag_id": private})))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = app.delete(&format!("/tags/{private}")).await;
    assert_eq!(assert_error(s, &body, StatusCode::CONFLICT, "delete sync tag"), "conflict");
    // Others can; deleting untags.
    let (s, c) = app.post("/contacts", json!({"given_name": "A", "family_name": "B", "tags": [public, corporate]})).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let (s, _) = app.delete(&format!("/tags/{public}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body) = app.get(&format!("/tags/{public}")).await;
    assert_error(s, &body, StatusCode::NOT_FOUND, "deleted tag");
    let (_, c) = app.get(&format!("/contacts/{}", id_of(&c))).await;
    assert_eq!(c["tags"], json!([corporate]));
});
