//! Sync settings through the API: set, replace and read per (user, kind).

use crate::support::{assert_error, TestApp};
use crmsync_schema::db_test;
use reqwest::StatusCode;
use serde_json::json;

db_test!(async fn sync_settings_put_and_get(db) {
    let app = TestApp::start(&db).await;
    let user = app.user("u@example.com").await;
    let tag = app.tag("crm-sync", "private", Some(&user)).await;
    let (s, body) = app.get(&format!("/users/{user}/sync-settings/contacts")).await;
    assert_error(s, &body, StatusCode::NOT_FOUND, "not set yet");

    let (s, c) = app
        .put(&format!("/users/{user}/sync-settings/contacts"), Some(json!({"auto_sync": true, "interval_minutes": 30, "tag_id": tag})))
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["interval_minutes"], 30);
    assert_eq!(c["cron"], serde_json::Value::Null);
    assert_eq!(c["tag_id"], tag.as_str());
    let (s, a) = app
        .put(
            &format!("/users/{user}/sync-settings/activities"),
            Some(json!({"auto_sync": false, "cron": "0 */15 * * * *", "synchronize_from": "2026-01-01", "trigger_words": ["CRM", "Deal"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["cron"], "0 */15 * * * *");
    assert_eq!(a["synchronize_from"], "2026-01-01");
    assert_eq!(a["trigger_words"], json!(["CRM", "Deal"]));

    // Replace: from interval to cron.
    let (s, c2) = app
        .put(&format!("/users/{user}/sync-settings/contacts"), Some(json!({"auto_sync": false, "cron": "0 0 * * * *", "tag_id": tag})))
        .await;
    assert_eq!(s, StatusCode::OK, "{c2}");
    assert_eq!(c2["interval_minutes"], serde_json::Value::Null);
    assert_eq!(c2["auto_sync"], false);
    let (s, got) = app.get(&format!("/users/{user}/sync-settings/contacts")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got, c2);
    let (s, list) = app.get(&format!("/users/{user}/sync-settings")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 2);
});
